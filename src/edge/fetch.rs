//! The REST client's transport in the worker: the runtime's own `fetch`, so the
//! wasm carries no HTTP client (natively, `rest` uses `reqwest`).
//!
//! The request, its status and its body are one JavaScript promise
//! (`fetch.js`): every promise awaited from Rust costs a pair of closures, a
//! wake-up and a poll, and every call into JavaScript a crossing. Bodies cross
//! as bytes both ways: no string is decoded into JavaScript or encoded back.

use std::time::Duration;

use wasm_bindgen::prelude::wasm_bindgen;
use worker::js_sys::{Promise, Uint8Array};
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;

use super::http;
use crate::rest::{BoxFuture, RestError, Transport};

#[wasm_bindgen(module = "/src/edge/fetch.js")]
extern "C" {
    /// `fetch` with `AbortSignal.timeout(millis)`: the status (2 bytes, big
    /// endian), the clock when it answered (f64 ms, 8 bytes, little endian),
    /// then the body; or a rejection with null (timed out) or the failure's message.
    #[wasm_bindgen(js_name = post)]
    fn post_js(url: &str, authorization: &str, body: &[u8], millis: u32) -> Promise;
}

/// `fetch` with an `AbortSignal.timeout`: a request that outlives its timeout,
/// body included, is aborted and answers [`RestError::Timeout`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchTransport;

impl Transport for FetchTransport {
    fn post<'a>(
        &'a self,
        url: &'a str,
        authorization: &'a str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, Vec<u8>), RestError>> {
        let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let answer = JsFuture::from(post_js(url, authorization, &body, millis));
        Box::pin(async move {
            let answer = answer.await.map_err(|error| match error.as_string() {
                Some(message) => RestError::Transport(message),
                None if error.is_null() => RestError::Timeout,
                None => RestError::Transport("fetch failed".to_owned()),
            })?;
            split_head(answer.unchecked_into::<Uint8Array>().to_vec())
        })
    }
}

/// The status and the body of an answer from `fetch.js` (the body kept in
/// place); the clock it carries advances the isolate's ([`http::clock_ms`]).
fn split_head(mut answer: Vec<u8>) -> Result<(u16, Vec<u8>), RestError> {
    let Some((head, _)) = answer.split_first_chunk::<10>() else {
        return Err(RestError::Transport("fetch answered no status".to_owned()));
    };
    let status = u16::from_be_bytes([head[0], head[1]]);
    let mut clock = [0; 8];
    clock.copy_from_slice(&head[2..]);
    http::advance_clock(f64::from_le_bytes(clock));
    answer.drain(..10);
    Ok((status, answer))
}
