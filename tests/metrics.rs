//! `GET /metrics` end to end: the exposition parses with the official Python
//! Prometheus parser, counts are exact across the Redis flush, a timed-out
//! Redis call shows as a backend failure, and the key is required.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{API_KEY, GATEWAY_TOKEN, Gateway, Redis, Stack, Worker};
use tally::keys::Keys;
use tally::metrics::{Batch, FLUSH, Metrics, Outcome};
use tally::rest::RestClient;

/// One parsed sample: `(name, labels as sorted "k=v" pairs joined by ",")`.
type Samples = HashMap<(String, String), f64>;

/// Parses OpenMetrics text with `prometheus_client`'s strict OpenMetrics parser
/// (installed by `scripts/setup.sh --test`) and returns every sample.
fn parse(text: &str) -> Samples {
    const PARSER: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}\t{labels}\t{s.value}")
"#;
    support::python(PARSER, &[], text)
        .unwrap_or_else(|out| panic!("the exposition does not parse:\n{out}\n{text}"))
        .lines()
        .map(|line| {
            let mut parts = line.split('\t');
            let name = parts.next().unwrap_or_default().to_owned();
            let labels = parts.next().unwrap_or_default().to_owned();
            let value = parts.next().unwrap_or_default().parse().expect("a number");
            ((name, labels), value)
        })
        .collect()
}

fn sample(samples: &Samples, name: &str, labels: &str) -> f64 {
    samples
        .get(&(name.to_owned(), labels.to_owned()))
        .copied()
        .unwrap_or(0.0)
}

async fn scrape(http: &reqwest::Client, worker: &Worker) -> (String, Samples) {
    let response = http
        .get(worker.url("/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("metrics answers");
    assert_eq!(response.status(), 200, "{}", worker.log());
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.expect("body");
    let samples = parse(&text);
    (text, samples)
}

/// Scrapes until `done` holds (flushes land after responses), or panics.
async fn scrape_until(
    http: &reqwest::Client,
    worker: &Worker,
    what: &str,
    done: impl Fn(&Samples) -> bool,
) -> (String, Samples) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (text, samples) = scrape(http, worker).await;
        if done(&samples) {
            return (text, samples);
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_rendered_exposition_parses_with_the_official_parser() {
    let mut m = Metrics::new();
    m.request(
        "/v1/items/{item}/like",
        "PUT",
        200,
        Duration::from_millis(12),
    );
    m.request(
        "/v1/items/{item}/like",
        "PUT",
        429,
        Duration::from_micros(300),
    );
    m.request("/nowhere", "GET", 404, Duration::from_secs(3));
    m.round_trip(
        "EVALSHA",
        Some("like"),
        Outcome::Ok,
        Duration::from_millis(2),
    );
    m.noscript_fallback();
    m.view(true);
    m.like_changed(false);
    let samples = parse(&m.render());
    let like = "method=PUT,route=/v1/items/{item}/like";
    assert_eq!(
        sample(
            &samples,
            "tally_http_requests_total",
            &format!("{like},status=200")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "tally_http_request_duration_seconds_bucket",
            "le=0.001,route=/v1/items/{item}/like"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "tally_http_request_duration_seconds_bucket",
            "le=+Inf,route=unmatched"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "tally_rate_limited_total",
            "route=/v1/items/{item}/like"
        ),
        1.0
    );
    assert_eq!(
        sample(&samples, "tally_redis_noscript_fallbacks_total", ""),
        1.0
    );
    assert_eq!(
        sample(&samples, "tally_like_changes_total", "action=unlike"),
        1.0
    );
}

#[tokio::test]
async fn the_flush_script_adds_a_resent_batch_only_once() {
    let redis = Redis::start();
    let gateway = Gateway::start(&redis.url());
    let client = RestClient::new(gateway.url(), GATEWAY_TOKEN, Duration::from_secs(2));
    let keys = Keys::new("flush-test");
    let script_keys = [keys.metrics(), keys.metrics_batch("isolate-a")];
    let mut metrics = Metrics::new();
    metrics.view(true);
    metrics.view(true);
    let first = Batch { seq: 1, metrics };
    for _ in 0..3 {
        client
            .eval(&FLUSH, &script_keys, &first.args(false))
            .await
            .expect("flush");
    }
    let hash = client
        .eval(&FLUSH, &script_keys, &Batch::read_only_args())
        .await
        .expect("read");
    assert_eq!(Metrics::from_hash(&hash).get("views"), 2);

    let mut metrics = Metrics::new();
    metrics.view(true);
    let second = Batch { seq: 2, metrics };
    let hash = client
        .eval(&FLUSH, &script_keys, &second.args(true))
        .await
        .expect("flush and read");
    assert_eq!(Metrics::from_hash(&hash).get("views"), 3);
    let ttl: i64 = redis
        .cli(&["TTL", &keys.metrics_batch("isolate-a")])
        .parse()
        .unwrap();
    assert!(ttl > 0, "batch numbers expire");
}

#[tokio::test]
async fn metrics_need_the_api_key_and_count_exactly_the_requests_made() {
    let stack = Stack::start_with(&[("METRICS_FLUSH_SECONDS", "0")]);
    let http = reqwest::Client::new();

    let anonymous = http.get(stack.worker.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: serde_json::Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = http
        .get(stack.worker.url("/metrics"))
        .bearer_auth("not-the-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    const N: usize = 7;
    for _ in 0..N {
        let read = http
            .get(stack.worker.url("/v1/items/metrics-secret-item"))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "{}", stack.worker.log());
    }
    for _ in 0..2 {
        let view = http
            .post(stack.worker.url("/v1/items/metrics-viewed/views"))
            .header("User-Agent", "metrics-test")
            .send()
            .await
            .unwrap();
        assert_eq!(view.status(), 200);
    }
    // A counted view, then its replay: the replay counts nothing more.
    for _ in 0..2 {
        let view = http
            .post(stack.worker.url("/v1/items/metrics-viewed-once/views"))
            .header("User-Agent", "metrics-test")
            .header("Idempotency-Key", "metrics-replay")
            .send()
            .await
            .unwrap();
        assert_eq!(view.status(), 200);
    }

    let reads = "method=GET,route=/v1/items/{item},status=200";
    let views = "method=POST,route=/v1/items/{item}/views,status=200";
    let (text, samples) = scrape_until(&http, &stack.worker, "7 reads", |s| {
        sample(s, "tally_http_requests_total", reads) >= N as f64
            && sample(s, "tally_http_requests_total", views) >= 4.0
    })
    .await;
    assert_eq!(
        sample(&samples, "tally_http_requests_total", reads),
        N as f64
    );
    assert_eq!(sample(&samples, "tally_views_counted_total", ""), 2.0);
    assert_eq!(sample(&samples, "tally_view_dedupe_hits_total", ""), 1.0);
    assert_eq!(
        sample(
            &samples,
            "tally_http_request_duration_seconds_count",
            "route=/v1/items/{item}"
        ),
        N as f64
    );
    let trips: f64 = samples
        .iter()
        .filter(|((name, labels), _)| {
            name == "tally_redis_round_trips_total" && labels.contains("outcome=ok")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(
        trips >= (N + 2) as f64,
        "one round trip per request at least:\n{text}"
    );
    assert!(
        !text.contains("metrics-secret-item"),
        "item ids never become labels"
    );
    assert_eq!(
        sample(
            &samples,
            "tally_http_requests_total",
            "method=GET,route=/metrics,status=401"
        ),
        2.0
    );

    // Still exactly N a moment later: nothing is counted twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, again) = scrape(&http, &stack.worker).await;
    assert_eq!(sample(&again, "tally_http_requests_total", reads), N as f64);

    // Redis forgets its scripts: the next read's EVALSHA falls back to EVAL once.
    let fallbacks = sample(&again, "tally_redis_noscript_fallbacks_total", "");
    stack.redis.cli(&["SCRIPT", "FLUSH"]);
    let read = http
        .get(stack.worker.url("/v1/items/metrics-secret-item"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let (text, after) = scrape_until(&http, &stack.worker, "one more read", |s| {
        sample(s, "tally_http_requests_total", reads) > N as f64
    })
    .await;
    assert_eq!(
        sample(&after, "tally_redis_noscript_fallbacks_total", ""),
        fallbacks + 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_like_counts_once_per_change_and_a_repeat_counts_nothing() {
    let stack = Stack::start_with(&[("METRICS_FLUSH_SECONDS", "0")]);
    let http = reqwest::Client::new();
    let token = support::token_for("metrics-liker");
    let url = stack.worker.url("/v1/items/metrics-liked/like");
    // like, like again (no change), unlike, unlike again (no change)
    for request in [
        http.put(&url),
        http.put(&url),
        http.delete(&url),
        http.delete(&url),
    ] {
        let reply = request.bearer_auth(&token).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{}", stack.worker.log());
    }
    let likes = "method=PUT,route=/v1/items/{item}/like,status=200";
    let unlikes = "method=DELETE,route=/v1/items/{item}/like,status=200";
    let (text, samples) = scrape_until(&http, &stack.worker, "4 like requests", |s| {
        sample(s, "tally_http_requests_total", likes) >= 2.0
            && sample(s, "tally_http_requests_total", unlikes) >= 2.0
    })
    .await;
    assert_eq!(
        sample(&samples, "tally_like_changes_total", "action=like"),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&samples, "tally_like_changes_total", "action=unlike"),
        1.0,
        "{text}"
    );
}

/// Waits until the metrics hash counts `field` at least `at_least` times.
fn wait_for_field(redis: &Redis, field: &str, at_least: u64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count: u64 = redis
            .cli(&["HGET", "tally:{#metrics}", field])
            .parse()
            .unwrap_or(0);
        if count >= at_least {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{field} never reached {at_least}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_request_makes_one_round_trip_and_its_metrics_follow_after_the_response() {
    // A wide window, so a slow machine cannot blur "before" and "after".
    let stack = Stack::start_with(&[("METRICS_FLUSH_SECONDS", "10")]);
    // A connection per request: wrangler dev drops keep-alive connections idle
    // for 5 s, and this test idles longer than that.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = stack.worker.url("/v1/items/metrics-one-trip");
    let field = "req|/v1/items/{item}|GET|200";

    // Warm up: the read script gets cached; its flush opens a 10 s window.
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let flushed = wait_for_field(&stack.redis, field, 1);

    let before = stack.redis.script_calls();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let answered = Instant::now();
    assert_eq!(
        stack.redis.script_calls(),
        before + 1,
        "the response cost exactly one script call; the flush had not run yet"
    );
    assert!(
        answered - flushed < Duration::from_secs(8),
        "the window is still open"
    );

    let counted = wait_for_field(&stack.redis, field, 2);
    assert_eq!(stack.redis.script_calls(), before + 2, "then one flush");
    assert!(
        counted - flushed >= Duration::from_secs(9),
        "the flush waited for its window ({:?})",
        counted - flushed
    );
}

/// A TCP proxy to the gateway that can instead accept connections and never answer.
struct BlackHole {
    url: String,
    swallowing: Arc<AtomicBool>,
}

impl BlackHole {
    fn start(upstream: std::net::SocketAddr) -> BlackHole {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let swallowing = Arc::new(AtomicBool::new(true));
        let swallow = swallowing.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { break };
                if swallow.load(Ordering::SeqCst) {
                    // Hold the connection open, read nothing, answer nothing.
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(120));
                        drop(inbound);
                    });
                } else if let Ok(outbound) = std::net::TcpStream::connect(upstream) {
                    pipe(&inbound, &outbound);
                    pipe(&outbound, &inbound);
                }
            }
        });
        BlackHole { url, swallowing }
    }

    fn answer(&self) {
        self.swallowing.store(false, Ordering::SeqCst);
    }
}

/// Copies bytes from `from` to `to` on a thread of its own until either closes.
fn pipe(from: &std::net::TcpStream, to: &std::net::TcpStream) {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

#[tokio::test]
async fn a_redis_call_that_times_out_shows_in_the_failure_counter() {
    let redis = Redis::start();
    let gateway = Gateway::start(&redis.url());
    let hole = BlackHole::start(gateway.addr);
    let worker = Worker::start(
        &hole.url,
        &[("REDIS_TIMEOUT_MS", "1000"), ("METRICS_FLUSH_SECONDS", "0")],
    );
    let http = reqwest::Client::new();

    let started = Instant::now();
    let read = http
        .get(worker.url("/v1/items/metrics-timeout"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 503, "{}", worker.log());
    assert!(started.elapsed() < Duration::from_secs(5));

    // Meanwhile /metrics cannot read the totals: a 503, not partial figures.
    let scrape = http
        .get(worker.url("/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 503);
    assert!(scrape.headers().contains_key("retry-after"));
    let body: serde_json::Value = scrape.json().await.unwrap();
    assert_eq!(body["error"]["code"], "backend_unavailable");

    // Redis answers again; the failure, counted in the isolate, reaches the
    // hash with the next flush even though the first flush timed out too.
    hole.answer();
    let (text, samples) = scrape_until(&http, &worker, "the timeout", |s| {
        sample(s, "tally_backend_failures_total", "reason=timeout") >= 1.0
    })
    .await;
    assert_eq!(
        sample(&samples, "tally_backend_failures_total", "reason=timeout"),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &samples,
            "tally_http_requests_total",
            "method=GET,route=/v1/items/{item},status=503"
        ),
        1.0
    );
    let timed_out: f64 = samples
        .iter()
        .filter(|((name, labels), _)| {
            name == "tally_redis_round_trips_total" && labels.contains("outcome=timeout")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(timed_out, 1.0, "{text}");
}

#[test]
fn the_dashboard_reads_only_metrics_the_worker_exports() {
    let text = std::fs::read_to_string(support::root().join("dashboards/tally.json"))
        .expect("read dashboards/tally.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable makes the dashboard importable as is"
    );

    // Every series name the worker can export, from a delta with every family in it.
    let mut m = Metrics::new();
    m.request("/healthz", "GET", 429, Duration::from_millis(1));
    m.round_trip(
        "EVALSHA",
        Some("view"),
        Outcome::Timeout,
        Duration::from_millis(1),
    );
    m.noscript_fallback();
    m.view(true);
    m.view(false);
    m.like_changed(true);
    let exported: std::collections::HashSet<String> = parse(&m.render())
        .into_keys()
        .map(|(name, _)| name)
        .collect();

    let mut queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has a query");
            assert_eq!(target["datasource"]["uid"], "${datasource}");
            let names: Vec<&str> = expr
                .match_indices("tally_")
                .map(|(at, _)| {
                    let rest = &expr[at..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                        .unwrap_or(rest.len());
                    &rest[..end]
                })
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    exported.contains(name),
                    "{name} in `{expr}` is not exported"
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 10, "only {queries} queries");
}
