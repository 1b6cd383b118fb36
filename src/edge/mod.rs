//! The HTTP edge: the worker's entry point, the route table and its handlers.
//!
//! This is the only part of the crate that touches `worker`; it turns
//! requests into calls on the pure [`crate::engine`] and back. The static
//! files (`/`, `/tally.js`, `/openapi.json`) are Workers Static Assets, served
//! by the platform from `assets/` without running the worker.

mod assets;
mod config;
mod cors;
mod entry;
mod error;
mod fetch;
#[cfg(not(feature = "record"))]
mod forward;
mod handlers;
mod http;
mod identity;
mod jobs;
mod metrics;
#[cfg(feature = "record")]
mod record;
mod routes;

use std::rc::Rc;

use worker::web_sys::Request;
use worker::{Context, Env, Method};

use config::{Basics, Config};
use error::AppError;
use handlers::likes::Want;
use http::{Incoming, Reply};
use routes::Route;

/// The worker's fetch handler (exported by [`entry`]). It reads what routes
/// need of the runtime's request in one call ([`Incoming::read`]): a
/// `worker::Request` would read every property up front (`cf` included), each
/// a call into JavaScript.
async fn fetch(req: Request, env: Env, ctx: Context) -> Reply {
    let req = Incoming::read(req);
    let started = http::clock_ms();
    let basics = Basics::get(&env);
    let origin = cors::allowed_origin(&req, &basics.origins);
    let route = Route::recognise(http::path(req.url()));
    let config = Config::get(&env, metrics::observer);
    let mut reply = match dispatch(&req, &env, route, &basics, &config).await {
        Ok(reply) => reply,
        Err(error) => error.into_reply(),
    };
    // The `RECORD` Worker answered with the same settings: its CORS headers
    // are there, and it counted the request.
    #[cfg(not(feature = "record"))]
    if reply.is_forwarded() {
        return reply;
    }
    if let Some(origin) = origin {
        cors::grant(&mut reply, origin);
    }
    metrics::record(
        &ctx,
        config.ok(),
        basics.flush_interval_ms,
        route.map(|r| r.label()),
        req.method(),
        reply.status(),
        started,
    );
    reply
}

/// The cron trigger (`[triggers] crons` in wrangler.toml, every minute): one
/// reconciliation pass of the outbox into the system of record (exported by
/// [`entry`]). The edge build has no pass: the `RECORD` Worker runs its own.
#[cfg(feature = "record")]
async fn scheduled(env: Env) {
    // No request brought the time with it: read the clock.
    http::now_ms();
    match Config::get(&env, metrics::observer) {
        Ok(config) => record::scheduled(&env, &config).await,
        Err(error) => worker::console_error!("reconcile: not run: {error}"),
    }
}

/// The edge build's cron trigger: nothing to run (see above).
#[cfg(not(feature = "record"))]
async fn scheduled(_env: Env) {}

/// Checks the method and body size, then hands the request to its handler.
async fn dispatch(
    req: &Incoming,
    env: &Env,
    route: Option<Route<'_>>,
    basics: &Basics,
    config: &Result<Rc<Config>, AppError>,
) -> Result<Reply, AppError> {
    // Matched on the raw name: `worker::Method` reads unknown methods as GET.
    let method = match req.method() {
        "OPTIONS" => return cors::preflight(req, &basics.origins),
        "GET" | "HEAD" => Some(Method::Get),
        "POST" => Some(Method::Post),
        "PUT" => Some(Method::Put),
        "DELETE" => Some(Method::Delete),
        _ => None,
    };
    let route = route.ok_or(AppError::NotFound)?;
    let Some(method) = method.filter(|m| route.methods().contains(m)) else {
        return Err(AppError::MethodNotAllowed(route.allow()));
    };
    http::check_declared_length(req, route.max_body_bytes())?;
    // Static files need no secret, so they work even on a misconfigured worker.
    if let Route::Demo | Route::Embed | Route::OpenApi = route {
        return assets::serve(req, env).await;
    }
    let config = config.as_ref().map_err(Clone::clone)?;
    match route {
        Route::Healthz => handlers::ops::healthz(config).await,
        Route::Visitors => handlers::visitors::issue(req, config).await,
        Route::Items => handlers::items::read_many(req, config).await,
        Route::Item(item) if method == Method::Put => {
            handlers::items::register(req, config, item).await
        }
        Route::Item(item) => handlers::items::read(req, env, config, item).await,
        Route::Like(item) if method == Method::Put => {
            handlers::likes::set(req, config, item, Want::Liked).await
        }
        Route::Like(item) => handlers::likes::set(req, config, item, Want::NotLiked).await,
        Route::Views(item) => handlers::views::record(req, config, item).await,
        Route::Series(item) => handlers::views::series(req, env, config, item).await,
        Route::Counter(item, name) => handlers::counters::add(req, config, item, name).await,
        Route::Trending => handlers::items::trending(req, config).await,
        Route::Badge(item) => handlers::badge::badge(req, config, item).await,
        Route::Metrics => metrics::serve(req, config).await,
        // The admin routes are boxed: the state of their futures stays out
        // of the future every request of the counting routes carries.
        #[cfg(feature = "record")]
        Route::Import => Box::pin(handlers::transfer::import(req, config)).await,
        #[cfg(feature = "record")]
        Route::Merge(item) => Box::pin(handlers::transfer::merge(req, config, item)).await,
        #[cfg(feature = "record")]
        Route::Reconcile => Box::pin(record::reconcile(req, env, config)).await,
        #[cfg(not(feature = "record"))]
        Route::Import | Route::Merge(_) | Route::Reconcile => forward::to_record(req, env).await,
        // Answered above, before the configuration is needed.
        Route::Demo | Route::Embed | Route::OpenApi => Err(AppError::NotFound),
    }
}
