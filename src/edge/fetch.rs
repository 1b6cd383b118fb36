//! The REST client's transport in the worker: the runtime's own `fetch`, so the
//! wasm carries no HTTP client (natively, `rest` uses `reqwest`).
//!
//! The request, its status and its body come back in one call of a function
//! the wasm makes once per isolate ([`deliver`]), which wakes the request that
//! waits on it: awaiting a JavaScript promise from Rust would make a pair of
//! closures per request (each a call into JavaScript and a registration with
//! the garbage collector), and reading the bytes out of it more calls. Bodies
//! cross as bytes both ways: no string is decoded into JavaScript or encoded back.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wasm_bindgen::prelude::{Closure, wasm_bindgen};
use worker::js_sys::Function;
use worker::wasm_bindgen::{JsCast, JsValue};

use super::http;
use crate::rest::{BoxFuture, RestError, Transport};

#[wasm_bindgen(module = "/src/edge/fetch.js")]
extern "C" {
    /// `fetch` with `AbortSignal.timeout(millis)`; calls `deliver` with `id`
    /// once it has the answer or has failed.
    #[wasm_bindgen(js_name = post)]
    fn post_js(
        url: &JsValue,
        authorization: &JsValue,
        body: &[u8],
        millis: u32,
        id: u32,
        deliver: &Function,
    );
}

/// `deliver`'s status for a request that ran out of time (`fetch.js`).
const TIMED_OUT: u16 = 0;
/// `deliver`'s status for a request that failed; the bytes are the message.
const FAILED: u16 = 1;

type Answer = Result<(u16, Vec<u8>), RestError>;

/// A round trip in flight: its answer once delivered, and who waits on it.
struct InFlight {
    id: u32,
    answer: Option<Answer>,
    waker: Option<Waker>,
}

thread_local! {
    /// The round trips in flight in this isolate (it runs one thread): a few
    /// per concurrent request, so a list.
    static IN_FLIGHT: RefCell<Vec<InFlight>> = const { RefCell::new(Vec::new()) };
    static NEXT_ID: Cell<u32> = const { Cell::new(0) };
    /// The URLs and `Authorization` values sent so far as JavaScript strings
    /// (a client has two URLs and one key), so that none is decoded from wasm
    /// memory again per request.
    static STRINGS: RefCell<Vec<(String, JsValue)>> = const { RefCell::new(Vec::new()) };
    /// [`deliver`] as a JavaScript function, made once (and kept for the isolate's life).
    static DELIVER: Function = Closure::<dyn FnMut(u32, u16, f64, Vec<u8>)>::new(deliver)
        .into_js_value()
        .unchecked_into();
}

/// Called by `fetch.js` once per round trip: keeps the answer for round trip
/// `id` and wakes its request. The clock it brings advances the isolate's
/// ([`http::clock_ms`]). An answer nobody waits for any more is dropped.
fn deliver(id: u32, status: u16, clock: f64, body: Vec<u8>) {
    http::advance_clock(clock);
    let answer = match status {
        TIMED_OUT => Err(RestError::Timeout),
        FAILED => Err(RestError::Transport(
            String::from_utf8_lossy(&body).into_owned(),
        )),
        _ => Ok((status, body)),
    };
    let waker = IN_FLIGHT.with(|in_flight| {
        let mut in_flight = in_flight.borrow_mut();
        let entry = in_flight.iter_mut().find(|entry| entry.id == id)?;
        entry.answer = Some(answer);
        entry.waker.take()
    });
    // Woken with nothing borrowed: waking polls the request at once.
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The answer to round trip `id`, once [`deliver`]ed.
struct Pending(u32);

impl Future for Pending {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        IN_FLIGHT.with(|in_flight| {
            let mut in_flight = in_flight.borrow_mut();
            let Some(at) = in_flight.iter().position(|entry| entry.id == self.0) else {
                return Poll::Ready(Err(RestError::Transport("the answer was lost".to_owned())));
            };
            if let Some(answer) = in_flight[at].answer.take() {
                in_flight.swap_remove(at);
                return Poll::Ready(answer);
            }
            let entry = &mut in_flight[at];
            if !entry
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                entry.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = IN_FLIGHT.try_with(|in_flight| {
            in_flight.borrow_mut().retain(|entry| entry.id != self.0);
        });
    }
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
        let id = NEXT_ID.get();
        NEXT_ID.set(id.wrapping_add(1));
        IN_FLIGHT.with(|in_flight| {
            in_flight.borrow_mut().push(InFlight {
                id,
                answer: None,
                waker: None,
            });
        });
        STRINGS.with_borrow_mut(|strings| {
            let url = js_string(strings, url);
            let authorization = js_string(strings, authorization);
            DELIVER.with(|deliver| {
                post_js(
                    &strings[url].1,
                    &strings[authorization].1,
                    &body,
                    millis,
                    id,
                    deliver,
                );
            });
        });
        Box::pin(Pending(id))
    }
}

/// Where `text` is in `strings`, added first if new.
fn js_string(strings: &mut Vec<(String, JsValue)>, text: &str) -> usize {
    match strings.iter().position(|(known, _)| known == text) {
        Some(at) => at,
        None => {
            strings.push((text.to_owned(), JsValue::from_str(text)));
            strings.len() - 1
        }
    }
}
