//! Reads the worker's configuration from its bindings (wrangler `[vars]`,
//! secrets, and `.dev.vars` locally), once per isolate.
//!
//! Bindings cannot change while an isolate lives (a new deploy or new secret
//! starts new isolates), so each isolate reads them on its first request and
//! keeps the result, together with the engine and its REST client.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use worker::Env;

use super::error::AppError;
use super::fetch::FetchTransport;
use super::http;
use crate::engine::{Engine, LikesStore, NETWORK_LIMIT_FACTOR, Settings};
use crate::item::{ItemPattern, ItemPolicy};
use crate::rest::{RestClient, RestObserver};

/// Everything a request that touches Redis needs to know.
pub struct Config {
    /// `TALLY_JWT_SECRET`: verifies and signs identity tokens, keys viewer hashes.
    pub jwt_secret: String,
    /// `TALLY_API_KEY`: the bearer key of server-to-server routes.
    pub api_key: String,
    /// The counting engine over `UPSTASH_REDIS_REST_URL` (authenticated by
    /// `UPSTASH_REDIS_REST_TOKEN`, each call limited to `REDIS_TIMEOUT_MS`,
    /// default 2000), with the engine's settings (`KEY_PREFIX`,
    /// `VIEW_DEDUPE_SECONDS`, ...); its round trips are counted.
    engine: Engine,
    /// A client of the same endpoint whose round trips are not counted (the metrics' own).
    unobserved: RestClient,
    /// How the reconciliation pass runs (src/edge/record.rs). Read and checked
    /// by the edge build too, which runs no pass: both Workers share settings.
    #[cfg_attr(
        not(feature = "record"),
        expect(dead_code, reason = "the RECORD Worker's")
    )]
    pub reconcile: Reconcile,
}

/// The reconciliation pass's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconcile {
    /// `RECONCILE_MAX_EVENTS` (default 2000): the most outbox events one pass applies.
    pub max_events: usize,
    /// `RECONCILE_SAMPLE` (default 100): the items checked for drift besides
    /// those the pass touched, those checked longest ago.
    pub sample: usize,
    /// `RECONCILE_LEASE_SECONDS` (default 60), in ms: how long a pass holds
    /// its lease; a pass that dies leaves it to expire.
    pub lease_ms: u64,
    /// `TALLY_FAULT=reconcile_after_record`, for tests only: the pass stops
    /// right after the record committed, as a crash there would (no trim,
    /// the lease left to expire). Unset (the default), it does nothing.
    pub stop_after_record: bool,
}

/// The one `TALLY_FAULT` value there is.
pub const FAULT_AFTER_RECORD: &str = "reconcile_after_record";

thread_local! {
    /// This isolate's configuration, once read without error (an isolate runs one thread).
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
    /// This isolate's settings that need no secret.
    static BASICS: RefCell<Option<Rc<Basics>>> = const { RefCell::new(None) };
}

impl Config {
    /// The isolate's configuration: read and checked on first use, then kept;
    /// the engine's round trips go to `observer`. A missing or malformed
    /// binding is an error that names the variable, never its value (and is
    /// read again next time).
    pub fn get(env: &Env, observer: fn() -> Arc<dyn RestObserver>) -> Result<Rc<Config>, AppError> {
        if let Some(config) = CONFIG.with(|c| c.borrow().clone()) {
            return Ok(config);
        }
        let config = Rc::new(Config::from_env(env, observer())?);
        CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
        Ok(config)
    }

    /// Reads and checks every binding.
    fn from_env(env: &Env, observer: Arc<dyn RestObserver>) -> Result<Config, AppError> {
        let likes_store = match optional(env, "LIKES_STORE").as_deref() {
            None | Some("set") => LikesStore::Set,
            Some("bitmap") => LikesStore::Bitmap {
                max_id: number(env, "BITMAP_MAX_ID", 10_000_000)?,
            },
            Some(_) => return Err(malformed("LIKES_STORE", "set or bitmap")),
        };
        let items = match optional(env, "ITEMS").as_deref() {
            None | Some("open") => ItemPolicy::Open,
            Some("pattern") => ItemPolicy::Pattern(
                ItemPattern::parse(&optional(env, "ITEM_PATTERN").unwrap_or_default())
                    .map_err(|_| malformed("ITEM_PATTERN", "a comma list of prefixes or globs"))?,
            ),
            Some("registered") => ItemPolicy::Registered,
            Some(_) => return Err(malformed("ITEMS", "open, pattern or registered")),
        };
        let rate_limit_per_minute = number(env, "RATE_LIMIT_PER_MINUTE", 120)?;
        let redis_url = required(env, "UPSTASH_REDIS_REST_URL")?;
        let redis_token = required(env, "UPSTASH_REDIS_REST_TOKEN")?;
        let jwt_secret = required(env, "TALLY_JWT_SECRET")?;
        let api_key = required(env, "TALLY_API_KEY")?;
        let redis_timeout = Duration::from_millis(number(env, "REDIS_TIMEOUT_MS", 2_000)?);
        let settings = Settings {
            prefix: optional(env, "KEY_PREFIX").unwrap_or_else(|| "tally".to_owned()),
            view_dedupe_seconds: number(env, "VIEW_DEDUPE_SECONDS", 1_800)?,
            rate_limit_per_minute,
            network_rate_limit_per_minute: number(
                env,
                "NETWORK_RATE_LIMIT_PER_MINUTE",
                rate_limit_per_minute.saturating_mul(NETWORK_LIMIT_FACTOR),
            )?,
            visitor_mints_per_hour: number(env, "VISITOR_MINTS_PER_HOUR", 500)?,
            likes_store,
            items,
            // On only when a system of record (the `DB` binding, or in the edge
            // build the `RECORD` Worker) applies and trims it.
            #[cfg(feature = "record")]
            outbox: env.d1("DB").is_ok(),
            #[cfg(not(feature = "record"))]
            outbox: super::forward::bound(env),
        };
        let reconcile = Reconcile {
            max_events: usize::try_from(number(env, "RECONCILE_MAX_EVENTS", 2_000)?)
                .unwrap_or(usize::MAX),
            sample: usize::try_from(number(env, "RECONCILE_SAMPLE", 100)?).unwrap_or(usize::MAX),
            lease_ms: number(env, "RECONCILE_LEASE_SECONDS", 60)?.saturating_mul(1_000),
            stop_after_record: match optional(env, "TALLY_FAULT").as_deref() {
                None => false,
                Some(FAULT_AFTER_RECORD) => true,
                Some(_) => return Err(malformed("TALLY_FAULT", FAULT_AFTER_RECORD)),
            },
        };
        let unobserved = RestClient::with_transport(
            Arc::new(FetchTransport),
            &redis_url,
            &redis_token,
            redis_timeout,
        )
        .with_clock(http::clock_ms);
        let engine = Engine::new(unobserved.clone().with_observer(observer), settings);
        Ok(Config {
            jwt_secret,
            api_key,
            engine,
            unobserved,
            reconcile,
        })
    }

    /// The counting engine, talking to the configured Redis REST endpoint.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A client for the metrics' own round trips: not observed, so flushing
    /// and reading the metrics never count as traffic.
    pub fn unobserved_client(&self) -> &RestClient {
        &self.unobserved
    }
}

/// The settings every request needs, secret or not: a misconfigured worker
/// still answers preflights and counts its requests.
pub struct Basics {
    /// The origins CORS allows, from `ALLOWED_ORIGINS` (a comma list; `*` for any).
    pub origins: Vec<String>,
    /// How often an isolate may flush its metrics, in ms, from `METRICS_FLUSH_SECONDS`.
    pub flush_interval_ms: f64,
}

/// The default and largest metrics flush interval; `wait_until` work must end within 30 s.
pub const DEFAULT_FLUSH_SECONDS: f64 = 5.0;
/// See [`DEFAULT_FLUSH_SECONDS`].
pub const MAX_FLUSH_SECONDS: f64 = 25.0;

impl Basics {
    /// The isolate's basics: read on first use, then kept.
    pub fn get(env: &Env) -> Rc<Basics> {
        if let Some(basics) = BASICS.with(|b| b.borrow().clone()) {
            return basics;
        }
        let basics = Rc::new(Basics {
            origins: allowed_origins(env),
            flush_interval_ms: flush_interval_ms(env),
        });
        BASICS.with(|b| *b.borrow_mut() = Some(basics.clone()));
        basics
    }
}

fn allowed_origins(env: &Env) -> Vec<String> {
    optional(env, "ALLOWED_ORIGINS")
        .unwrap_or_else(|| "*".to_owned())
        .split(',')
        .map(|origin| origin.trim().trim_end_matches('/').to_owned())
        .filter(|origin| !origin.is_empty())
        .collect()
}

/// `METRICS_FLUSH_SECONDS` (0 flushes after every response; at most 25, as
/// `wait_until` work must end in 30 s), in milliseconds.
fn flush_interval_ms(env: &Env) -> f64 {
    env.var("METRICS_FLUSH_SECONDS")
        .ok()
        .and_then(|v| crate::decimal::parse(v.to_string().trim()))
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT_FLUSH_SECONDS)
        .min(MAX_FLUSH_SECONDS)
        * 1000.0
}

fn optional(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn required(env: &Env, name: &str) -> Result<String, AppError> {
    optional(env, name).ok_or_else(|| AppError::Misconfigured(format!("{name} is not set")))
}

fn number(env: &Env, name: &str, default: u64) -> Result<u64, AppError> {
    match optional(env, name) {
        None => Ok(default),
        Some(value) => value
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| malformed(name, "a positive integer")),
    }
}

fn malformed(name: &str, expected: &str) -> AppError {
    AppError::Misconfigured(format!("{name} must be {expected}"))
}
