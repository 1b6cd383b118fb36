//! The edge build's way to the system of record (built without the `record`
//! feature, `build/edge/`): the record lives in a Worker of its own, running
//! the whole build and bound here as `RECORD` (README, "Two Workers"). The
//! routes that need it — import, merge, reconcile, `?source=record` and the
//! day points Redis no longer keeps — are handed to it whole: the runtime's
//! request (body unread) through the binding's `fetch`, its response passed
//! back as it came. That Worker, with the same settings, checks the API key,
//! answers with its CORS headers, and counts the request in the metrics; the
//! edge adds nothing (`edge::fetch`).

use worker::Env;
use worker::wasm_bindgen::JsValue;

use super::error::{AppError, js_message};
use super::http::{Incoming, Reply};

/// The service binding of the record Worker (`[[services]]` in the edge's config).
const BINDING: &str = "RECORD";

/// Whether a record Worker is bound: then the outbox is on, for it to drain.
pub fn bound(env: &Env) -> bool {
    env.service(BINDING).is_ok()
}

/// The record Worker's answer to `req`, or `503 record_unavailable` when none
/// is bound or it could not be reached.
pub async fn to_record(req: &Incoming, env: &Env) -> Result<Reply, AppError> {
    let Ok(record) = env.service(BINDING) else {
        return Err(AppError::RecordUnbound);
    };
    let response = req.through(record).await.map_err(unreachable)?;
    Ok(Reply::forwarded(response))
}

/// What the binding threw or rejected with.
fn unreachable(error: JsValue) -> AppError {
    AppError::RecordFailed(format!("the RECORD Worker: {}", js_message(&error)))
}
