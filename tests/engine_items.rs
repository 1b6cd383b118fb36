//! The item policy: open, a pattern of ids, or registered items only.

#![cfg(not(target_arch = "wasm32"))]

mod engine_common;
mod support;

use engine_common::{Setup, item, unique};
use tally::engine::{Amount, EngineError, Settings};
use tally::item::{CounterName, ItemPattern, ItemPolicy};

fn policy(items: ItemPolicy) -> Settings {
    Settings {
        items,
        ..Settings::default()
    }
}

/// Every key of the test's engine, as `redis-cli --scan` lists them.
fn keys(setup: &Setup) -> String {
    let pattern = format!("{}:*", setup.engine.settings().prefix);
    setup.cli(&["--scan", "--pattern", &pattern])
}

#[tokio::test]
async fn outside_the_pattern_every_write_and_read_is_unknown_and_nothing_is_sent() {
    let pattern = ItemPattern::parse("blog/,docs/*/intro").unwrap();
    let setup = Setup::start(policy(ItemPolicy::Pattern(pattern)));
    let engine = &setup.engine;
    let stranger = item(&unique("random"));
    let name = CounterName::parse("n").unwrap();
    assert_eq!(
        engine.like(&stranger, "u", "u", 1_000).await.unwrap_err(),
        EngineError::UnknownItem
    );
    assert_eq!(
        engine
            .view(&stranger, "v", "v", 1_000, None, true)
            .await
            .unwrap_err(),
        EngineError::UnknownItem
    );
    assert_eq!(
        engine
            .add_to_counter(&stranger, &name, Amount::Int(1), 1_000)
            .await
            .unwrap_err(),
        EngineError::UnknownItem
    );
    assert_eq!(
        engine.register(&stranger, 1_000).await.unwrap_err(),
        EngineError::UnknownItem
    );
    assert_eq!(setup.trips.count(), 0);

    let post = item(&format!("blog/{}", unique("post")));
    let intro = item(&format!("docs/{}/intro", unique("v")));
    for page in [&post, &intro] {
        let liked = engine.like(page, "u", "u", 1_000).await.unwrap();
        assert_eq!(liked.outcome.unwrap().likes, 1);
    }
    // A read of an id outside the pattern is refused too, before any request.
    let trips = setup.trips.count();
    assert_eq!(
        engine.read(&stranger, None, 1_000).await.unwrap_err(),
        EngineError::UnknownItem
    );
    assert_eq!(
        engine
            .read_many(&[post.clone(), stranger.clone()], None, 1_000)
            .await
            .unwrap_err(),
        EngineError::UnknownItem
    );
    assert_eq!(setup.trips.count(), trips);
    assert!(!keys(&setup).contains("random"), "{}", keys(&setup));
}

#[tokio::test]
async fn only_registered_items_take_writes_and_the_refusals_write_nothing() {
    let setup = Setup::start(policy(ItemPolicy::Registered));
    let engine = &setup.engine;
    let stranger = item(&unique("stranger"));
    let name = CounterName::parse("n").unwrap();
    let now = 1_000;
    assert_eq!(
        engine.like(&stranger, "u", "u", now).await.unwrap_err(),
        EngineError::UnknownItem
    );
    assert_eq!(
        engine
            .view(&stranger, "v", "v", now, None, true)
            .await
            .unwrap_err(),
        EngineError::UnknownItem
    );
    assert_eq!(
        engine
            .add_to_counter(&stranger, &name, Amount::Int(1), 1_000)
            .await
            .unwrap_err(),
        EngineError::UnknownItem
    );
    let read = engine.read(&stranger, Some("u"), now).await.unwrap();
    assert_eq!((read.likes, read.views, read.liked), (0, 0, Some(false)));
    // Nothing at all, not even a rate-limit slot or a trending entry.
    assert_eq!(keys(&setup), "");

    let page = item(&unique("registered"));
    assert!(engine.register(&page, now).await.unwrap());
    assert!(!engine.register(&page, now).await.unwrap());
    let liked = engine.like(&page, "u", "u", now).await.unwrap();
    assert_eq!(liked.outcome.unwrap().likes, 1);
    let viewed = engine.view(&page, "v", "v", now, None, true).await.unwrap();
    assert!(viewed.outcome.is_some());
    assert_eq!(
        engine
            .add_to_counter(&page, &name, Amount::Int(2), 1_000)
            .await
            .unwrap(),
        tally::engine::CounterValue::Int(2)
    );
    let read = engine.read(&page, None, now).await.unwrap();
    assert_eq!((read.likes, read.views), (1, 1));
}

#[tokio::test]
async fn an_open_engine_takes_any_id() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("anything"));
    let liked = setup.engine.like(&page, "u", "u", 1_000).await.unwrap();
    assert_eq!(liked.outcome.unwrap().likes, 1);
    // Registering under `open` is allowed and harmless.
    assert!(setup.engine.register(&page, 1_000).await.unwrap());
}
