//! The REST protocol end to end: every endpoint, result shape and error.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Both, TOKEN, post, run, send};
use serde_json::json;

#[tokio::test]
async fn post_root_maps_integers_bulk_strings_nil_and_nested_arrays() {
    let both = Both::start();
    let g = &both.gateway;
    assert_eq!(
        run(g, json!(["SET", "k1", "hello"])).await.json(),
        json!({"result": "OK"})
    );
    assert_eq!(
        run(g, json!(["INCRBY", "n1", 5])).await.json(),
        json!({"result": 5})
    );
    assert_eq!(
        run(g, json!(["GET", "missing"])).await.json(),
        json!({"result": null})
    );
    let nested = run(g, json!(["EVAL", "return {1, 'two', {3, false}}", 0])).await;
    assert_eq!(nested.status, 200);
    assert_eq!(nested.json(), json!({"result": [1, "two", [3, null]]}));
    let answer = run(g, json!(["MGET", "k1", "missing"])).await;
    assert_eq!(answer.json(), json!({"result": ["hello", null]}));
    assert_eq!(answer.headers["content-type"], "application/json");
}

#[tokio::test]
async fn a_redis_error_is_400_with_its_message() {
    let both = Both::start();
    run(&both.gateway, json!(["SET", "s", "x"])).await;
    let answer = run(&both.gateway, json!(["HGET", "s", "f"])).await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.json(),
        json!({"error": "WRONGTYPE Operation against a key holding the wrong kind of value"})
    );
    let unknown = run(&both.gateway, json!(["NOSUCHCOMMAND"])).await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("ERR unknown command")
    );
    let noscript = run(
        &both.gateway,
        json!(["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", 0]),
    )
    .await;
    assert!(
        noscript.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("NOSCRIPT")
    );
}

#[tokio::test]
async fn path_style_takes_arguments_from_segments_query_and_body() {
    let both = Both::start();
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(both.url(path)).bearer_auth(TOKEN);
    assert_eq!(
        send(get("/set/a%2Fb/v%20w")).await.json(),
        json!({"result": "OK"})
    );
    assert_eq!(both.redis.cli(&["GET", "a/b"]), "v w");
    assert_eq!(
        send(get("/get/a%2Fb")).await.json(),
        json!({"result": "v w"})
    );

    let post = client
        .post(both.url("/set/p?EX=100"))
        .bearer_auth(TOKEN)
        .body("a body value");
    assert_eq!(send(post).await.json(), json!({"result": "OK"}));
    assert_eq!(both.redis.cli(&["GET", "p"]), "a body value");
    let ttl: i64 = both.redis.cli(&["TTL", "p"]).parse().unwrap();
    assert!((1..=100).contains(&ttl));

    let by_query_token = client.get(both.url(&format!("/incrby/n/7?_token={TOKEN}")));
    assert_eq!(send(by_query_token).await.json(), json!({"result": 7}));
}

#[tokio::test]
async fn a_pipeline_answers_each_command_in_order_and_is_not_atomic() {
    let both = Both::start();
    let answer = post(
        &both.gateway,
        "/pipeline",
        json!([
            ["SET", "p", "1"],
            ["HGET", "p", "f"],
            ["INCR", "p"],
            ["BLPOP", "l", 0],
            ["MGET", "p", "none"]
        ]),
    )
    .await;
    assert_eq!(answer.status, 200);
    let items = answer.json();
    assert_eq!(items[0], json!({"result": "OK"}));
    assert!(items[1]["error"].as_str().unwrap().starts_with("WRONGTYPE"));
    assert_eq!(
        items[2],
        json!({"result": 2}),
        "a failed command does not stop the others"
    );
    assert!(items[3]["error"].as_str().unwrap().contains("blocking"));
    assert_eq!(items[4], json!({"result": ["2", null]}));
}

#[tokio::test]
async fn multi_exec_runs_atomically_with_per_command_results() {
    let both = Both::start();
    let answer = post(
        &both.gateway,
        "/multi-exec",
        json!([
            ["SET", "m", "1"],
            ["INCR", "m"],
            ["HGET", "m", "f"],
            ["GET", "m"]
        ]),
    )
    .await;
    assert_eq!(answer.status, 200);
    let items = answer.json();
    assert_eq!(items[0], json!({"result": "OK"}));
    assert_eq!(items[1], json!({"result": 2}));
    assert!(items[2]["error"].as_str().unwrap().starts_with("WRONGTYPE"));
    assert_eq!(items[3], json!({"result": "2"}));
}

#[tokio::test]
async fn an_aborted_transaction_is_one_error_and_writes_nothing() {
    let both = Both::start();
    let answer = post(
        &both.gateway,
        "/multi-exec",
        json!([["SET", "t", "1"], ["INCRBY", "t"]]),
    )
    .await;
    assert_eq!(answer.status, 400);
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("EXECABORT"), "{error}");
    assert!(error.contains("wrong number of arguments"), "{error}");
    assert_eq!(both.redis.cli(&["EXISTS", "t"]), "0");

    let refused = post(
        &both.gateway,
        "/multi-exec",
        json!([["SET", "t", "1"], ["SUBSCRIBE", "c"]]),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(both.redis.cli(&["EXISTS", "t"]), "0");
}

#[tokio::test]
async fn base64_encoding_covers_every_string_but_ok() {
    let both = Both::start();
    let client = reqwest::Client::new();
    both.redis.cli(&["SET", "b", "hello"]);
    let ask = |body: serde_json::Value, path: &str| {
        client
            .post(both.url(path))
            .bearer_auth(TOKEN)
            .header("Upstash-Encoding", "base64")
            .json(&body)
    };
    assert_eq!(
        send(ask(json!(["GET", "b"]), "/")).await.json(),
        json!({"result": "aGVsbG8="})
    );
    assert_eq!(
        send(ask(json!(["SET", "c", "x"]), "/")).await.json(),
        json!({"result": "OK"})
    );
    assert_eq!(
        send(ask(json!(["PING"]), "/")).await.json(),
        json!({"result": "UE9ORw=="})
    );
    let nested = send(ask(json!(["EVAL", "return {1, 'ab', {'cd'}}", 0]), "/")).await;
    assert_eq!(nested.json(), json!({"result": [1, "YWI=", ["Y2Q="]]}));
    let error = send(ask(json!(["HGET", "b", "f"]), "/")).await;
    assert!(
        error.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("WRONGTYPE")
    );
    let piped = send(ask(
        json!([["GET", "b"], ["GET", "none"], ["INCR", "n"]]),
        "/pipeline",
    ))
    .await;
    assert_eq!(
        piped.json(),
        json!([{"result": "aGVsbG8="}, {"result": null}, {"result": 1}])
    );
}

#[tokio::test]
async fn blocking_pubsub_and_connection_state_commands_are_refused() {
    let both = Both::start();
    for command in [
        json!(["BLPOP", "l", 0]),
        json!(["BRPOP", "l", 0]),
        json!(["XREAD", "BLOCK", 0, "STREAMS", "s", "$"]),
        json!(["SUBSCRIBE", "c"]),
        json!(["PSUBSCRIBE", "c*"]),
        json!(["MONITOR"]),
        json!(["SELECT", 1]),
        json!(["WATCH", "k"]),
        json!(["MULTI"]),
        json!(["EXEC"]),
        json!(["QUIT"]),
        json!(["CLIENT", "REPLY", "OFF"]),
    ] {
        let answer = run(&both.gateway, command.clone()).await;
        assert_eq!(answer.status, 400, "{command}");
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("not supported"), "{command}: {error}");
    }
    // The connection is still usable and still on database 0.
    assert_eq!(
        run(&both.gateway, json!(["SET", "after", "1"]))
            .await
            .status,
        200
    );
    assert_eq!(both.redis.cli(&["GET", "after"]), "1");
}

#[tokio::test]
async fn malformed_bodies_and_empty_commands_are_400() {
    let both = Both::start();
    let client = reqwest::Client::new();
    for (path, body) in [
        ("/", "[\"SET\", "),
        ("/", "{\"cmd\": \"GET\"}"),
        ("/", "[]"),
        ("/", "[\"GET\", {\"a\": 1}]"),
        ("/pipeline", "[]"),
        ("/pipeline", "[\"GET\", \"k\"]"),
        ("/pipeline", "[[]]"),
        ("/multi-exec", "not json"),
    ] {
        let answer = send(client.post(both.url(path)).bearer_auth(TOKEN).body(body)).await;
        assert_eq!(answer.status, 400, "{path} {body}");
        assert!(answer.json()["error"].is_string());
    }
}

#[tokio::test]
async fn a_content_type_with_a_charset_is_accepted() {
    let both = Both::start();
    let request = reqwest::Client::new()
        .post(both.url("/"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"["ECHO", "héllo"]"#);
    assert_eq!(send(request).await.json(), json!({"result": "héllo"}));
}

#[tokio::test]
async fn bodies_over_ten_mebibytes_are_413() {
    let both = Both::start();
    let value = "x".repeat(10 * 1024 * 1024);
    let body = serde_json::to_vec(&json!(["SET", "big", value])).unwrap();
    let answer = send(
        reqwest::Client::new()
            .post(both.url("/"))
            .bearer_auth(TOKEN)
            .body(body),
    )
    .await;
    assert_eq!(answer.status, 413);
    assert!(answer.json()["error"].is_string());
    assert_eq!(both.redis.cli(&["EXISTS", "big"]), "0");

    // Just under the limit is fine.
    let value = "x".repeat(10 * 1024 * 1024 - 64);
    let body = serde_json::to_vec(&json!(["SET", "big", value])).unwrap();
    let answer = send(
        reqwest::Client::new()
            .post(both.url("/"))
            .bearer_auth(TOKEN)
            .body(body),
    )
    .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn the_read_only_token_reads_but_gets_noperm_on_writes() {
    let both = Both::start();
    both.redis.cli(&["SET", "r", "1"]);
    let client = reqwest::Client::new();
    let ask = |path: &str, body: serde_json::Value| {
        client
            .post(both.url(path))
            .bearer_auth(common::READ_ONLY_TOKEN)
            .json(&body)
    };
    assert_eq!(
        send(ask("/", json!(["GET", "r"]))).await.json(),
        json!({"result": "1"})
    );
    let write = send(ask("/", json!(["SET", "r", "2"]))).await;
    assert_eq!(write.status, 400);
    assert!(
        write.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("NOPERM")
    );
    let script = send(ask(
        "/",
        json!(["EVAL", "return redis.call('SET', KEYS[1], '3')", 1, "r"]),
    ))
    .await;
    assert_eq!(
        script.status, 400,
        "scripts cannot write with the read-only token"
    );
    let piped = send(ask("/pipeline", json!([["GET", "r"], ["DEL", "r"]]))).await;
    assert_eq!(piped.json()[0], json!({"result": "1"}));
    assert!(
        piped.json()[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("NOPERM")
    );
    assert_eq!(
        send(ask("/multi-exec", json!([["GET", "r"], ["INCR", "r"]])))
            .await
            .status,
        400
    );
    assert_eq!(both.redis.cli(&["GET", "r"]), "1");
}

#[tokio::test]
async fn healthz_reports_redis_and_metrics_count_requests_per_endpoint_and_command() {
    let both = Both::start();
    let health = send(reqwest::Client::new().get(both.url("/healthz"))).await;
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    run(&both.gateway, json!(["SET", "m", "1"])).await;
    run(&both.gateway, json!(["GET", "m"])).await;
    post(
        &both.gateway,
        "/pipeline",
        json!([["GET", "m"], ["INCR", "m"]]),
    )
    .await;
    let metrics = send(
        reqwest::Client::new()
            .get(both.url("/metrics"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for line in [
        r#"tally_gateway_requests_total{endpoint="/",command="set",status="200"} 1"#,
        r#"tally_gateway_requests_total{endpoint="/",command="get",status="200"} 1"#,
        r#"tally_gateway_requests_total{endpoint="/pipeline",command="batch",status="200"} 1"#,
        r#"tally_gateway_redis_commands_total{endpoint="/pipeline",command="incr"} 1"#,
        r#"tally_gateway_request_duration_seconds_count{endpoint="/",command="get"} 1"#,
        "tally_gateway_redis_reconnects_total 0",
    ] {
        assert!(
            metrics.text.lines().any(|l| l == line),
            "missing {line} in\n{}",
            metrics.text
        );
    }
}

#[tokio::test]
async fn unknown_methods_on_known_routes_are_405() {
    let both = Both::start();
    let client = reqwest::Client::new();
    let answer = send(client.get(both.url("/pipeline")).bearer_auth(TOKEN)).await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.headers["allow"], "POST");
    let answer = send(client.delete(both.url("/get/k")).bearer_auth(TOKEN)).await;
    assert_eq!(answer.status, 405);
}
