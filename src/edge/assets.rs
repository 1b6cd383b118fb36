//! The browser-facing files: the demo page at `/` and the embed at `/tally.js`.
//!
//! Both are compiled into the worker and served with a strong `ETag` derived from
//! their content at compile time, so a revalidation costs a `304` and no body.

use worker::{Request, Response};

use super::error::AppError;

/// A file compiled into the worker.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    cache_control: &'static str,
    etag_hash: u64,
}

/// `GET /tally.js`. The URL is not versioned, so a day of freshness (then a week of
/// stale-while-revalidate) lets a new release reach every page within a day.
const SCRIPT: Asset = Asset::new(
    include_str!("../../assets/tally.js"),
    "text/javascript; charset=utf-8",
    "public, max-age=86400, stale-while-revalidate=604800",
);

/// `GET /`: short-lived, since it is the page people look at after a deploy.
const PAGE: Asset = Asset::new(
    include_str!("../../assets/index.html"),
    "text/html; charset=utf-8",
    "public, max-age=300",
);

impl Asset {
    const fn new(
        body: &'static str,
        content_type: &'static str,
        cache_control: &'static str,
    ) -> Self {
        Asset {
            body,
            content_type,
            cache_control,
            etag_hash: fnv1a(body.as_bytes()),
        }
    }

    fn etag(&self) -> String {
        format!("\"{:016x}\"", self.etag_hash)
    }

    fn respond(&self, req: &Request) -> worker::Result<Response> {
        let etag = self.etag();
        let fresh = req
            .headers()
            .get("If-None-Match")?
            .is_some_and(|header| matches_etag(&header, &etag));
        let mut response = if fresh {
            Response::empty()?.with_status(304)
        } else {
            Response::ok(self.body)?
        };
        let headers = response.headers_mut();
        headers.set("Content-Type", self.content_type)?;
        headers.set("Cache-Control", self.cache_control)?;
        headers.set("ETag", &etag)?;
        headers.set("X-Content-Type-Options", "nosniff")?;
        Ok(response)
    }
}

/// FNV-1a over the content: computed by the compiler, and plenty to tell releases apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `If-None-Match` uses the weak comparison (RFC 9110 §13.1.2): `*`, or any listed tag
/// equal to ours once a `W/` prefix is dropped.
fn matches_etag(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// `GET /`: the demo page.
pub fn page(req: &Request) -> Result<Response, AppError> {
    Ok(PAGE.respond(req)?)
}

/// `GET /tally.js`: the embed. Any origin may load it (a page elsewhere embeds it,
/// possibly with `crossorigin` and Subresource Integrity).
pub fn script(req: &Request) -> Result<Response, AppError> {
    let mut response = SCRIPT.respond(req)?;
    response
        .headers_mut()
        .set("Access-Control-Allow-Origin", "*")?;
    Ok(response)
}
