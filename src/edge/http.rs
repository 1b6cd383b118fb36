//! Small HTTP helpers shared by the handlers: JSON responses, headers, the
//! body limit, the clock.

use std::cell::{Cell, OnceCell};

use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::wasm_bindgen;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, Request};

use super::error::AppError;
use crate::engine::RateStatus;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

// Each call into JavaScript costs a crossing, and each string passed a decode:
// a request's head comes in with one call and a response goes out with one (`http.js`).
#[wasm_bindgen(module = "/src/edge/http.js")]
extern "C" {
    /// The clock, method, URL, `Origin`, `Authorization` and `Content-Length`, "\n"-joined.
    #[wasm_bindgen(js_name = head)]
    fn head_js(request: &Request) -> String;
    /// `CF-Connecting-IP`, `Idempotency-Key`, `User-Agent` and `If-None-Match`, "\n"-joined.
    #[wasm_bindgen(js_name = moreHeaders)]
    fn more_headers_js(request: &Request) -> String;
    /// `new Response(body, {status, headers})`, the body copied.
    #[wasm_bindgen(js_name = respond)]
    fn respond_js(body: &[u8], status: u16, json: bool, extra: &str) -> web_sys::Response;
    /// A copy of the runtime's `response` with `extra` headers in place of
    /// its own of those names (`Vary` joins its list).
    #[wasm_bindgen(js_name = withHeaders)]
    fn with_headers_js(response: &web_sys::Response, extra: &str) -> web_sys::Response;
}

/// The request headers the worker reads.
#[derive(Debug, Clone, Copy)]
pub enum Header {
    /// `Origin`: CORS.
    Origin,
    /// `Authorization`: identity tokens and the API key.
    Authorization,
    /// `Content-Length`: refused early when over a route's limit.
    ContentLength,
    /// `CF-Connecting-IP`: the client's address, as Cloudflare reports it.
    ConnectingIp,
    /// `Idempotency-Key`.
    IdempotencyKey,
    /// `User-Agent`: bots, and anonymous viewers' hashes.
    UserAgent,
    /// `If-None-Match`: badge revalidation.
    IfNoneMatch,
}

/// `N` fields of one string from `http.js`: "\n"-joined (no method,
/// normalised URL or header value holds a line break), an absent header "\0"
/// (which no header value holds either).
struct Fields<const N: usize> {
    text: String,
    /// Where each field starts and ends; an absent header is `None`.
    spans: [Option<(usize, usize)>; N],
}

impl<const N: usize> Fields<N> {
    fn parse(text: String) -> Fields<N> {
        let mut spans = [None; N];
        let mut at = 0;
        for (span, part) in spans.iter_mut().zip(text.split('\n')) {
            if part != "\0" {
                *span = Some((at, at + part.len()));
            }
            at += part.len() + 1;
        }
        Fields { text, spans }
    }

    fn get(&self, index: usize) -> Option<&str> {
        let (start, end) = self.spans[index]?;
        self.text.get(start..end)
    }
}

/// A request as the handlers see it: the runtime's request (for its body),
/// its method, URL and headers. What every request needs comes in one call
/// into JavaScript; the headers only some routes read ([`Header::ConnectingIp`]
/// and after), in one more, the first time one is asked for.
pub struct Incoming {
    raw: Request,
    /// The clock, method, URL, `Origin`, `Authorization`, `Content-Length`.
    head: Fields<6>,
    /// `CF-Connecting-IP`, `Idempotency-Key`, `User-Agent`, `If-None-Match`.
    more: OnceCell<Fields<4>>,
}

impl Incoming {
    /// Reads the head of `raw`, and sets the isolate's clock from it.
    pub fn read(raw: Request) -> Incoming {
        let head = Fields::parse(head_js(&raw));
        // `Date.now()` is whole milliseconds: read as an integer (core's
        // float parser stays out of the wasm, see `crate::decimal`).
        if let Some(clock) = head.get(0).and_then(|ms| ms.parse::<u64>().ok()) {
            advance_clock(clock as f64);
        }
        Incoming {
            raw,
            head,
            more: OnceCell::new(),
        }
    }

    /// The method, as sent (`worker::Method` would read unknown ones as GET).
    pub fn method(&self) -> &str {
        self.head.get(1).unwrap_or_default()
    }

    /// The URL, as the runtime normalised it.
    pub fn url(&self) -> &str {
        self.head.get(2).unwrap_or_default()
    }

    /// A request header, if sent.
    pub fn header(&self, header: Header) -> Option<&str> {
        let more = || {
            self.more
                .get_or_init(|| Fields::parse(more_headers_js(&self.raw)))
        };
        match header {
            Header::Origin => self.head.get(3),
            Header::Authorization => self.head.get(4),
            Header::ContentLength => self.head.get(5),
            Header::ConnectingIp => more().get(0),
            Header::IdempotencyKey => more().get(1),
            Header::UserAgent => more().get(2),
            Header::IfNoneMatch => more().get(3),
        }
    }

    /// The runtime's request.
    pub fn raw(&self) -> &Request {
        &self.raw
    }

    /// This request, unread, through a binding's own `fetch` (Static Assets,
    /// a service binding): its response as it came, or what it threw. A
    /// `worker::Request` would first read all of the request into wasm, and a
    /// `worker::Response` make a new response on the way out.
    pub async fn through(
        &self,
        binding: worker::Fetcher,
    ) -> Result<web_sys::Response, wasm_bindgen::JsValue> {
        let binding: worker::worker_sys::Fetcher = binding.into_rpc();
        let response = JsFuture::from(binding.fetch(&self.raw)?).await?;
        // That was I/O: the clock moved (see `clock_ms`).
        now_ms();
        response.dyn_into()
    }
}

/// The body of `500 internal_error`, for when even an error could not be written.
pub const INTERNAL_BODY: &[u8] =
    br#"{"error":{"code":"internal_error","message":"internal error"}}"#;

/// A response on its way out: handed to the runtime in one call ([`Reply::into_raw`]).
pub struct Reply {
    status: u16,
    body: Body,
    /// The headers besides a JSON body's own, as `name\nvalue\n` pairs.
    extra: String,
}

enum Body {
    /// JSON: `Content-Type: application/json` and `Cache-Control: no-store`
    /// (counts are live, so no cache keeps them).
    Json(Vec<u8>),
    /// Any other bytes, their headers all in `extra`.
    Bytes(Vec<u8>),
    /// A response the runtime made (a static asset); `extra` replaces its
    /// headers of the same names, but `Vary`, which it joins.
    Runtime(web_sys::Response),
    /// The `RECORD` Worker's response (the edge build), passed on untouched.
    #[cfg(not(feature = "record"))]
    Forwarded(web_sys::Response),
}

impl Reply {
    /// A JSON response that no cache may keep.
    pub fn json<T: Serialize>(status: u16, body: &T) -> Result<Reply, AppError> {
        let body = serde_json::to_vec(body).map_err(|e| AppError::Internal(e.to_string()))?;
        Ok(Reply::json_bytes(status, body))
    }

    /// A JSON response that no cache may keep, its body already written.
    pub fn json_bytes(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body: Body::Json(body),
            extra: String::new(),
        }
    }

    /// `500` with the `internal_error` body, for when even an error could not be written.
    pub fn internal() -> Reply {
        Reply::json_bytes(500, INTERNAL_BODY.to_vec())
    }

    /// `body` with `status`; its headers are the caller's to add.
    pub fn bytes(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body: Body::Bytes(body),
            extra: String::new(),
        }
    }

    /// A response the runtime made, passed on.
    pub fn runtime(response: web_sys::Response) -> Reply {
        Reply {
            status: response.status(),
            body: Body::Runtime(response),
            extra: String::new(),
        }
    }

    /// The `RECORD` Worker's response, passed on (`edge::forward`).
    #[cfg(not(feature = "record"))]
    pub fn forwarded(response: web_sys::Response) -> Reply {
        Reply {
            status: response.status(),
            body: Body::Forwarded(response),
            extra: String::new(),
        }
    }

    /// Whether this is the `RECORD` Worker's response, which it counted.
    #[cfg(not(feature = "record"))]
    pub fn is_forwarded(&self) -> bool {
        matches!(self.body, Body::Forwarded(_))
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Adds a header. Names and values are the worker's own or an allowed
    /// `Origin`, none with a line break (which no header value may hold).
    pub fn header(&mut self, name: &str, value: &str) -> &mut Reply {
        debug_assert!(!name.contains('\n') && !value.contains('\n'));
        self.extra.push_str(name);
        self.extra.push('\n');
        self.extra.push_str(value);
        self.extra.push('\n');
        self
    }

    /// Sets the IETF `RateLimit-Policy` and `RateLimit` fields for `rate`.
    pub fn rate_headers(&mut self, rate: &RateStatus) -> &mut Reply {
        let RateStatus {
            limit,
            remaining,
            reset_seconds,
        } = *rate;
        self.header("RateLimit-Policy", &format!("\"writes\";q={limit};w=60"))
            .header(
                "RateLimit",
                &format!("\"writes\";r={remaining};t={reset_seconds}"),
            )
    }

    /// The runtime's `Response`: one call into JavaScript.
    pub fn into_raw(self) -> web_sys::Response {
        match self.body {
            Body::Json(body) => respond_js(&body, self.status, true, &self.extra),
            Body::Bytes(body) => respond_js(&body, self.status, false, &self.extra),
            Body::Runtime(response) if self.extra.is_empty() => response,
            Body::Runtime(response) => with_headers_js(&response, &self.extra),
            // Never given headers: `edge::fetch` passes it on as it came.
            #[cfg(not(feature = "record"))]
            Body::Forwarded(response) => response,
        }
    }
}

/// The bearer credential of the request, if it sent one.
pub fn bearer(req: &Incoming) -> Result<Option<&str>, AppError> {
    let Some(value) = req.header(Header::Authorization) else {
        return Ok(None);
    };
    match value.split_once(' ') {
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(credential.trim()))
        }
        _ => Err(AppError::Unauthorized(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

/// The client's address as Cloudflare reports it.
pub fn client_ip(req: &Incoming) -> &str {
    req.header(Header::ConnectingIp).unwrap_or("unknown")
}

/// Refuses a request whose declared `Content-Length` is over `limit` (the
/// route's: [`MAX_BODY_BYTES`] but for imports), before any handler runs.
pub fn check_declared_length(req: &Incoming, limit: usize) -> Result<(), AppError> {
    let declared = req
        .header(Header::ContentLength)
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > limit => Err(AppError::BodyTooLarge(limit)),
        _ => Ok(()),
    }
}

/// Reads the body, refusing anything over [`MAX_BODY_BYTES`] (a body sent
/// without a `Content-Length` is only measured here).
pub async fn body(req: &Incoming) -> Result<Vec<u8>, AppError> {
    body_up_to(req, MAX_BODY_BYTES).await
}

/// Reads the body, refusing anything over `limit` bytes.
pub async fn body_up_to(req: &Incoming, limit: usize) -> Result<Vec<u8>, AppError> {
    let unreadable = |_| AppError::InvalidBody("the body could not be read".into());
    let buffer = JsFuture::from(req.raw().array_buffer().map_err(unreadable)?)
        .await
        .map_err(unreadable)?;
    // Reading the body was I/O: the clock moved (see `clock_ms`).
    now_ms();
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
pub fn query(req: &Incoming) -> Result<Vec<(String, String)>, AppError> {
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

thread_local! {
    /// The isolate's clock as of its latest I/O, in ms since the epoch.
    static CLOCK: Cell<f64> = const { Cell::new(0.0) };
}

/// The clock as of the isolate's latest I/O (ms since the epoch), without a
/// call into JavaScript. In Workers `Date.now()` itself advances only across
/// I/O, and every request's head ([`Incoming::read`]) and every Redis answer
/// (`fetch.rs`) bring the time with them; other I/O calls [`now_ms`] after it.
pub fn clock_ms() -> f64 {
    CLOCK.get()
}

/// Moves the clock to `ms`, if that is later.
pub fn advance_clock(ms: f64) {
    if ms > CLOCK.get() {
        CLOCK.set(ms);
    }
}

/// Milliseconds since the epoch, read from the runtime (a call into
/// JavaScript); advances [`clock_ms`]. In Workers the clock advances only
/// across I/O, so durations measure time spent waiting, not CPU time.
pub fn now_ms() -> f64 {
    let now = worker::js_sys::Date::now();
    advance_clock(now);
    now
}

/// The current time in unix seconds, by [`clock_ms`].
pub fn now() -> i64 {
    (clock_ms() / 1000.0) as i64
}
