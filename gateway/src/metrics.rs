//! Prometheus metrics: requests and latency per endpoint and command, Redis
//! commands run, reconnects, open and refused connections, timeouts and
//! stopped scripts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `/`, `/{cmd}` (path style), `/pipeline`, `/multi-exec`, `/healthz`, `/metrics`, or `other`.
    pub endpoint: &'static str,
    /// The command (lower case; `other` for names Redis does not know) for
    /// one-command requests, `batch` for pipelines and transactions, `-` when
    /// no command was read or Redis did not answer.
    pub command: String,
    /// The HTTP status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// As in [`RequestLabels`].
    pub endpoint: &'static str,
    /// As in [`RequestLabels`].
    pub command: String,
}

/// Labels of one Redis command run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The endpoint that carried it.
    pub endpoint: &'static str,
    /// The command, lower case.
    pub command: String,
}

/// Labels of a connection closed for missing a deadline.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// `header` (a request's headers came too slowly) or `idle` (silent keep-alive).
    pub reason: &'static str,
}

/// Every metric the gateway keeps.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency, from the body read to the answer.
    pub latency: Family<LatencyLabels, Histogram>,
    /// Redis commands run, each command of a pipeline or transaction counted.
    pub commands: Family<CommandLabels, Counter>,
    /// Times the multiplexed connection to Redis was re-established.
    pub redis_reconnects: Counter,
    /// HTTP connections open now.
    pub connections: Gauge,
    /// HTTP connections refused because `max_connections` were open.
    pub connections_refused: Counter,
    /// HTTP connections closed for missing the header or idle deadline.
    pub connection_timeouts: Family<TimeoutLabels, Counter>,
    /// Scripts stopped with `SCRIPT KILL` after the script timeout.
    pub scripts_killed: Counter,
}

impl Metrics {
    /// Registers every metric under the `tally_gateway` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tally_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            // 50 µs .. ~1.6 s
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        let commands = Family::<CommandLabels, Counter>::default();
        let redis_reconnects = Counter::default();
        let connections = Gauge::default();
        let connections_refused = Counter::default();
        let connection_timeouts = Family::<TimeoutLabels, Counter>::default();
        let scripts_killed = Counter::default();
        registry.register("requests", "HTTP requests answered", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, in seconds",
            latency.clone(),
        );
        registry.register("redis_commands", "Redis commands run", commands.clone());
        registry.register(
            "redis_reconnects",
            "Times the connection to Redis was re-established",
            redis_reconnects.clone(),
        );
        registry.register(
            "connections",
            "HTTP connections open now",
            connections.clone(),
        );
        registry.register(
            "connections_refused",
            "HTTP connections refused because the maximum were open",
            connections_refused.clone(),
        );
        registry.register(
            "connection_timeouts",
            "HTTP connections closed for missing the header or idle deadline",
            connection_timeouts.clone(),
        );
        registry.register(
            "scripts_killed",
            "Scripts stopped with SCRIPT KILL after the script timeout",
            scripts_killed.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            commands,
            redis_reconnects,
            connections,
            connections_refused,
            connection_timeouts,
            scripts_killed,
        }
    }

    /// Counts a connection closed for missing a deadline (`header` or `idle`).
    pub fn timed_out(&self, reason: &'static str) {
        self.connection_timeouts
            .get_or_create(&TimeoutLabels { reason })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// A command name fit for a label: lower case, or `other` for names that are
/// not plausible Redis commands, so a caller cannot grow the label set without bound.
pub fn command_label(name: &[u8]) -> String {
    let plausible = !name.is_empty()
        && name.len() <= 24
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    if plausible {
        String::from_utf8_lossy(name).to_ascii_lowercase()
    } else {
        "other".to_owned()
    }
}
