//! Items: registration, and reads of one item, a batch of items, and trending items.

use worker::Env;

use super::{item_id, snapshot_json};
use crate::edge::config::Config;
use crate::edge::error::AppError;
#[cfg(not(feature = "record"))]
use crate::edge::forward;
use crate::edge::http::{self, Incoming, Reply};
use crate::edge::identity;
#[cfg(feature = "record")]
use crate::edge::record;
use crate::engine::Window;

/// The most ids one batch read takes.
const MAX_BATCH: usize = 100;
/// The longest `who` of a record read: a token's `sub` is at most this long.
const MAX_WHO_BYTES: usize = 256;
/// The most items trending lists.
const MAX_TRENDING: usize = 100;

/// `PUT /v1/items/{item}` with the API key: registers the item (what
/// `ITEMS=registered` lets be written): `201` when created, `200` when it
/// already was. Under `ITEMS=pattern` an id outside the pattern is `404`.
pub async fn register(req: &Incoming, config: &Config, raw_item: &str) -> Result<Reply, AppError> {
    identity::api_key(req, config)?;
    let item = item_id(raw_item)?;
    let created = config.engine().register(&item, http::now()).await?;
    let body = serde_json::json!({"item": item.as_str(), "created": created});
    Reply::json(if created { 201 } else { 200 }, &body)
}

/// `GET /v1/items/{item}`: counts, counters and, with a token, `liked`.
/// With `?source=record` (API key) the same from the system of record, and
/// `liked` for the identity `who` when given.
pub async fn read(
    req: &Incoming,
    env: &Env,
    config: &Config,
    raw_item: &str,
) -> Result<Reply, AppError> {
    let now = http::now();
    let item = item_id(raw_item)?;
    let query = http::query(req)?;
    let who = http::param(&query, "who");
    if who.is_some_and(|w| w.is_empty() || w.len() > MAX_WHO_BYTES) {
        return Err(AppError::InvalidQuery(format!(
            "who must be an identity of 1-{MAX_WHO_BYTES} bytes"
        )));
    }
    match http::param(&query, "source") {
        None | Some("live") => {}
        Some("record") => {
            #[cfg(feature = "record")]
            {
                let snapshot = Box::pin(record::read(env, req, config, &item, who)).await?;
                return Reply::json(200, &snapshot_json(&snapshot));
            }
            #[cfg(not(feature = "record"))]
            return forward::to_record(req, env).await;
        }
        Some(_) => {
            return Err(AppError::InvalidQuery(
                "source must be live or record".into(),
            ));
        }
    }
    let who = identity::optional(req, config, now)?;
    let snapshot = config
        .engine()
        .read(&item, who.as_ref().map(|c| c.sub.as_str()), now)
        .await?;
    Reply::json(200, &snapshot_json(&snapshot))
}

/// `GET /v1/items?ids=a,b,c`: up to 100 items, in the order asked.
pub async fn read_many(req: &Incoming, config: &Config) -> Result<Reply, AppError> {
    let now = http::now();
    let query = http::query(req)?;
    let ids = http::param(&query, "ids")
        .ok_or_else(|| AppError::InvalidQuery("ids is required: ?ids=a,b,c".into()))?;
    let items = ids
        .split(',')
        .map(|id| crate::item::ItemId::parse(id).map_err(|e| AppError::InvalidItem(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(AppError::InvalidQuery(format!(
            "ids takes 1-{MAX_BATCH} item ids"
        )));
    }
    let who = identity::optional(req, config, now)?;
    let snapshots = config
        .engine()
        .read_many(&items, who.as_ref().map(|c| c.sub.as_str()), now)
        .await?;
    #[derive(serde::Serialize)]
    struct Items<'a> {
        items: Vec<super::SnapshotJson<'a>>,
    }
    let items = snapshots.iter().map(snapshot_json).collect();
    Reply::json(200, &Items { items })
}

/// `GET /v1/trending?window=hour|day&limit=10`: most viewed first.
pub async fn trending(req: &Incoming, config: &Config) -> Result<Reply, AppError> {
    let query = http::query(req)?;
    let param = |name: &str| http::param(&query, name);
    let (window, window_name) = match param("window").unwrap_or("hour") {
        "hour" => (Window::Hour, "hour"),
        "day" => (Window::Day, "day"),
        _ => return Err(AppError::InvalidQuery("window must be hour or day".into())),
    };
    let limit = match param("limit") {
        None => 10,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TRENDING).contains(n))
            .ok_or_else(|| {
                AppError::InvalidQuery(format!("limit must be an integer from 1 to {MAX_TRENDING}"))
            })?,
    };
    let trends = config.engine().trending(window, limit, http::now()).await?;
    let items: Vec<_> = trends
        .iter()
        .map(|t| serde_json::json!({"item": t.item, "views": t.views}))
        .collect();
    Reply::json(
        200,
        &serde_json::json!({"window": window_name, "items": items}),
    )
}
