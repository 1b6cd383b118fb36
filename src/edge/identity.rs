//! Who is calling: identity tokens and the server-to-server API key.

use subtle::ConstantTimeEq;

use super::config::Config;
use super::error::AppError;
use super::http::{self, Incoming};
use crate::token::{self, Claims};
use crate::viewer;

/// The `sub` prefix of the visitor tokens `POST /v1/visitors` mints.
pub const VISITOR_PREFIX: &str = "anon:";

/// The caller's verified identity, or `None` when no token was sent. A token
/// that is sent but does not verify is an error, never silently ignored.
pub fn optional(req: &Incoming, config: &Config, now: i64) -> Result<Option<Claims>, AppError> {
    let Some(credential) = http::bearer(req)? else {
        return Ok(None);
    };
    token::verify_cached(credential, config.jwt_secret.as_bytes(), now)
        .map(Some)
        .map_err(|e| AppError::Unauthorized(e.to_string()))
}

/// The caller's verified identity; a missing token is an error.
pub fn required(req: &Incoming, config: &Config, now: i64) -> Result<Claims, AppError> {
    optional(req, config, now)?.ok_or_else(|| {
        AppError::Unauthorized("this route needs `Authorization: Bearer <token>`".into())
    })
}

/// The network limiter a write by `claims` also counts against: the client
/// network's, for a visitor token; `None` for identities the site signs itself
/// (any other `sub`), which the site vouches for.
pub fn visitor_network(
    req: &Incoming,
    config: &Config,
    claims: &Claims,
    now: i64,
) -> Option<String> {
    claims
        .sub
        .starts_with(VISITOR_PREFIX)
        .then(|| viewer::visitor_network(config.jwt_secret.as_bytes(), now, http::client_ip(req)))
}

/// Checks the bearer credential against `TALLY_API_KEY` in constant time.
pub fn api_key(req: &Incoming, config: &Config) -> Result<(), AppError> {
    let given = http::bearer(req)?.unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(config.api_key.as_bytes())) {
        Ok(())
    } else {
        Err(AppError::Unauthorized(
            "this route needs `Authorization: Bearer <TALLY_API_KEY>`".into(),
        ))
    }
}
