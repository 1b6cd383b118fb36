//! No token can change the shared connection's state or administer the
//! server; `--allow-admin` gives operators administration back.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Both, Gateway, READ_ONLY_TOKEN, Redis, TOKEN, post, run, send};
use serde_json::json;

fn error_of(answer: &common::Answer) -> String {
    answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn as_read_only(gateway: &Gateway, command: serde_json::Value) -> common::Answer {
    send(
        reqwest::Client::new()
            .post(gateway.url("/"))
            .bearer_auth(READ_ONLY_TOKEN)
            .json(&command),
    )
    .await
}

#[tokio::test]
async fn script_debug_is_refused_for_every_token_so_evalsha_keeps_working() {
    let both = Both::start();
    let g = &both.gateway;
    let debug = json!(["SCRIPT", "DEBUG", "YES"]);
    for answer in [
        run(g, debug.clone()).await,
        as_read_only(g, debug.clone()).await,
    ] {
        assert_eq!(answer.status, 400, "{}", answer.text);
        assert!(
            error_of(&answer).contains("connection state"),
            "{}",
            answer.text
        );
    }
    let piped = post(g, "/pipeline", json!([debug.clone(), ["PING"]])).await;
    assert!(
        piped.json()[0]["error"]
            .as_str()
            .unwrap()
            .contains("connection state")
    );
    assert_eq!(
        post(g, "/multi-exec", json!([debug, ["PING"]]))
            .await
            .status,
        400
    );

    let key = common::unique("debug");
    let sha = run(
        g,
        json!(["SCRIPT", "LOAD", "return redis.call('INCR', KEYS[1])"]),
    )
    .await
    .json()["result"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        run(g, json!(["EVALSHA", sha, 1, key])).await.json(),
        json!({"result": 1}),
        "the shared connection is not in debug mode"
    );
}

#[tokio::test]
async fn shutdown_nosave_is_refused_on_every_endpoint_and_redis_stays_up() {
    let both = Both::start();
    let g = &both.gateway;
    let shutdown = json!(["SHUTDOWN", "NOSAVE"]);
    let one = run(g, shutdown.clone()).await;
    assert_eq!(one.status, 400, "{}", one.text);
    assert!(
        error_of(&one).contains("server administration"),
        "{}",
        one.text
    );
    let piped = post(g, "/pipeline", json!([shutdown.clone()])).await;
    assert!(
        piped.json()[0]["error"]
            .as_str()
            .unwrap()
            .contains("administration")
    );
    assert_eq!(
        post(g, "/multi-exec", json!([shutdown.clone()]))
            .await
            .status,
        400
    );
    let path = send(
        reqwest::Client::new()
            .get(g.url("/shutdown/nosave"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(path.status, 400);
    assert_eq!(as_read_only(g, shutdown).await.status, 400);
    assert_eq!(both.redis.cli(&["PING"]), "PONG");
    assert_eq!(
        run(g, json!(["PING"])).await.json(),
        json!({"result": "PONG"})
    );
}

#[tokio::test]
async fn every_administration_command_the_issue_lists_is_refused_for_both_tokens() {
    let both = Both::start();
    let g = &both.gateway;
    let user = common::unique("acl-user").replace(':', "-");
    for command in [
        json!(["CONFIG", "SET", "maxmemory", "1mb"]),
        json!(["CONFIG", "REWRITE"]),
        json!(["CONFIG", "RESETSTAT"]),
        json!(["CONFIG", "GET", "requirepass"]),
        json!(["DEBUG", "SLEEP", "0"]),
        json!(["REPLICAOF", "127.0.0.1", "1"]),
        json!(["SLAVEOF", "127.0.0.1", "1"]),
        json!(["FAILOVER", "ABORT"]),
        json!(["MIGRATE", "127.0.0.1", "1", "k", "0", "100"]),
        json!(["MODULE", "LIST"]),
        json!(["SAVE"]),
        json!(["BGSAVE"]),
        json!(["BGREWRITEAOF"]),
        json!(["ACL", "SETUSER", user, "on", ">pw", "+@all"]),
        json!(["ACL", "DELUSER", "default"]),
        json!(["CLUSTER", "RESET"]),
        json!(["CLIENT", "KILL", "127.0.0.1:1"]),
        json!(["CLIENT", "PAUSE", "100000"]),
        json!(["client", "no-evict", "on"]),
        json!(["PSYNC", "?", "-1"]),
        json!(["SYNC"]),
        json!(["MONITOR"]),
    ] {
        for (token, answer) in [
            ("full", run(g, command.clone()).await),
            ("read-only", as_read_only(g, command.clone()).await),
        ] {
            assert_eq!(answer.status, 400, "{token} {command}: {}", answer.text);
            let error = error_of(&answer);
            assert!(
                error.contains("server administration") || error.contains("connection state"),
                "{token} {command}: {error}"
            );
        }
    }
    assert_eq!(
        both.redis.cli(&["CONFIG", "GET", "maxmemory"]),
        "maxmemory\n0"
    );
    assert_eq!(both.redis.cli(&["ROLE"]).lines().next(), Some("master"));
    assert!(!both.redis.cli(&["ACL", "USERS"]).contains(&user));
    assert_eq!(run(g, json!(["SET", "still", "1"])).await.status, 200);
}

#[tokio::test]
async fn allow_admin_lets_the_full_token_administer_but_never_change_connection_state() {
    let redis = Redis::start();
    let mut config = tally_gateway::Config::new(redis.url(), TOKEN);
    config.read_only_token = Some(READ_ONLY_TOKEN.to_owned());
    config.allow_admin = true;
    let g = Gateway::start_with(config);
    assert_eq!(
        run(
            &g,
            json!(["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        )
        .await
        .json(),
        json!({"result": "OK"})
    );
    assert_eq!(
        run(&g, json!(["CONFIG", "GET", "maxmemory-policy"]))
            .await
            .json(),
        json!({"result": ["maxmemory-policy", "allkeys-lru"]})
    );
    let read_only = as_read_only(&g, json!(["CONFIG", "GET", "maxmemory-policy"])).await;
    assert!(
        error_of(&read_only).starts_with("NOPERM"),
        "{}",
        read_only.text
    );
    for command in [
        json!(["SCRIPT", "DEBUG", "YES"]),
        json!(["CLIENT", "SETNAME", "x"]),
        json!(["CLIENT", "NO-EVICT", "ON"]),
        json!(["SELECT", 1]),
        json!(["MONITOR"]),
    ] {
        let answer = run(&g, command.clone()).await;
        assert!(
            error_of(&answer).contains("connection state"),
            "{command}: {}",
            answer.text
        );
    }
}
