//! `POST /v1/items/{item}/views` and the views series.

use sha2::{Digest, Sha256};
use worker::Env;

use super::{admitted, idempotency_key, item_id, limited_json};
use crate::edge::config::Config;
use crate::edge::error::AppError;
#[cfg(not(feature = "record"))]
use crate::edge::forward;
use crate::edge::http::{self, Header, Incoming, Reply};
#[cfg(feature = "record")]
use crate::edge::record;
use crate::edge::{identity, metrics};
use crate::engine::{Bucket, Idempotency, Limiter, ViewOutcome};
use crate::viewer;

/// Records a view: once per viewer per item within the dedupe window, never
/// for bots, and at most once per `Idempotency-Key`. A counted view counts in
/// trending in the same script: one Redis command per view.
pub async fn record(req: &Incoming, config: &Config, raw_item: &str) -> Result<Reply, AppError> {
    let now = http::now();
    let item = item_id(raw_item)?;
    let idempotency_key = idempotency_key(req)?;
    let user_agent = req.header(Header::UserAgent).unwrap_or_default();
    // A token with `"tally": {"count_views": false}` (the site's own people)
    // is answered like a bot: the current count, nothing counted.
    let mut counts_views = true;
    let (viewer, subject, network) = match identity::optional(req, config, now)? {
        Some(claims) => {
            counts_views = claims.count_views;
            let network = identity::visitor_network(req, config, &claims, now);
            (claims.sub.clone(), claims.sub, network)
        }
        None => {
            let ip = http::client_ip(req);
            let viewer =
                viewer::anonymous_viewer(config.jwt_secret.as_bytes(), now, ip, user_agent);
            let client = viewer::anonymous_client(config.jwt_secret.as_bytes(), now, ip);
            (viewer, client, None)
        }
    };
    let limiter = Limiter {
        subject: &subject,
        network: network.as_deref(),
    };
    let idempotency = idempotency_key.map(|key| Idempotency {
        fingerprint: fingerprint(&item, &viewer),
        key,
    });
    let engine = config.engine();
    let countable = counts_views && !viewer::is_bot(user_agent);
    let limited = engine
        .view(
            &item,
            &viewer,
            limiter,
            now,
            idempotency.as_ref(),
            countable,
        )
        .await?;
    let (outcome, rate) = admitted(limited)?;
    let (views, counted, replayed) = match outcome {
        ViewOutcome::Recorded { views, counted } => (views, counted, false),
        ViewOutcome::Replayed { views, counted } => (views, counted, true),
        ViewOutcome::Conflict => return Err(AppError::IdempotencyConflict),
    };
    if !replayed {
        metrics::view(counted);
    }
    let body = ViewJson {
        counted,
        item: item.as_str(),
        views,
    };
    let mut reply = limited_json(&body, &rate)?;
    if replayed {
        reply.header("Idempotent-Replayed", "true");
    }
    Ok(reply)
}

/// `GET /v1/items/{item}/views/series?bucket=&from=&to=&metric=`: views per
/// bucket, or with `metric=unique` distinct viewers per day (`bucket=day` only).
/// Days older than Redis keeps (400) come from the system of record, if bound.
pub async fn series(
    req: &Incoming,
    env: &Env,
    config: &Config,
    raw_item: &str,
) -> Result<Reply, AppError> {
    let item = item_id(raw_item)?;
    let query = http::query(req)?;
    let param = |name: &str| http::param(&query, name);
    let bucket = match param("bucket").unwrap_or("minute") {
        "minute" => Bucket::Minute,
        "hour" => Bucket::Hour,
        "day" => Bucket::Day,
        _ => return Err(invalid("bucket must be minute, hour or day")),
    };
    let step = bucket.seconds();
    let to = match param("to") {
        Some(raw) => unix_seconds(raw, "to")?,
        None => http::now(),
    };
    // Without `from`, the last 60 buckets up to `to`.
    let from = match param("from") {
        Some(raw) => unix_seconds(raw, "from")?,
        None => to - 59 * step,
    };
    if from > to {
        return Err(invalid("from must not be after to"));
    }
    match param("metric").unwrap_or("views") {
        "views" => {}
        "unique" if bucket == Bucket::Day => {
            let points = config
                .engine()
                .unique_series(&item, from, to, http::now())
                .await?;
            let points: Vec<_> = points
                .iter()
                .map(|p| serde_json::json!({"t": p.t, "unique_viewers": p.unique_viewers}))
                .collect();
            let body = serde_json::json!({
                "item": item.as_str(), "bucket": "day", "metric": "unique", "points": points,
            });
            return Reply::json(200, &body);
        }
        "unique" => return Err(invalid("metric=unique takes bucket=day")),
        _ => return Err(invalid("metric must be views or unique")),
    }
    // The days Redis no longer keeps are the `RECORD` Worker's: it answers
    // the whole request when the first (oldest) day is one of them.
    #[cfg(not(feature = "record"))]
    if bucket == Bucket::Day
        && Bucket::Day.expired(bucket.start(from), http::now())
        && forward::bound(env)
    {
        return forward::to_record(req, env).await;
    }
    #[cfg_attr(not(feature = "record"), expect(unused_mut))]
    let mut points = config.engine().series(&item, bucket, from, to).await?;
    #[cfg(feature = "record")]
    if bucket == Bucket::Day {
        Box::pin(record::fill_old_days(env, &item, &mut points, http::now())).await?;
    }
    let points: Vec<_> = points
        .iter()
        .map(|p| serde_json::json!({"t": p.t, "views": p.views}))
        .collect();
    let bucket_name = match bucket {
        Bucket::Minute => "minute",
        Bucket::Hour => "hour",
        Bucket::Day => "day",
    };
    let body = serde_json::json!({"item": item.as_str(), "bucket": bucket_name, "points": points});
    Reply::json(200, &body)
}

/// A view's answer, its fields sorted as a JSON object read whole writes them.
#[derive(serde::Serialize)]
struct ViewJson<'a> {
    counted: bool,
    item: &'a str,
    views: u64,
}

/// What makes two view requests "the same request" for an idempotency key.
fn fingerprint(item: &crate::item::ItemId, viewer: &str) -> String {
    let digest = Sha256::digest(format!("POST views\n{}\n{viewer}", item.as_str()));
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn unix_seconds(raw: &str, name: &str) -> Result<i64, AppError> {
    raw.parse::<i64>()
        .ok()
        .filter(|t| *t >= 0)
        .ok_or_else(|| invalid(&format!("{name} must be a unix time in seconds")))
}

fn invalid(message: &str) -> AppError {
    AppError::InvalidQuery(message.to_owned())
}
