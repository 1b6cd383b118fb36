//! The browser-facing files: the demo page at `/`, the embed at `/tally.js` and
//! the API's `/openapi.json`.
//!
//! They are Workers Static Assets (`[assets]` in `wrangler.toml`, the files in
//! `assets/`, their headers in `assets/_headers`): Cloudflare serves them, with
//! an `ETag` and `304` revalidation, without running the worker, and they are
//! not compiled into the wasm. A `GET` reaches the worker only when no file
//! matched (or when a setup runs the worker first); it is handed to the
//! `ASSETS` binding if there is one, else it is a `404`.

use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Env, web_sys, worker_sys};

use super::error::AppError;
use super::http::{self, Incoming, Reply};

/// The binding of the static assets (`[assets] binding` in `wrangler.toml`).
const BINDING: &str = "ASSETS";

/// `GET /`, `/tally.js` or `/openapi.json` that reached the worker.
pub async fn serve(req: &Incoming, env: &Env) -> Result<Reply, AppError> {
    let Ok(assets) = env.assets(BINDING) else {
        return Err(AppError::NotFound);
    };
    // The binding's own `fetch`, given the runtime's request (a `GET` or
    // `HEAD`: no body to consume): a `worker::Request` would first read all of
    // it into wasm, and its `Response` would make a new one on the way out.
    let assets: worker_sys::Fetcher = assets.into_rpc();
    let answer = assets.fetch(req.raw()).map_err(js_error)?;
    let response: web_sys::Response = JsFuture::from(answer)
        .await
        .map_err(js_error)?
        .dyn_into()
        .map_err(js_error)?;
    // That was I/O: the clock moved (see `http::clock_ms`).
    http::now_ms();
    if response.status() == 404 {
        return Err(AppError::NotFound);
    }
    // Its headers are immutable: CORS goes on a copy, in place of the file's
    // own `Access-Control-Allow-Origin` (`Reply::into_raw`).
    Ok(Reply::runtime(response))
}

/// What the binding threw or rejected with.
fn js_error(error: JsValue) -> AppError {
    AppError::Internal(super::error::js_message(&error))
}
