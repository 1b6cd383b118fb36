//! The API's error paths and remaining routes: 404, 405, 413, counters,
//! batch reads, CORS and health.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use serde_json::json;
use support::{API_KEY, send, shared, unique};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    // The isolate writes this body once and serves its copy after: every 404
    // must be the same whole answer, with a JSON body's headers.
    for path in ["/v2/nothing", "/v2/nothing", "/also/missing", "/v1"] {
        let reply = send(client().get(shared().worker.url(path))).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.body,
            json!({"error": {"code": "not_found", "message": "no route matches this path"}}),
            "{path}"
        );
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
}

#[tokio::test]
async fn a_known_route_with_the_wrong_method_is_405_with_allow() {
    let reply = send(client().get(shared().worker.url("/v1/items/x/like"))).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.body["error"]["code"], "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("PUT, DELETE, OPTIONS"));

    let reply = send(client().delete(shared().worker.url("/v1/items/x"))).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PUT, OPTIONS"));
}

#[tokio::test]
async fn an_unlisted_method_such_as_propfind_is_405_never_read_as_a_get() {
    for method in ["PATCH", "REPORT", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let reply =
            send(client().request(method.clone(), shared().worker.url("/v1/items/x"))).await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(
            reply.header("allow"),
            Some("GET, HEAD, PUT, OPTIONS"),
            "{method}"
        );
    }
}

#[tokio::test]
async fn an_unknown_item_reads_as_zeros() {
    let item = unique("never-seen");
    let reply = send(client().get(shared().worker.url(&format!("/v1/items/{item}")))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({
            "item": item, "likes": 0, "views": 0, "unique_viewers_today": 0, "counters": {},
            "unique_viewers": {"today": 0, "last_7_days": 0, "last_30_days": 0, "all_time": 0},
        })
    );
}

#[tokio::test]
async fn custom_counters_add_integers_and_floats() {
    let item = unique("counters");
    let url = shared()
        .worker
        .url(&format!("/v1/items/{item}/counters/tokens"));
    let add = |by: serde_json::Value| {
        send(
            client()
                .post(&url)
                .bearer_auth(API_KEY)
                .json(&json!({ "by": by })),
        )
    };
    let three = add(json!(3)).await;
    assert_eq!(three.status, 200);
    assert_eq!(
        three.body,
        json!({"item": item, "counter": "tokens", "value": 3})
    );
    let quarter = add(json!(0.25)).await;
    assert_eq!(quarter.body["value"], 3.25);

    let read = send(client().get(shared().worker.url(&format!("/v1/items/{item}")))).await;
    assert_eq!(read.body["counters"], json!({"tokens": 3.25}));
}

#[tokio::test]
async fn a_counter_needs_the_api_key_and_a_numeric_body() {
    let item = unique("counter-errors");
    let url = shared()
        .worker
        .url(&format!("/v1/items/{item}/counters/score"));
    let no_key = send(client().post(&url).json(&json!({"by": 1}))).await;
    assert_eq!(no_key.status, 401);
    let wrong_key = send(
        client()
            .post(&url)
            .bearer_auth("nope")
            .json(&json!({"by": 1})),
    )
    .await;
    assert_eq!(wrong_key.status, 401);
    for body in [
        r#"{"by": "3"}"#,
        r#"{"by": null}"#,
        r#"{}"#,
        "not json",
        r#"{"by": 1e999}"#,
    ] {
        let reply = send(
            client()
                .post(&url)
                .bearer_auth(API_KEY)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.body["error"]["code"], "invalid_body", "{body}");
    }
    let bad_name = shared()
        .worker
        .url(&format!("/v1/items/{item}/counters/a%2Fb"));
    let reply = send(
        client()
            .post(bad_name)
            .bearer_auth(API_KEY)
            .json(&json!({"by": 1})),
    )
    .await;
    assert_eq!(reply.status, 400);
    let read = send(client().get(shared().worker.url(&format!("/v1/items/{item}")))).await;
    assert_eq!(read.body["counters"], json!({}), "nothing was written");
}

#[tokio::test]
async fn a_body_over_8_kib_is_413() {
    let item = unique("big");
    let url = shared().worker.url(&format!("/v1/items/{item}/counters/c"));
    let body = format!(r#"{{"by": 1, "pad": "{}"}}"#, "x".repeat(9 * 1024));
    let reply = send(client().post(url).bearer_auth(API_KEY).body(body)).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.body["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn a_batch_read_keeps_the_order_asked() {
    let (a, b) = (unique("batch-a"), unique("batch-b"));
    send(
        client()
            .post(shared().worker.url(&format!("/v1/items/{b}/counters/n")))
            .bearer_auth(API_KEY)
            .json(&json!({"by": 7})),
    )
    .await;
    let url = shared().worker.url(&format!("/v1/items?ids={b},{a},{b}"));
    let reply = send(client().get(url)).await;
    assert_eq!(reply.status, 200);
    let items = reply.body["items"].as_array().expect("items");
    let names: Vec<_> = items
        .iter()
        .map(|i| i["item"].as_str().expect("item"))
        .collect();
    assert_eq!(names, [b.as_str(), a.as_str(), b.as_str()]);
    assert_eq!(items[0]["counters"], json!({"n": 7}));
    assert_eq!(items[1]["counters"], json!({}));
}

#[tokio::test]
async fn a_batch_read_refuses_no_ids_too_many_ids_and_bad_ids() {
    let many: Vec<String> = (0..101).map(|n| format!("i{n}")).collect();
    for query in ["", "?ids=", &format!("?ids={}", many.join(","))] {
        let reply = send(client().get(shared().worker.url(&format!("/v1/items{query}")))).await;
        assert_eq!(reply.status, 400, "{query}");
    }
    let reply = send(client().get(shared().worker.url("/v1/items?ids=ok,bad%20id"))).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["code"], "invalid_item");
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_granted() {
    let reply = send(
        client()
            .request(
                reqwest::Method::OPTIONS,
                shared().worker.url("/v1/items/x/like"),
            )
            .header("Origin", "https://blog.example")
            .header("Access-Control-Request-Method", "PUT"),
    )
    .await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://blog.example")
    );
    let methods = reply
        .header("access-control-allow-methods")
        .expect("methods");
    assert!(methods.contains("PUT") && methods.contains("DELETE"));
    let headers = reply
        .header("access-control-allow-headers")
        .expect("headers");
    assert!(headers.contains("Authorization") && headers.contains("Idempotency-Key"));
}

#[tokio::test]
async fn api_responses_to_an_allowed_origin_expose_the_rate_limit_fields() {
    let item = unique("cors");
    let reply = send(
        client()
            .get(shared().worker.url(&format!("/v1/items/{item}")))
            .header("Origin", "https://blog.example"),
    )
    .await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://blog.example")
    );
    let exposed = reply
        .header("access-control-expose-headers")
        .expect("exposed");
    assert!(exposed.contains("RateLimit") && exposed.contains("Retry-After"));
}

#[tokio::test]
async fn healthz_is_ok() {
    let reply = send(client().get(shared().worker.url("/healthz"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"status": "ok"}));
}
