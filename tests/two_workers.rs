//! Two Workers (README, "Two Workers"): the edge build (`build/edge/`, no
//! system of record in its wasm) in front, the whole build behind it as the
//! `RECORD` service binding, both under one `wrangler dev` as
//! `wrangler.edge.toml` and `wrangler.record.toml` deploy them. Every request
//! goes to the edge; the record routes must answer as one Worker answers them.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{API_KEY, Record, Redis, Stack, encode, send, token_for};

/// Stacks are heavy for a 2-core machine: these tests run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ORIGIN: &str = "https://site.example";

const VARS: &[(&str, &str)] = &[
    ("RATE_LIMIT_PER_MINUTE", "1000000"),
    ("REDIS_TIMEOUT_MS", "10000"),
    ("ALLOWED_ORIGINS", ORIGIN),
    ("METRICS_FLUSH_SECONDS", "0"),
];

fn two_workers() -> Stack {
    Stack::start_on(Redis::start(), VARS, Record::Apart)
}

/// Passes through the edge until the outbox is empty; the events applied in all.
async fn reconcile_fully(http: &reqwest::Client, stack: &Stack) -> u64 {
    let mut applied = 0;
    for _ in 0..20 {
        let reply = send(
            http.post(stack.worker.url("/v1/admin/reconcile"))
                .bearer_auth(API_KEY),
        )
        .await;
        assert_eq!(reply.status, 200, "{}\n{}", reply.body, stack.worker.log());
        applied += reply.body["events_applied"].as_u64().expect("a count");
        if reply.body["lag"] == 0 && reply.body["repaired"] == 0 {
            return applied;
        }
    }
    panic!("the outbox never emptied");
}

#[tokio::test]
async fn counts_made_at_the_edge_reach_the_record_worker_and_read_back_through_the_edge() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = two_workers();
    let http = reqwest::Client::new();
    let item = "two-workers/counted";
    let at = |path: &str| {
        stack
            .worker
            .url(&format!("/v1/items/{}{path}", encode(item)))
    };

    for who in ["ann", "bob"] {
        let like = send(http.put(at("/like")).bearer_auth(token_for(who))).await;
        assert_eq!(like.status, 200, "{}", like.body);
    }
    let view = send(http.post(at("/views")).bearer_auth(token_for("ann"))).await;
    assert_eq!(view.body["counted"], true, "{}", view.body);
    let add = send(
        http.post(at("/counters/shares"))
            .bearer_auth(API_KEY)
            .json(&json!({"by": 5})),
    )
    .await;
    assert_eq!(add.status, 200, "{}", add.body);

    // The edge holds no record, yet wrote the outbox for the record Worker.
    assert_eq!(reconcile_fully(&http, &stack).await, 4);

    let record = http
        .get(format!("{}?source=record&who=ann", at("")))
        .bearer_auth(API_KEY)
        .header("Origin", ORIGIN)
        .send()
        .await
        .expect("the record read answers");
    assert_eq!(record.status(), 200);
    let headers = record.headers().clone();
    let body: Value = record.json().await.expect("JSON");
    assert_eq!(body["likes"], 2, "{body}");
    assert_eq!(body["views"], 1, "{body}");
    assert_eq!(body["liked"], true, "{body}");
    assert_eq!(body["counters"], json!({"shares": 5}), "{body}");
    let live = send(http.get(at(""))).await;
    assert_eq!(live.body["likes"], body["likes"]);
    assert_eq!(live.body["views"], body["views"]);
    // The record Worker's own CORS headers come back once, not doubled by the edge.
    let all = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ASCII").to_owned())
            .collect()
    };
    assert_eq!(all("access-control-allow-origin"), [ORIGIN]);
    assert_eq!(all("vary"), ["Origin"]);
}

#[tokio::test]
async fn an_import_and_a_merge_sent_to_the_edge_land_in_redis_and_in_the_record() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = two_workers();
    let http = reqwest::Client::new();
    let lines = concat!(
        r#"{"item": "two-workers/imported", "views": 40, "likes_base": 3}"#,
        "\n",
        r#"{"item": "two-workers/old", "views": 2}"#,
        "\n",
    );
    let import = send(
        http.post(stack.worker.url("/v1/admin/import"))
            .bearer_auth(API_KEY)
            .body(lines),
    )
    .await;
    assert_eq!(
        import.status,
        200,
        "{}\n{}",
        import.body,
        stack.worker.log()
    );
    assert_eq!(import.body["imported"], 2);
    let merge = send(
        http.post(
            stack
                .worker
                .url("/v1/admin/items/two-workers%2Fimported/merge"),
        )
        .bearer_auth(API_KEY)
        .json(&json!({"from": "two-workers/old"})),
    )
    .await;
    assert_eq!(merge.status, 200, "{}", merge.body);
    assert_eq!(merge.body["views"], 42);

    reconcile_fully(&http, &stack).await;
    let record = send(
        http.get(
            stack
                .worker
                .url("/v1/items/two-workers%2Fimported?source=record"),
        )
        .bearer_auth(API_KEY),
    )
    .await;
    assert_eq!(record.status, 200, "{}", record.body);
    assert_eq!(record.body["views"], 42);
    assert_eq!(record.body["likes"], 3);
    // A bad import is refused by the record Worker, through the edge, unchanged.
    let bad = send(
        http.post(stack.worker.url("/v1/admin/import"))
            .bearer_auth(API_KEY)
            .body("not json\n"),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.body["error"]["code"], "invalid_import");
    let keyless = send(http.post(stack.worker.url("/v1/admin/reconcile"))).await;
    assert_eq!(keyless.status, 401, "{}", keyless.body);
}

#[tokio::test]
async fn a_day_series_reaching_past_what_redis_keeps_is_answered_by_the_record_worker() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = two_workers();
    let http = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let day = 86_400;
    let (from, to) = (now - 500 * day, now - 490 * day);
    let series = send(http.get(stack.worker.url(&format!(
        "/v1/items/two-workers%2Fold-days/views/series?bucket=day&from={from}&to={to}"
    ))))
    .await;
    assert_eq!(
        series.status,
        200,
        "{}\n{}",
        series.body,
        stack.worker.log()
    );
    let points = series.body["points"].as_array().expect("points");
    assert_eq!(points.len(), 11, "{}", series.body);
    assert!(points.iter().all(|p| p["views"] == 0), "{}", series.body);
}

#[tokio::test]
async fn a_request_the_record_worker_answered_is_counted_in_the_metrics_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = two_workers();
    let http = reqwest::Client::new();
    const N: u64 = 3;
    for _ in 0..N {
        let reply = send(
            http.post(stack.worker.url("/v1/admin/reconcile"))
                .bearer_auth(API_KEY),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let counted = || async {
        let text = send_text(&http, &stack).await;
        text.lines()
            .filter(|l| {
                l.starts_with("tally_http_requests_total{")
                    && l.contains(r#"route="/v1/admin/reconcile""#)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while counted().await < N as f64 {
        assert!(
            Instant::now() < deadline,
            "never saw the {N} passes counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both Workers flush after each response: a second count would be in by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counted().await, N as f64);
}

async fn send_text(http: &reqwest::Client, stack: &Stack) -> String {
    let response = http
        .get(stack.worker.url("/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("metrics answers");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

#[tokio::test]
async fn the_edge_alone_keeps_no_outbox_and_answers_the_record_routes_503() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start_on(Redis::start(), VARS, Record::EdgeAlone);
    let http = reqwest::Client::new();
    let like = send(
        http.put(stack.worker.url("/v1/items/two-workers%2Falone/like"))
            .bearer_auth(token_for("ann")),
    )
    .await;
    assert_eq!(like.status, 200, "{}", like.body);
    assert_eq!(like.body["likes"], 1);
    let streams = stack.redis.cli(&["--scan", "--pattern", "*outbox*"]);
    assert_eq!(streams.trim(), "", "no record Worker, no outbox");
    for request in [
        http.post(stack.worker.url("/v1/admin/reconcile")),
        http.get(
            stack
                .worker
                .url("/v1/items/two-workers%2Falone?source=record"),
        ),
        http.post(stack.worker.url("/v1/admin/import")).body("{}\n"),
    ] {
        let reply = send(request.bearer_auth(API_KEY)).await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.body["error"]["code"], "record_unavailable");
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("`RECORD`"), "{message}");
    }
}
