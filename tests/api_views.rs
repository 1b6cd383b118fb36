//! Views end to end: dedupe, bots, idempotency keys, series and trending.

#![cfg(not(target_arch = "wasm32"))]

mod support;
use serde_json::json;
use support::{Reply, encode, send, shared, token_for, unique};

async fn view(item: &str, token: Option<&str>, user_agent: &str, key: Option<&str>) -> Reply {
    let http = reqwest::Client::new();
    let url = shared()
        .worker
        .url(&format!("/v1/items/{}/views", encode(item)));
    let mut request = http.post(url).header("User-Agent", user_agent);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    send(request).await
}

async fn views_of(item: &str) -> serde_json::Value {
    let http = reqwest::Client::new();
    send(http.get(shared().worker.url(&format!("/v1/items/{}", encode(item)))))
        .await
        .body["views"]
        .clone()
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0";

#[tokio::test]
async fn a_view_counts_once_per_viewer_within_the_dedupe_window() {
    let item = unique("dedupe");
    let token = token_for("reader-1");
    let first = view(&item, Some(&token), BROWSER, None).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body,
        json!({"item": item, "views": 1, "counted": true})
    );
    assert!(first.header("ratelimit").is_some());
    assert!(first.header("ratelimit-policy").is_some());

    let again = view(&item, Some(&token), BROWSER, None).await;
    assert_eq!(
        again.body,
        json!({"item": item, "views": 1, "counted": false})
    );

    let other = view(&item, Some(&token_for("reader-2")), BROWSER, None).await;
    assert_eq!(
        other.body,
        json!({"item": item, "views": 2, "counted": true})
    );
}

#[tokio::test]
async fn anonymous_viewers_are_told_apart_by_their_user_agent_and_ip() {
    let item = unique("anonymous-views");
    let firefox = view(&item, None, BROWSER, None).await;
    assert_eq!(firefox.body["counted"], true);
    let firefox_again = view(&item, None, BROWSER, None).await;
    assert_eq!(firefox_again.body["counted"], false);
    let chrome = view(&item, None, "Mozilla/5.0 Chrome/140.0", None).await;
    assert_eq!(chrome.body["counted"], true);
    assert_eq!(views_of(&item).await, 2);
    let keys = shared().redis.cli(&["--scan", "--pattern", "*127.0.0.1*"]);
    assert_eq!(keys, "", "no raw IP is stored in a key");
}

#[tokio::test]
async fn a_bot_is_answered_but_not_counted() {
    let item = unique("bot");
    let bot = view(&item, None, "Mozilla/5.0 (compatible; Googlebot/2.1)", None).await;
    assert_eq!(bot.status, 200);
    assert_eq!(
        bot.body,
        json!({"item": item, "views": 0, "counted": false})
    );
    assert_eq!(views_of(&item).await, 0);
}

#[tokio::test]
async fn an_idempotency_key_replay_returns_the_first_response_and_counts_nothing() {
    let item = unique("idempotent");
    let token = token_for("retrying-reader");
    let first = view(&item, Some(&token), BROWSER, Some("retry-key-1")).await;
    assert_eq!(
        first.body,
        json!({"item": item, "views": 1, "counted": true})
    );

    let replay = view(&item, Some(&token), BROWSER, Some("retry-key-1")).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body, first.body, "the first response, word for word");
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(views_of(&item).await, 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_request_is_409_and_counts_nothing() {
    let item = unique("idempotency-conflict");
    let first = view(
        &item,
        Some(&token_for("first-user")),
        BROWSER,
        Some("shared-key"),
    )
    .await;
    assert_eq!(first.body["counted"], true);

    let conflict = view(
        &item,
        Some(&token_for("second-user")),
        BROWSER,
        Some("shared-key"),
    )
    .await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.body["error"]["code"], "idempotency_conflict");
    assert_eq!(views_of(&item).await, 1);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400_and_counts_nothing() {
    let item = unique("bad-key");
    let long = "k".repeat(256);
    let reply = view(&item, Some(&token_for("u")), BROWSER, Some(&long)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(views_of(&item).await, 0);
}

#[tokio::test]
async fn the_series_has_every_bucket_in_range_with_zeros_where_none() {
    let item = unique("series");
    view(&item, Some(&token_for("s1")), BROWSER, None).await;
    view(&item, Some(&token_for("s2")), BROWSER, None).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let minute = now - now % 60;
    let (from, to) = (minute - 9 * 60, minute + 60);
    let http = reqwest::Client::new();
    let url = shared().worker.url(&format!(
        "/v1/items/{item}/views/series?bucket=minute&from={from}&to={to}"
    ));
    let reply = send(http.get(url)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["bucket"], "minute");
    let points = reply.body["points"].as_array().expect("points");
    assert_eq!(points.len(), 11, "{points:?}");
    assert_eq!(points[0]["t"], from);
    let total: u64 = points
        .iter()
        .map(|p| p["views"].as_u64().expect("views"))
        .sum();
    assert_eq!(total, 2);
}

#[tokio::test]
async fn a_read_shows_unique_viewers_over_every_window_and_the_deprecated_field() {
    let item = unique("uv-read");
    for who in ["uv1", "uv2", "uv3"] {
        view(&item, Some(&token_for(who)), BROWSER, None).await;
    }
    view(&item, Some(&token_for("uv1")), BROWSER, None).await;
    let http = reqwest::Client::new();
    let reply = send(http.get(shared().worker.url(&format!("/v1/items/{item}")))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body["unique_viewers"],
        json!({"today": 3, "last_7_days": 3, "last_30_days": 3, "all_time": 3})
    );
    assert_eq!(reply.body["unique_viewers_today"], 3);
    let batch = send(http.get(shared().worker.url(&format!("/v1/items?ids={item}")))).await;
    assert_eq!(
        batch.body["items"][0]["unique_viewers"],
        reply.body["unique_viewers"]
    );
}

#[tokio::test]
async fn a_unique_series_gives_distinct_viewers_per_day() {
    let item = unique("uv-series");
    for who in ["us1", "us2"] {
        view(&item, Some(&token_for(who)), BROWSER, None).await;
        view(&item, Some(&token_for(who)), BROWSER, None).await;
    }
    let http = reqwest::Client::new();
    let url = shared().worker.url(&format!(
        "/v1/items/{item}/views/series?bucket=day&metric=unique"
    ));
    let reply = send(http.get(url)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["metric"], "unique");
    assert_eq!(reply.body["bucket"], "day");
    let points = reply.body["points"].as_array().expect("points");
    assert_eq!(points.len(), 60);
    assert_eq!(points[59]["unique_viewers"], 2, "{:?}", points[59]);
    let earlier: u64 = points[..59]
        .iter()
        .map(|p| p["unique_viewers"].as_u64().expect("unique_viewers"))
        .sum();
    assert_eq!(earlier, 0);
}

#[tokio::test]
async fn a_series_over_1440_points_or_with_a_bad_bucket_is_400() {
    let http = reqwest::Client::new();
    for query in [
        "bucket=minute&from=0&to=86400",
        "bucket=week&from=0&to=60",
        "bucket=minute&from=600&to=0",
        "bucket=minute&from=abc&to=60",
        "bucket=hour&metric=unique",
        "bucket=minute&metric=unique",
        "metric=unique",
        "bucket=day&metric=likes",
    ] {
        let url = shared()
            .worker
            .url(&format!("/v1/items/x/views/series?{query}"));
        let reply = send(http.get(url)).await;
        assert_eq!(reply.status, 400, "{query}");
        assert_eq!(reply.body["error"]["code"], "invalid_query", "{query}");
    }
}

#[tokio::test]
async fn trending_lists_counted_views_most_viewed_first() {
    let hot = unique("hot");
    let warm = unique("warm");
    for n in 0..3 {
        view(&hot, Some(&token_for(&format!("t{n}"))), BROWSER, None).await;
    }
    view(&warm, Some(&token_for("t0")), BROWSER, None).await;
    view(&warm, None, "Googlebot/2.1", None).await;

    // Trending is counted in the view's own script: listed as soon as answered.
    let http = reqwest::Client::new();
    let reply = send(http.get(shared().worker.url("/v1/trending?window=hour&limit=100"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["window"], "hour");
    let items = reply.body["items"].as_array().expect("items").clone();
    let position = |name: &str| items.iter().position(|i| i["item"] == name);
    let (hot_at, warm_at) = (
        position(&hot).expect("hot listed"),
        position(&warm).expect("warm listed"),
    );
    assert_eq!(items[hot_at]["views"], 3);
    assert_eq!(items[warm_at]["views"], 1, "the bot's view is not trending");
    assert!(hot_at < warm_at);
    let views: Vec<u64> = items
        .iter()
        .map(|i| i["views"].as_u64().expect("n"))
        .collect();
    assert!(
        views.windows(2).all(|w| w[0] >= w[1]),
        "most viewed first: {views:?}"
    );
}

#[tokio::test]
async fn a_token_that_says_count_views_false_is_answered_and_never_counted() {
    let item = unique("owner");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        + 3600;
    let owner = tally::token::sign(
        &tally::token::Claims {
            sub: "site-owner".into(),
            exp,
            count_views: false,
        },
        support::JWT_SECRET.as_bytes(),
    );
    view(&item, Some(&token_for("reader")), BROWSER, None).await;
    for _ in 0..2 {
        let reply = view(&item, Some(&owner), BROWSER, None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            json!({"item": item, "views": 1, "counted": false})
        );
    }
    let http = reqwest::Client::new();
    let read = send(http.get(shared().worker.url(&format!("/v1/items/{item}")))).await;
    assert_eq!(read.body["views"], 1);
    assert_eq!(
        read.body["unique_viewers"]["all_time"], 1,
        "the owner is no viewer"
    );
}
