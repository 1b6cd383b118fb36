//! Small HTTP helpers shared by the handlers: JSON responses, headers, the
//! body limit, the clock.

use serde::Serialize;
use wasm_bindgen::prelude::wasm_bindgen;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, Request};
use worker::{Headers, Response, ResponseBody};

use super::error::AppError;
use crate::engine::RateStatus;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

// Each call into JavaScript costs a crossing, and each string passed a decode:
// these do several steps in one (`http.js`).
#[wasm_bindgen(module = "/src/edge/http.js")]
extern "C" {
    /// `Content-Type: application/json` and `Cache-Control: no-store`.
    #[wasm_bindgen(js_name = jsonHeaders)]
    fn json_headers() -> web_sys::Headers;
    /// Sets `RateLimit-Policy` and `RateLimit` (policy "writes", 60 s windows).
    #[wasm_bindgen(js_name = setRateHeaders)]
    fn set_rate_headers_js(headers: &web_sys::Headers, limit: f64, remaining: f64, reset: f64);
    /// `request.headers.get(name)`.
    #[wasm_bindgen(js_name = header)]
    fn header_js(request: &Request, name: &str) -> Option<String>;
    /// `new Response(body, {status, headers})`, the body copied.
    #[wasm_bindgen(js_name = respond)]
    fn respond_js(body: &[u8], status: u16, headers: &web_sys::Headers) -> web_sys::Response;
}

/// A JSON response that no cache may keep (counts are live).
pub fn json<T: Serialize>(status: u16, body: &T) -> worker::Result<Response> {
    let body = serde_json::to_vec(body)?;
    Ok(Response::from_body(ResponseBody::Body(body))?
        .with_headers(Headers(json_headers()))
        .with_status(status))
}

/// Sets the IETF `RateLimit-Policy` and `RateLimit` fields for `rate`.
pub fn set_rate_headers(headers: &mut Headers, rate: &RateStatus) -> worker::Result<()> {
    // JavaScript numbers are exact up to 2^53 (any sane limit); else spelled here.
    const EXACT: u64 = 1 << 53;
    let RateStatus {
        limit,
        remaining,
        reset_seconds,
    } = *rate;
    if limit <= EXACT && remaining <= EXACT && reset_seconds <= EXACT {
        set_rate_headers_js(
            &headers.0,
            limit as f64,
            remaining as f64,
            reset_seconds as f64,
        );
        return Ok(());
    }
    headers.set("RateLimit-Policy", &format!("\"writes\";q={limit};w=60"))?;
    headers.set(
        "RateLimit",
        &format!("\"writes\";r={remaining};t={reset_seconds}"),
    )
}

/// The runtime's `Response` for `response`: one call into JavaScript for a
/// body in memory, where `web_sys::Response::from` makes six.
pub fn into_raw(response: Response) -> web_sys::Response {
    let status = response.status_code();
    match response.body() {
        // Statuses that carry no body (which `new Response` refuses one) go the long way.
        ResponseBody::Body(bytes) if !matches!(status, 101 | 204 | 205 | 304) => {
            respond_js(bytes, status, &response.headers().0)
        }
        _ => response.into(),
    }
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
    header_js(req, name)
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
    (now_ms() / 1000.0) as i64
}
