//! The HTTP edge: the worker's entry point, router and handlers.

mod config;
mod error;
mod handlers;

use worker::{Context, Env, Request, Response, Router, event};

/// The worker's fetch entry point: one router of named handlers.
#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    Router::new()
        .get_async("/healthz", handlers::healthz)
        .run(req, env)
        .await
}
