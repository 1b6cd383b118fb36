//! Route handlers: thin functions from a request to the engine and back.

pub mod badge;
pub mod counters;
pub mod items;
pub mod likes;
pub mod ops;
#[cfg(feature = "record")]
pub mod transfer;
pub mod views;
pub mod visitors;

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

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
pub fn limited_json<T: Serialize>(body: &T, rate: &RateStatus) -> Result<Reply, AppError> {
    let mut reply = Reply::json(200, body)?;
    reply.rate_headers(rate);
    Ok(reply)
}

/// A counter's value as a JSON number (`null` if it is not finite, which
/// reads never answer).
pub struct CounterJson<'a>(pub &'a CounterValue);

impl Serialize for CounterJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self.0 {
            CounterValue::Int(n) => serializer.serialize_i64(n),
            CounterValue::Float(f) if f.is_finite() => serializer.serialize_f64(f),
            CounterValue::Float(_) => serializer.serialize_unit(),
        }
    }
}

/// An item's counters by name, in name order.
struct CountersJson<'a>(&'a BTreeMap<String, CounterValue>);

impl Serialize for CountersJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, &CounterJson(value))?;
        }
        map.end()
    }
}

/// An item as `GET /v1/items/{item}` shows it. Written straight from the
/// snapshot, with no JSON tree in between; the fields are in the order a JSON
/// object read whole writes them (sorted), so the bytes are the same.
#[derive(Serialize)]
pub struct SnapshotJson<'a> {
    counters: CountersJson<'a>,
    item: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    liked: Option<bool>,
    likes: u64,
    unique_viewers: UniqueJson,
    unique_viewers_today: u64,
    views: u64,
}

/// `unique_viewers`, its fields sorted as well.
#[derive(Serialize)]
struct UniqueJson {
    all_time: u64,
    last_30_days: u64,
    last_7_days: u64,
    today: u64,
}

/// An item as `GET /v1/items/{item}` shows it.
pub fn snapshot_json(snapshot: &ItemSnapshot) -> SnapshotJson<'_> {
    let unique = &snapshot.unique_viewers;
    SnapshotJson {
        counters: CountersJson(&snapshot.counters),
        item: &snapshot.item,
        liked: snapshot.liked,
        likes: snapshot.likes,
        unique_viewers: UniqueJson {
            all_time: unique.all_time,
            last_30_days: unique.last_30_days,
            last_7_days: unique.last_7_days,
            today: unique.today,
        },
        unique_viewers_today: unique.today,
        views: snapshot.views,
    }
}
