//! `GET /metrics`, and this isolate's share of the metrics: counted in memory while requests run, added to the shared Redis
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
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use worker::Context;

use super::config::{Config, MAX_FLUSH_SECONDS};
use super::error::AppError;
use super::http::{Incoming, Reply, clock_ms, now_ms};
use super::identity;
use super::jobs;
use crate::keys::Keys;
use crate::metrics::{Batch, FLIGHT_LEASE_MS, FLUSH, Metrics, Outbox, Outcome, UNMATCHED_ROUTE};
use crate::rest::{RestClient, RestObserver, RoundTrip};

/// The content type of the OpenMetrics text exposition (what Prometheus asks for first).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// A view was answered (not a replay): counted, or not (a dedupe hit or a bot).
pub fn view(counted: bool) {
    count(|m| m.view(counted));
}

/// A like or unlike changed the state (not a replay, not a no-op).
pub fn like_changed(liked: bool) {
    count(|m| m.like_changed(liked));
}

/// Counts a finished request and, off the response path, flushes this
/// isolate's counts. `route` is the route's pattern (`None`: no route
/// matched); `config` is `None` on a misconfigured worker, which keeps its
/// counts until it can flush them.
pub fn record(
    ctx: &Context,
    config: Option<Rc<Config>>,
    flush_interval_ms: f64,
    route: Option<&'static str>,
    method: &str,
    status: u16,
    started_ms: f64,
) {
    let route = route.unwrap_or(UNMATCHED_ROUTE);
    let now = clock_ms();
    let took = millis(now - started_ms);
    count(|m| m.request(route, method, status, took));
    if let Some(config) = config {
        schedule_flush(ctx, config, flush_interval_ms, now);
    }
}

/// Starts a flush task at `now` (ms) unless one is under way or nothing is
/// pending. The cheap check first: while a task waits out its interval, the
/// many requests meanwhile compare no counts and read no clock.
fn schedule_flush(ctx: &Context, config: Rc<Config>, interval: f64, now: f64) {
    // A task the runtime cancelled never clears its mark; after the lease, another may start.
    let since = FLUSH_TASK_SINCE.get();
    if since > 0.0 && now - since < FLIGHT_LEASE_MS {
        return;
    }
    if !OUTBOX.with(|outbox| outbox.borrow().has_pending()) {
        return;
    }
    FLUSH_TASK_SINCE.set(now);
    let wait = (NEXT_FLUSH_AT.get() - now).clamp(0.0, MAX_FLUSH_SECONDS * 1000.0);
    jobs::wait_until(ctx, async move {
        if wait > 0.0 {
            jobs::sleep(millis(wait)).await;
        }
        let client = config.unobserved_client();
        let keys = config.engine().keys();
        for _ in 0..MAX_FLUSHES_PER_TASK {
            let Some(batch) = OUTBOX.with(|outbox| outbox.borrow_mut().begin(now_ms())) else {
                break;
            };
            let sent = send(client, keys, &batch, false).await;
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
pub async fn serve(req: &Incoming, config: &Config) -> Result<Reply, AppError> {
    identity::api_key(req, config)?;
    let client = config.unobserved_client();
    let keys = config.engine().keys();
    let batch = OUTBOX.with(|outbox| outbox.borrow_mut().begin(now_ms()));
    let hash = match &batch {
        Some(batch) => {
            let sent = send(client, keys, batch, true).await;
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
    // The outbox's lag is read at scrape, when the outbox is on (a record is bound).
    let lag = if config.engine().settings().outbox {
        match config.engine().outbox_lag().await {
            Ok(lag) => Some(lag),
            Err(e) => {
                worker::console_warn!("metrics: the outbox lag could not be read: {e}");
                None
            }
        }
    } else {
        None
    };
    let text = Metrics::from_hash(&hash).render_with_lag(lag);
    let mut reply = Reply::bytes(200, text.into_bytes());
    reply
        .header("Content-Type", OPENMETRICS)
        .header("Cache-Control", "no-store");
    Ok(reply)
}
