//! Redis going away and coming back; the process stopping gracefully.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Both, Redis, TOKEN, post, run, send};
use serde_json::json;

#[tokio::test]
async fn a_redis_restart_gives_503_meanwhile_and_recovers_by_itself() {
    let mut both = Both::start();
    assert_eq!(
        run(&both.gateway, json!(["SET", "r", "1"])).await.status,
        200
    );
    assert_eq!(
        post(&both.gateway, "/multi-exec", json!([["INCR", "r"]]))
            .await
            .status,
        200
    );

    both.redis.stop();
    for (path, body) in [
        ("/", json!(["GET", "r"])),
        ("/pipeline", json!([["GET", "r"]])),
        ("/multi-exec", json!([["GET", "r"]])),
    ] {
        let answer = post(&both.gateway, path, body).await;
        assert_eq!(answer.status, 503, "{path}: {}", answer.text);
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("unavailable")
        );
        assert_eq!(answer.headers["retry-after"], "1");
    }
    let health = send(reqwest::Client::new().get(both.url("/healthz"))).await;
    assert_eq!(health.status, 503);

    both.redis.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answer = run(&both.gateway, json!(["SET", "r", "2"])).await;
    while answer.status != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = run(&both.gateway, json!(["SET", "r", "2"])).await;
    }
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        run(&both.gateway, json!(["GET", "r"])).await.json(),
        json!({"result": "2"})
    );
    let tx = post(&both.gateway, "/multi-exec", json!([["INCR", "r"]])).await;
    assert_eq!(
        tx.json(),
        json!([{"result": 3}]),
        "the transaction pool recovers too"
    );
    let pipe = post(&both.gateway, "/pipeline", json!([["INCR", "r"]])).await;
    assert_eq!(pipe.json(), json!([{"result": 4}]));

    let metrics = send(
        reqwest::Client::new()
            .get(both.url("/metrics"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l == "tally_gateway_redis_reconnects_total 1"),
        "{}",
        metrics.text
    );
}

/// A script that keeps Redis busy for about a second.
const BUSY_SECOND: &str = "local t = redis.call('TIME') \
    repeat local n = redis.call('TIME') until (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 1000000 \
    return 1";

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_then_exits() {
    use std::process::{Command, Stdio};
    // Past 50 ms of a script, Redis answers others `BUSY`: how the test
    // knows the request is inside Redis before it sends the signal.
    let redis = Redis::start_with(&["--busy-reply-threshold", "50"]);
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally-gateway"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--redis-url", &redis.url(), "--token", TOKEN])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A request that takes a second inside Redis.
    let slow = tokio::spawn(
        reqwest::Client::new()
            .post(url)
            .bearer_auth(TOKEN)
            .json(&json!(["EVAL", BUSY_SECOND, 0]))
            .send(),
    );
    // A signal before the gateway has read the request would rightly
    // close the connection unanswered, so wait until Redis runs the script.
    let redis_port = redis.port;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ping = tokio::task::spawn_blocking(move || common::cli_at(redis_port, &["PING"]))
            .await
            .unwrap();
        if ping.starts_with("BUSY") {
            break;
        }
        assert!(Instant::now() < deadline, "the script never ran: {ping}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let answer = slow
        .await
        .unwrap()
        .expect("the request in flight gets its answer");
    assert_eq!(answer.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the gateway did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no longer listening"
    );
}
