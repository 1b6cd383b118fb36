//! README badges end to end: the SVG, its escaping, its cache headers and
//! ETag, `count=1` under its dedupe, and the 400s.

#![cfg(not(target_arch = "wasm32"))]

mod support;
use support::{Reply, encode, send, shared, token_for, unique};

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0";
const CAMO: &str = "github-camo (876de43e)";

struct Svg {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn badge(item: &str, query: &str, user_agent: &str) -> Svg {
    let url = shared()
        .worker
        .url(&format!("/v1/items/{}/badge.svg?{query}", encode(item)));
    let response = reqwest::Client::new()
        .get(url)
        .header("User-Agent", user_agent)
        .send()
        .await
        .expect("the worker answers");
    Svg {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.expect("a body"),
    }
}

/// The text of the `<text id=…>` element, and its declared `textLength`.
fn text(svg: &str, id: &str) -> (String, f64) {
    let doc = roxmltree::Document::parse(svg).expect("the badge is well-formed XML");
    let node = doc
        .descendants()
        .find(|n| n.attribute("id") == Some(id))
        .unwrap_or_else(|| panic!("no <text id={id}> in {svg}"));
    let length = node
        .attribute("textLength")
        .and_then(|l| l.parse().ok())
        .expect("textLength");
    (node.text().unwrap_or_default().to_owned(), length)
}

async fn view(item: &str, who: &str) -> Reply {
    let url = shared()
        .worker
        .url(&format!("/v1/items/{}/views", encode(item)));
    send(reqwest::Client::new().post(url).bearer_auth(token_for(who))).await
}

async fn views_of(item: &str) -> u64 {
    let url = shared().worker.url(&format!("/v1/items/{}", encode(item)));
    send(reqwest::Client::new().get(url)).await.body["views"]
        .as_u64()
        .expect("views")
}

#[tokio::test]
async fn a_badge_is_an_svg_with_the_label_and_the_count_that_counts_nothing() {
    let item = unique("badge-read");
    view(&item, "b1").await;
    let svg = badge(&item, "", BROWSER).await;
    assert_eq!(svg.status, 200, "{}", svg.body);
    assert_eq!(svg.headers["content-type"], "image/svg+xml");
    assert_eq!(text(&svg.body, "label").0, "views");
    assert_eq!(text(&svg.body, "value").0, "1");
    let doc = roxmltree::Document::parse(&svg.body).expect("XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    assert_eq!(
        views_of(&item).await,
        1,
        "a badge without count=1 is read-only"
    );
}

#[tokio::test]
async fn the_metric_label_colour_and_style_are_drawn_as_asked() {
    let item = unique("badge-params");
    for who in ["p1", "p2"] {
        view(&item, who).await;
    }
    let like = shared()
        .worker
        .url(&format!("/v1/items/{}/like", encode(&item)));
    send(
        reqwest::Client::new()
            .put(like)
            .bearer_auth(token_for("p1")),
    )
    .await;
    let likes = badge(&item, "metric=likes", BROWSER).await;
    assert_eq!(text(&likes.body, "label").0, "likes");
    assert_eq!(text(&likes.body, "value").0, "1");
    let uniques = badge(
        &item,
        "metric=unique&label=readers&color=4c1&style=flat-square",
        BROWSER,
    )
    .await;
    assert_eq!(uniques.status, 200, "{}", uniques.body);
    assert_eq!(text(&uniques.body, "label").0, "readers");
    assert_eq!(text(&uniques.body, "value").0, "2");
    assert!(uniques.body.contains(r##"fill="#4c1""##));
    assert!(uniques.body.contains(r#"rx="0""#));
    let named = badge(&item, "color=brightgreen", BROWSER).await;
    assert!(named.body.contains(r##"fill="#4c1""##));
}

#[tokio::test]
async fn a_label_with_markup_is_escaped_and_drawn_as_text() {
    let item = unique("badge-escape");
    let svg = badge(
        &item,
        "label=%3Cscript%3Ealert(1)%3C%2Fscript%3E%26",
        BROWSER,
    )
    .await;
    assert_eq!(svg.status, 200);
    assert!(!svg.body.contains("<script"), "{}", svg.body);
    assert!(
        svg.body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;")
    );
    let (label, length) = text(&svg.body, "label");
    assert_eq!(label, "<script>alert(1)</script>&");
    assert!((length - tally::badge::text_width(&label)).abs() < 0.01);
}

#[tokio::test]
async fn a_badge_is_never_cached_and_revalidates_with_its_etag() {
    let item = unique("badge-etag");
    let svg = badge(&item, "", BROWSER).await;
    assert_eq!(
        svg.headers["cache-control"],
        "no-cache, no-store, must-revalidate"
    );
    let etag = svg.headers["etag"].to_str().expect("ascii").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let url = shared()
        .worker
        .url(&format!("/v1/items/{}/badge.svg", encode(&item)));
    let http = reqwest::Client::new();
    let same = http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("answer");
    assert_eq!(same.status().as_u16(), 304);
    assert_eq!(same.headers()["etag"].to_str().expect("ascii"), etag);
    assert_eq!(same.text().await.expect("body"), "");
    // A new view changes the picture, so the old tag no longer matches.
    view(&item, "e1").await;
    let changed = http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("answer");
    assert_eq!(changed.status().as_u16(), 200);
    assert_ne!(changed.headers()["etag"].to_str().expect("ascii"), etag);
}

#[tokio::test]
async fn count_1_counts_once_per_client_and_user_agent_within_a_minute() {
    let item = unique("badge-count");
    let first = badge(&item, "count=1", CAMO).await;
    assert_eq!(text(&first.body, "value").0, "1");
    let again = badge(&item, "count=1", CAMO).await;
    assert_eq!(text(&again.body, "value").0, "1", "deduplicated");
    let other = badge(&item, "count=1", BROWSER).await;
    assert_eq!(text(&other.body, "value").0, "2");
    let bot = badge(&item, "count=1", "Googlebot/2.1").await;
    assert_eq!(text(&bot.body, "value").0, "2", "bots are not counted");
    assert_eq!(views_of(&item).await, 2);
    // The dedupe marker lives one minute, not VIEW_DEDUPE_SECONDS (30 min).
    let markers = shared()
        .redis
        .cli(&["--scan", "--pattern", &format!("*{item}*seen:badge:*")]);
    let markers: Vec<&str> = markers.lines().collect();
    assert_eq!(markers.len(), 2, "{markers:?}");
    for marker in markers {
        let ttl: i64 = shared().redis.cli(&["TTL", marker]).parse().expect("ttl");
        assert!(ttl > 0 && ttl <= 60, "{marker}: {ttl}");
    }
}

#[tokio::test]
async fn bad_badge_parameters_are_400_json_and_count_nothing() {
    let item = unique("badge-bad");
    let long = "a".repeat(65);
    for query in [
        "metric=downloads",
        "label=",
        &format!("label={long}"),
        "label=a%0Ab",
        "color=ggg",
        "color=12345",
        "color=red;x",
        "style=plastic",
        "count=2",
        "count=1&color=nope",
    ] {
        let svg = badge(&item, query, BROWSER).await;
        assert_eq!(svg.status, 400, "{query}");
        let body: serde_json::Value = serde_json::from_str(&svg.body).expect("JSON");
        assert_eq!(body["error"]["code"], "invalid_query", "{query}");
    }
    assert_eq!(views_of(&item).await, 0);
}
