//! `GET /healthz` end to end: wrangler dev → gateway → redis-server.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Stack;

#[tokio::test]
async fn healthz_is_ok_while_redis_answers_and_503_within_5s_once_it_stops() {
    let mut stack = Stack::start();
    let http = reqwest::Client::new();
    let url = stack.worker.url("/healthz");

    let ok = http.get(&url).send().await.expect("healthz answers");
    assert_eq!(ok.status(), 200, "{}", stack.worker.log());
    let body: Value = ok.json().await.expect("json body");
    assert_eq!(body, json!({"status": "ok"}));

    stack.redis.stop();
    let started = Instant::now();
    let down = http.get(&url).send().await.expect("healthz answers");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(down.status(), 503);
    assert_eq!(down.headers()["content-type"], "application/json");
    assert!(down.headers().contains_key("retry-after"));
    let body: Value = down.json().await.expect("json body");
    assert_eq!(body["error"]["code"], "backend_unavailable");
    assert!(body["error"]["message"].is_string());

    stack.redis.resume();
    let back = http.get(&url).send().await.expect("healthz answers");
    assert_eq!(back.status(), 200, "healthz recovers once Redis is back");
}
