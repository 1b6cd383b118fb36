//! The item policy end to end: `ITEMS=pattern` and `ITEMS=registered`.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use serde_json::json;
use support::{API_KEY, Reply, Stack, send, token_for, unique};

/// The three writes a stranger could try on `item`: like, view, counter.
async fn writes(stack: &Stack, item: &str) -> Vec<Reply> {
    let http = reqwest::Client::new();
    let url = |path: &str| stack.worker.url(&format!("/v1/items/{item}{path}"));
    vec![
        send(
            http.put(url("/like"))
                .bearer_auth(token_for("anon:stranger")),
        )
        .await,
        send(http.post(url("/views")).header("User-Agent", "Firefox")).await,
        send(
            http.post(url("/counters/n"))
                .bearer_auth(API_KEY)
                .json(&json!({"by": 1})),
        )
        .await,
    ]
}

fn keys_of(stack: &Stack, item: &str) -> String {
    stack
        .redis
        .cli(&["--scan", "--pattern", &format!("*{item}*")])
}

fn assert_unknown(replies: &[Reply]) {
    for reply in replies {
        assert_eq!(reply.status, 404, "{:?}", reply.body);
        assert_eq!(reply.body["error"]["code"], "unknown_item");
    }
}

#[tokio::test]
async fn under_item_pattern_ids_outside_it_are_404_and_write_nothing() {
    let stack = Stack::start_with(&[("ITEMS", "pattern"), ("ITEM_PATTERN", "blog/,docs/*/intro")]);
    let stranger = unique("random");
    assert_unknown(&writes(&stack, &stranger).await);
    assert_eq!(keys_of(&stack, &stranger), "");
    // Such an id can never exist, so reads are 404 too: one item, a batch
    // holding it, and its series.
    let http = reqwest::Client::new();
    for path in [
        format!("/v1/items/{stranger}"),
        format!("/v1/items?ids=blog%2Fok,{stranger}"),
        format!("/v1/items/{stranger}/views/series"),
    ] {
        assert_unknown(&[send(http.get(stack.worker.url(&path))).await]);
    }
    assert_eq!(keys_of(&stack, &stranger), "");

    for item in [
        format!("blog%2F{}", unique("post")),
        format!("docs%2F{}%2Fintro", unique("v")),
    ] {
        for reply in writes(&stack, &item).await {
            assert_eq!(reply.status, 200, "{item}: {:?}", reply.body);
        }
    }
}

#[tokio::test]
async fn under_registered_items_only_items_put_with_the_api_key_take_writes() {
    let stack = Stack::start_with(&[("ITEMS", "registered")]);
    let http = reqwest::Client::new();
    let item = unique("page");
    assert_unknown(&writes(&stack, &item).await);
    assert_eq!(keys_of(&stack, &item), "");
    let read = send(http.get(stack.worker.url(&format!("/v1/items/{item}")))).await;
    assert_eq!(read.status, 200);
    assert_eq!(
        (read.body["likes"].clone(), read.body["views"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(keys_of(&stack, &item), "", "a read writes nothing");

    let register = || http.put(stack.worker.url(&format!("/v1/items/{item}")));
    let without_key = send(register()).await;
    assert_eq!(without_key.status, 401);
    let with_token = send(register().bearer_auth(token_for("user-1"))).await;
    assert_eq!(with_token.status, 401);
    let created = send(register().bearer_auth(API_KEY)).await;
    assert_eq!(
        (created.status, created.body.clone()),
        (201, json!({"item": item, "created": true}))
    );
    let again = send(register().bearer_auth(API_KEY)).await;
    assert_eq!(
        (again.status, again.body.clone()),
        (200, json!({"item": item, "created": false}))
    );

    for reply in writes(&stack, &item).await {
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }
    let read = send(http.get(stack.worker.url(&format!("/v1/items/{item}")))).await;
    assert_eq!(
        (
            read.body["likes"].clone(),
            read.body["views"].clone(),
            read.body["counters"].clone()
        ),
        (json!(1), json!(1), json!({"n": 1}))
    );
}
