//! Reads the worker's configuration from its bindings.

use std::time::Duration;

use worker::Env;

use super::error::AppError;
use crate::rest::RestClient;

/// How long one Redis REST call may take before the request fails with 503.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds the Redis REST client from `UPSTASH_REDIS_REST_URL` and `UPSTASH_REDIS_REST_TOKEN`.
pub fn redis(env: &Env) -> Result<RestClient, AppError> {
    let url = required(env, "UPSTASH_REDIS_REST_URL")?;
    let token = required(env, "UPSTASH_REDIS_REST_TOKEN")?;
    Ok(RestClient::new(url, token, REDIS_TIMEOUT))
}

/// A binding that must be set, as a var or a secret.
fn required(env: &Env, name: &'static str) -> Result<String, AppError> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(AppError::MissingConfig(name))
}
