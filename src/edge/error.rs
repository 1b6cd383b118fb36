//! The one place where failures become HTTP responses.

use worker::console_error;
use worker::js_sys;
use worker::wasm_bindgen::{JsCast, JsValue};

use super::http::{INTERNAL_BODY, Reply};

use crate::engine::{EngineError, InvalidRequest, RateStatus};
use crate::rest::RestError;

/// Everything a request can fail with, as the client is allowed to see it.
///
/// Each variant's message is what the client reads; details that must not
/// leave the worker (Redis errors, keys, scripts, secrets) are logged instead.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    /// The item id in the path is not a valid id.
    #[error("{0}")]
    InvalidItem(String),
    /// The counter name in the path is not a valid name.
    #[error("{0}")]
    InvalidName(String),
    /// The body is not the JSON the route expects.
    #[error("{0}")]
    InvalidBody(String),
    /// An import is refused: a line is bad (its number, 1-based), or it has none.
    #[error("{message}")]
    #[cfg_attr(
        not(feature = "record"),
        expect(dead_code, reason = "the RECORD Worker's")
    )]
    InvalidImport {
        /// The bad line, when one is to blame.
        line: Option<usize>,
        /// What is wrong, naming the line.
        message: String,
    },
    /// A query parameter is missing or malformed.
    #[error("{0}")]
    InvalidQuery(String),
    /// A request header is malformed.
    #[error("{0}")]
    InvalidHeader(String),
    /// No credentials, or credentials that do not check out.
    #[error("{0}")]
    Unauthorized(String),
    /// No route has this path.
    #[error("no route matches this path")]
    NotFound,
    /// The item is outside `ITEM_PATTERN` or not registered (`ITEMS`); nothing was written.
    #[error("this item is not open for writes here: it is outside ITEM_PATTERN or not registered")]
    UnknownItem,
    /// The add would leave a counter that is not a finite number; nothing was written.
    #[error("{0}")]
    CounterOverflow(String),
    /// The route exists but not with this method; carries the `Allow` value.
    #[error("this route does not answer this method")]
    MethodNotAllowed(String),
    /// An `Idempotency-Key` was reused with a different request.
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyConflict,
    /// The body is over the route's limit, in bytes.
    #[error("request bodies on this route are limited to {} KiB", .0 / 1024)]
    BodyTooLarge(usize),
    /// The caller is over the write limit; carries the window's status.
    #[error("too many writes: retry after the window resets")]
    RateLimited(RateStatus),
    /// A CORS preflight from an origin not in `ALLOWED_ORIGINS`.
    #[error("this origin is not allowed")]
    OriginNotAllowed,
    /// Another reconciliation pass holds the lease; this one did nothing.
    #[error("a reconciliation pass is already running: retry when it ends")]
    #[cfg_attr(
        not(feature = "record"),
        expect(dead_code, reason = "the RECORD Worker's")
    )]
    ReconcileRunning,
    /// No system of record is bound (the `DB` D1 binding; for the edge build,
    /// the `RECORD` Worker).
    #[cfg_attr(
        feature = "record",
        error("no system of record is bound: this worker has no D1 binding `DB`")
    )]
    #[cfg_attr(
        not(feature = "record"),
        error("no system of record is bound: this worker has no service binding `RECORD`")
    )]
    RecordUnbound,
    /// The system of record (D1) failed or answered nonsense.
    #[error("the system of record is unavailable, retry shortly")]
    RecordFailed(String),
    /// Redis REST was unreachable, slow or failing, or answered nonsense.
    #[error("the counter store is unavailable, retry shortly")]
    Backend(String),
    /// A required binding is not configured; names the variable, never its value.
    #[error("the worker is misconfigured: {0}")]
    Misconfigured(String),
    /// The runtime refused something that cannot fail on valid input.
    #[error("internal error")]
    Internal(String),
}

/// `{"error": {"code": …, "message": …}}`, written straight from these fields.
#[derive(serde::Serialize)]
struct ErrorBody {
    error: ErrorDetail,
}

/// In the order a JSON object read whole would write them (sorted): the same bytes.
#[derive(serde::Serialize)]
struct ErrorDetail {
    code: &'static str,
    /// An import's bad line, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    message: String,
}

/// What a JavaScript call threw or rejected with, as text: an `Error`'s
/// message (and its `cause`'s, as D1 gives them), or the value itself when it
/// is a string. Not through `worker::Error`, whose `Display` (every binding's
/// error kinds) would be in the wasm for this alone.
pub fn js_message(error: &JsValue) -> String {
    match error.dyn_ref::<js_sys::Error>() {
        Some(e) => match e.cause().dyn_ref::<js_sys::Error>() {
            Some(cause) => format!("{}: {}", e.message(), cause.message()),
            None => e.message().into(),
        },
        None => error
            .as_string()
            .unwrap_or_else(|| "a JavaScript value that is no Error".to_owned()),
    }
}

impl From<RestError> for AppError {
    fn from(error: RestError) -> Self {
        AppError::Backend(error.to_string())
    }
}

impl From<EngineError> for AppError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Invalid(InvalidRequest::CounterOverflow) => {
                AppError::CounterOverflow(InvalidRequest::CounterOverflow.to_string())
            }
            EngineError::Invalid(detail) => AppError::InvalidQuery(detail.to_string()),
            EngineError::UnknownItem => AppError::UnknownItem,
            other => AppError::Backend(other.to_string()),
        }
    }
}

impl AppError {
    /// `{"error": {"code": …, "message": …}}` (and an import's `line`).
    fn body(&self) -> Vec<u8> {
        let line = match self {
            AppError::InvalidImport { line, .. } => *line,
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.status_and_code().1,
                line,
                message: self.to_string(),
            },
        };
        // An error body is a code, a number and a message: writing it does not fail.
        serde_json::to_vec(&body).unwrap_or_else(|_| INTERNAL_BODY.to_vec())
    }

    /// The status and the stable machine-readable code of this error.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            AppError::InvalidItem(_) => (400, "invalid_item"),
            AppError::InvalidName(_) => (400, "invalid_counter"),
            AppError::InvalidBody(_) => (400, "invalid_body"),
            AppError::InvalidImport { .. } => (400, "invalid_import"),
            AppError::InvalidQuery(_) => (400, "invalid_query"),
            AppError::InvalidHeader(_) => (400, "invalid_header"),
            AppError::Unauthorized(_) => (401, "unauthorized"),
            AppError::OriginNotAllowed => (403, "origin_not_allowed"),
            AppError::NotFound => (404, "not_found"),
            AppError::UnknownItem => (404, "unknown_item"),
            AppError::MethodNotAllowed(_) => (405, "method_not_allowed"),
            AppError::IdempotencyConflict => (409, "idempotency_conflict"),
            AppError::ReconcileRunning => (409, "reconcile_running"),
            AppError::BodyTooLarge(_) => (413, "body_too_large"),
            AppError::CounterOverflow(_) => (422, "counter_overflow"),
            AppError::RateLimited(_) => (429, "rate_limited"),
            AppError::Misconfigured(_) => (500, "misconfigured"),
            AppError::Internal(_) => (500, "internal_error"),
            AppError::Backend(_) => (503, "backend_unavailable"),
            AppError::RecordUnbound | AppError::RecordFailed(_) => (503, "record_unavailable"),
        }
    }

    /// The JSON response this error becomes.
    pub fn into_reply(self) -> Reply {
        if let AppError::NotFound = self {
            // The floor of every request (and what scanners get): its body,
            // the same for every request, is written once per isolate.
            thread_local! {
                static NOT_FOUND: Vec<u8> = AppError::NotFound.body();
            }
            return NOT_FOUND.with(|body| Reply::json_bytes(404, body.clone()));
        }
        let status = self.status_and_code().0;
        match &self {
            AppError::Backend(detail) => console_error!("backend failure: {detail}"),
            AppError::RecordFailed(detail) => console_error!("system of record failure: {detail}"),
            AppError::Misconfigured(detail) => console_error!("misconfigured: {detail}"),
            AppError::Internal(detail) => console_error!("internal error: {detail}"),
            _ => {}
        }
        let mut reply = Reply::json_bytes(status, self.body());
        match &self {
            AppError::MethodNotAllowed(allow) => {
                reply.header("Allow", allow);
            }
            AppError::Backend(_) | AppError::RecordFailed(_) => {
                reply.header("Retry-After", "1");
            }
            AppError::RateLimited(rate) => {
                reply
                    .rate_headers(rate)
                    .header("Retry-After", &rate.reset_seconds.max(1).to_string());
            }
            _ => {}
        }
        reply
    }
}
