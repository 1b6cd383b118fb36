//! The REST client's transport in the worker: the runtime's own `fetch`, so the
//! wasm carries no HTTP client (natively, `rest` uses `reqwest`).

use std::time::Duration;

use worker::js_sys;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{AbortSignal, Headers, RequestInit, Response, WorkerGlobalScope};

use crate::rest::{BoxFuture, RestError, Transport};

/// `fetch` with an `AbortSignal.timeout`: a request that outlives its timeout,
/// body included, is aborted and answers [`RestError::Timeout`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchTransport;

impl Transport for FetchTransport {
    fn post<'a>(
        &'a self,
        url: &'a str,
        authorization: &'a str,
        body: String,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, String), RestError>> {
        Box::pin(post(url, authorization, body, timeout))
    }
}

async fn post(
    url: &str,
    authorization: &str,
    body: String,
    timeout: Duration,
) -> Result<(u16, String), RestError> {
    let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let signal = AbortSignal::timeout_with_u32(millis);
    let failed = |error: JsValue| failure(&signal, &error);
    let headers = Headers::new().map_err(failed)?;
    headers
        .set("Authorization", authorization)
        .map_err(failed)?;
    headers
        .set("Content-Type", "application/json")
        .map_err(failed)?;
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    init.set_body(&JsValue::from_str(&body));
    init.set_signal(Some(&signal));
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let answer = JsFuture::from(global.fetch_with_str_and_init(url, &init))
        .await
        .map_err(failed)?;
    let response: Response = answer.unchecked_into();
    let status = response.status();
    let text = JsFuture::from(response.text().map_err(failed)?)
        .await
        .map_err(failed)?;
    Ok((status, text.as_string().unwrap_or_default()))
}

/// A timeout when our signal fired, else a transport failure with the runtime's message.
fn failure(signal: &AbortSignal, error: &JsValue) -> RestError {
    if signal.aborted() {
        return RestError::Timeout;
    }
    let message = error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "fetch failed".to_owned());
    RestError::Transport(message)
}
