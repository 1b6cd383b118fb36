//! The outbox: every write that changes a count appends exactly one event in
//! the same script, and nothing else appends one; the reconciliation pass's
//! engine calls read it in order, trim only what was applied, hold a lease,
//! audit items and repair them from the record.

#![cfg(not(target_arch = "wasm32"))]
// Helpers outside #[test] fns unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use engine_common::{Setup, item, unique};
use tally::engine::{
    Amount, CounterOutcome, CounterValue, EngineError, Idempotency, Settings, ViewOutcome,
};
use tally::item::{CounterName, ItemId, ItemPolicy};
use tally::outbox::{self, Event, Op, SHARDS, StreamId};
use tally::reconcile::{LiveCounts, RecordItem, RepairOutcome};

fn with_outbox() -> Settings {
    Settings {
        rate_limit_per_minute: 1_000_000,
        outbox: true,
        ..Settings::default()
    }
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

    let events = setup.events(&page).await;
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
    let ops: Vec<Op> = setup
        .events(&page)
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
    let events = setup.events(&page).await;
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

    let events = setup.events(&page).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].idem.as_deref(), Some(idem.key.as_str()));
    assert!(
        setup
            .events(&other)
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

    let events = setup.events(&page).await;
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
    assert_eq!(setup.events(&page).await.len(), 1);
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
    assert!(setup.events(&stranger).await.is_empty());
    // Once registered, the same like appends its event.
    engine.register(&stranger, 1_000).await.unwrap();
    engine.like(&stranger, "u1", "u1", 1_001).await.unwrap();
    assert_eq!(setup.events(&stranger).await.len(), 1);
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
        for event in setup.events(page).await {
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

/// A fresh item id whose events go to outbox shard `shard`.
fn in_shard(name: &str, shard: usize) -> ItemId {
    loop {
        let candidate = item(&unique(name));
        if outbox::shard(&candidate) == shard {
            return candidate;
        }
    }
}

const ZERO: [StreamId; SHARDS] = [StreamId::ZERO; SHARDS];

#[tokio::test]
async fn a_read_is_in_id_order_across_shards_and_a_trim_keeps_every_unapplied_event() {
    let setup = Setup::start(with_outbox());
    let engine = &setup.engine;
    let (a, b) = (in_shard("a", 3), in_shard("b", 11));
    // Alternate shards: a1 b1 a2 b2 a3 b3, a few milliseconds apart: ids are
    // the server's milliseconds and a sequence per stream, so two shards'
    // entries written within one millisecond can carry the same id (the
    // order is then by shard, as `outbox::merge` documents).
    for i in 0..3 {
        engine.like(&a, &format!("u{i}"), "w", 1_000).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
        engine.like(&b, &format!("u{i}"), "w", 1_000).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert_eq!(engine.outbox_lag().await.unwrap(), 6);
    let all = engine.outbox_read(&ZERO, 100).await.unwrap();
    assert_eq!(all.events.len(), 6);
    assert!(!all.more);
    let order: Vec<(&str, usize)> = all
        .events
        .iter()
        .map(|e| (if e.item == a.as_str() { "a" } else { "b" }, e.shard))
        .collect();
    assert_eq!(
        order,
        [
            ("a", 3),
            ("b", 11),
            ("a", 3),
            ("b", 11),
            ("a", 3),
            ("b", 11)
        ]
    );
    assert!(all.events.windows(2).all(|w| w[0].id < w[1].id));

    // Apply the first three (a1 b1 a2), trim: b2 (before a3) must survive.
    let first = engine.outbox_read(&ZERO, 3).await.unwrap();
    assert_eq!(first.events, all.events[..3]);
    assert!(first.more);
    assert_eq!(first.marks[3], all.events[2].id);
    assert_eq!(first.marks[11], all.events[1].id);
    assert_eq!(engine.outbox_trim(&first.marks).await.unwrap(), 3);
    assert_eq!(engine.outbox_lag().await.unwrap(), 3);
    // A trim with the same marks again removes nothing.
    assert_eq!(engine.outbox_trim(&first.marks).await.unwrap(), 0);

    // A write after the read, then the next read: exactly the rest, in order.
    engine.view(&a, "v", "w", 1_000, None, true).await.unwrap();
    let rest = engine.outbox_read(&first.marks, 100).await.unwrap();
    assert_eq!(rest.events[..3], all.events[3..]);
    assert_eq!(rest.events.len(), 4);
    assert_eq!(rest.events[3].op, Op::View);
    engine.outbox_trim(&rest.marks).await.unwrap();
    assert_eq!(engine.outbox_lag().await.unwrap(), 0);
    let empty = engine.outbox_read(&rest.marks, 100).await.unwrap();
    assert!(empty.events.is_empty() && !empty.more);
    assert_eq!(empty.marks, rest.marks);
}

#[tokio::test]
async fn a_trim_with_no_marks_sends_nothing_and_an_empty_outbox_lags_zero() {
    let setup = Setup::start(with_outbox());
    setup.trips.reset();
    assert_eq!(setup.engine.outbox_trim(&ZERO).await.unwrap(), 0);
    assert!(setup.trips.take().is_empty());
    assert_eq!(setup.engine.outbox_lag().await.unwrap(), 0);
    assert_eq!(setup.trips.take(), ["PIPELINE"]);
}

#[tokio::test]
async fn only_one_pass_holds_the_lease_and_only_its_holder_releases_it() {
    let setup = Setup::start(with_outbox());
    let engine = &setup.engine;
    let lease = engine.keys().reconcile_lease();
    assert!(engine.lease("pass-a", 60_000).await.unwrap());
    assert!(!engine.lease("pass-b", 60_000).await.unwrap());
    assert!(!engine.release("pass-b").await.unwrap());
    assert_eq!(setup.cli(&["GET", &lease]), "pass-a");
    assert!(engine.release("pass-a").await.unwrap());
    assert!(engine.lease("pass-b", 60_000).await.unwrap());
    assert!(engine.release("pass-b").await.unwrap());

    // An expired lease is free; its old holder cannot release the new one.
    assert!(engine.lease("slow", 50).await.unwrap());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(engine.lease("next", 60_000).await.unwrap());
    assert!(!engine.release("slow").await.unwrap());
    assert_eq!(setup.cli(&["GET", &lease]), "next");
}

/// What the system of record would hold after applying `events` of `item`.
fn record_of(events: &[Event], item: &ItemId) -> RecordItem {
    let mut likers = std::collections::BTreeSet::new();
    let mut record = RecordItem::default();
    for event in events.iter().filter(|e| e.item == item.as_str()) {
        match &event.op {
            Op::Like { who } => drop(likers.insert(who.clone())),
            Op::Unlike { who } => drop(likers.remove(who)),
            Op::View => record.views += 1,
            Op::Add { name, by } => {
                let sum = match (record.counters.get(name), by) {
                    (None, Amount::Int(n)) => CounterValue::Int(*n),
                    (Some(CounterValue::Int(m)), Amount::Int(n)) => CounterValue::Int(m + n),
                    (value, Amount::Int(n)) => CounterValue::Float(float(value) + *n as f64),
                    (value, Amount::Float(f)) => CounterValue::Float(float(value) + f),
                };
                record.counters.insert(name.clone(), sum);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    record.likers = likers.into_iter().collect();
    record
}

fn float(value: Option<&CounterValue>) -> f64 {
    match value {
        None => 0.0,
        Some(CounterValue::Int(n)) => *n as f64,
        Some(CounterValue::Float(f)) => *f,
    }
}

/// Applies everything in the outbox, as a pass would: the record of `item`
/// and the new marks (trimmed).
async fn apply_all(setup: &Setup, item: &ItemId) -> (RecordItem, [StreamId; SHARDS]) {
    let batch = setup.engine.outbox_read(&ZERO, 10_000).await.unwrap();
    assert!(!batch.more);
    setup.engine.outbox_trim(&batch.marks).await.unwrap();
    (record_of(&batch.events, item), batch.marks)
}

#[tokio::test]
async fn an_audit_reports_the_live_counts_and_the_events_after_the_mark() {
    let setup = Setup::start(with_outbox());
    let engine = &setup.engine;
    let page = in_shard("audit", 5);
    let neighbour = in_shard("neighbour", 5);
    engine.like(&page, "u1", "u1", 1_000).await.unwrap();
    let (record, marks) = apply_all(&setup, &page).await;
    engine.like(&page, "u2", "u2", 1_001).await.unwrap();
    engine.like(&page, "u3", "u3", 1_001).await.unwrap();
    engine.unlike(&page, "u1", "u1", 1_002).await.unwrap();
    engine
        .view(&page, "v1", "v1", 1_002, None, true)
        .await
        .unwrap();
    engine
        .view(&page, "v2", "v2", 1_002, None, true)
        .await
        .unwrap();
    engine.like(&neighbour, "u1", "u1", 1_002).await.unwrap();
    let missing = item(&unique("missing"));

    let live = engine
        .audit(&[page.clone(), missing.clone()], &marks)
        .await
        .unwrap();
    assert!(live[0].exists && !live[0].blocked);
    assert_eq!(
        (
            live[0].likes,
            live[0].views,
            live[0].members,
            live[0].likes_base
        ),
        (2, 2, 2, 0)
    );
    assert_eq!((live[0].pending_likes, live[0].pending_views), (1, 2));
    assert_eq!(
        live[0].drift(record.likers.len() as u64, record.views),
        None
    );
    assert!(!live[1].exists);
    assert_eq!(
        live[1].drift(0, 0).as_deref(),
        Some("lost: record has likes 0, views 0")
    );

    // An import of the item in its tail blocks it; one of another item does not.
    let key = engine.keys().outbox(5);
    for target in [neighbour.as_str(), page.as_str()] {
        setup.cli(&[
            "XADD", &key, "*", "op", "import", "item", target, "t", "1", "views", "9",
        ]);
    }
    let live = engine
        .audit(&[page.clone(), missing], &marks)
        .await
        .unwrap();
    assert!(live[0].blocked);
    assert!(!live[1].blocked);
}

#[tokio::test]
async fn after_flushall_a_repair_restores_counts_likers_and_counters_and_a_re_like_changes_nothing()
{
    let setup = Setup::start(Settings {
        likes_store: tally::engine::LikesStore::Bitmap { max_id: 1_000 },
        ..with_outbox()
    });
    let engine = &setup.engine;
    let page = item(&unique("flushed"));
    let name = CounterName::parse("n").unwrap();
    // "42" goes to the Bitmap, "alice" to the Set.
    for who in ["42", "alice", "bob"] {
        engine.like(&page, who, who, 1_000).await.unwrap();
    }
    engine.unlike(&page, "bob", "bob", 1_001).await.unwrap();
    engine
        .view(&page, "v1", "v1", 1_001, None, true)
        .await
        .unwrap();
    engine
        .add_to_counter(&page, &name, Amount::Int(5), 1_001)
        .await
        .unwrap();
    let (record, marks) = apply_all(&setup, &page).await;
    assert_eq!(record.likers, ["42", "alice"]);
    let before = engine.read(&page, None, 1_002).await.unwrap();

    assert_eq!(setup.cli(&["FLUSHALL"]), "OK");
    let live = engine
        .audit(std::slice::from_ref(&page), &marks)
        .await
        .unwrap();
    assert!(live[0].drift(2, 1).is_some());
    let repaired = engine
        .repair(&page, &record, marks[outbox::shard(&page)])
        .await
        .unwrap();
    assert_eq!(
        repaired,
        RepairOutcome::Repaired {
            before: LiveCounts::default(),
            after: LiveCounts {
                likes: 2,
                views: 1,
                members: 2
            }
        }
    );
    let after = engine.read(&page, Some("42"), 1_002).await.unwrap();
    assert_eq!(
        (after.likes, after.views, &after.counters, after.liked),
        (before.likes, before.views, &before.counters, Some(true))
    );
    for who in ["42", "alice"] {
        let again = engine.like(&page, who, who, 1_003).await.unwrap();
        assert!(!again.outcome.unwrap().changed, "{who} liked twice");
    }
    let bob = engine.like(&page, "bob", "bob", 1_003).await.unwrap();
    assert_eq!(bob.outcome.unwrap().likes, 3);
    let live = engine
        .audit(std::slice::from_ref(&page), &marks)
        .await
        .unwrap();
    assert_eq!(live[0].drift(2, 1), None, "{:?}", live[0]);
}

#[tokio::test]
async fn a_repair_keeps_the_writes_made_after_the_record() {
    let setup = Setup::start(with_outbox());
    let engine = &setup.engine;
    let page = item(&unique("pending"));
    let name = CounterName::parse("n").unwrap();
    engine.like(&page, "u1", "u1", 1_000).await.unwrap();
    engine.like(&page, "u2", "u2", 1_000).await.unwrap();
    engine
        .add_to_counter(&page, &name, Amount::Int(2), 1_000)
        .await
        .unwrap();
    let (record, marks) = apply_all(&setup, &page).await;
    // Written after the record was read: pending in the outbox.
    engine.like(&page, "u3", "u3", 1_001).await.unwrap();
    engine.unlike(&page, "u1", "u1", 1_001).await.unwrap();
    engine
        .view(&page, "v1", "v1", 1_001, None, true)
        .await
        .unwrap();
    engine
        .add_to_counter(&page, &name, Amount::Float(0.5), 1_001)
        .await
        .unwrap();
    // And Redis lost some state meanwhile.
    setup.cli(&[
        "DEL",
        &engine.keys().likers(&page),
        &engine.keys().counters(&page),
    ]);

    let outcome = engine
        .repair(&page, &record, marks[outbox::shard(&page)])
        .await
        .unwrap();
    let RepairOutcome::Repaired { after, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        after,
        LiveCounts {
            likes: 2,
            views: 1,
            members: 2
        }
    );
    let snapshot = engine.read(&page, Some("u3"), 1_002).await.unwrap();
    assert_eq!(snapshot.liked, Some(true));
    assert_eq!(snapshot.counters["n"], CounterValue::Float(2.5));
    let u1 = engine.read(&page, Some("u1"), 1_002).await.unwrap();
    assert_eq!(u1.liked, Some(false));
}

#[tokio::test]
async fn a_corrupted_likes_count_is_found_and_repaired_and_registered_is_kept() {
    let setup = Setup::start(Settings {
        items: ItemPolicy::Registered,
        ..with_outbox()
    });
    let engine = &setup.engine;
    let page = item(&unique("corrupt"));
    engine.register(&page, 1_000).await.unwrap();
    engine.like(&page, "u1", "u1", 1_000).await.unwrap();
    engine.like(&page, "u2", "u2", 1_000).await.unwrap();
    let (record, marks) = apply_all(&setup, &page).await;
    let stats = engine.keys().stats(&page);
    setup.cli(&["HSET", &stats, "likes", "7"]);

    let live = engine
        .audit(std::slice::from_ref(&page), &marks)
        .await
        .unwrap();
    let drift = live[0].drift(2, 0).unwrap();
    assert_eq!(
        drift,
        "likes 7 != record+pending 2, likes 7 != likes_base+likers 2"
    );
    let outcome = engine
        .repair(&page, &record, marks[outbox::shard(&page)])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        RepairOutcome::Repaired {
            before: LiveCounts {
                likes: 7,
                views: 0,
                members: 2
            },
            after: LiveCounts {
                likes: 2,
                views: 0,
                members: 2
            },
        }
    );
    assert_eq!(setup.cli(&["HGET", &stats, "likes"]), "2");
    assert_eq!(setup.cli(&["HEXISTS", &stats, "registered"]), "1");
    let live = engine
        .audit(std::slice::from_ref(&page), &marks)
        .await
        .unwrap();
    assert_eq!(live[0].drift(2, 0), None);
    // Still registered: a write is accepted.
    engine.like(&page, "u3", "u3", 1_001).await.unwrap();
}

#[tokio::test]
async fn a_repair_with_an_import_of_the_item_in_its_tail_writes_nothing() {
    let setup = Setup::start(with_outbox());
    let engine = &setup.engine;
    let page = item(&unique("blocked"));
    engine.like(&page, "u1", "u1", 1_000).await.unwrap();
    let (record, marks) = apply_all(&setup, &page).await;
    let stats = engine.keys().stats(&page);
    setup.cli(&["HSET", &stats, "likes", "7"]);
    let key = engine.keys().outbox(outbox::shard(&page));
    setup.cli(&[
        "XADD",
        &key,
        "*",
        "op",
        "import",
        "item",
        page.as_str(),
        "t",
        "1",
        "views",
        "9",
    ]);

    let outcome = engine
        .repair(&page, &record, marks[outbox::shard(&page)])
        .await
        .unwrap();
    assert_eq!(outcome, RepairOutcome::Blocked);
    assert_eq!(setup.cli(&["HGET", &stats, "likes"]), "7");
}

#[tokio::test]
async fn a_repair_of_imported_likes_keeps_likes_base_and_counts_it() {
    let setup = Setup::start(with_outbox());
    let engine = &setup.engine;
    let page = item(&unique("base"));
    let record = RecordItem {
        likes_base: 10,
        views: 100,
        likers: vec!["u1".into()],
        counters: BTreeMap::from([("f".to_owned(), CounterValue::Float(0.25))]),
    };
    let outcome = engine.repair(&page, &record, StreamId::ZERO).await.unwrap();
    assert!(matches!(outcome, RepairOutcome::Repaired { after, .. } if after.likes == 11));
    let live = engine
        .audit(std::slice::from_ref(&page), &ZERO)
        .await
        .unwrap();
    assert_eq!(live[0].likes_base, 10);
    assert_eq!(live[0].drift(11, 100), None);
    let snapshot = engine.read(&page, None, 1_000).await.unwrap();
    assert_eq!(snapshot.counters["f"], CounterValue::Float(0.25));
    // A like on top counts once, as likes_base + members.
    let like = engine.like(&page, "u2", "u2", 1_000).await.unwrap();
    assert_eq!(like.outcome.unwrap().likes, 12);
}
