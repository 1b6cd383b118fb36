//! `POST /v1/admin/import` and `POST /v1/admin/items/{item}/merge`: moving
//! counts in from another counter, and folding a renamed page's old id into its new one.

use serde_json::Value;

use super::item_id;
use crate::edge::config::Config;
use crate::edge::error::AppError;
use crate::edge::http::{self, Incoming, Reply};
use crate::edge::identity;
use crate::item::ItemId;
use crate::transfer::{self, MAX_IMPORT_BYTES, TransferError};

/// `POST /v1/admin/import` with the API key: an NDJSON body of up to 1000
/// lines (256 KiB), every line checked before anything is written, then set
/// in one script. `200 {"imported": n}`; a bad line is `400 invalid_import`
/// with its `line`, and nothing is written.
pub async fn import(req: &Incoming, config: &Config) -> Result<Reply, AppError> {
    identity::api_key(req, config)?;
    let body = http::body_up_to(req, MAX_IMPORT_BYTES).await?;
    let lines = transfer::parse_import(&body).map_err(app_error)?;
    let imported = config
        .engine()
        .import(&lines, http::now())
        .await
        .map_err(app_error)?;
    Reply::json(200, &serde_json::json!({"imported": imported}))
}

/// `POST /v1/admin/items/{item}/merge` with the API key and `{"from": "<old
/// item>"}`: folds the old id into this one. `200 {"item", "from", "merged",
/// "likes", "views"}`; `merged` is false when the old id had nothing.
pub async fn merge(req: &Incoming, config: &Config, raw_item: &str) -> Result<Reply, AppError> {
    identity::api_key(req, config)?;
    let item = item_id(raw_item)?;
    let from = from(&http::body(req).await?)?;
    let outcome = config
        .engine()
        .merge(&item, &from, http::now())
        .await
        .map_err(app_error)?;
    let body = serde_json::json!({
        "item": item.as_str(),
        "from": from.as_str(),
        "merged": outcome.merged,
        "likes": outcome.likes,
        "views": outcome.views,
    });
    Reply::json(200, &body)
}

/// The old item of a merge body: `{"from": "<item id>"}`, nothing else.
fn from(body: &[u8]) -> Result<ItemId, AppError> {
    let invalid = || AppError::InvalidBody(r#"the body must be {"from": "<old item id>"}"#.into());
    let json: Value = serde_json::from_slice(body).map_err(|_| invalid())?;
    let object = json
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(invalid)?;
    let from = object
        .get("from")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    ItemId::parse(from).map_err(|e| AppError::InvalidItem(format!("from: {e}")))
}

fn app_error(error: TransferError) -> AppError {
    match error {
        TransferError::Line { line, .. } => AppError::InvalidImport {
            line: Some(line),
            message: error.to_string(),
        },
        TransferError::Empty => AppError::InvalidImport {
            line: None,
            message: error.to_string(),
        },
        TransferError::SameItem => AppError::InvalidBody(error.to_string()),
        TransferError::Engine(error) => error.into(),
    }
}
