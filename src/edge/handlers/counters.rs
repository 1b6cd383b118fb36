//! `POST /v1/items/{item}/counters/{name}`: server-to-server custom counters.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{CounterJson, idempotency_key, item_id};
use crate::edge::config::Config;
use crate::edge::error::AppError;
use crate::edge::http::{self, Incoming, Reply};
use crate::edge::identity;
use crate::engine::{Amount, CounterOutcome, Idempotency};
use crate::item::{self, CounterName, ItemId};

/// Adds `{"by": n}` to the item's counter: an integer via HINCRBY, anything
/// with a fraction or exponent via HINCRBYFLOAT; at most once per
/// `Idempotency-Key` (same semantics as views).
pub async fn add(
    req: &Incoming,
    config: &Config,
    raw_item: &str,
    raw_name: &str,
) -> Result<Reply, AppError> {
    identity::api_key(req, config)?;
    let item = item_id(raw_item)?;
    let name = item::decode_segment(raw_name)
        .ok_or_else(|| {
            AppError::InvalidName("the counter name is not valid percent-encoded UTF-8".into())
        })
        .and_then(|n| CounterName::parse(&n).map_err(|e| AppError::InvalidName(e.to_string())))?;
    let key = idempotency_key(req)?;
    let body = http::body(req).await?;
    let by = amount(&body)?;
    let idempotency = key.map(|key| Idempotency {
        fingerprint: fingerprint(&item, &name, by),
        key,
    });
    let outcome = config
        .engine()
        .add_to_counter_once(&item, &name, by, http::now(), idempotency.as_ref())
        .await?;
    let (value, replayed) = match outcome {
        CounterOutcome::Added(value) => (value, false),
        CounterOutcome::Replayed(value) => (value, true),
        CounterOutcome::Conflict => return Err(AppError::IdempotencyConflict),
    };
    let body = serde_json::json!({
        "item": item.as_str(),
        "counter": name.as_str(),
        "value": CounterJson(&value),
    });
    let mut reply = Reply::json(200, &body)?;
    if replayed {
        reply.header("Idempotent-Replayed", "true");
    }
    Ok(reply)
}

fn amount(body: &[u8]) -> Result<Amount, AppError> {
    let invalid = || AppError::InvalidBody(r#"the body must be {"by": <finite number>}"#.into());
    let json: Value = serde_json::from_slice(body).map_err(|_| invalid())?;
    let by = json
        .get("by")
        .and_then(Value::as_number)
        .ok_or_else(invalid)?;
    if let Some(n) = by.as_i64() {
        return Ok(Amount::Int(n));
    }
    by.as_f64()
        .filter(|f| f.is_finite())
        .map(Amount::Float)
        .ok_or_else(invalid)
}

/// What makes two adds "the same request" for an idempotency key: the item,
/// the counter and the amount (the caller is always the API key's holder).
fn fingerprint(item: &ItemId, name: &CounterName, by: Amount) -> String {
    let by = match by {
        Amount::Int(n) => format!("int {n}"),
        Amount::Float(f) => format!("float {f}"),
    };
    let digest = Sha256::digest(format!(
        "POST counters\n{}\n{}\n{by}",
        item.as_str(),
        name.as_str()
    ));
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
