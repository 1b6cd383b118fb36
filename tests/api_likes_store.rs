//! Switching `LIKES_STORE` on a live item, and bitmap unlikes, end to end.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use reqwest::Method;
use serde_json::json;
use support::{Gateway, Redis, Reply, Worker, send, token_for, unique};

async fn like(worker: &Worker, method: Method, item: &str, who: &str) -> Reply {
    let url = worker.url(&format!("/v1/items/{item}/like"));
    send(
        reqwest::Client::new()
            .request(method, url)
            .bearer_auth(token_for(who)),
    )
    .await
}

#[tokio::test]
async fn a_like_made_in_set_mode_counts_once_after_a_restart_in_bitmap_mode() {
    let redis = Redis::start();
    let gateway = Gateway::start(&redis.url());
    let item = unique("switch");

    let set_mode = Worker::start(&gateway.url(), &[("LIKES_STORE", "set")]);
    let first = like(&set_mode, Method::PUT, &item, "42").await;
    assert_eq!(
        first.body,
        json!({"item": item, "likes": 1, "liked": true, "changed": true})
    );
    drop(set_mode);

    let bitmap_mode = Worker::start(&gateway.url(), &[("LIKES_STORE", "bitmap")]);
    let again = like(&bitmap_mode, Method::PUT, &item, "42").await;
    assert_eq!(
        again.body,
        json!({"item": item, "likes": 1, "liked": true, "changed": false})
    );
    let unlike = like(&bitmap_mode, Method::DELETE, &item, "42").await;
    assert_eq!(
        unlike.body,
        json!({"item": item, "likes": 0, "liked": false, "changed": true})
    );
    assert_eq!(
        redis.cli(&["SISMEMBER", &format!("tally:{{{item}}}:likers"), "42"]),
        "0"
    );
}

#[tokio::test]
async fn a_bitmap_unlike_of_a_never_liked_item_creates_no_key() {
    let redis = Redis::start();
    let gateway = Gateway::start(&redis.url());
    let worker = Worker::start(&gateway.url(), &[("LIKES_STORE", "bitmap")]);
    let item = unique("never-liked");
    let reply = like(&worker, Method::DELETE, &item, "9999999").await;
    assert_eq!(
        reply.body,
        json!({"item": item, "likes": 0, "liked": false, "changed": false})
    );
    let bits = format!("tally:{{{item}}}:likers:bits");
    assert_eq!(redis.cli(&["EXISTS", &bits]), "0");
    assert_eq!(redis.cli(&["MEMORY", "USAGE", &bits]), "");
}
