//! Route handlers: thin functions from a request to a response.

use worker::{Request, Response, RouteContext};

use super::config;
use super::error::AppError;

/// `GET /healthz`: 200 when a Redis round trip succeeds, else 503.
pub async fn healthz(_req: Request, ctx: RouteContext<()>) -> worker::Result<Response> {
    match ping(&ctx).await {
        Ok(()) => Response::from_json(&serde_json::json!({"status": "ok"})),
        Err(e) => e.into_response(),
    }
}

async fn ping(ctx: &RouteContext<()>) -> Result<(), AppError> {
    let redis = config::redis(&ctx.env)?;
    redis.command(&["PING"]).await?;
    Ok(())
}
