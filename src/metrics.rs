//! The worker's metrics: counted in each isolate, summed across isolates in one
//! Redis hash, and rendered as Prometheus (OpenMetrics) text.
//!
//! A worker isolate is short-lived and there are many, so no isolate's memory can
//! hold the figures. Each isolate counts into a [`Metrics`] delta; after a response
//! the edge seals the delta into a numbered [`Batch`] and adds it to the shared hash
//! with [`FLUSH`] (one round trip, off the response path, via `wait_until`).
//! The script applies a batch only when its sequence number is above the last one
//! seen from that isolate, so a batch whose answer was lost can be sent again
//! without counting twice. `GET /metrics` sends the isolate's own pending batch
//! and reads the whole hash in the same round trip, then renders it here.
//!
//! Every field of the hash is `<family>|<label>|...` with labels from a closed
//! vocabulary (route patterns, never raw paths; a fixed list of outcomes), so the
//! number of series stays bounded and no item id reaches a label.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

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
pub const ROUTES: [&str; 17] = [
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
    "/v1/admin/import",
    "/v1/admin/items/{item}/merge",
    "/v1/admin/reconcile",
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

    /// The outcome a label value names.
    pub fn parse(label: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == label)
    }

    /// The outcome's place in [`Outcome::ALL`] (a counter slot).
    fn index(self) -> usize {
        self as usize
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

const FAMILIES: [Family; 14] = [
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
    Family {
        tag: "recpass",
        name: "tally_record_passes",
        help: "Reconciliation passes, by outcome: applied, idle (nothing to apply), busy (another pass held the lease), superseded (another pass applied the batch first) or failed.",
        labels: &["outcome"],
        histogram: false,
    },
    Family {
        tag: "recev",
        name: "tally_record_events_applied",
        help: "Outbox events applied to the system of record (D1).",
        labels: &[],
        histogram: false,
    },
    Family {
        tag: "recrep",
        name: "tally_record_repairs",
        help: "Items whose live counts the drift check restored from the system of record.",
        labels: &[],
        histogram: false,
    },
    Family {
        tag: "unreadable",
        name: "tally_outbox_unreadable",
        help: "Outbox entries the reconciliation pass could not read, skipped and logged.",
        labels: &[],
        histogram: false,
    },
];

/// How a reconciliation pass ended (the `outcome` label of `tally_record_passes`).
pub const PASS_OUTCOMES: [&str; 5] = ["applied", "idle", "busy", "superseded", "failed"];

/// Route slots: one per [`ROUTES`] entry, then [`UNMATCHED_ROUTE`].
const ROUTE_SLOTS: usize = ROUTES.len() + 1;
/// Bucket slots of a histogram: one per [`LATENCY_BUCKETS_MS`] bound, then `+Inf`.
const BUCKET_SLOTS: usize = LATENCY_BUCKETS_MS.len() + 1;
/// The `like` / `unlike` label values, by slot.
const ACTIONS: [&str; 2] = ["like", "unlike"];

/// Each bucket's hash-field part, `b<bound in ms>`, as [`LATENCY_BUCKETS_MS`].
const BUCKET_FIELDS: [&str; 33] = [
    "b1", "b1.5", "b2", "b2.5", "b3", "b4", "b5", "b6", "b8", "b10", "b12", "b15", "b20", "b25",
    "b30", "b40", "b50", "b60", "b80", "b100", "b120", "b150", "b200", "b250", "b300", "b400",
    "b500", "b600", "b800", "b1000", "b1200", "b1500", "b2000",
];

/// Each bucket's `le` label in the exposition, in seconds, as [`LATENCY_BUCKETS_MS`].
const BUCKET_BOUNDS: [&str; 33] = [
    "0.001", "0.0015", "0.002", "0.0025", "0.003", "0.004", "0.005", "0.006", "0.008", "0.01",
    "0.012", "0.015", "0.02", "0.025", "0.03", "0.04", "0.05", "0.06", "0.08", "0.1", "0.12",
    "0.15", "0.2", "0.25", "0.3", "0.4", "0.5", "0.6", "0.8", "1.0", "1.2", "1.5", "2.0",
];

/// A latency histogram: a count per bucket (not cumulative), the sum in
/// microseconds and the number of observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Histogram {
    buckets: [u64; BUCKET_SLOTS],
    sum_micros: u64,
    count: u64,
}

impl Histogram {
    const EMPTY: Histogram = Histogram {
        buckets: [0; BUCKET_SLOTS],
        sum_micros: 0,
        count: 0,
    };

    fn observe(&mut self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let slot = LATENCY_BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[slot] += 1;
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros = self.sum_micros.saturating_add(micros);
        // The count is kept apart from the buckets so an observation of 0 µs still counts.
        self.count += 1;
    }

    fn is_empty(&self) -> bool {
        *self == Histogram::EMPTY
    }

    /// The slot a hash-field part (`b<ms>`, `binf`) names; `sum` and `count` are not slots.
    fn slot(part: &str) -> Option<usize> {
        if part == "binf" {
            return Some(LATENCY_BUCKETS_MS.len());
        }
        BUCKET_FIELDS.iter().position(|field| *field == part)
    }

    fn is_part(part: &str) -> bool {
        part == "sum" || part == "count" || Histogram::slot(part).is_some()
    }

    /// Adds `n` to one hash-field part; false for a part that does not exist.
    fn add_part(&mut self, part: &str, n: u64) -> bool {
        let target = match part {
            "sum" => &mut self.sum_micros,
            "count" => &mut self.count,
            _ => match Histogram::slot(part) {
                Some(slot) => &mut self.buckets[slot],
                None => return false,
            },
        };
        *target = target.saturating_add(n);
        true
    }

    /// Appends the `prefix|part, count` pairs of every part that is not 0.
    fn push_args(&self, prefix: &str, args: &mut Vec<String>) {
        for (slot, n) in self.buckets.iter().enumerate() {
            let part = BUCKET_FIELDS.get(slot).copied().unwrap_or("binf");
            push_arg(args, format!("{prefix}|{part}"), *n);
        }
        push_arg(args, format!("{prefix}|sum"), self.sum_micros);
        push_arg(args, format!("{prefix}|count"), self.count);
    }

    /// Writes the `_sum`, `_count` and cumulative `_bucket` samples of one series.
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", seconds(self.sum_micros));
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
        let mut cumulative = 0;
        for (slot, n) in self.buckets.iter().enumerate() {
            cumulative += n;
            let le = BUCKET_BOUNDS.get(slot).copied().unwrap_or("+Inf");
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\",{labels}}} {cumulative}");
        }
    }
}

/// Microseconds as decimal seconds, exactly (`2.507`, `0.0`).
fn seconds(micros: u64) -> String {
    let (whole, fraction) = (micros / 1_000_000, micros % 1_000_000);
    if fraction == 0 {
        return format!("{whole}.0");
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

fn push_arg(args: &mut Vec<String>, field: String, n: u64) {
    if n > 0 {
        args.push(field);
        args.push(n.to_string());
    }
}

/// One (command, script) pair's round trips.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoundTrips {
    command: String,
    script: String,
    /// By [`Outcome::index`].
    outcomes: [u64; Outcome::ALL.len()],
    duration: Histogram,
}

/// Counts of one isolate (a delta to add), or of all of them (read back).
///
/// Plain counters at fixed places: arrays indexed by route, outcome and bucket,
/// and two small sorted tables (route × method × status, and command × script)
/// that stop growing once the isolate has seen its few combinations, so
/// counting a request allocates nothing. Hash fields (`<family>|<labels>`) are
/// built only when a batch is flushed, and text only when `/metrics` renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// `((route slot, method slot, status), requests)`, sorted by key.
    requests: Vec<((u8, u8, u16), u64)>,
    /// By route slot.
    request_durations: [Histogram; ROUTE_SLOTS],
    /// `429`s by route slot.
    rate_limited: [u64; ROUTE_SLOTS],
    /// Sorted by (command, script).
    round_trips: Vec<RoundTrips>,
    noscript: u64,
    /// By [`Outcome::index`]; only backend failures are counted.
    failures: [u64; Outcome::ALL.len()],
    dedupe: u64,
    views: u64,
    /// By [`ACTIONS`] slot.
    likes: [u64; ACTIONS.len()],
    /// Reconciliation passes by [`PASS_OUTCOMES`] slot.
    passes: [u64; PASS_OUTCOMES.len()],
    /// Outbox events applied to the record.
    events_applied: u64,
    /// Items repaired from the record.
    repairs: u64,
    /// Outbox entries skipped as unreadable.
    unreadable: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Vec::new(),
            request_durations: [Histogram::EMPTY; ROUTE_SLOTS],
            rate_limited: [0; ROUTE_SLOTS],
            round_trips: Vec::new(),
            noscript: 0,
            failures: [0; Outcome::ALL.len()],
            dedupe: 0,
            views: 0,
            likes: [0; ACTIONS.len()],
            passes: [0; PASS_OUTCOMES.len()],
            events_applied: 0,
            repairs: 0,
            unreadable: 0,
        }
    }
}

impl Metrics {
    /// No counts.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == Metrics::default()
    }

    /// A request answered: `route` is one of [`ROUTES`] (anything else counts as
    /// [`UNMATCHED_ROUTE`]).
    pub fn request(&mut self, route: &str, method: &str, status: u16, took: Duration) {
        let route = route_slot(route).unwrap_or(ROUTES.len());
        let method = method_slot(method).unwrap_or(METHODS.len());
        self.add_requests(route, method, status, 1);
        self.request_durations[route].observe(took);
        if status == 429 {
            self.rate_limited[route] += 1;
        }
    }

    fn add_requests(&mut self, route: usize, method: usize, status: u16, n: u64) {
        // Slots are below 16: they fit a u8.
        let key = (route as u8, method as u8, status);
        match self.requests.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(at) => self.requests[at].1 = self.requests[at].1.saturating_add(n),
            Err(at) => self.requests.insert(at, (key, n)),
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
        let series = self.round_trips_of(&command, script_label(script));
        series.outcomes[outcome.index()] += 1;
        series.duration.observe(took);
        if outcome.is_backend_failure() {
            self.failures[outcome.index()] += 1;
        }
    }

    /// The series of one (command, script) pair, added on first use.
    fn round_trips_of(&mut self, command: &str, script: &str) -> &mut RoundTrips {
        let at = match self
            .round_trips
            .binary_search_by(|s| (s.command.as_str(), s.script.as_str()).cmp(&(command, script)))
        {
            Ok(at) => at,
            Err(at) => {
                let series = RoundTrips {
                    command: command.to_owned(),
                    script: script.to_owned(),
                    outcomes: [0; Outcome::ALL.len()],
                    duration: Histogram::EMPTY,
                };
                self.round_trips.insert(at, series);
                at
            }
        };
        &mut self.round_trips[at]
    }

    /// An EVALSHA answered NOSCRIPT and was sent again as EVAL.
    pub fn noscript_fallback(&mut self) {
        self.noscript += 1;
    }

    /// A view was answered: counted, or not (a dedupe hit or a bot).
    pub fn view(&mut self, counted: bool) {
        if counted {
            self.views += 1;
        } else {
            self.dedupe += 1;
        }
    }

    /// A like or unlike that changed the state.
    pub fn like_changed(&mut self, liked: bool) {
        self.likes[usize::from(!liked)] += 1;
    }

    /// A reconciliation pass ended with `outcome` (one of [`PASS_OUTCOMES`];
    /// anything else counts as `failed`), having applied `events`, repaired
    /// `repairs` items and skipped `unreadable` outbox entries.
    pub fn record_pass(&mut self, outcome: &str, events: u64, repairs: u64, unreadable: u64) {
        let slot = PASS_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(PASS_OUTCOMES.len() - 1);
        self.passes[slot] += 1;
        self.events_applied = self.events_applied.saturating_add(events);
        self.repairs = self.repairs.saturating_add(repairs);
        self.unreadable = self.unreadable.saturating_add(unreadable);
    }

    /// The count of one raw hash field, for tests and diagnostics.
    pub fn get(&self, field: &str) -> u64 {
        self.to_args()
            .chunks_exact(2)
            .find(|pair| pair[0] == field)
            .and_then(|pair| pair[1].parse().ok())
            .unwrap_or(0)
    }

    /// The flush script's ARGV tail: `field, count` pairs, for every count that is not 0.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for ((route, method, status), n) in &self.requests {
            let (route, method) = (
                route_name(usize::from(*route)),
                method_name(usize::from(*method)),
            );
            push_arg(&mut args, format!("req|{route}|{method}|{status}"), *n);
        }
        for (slot, histogram) in self.request_durations.iter().enumerate() {
            histogram.push_args(&format!("reqdur|{}", route_name(slot)), &mut args);
        }
        for series in &self.round_trips {
            for (outcome, n) in Outcome::ALL.iter().zip(series.outcomes) {
                let field = format!(
                    "rt|{}|{}|{}",
                    series.command,
                    series.script,
                    outcome.as_str()
                );
                push_arg(&mut args, field, n);
            }
            let prefix = format!("rtdur|{}|{}", series.command, series.script);
            series.duration.push_args(&prefix, &mut args);
        }
        push_arg(&mut args, "noscript".to_owned(), self.noscript);
        for (outcome, n) in Outcome::ALL.iter().zip(self.failures) {
            push_arg(&mut args, format!("fail|{}", outcome.as_str()), n);
        }
        for (slot, n) in self.rate_limited.iter().enumerate() {
            push_arg(&mut args, format!("rl|{}", route_name(slot)), *n);
        }
        push_arg(&mut args, "dedupe".to_owned(), self.dedupe);
        push_arg(&mut args, "views".to_owned(), self.views);
        for (action, n) in ACTIONS.iter().zip(self.likes) {
            push_arg(&mut args, format!("likes|{action}"), n);
        }
        for (outcome, n) in PASS_OUTCOMES.iter().zip(self.passes) {
            push_arg(&mut args, format!("recpass|{outcome}"), n);
        }
        push_arg(&mut args, "recev".to_owned(), self.events_applied);
        push_arg(&mut args, "recrep".to_owned(), self.repairs);
        push_arg(&mut args, "unreadable".to_owned(), self.unreadable);
        args
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
            if let Ok(count) = value.parse::<u64>() {
                metrics.add_field(field, count);
            }
        }
        metrics
    }

    /// Adds `n` to the count a hash field names; false (and nothing added) for
    /// a field of an unknown family, label or histogram part.
    fn add_field(&mut self, field: &str, n: u64) -> bool {
        let parts: Vec<&str> = field.split('|').collect();
        let counter = match parts.as_slice() {
            ["req", route, method, status] => {
                let (Some(route), Some(method), Some(status)) = (
                    route_label_slot(route),
                    method_label_slot(method),
                    status_code(status),
                ) else {
                    return false;
                };
                if n > 0 {
                    self.add_requests(route, method, status, n);
                }
                return true;
            }
            ["reqdur", route, part] => {
                return route_label_slot(route)
                    .is_some_and(|slot| self.request_durations[slot].add_part(part, n));
            }
            ["rt", command, script, outcome] => {
                let Some(outcome) = Outcome::parse(outcome) else {
                    return false;
                };
                if !is_round_trip_label(command, script) {
                    return false;
                }
                if n > 0 {
                    let series = self.round_trips_of(command, script);
                    series.outcomes[outcome.index()] =
                        series.outcomes[outcome.index()].saturating_add(n);
                }
                return true;
            }
            ["rtdur", command, script, part] => {
                if !is_round_trip_label(command, script) || !Histogram::is_part(part) {
                    return false;
                }
                if n > 0 {
                    self.round_trips_of(command, script)
                        .duration
                        .add_part(part, n);
                }
                return true;
            }
            ["noscript"] => &mut self.noscript,
            ["fail", reason] => match Outcome::parse(reason) {
                Some(outcome) => &mut self.failures[outcome.index()],
                None => return false,
            },
            ["rl", route] => match route_label_slot(route) {
                Some(slot) => &mut self.rate_limited[slot],
                None => return false,
            },
            ["dedupe"] => &mut self.dedupe,
            ["views"] => &mut self.views,
            ["likes", action] => match ACTIONS.iter().position(|a| a == action) {
                Some(slot) => &mut self.likes[slot],
                None => return false,
            },
            ["recpass", outcome] => match PASS_OUTCOMES.iter().position(|o| o == outcome) {
                Some(slot) => &mut self.passes[slot],
                None => return false,
            },
            ["recev"] => &mut self.events_applied,
            ["recrep"] => &mut self.repairs,
            ["unreadable"] => &mut self.unreadable,
            _ => return false,
        };
        *counter = counter.saturating_add(n);
        true
    }

    /// The OpenMetrics text exposition of these counts, ending in `# EOF`.
    pub fn render(&self) -> String {
        self.render_with_lag(None)
    }

    /// [`Metrics::render`], with the gauge `tally_outbox_lag_events` (the
    /// outbox events not yet applied to the record, read at scrape) when given.
    pub fn render_with_lag(&self, outbox_lag: Option<u64>) -> String {
        let mut out = String::with_capacity(8 * 1024);
        for family in &FAMILIES {
            let name = describe(family, &mut out);
            let labels = |values: &[&str]| label_set(family, values);
            match family.tag {
                "req" => {
                    for ((route, method, status), n) in &self.requests {
                        let route = route_name(usize::from(*route));
                        let method = method_name(usize::from(*method));
                        let status = status.to_string();
                        counter(&name, &labels(&[route, method, &status]), *n, &mut out);
                    }
                }
                "reqdur" => {
                    for (slot, histogram) in self.request_durations.iter().enumerate() {
                        if !histogram.is_empty() {
                            let route = route_name(slot);
                            histogram.render(&name, &labels(&[route]), &mut out);
                        }
                    }
                }
                "rt" => {
                    for series in &self.round_trips {
                        for (outcome, n) in Outcome::ALL.iter().zip(series.outcomes) {
                            if n > 0 {
                                let values = [&*series.command, &series.script, outcome.as_str()];
                                counter(&name, &labels(&values), n, &mut out);
                            }
                        }
                    }
                }
                "rtdur" => {
                    for series in &self.round_trips {
                        if !series.duration.is_empty() {
                            let values = [&*series.command, &series.script];
                            series.duration.render(&name, &labels(&values), &mut out);
                        }
                    }
                }
                "noscript" => total(&name, self.noscript, &mut out),
                "fail" => {
                    for (outcome, n) in Outcome::ALL.iter().zip(self.failures) {
                        if n > 0 {
                            counter(&name, &labels(&[outcome.as_str()]), n, &mut out);
                        }
                    }
                }
                "rl" => {
                    for (slot, n) in self.rate_limited.iter().enumerate() {
                        if *n > 0 {
                            counter(&name, &labels(&[route_name(slot)]), *n, &mut out);
                        }
                    }
                }
                "dedupe" => total(&name, self.dedupe, &mut out),
                "views" => total(&name, self.views, &mut out),
                "likes" => {
                    for (action, n) in ACTIONS.iter().zip(self.likes) {
                        if n > 0 {
                            counter(&name, &labels(&[action]), n, &mut out);
                        }
                    }
                }
                "recpass" => {
                    for (outcome, n) in PASS_OUTCOMES.iter().zip(self.passes) {
                        if n > 0 {
                            counter(&name, &labels(&[outcome]), n, &mut out);
                        }
                    }
                }
                "recev" => total(&name, self.events_applied, &mut out),
                "recrep" => total(&name, self.repairs, &mut out),
                "unreadable" => total(&name, self.unreadable, &mut out),
                _ => {}
            }
        }
        if let Some(lag) = outbox_lag {
            out.push_str("# HELP tally_outbox_lag_events Outbox events not yet applied to the system of record (the sum of the streams' XLEN).\n");
            out.push_str("# TYPE tally_outbox_lag_events gauge\n");
            let _ = writeln!(out, "tally_outbox_lag_events {lag}");
        }
        out.push_str("# EOF\n");
        out
    }
}

/// Writes a family's `# HELP`, `# TYPE` (and `# UNIT`) lines; answers its full name.
fn describe(family: &Family, out: &mut String) -> String {
    let (name, kind) = if family.histogram {
        (format!("{}_seconds", family.name), "histogram")
    } else {
        (family.name.to_owned(), "counter")
    };
    let _ = writeln!(out, "# HELP {name} {}", family.help);
    let _ = writeln!(out, "# TYPE {name} {kind}");
    if family.histogram {
        let _ = writeln!(out, "# UNIT {name} seconds");
    }
    name
}

/// `name="value",...` for a family's label names and these values. Values come
/// from closed vocabularies (route patterns, upper-case commands, lower-case
/// scripts), so none needs escaping.
fn label_set(family: &Family, values: &[&str]) -> String {
    let mut set = String::new();
    for (name, value) in family.labels.iter().zip(values) {
        if !set.is_empty() {
            set.push(',');
        }
        let _ = write!(set, "{name}=\"{value}\"");
    }
    set
}

fn counter(name: &str, labels: &str, n: u64, out: &mut String) {
    let _ = writeln!(out, "{name}_total{{{labels}}} {n}");
}

fn total(name: &str, n: u64, out: &mut String) {
    let _ = writeln!(out, "{name}_total {n}");
}

/// The slot of a route pattern of [`ROUTES`].
fn route_slot(route: &str) -> Option<usize> {
    ROUTES.iter().position(|r| *r == route)
}

/// The slot of a route label as read back: a pattern, or [`UNMATCHED_ROUTE`].
fn route_label_slot(label: &str) -> Option<usize> {
    route_slot(label).or((label == UNMATCHED_ROUTE).then_some(ROUTES.len()))
}

fn route_name(slot: usize) -> &'static str {
    ROUTES.get(slot).copied().unwrap_or(UNMATCHED_ROUTE)
}

fn method_slot(method: &str) -> Option<usize> {
    METHODS.iter().position(|m| *m == method)
}

/// The slot of a method label as read back: a standard method, or `OTHER`.
fn method_label_slot(label: &str) -> Option<usize> {
    method_slot(label).or((label == "OTHER").then_some(METHODS.len()))
}

fn method_name(slot: usize) -> &'static str {
    METHODS.get(slot).copied().unwrap_or("OTHER")
}

/// A status label: exactly three digits.
fn status_code(label: &str) -> Option<u16> {
    (label.len() == 3 && label.bytes().all(|b| b.is_ascii_digit()))
        .then(|| label.parse().ok())
        .flatten()
}

/// A command name as a label: upper-case letters and `_`, at most 16, else `OTHER`.
/// Borrows when the name already is its label (every command the engine sends).
fn command_label(command: &str) -> Cow<'_, str> {
    let valid = |b: u8| b.is_ascii_alphabetic() || b == b'_';
    if !(1..=16).contains(&command.len()) || !command.bytes().all(valid) {
        Cow::Borrowed("OTHER")
    } else if command.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(command.to_ascii_uppercase())
    } else {
        Cow::Borrowed(command)
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

/// True for a command and script label pair as [`Metrics::round_trip`] writes them.
fn is_round_trip_label(command: &str, script: &str) -> bool {
    command_label(command) == command && script_label(Some(script)) == script
}

/// Adds a batch to the shared hash at most once and, when asked, returns the hash.
///
/// KEYS: the metrics hash, the isolate's last applied batch number
/// ([`crate::keys::Keys::metrics`], [`crate::keys::Keys::metrics_batch`]); ARGV:
/// [`Batch::args`] or [`Batch::read_only_args`].
pub static FLUSH: Script = Script::new(
    "metrics_flush",
    crate::scripts::minified!(include_str!("metrics/flush.lua")),
);

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
        m.record_pass("applied", 120, 2, 1);
        m.record_pass("busy", 0, 0, 0);
        let reply = serde_json::Value::from(m.to_args());
        assert_eq!(Metrics::from_hash(&reply), m);
    }

    #[test]
    fn reconciliation_passes_render_with_the_outbox_lag_gauge() {
        let mut m = Metrics::new();
        m.record_pass("applied", 120, 2, 1);
        m.record_pass("teleported", 0, 0, 0);
        let text = m.render_with_lag(Some(7));
        assert!(
            text.contains("tally_record_passes_total{outcome=\"applied\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("tally_record_passes_total{outcome=\"failed\"} 1\n"));
        assert!(text.contains("tally_record_events_applied_total 120\n"));
        assert!(text.contains("tally_record_repairs_total 2\n"));
        assert!(text.contains("tally_outbox_unreadable_total 1\n"));
        assert!(text.contains("# TYPE tally_outbox_lag_events gauge\ntally_outbox_lag_events 7\n"));
        assert!(text.ends_with("# EOF\n"));
        assert!(!m.render().contains("tally_outbox_lag_events"));
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
    fn the_bucket_tables_follow_the_bounds() {
        for (i, ms) in LATENCY_BUCKETS_MS.iter().enumerate() {
            assert_eq!(BUCKET_FIELDS[i], format!("b{ms}"));
            assert_eq!(BUCKET_BOUNDS[i].parse::<f64>().unwrap(), ms / 1000.0);
        }
    }

    #[test]
    fn counting_a_known_series_again_adds_no_entry() {
        let mut m = Metrics::new();
        for _ in 0..1000 {
            m.request("/v1/items/{item}", "GET", 200, ms(3));
            m.round_trip("EVALSHA", Some("read"), Outcome::Ok, ms(1));
        }
        assert_eq!((m.requests.len(), m.round_trips.len()), (1, 1));
        assert_eq!(m.get("req|/v1/items/{item}|GET|200"), 1000);
        assert_eq!(m.get("rtdur|EVALSHA|read|b1"), 1000);
    }

    #[test]
    fn a_sum_is_rendered_in_exact_decimal_seconds() {
        assert_eq!(seconds(0), "0.0");
        assert_eq!(seconds(2_507_000), "2.507");
        assert_eq!(seconds(1), "0.000001");
        assert_eq!(seconds(3_000_000), "3.0");
    }

    #[test]
    fn a_lower_case_command_is_counted_under_its_upper_case_label() {
        let mut m = Metrics::new();
        m.round_trip("ping", None, Outcome::Ok, ms(1));
        m.round_trip("PING", None, Outcome::Ok, ms(1));
        m.round_trip("ZADD2", None, Outcome::Ok, ms(1));
        assert_eq!(m.get("rt|PING|none|ok"), 2);
        assert_eq!(m.get("rt|OTHER|none|ok"), 1);
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
