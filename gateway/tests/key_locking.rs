//! Upstash's `#!lua flags=allow-key-locking` on a stock Redis 7: the gateway
//! strips the flag and answers with the digests of the flagged bodies.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Both, TOKEN, post, run, send};
use serde_json::json;
use tally_gateway::scripts::sha1_hex;

const INCR: &str = "#!lua flags=allow-key-locking\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])";
const READ: &str = "#!lua flags=allow-key-locking,no-writes\nreturn redis.call('GET', KEYS[1])";

#[tokio::test]
async fn a_flagged_script_runs_by_eval_and_by_the_digest_of_its_flagged_body() {
    let both = Both::start();
    let key = common::unique("kl-eval");
    let g = &both.gateway;
    assert_eq!(
        run(g, json!(["EVAL", INCR, 1, key, 2])).await.json(),
        json!({"result": 2})
    );
    assert_eq!(
        run(g, json!(["evalsha", sha1_hex(INCR.as_bytes()), 1, key, 3]))
            .await
            .json(),
        json!({"result": 5})
    );
    // Redis itself only ever saw the stripped body.
    let stripped = sha1_hex(b"#!lua\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])");
    assert_eq!(both.redis.cli(&["SCRIPT", "EXISTS", &stripped]), "1");
    assert_eq!(
        both.redis
            .cli(&["SCRIPT", "EXISTS", &sha1_hex(INCR.as_bytes())]),
        "0"
    );
}

#[tokio::test]
async fn script_load_and_script_exists_answer_with_flagged_digests_also_in_base64() {
    let both = Both::start();
    let key = common::unique("kl-load");
    both.redis.cli(&["SET", &key, "7"]);
    let flagged = sha1_hex(READ.as_bytes());
    let client = reqwest::Client::new();
    let load = send(
        client
            .post(both.url("/"))
            .bearer_auth(TOKEN)
            .header("Upstash-Encoding", "base64")
            .json(&json!(["SCRIPT", "LOAD", READ])),
    )
    .await;
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&flagged);
    assert_eq!(load.json(), json!({"result": encoded}));
    assert_eq!(
        run(
            &both.gateway,
            json!(["SCRIPT", "EXISTS", flagged, "0".repeat(40)])
        )
        .await
        .json(),
        json!({"result": [1, 0]})
    );
    // EVALSHA_RO of a `no-writes` script, and the path style.
    assert_eq!(
        run(&both.gateway, json!(["EVALSHA_RO", flagged, 1, key]))
            .await
            .json(),
        json!({"result": "7"})
    );
    let path = send(
        client
            .get(both.url(&format!("/evalsha/{flagged}/1/{key}")))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(path.json(), json!({"result": "7"}));
    // The read-only token runs it too (as EVALSHA_RO).
    let read_only = send(
        client
            .post(both.url("/"))
            .bearer_auth(common::READ_ONLY_TOKEN)
            .json(&json!(["EVALSHA", flagged, 1, key])),
    )
    .await;
    assert_eq!(read_only.json(), json!({"result": "7"}));
}

#[tokio::test]
async fn pipelines_and_transactions_strip_the_flag_and_map_digests_per_command() {
    let both = Both::start();
    let key = common::unique("kl-batch");
    let flagged = sha1_hex(INCR.as_bytes());
    let piped = post(
        &both.gateway,
        "/pipeline",
        json!([
            ["EVALSHA", flagged, 1, key, 1],
            ["EVAL", INCR, 1, key, 1],
            ["EVALSHA", flagged, 1, key, 1],
            ["SCRIPT", "LOAD", READ],
            ["SCRIPT", "EXISTS", flagged]
        ]),
    )
    .await;
    assert_eq!(piped.status, 200, "{}", piped.text);
    let items = piped.json();
    assert!(
        items[0]["error"].as_str().unwrap().starts_with("NOSCRIPT"),
        "not loaded before the EVAL: {items}"
    );
    assert_eq!(items[1], json!({"result": 1}));
    assert_eq!(items[2], json!({"result": 2}));
    assert_eq!(items[3], json!({"result": sha1_hex(READ.as_bytes())}));
    assert_eq!(items[4], json!({"result": [1]}));

    let tx = post(
        &both.gateway,
        "/multi-exec",
        json!([
            ["EVALSHA", flagged, 1, key, 10],
            ["EVALSHA", sha1_hex(READ.as_bytes()), 1, key],
            ["SCRIPT", "LOAD", INCR]
        ]),
    )
    .await;
    assert_eq!(tx.status, 200, "{}", tx.text);
    assert_eq!(
        tx.json(),
        json!([{"result": 12}, {"result": "12"}, {"result": flagged}])
    );
}

#[tokio::test]
async fn an_error_inside_a_flagged_script_names_the_flagged_digest() {
    let both = Both::start();
    let broken = "#!lua flags=allow-key-locking\nreturn redis.call('NOSUCHCOMMAND')";
    let answer = run(&both.gateway, json!(["EVAL", broken, 0])).await;
    assert_eq!(answer.status, 400);
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&sha1_hex(broken.as_bytes())),
        "the client's digest: {error}"
    );
    assert!(!error.contains(&sha1_hex(b"#!lua\nreturn redis.call('NOSUCHCOMMAND')")));
}

#[tokio::test]
async fn after_a_redis_restart_evalsha_answers_noscript_until_the_client_evals_again() {
    let mut both = Both::start();
    let key = common::unique("kl-restart");
    let flagged = sha1_hex(INCR.as_bytes());
    assert_eq!(
        run(&both.gateway, json!(["EVAL", INCR, 1, key, 1]))
            .await
            .status,
        200
    );
    both.redis.stop();
    both.redis.resume();
    // Wait for the gateway to reconnect (the first requests may get 503).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answer = run(&both.gateway, json!(["EVALSHA", flagged, 1, key, 1])).await;
    while answer.status == 503 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = run(&both.gateway, json!(["EVALSHA", flagged, 1, key, 1])).await;
    }
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("NOSCRIPT"),
        "the map does not answer for Redis's lost cache: {}",
        answer.text
    );
    assert_eq!(
        run(&both.gateway, json!(["SCRIPT", "EXISTS", flagged]))
            .await
            .json(),
        json!({"result": [0]})
    );
    assert_eq!(
        run(&both.gateway, json!(["EVAL", INCR, 1, key, 1]))
            .await
            .json(),
        json!({"result": 1})
    );
    assert_eq!(
        run(&both.gateway, json!(["EVALSHA", flagged, 1, key, 1]))
            .await
            .json(),
        json!({"result": 2})
    );
}
