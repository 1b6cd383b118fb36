//! CORS for the origins in `ALLOWED_ORIGINS`.

use super::error::AppError;
use super::http::{Header, Incoming, Reply};

/// Request headers a browser may send.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key";
/// Response headers a browser may read.
const EXPOSE_HEADERS: &str = "RateLimit, RateLimit-Policy, Retry-After";

/// The origin to echo back, if the request has one that is allowed.
pub fn allowed_origin<'r>(req: &'r Incoming, allowed: &[String]) -> Option<&'r str> {
    let origin = req.header(Header::Origin)?;
    allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
        .then_some(origin)
}

/// Answers a preflight: `204` with the CORS grant, or `403` for other origins.
pub fn preflight(req: &Incoming, allowed: &[String]) -> Result<Reply, AppError> {
    if req.header(Header::Origin).is_some() && allowed_origin(req, allowed).is_none() {
        return Err(AppError::OriginNotAllowed);
    }
    let mut reply = Reply::bytes(204, Vec::new());
    reply
        .header(
            "Access-Control-Allow-Methods",
            "GET, HEAD, POST, PUT, DELETE, OPTIONS",
        )
        .header("Access-Control-Allow-Headers", ALLOW_HEADERS)
        .header("Access-Control-Max-Age", "86400");
    Ok(reply)
}

/// Adds the CORS grant for `origin` to any response.
pub fn grant(reply: &mut Reply, origin: &str) {
    reply
        .header("Access-Control-Allow-Origin", origin)
        .header("Access-Control-Expose-Headers", EXPOSE_HEADERS)
        .header("Vary", "Origin");
}
