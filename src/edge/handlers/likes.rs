//! `PUT` and `DELETE /v1/items/{item}/like`: one like per identity per item.

use super::{admitted, item_id, limited_json};
use crate::edge::config::Config;
use crate::edge::error::AppError;
use crate::edge::http::{self, Incoming, Reply};
use crate::edge::{identity, metrics};
use crate::engine::Limiter;

/// Whether the caller wants the item liked or not.
#[derive(Clone, Copy)]
pub enum Want {
    /// `PUT`.
    Liked,
    /// `DELETE`.
    NotLiked,
}

/// Sets the caller's like on the item; repeating it changes nothing.
pub async fn set(
    req: &Incoming,
    config: &Config,
    raw_item: &str,
    want: Want,
) -> Result<Reply, AppError> {
    let now = http::now();
    let item = item_id(raw_item)?;
    let who = identity::required(req, config, now)?;
    let engine = config.engine();
    // Likes are limited per identity (the token is required here anyway) and,
    // for a visitor token, per client network too.
    let network = identity::visitor_network(req, config, &who, now);
    let limiter = Limiter {
        subject: &who.sub,
        network: network.as_deref(),
    };
    let limited = match want {
        Want::Liked => engine.like(&item, &who.sub, limiter, now).await?,
        Want::NotLiked => engine.unlike(&item, &who.sub, limiter, now).await?,
    };
    let (outcome, rate) = admitted(limited)?;
    if outcome.changed {
        metrics::like_changed(outcome.liked);
    }
    let body = LikeJson {
        changed: outcome.changed,
        item: item.as_str(),
        liked: outcome.liked,
        likes: outcome.likes,
    };
    limited_json(&body, &rate)
}

/// A like's answer, its fields sorted as a JSON object read whole writes them.
#[derive(serde::Serialize)]
struct LikeJson<'a> {
    changed: bool,
    item: &'a str,
    liked: bool,
    likes: u64,
}
