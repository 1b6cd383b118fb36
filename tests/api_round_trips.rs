//! One Redis REST round trip per API request, counted by the gateway itself.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{API_KEY, Stack, send, token_for};

/// Every request the gateway answered so far, summed over endpoints and statuses.
async fn gateway_requests(stack: &Stack) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", stack.gateway.url()))
        .bearer_auth(support::GATEWAY_TOKEN)
        .send()
        .await
        .expect("gateway metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| line.starts_with("tally_gateway_requests_total{"))
        .filter(|line| !line.contains("endpoint=\"/metrics\""))
        .map(|line| {
            let value = line.rsplit(' ').next().expect("a value");
            value.parse::<f64>().expect("a number") as u64
        })
        .sum()
}

#[tokio::test]
async fn every_api_request_makes_exactly_one_round_trip_on_the_response_path() {
    // The worker flushes its own metrics at most every 25 s: one flush after
    // the warm-up, then none while the requests below are counted.
    let stack = Stack::start_with(&[("METRICS_FLUSH_SECONDS", "25")]);
    let http = reqwest::Client::new();
    let url = |path: &str| stack.worker.url(path);
    let token = token_for("counted-user");
    let requests = || {
        [
            http.put(url("/v1/items/rt/like")).bearer_auth(&token),
            http.put(url("/v1/items/rt/like")).bearer_auth(&token),
            http.delete(url("/v1/items/rt/like")).bearer_auth(&token),
            http.get(url("/v1/items/rt")),
            http.get(url("/v1/items/rt")).bearer_auth(&token),
            http.get(url("/v1/items?ids=rt,a,b,c")),
            http.get(url("/v1/items/rt/views/series?bucket=hour")),
            http.get(url("/v1/trending")),
            http.post(url("/v1/items/rt/counters/c"))
                .bearer_auth(API_KEY)
                .json(&json!({"by": 2})),
            http.post(url("/v1/visitors")),
            http.put(url("/v1/items/rt")).bearer_auth(API_KEY),
            http.post(url("/v1/items/rt/views"))
                .header("User-Agent", "Googlebot/2.1"),
            http.get(url("/healthz")),
        ]
    };
    // A fresh Redis has no scripts cached: the first use of each one costs a
    // NOSCRIPT answer and an EVAL. Warm them up first, then count.
    for request in requests() {
        send(request).await;
    }
    let warm = send(
        http.post(url("/v1/items/rt/views"))
            .bearer_auth(token_for("warm-up")),
    )
    .await;
    assert_eq!(warm.body["counted"], true, "a counted view, warmed up too");
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let before = gateway_requests(&stack).await;
    let sent = requests().len() as u64;
    for request in requests() {
        let reply = send(request).await;
        assert!(reply.status < 300, "{}: {:?}", reply.status, reply.body);
    }
    assert_eq!(gateway_requests(&stack).await - before, sent);

    // A counted view is exactly one command: trending is counted in the view
    // script, with nothing left for after the response.
    let before = gateway_requests(&stack).await;
    let view = send(http.post(url("/v1/items/rt/views")).bearer_auth(&token)).await;
    assert_eq!(view.body["counted"], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gateway_requests(&stack).await - before, 1);
    let trending = send(http.get(url("/v1/trending"))).await;
    assert_eq!(trending.body["items"][0]["item"], "rt");
}
