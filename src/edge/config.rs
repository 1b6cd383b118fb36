//! Reads the worker's configuration from its bindings (wrangler `[vars]`,
//! secrets, and `.dev.vars` locally).

use std::time::Duration;

use worker::Env;

use super::error::AppError;
use crate::engine::{Engine, LikesStore, NETWORK_LIMIT_FACTOR, Settings};
use crate::item::{ItemPattern, ItemPolicy};
use crate::rest::RestClient;

/// Everything a request that touches Redis needs to know.
pub struct Config {
    /// `UPSTASH_REDIS_REST_URL`.
    pub redis_url: String,
    /// `UPSTASH_REDIS_REST_TOKEN`.
    pub redis_token: String,
    /// `TALLY_JWT_SECRET`: verifies and signs identity tokens, keys viewer hashes.
    pub jwt_secret: String,
    /// `TALLY_API_KEY`: the bearer key of server-to-server routes.
    pub api_key: String,
    /// `REDIS_TIMEOUT_MS` (default 2000): the limit on one Redis REST call.
    pub redis_timeout: Duration,
    /// The engine's settings (`KEY_PREFIX`, `VIEW_DEDUPE_SECONDS`, ...).
    pub settings: Settings,
}

impl Config {
    /// Reads and checks every binding; a missing or malformed one is an error
    /// that names the variable, never its value.
    pub fn from_env(env: &Env) -> Result<Config, AppError> {
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
        Ok(Config {
            redis_url: required(env, "UPSTASH_REDIS_REST_URL")?,
            redis_token: required(env, "UPSTASH_REDIS_REST_TOKEN")?,
            jwt_secret: required(env, "TALLY_JWT_SECRET")?,
            api_key: required(env, "TALLY_API_KEY")?,
            redis_timeout: Duration::from_millis(number(env, "REDIS_TIMEOUT_MS", 2_000)?),
            settings: Settings {
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
            },
        })
    }

    /// The counting engine, talking to the configured Redis REST endpoint.
    pub fn engine(&self) -> Engine {
        let rest = RestClient::new(&self.redis_url, &self.redis_token, self.redis_timeout)
            .with_observer(super::metrics::observer())
            .with_clock(super::metrics::now_ms);
        Engine::new(rest, self.settings.clone())
    }
}

/// The origins CORS allows, from `ALLOWED_ORIGINS` (a comma list; `*` for any).
/// Needs no secret, so even a misconfigured worker answers preflights.
pub fn allowed_origins(env: &Env) -> Vec<String> {
    optional(env, "ALLOWED_ORIGINS")
        .unwrap_or_else(|| "*".to_owned())
        .split(',')
        .map(|origin| origin.trim().trim_end_matches('/').to_owned())
        .filter(|origin| !origin.is_empty())
        .collect()
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
