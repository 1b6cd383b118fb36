//! Operational routes.

use worker::Response;

use crate::edge::config::Config;
use crate::edge::error::AppError;
use crate::edge::http;

/// `GET /healthz`: `200` when a Redis round trip succeeds, else `503`.
pub async fn healthz(config: &Config) -> Result<Response, AppError> {
    config.engine().ping().await?;
    Ok(http::json(200, &serde_json::json!({"status": "ok"}))?)
}
