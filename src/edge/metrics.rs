//! `GET /metrics` and `GET /openapi.json`, and this isolate's share of the
//! metrics: counted in memory while requests run, added to the shared Redis
//! hash after the response (`wait_until`), never on the response path.
//!
//! Where the figures live, and the trade-off: an isolate keeps only a small
//! delta; the totals live in one Redis hash ([`crate::metrics`]). A flush costs
//! one Redis command after a response, at most once per `METRICS_FLUSH_SECONDS`
//! (default 5) per isolate, so Redis sees a bounded number of extra commands
//! whatever the traffic. Counts still in an isolate that is evicted or crashes
//! before its flush are lost (at most those few seconds of that isolate), and
//! `/metrics` shows other isolates' latest seconds only once they flush.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use worker::{Context, Env, Request, Response, ResponseBody};

use super::config::Config;
use super::error::AppError;
use super::identity;
use crate::keys::Keys;
use crate::metrics::{Batch, FLIGHT_LEASE_MS, FLUSH, Metrics, Outbox, Outcome, UNMATCHED_ROUTE};
use crate::rest::{RestClient, RestObserver, RoundTrip};

/// The OpenAPI 3.1 document of the worker's API, served as is.
const OPENAPI: &str = include_str!("../../assets/openapi.json");

/// The content type of the OpenMetrics text exposition (what Prometheus asks for first).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The default and largest flush interval; `wait_until` work must end within 30 s.
const DEFAULT_FLUSH_SECONDS: f64 = 5.0;
const MAX_FLUSH_SECONDS: f64 = 25.0;

/// After a failed flush, wait at least this long before the next attempt.
const RETRY_AFTER_FAILURE_MS: f64 = 1_000.0;

/// Flushes chained by one task before it lets the next response start another.
const MAX_FLUSHES_PER_TASK: usize = 4;

thread_local! {
    /// This isolate's counts on their way to Redis (an isolate runs one thread).
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::new());
    /// A random name for this isolate, so Redis can tell its batches apart.
    static ISOLATE: String = format!(
        "{:013x}{:013x}",
        (worker::js_sys::Math::random() * 2f64.powi(52)) as u64,
        (worker::js_sys::Math::random() * 2f64.powi(52)) as u64,
    );
    /// When this isolate's pending or running flush task was scheduled (ms; 0: none).
    static FLUSH_TASK_SINCE: Cell<f64> = const { Cell::new(0.0) };
    /// When the next flush may start (ms since the epoch).
    static NEXT_FLUSH_AT: Cell<f64> = const { Cell::new(0.0) };
}

/// Milliseconds since the epoch. In Workers the clock advances only across
/// I/O, so durations measure time spent waiting, not CPU time.
pub fn now_ms() -> f64 {
    worker::js_sys::Date::now()
}

/// A duration from milliseconds; anything negative or not finite is zero.
fn millis(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default()
}

/// Counts every Redis REST round trip and NOSCRIPT fallback of a client.
#[derive(Debug)]
struct Observer;

impl RestObserver for Observer {
    fn round_trip(&self, trip: &RoundTrip<'_>) {
        let outcome = Outcome::of(trip.error);
        let took = millis(trip.millis);
        count(|m| m.round_trip(trip.command, trip.script, outcome, took));
    }

    fn noscript_fallback(&self, _script: &'static str) {
        count(Metrics::noscript_fallback);
    }
}

/// The observer that the request path's Redis client reports to.
pub fn observer() -> Arc<dyn RestObserver> {
    Arc::new(Observer)
}

fn count(f: impl FnOnce(&mut Metrics)) {
    OUTBOX.with(|outbox| f(outbox.borrow_mut().open()));
}

/// Counts a finished request and, off the response path, flushes this
/// isolate's counts. `route` is the route's pattern (`None`: no route matched).
pub fn record(
    ctx: &Context,
    env: &Env,
    route: Option<&'static str>,
    method: &str,
    response: &Response,
    started_ms: f64,
) {
    let route = route.unwrap_or(UNMATCHED_ROUTE);
    let status = response.status_code();
    let took = millis(now_ms() - started_ms);
    count(|m| {
        m.request(route, method, status, took);
        // A replayed answer (same Idempotency-Key) was counted the first time.
        let replayed = response
            .headers()
            .get("Idempotent-Replayed")
            .ok()
            .flatten()
            .is_some();
        if status == 200 && !replayed {
            outcome_of_body(m, route, response.body());
        }
    });
    schedule_flush(ctx, env);
}

/// Views and likes counted from the JSON the handler answered with, so the
/// handlers need no metrics code.
fn outcome_of_body(m: &mut Metrics, route: &str, body: &ResponseBody) {
    let ResponseBody::Body(bytes) = body else {
        return;
    };
    if route != "/v1/items/{item}/views" && route != "/v1/items/{item}/like" {
        return;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    let flag = |field: &str| json.get(field).and_then(serde_json::Value::as_bool);
    match (flag("counted"), flag("changed"), flag("liked")) {
        (Some(counted), _, _) => m.view(counted),
        (None, Some(true), Some(liked)) => m.like_changed(liked),
        _ => {}
    }
}

/// How often an isolate may flush, from `METRICS_FLUSH_SECONDS` (0 flushes
/// after every response; at most 25, as `wait_until` work must end in 30 s).
fn flush_interval_ms(env: &Env) -> f64 {
    env.var("METRICS_FLUSH_SECONDS")
        .ok()
        .and_then(|v| v.to_string().trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT_FLUSH_SECONDS)
        .min(MAX_FLUSH_SECONDS)
        * 1000.0
}

fn schedule_flush(ctx: &Context, env: &Env) {
    let pending = OUTBOX.with(|outbox| outbox.borrow().has_pending());
    // A task the runtime cancelled never clears its mark; after the lease, another may start.
    let since = FLUSH_TASK_SINCE.get();
    if !pending || (since > 0.0 && now_ms() - since < FLIGHT_LEASE_MS) {
        return;
    }
    // Without a working configuration there is nowhere to flush to; the
    // counts stay here until there is.
    let Ok(config) = Config::from_env(env) else {
        return;
    };
    FLUSH_TASK_SINCE.set(now_ms());
    let interval = flush_interval_ms(env);
    let wait = (NEXT_FLUSH_AT.get() - now_ms()).clamp(0.0, MAX_FLUSH_SECONDS * 1000.0);
    ctx.wait_until(async move {
        if wait > 0.0 {
            worker::Delay::from(millis(wait)).await;
        }
        let client = client(&config);
        let keys = Keys::new(config.settings.prefix.clone());
        for _ in 0..MAX_FLUSHES_PER_TASK {
            let Some(batch) = OUTBOX.with(|outbox| outbox.borrow_mut().begin(now_ms())) else {
                break;
            };
            let sent = send(&client, &keys, &batch, false).await;
            OUTBOX.with(|outbox| outbox.borrow_mut().finish(batch.seq, sent.is_ok()));
            let pause = if sent.is_ok() {
                interval
            } else {
                interval.max(RETRY_AFTER_FAILURE_MS)
            };
            NEXT_FLUSH_AT.set(now_ms() + pause);
            if let Err(e) = sent {
                worker::console_warn!("metrics flush failed, kept for the next one: {e}");
                break;
            }
            if interval > 0.0 {
                break;
            }
        }
        FLUSH_TASK_SINCE.set(0.0);
    });
}

/// A client for the metrics' own round trips: not observed, so flushing and
/// reading the metrics never count as traffic.
fn client(config: &Config) -> RestClient {
    RestClient::new(&config.redis_url, &config.redis_token, config.redis_timeout).with_clock(now_ms)
}

async fn send(
    client: &RestClient,
    keys: &Keys,
    batch: &Batch,
    read: bool,
) -> Result<serde_json::Value, crate::rest::RestError> {
    let isolate = ISOLATE.with(String::clone);
    let script_keys = [keys.metrics(), keys.metrics_batch(&isolate)];
    client.eval(&FLUSH, &script_keys, &batch.args(read)).await
}

/// `GET /metrics` (bearer `TALLY_API_KEY`): every isolate's counts, summed in
/// Redis, as OpenMetrics text. One round trip, which also adds this isolate's
/// pending counts.
pub async fn serve(req: &Request, config: &Config) -> Result<Response, AppError> {
    identity::api_key(req, config)?;
    let client = client(config);
    let keys = Keys::new(config.settings.prefix.clone());
    let batch = OUTBOX.with(|outbox| outbox.borrow_mut().begin(now_ms()));
    let hash = match &batch {
        Some(batch) => {
            let sent = send(&client, &keys, batch, true).await;
            OUTBOX.with(|outbox| outbox.borrow_mut().finish(batch.seq, sent.is_ok()));
            sent?
        }
        None => {
            let isolate = ISOLATE.with(String::clone);
            let script_keys = [keys.metrics(), keys.metrics_batch(&isolate)];
            client
                .eval(&FLUSH, &script_keys, &Batch::read_only_args())
                .await?
        }
    };
    let mut response = Response::ok(Metrics::from_hash(&hash).render())?;
    let headers = response.headers_mut();
    headers.set("Content-Type", OPENMETRICS)?;
    headers.set("Cache-Control", "no-store")?;
    Ok(response)
}

/// `GET /openapi.json`: the API's OpenAPI 3.1 document.
pub fn openapi() -> Result<Response, AppError> {
    let mut response = Response::ok(OPENAPI)?;
    let headers = response.headers_mut();
    headers.set("Content-Type", "application/json")?;
    headers.set("Cache-Control", "public, max-age=300")?;
    Ok(response)
}
