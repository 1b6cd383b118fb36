//! An Upstash-compatible Redis REST gateway in front of a real `redis-server`.
//!
//! `wrangler dev`, the tests and self-hosters use it so that Tally needs no
//! cloud account. The binary in `main.rs` parses flags; everything else lives
//! here so that tests can run the real server in-process on port 0.
//!
//! - [`command`]: commands from JSON bodies and paths;
//! - [`policy`]: what each token may run, from Redis's own command table;
//! - [`encode`]: Redis replies as JSON, optionally base64;
//! - [`auth`]: the full and read-only tokens;
//! - [`backend`]: the multiplexed connection, the transaction pool, reconnects;
//! - [`listener`]: connections: the cap, header and idle timeouts, the drain;
//! - [`http`]: routes, limits and answers; [`error`]: failures as HTTP;
//! - [`scripts`]: Upstash's `allow-key-locking` script flag, stripped for Redis;
//! - [`metrics`]: Prometheus counters and histograms.

// No unwrap()/expect() in serving code; tests may panic on setup failures.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod backend;
pub mod command;
pub mod encode;
pub mod error;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod scripts;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::backend::{Backend, BackendOptions};

/// What the gateway needs to know to serve.
#[derive(Clone, Debug)]
pub struct Config {
    /// `redis://` or `rediss://` URL (`[user:password@]host:port[/db]`) of the Redis behind the gateway.
    pub redis_url: String,
    /// The token every request must present.
    pub token: String,
    /// An optional second token that may only read (writes get `NOPERM`).
    pub read_only_token: Option<String>,
    /// The largest request body accepted (default 10 MiB); larger is `413`.
    pub max_body_bytes: usize,
    /// Connections kept for `/multi-exec` transactions (default 16).
    pub pool_size: usize,
    /// How long connecting to Redis may take (default 2 s).
    pub connect_timeout: Duration,
    /// How long a command, pipeline or transaction may wait for Redis (default 10 s).
    pub response_timeout: Duration,
    /// How long a script may run before the gateway stops it with `SCRIPT
    /// KILL` (default 5 s); must be shorter than `response_timeout`.
    pub script_timeout: Duration,
    /// Lets the full token run server administration (default false).
    pub allow_admin: bool,
    /// Open HTTP connections at most; more are refused with `503` (default 1024).
    pub max_connections: usize,
    /// How long a request's headers may take to arrive (default 10 s).
    pub header_timeout: Duration,
    /// How long a keep-alive connection may stay silent (default 60 s).
    pub idle_timeout: Duration,
}

impl Config {
    /// A configuration with defaults for everything but the Redis URL and token.
    pub fn new(redis_url: impl Into<String>, token: impl Into<String>) -> Config {
        Config {
            redis_url: redis_url.into(),
            token: token.into(),
            read_only_token: None,
            max_body_bytes: 10 * 1024 * 1024,
            pool_size: 16,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(10),
            script_timeout: Duration::from_secs(5),
            allow_admin: false,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Redis URL does not parse.
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[from] redis::RedisError),
    /// The token is empty, which would let nobody in.
    #[error("the token must not be empty")]
    EmptyToken,
    /// The script timeout is not shorter than the response timeout, so a
    /// slow script's caller would get `503` before the script is stopped.
    #[error(
        "the script timeout ({script:?}) must be shorter than the response timeout ({response:?})"
    )]
    ScriptTimeout {
        /// The script timeout.
        script: Duration,
        /// The response timeout.
        response: Duration,
    },
    /// A limit is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

/// Serves the REST protocol on `listener` until `shutdown` completes, then
/// finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    if config.token.is_empty() {
        return Err(StartError::EmptyToken);
    }
    if config.script_timeout >= config.response_timeout {
        return Err(StartError::ScriptTimeout {
            script: config.script_timeout,
            response: config.response_timeout,
        });
    }
    for (name, zero) in [
        ("max_connections", config.max_connections == 0),
        ("header_timeout", config.header_timeout.is_zero()),
        ("idle_timeout", config.idle_timeout.is_zero()),
        ("script_timeout", config.script_timeout.is_zero()),
    ] {
        if zero {
            return Err(StartError::Zero(name));
        }
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let options = BackendOptions {
        connect_timeout: config.connect_timeout,
        response_timeout: config.response_timeout,
        pool_size: config.pool_size,
    };
    let app = Arc::new(http::App {
        tokens: auth::Tokens::new(&config.token, config.read_only_token.as_deref()),
        backend: Backend::new(&config.redis_url, &options, metrics.clone())?,
        metrics,
        max_body_bytes: config.max_body_bytes,
        key_locking: scripts::KeyLocking::new(),
        policy: policy::Policy {
            allow_admin: config.allow_admin,
        },
        script_timeout: config.script_timeout,
    });
    // Connect and read Redis's command table now rather than at the first
    // request; if Redis is down, the first requests retry (and log) anyway.
    let warm = app.clone();
    tokio::spawn(async move {
        let _ = warm.backend.commands().await;
    });
    let limits = listener::Limits {
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
    };
    listener::run(listener, app, limits, shutdown).await;
    Ok(())
}
