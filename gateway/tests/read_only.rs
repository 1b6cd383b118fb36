//! The read-only token: what Redis flags `readonly`, nothing unknown, and
//! scripts that cannot run away with the shared connection.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Both, Gateway, READ_ONLY_TOKEN, Redis, TOKEN, run, send};
use serde_json::json;

async fn as_read_only(gateway: &Gateway, path: &str, body: serde_json::Value) -> common::Answer {
    send(
        reqwest::Client::new()
            .post(gateway.url(path))
            .bearer_auth(READ_ONLY_TOKEN)
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn the_read_only_token_runs_reads_and_gets_noperm_for_writes_and_unknown_commands() {
    let both = Both::start();
    let key = common::unique("ro");
    both.redis.cli(&["HSET", &key, "f", "1"]);
    let g = &both.gateway;
    for (command, result) in [
        (json!(["HGET", key, "f"]), json!("1")),
        (json!(["PING"]), json!("PONG")),
        (json!(["EXISTS", key]), json!(1)),
        (
            json!(["EVAL", "return redis.call('HGET', KEYS[1], 'f')", 1, key]),
            json!("1"),
        ),
    ] {
        let answer = as_read_only(g, "/", command.clone()).await;
        assert_eq!(answer.json(), json!({"result": result}), "{command}");
    }
    // Writes Redis 7.4 and 8 added are unknown to 7.0 and refused as such;
    // SCRIPT FLUSH and PUBLISH change shared state without Redis's `write` flag.
    for command in [
        json!(["HSET", key, "f", "2"]),
        json!(["HGETDEL", key, "FIELDS", 1, "f"]),
        json!(["HSETEX", key, "FIELDS", 1, "f", "2"]),
        json!(["HEXPIRE", key, 10, "FIELDS", 1, "f"]),
        json!(["NOSUCHCOMMAND"]),
        json!(["SCRIPT", "FLUSH"]),
        json!(["SCRIPT", "KILL"]),
        json!(["PUBLISH", "c", "m"]),
        json!(["FUNCTION", "FLUSH"]),
        json!(["OBJECT", "NOSUCH", key]),
    ] {
        let answer = as_read_only(g, "/", command.clone()).await;
        assert_eq!(answer.status, 400, "{command}");
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with("NOPERM"), "{command}: {error}");
    }
    assert_eq!(both.redis.cli(&["HGET", &key, "f"]), "1");
}

#[tokio::test]
async fn a_runaway_read_only_script_is_killed_and_the_gateway_and_redis_serve_right_after() {
    // Redis reads other clients only once a script has run this long.
    let redis = Redis::start_with(&["--lua-time-limit", "200"]);
    let mut config = tally_gateway::Config::new(redis.url(), TOKEN);
    config.read_only_token = Some(READ_ONLY_TOKEN.to_owned());
    config.script_timeout = Duration::from_secs(1);
    let g = Gateway::start_with(config);
    let key = common::unique("runaway");
    redis.cli(&["SET", &key, "v"]);

    let started = Instant::now();
    let answer = as_read_only(&g, "/", json!(["EVAL_RO", "while true do end", 0])).await;
    let took = started.elapsed();
    assert_eq!(answer.status, 504, "{}", answer.text);
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("script timeout"), "{error}");
    assert!(
        took < Duration::from_secs(10),
        "stopped before the response timeout: {took:?}"
    );
    assert_eq!(
        run(&g, json!(["GET", key])).await.json(),
        json!({"result": "v"})
    );
    assert_eq!(redis.cli(&["PING"]), "PONG");

    // The same inside a pipeline: that item is the error, the others answer.
    let piped = as_read_only(
        &g,
        "/pipeline",
        json!([["GET", key], ["EVAL", "while true do end", 0], ["GET", key]]),
    )
    .await;
    assert_eq!(piped.status, 200, "{}", piped.text);
    let items = piped.json();
    assert_eq!(items[0], json!({"result": "v"}));
    assert!(
        items[1]["error"]
            .as_str()
            .unwrap()
            .contains("script timeout"),
        "{items}"
    );
    assert_eq!(items[2], json!({"result": "v"}));

    let metrics = send(
        reqwest::Client::new()
            .get(g.url("/metrics"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l == "tally_gateway_scripts_killed_total 2"),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn a_script_timeout_not_below_the_response_timeout_is_refused_at_start() {
    let mut config = tally_gateway::Config::new("redis://127.0.0.1:1", TOKEN);
    config.script_timeout = config.response_timeout;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = tally_gateway::serve(listener, config, std::future::ready(())).await;
    assert!(
        matches!(served, Err(tally_gateway::StartError::ScriptTimeout { .. })),
        "{served:?}"
    );
}
