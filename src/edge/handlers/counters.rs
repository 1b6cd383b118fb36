//! `POST /v1/items/{item}/counters/{name}`: server-to-server custom counters.

use serde_json::Value;
use worker::{Response, web_sys::Request};

use super::{counter_json, item_id};
use crate::edge::config::Config;
use crate::edge::error::AppError;
use crate::edge::{http, identity};
use crate::engine::Amount;
use crate::item::{self, CounterName};

/// Adds `{"by": n}` to the item's counter: an integer via HINCRBY, anything
/// with a fraction or exponent via HINCRBYFLOAT.
pub async fn add(
    req: &mut Request,
    config: &Config,
    raw_item: &str,
    raw_name: &str,
) -> Result<Response, AppError> {
    identity::api_key(req, config)?;
    let item = item_id(raw_item)?;
    let name = item::decode_segment(raw_name)
        .ok_or_else(|| {
            AppError::InvalidName("the counter name is not valid percent-encoded UTF-8".into())
        })
        .and_then(|n| CounterName::parse(&n).map_err(|e| AppError::InvalidName(e.to_string())))?;
    let body = http::body(req).await?;
    let by = amount(&body)?;
    let value = config.engine().add_to_counter(&item, &name, by).await?;
    let body = serde_json::json!({
        "item": item.as_str(),
        "counter": name.as_str(),
        "value": counter_json(&value),
    });
    Ok(http::json(200, &body)?)
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
