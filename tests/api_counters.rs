//! Custom counters end to end: overflow refused, reads robust to what is
//! stored, and idempotent adds.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use serde_json::{Value, json};
use support::{API_KEY, Reply, send, shared, unique};

async fn add(item: &str, name: &str, by: Value, key: Option<&str>) -> Reply {
    let url = shared()
        .worker
        .url(&format!("/v1/items/{item}/counters/{name}"));
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(API_KEY)
        .json(&json!({ "by": by }));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    send(request).await
}

async fn read(item: &str) -> Reply {
    send(reqwest::Client::new().get(shared().worker.url(&format!("/v1/items/{item}")))).await
}

#[tokio::test]
async fn an_add_past_the_largest_double_is_422_and_redis_keeps_the_first_value() {
    let item = unique("overflow");
    let first = add(&item, "c", json!(1e308), None).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["value"], 1e308);
    let key = format!("tally:{{{item}}}:counters");
    let stored = shared().redis.cli(&["HGET", &key, "c"]);

    let second = add(&item, "c", json!(1e308), None).await;
    assert_eq!(second.status, 422, "{:?}", second.body);
    assert_eq!(second.body["error"]["code"], "counter_overflow");
    assert_eq!(shared().redis.cli(&["HGET", &key, "c"]), stored);

    let after = read(&item).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body["counters"]["c"], 1e308);
}

#[tokio::test]
async fn reads_stay_200_whatever_text_the_counters_hash_holds() {
    let item = unique("hand-written");
    let key = format!("tally:{{{item}}}:counters");
    for (field, text) in [
        ("big", "1.99e308"),
        ("inf", "inf"),
        ("nan", "nan"),
        ("junk", "garbage"),
        ("fine", "2.5"),
    ] {
        shared().redis.cli(&["HSET", &key, field, text]);
    }
    let one = read(&item).await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    assert_eq!(one.body["counters"], json!({"fine": 2.5}));
    let batch = send(
        reqwest::Client::new().get(shared().worker.url(&format!("/v1/items?ids={item},{item}"))),
    )
    .await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    assert_eq!(batch.body["items"][1]["counters"], json!({"fine": 2.5}));
    // An add to an unreadable counter is refused; the text stays.
    let refused = add(&item, "inf", json!(1), None).await;
    assert_eq!(refused.status, 422);
    assert_eq!(shared().redis.cli(&["HGET", &key, "inf"]), "inf");
}

/// The worker reads float texts through the runtime's `parseFloat` after
/// checking Rust's grammar (src/decimal.rs): it must accept and refuse what
/// `str::parse::<f64>` does, and round as it does.
#[tokio::test]
async fn the_worker_reads_a_counters_text_as_rust_parses_it() {
    let item = unique("float-texts");
    let key = format!("tally:{{{item}}}:counters");
    for (field, text) in [
        ("sum", "0.30000000000000004"),
        ("tiny", "-2.5e-7"),
        ("point", ".5"),
        ("plus", "+1.5"),
        ("trailing", "5."),
        (
            "long",
            "0.1000000000000000055511151231257827021181583404541015625",
        ),
        ("spaced", " 1.5"),
        ("hex", "0x10"),
        ("comma", "1,5"),
        ("prefix", "1.5abc"),
        ("word", "Infinity"),
    ] {
        shared().redis.cli(&["HSET", &key, field, text]);
    }
    let one = read(&item).await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    assert_eq!(
        one.body["counters"],
        json!({"sum": 0.3, "tiny": -2.5e-7, "point": 0.5, "plus": 1.5, "trailing": 5.0, "long": 0.1})
    );
}

#[tokio::test]
async fn a_retried_add_with_an_idempotency_key_replays_and_another_add_conflicts() {
    let item = unique("idem-counter");
    let key = unique("retry");
    let first = add(&item, "n", json!(5), Some(&key)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotent-replayed"), None);
    let retry = add(&item, "n", json!(5), Some(&key)).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, first.body);
    assert_eq!(read(&item).await.body["counters"]["n"], 5);

    let other = add(&item, "n", json!(6), Some(&key)).await;
    assert_eq!(other.status, 409);
    assert_eq!(other.body["error"]["code"], "idempotency_conflict");
    assert_eq!(read(&item).await.body["counters"]["n"], 5);

    let ttl: i64 = shared()
        .redis
        .cli(&["TTL", &format!("tally:idem:{{{key}}}")])
        .parse()
        .expect("a TTL");
    assert!((86_000..=86_400).contains(&ttl), "{ttl}");

    let bad = add(&item, "n", json!(1), Some("")).await;
    assert_eq!(bad.status, 400);
}
