//! Import and merge end to end: wrangler dev → gateway → redis-server.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{API_KEY, Reply, encode, send, shared, token_for, unique};

async fn import(body: String) -> Reply {
    let url = shared().worker.url("/v1/admin/import");
    send(
        reqwest::Client::new()
            .post(url)
            .bearer_auth(API_KEY)
            .header("Content-Type", "application/x-ndjson")
            .body(body),
    )
    .await
}

async fn merge(item: &str, body: Value) -> Reply {
    let url = shared()
        .worker
        .url(&format!("/v1/admin/items/{}/merge", encode(item)));
    send(
        reqwest::Client::new()
            .post(url)
            .bearer_auth(API_KEY)
            .json(&body),
    )
    .await
}

async fn read(item: &str, who: Option<&str>) -> Reply {
    let mut request =
        reqwest::Client::new().get(shared().worker.url(&format!("/v1/items/{}", encode(item))));
    if let Some(who) = who {
        request = request.bearer_auth(token_for(who));
    }
    send(request).await
}

async fn like(item: &str, who: &str) -> Reply {
    let url = shared()
        .worker
        .url(&format!("/v1/items/{}/like", encode(item)));
    send(
        reqwest::Client::new()
            .request(Method::PUT, url)
            .bearer_auth(token_for(who)),
    )
    .await
}

async fn view(item: &str, who: &str) {
    let url = shared()
        .worker
        .url(&format!("/v1/items/{}/views", encode(item)));
    let reply = send(reqwest::Client::new().post(url).bearer_auth(token_for(who))).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["counted"], true);
}

async fn add(item: &str, counter: &str, by: Value) {
    let url = shared()
        .worker
        .url(&format!("/v1/items/{}/counters/{counter}", encode(item)));
    let reply = send(
        reqwest::Client::new()
            .post(url)
            .bearer_auth(API_KEY)
            .json(&json!({ "by": by })),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

/// The item's views per UTC day, yesterday and today.
async fn day_series(item: &str) -> Vec<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let url = shared().worker.url(&format!(
        "/v1/items/{}/views/series?bucket=day&from={}&to={now}",
        encode(item),
        now - 86_400
    ));
    let reply = send(reqwest::Client::new().get(url)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["views"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn an_import_sets_counts_that_reads_show() {
    let first = unique("blog/imported");
    let second = unique("docs/imported");
    let reply = import(format!(
        "{{\"item\": \"{first}\", \"views\": 1200, \"likes_base\": 40}}\n\n\
         {{\"item\": \"{second}\", \"counters\": {{\"stars\": 7, \"score\": 2.5}}}}\n"
    ))
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body, json!({"imported": 2}));

    let one = read(&first, None).await;
    assert_eq!(
        (one.body["likes"].clone(), one.body["views"].clone()),
        (json!(40), json!(1200))
    );
    let two = read(&second, None).await;
    assert_eq!(two.body["counters"], json!({"stars": 7, "score": 2.5}));

    // A like after the import counts on top of the base; the same import
    // again is harmless (set semantics).
    assert_eq!(like(&first, "after-import").await.body["likes"], 41);
    let again = import(format!(
        "{{\"item\": \"{first}\", \"views\": 1200, \"likes_base\": 40}}"
    ))
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(read(&first, None).await.body["likes"], 41);
}

#[tokio::test]
async fn a_bad_line_is_400_naming_it_and_nothing_from_the_request_is_written() {
    for (bad, says) in [
        ("{\"item\": \"x\", \"views\": 3", "not valid JSON"),
        ("{\"item\": \"bad item\", \"views\": 3}", "`item`"),
        (
            "{\"item\": \"x\", \"views\": -3}",
            "`views` must be an integer",
        ),
        (
            "{\"item\": \"x\", \"views\": 3, \"likes\": 1}",
            "unknown field `likes`",
        ),
    ] {
        let good = unique("good");
        let reply = import(format!(
            "{{\"item\": \"{good}\", \"views\": 99}}\n\n{bad}\n"
        ))
        .await;
        assert_eq!(reply.status, 400, "{bad}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["code"], "invalid_import");
        assert_eq!(reply.body["error"]["line"], 3, "{bad}");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("line 3: "), "{message}");
        assert!(message.contains(says), "{message}");
        assert_eq!(
            read(&good, None).await.body["views"],
            0,
            "{bad}: the good line was written"
        );
        let key = format!("tally:{{{good}}}:stats");
        assert_eq!(shared().redis.cli(&["EXISTS", &key]), "0");
    }
}

#[tokio::test]
async fn an_import_needs_the_api_key_a_body_and_at_most_256_kib() {
    let item = unique("guarded");
    let line = format!("{{\"item\": \"{item}\", \"views\": 5}}");
    let url = shared().worker.url("/v1/admin/import");
    let anonymous = send(reqwest::Client::new().post(&url).body(line.clone())).await;
    assert_eq!(anonymous.status, 401);
    let wrong = send(
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(token_for("someone"))
            .body(line),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(read(&item, None).await.body["views"], 0);

    let empty = import("\n\n".into()).await;
    assert_eq!(empty.status, 400);
    assert_eq!(empty.body["error"]["code"], "invalid_import");
    assert!(empty.body["error"].get("line").is_none());

    let huge = import("\n".repeat(256 * 1024 + 1)).await;
    assert_eq!(huge.status, 413, "{:?}", huge.body);
    assert_eq!(huge.body["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn a_merge_counts_a_liker_of_both_ids_once_and_sums_the_rest() {
    let old = unique("blog/old-name");
    let new = unique("blog/new-name");
    for who in ["both", "old-only"] {
        assert_eq!(like(&old, who).await.status, 200);
    }
    for who in ["both", "new-only"] {
        assert_eq!(like(&new, who).await.status, 200);
    }
    view(&old, "viewer-a").await;
    view(&old, "viewer-b").await;
    view(&new, "viewer-b").await;
    add(&old, "stars", json!(3)).await;
    add(&new, "stars", json!(4)).await;
    add(&old, "rating", json!(0.5)).await;

    let reply = merge(&new, json!({"from": old})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.body,
        json!({"item": new, "from": old, "merged": true, "likes": 3, "views": 3})
    );

    let again = like(&new, "both").await;
    assert_eq!(again.body["changed"], false);
    assert_eq!(again.body["likes"], 3);
    let merged = read(&new, Some("old-only")).await;
    assert_eq!(merged.body["liked"], true);
    assert_eq!(merged.body["views"], 3);
    assert_eq!(merged.body["counters"], json!({"stars": 7, "rating": 0.5}));
    assert_eq!(merged.body["unique_viewers"]["today"], 2);
    assert_eq!(day_series(&new).await.iter().sum::<u64>(), 3);

    let emptied = read(&old, Some("both")).await;
    assert_eq!(emptied.body["likes"], 0);
    assert_eq!(emptied.body["views"], 0);
    assert_eq!(emptied.body["liked"], false);
    assert_eq!(emptied.body["counters"], json!({}));
    assert_eq!(emptied.body["unique_viewers"]["all_time"], 0);
    assert_eq!(day_series(&old).await.iter().sum::<u64>(), 0);

    // Run again: the old id has nothing left, so nothing moves.
    let twice = merge(&new, json!({"from": old})).await;
    assert_eq!(twice.status, 200);
    assert_eq!(twice.body["merged"], false);
    assert_eq!(twice.body["likes"], 3);
}

#[tokio::test]
async fn a_merge_refuses_bad_input_and_callers_without_the_api_key() {
    let item = unique("merge-target");
    let old = unique("merge-source");
    view(&old, "viewer").await;
    let url = shared()
        .worker
        .url(&format!("/v1/admin/items/{}/merge", encode(&item)));
    let anonymous = send(
        reqwest::Client::new()
            .post(&url)
            .json(&json!({"from": old})),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.body["error"]["code"], "unauthorized");

    for (body, code) in [
        (json!({"from": item}), "invalid_body"),
        (json!({"from": "bad id"}), "invalid_item"),
        (json!({"from": old, "to": item}), "invalid_body"),
        (json!({"source": old}), "invalid_body"),
        (json!([old]), "invalid_body"),
    ] {
        let reply = merge(&item, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["code"], code, "{body}");
    }
    let bad_path = merge("bad item", json!({"from": old})).await;
    assert_eq!(bad_path.status, 400);
    assert_eq!(read(&old, None).await.body["views"], 1, "nothing was moved");

    let nothing = merge(&item, json!({"from": unique("never-used")})).await;
    assert_eq!(nothing.status, 200);
    assert_eq!(nothing.body["merged"], false);
}

/// One pass by hand until the outbox is empty (other tests of this binary
/// write at the same time, so a pass may leave their newest events).
async fn reconcile() {
    for _ in 0..10 {
        let reply = send(
            reqwest::Client::new()
                .post(shared().worker.url("/v1/admin/reconcile"))
                .bearer_auth(API_KEY),
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        if reply.body["lag"] == 0 {
            return;
        }
    }
    panic!("the outbox never emptied");
}

/// Asserts that the record (D1) answers `item` as the live read does, for `who`.
async fn assert_record_is_live(item: &str, who: &str) -> Value {
    let live = read(item, Some(who)).await;
    let url = shared().worker.url(&format!(
        "/v1/items/{}?source=record&who={}",
        encode(item),
        encode(who)
    ));
    let record = send(reqwest::Client::new().get(url).bearer_auth(API_KEY)).await;
    assert_eq!(
        (live.status, record.status),
        (200, 200),
        "{:?}",
        record.body
    );
    for field in ["item", "likes", "views", "counters", "liked"] {
        assert_eq!(
            record.body[field], live.body[field],
            "{item}: {field}: record {} live {}",
            record.body, live.body
        );
    }
    live.body
}

#[tokio::test]
async fn after_an_import_a_merge_and_a_reconcile_the_record_reads_as_live() {
    let old = unique("blog/rec-old");
    let new = unique("blog/rec-new");
    for who in ["both", "old-only"] {
        assert_eq!(like(&old, who).await.status, 200);
    }
    assert_eq!(like(&new, "both").await.status, 200);
    view(&old, "viewer-a").await;
    view(&new, "viewer-b").await;
    add(&old, "stars", json!(3)).await;
    add(&new, "rating", json!(0.5)).await;
    let imported = import(format!(
        "{{\"item\": \"{old}\", \"views\": 100, \"likes_base\": 10, \"counters\": {{\"stars\": 30}}}}\n\
         {{\"item\": \"{new}\", \"likes_base\": 5, \"counters\": {{\"rating\": 1.5, \"new\": 2}}}}"
    ))
    .await;
    assert_eq!(imported.status, 200, "{:?}", imported.body);
    reconcile().await;
    let before = assert_record_is_live(&old, "both").await;
    assert_eq!(
        (before["likes"].clone(), before["views"].clone()),
        (json!(12), json!(100))
    );
    assert_record_is_live(&new, "both").await;

    let merged = merge(&new, json!({"from": old})).await;
    assert_eq!(merged.status, 200, "{:?}", merged.body);
    reconcile().await;
    let after = assert_record_is_live(&new, "old-only").await;
    assert_eq!(after["likes"], 17, "5 + 10 + both, old-only");
    assert_eq!(after["views"], 101);
    assert_eq!(
        after["counters"],
        json!({"stars": 30, "rating": 1.5, "new": 2})
    );
    assert_eq!(after["liked"], true);
    assert_record_is_live(&new, "both").await;
    let emptied = assert_record_is_live(&old, "both").await;
    assert_eq!(
        (emptied["likes"].clone(), emptied["liked"].clone()),
        (json!(0), json!(false))
    );
}
