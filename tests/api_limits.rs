//! Rate limits end to end: exactly the limit is admitted within a window.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{Stack, all_at_once, send, token_for};

const LIMIT: usize = 30;

/// Sleeps past the next minute boundary when one is close, so a burst lands
/// inside one fixed window.
async fn start_of_a_window() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let into_minute = now.as_secs() % 60;
    if into_minute > 40 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
}

#[tokio::test]
async fn a_burst_of_limit_plus_50_writes_admits_exactly_the_limit() {
    let limit = LIMIT.to_string();
    let stack = Stack::start_with(&[("RATE_LIMIT_PER_MINUTE", &limit)]);
    let http = reqwest::Client::new();
    let token = token_for("eager-clicker");
    start_of_a_window().await;

    let replies = all_at_once((0..LIMIT + 50).map(|n| {
        let request = http
            .put(stack.worker.url(&format!("/v1/items/burst-{n}/like")))
            .bearer_auth(&token);
        send(request)
    }))
    .await;

    let admitted: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(admitted.len(), LIMIT);
    assert_eq!(limited.len(), 50);
    for reply in &limited {
        assert_eq!(reply.body["error"]["code"], "rate_limited");
        let retry_after: u64 = reply
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some(r#""writes";q=30;w=60"#)
        );
        let remaining = reply.header("ratelimit").expect("RateLimit");
        assert!(remaining.starts_with(r#""writes";r=0;t="#), "{remaining}");
    }
    // Only the admitted likes were written.
    let liked: usize = (0..LIMIT + 50)
        .filter(|n| {
            !stack
                .redis
                .cli(&["--scan", "--pattern", &format!("*{{burst-{n}}}*")])
                .is_empty()
        })
        .count();
    assert_eq!(liked, LIMIT);
}

#[tokio::test]
async fn views_without_a_token_are_limited_per_client_ip() {
    let stack = Stack::start_with(&[("RATE_LIMIT_PER_MINUTE", "5")]);
    let http = reqwest::Client::new();
    start_of_a_window().await;
    let mut statuses = Vec::new();
    for n in 0..8 {
        let reply = send(
            http.post(stack.worker.url(&format!("/v1/items/page-{n}/views")))
                .header("User-Agent", "Firefox"),
        )
        .await;
        statuses.push(reply.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
}
