//! Likes end to end: wrangler dev → gateway → redis-server.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use reqwest::Method;
use serde_json::json;
use support::{Reply, all_at_once, encode, send, shared, token_for, unique};

async fn like(http: &reqwest::Client, method: Method, item: &str, who: &str) -> Reply {
    let url = shared()
        .worker
        .url(&format!("/v1/items/{}/like", encode(item)));
    send(http.request(method, url).bearer_auth(token_for(who))).await
}

async fn read(http: &reqwest::Client, item: &str, who: Option<&str>) -> Reply {
    let mut request = http.get(shared().worker.url(&format!("/v1/items/{}", encode(item))));
    if let Some(who) = who {
        request = request.bearer_auth(token_for(who));
    }
    send(request).await
}

#[tokio::test]
async fn a_like_counts_once_and_a_repeat_changes_nothing() {
    let http = reqwest::Client::new();
    let item = unique("like-once");
    let first = like(&http, Method::PUT, &item, "alice").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body,
        json!({"item": item, "likes": 1, "liked": true, "changed": true})
    );
    assert_eq!(first.header("cache-control"), Some("no-store"));

    let again = like(&http, Method::PUT, &item, "alice").await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body,
        json!({"item": item, "likes": 1, "liked": true, "changed": false})
    );
}

#[tokio::test]
async fn an_unlike_removes_the_like_and_a_repeat_changes_nothing() {
    let http = reqwest::Client::new();
    let item = unique("unlike");
    like(&http, Method::PUT, &item, "alice").await;
    like(&http, Method::PUT, &item, "bob").await;

    let unlike = like(&http, Method::DELETE, &item, "alice").await;
    assert_eq!(unlike.status, 200);
    assert_eq!(
        unlike.body,
        json!({"item": item, "likes": 1, "liked": false, "changed": true})
    );
    let again = like(&http, Method::DELETE, &item, "alice").await;
    assert_eq!(
        again.body,
        json!({"item": item, "likes": 1, "liked": false, "changed": false})
    );
}

#[tokio::test]
async fn a_page_path_item_id_sent_percent_encoded_is_one_item() {
    let http = reqwest::Client::new();
    let item = format!("blog/2026/{}", unique("hello"));
    let liked = like(&http, Method::PUT, &item, "erin").await;
    assert_eq!(liked.status, 200);
    assert_eq!(liked.body["item"], item.as_str());
    assert_eq!(read(&http, &item, None).await.body["likes"], 1);
}

#[tokio::test]
async fn a_like_without_a_token_is_401_and_writes_nothing() {
    let http = reqwest::Client::new();
    let item = unique("anonymous-like");
    let refused = send(http.put(shared().worker.url(&format!("/v1/items/{item}/like")))).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["error"]["code"], "unauthorized");
    assert_eq!(read(&http, &item, None).await.body["likes"], 0);
}

#[tokio::test]
async fn two_hundred_identities_liking_at_once_each_twice_make_exactly_200() {
    let http = reqwest::Client::new();
    let item = unique("crowd");
    let fans = (0..200).flat_map(|n| [format!("fan-{n}"), format!("fan-{n}")]);
    let replies = all_at_once(fans.map(|who| {
        let (http, item) = (http.clone(), item.clone());
        async move { like(&http, Method::PUT, &item, &who).await }
    }))
    .await;
    let failed: Vec<_> = replies
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| (r.status, r.body.clone()))
        .collect();
    assert!(failed.is_empty(), "every like answered 200: {failed:?}");
    let changed = replies.iter().filter(|r| r.body["changed"] == true).count();
    assert_eq!(changed, 200, "exactly one of each pair changed anything");
    assert_eq!(read(&http, &item, None).await.body["likes"], 200);
}

#[tokio::test]
async fn reading_with_a_token_says_whether_that_identity_likes_the_item() {
    let http = reqwest::Client::new();
    let item = unique("liked-flag");
    like(&http, Method::PUT, &item, "carol").await;
    assert_eq!(read(&http, &item, Some("carol")).await.body["liked"], true);
    assert_eq!(read(&http, &item, Some("dave")).await.body["liked"], false);
    let anonymous = read(&http, &item, None).await;
    assert!(
        anonymous.body.get("liked").is_none(),
        "no token, no liked field"
    );
    assert_eq!(anonymous.body["likes"], 1);
}
