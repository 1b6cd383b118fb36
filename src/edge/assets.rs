//! The browser-facing files: the demo page at `/`, the embed at `/tally.js` and
//! the API's `/openapi.json`.
//!
//! They are Workers Static Assets (`[assets]` in `wrangler.toml`, the files in
//! `assets/`, their headers in `assets/_headers`): Cloudflare serves them, with
//! an `ETag` and `304` revalidation, without running the worker, and they are
//! not compiled into the wasm. A `GET` reaches the worker only when no file
//! matched (or when a setup runs the worker first); it is handed to the
//! `ASSETS` binding if there is one, else it is a `404`.

use worker::Env;
use worker::wasm_bindgen::JsValue;

use super::error::AppError;
use super::http::{Incoming, Reply};

/// The binding of the static assets (`[assets] binding` in `wrangler.toml`).
const BINDING: &str = "ASSETS";

/// `GET /`, `/tally.js` or `/openapi.json` that reached the worker.
pub async fn serve(req: &Incoming, env: &Env) -> Result<Reply, AppError> {
    let Ok(assets) = env.assets(BINDING) else {
        return Err(AppError::NotFound);
    };
    // A `GET` or `HEAD`: no body to pass on.
    let response = req.through(assets).await.map_err(js_error)?;
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
