//! The outbox: every write that changes a count appends exactly one event in
//! the same script, and nothing else appends one.

#![cfg(not(target_arch = "wasm32"))]
// Helpers outside #[test] fns unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod support;

use std::collections::HashMap;
use std::sync::Arc;

use engine_common::{Setup, item, unique};
use tally::engine::{
    Amount, CounterOutcome, CounterValue, EngineError, Idempotency, Settings, ViewOutcome,
};
use tally::item::{CounterName, ItemId, ItemPolicy};
use tally::outbox::{self, Event, Op};

fn with_outbox() -> Settings {
    Settings {
        rate_limit_per_minute: 1_000_000,
        outbox: true,
        ..Settings::default()
    }
}

/// Every entry of `item`'s outbox stream, parsed; an unreadable one fails the test.
async fn events(setup: &Setup, item: &ItemId) -> Vec<Event> {
    let shard = outbox::shard(item);
    let key = setup.engine.keys().outbox(shard);
    let answer = setup
        .engine
        .rest()
        .command(&["XRANGE", key.as_str(), "-", "+"])
        .await
        .unwrap();
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| Event::parse(shard, entry).unwrap())
        .collect()
}

fn key(name: &str) -> Idempotency {
    Idempotency {
        key: name.to_owned(),
        fingerprint: format!("fp-{name}"),
    }
}

#[tokio::test]
async fn a_like_or_unlike_appends_one_event_only_when_it_changed_the_state() {
    let setup = Setup::start(with_outbox());
    let page = item(&unique("like"));
    let engine = &setup.engine;
    let changed = |outcome: tally::engine::Limited<tally::engine::LikeOutcome>| {
        outcome.outcome.unwrap().changed
    };
    assert!(changed(
        engine.like(&page, "u1", "u1", 1_000).await.unwrap()
    ));
    assert!(!changed(
        engine.like(&page, "u1", "u1", 1_001).await.unwrap()
    ));
    assert!(changed(
        engine.unlike(&page, "u1", "u1", 1_002).await.unwrap()
    ));
    assert!(!changed(
        engine.unlike(&page, "u1", "u1", 1_003).await.unwrap()
    ));
    assert!(!changed(
        engine.unlike(&page, "u2", "u2", 1_004).await.unwrap()
    ));

    let events = events(&setup, &page).await;
    let seen: Vec<(Op, i64, &str)> = events
        .iter()
        .map(|e| (e.op.clone(), e.t, e.item.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Op::Like { who: "u1".into() }, 1_000, page.as_str()),
            (Op::Unlike { who: "u1".into() }, 1_002, page.as_str()),
        ]
    );
    assert!(events[0].id < events[1].id);
    assert_eq!(events[0].shard, outbox::shard(&page));
    assert_eq!(events[0].idem, None);
}

#[tokio::test]
async fn a_like_kept_in_the_bitmap_appends_the_same_event() {
    let setup = Setup::start(Settings {
        likes_store: tally::engine::LikesStore::Bitmap { max_id: 1_000 },
        ..with_outbox()
    });
    let page = item(&unique("bits"));
    setup.engine.like(&page, "42", "42", 1_000).await.unwrap();
    setup.engine.unlike(&page, "42", "42", 1_001).await.unwrap();
    let ops: Vec<Op> = events(&setup, &page)
        .await
        .into_iter()
        .map(|e| e.op)
        .collect();
    assert_eq!(
        ops,
        [
            Op::Like { who: "42".into() },
            Op::Unlike { who: "42".into() }
        ]
    );
}

#[tokio::test]
async fn a_counted_view_appends_one_event_and_a_deduplicated_or_bot_view_none() {
    let setup = Setup::start(with_outbox());
    let page = item(&unique("view"));
    let engine = &setup.engine;
    let view = |viewer: &'static str, now: i64, countable: bool| {
        let page = page.clone();
        async move {
            engine
                .view(&page, viewer, viewer, now, None, countable)
                .await
                .unwrap()
                .outcome
                .unwrap()
        }
    };
    assert_eq!(
        view("v1", 5_000, true).await,
        ViewOutcome::Recorded {
            views: 1,
            counted: true
        }
    );
    assert_eq!(
        view("v1", 5_001, true).await,
        ViewOutcome::Recorded {
            views: 1,
            counted: false
        }
    );
    assert_eq!(
        view("bot", 5_002, false).await,
        ViewOutcome::Recorded {
            views: 1,
            counted: false
        }
    );
    let events = events(&setup, &page).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (&events[0].op, events[0].t, &events[0].idem),
        (&Op::View, 5_000, &None)
    );
}

#[tokio::test]
async fn a_view_event_carries_the_idempotency_key_and_a_replay_or_conflict_appends_none() {
    let setup = Setup::start(with_outbox());
    let page = item(&unique("idem"));
    let other = item(&unique("other"));
    let engine = &setup.engine;
    let idem = key(&unique("k"));
    let first = engine
        .view(&page, "v1", "v1", 1_000, Some(&idem), true)
        .await
        .unwrap();
    assert!(matches!(
        first.outcome,
        Some(ViewOutcome::Recorded { counted: true, .. })
    ));
    let replay = engine
        .view(&page, "v1", "v1", 9_000, Some(&idem), true)
        .await
        .unwrap();
    assert!(matches!(replay.outcome, Some(ViewOutcome::Replayed { .. })));
    let reused = Idempotency {
        fingerprint: "another request".into(),
        ..idem.clone()
    };
    let conflict = engine
        .view(&other, "v1", "v1", 9_000, Some(&reused), true)
        .await
        .unwrap();
    assert_eq!(conflict.outcome, Some(ViewOutcome::Conflict));

    let events = events(&setup, &page).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].idem.as_deref(), Some(idem.key.as_str()));
    assert!(
        self::events(&setup, &other)
            .await
            .iter()
            .all(|e| e.item != other.as_str()),
        "a conflict appends nothing"
    );
}

#[tokio::test]
async fn a_counter_add_appends_the_kind_and_amount_it_was_applied_as() {
    let setup = Setup::start(with_outbox());
    let page = item(&unique("add"));
    let engine = &setup.engine;
    let name = CounterName::parse("score").unwrap();
    engine
        .add_to_counter(&page, &name, Amount::Int(3), 100)
        .await
        .unwrap();
    engine
        .add_to_counter(&page, &name, Amount::Float(0.5), 101)
        .await
        .unwrap();
    // An integer added to a fraction goes through HINCRBYFLOAT: the event says float.
    engine
        .add_to_counter(&page, &name, Amount::Int(2), 102)
        .await
        .unwrap();
    let idem = key(&unique("k"));
    let added = engine
        .add_to_counter_once(&page, &name, Amount::Int(1), 103, Some(&idem))
        .await
        .unwrap();
    assert_eq!(added, CounterOutcome::Added(CounterValue::Float(6.5)));
    let replayed = engine
        .add_to_counter_once(&page, &name, Amount::Int(1), 104, Some(&idem))
        .await
        .unwrap();
    assert!(matches!(replayed, CounterOutcome::Replayed(_)));
    // Refused (the sum is not a finite double): nothing written, nothing appended.
    engine
        .add_to_counter(&page, &name, Amount::Float(1e308), 105)
        .await
        .unwrap();
    let refused = engine
        .add_to_counter(&page, &name, Amount::Float(1e308), 106)
        .await
        .unwrap_err();
    assert!(matches!(refused, EngineError::Invalid(_)), "{refused:?}");

    let events = events(&setup, &page).await;
    let seen: Vec<(Op, i64, Option<String>)> =
        events.into_iter().map(|e| (e.op, e.t, e.idem)).collect();
    let add = |by| Op::Add {
        name: "score".into(),
        by,
    };
    assert_eq!(
        seen,
        [
            (add(Amount::Int(3)), 100, None),
            (add(Amount::Float(0.5)), 101, None),
            (add(Amount::Float(2.0)), 102, None),
            (add(Amount::Float(1.0)), 103, Some(idem.key.clone())),
            (add(Amount::Float(1e308)), 105, None),
        ]
    );
}

#[tokio::test]
async fn a_write_over_the_rate_limit_appends_nothing() {
    let setup = Setup::start(Settings {
        rate_limit_per_minute: 1,
        ..with_outbox()
    });
    let page = item(&unique("limited"));
    let engine = &setup.engine;
    let first = engine.like(&page, "u1", "writer", 1_000).await.unwrap();
    assert!(first.outcome.unwrap().changed);
    let over = engine.like(&page, "u2", "writer", 1_001).await.unwrap();
    assert_eq!(over.outcome, None);
    let view = engine
        .view(&page, "v1", "writer", 1_002, None, true)
        .await
        .unwrap();
    assert_eq!(view.outcome, None);
    assert_eq!(events(&setup, &page).await.len(), 1);
}

#[tokio::test]
async fn a_write_to_an_unknown_item_appends_nothing() {
    let setup = Setup::start(Settings {
        items: ItemPolicy::Registered,
        ..with_outbox()
    });
    let stranger = item(&unique("stranger"));
    let engine = &setup.engine;
    let name = CounterName::parse("n").unwrap();
    for error in [
        engine.like(&stranger, "u1", "u1", 1_000).await.unwrap_err(),
        engine
            .view(&stranger, "v1", "v1", 1_000, None, true)
            .await
            .unwrap_err(),
        engine
            .add_to_counter(&stranger, &name, Amount::Int(1), 1_000)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(error, EngineError::UnknownItem);
    }
    assert!(events(&setup, &stranger).await.is_empty());
    // Once registered, the same like appends its event.
    engine.register(&stranger, 1_000).await.unwrap();
    engine.like(&stranger, "u1", "u1", 1_001).await.unwrap();
    assert_eq!(events(&setup, &stranger).await.len(), 1);
}

#[tokio::test]
async fn with_the_outbox_off_no_write_appends_anything() {
    let setup = Setup::start(Settings {
        outbox: false,
        ..with_outbox()
    });
    let page = item(&unique("off"));
    let engine = &setup.engine;
    let name = CounterName::parse("n").unwrap();
    engine.like(&page, "u1", "u1", 1_000).await.unwrap();
    engine.unlike(&page, "u1", "u1", 1_000).await.unwrap();
    engine
        .view(&page, "v1", "v1", 1_000, Some(&key(&unique("k"))), true)
        .await
        .unwrap();
    engine
        .add_to_counter(&page, &name, Amount::Int(1), 1_000)
        .await
        .unwrap();
    let streams = setup.cli(&["KEYS", "*#outbox*"]);
    assert_eq!(streams, "", "no outbox stream exists");
    assert_eq!(engine.read(&page, None, 1_000).await.unwrap().views, 1);
}

const TASKS: usize = 32;
const OPS_PER_TASK: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_from_many_identities_leave_exactly_their_changes_in_the_outbox() {
    let setup = Setup::start(Settings {
        view_dedupe_seconds: 2,
        ..with_outbox()
    });
    let pages: Arc<Vec<ItemId>> =
        Arc::new((0..3).map(|i| item(&unique(&format!("hot{i}")))).collect());
    let name = CounterName::parse("n").unwrap();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let engine = setup.engine.clone();
        let pages = pages.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (task as u64 + 1);
            for op in 0..OPS_PER_TASK {
                // xorshift64: deterministic, no dependency.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let page = &pages[(state % 3) as usize];
                let who = format!("u{}", (state >> 8) % 20);
                let now = 10_000 + op as i64;
                match (state >> 40) % 4 {
                    0 => drop(engine.like(page, &who, &who, now).await.unwrap()),
                    1 => drop(engine.unlike(page, &who, &who, now).await.unwrap()),
                    2 => drop(
                        engine
                            .view(page, &who, &who, now, None, true)
                            .await
                            .unwrap(),
                    ),
                    _ => drop(
                        engine
                            .add_to_counter(page, &name, Amount::Int(2), now)
                            .await
                            .unwrap(),
                    ),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let mut total = 0;
    for page in pages.iter() {
        let live = setup.engine.read(page, None, 10_000).await.unwrap();
        let mut likes = 0i64;
        let mut views = 0u64;
        let mut added = 0i64;
        // Per identity, the events alternate like, unlike, like, …
        let mut liked = HashMap::<String, bool>::new();
        for event in events(&setup, page).await {
            if event.item != page.as_str() {
                continue;
            }
            total += 1;
            match event.op {
                Op::Like { who } => {
                    likes += 1;
                    assert!(!liked.insert(who, true).unwrap_or(false), "liked twice");
                }
                Op::Unlike { who } => {
                    likes -= 1;
                    assert!(liked.insert(who, false).unwrap_or(false), "unliked unliked");
                }
                Op::View => views += 1,
                Op::Add {
                    by: Amount::Int(n), ..
                } => added += n,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(likes, live.likes as i64, "likes of {page:?}");
        assert_eq!(views, live.views, "views of {page:?}");
        let counter = live
            .counters
            .get("n")
            .copied()
            .unwrap_or(CounterValue::Int(0));
        assert_eq!(CounterValue::Int(added), counter, "counter of {page:?}");
    }
    assert!(total > TASKS * OPS_PER_TASK / 4, "{total} events");
}
