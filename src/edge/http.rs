//! Small HTTP helpers shared by the handlers: JSON responses, headers, the
//! body limit, the clock.

use serde::Serialize;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::Request;
use worker::{Headers, Response};

use super::error::AppError;
use crate::engine::RateStatus;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// The name of the rate-limit policy in `RateLimit` and `RateLimit-Policy`.
const POLICY: &str = "writes";

/// A JSON response that no cache may keep (counts are live).
pub fn json<T: Serialize>(status: u16, body: &T) -> worker::Result<Response> {
    let mut response = Response::from_json(body)?.with_status(status);
    response.headers_mut().set("Cache-Control", "no-store")?;
    Ok(response)
}

/// Sets the IETF `RateLimit-Policy` and `RateLimit` fields for `rate`.
pub fn set_rate_headers(headers: &mut Headers, rate: &RateStatus) -> worker::Result<()> {
    headers.set(
        "RateLimit-Policy",
        &format!("\"{POLICY}\";q={};w=60", rate.limit),
    )?;
    headers.set(
        "RateLimit",
        &format!("\"{POLICY}\";r={};t={}", rate.remaining, rate.reset_seconds),
    )
}

/// The bearer credential of the request, if it sent one.
pub fn bearer(req: &Request) -> Result<Option<String>, AppError> {
    let Some(value) = header(req, "Authorization") else {
        return Ok(None);
    };
    match value.split_once(' ') {
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(credential.trim().to_owned()))
        }
        _ => Err(AppError::Unauthorized(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

/// A request header, if present and readable.
pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// The client's address as Cloudflare reports it.
pub fn client_ip(req: &Request) -> String {
    header(req, "CF-Connecting-IP").unwrap_or_else(|| "unknown".to_owned())
}

/// Refuses a request whose declared `Content-Length` is over `limit` (the
/// route's: [`MAX_BODY_BYTES`] but for imports), before any handler runs.
pub fn check_declared_length(req: &Request, limit: usize) -> Result<(), AppError> {
    let declared = header(req, "Content-Length").and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > limit => Err(AppError::BodyTooLarge(limit)),
        _ => Ok(()),
    }
}

/// Reads the body, refusing anything over [`MAX_BODY_BYTES`] (a body sent
/// without a `Content-Length` is only measured here).
pub async fn body(req: &Request) -> Result<Vec<u8>, AppError> {
    body_up_to(req, MAX_BODY_BYTES).await
}

/// Reads the body, refusing anything over `limit` bytes.
pub async fn body_up_to(req: &Request, limit: usize) -> Result<Vec<u8>, AppError> {
    let unreadable = |_| AppError::InvalidBody("the body could not be read".into());
    let buffer = JsFuture::from(req.array_buffer().map_err(unreadable)?)
        .await
        .map_err(unreadable)?;
    let bytes = Uint8Array::new(&buffer).to_vec();
    if bytes.len() > limit {
        return Err(AppError::BodyTooLarge(limit));
    }
    Ok(bytes)
}

/// The path of a request URL: from the first `/` after the host to `?` or `#`
/// (the runtime hands the URL over already normalised).
pub fn path(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let Some(start) = url[after_scheme..].find('/').map(|at| after_scheme + at) else {
        return "/";
    };
    let path = &url[start..];
    path.find(['?', '#']).map_or(path, |end| &path[..end])
}

/// The decoded query pairs of the request (`application/x-www-form-urlencoded`
/// rules, as the URL standard reads a query), from the URL the runtime already
/// normalised: no second URL parse in the worker.
pub fn query(req: &Request) -> Result<Vec<(String, String)>, AppError> {
    let url = req.url();
    let query = url.split_once('?').map_or("", |(_, rest)| {
        rest.split_once('#').map_or(rest, |(q, _)| q)
    });
    Ok(form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// The value of the first query parameter called `name`.
pub fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Milliseconds since the epoch. In Workers the clock advances only across
/// I/O, so durations measure time spent waiting, not CPU time.
pub fn now_ms() -> f64 {
    worker::js_sys::Date::now()
}

/// The current time in unix seconds.
pub fn now() -> i64 {
    (worker::Date::now().as_millis() / 1000) as i64
}
