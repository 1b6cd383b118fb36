//! Operational routes.

use crate::edge::config::Config;
use crate::edge::error::AppError;
use crate::edge::http::Reply;

/// `GET /healthz`: `200` when a Redis round trip succeeds, else `503`.
pub async fn healthz(config: &Config) -> Result<Reply, AppError> {
    config.engine().ping().await?;
    Reply::json(200, &serde_json::json!({"status": "ok"}))
}
