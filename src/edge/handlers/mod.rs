//! Route handlers: thin functions from a request to the engine and back.

pub mod badge;
pub mod counters;
pub mod items;
pub mod likes;
pub mod ops;
pub mod transfer;
pub mod views;
pub mod visitors;

use serde_json::{Map, Value};

use super::error::AppError;
use super::http::{Header, Incoming, Reply};
use crate::engine::{CounterValue, ItemSnapshot, Limited, RateStatus};
use crate::item::{self, ItemId};

/// The item id of a raw (percent-encoded) path segment.
pub fn item_id(raw: &str) -> Result<ItemId, AppError> {
    let decoded = item::decode_segment(raw).ok_or_else(|| {
        AppError::InvalidItem("the item id is not valid percent-encoded UTF-8".into())
    })?;
    ItemId::parse(&decoded).map_err(|e| AppError::InvalidItem(e.to_string()))
}

/// The `Idempotency-Key` header: 1-255 printable ASCII characters, if sent.
pub fn idempotency_key(req: &Incoming) -> Result<Option<String>, AppError> {
    let Some(key) = req.header(Header::IdempotencyKey) else {
        return Ok(None);
    };
    let printable = key.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if key.is_empty() || key.len() > 255 || !printable {
        return Err(AppError::InvalidHeader(
            "Idempotency-Key must be 1-255 printable ASCII characters".into(),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The outcome of a rate-limited write, or `429` when over the limit.
pub fn admitted<T>(limited: Limited<T>) -> Result<(T, RateStatus), AppError> {
    match limited.outcome {
        Some(outcome) => Ok((outcome, limited.rate)),
        None => Err(AppError::RateLimited(limited.rate)),
    }
}

/// A `200` JSON response carrying the rate-limit fields of the write.
pub fn limited_json(body: &Value, rate: &RateStatus) -> Result<Reply, AppError> {
    let mut reply = Reply::json(200, body)?;
    reply.rate_headers(rate);
    Ok(reply)
}

/// A counter's value as a JSON number.
pub fn counter_json(value: &CounterValue) -> Value {
    match value {
        CounterValue::Int(n) => Value::from(*n),
        CounterValue::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
    }
}

/// An item as `GET /v1/items/{item}` shows it.
pub fn snapshot_json(snapshot: &ItemSnapshot) -> Value {
    // Inserted, not collected: a `collect()` into a map sorts, which puts a
    // sort in the wasm for this one call.
    let mut counters = Map::new();
    for (name, value) in &snapshot.counters {
        counters.insert(name.clone(), counter_json(value));
    }
    let mut body = serde_json::json!({
        "item": snapshot.item,
        "likes": snapshot.likes,
        "views": snapshot.views,
        "unique_viewers_today": snapshot.unique_viewers.today,
        "unique_viewers": {
            "today": snapshot.unique_viewers.today,
            "last_7_days": snapshot.unique_viewers.last_7_days,
            "last_30_days": snapshot.unique_viewers.last_30_days,
            "all_time": snapshot.unique_viewers.all_time,
        },
        "counters": counters,
    });
    if let (Some(liked), Some(object)) = (snapshot.liked, body.as_object_mut()) {
        object.insert("liked".into(), Value::Bool(liked));
    }
    body
}
