//! The wasm's `fetch` and `scheduled` exports: each runs its handler
//! ([`super::fetch`], [`super::scheduled`]) without a microtask per step.
//!
//! `#[event(fetch)]` and `#[event(scheduled)]` hand the handler to
//! `future_to_promise`, whose executor polls it in a microtask of its own at
//! the start and again after every promise it awaits: a `queueMicrotask` call
//! into JavaScript and back each time, and a `Promise` even for an answer that
//! needs no I/O. Here the first poll runs at once: a request answered without
//! I/O (a 404, a 405, a bad id, a preflight) returns its `Response` directly.
//! Otherwise the handler becomes a job ([`super::jobs`]) that is polled again
//! from the callback of the promise it waits on, which already runs in a
//! microtask, and resolves its `Promise` when done. The handlers always have
//! an answer (errors become their JSON responses in [`super::fetch`], a pass
//! logs its own); a panic traps the module, as under `#[event]`, which the
//! JavaScript entry (`entry.js`) notices and reinitialises.

use wasm_bindgen::prelude::wasm_bindgen;
use worker::wasm_bindgen::JsValue;
use worker::web_sys;
use worker::{Context, Env, worker_sys};

use super::jobs;

/// The runtime's `fetch` handler: a `Response`, or a `Promise` of one.
#[wasm_bindgen(js_name = fetch)]
pub fn entry(req: web_sys::Request, env: Env, ctx: worker_sys::Context) -> JsValue {
    let ctx = Context::new(ctx);
    jobs::start(
        Box::pin(async move { super::fetch(req, env, ctx).await.into_raw().into() }),
        || super::http::Reply::internal().into_raw().into(),
    )
}

/// The runtime's `scheduled` handler: `undefined`, or a `Promise` of it.
#[wasm_bindgen(js_name = scheduled)]
pub fn scheduled(
    _event: worker_sys::ScheduledEvent,
    env: Env,
    _ctx: worker_sys::ScheduleContext,
) -> JsValue {
    jobs::start(
        Box::pin(async move {
            super::scheduled(env).await;
            JsValue::UNDEFINED
        }),
        || JsValue::UNDEFINED,
    )
}
