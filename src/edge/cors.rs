//! CORS for the origins in `ALLOWED_ORIGINS`.

use worker::{Response, web_sys::Request};

use super::error::AppError;
use super::http;

/// Request headers a browser may send.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key";
/// Response headers a browser may read.
const EXPOSE_HEADERS: &str = "RateLimit, RateLimit-Policy, Retry-After";

/// The origin to echo back, if the request has one that is allowed.
pub fn allowed_origin(req: &Request, allowed: &[String]) -> Option<String> {
    let origin = http::header(req, "Origin")?;
    allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(&origin))
        .then_some(origin)
}

/// Answers a preflight: `204` with the CORS grant, or `403` for other origins.
pub fn preflight(req: &Request, allowed: &[String]) -> Result<Response, AppError> {
    if http::header(req, "Origin").is_some() && allowed_origin(req, allowed).is_none() {
        return Err(AppError::OriginNotAllowed);
    }
    let mut response = Response::empty()?.with_status(204);
    let headers = response.headers_mut();
    headers.set(
        "Access-Control-Allow-Methods",
        "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    )?;
    headers.set("Access-Control-Allow-Headers", ALLOW_HEADERS)?;
    headers.set("Access-Control-Max-Age", "86400")?;
    Ok(response)
}

/// Adds the CORS grant for `origin` to any response.
pub fn grant(response: &mut Response, origin: &str) -> worker::Result<()> {
    let headers = response.headers_mut();
    headers.set("Access-Control-Allow-Origin", origin)?;
    headers.set("Access-Control-Expose-Headers", EXPOSE_HEADERS)?;
    headers.append("Vary", "Origin")
}
