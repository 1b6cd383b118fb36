//! Reads, round trips per operation, and input refused before any request.

#![cfg(not(target_arch = "wasm32"))]

mod engine_common;
mod support;

use std::collections::BTreeMap;

use engine_common::{Setup, item, real_now, unique};
use tally::engine::{
    Amount, Bucket, CounterValue, EngineError, Idempotency, ItemSnapshot, LikesStore, Settings,
    UniqueViewers, Window,
};
use tally::item::{CounterName, ItemId, decode_segment};
use tally::rest::RestError;
use tally::scripts;

#[tokio::test]
async fn an_unknown_item_reads_as_zeros() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("nothing"));
    let expected = ItemSnapshot {
        item: page.as_str().to_owned(),
        likes: 0,
        views: 0,
        unique_viewers: UniqueViewers::default(),
        counters: BTreeMap::new(),
        liked: None,
    };
    assert_eq!(
        setup.engine.read(&page, None, 1_000).await.unwrap(),
        expected
    );
    let with_identity = setup.engine.read(&page, Some("u1"), 1_000).await.unwrap();
    assert_eq!(with_identity.liked, Some(false));
}

#[tokio::test]
async fn a_read_shows_counts_counters_viewers_and_the_callers_like() {
    let setup = Setup::start(Settings {
        likes_store: LikesStore::Bitmap { max_id: 1_000 },
        ..Settings::default()
    });
    let page = item(&unique("blog/2026/hello"));
    let now = real_now();
    setup.engine.like(&page, "7", "7", now).await.unwrap();
    setup
        .engine
        .like(&page, "anon:x", "anon:x", now)
        .await
        .unwrap();
    setup
        .engine
        .view(&page, "v1", "v1", now, None, true)
        .await
        .unwrap();
    let name = CounterName::parse("tokens").unwrap();
    setup
        .engine
        .add_to_counter(&page, &name, Amount::Int(17), 1_000)
        .await
        .unwrap();

    let snapshot = setup.engine.read(&page, Some("7"), now).await.unwrap();
    assert_eq!(
        (
            snapshot.likes,
            snapshot.views,
            snapshot.unique_viewers.today
        ),
        (2, 1, 1)
    );
    assert_eq!(
        snapshot.counters.get("tokens"),
        Some(&CounterValue::Int(17))
    );
    assert_eq!(snapshot.liked, Some(true));
    for (who, liked) in [("anon:x", true), ("8", false), ("anon:y", false)] {
        let snapshot = setup.engine.read(&page, Some(who), now).await.unwrap();
        assert_eq!(snapshot.liked, Some(liked), "{who}");
    }
}

#[tokio::test]
async fn a_batch_read_of_a_hundred_items_is_one_script_call_in_the_order_asked() {
    let setup = Setup::start(Settings::default());
    let pages: Vec<ItemId> = (0..100).map(|i| item(&unique(&format!("p{i}-")))).collect();
    for (i, page) in pages.iter().enumerate().take(5) {
        for who in 0..i {
            setup
                .engine
                .like(page, &who.to_string(), "l", 1_000)
                .await
                .unwrap();
        }
    }
    setup.engine.read(&pages[0], None, 1_000).await.unwrap();
    setup.trips.take();
    let mut asked = pages.clone();
    asked.reverse();
    let scripts = setup.redis.script_calls();
    let snapshots = setup
        .engine
        .read_many(&asked, Some("1"), 1_000)
        .await
        .unwrap();
    assert_eq!(setup.trips.take(), ["EVALSHA"]);
    assert_eq!(setup.redis.script_calls(), scripts + 1);
    let ids: Vec<&str> = snapshots.iter().map(|s| s.item.as_str()).collect();
    let expected: Vec<&str> = asked.iter().map(ItemId::as_str).collect();
    assert_eq!(ids, expected);
    let likes: Vec<u64> = snapshots[95..].iter().map(|s| s.likes).collect();
    assert_eq!(likes, [4, 3, 2, 1, 0]);
    assert_eq!(snapshots[96].liked, Some(true));
    assert_eq!(snapshots[99].liked, Some(false));
}

#[tokio::test]
async fn a_batch_with_repeats_and_unknown_items_answers_each_as_asked_in_one_script_call() {
    let setup = Setup::start(Settings::default());
    let now = real_now();
    let liked = item(&unique("liked"));
    let viewed = item(&unique("viewed"));
    let unknown = item(&unique("unknown"));
    setup.engine.like(&liked, "u1", "u1", now).await.unwrap();
    setup.engine.like(&liked, "u2", "u2", now).await.unwrap();
    setup
        .engine
        .view(&viewed, "v1", "v1", now, None, true)
        .await
        .unwrap();
    let name = CounterName::parse("stars").unwrap();
    setup
        .engine
        .add_to_counter(&viewed, &name, Amount::Float(2.5), now)
        .await
        .unwrap();
    let asked = [
        liked.clone(),
        unknown.clone(),
        viewed.clone(),
        liked.clone(),
        unknown.clone(),
    ];
    let alone: Vec<ItemSnapshot> = {
        let mut alone = Vec::new();
        for page in &asked {
            alone.push(setup.engine.read(page, Some("u1"), now).await.unwrap());
        }
        alone
    };
    setup.trips.reset();

    let scripts = setup.redis.script_calls();
    let snapshots = setup
        .engine
        .read_many(&asked, Some("u1"), now)
        .await
        .unwrap();
    assert_eq!(setup.redis.script_calls(), scripts + 1);
    assert_eq!(setup.trips.take(), ["EVALSHA"]);
    // Each item answers as its own read does: a repeat twice, an unknown one as zeros.
    assert_eq!(snapshots, alone);
    let summary: Vec<(&str, u64, u64, Option<bool>)> = snapshots
        .iter()
        .map(|s| (s.item.as_str(), s.likes, s.views, s.liked))
        .collect();
    assert_eq!(
        summary,
        [
            (liked.as_str(), 2, 0, Some(true)),
            (unknown.as_str(), 0, 0, Some(false)),
            (viewed.as_str(), 0, 1, Some(false)),
            (liked.as_str(), 2, 0, Some(true)),
            (unknown.as_str(), 0, 0, Some(false)),
        ]
    );
    assert_eq!(snapshots[2].unique_viewers.today, 1);
    assert_eq!(
        snapshots[2].counters.get("stars"),
        Some(&CounterValue::Float(2.5))
    );
}

#[tokio::test]
async fn the_read_script_refuses_keys_that_are_not_35_per_item() {
    let setup = Setup::start(Settings::default());
    let args = ["1000".to_owned(), String::new(), String::new()];
    for count in [0, 1, 34, 36, 69, 71] {
        let keys: Vec<String> = (0..count).map(|i| format!("{}k{i}", unique("r"))).collect();
        let error = setup
            .engine
            .rest()
            .eval(&scripts::READ, &keys, &args)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, RestError::Redis(message) if message.contains("35 KEYS per item")),
            "{count}: {error:?}"
        );
    }
    for count in [35, 70] {
        let keys: Vec<String> = (0..count).map(|i| format!("{}k{i}", unique("r"))).collect();
        let answer = setup
            .engine
            .rest()
            .eval(&scripts::READ, &keys, &args)
            .await
            .unwrap();
        assert_eq!(answer.as_array().map(Vec::len), Some(count / 35), "{count}");
    }
}

#[tokio::test]
async fn a_batch_of_none_or_more_than_a_hundred_is_refused_before_any_request() {
    let setup = Setup::start(Settings::default());
    let many: Vec<ItemId> = (0..101).map(|i| item(&format!("p{i}"))).collect();
    for items in [&many[..0], &many[..]] {
        let error = setup.engine.read_many(items, None, 0).await.unwrap_err();
        assert!(matches!(error, EngineError::Invalid(_)), "{error:?}");
    }
    assert_eq!(setup.trips.count(), 0);
}

#[test]
fn bad_ids_and_names_are_refused_before_any_request_is_made() {
    // The engine takes only parsed ids and names, so a bad one never reaches it.
    for raw in [
        "",
        "a%20b",
        "%7Bx%7D",
        "caf%C3%A9",
        "a%2",
        "%FF",
        &"a".repeat(201),
    ] {
        let refused = decode_segment(raw).map(|decoded| ItemId::parse(&decoded).is_err());
        assert_ne!(refused, Some(false), "{raw:?}");
    }
    assert_eq!(
        ItemId::parse("a b").unwrap_err().to_string(),
        "item ids are 1-200 bytes of A-Z a-z 0-9 . _ ~ - : /"
    );
    for name in ["", "a/b", "a b", &"n".repeat(65)] {
        assert!(CounterName::parse(name).is_err(), "{name:?}");
    }
}

#[tokio::test]
async fn every_operation_is_one_round_trip() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let engine = &setup.engine;
    let name = CounterName::parse("n").unwrap();
    let key = Idempotency {
        key: "k".into(),
        fingerprint: "f".into(),
    };
    setup.load_scripts().await;
    setup.trips.reset();
    let mut trips = Vec::new();
    let mut note = |op: &str, sent: Vec<String>| trips.push((op.to_owned(), sent));

    engine.ping().await.unwrap();
    note("ping", setup.trips.take());
    engine.like(&page, "u", "u", 1_000).await.unwrap();
    note("like", setup.trips.take());
    engine.unlike(&page, "u", "u", 1_000).await.unwrap();
    note("unlike", setup.trips.take());
    engine
        .view(&page, "v", "v", 1_000, Some(&key), true)
        .await
        .unwrap();
    note("view", setup.trips.take());
    engine
        .view(&page, "v", "v", 1_000, Some(&key), true)
        .await
        .unwrap();
    note("view replay", setup.trips.take());
    engine
        .add_to_counter(&page, &name, Amount::Float(0.5), 1_000)
        .await
        .unwrap();
    note("counter", setup.trips.take());
    engine.read(&page, Some("u"), 1_000).await.unwrap();
    note("read", setup.trips.take());
    engine
        .read_many(&[page.clone(), page.clone()], None, 1_000)
        .await
        .unwrap();
    note("read_many", setup.trips.take());
    engine
        .series(&page, Bucket::Minute, 0, 1_000)
        .await
        .unwrap();
    note("series", setup.trips.take());
    engine.unique_series(&page, 0, 1_000, 1_000).await.unwrap();
    note("unique series", setup.trips.take());
    engine.admit("ip:1", 1_000).await.unwrap();
    note("admit", setup.trips.take());
    engine.trending(Window::Hour, 10, 1_000).await.unwrap();
    note("trending", setup.trips.take());

    for (op, sent) in &trips {
        assert_eq!(sent.len(), 1, "{op}: {sent:?}");
    }
}
