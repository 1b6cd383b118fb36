//! Failure behaviour: a gateway that is gone or silent gives `503` JSON, and
//! service resumes by itself.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::{Stack, Worker, send, token_for};

#[tokio::test]
async fn a_stopped_gateway_gives_503_json_and_service_resumes_when_it_is_back() {
    let mut stack = Stack::start();
    let http = reqwest::Client::new();
    let token = token_for("patient-user");
    let like = || {
        send(
            http.put(stack.worker.url("/v1/items/outage/like"))
                .bearer_auth(&token),
        )
    };
    assert_eq!(like().await.status, 200);

    stack.gateway.stop();
    let started = Instant::now();
    let down = like().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(down.status, 503);
    assert_eq!(down.body["error"]["code"], "backend_unavailable");
    assert!(down.header("retry-after").is_some());
    let text = down.body.to_string();
    for secret in [support::GATEWAY_TOKEN, "tally:", "redis.call", "EVALSHA"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }

    stack.gateway.resume();
    let back = like().await;
    assert_eq!(back.status, 200);
    assert_eq!(
        back.body["likes"], 1,
        "the like before the outage is still there"
    );
}

#[tokio::test]
async fn a_gateway_that_never_answers_gives_503_within_the_timeout() {
    // Accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in silent.incoming().take(4).flatten() {
            open.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let worker = Worker::start(&url, &[("REDIS_TIMEOUT_MS", "500")]);
    let http = reqwest::Client::new();

    let started = Instant::now();
    let reply = send(http.get(worker.url("/healthz"))).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body["error"]["code"], "backend_unavailable");
    assert!(
        took >= Duration::from_millis(400),
        "waited for the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "gave up at the timeout: {took:?}"
    );
    drop(held);
}

#[tokio::test]
async fn a_missing_secret_is_a_500_naming_it_while_static_routes_still_work() {
    let worker = Worker::start("http://127.0.0.1:9", &[("TALLY_JWT_SECRET", "")]);
    let http = reqwest::Client::new();

    let reply = send(http.get(worker.url("/v1/items/x"))).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.body["error"]["code"], "misconfigured");
    let message = reply.body["error"]["message"].as_str().expect("message");
    assert!(message.contains("TALLY_JWT_SECRET"), "{message}");
    assert!(!message.contains(support::GATEWAY_TOKEN), "{message}");

    let script = http
        .get(worker.url("/tally.js"))
        .send()
        .await
        .expect("answers");
    assert_eq!(script.status(), 200);
}
