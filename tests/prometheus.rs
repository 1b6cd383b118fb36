//! The dashboard against a real Prometheus: Debian's `prometheus` (installed by
//! `scripts/setup.sh --test`) scrapes the worker's `/metrics` under `wrangler
//! dev` every second with the API key, traffic of every kind flows (including
//! a 429, a NOSCRIPT fallback and a Redis timeout), and every PromQL
//! expression in `dashboards/tally.json` is evaluated through the HTTP API.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{API_KEY, Stack, encode, token_for};

/// What `$__rate_interval` becomes: Grafana's value for a 1 s scrape is at
/// least four scrapes; 15 s holds enough samples for every `rate()`.
const RATE_INTERVAL: &str = "15s";

/// A Prometheus of our own, stopped (by its id) when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("a directory for Prometheus");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: tally\n    metrics_path: /metrics\n    scrape_interval: 1s\n    scrape_timeout: 1s\n\
             \x20   authorization:\n      type: Bearer\n      credentials: {API_KEY}\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("write prometheus.yml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "prometheus is installed: run scripts/setup.sh --test (apt-get install prometheus)",
            );
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The samples of an instant query: `(labels, value)`.
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Vec<(Value, f64)> {
        let reply: Value = http
            .get(format!("{}/api/v1/query?query={}", self.url, encode(expr)))
            .send()
            .await
            .expect("Prometheus answers")
            .json()
            .await
            .expect("JSON");
        assert_eq!(reply["status"], "success", "{expr}: {reply}");
        reply["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|s| {
                let value = s["value"][1].as_str().expect("a value").parse::<f64>();
                (s["metric"].clone(), value.unwrap_or(f64::NAN))
            })
            .collect()
    }
}

/// One round of every kind of request the dashboard shows, round `n`.
async fn traffic(http: &reqwest::Client, stack: &Stack, n: u64) {
    let url = |path: &str| stack.worker.url(path);
    let item = "/v1/items/prometheus-page";
    let reader = token_for(&format!("prom-reader-{n}"));
    let liker = token_for("prom-liker");
    let requests = [
        http.post(url(&format!("{item}/views")))
            .bearer_auth(&reader),
        http.post(url(&format!("{item}/views")))
            .bearer_auth(&reader),
        http.put(url(&format!("{item}/like"))).bearer_auth(&liker),
        http.delete(url(&format!("{item}/like")))
            .bearer_auth(&liker),
        http.get(url(item)),
        http.get(url("/v1/items?ids=prometheus-page,other")),
        http.get(url(&format!("{item}/views/series"))),
        http.get(url("/v1/trending")),
        http.post(url(&format!("{item}/counters/n")))
            .bearer_auth(API_KEY)
            .body(r#"{"by": 1}"#),
        http.post(url("/v1/visitors")),
        http.get(url("/healthz")),
        http.get(url("/v1/nowhere")),
    ];
    for request in requests {
        let _ = request.send().await.expect("the worker answers");
    }
}

fn dashboard_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(support::root().join("dashboards/tally.json"))
        .expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("JSON");
    let mut found = Vec::new();
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    found.push(expr.clone());
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(list) => list.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    walk(&dashboard, &mut found);
    found
}

#[tokio::test]
async fn every_dashboard_expression_has_finite_data_in_a_real_prometheus() {
    // Five writes a minute, so the liker is soon refused (429s); a 1 s Redis
    // timeout, so a paused Redis is a counted backend failure.
    let stack = Arc::new(Stack::start_with(&[
        ("RATE_LIMIT_PER_MINUTE", "5"),
        ("METRICS_FLUSH_SECONDS", "0"),
        ("REDIS_TIMEOUT_MS", "1000"),
    ]));
    let target = stack
        .worker
        .url("")
        .trim_start_matches("http://")
        .to_owned();
    let prometheus = Prometheus::start(target.trim_end_matches('/'));
    let http = reqwest::Client::new();

    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = format!("{}/-/ready", prometheus.url);
    while !http
        .get(&ready)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "Prometheus never became ready");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    loop {
        let up = prometheus.query(&http, "up{job=\"tally\"}").await;
        if up.first().is_some_and(|(_, v)| *v == 1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the worker: {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Traffic runs until every expression has been evaluated.
    let running = Arc::new(AtomicBool::new(true));
    let background = {
        let (stack, running, http) = (stack.clone(), running.clone(), http.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while running.load(Ordering::SeqCst) {
                traffic(&http, &stack, n).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A real NOSCRIPT: Redis forgets the scripts, the next calls send them again.
    assert_eq!(stack.redis.cli(&["SCRIPT", "FLUSH"]), "OK");
    // A real timeout: Redis stops answering for longer than REDIS_TIMEOUT_MS.
    assert_eq!(stack.redis.cli(&["CLIENT", "PAUSE", "2500", "ALL"]), "OK");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failures = "sum(tally_backend_failures_total)";
    let seen = Instant::now() + Duration::from_secs(30);
    while prometheus.query(&http, failures).await.is_empty() {
        assert!(
            Instant::now() < seen,
            "the timeout never reached Prometheus"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let every rate window hold traffic from after the pause.
    tokio::time::sleep(Duration::from_secs(16)).await;

    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 15, "{expressions:?}");
    let mut with_data = 0;
    let mut problems = Vec::new();
    for expr in &expressions {
        let concrete = expr
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$job", "tally");
        let samples = prometheus.query(&http, &concrete).await;
        let finite = !samples.is_empty() && samples.iter().all(|(_, v)| v.is_finite());
        let values: Vec<String> = samples.iter().map(|(_, v)| format!("{v:.4}")).collect();
        println!(
            "{} {} sample(s) [{}]: {concrete}",
            if finite { "data" } else { "NONE" },
            samples.len(),
            values.join(" ")
        );
        if finite {
            with_data += 1;
        } else {
            problems.push(format!("{concrete}: {samples:?}"));
        }
    }
    running.store(false, Ordering::SeqCst);
    background.await.expect("the traffic task");
    println!(
        "{with_data} of {} expressions returned finite data",
        expressions.len()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}
