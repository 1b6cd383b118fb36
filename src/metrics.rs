//! The worker's metrics: counted in each isolate, summed across isolates in one
//! Redis hash, and rendered as Prometheus (OpenMetrics) text.
//!
//! A worker isolate is short-lived and there are many, so no isolate's memory can
//! hold the figures. Each isolate counts into a [`Metrics`] delta; after a response
//! the edge seals the delta into a numbered [`Batch`] and adds it to the shared hash
//! with [`FLUSH_SCRIPT`] (one round trip, off the response path, via `wait_until`).
//! The script applies a batch only when its sequence number is above the last one
//! seen from that isolate, so a batch whose answer was lost can be sent again
//! without counting twice. `GET /metrics` sends the isolate's own pending batch
//! and reads the whole hash in the same round trip, then renders it here.
//!
//! Every field of the hash is `<family>|<label>|...` with labels from a closed
//! vocabulary (route patterns, never raw paths; a fixed list of outcomes), so the
//! number of series stays bounded and no item id reaches a label.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::{Registry, Unit};

use crate::rest::RestError;
use crate::scripts::Script;

/// Upper bounds of the latency histograms, in milliseconds: about 1.25x apart
/// from 1 ms to 2 s, so p50, p99 and p99.9 interpolate within ~20% of the truth.
pub const LATENCY_BUCKETS_MS: [f64; 33] = [
    1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0,
    60.0, 80.0, 100.0, 120.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0, 600.0, 800.0, 1000.0,
    1200.0, 1500.0, 2000.0,
];

/// The route patterns of the worker's router, as in the OpenAPI document. Requests
/// are labelled with these, never with the raw path, so no item id becomes a label.
pub const ROUTES: [&str; 14] = [
    "/",
    "/tally.js",
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/v1/visitors",
    "/v1/items",
    "/v1/items/{item}",
    "/v1/items/{item}/like",
    "/v1/items/{item}/views",
    "/v1/items/{item}/views/series",
    "/v1/items/{item}/counters/{name}",
    "/v1/items/{item}/badge.svg",
    "/v1/trending",
];

/// The route label of a path that matches no route (404s, scanners), and of any
/// label outside [`ROUTES`].
pub const UNMATCHED_ROUTE: &str = "unmatched";

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// The method label: the method itself when it is a standard one, else `OTHER`.
pub fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .copied()
        .find(|m| *m == method)
        .unwrap_or("OTHER")
}

/// How one Redis REST round trip ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Redis answered with a result.
    Ok,
    /// Redis ran the command and returned an error (NOSCRIPT included).
    RedisError,
    /// No answer within the client's timeout.
    Timeout,
    /// The request could not be sent or its answer not read.
    Transport,
    /// The REST server answered with an unexpected HTTP status.
    HttpStatus,
    /// The answer was not the protocol's JSON.
    Decode,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::RedisError,
        Outcome::Timeout,
        Outcome::Transport,
        Outcome::HttpStatus,
        Outcome::Decode,
    ];

    /// The outcome of a call that failed with `error`, or succeeded (`None`).
    pub fn of(error: Option<&RestError>) -> Outcome {
        match error {
            None => Outcome::Ok,
            Some(RestError::Redis(_)) => Outcome::RedisError,
            Some(RestError::Timeout) => Outcome::Timeout,
            Some(RestError::Transport(_)) => Outcome::Transport,
            Some(RestError::Status(_)) => Outcome::HttpStatus,
            Some(RestError::Decode(_)) => Outcome::Decode,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::RedisError => "redis_error",
            Outcome::Timeout => "timeout",
            Outcome::Transport => "transport",
            Outcome::HttpStatus => "http_status",
            Outcome::Decode => "decode",
        }
    }

    /// True when the backend itself failed (unreachable, slow, broken), as
    /// opposed to Redis answering a command with an error.
    pub fn is_backend_failure(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::RedisError)
    }
}

/// One exported metric family: its name, help and type.
struct Family {
    /// The hash-field prefix.
    tag: &'static str,
    /// The OpenMetrics name, without the `_total` or unit suffix.
    name: &'static str,
    help: &'static str,
    /// Label names, in field order; a histogram's bucket is not among them.
    labels: &'static [&'static str],
    histogram: bool,
}

const FAMILIES: [Family; 10] = [
    Family {
        tag: "req",
        name: "tally_http_requests",
        help: "Requests answered, by route pattern, method and status.",
        labels: &["route", "method", "status"],
        histogram: false,
    },
    Family {
        tag: "reqdur",
        name: "tally_http_request_duration",
        help: "Time from a request's arrival to its response, by route pattern.",
        labels: &["route"],
        histogram: true,
    },
    Family {
        tag: "rt",
        name: "tally_redis_round_trips",
        help: "Redis REST round trips, by command, script and outcome.",
        labels: &["command", "script", "outcome"],
        histogram: false,
    },
    Family {
        tag: "rtdur",
        name: "tally_redis_round_trip_duration",
        help: "Latency of Redis REST round trips, by command and script.",
        labels: &["command", "script"],
        histogram: true,
    },
    Family {
        tag: "noscript",
        name: "tally_redis_noscript_fallbacks",
        help: "EVALSHA calls answered NOSCRIPT and retried as EVAL.",
        labels: &[],
        histogram: false,
    },
    Family {
        tag: "fail",
        name: "tally_backend_failures",
        help: "Redis REST round trips that failed: timeout, transport, http_status or decode.",
        labels: &["reason"],
        histogram: false,
    },
    Family {
        tag: "rl",
        name: "tally_rate_limited",
        help: "Writes rejected with 429 by the rate limit, by route pattern.",
        labels: &["route"],
        histogram: false,
    },
    Family {
        tag: "dedupe",
        name: "tally_view_dedupe_hits",
        help: "Views answered but not counted (viewer seen within the dedupe window, or a bot).",
        labels: &[],
        histogram: false,
    },
    Family {
        tag: "views",
        name: "tally_views_counted",
        help: "Views counted.",
        labels: &[],
        histogram: false,
    },
    Family {
        tag: "likes",
        name: "tally_like_changes",
        help: "Likes that changed state, by action (like or unlike).",
        labels: &["action"],
        histogram: false,
    },
];

/// Counts of one isolate (a delta to add), or of all of them (read back).
///
/// Keys are hash fields, values are counts; a histogram is one field per bucket
/// (`b<upper bound in ms>`, `binf`) plus `sum` in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    fields: BTreeMap<String, u64>,
}

impl Metrics {
    /// No counts.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn add(&mut self, field: String, by: u64) {
        if by > 0 {
            *self.fields.entry(field).or_insert(0) += by;
        }
    }

    fn observe(&mut self, prefix: String, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .find(|bound| ms <= **bound)
            .map_or_else(|| "binf".to_owned(), |bound| format!("b{bound}"));
        self.add(format!("{prefix}|{bucket}"), 1);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.add(format!("{prefix}|sum"), micros);
        // The count is kept apart from the buckets so an observation of 0 µs still counts.
        self.add(format!("{prefix}|count"), 1);
    }

    /// A request answered: `route` is one of [`ROUTES`] (anything else counts as
    /// [`UNMATCHED_ROUTE`]).
    pub fn request(&mut self, route: &str, method: &str, status: u16, took: Duration) {
        let (route, method) = (known_route(route), method_label(method));
        self.add(format!("req|{route}|{method}|{status}"), 1);
        self.observe(format!("reqdur|{route}"), took);
        if status == 429 {
            self.add(format!("rl|{route}"), 1);
        }
    }

    /// One Redis REST round trip: `command` is its first word (`EVALSHA`,
    /// `PIPELINE`...), `script` the script's name when it ran one.
    pub fn round_trip(
        &mut self,
        command: &str,
        script: Option<&str>,
        outcome: Outcome,
        took: Duration,
    ) {
        let command = command_label(command);
        let script = script_label(script);
        self.add(format!("rt|{command}|{script}|{}", outcome.as_str()), 1);
        self.observe(format!("rtdur|{command}|{script}"), took);
        if outcome.is_backend_failure() {
            self.add(format!("fail|{}", outcome.as_str()), 1);
        }
    }

    /// An EVALSHA answered NOSCRIPT and was sent again as EVAL.
    pub fn noscript_fallback(&mut self) {
        self.add("noscript".to_owned(), 1);
    }

    /// A view was answered: counted, or not (a dedupe hit or a bot).
    pub fn view(&mut self, counted: bool) {
        self.add(if counted { "views" } else { "dedupe" }.to_owned(), 1);
    }

    /// A like or unlike that changed the state.
    pub fn like_changed(&mut self, liked: bool) {
        let action = if liked { "like" } else { "unlike" };
        self.add(format!("likes|{action}"), 1);
    }

    /// Adds every count of `other` to this one.
    pub fn merge(&mut self, other: &Metrics) {
        for (field, count) in &other.fields {
            self.add(field.clone(), *count);
        }
    }

    /// The count of one raw field, for tests and diagnostics.
    pub fn get(&self, field: &str) -> u64 {
        self.fields.get(field).copied().unwrap_or(0)
    }

    /// The flush script's ARGV tail: `field, count` pairs.
    pub fn to_args(&self) -> Vec<String> {
        self.fields
            .iter()
            .flat_map(|(field, count)| [field.clone(), count.to_string()])
            .collect()
    }

    /// Reads an `HGETALL` answer (a flat array `[field, value, ...]`). Fields of
    /// unknown families or labels (say, from another release) are skipped.
    pub fn from_hash(reply: &serde_json::Value) -> Metrics {
        let mut metrics = Metrics::new();
        let Some(flat) = reply.as_array() else {
            return metrics;
        };
        for pair in flat.chunks_exact(2) {
            let (Some(field), Some(value)) = (pair[0].as_str(), pair[1].as_str()) else {
                continue;
            };
            if let (Ok(count), true) = (value.parse::<u64>(), is_known_field(field)) {
                metrics.add(field.to_owned(), count);
            }
        }
        metrics
    }

    /// The OpenMetrics text exposition of these counts, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition(self.clone())));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

fn known_route(route: &str) -> &'static str {
    ROUTES
        .iter()
        .copied()
        .find(|r| *r == route)
        .unwrap_or(UNMATCHED_ROUTE)
}

/// A command name as a label: upper-case letters only, at most 16, else `OTHER`.
fn command_label(command: &str) -> String {
    let upper = command.to_ascii_uppercase();
    if (1..=16).contains(&upper.len()) && upper.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        upper
    } else {
        "OTHER".to_owned()
    }
}

/// A script name as a label: lower-case letters and `_`, at most 32, else `other`;
/// `none` for a plain command.
fn script_label(script: Option<&str>) -> &str {
    match script {
        None => "none",
        Some(name)
            if (1..=32).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            name
        }
        Some(_) => "other",
    }
}

fn is_known_label(name: &str, value: &str) -> bool {
    match name {
        "route" => value == UNMATCHED_ROUTE || ROUTES.contains(&value),
        "method" => value == "OTHER" || METHODS.contains(&value),
        "status" => value.len() == 3 && value.bytes().all(|b| b.is_ascii_digit()),
        "command" => command_label(value) == value,
        "script" => script_label(Some(value)) == value,
        "outcome" | "reason" => Outcome::ALL.iter().any(|o| o.as_str() == value),
        "action" => value == "like" || value == "unlike",
        _ => false,
    }
}

fn is_histogram_part(part: &str) -> bool {
    part == "sum"
        || part == "count"
        || part == "binf"
        || LATENCY_BUCKETS_MS
            .iter()
            .any(|bound| part.strip_prefix('b') == Some(&bound.to_string()))
}

fn is_known_field(field: &str) -> bool {
    let parts: Vec<&str> = field.split('|').collect();
    let Some(family) = FAMILIES.iter().find(|f| f.tag == parts[0]) else {
        return false;
    };
    let labels = &parts[1..];
    let labels = if family.histogram {
        match labels.split_last() {
            Some((part, rest)) if is_histogram_part(part) => rest,
            _ => return false,
        }
    } else {
        labels
    };
    labels.len() == family.labels.len()
        && family
            .labels
            .iter()
            .zip(labels)
            .all(|(name, value)| is_known_label(name, value))
}

/// Renders a [`Metrics`] through `prometheus-client`'s encoder.
#[derive(Debug)]
struct Exposition(Metrics);

impl Exposition {
    /// Label values -> count, for the fields of `family` (histograms: -> part -> count).
    fn series<'a>(&'a self, family: &Family) -> BTreeMap<Vec<&'a str>, BTreeMap<&'a str, u64>> {
        let mut series: BTreeMap<Vec<&str>, BTreeMap<&str, u64>> = BTreeMap::new();
        for (field, count) in &self.0.fields {
            let mut parts: Vec<&str> = field.split('|').collect();
            if parts.first() != Some(&family.tag) {
                continue;
            }
            parts.remove(0);
            let part = if family.histogram {
                parts.pop().unwrap_or("")
            } else {
                ""
            };
            *series.entry(parts).or_default().entry(part).or_insert(0) += count;
        }
        series
    }
}

impl prometheus_client::collector::Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &FAMILIES {
            let series = self.series(family);
            let (kind, unit) = if family.histogram {
                (MetricType::Histogram, Some(&Unit::Seconds))
            } else {
                (MetricType::Counter, None)
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, unit, kind)?;
            if family.labels.is_empty() {
                let total: u64 = series.values().flat_map(|parts| parts.values()).sum();
                ConstCounter::new(total).encode(metric)?;
                continue;
            }
            for (values, parts) in &series {
                let labels: Vec<(&str, &str)> = family
                    .labels
                    .iter()
                    .copied()
                    .zip(values.iter().copied())
                    .collect();
                let mut one = metric.encode_family(&labels)?;
                if family.histogram {
                    let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MS
                        .iter()
                        .map(|ms| {
                            (
                                ms / 1000.0,
                                parts.get(format!("b{ms}").as_str()).copied().unwrap_or(0),
                            )
                        })
                        .collect();
                    buckets.push((f64::MAX, parts.get("binf").copied().unwrap_or(0)));
                    let count = parts.get("count").copied().unwrap_or(0);
                    let sum = parts.get("sum").copied().unwrap_or(0) as f64 / 1e6;
                    one.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
                } else {
                    let total: u64 = parts.values().sum();
                    ConstCounter::new(total).encode(one)?;
                }
            }
        }
        Ok(())
    }
}

/// Adds a batch to the shared hash at most once and, when asked, returns the hash.
///
/// KEYS: the metrics hash, the isolate's last applied batch number
/// ([`crate::keys::Keys::metrics`], [`crate::keys::Keys::metrics_batch`]); ARGV:
/// [`Batch::args`] or [`Batch::read_only_args`].
pub static FLUSH: Script = Script::new("metrics_flush", include_str!("metrics/flush.lua"));

/// How long Redis remembers an isolate's last batch number: far longer than an
/// isolate lives, so a resent batch is always recognised.
pub const BATCH_MEMORY_SECONDS: u64 = 86_400;

/// A sealed, numbered delta from one isolate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Increases by one per batch of an isolate; the script applies each once.
    pub seq: u64,
    /// The counts to add.
    pub metrics: Metrics,
}

impl Batch {
    /// The flush script's ARGV for this batch; `read` asks for the hash back.
    pub fn args(&self, read: bool) -> Vec<String> {
        let mut args = vec![
            self.seq.to_string(),
            BATCH_MEMORY_SECONDS.to_string(),
            if read { "1" } else { "0" }.to_owned(),
        ];
        args.extend(self.metrics.to_args());
        args
    }

    /// The ARGV of a read that adds nothing.
    pub fn read_only_args() -> Vec<String> {
        vec!["0".to_owned(), "0".to_owned(), "1".to_owned()]
    }
}

/// How long a batch may stay in flight before it is presumed lost and may be
/// sent again (safe: the flush script applies each number once). Covers a
/// `wait_until` task that the runtime cancelled halfway.
pub const FLIGHT_LEASE_MS: f64 = 60_000.0;

/// One isolate's counts on their way to Redis: what is still open, and at most
/// one sealed batch that is in flight or waiting to be sent again.
#[derive(Debug, Default)]
pub struct Outbox {
    open: Metrics,
    sealed: Option<Batch>,
    /// The number of the batch in flight and when it left (ms).
    in_flight: Option<(u64, f64)>,
    next_seq: u64,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox {
            next_seq: 1,
            ..Outbox::default()
        }
    }

    /// Where new counts go.
    pub fn open(&mut self) -> &mut Metrics {
        &mut self.open
    }

    /// The batch to send at `now_ms`, if any: the sealed one again (a retry),
    /// else the open counts sealed under the next number. `None` while a batch
    /// is in flight (for up to [`FLIGHT_LEASE_MS`]), so numbers reach Redis in order.
    pub fn begin(&mut self, now_ms: f64) -> Option<Batch> {
        if let Some((_, since)) = self.in_flight
            && now_ms - since < FLIGHT_LEASE_MS
        {
            return None;
        }
        if self.sealed.is_none() && !self.open.is_empty() {
            let metrics = std::mem::take(&mut self.open);
            self.sealed = Some(Batch {
                seq: self.next_seq,
                metrics,
            });
            self.next_seq += 1;
        }
        let batch = self.sealed.clone()?;
        self.in_flight = Some((batch.seq, now_ms));
        Some(batch)
    }

    /// Ends the flight of batch `seq` begun by [`Outbox::begin`]: a delivered
    /// batch is dropped, a failed one is kept to be sent again under its number.
    /// A late answer for an older flight changes nothing else.
    pub fn finish(&mut self, seq: u64, delivered: bool) {
        if self.in_flight.is_some_and(|(flying, _)| flying == seq) {
            self.in_flight = None;
        }
        if delivered && self.sealed.as_ref().is_some_and(|b| b.seq == seq) {
            self.sealed = None;
        }
    }

    /// True when counts wait to be sent.
    pub fn has_pending(&self) -> bool {
        !self.open.is_empty() || self.sealed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_request_is_counted_by_pattern_method_and_status_with_its_latency_bucket() {
        let mut m = Metrics::new();
        m.request("/v1/items/{item}/like", "PUT", 200, ms(7));
        m.request("/v1/items/{item}/like", "PUT", 200, ms(2500));
        assert_eq!(m.get("req|/v1/items/{item}/like|PUT|200"), 2);
        assert_eq!(m.get("reqdur|/v1/items/{item}/like|b8"), 1);
        assert_eq!(m.get("reqdur|/v1/items/{item}/like|binf"), 1);
        assert_eq!(m.get("reqdur|/v1/items/{item}/like|count"), 2);
        assert_eq!(m.get("reqdur|/v1/items/{item}/like|sum"), 2_507_000);
    }

    #[test]
    fn an_unknown_route_or_method_collapses_into_one_label() {
        let mut m = Metrics::new();
        m.request("/v1/items/secret-item/like", "BREW", 404, ms(1));
        assert_eq!(m.get("req|unmatched|OTHER|404"), 1);
        assert!(m.to_args().iter().all(|field| !field.contains("secret")));
    }

    #[test]
    fn a_429_also_counts_as_a_rate_limit_rejection() {
        let mut m = Metrics::new();
        m.request("/v1/items/{item}/views", "POST", 429, ms(3));
        assert_eq!(m.get("rl|/v1/items/{item}/views"), 1);
    }

    #[test]
    fn timeouts_are_backend_failures_and_redis_errors_are_not() {
        let mut m = Metrics::new();
        let noscript = RestError::Redis("NOSCRIPT".into());
        let timeout = RestError::Timeout;
        m.round_trip(
            "evalsha",
            Some("view"),
            Outcome::of(Some(&timeout)),
            ms(2000),
        );
        m.round_trip("EVALSHA", Some("view"), Outcome::of(Some(&noscript)), ms(1));
        assert_eq!(m.get("rt|EVALSHA|view|timeout"), 1);
        assert_eq!(m.get("rt|EVALSHA|view|redis_error"), 1);
        assert_eq!(m.get("fail|timeout"), 1);
        assert_eq!(m.get("fail|redis_error"), 0);
        assert_eq!(m.get("rtdur|EVALSHA|view|count"), 2);
    }

    #[test]
    fn counts_survive_the_trip_through_a_redis_hash() {
        let mut m = Metrics::new();
        m.request("/healthz", "GET", 200, ms(4));
        m.round_trip("PING", None, Outcome::Ok, ms(1));
        m.noscript_fallback();
        m.view(false);
        m.view(true);
        m.like_changed(true);
        let reply = serde_json::Value::from(m.to_args());
        assert_eq!(Metrics::from_hash(&reply), m);
    }

    #[test]
    fn fields_with_unknown_families_or_labels_are_not_read_back() {
        let reply = serde_json::json!([
            "req|/v1/items/a-raw-item/like|PUT|200",
            "5",
            "req|/healthz|GET|200",
            "2",
            "bogus|x",
            "1",
            "rtdur|PING|none|b7",
            "1",
            "rt|PING|Robert'); DROP|ok",
            "1",
            "views",
            "not-a-number",
        ]);
        let m = Metrics::from_hash(&reply);
        assert_eq!(
            m.to_args(),
            vec!["req|/healthz|GET|200".to_owned(), "2".to_owned()]
        );
    }

    #[test]
    fn the_exposition_has_cumulative_buckets_totals_and_an_eof() {
        let mut m = Metrics::new();
        m.request("/healthz", "GET", 200, ms(1));
        m.request("/healthz", "GET", 503, ms(40));
        let text = m.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains(
            "tally_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"503\"} 1\n"
        ));
        assert!(
            text.contains(
                "tally_http_request_duration_seconds_bucket{le=\"0.001\",route=\"/healthz\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "tally_http_request_duration_seconds_bucket{le=\"0.04\",route=\"/healthz\"} 2\n"
        ));
        assert!(text.contains(
            "tally_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/healthz\"} 2\n"
        ));
        assert!(text.contains("tally_http_request_duration_seconds_count{route=\"/healthz\"} 2\n"));
        assert!(text.contains("tally_redis_noscript_fallbacks_total 0\n"));
    }

    #[test]
    fn a_failed_batch_is_sent_again_under_the_same_number() {
        let mut outbox = Outbox::new();
        outbox.open().view(true);
        let first = outbox.begin(0.0).unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(outbox.begin(1.0), None, "one batch in flight at a time");
        outbox.open().view(true);
        outbox.finish(1, false);
        assert_eq!(outbox.begin(2.0).unwrap(), first, "the same batch again");
        outbox.finish(1, true);
        let second = outbox.begin(3.0).unwrap();
        assert_eq!(second.seq, 2);
        assert_eq!(second.metrics.get("views"), 1);
        outbox.finish(2, true);
        assert!(!outbox.has_pending());
        assert_eq!(outbox.begin(4.0), None);
    }

    #[test]
    fn a_flight_that_never_ends_is_presumed_lost_after_the_lease() {
        let mut outbox = Outbox::new();
        outbox.open().view(true);
        let lost = outbox.begin(0.0).unwrap();
        assert_eq!(outbox.begin(FLIGHT_LEASE_MS - 1.0), None);
        assert_eq!(outbox.begin(FLIGHT_LEASE_MS).unwrap(), lost);
        outbox.finish(1, true);
        outbox.open().view(false);
        let next = outbox.begin(FLIGHT_LEASE_MS + 1.0).unwrap();
        // The lost flight's late answer must not drop the next batch.
        outbox.finish(1, true);
        assert!(outbox.has_pending());
        assert_eq!(outbox.begin(FLIGHT_LEASE_MS + 2.0), None);
        outbox.finish(next.seq, true);
        assert!(!outbox.has_pending());
    }
}
