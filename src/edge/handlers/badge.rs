//! `GET /v1/items/{item}/badge.svg`: a README badge, read-only unless `count=1`.

use sha2::{Digest, Sha256};

use super::item_id;
use crate::badge::{self, Style};
use crate::edge::config::Config;
use crate::edge::error::AppError;
use crate::edge::http::{self, Header, Incoming, Reply};
use crate::engine::{Engine, ItemSnapshot, Limiter, Settings, ViewOutcome};
use crate::viewer;

/// A badge view counts once per item per client address and User-Agent
/// within this many seconds. GitHub's image proxy fetches every README view
/// from a few addresses with one User-Agent, so the page views' window
/// (`VIEW_DEDUPE_SECONDS`, 30 min) would count it about once per half hour;
/// one minute keeps reloads and bursts from one client out while counting a
/// busy README at most once a minute per proxy address.
pub const BADGE_DEDUPE_SECONDS: u64 = 60;

/// What the badge counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Views,
    Likes,
    Unique,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Views => "views",
            Metric::Likes => "likes",
            Metric::Unique => "unique",
        }
    }

    fn of(self, snapshot: &ItemSnapshot) -> u64 {
        match self {
            Metric::Views => snapshot.views,
            Metric::Likes => snapshot.likes,
            Metric::Unique => snapshot.unique_viewers.all_time,
        }
    }
}

/// Draws the badge: `metric` (views, likes or unique: all-time unique
/// viewers), `label`, `color`, `style`; with `count=1`, records a view first
/// (deduplicated per [`BADGE_DEDUPE_SECONDS`]). Answers `304` when
/// `If-None-Match` names the badge's `ETag`.
pub async fn badge(req: &Incoming, config: &Config, raw_item: &str) -> Result<Reply, AppError> {
    let now = http::now();
    let item = item_id(raw_item)?;
    let query = http::query(req)?;
    let param = |name: &str| http::param(&query, name);
    let metric = match param("metric").unwrap_or("views") {
        "views" => Metric::Views,
        "likes" => Metric::Likes,
        "unique" => Metric::Unique,
        _ => return Err(invalid("metric must be views, likes or unique")),
    };
    let label = param("label").unwrap_or(metric.name());
    if !badge::valid_label(label) {
        return Err(invalid(
            "label must be 1-64 characters without control characters",
        ));
    }
    let color = match param("color") {
        None => badge::DEFAULT_COLOR.to_owned(),
        Some(raw) => badge::parse_color(raw).ok_or_else(|| {
            invalid("color must be a named colour or 3 or 6 hex digits (for example 4c1 or brightgreen)")
        })?,
    };
    let style = match param("style") {
        None => Style::default(),
        Some(raw) => {
            Style::parse(raw).ok_or_else(|| invalid("style must be flat or flat-square"))?
        }
    };
    let count = match param("count") {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return Err(invalid("count must be 0 or 1")),
    };

    let engine = config.engine();
    let value = match count {
        true => counted_value(req, config, engine, &item, metric, now).await?,
        false => metric.of(&engine.read(&item, None, now).await?),
    };
    let svg = badge::render(label, &badge::format_count(value), &color, style);
    let etag = etag(&svg);
    let fresh = req
        .header(Header::IfNoneMatch)
        .is_some_and(|tags| matches_etag(tags, &etag));
    let mut reply = if fresh {
        Reply::bytes(304, Vec::new())
    } else {
        Reply::bytes(200, svg.into_bytes())
    };
    reply
        .header("Content-Type", "image/svg+xml")
        .header("Cache-Control", "no-cache, no-store, must-revalidate")
        .header("ETag", &etag);
    Ok(reply)
}

/// Records a badge view and answers the metric: the view script's own count
/// for `views` (one round trip), else a read after it. Over the rate limit,
/// or for a bot, nothing is counted and the badge shows the current value.
async fn counted_value(
    req: &Incoming,
    config: &Config,
    engine: &Engine,
    item: &crate::item::ItemId,
    metric: Metric,
    now: i64,
) -> Result<u64, AppError> {
    let ip = http::client_ip(req);
    let user_agent = req.header(Header::UserAgent).unwrap_or_default();
    let secret = config.jwt_secret.as_bytes();
    let viewer = format!(
        "badge:{}",
        viewer::anonymous_viewer(secret, now, ip, user_agent)
    );
    let client = viewer::anonymous_client(secret, now, ip);
    let badge_engine = Engine::new(
        engine.rest().clone(),
        Settings {
            view_dedupe_seconds: BADGE_DEDUPE_SECONDS,
            ..engine.settings().clone()
        },
    );
    let countable = !viewer::is_bot(user_agent);
    let limited = badge_engine
        .view(
            item,
            &viewer,
            Limiter::from(client.as_str()),
            now,
            None,
            countable,
        )
        .await?;
    match (metric, limited.outcome) {
        (Metric::Views, Some(ViewOutcome::Recorded { views, .. })) => Ok(views),
        _ => Ok(metric.of(&engine.read(item, None, now).await?)),
    }
}

/// A strong `ETag`: a hash of the SVG, so it changes exactly when the picture does.
fn etag(svg: &str) -> String {
    let digest = Sha256::digest(svg.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as for a GET), or is `*`.
fn matches_etag(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn invalid(message: &str) -> AppError {
    AppError::InvalidQuery(message.to_owned())
}
