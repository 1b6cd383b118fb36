//! Import and merge against a real Redis: set semantics, all or nothing, and
//! a merge that counts a liker of both ids once.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

mod engine_common;
mod support;

use engine_common::{Setup, item, real_now, unique};
use tally::engine::{
    Amount, Bucket, CounterValue, EngineError, InvalidRequest, LikesStore, Settings,
};
use tally::item::{CounterName, ItemId, ItemPattern, ItemPolicy};
use tally::outbox::{self, Event, Op};
use tally::transfer::{TransferError, parse_import};

fn generous() -> Settings {
    Settings {
        rate_limit_per_minute: 1_000_000,
        ..Settings::default()
    }
}

fn name(n: &str) -> CounterName {
    CounterName::parse(n).unwrap()
}

async fn like(setup: &Setup, page: &ItemId, who: &str) -> bool {
    let answer = setup.engine.like(page, who, who, real_now()).await.unwrap();
    answer.outcome.unwrap().changed
}

async fn view(setup: &Setup, page: &ItemId, viewer: &str, now: i64) {
    setup
        .engine
        .view(page, viewer, viewer, now, None, true)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_import_sets_counts_and_likes_become_the_base_plus_the_likers() {
    let setup = Setup::start(generous());
    let page = item(&unique("page"));
    assert!(like(&setup, &page, "u1").await);
    view(&setup, &page, "v1", real_now()).await;
    let body = format!(
        "{{\"item\":\"{page}\",\"views\":500,\"likes_base\":40,\"counters\":{{\"stars\":7,\"score\":2.5}}}}\n"
    );
    let lines = parse_import(body.as_bytes()).unwrap();
    assert_eq!(setup.engine.import(&lines, real_now()).await.unwrap(), 1);

    let snapshot = setup
        .engine
        .read(&page, Some("u1"), real_now())
        .await
        .unwrap();
    assert_eq!(snapshot.likes, 41);
    assert_eq!(snapshot.views, 500);
    assert_eq!(snapshot.liked, Some(true));
    assert_eq!(snapshot.counters["stars"], CounterValue::Int(7));
    assert_eq!(snapshot.counters["score"], CounterValue::Float(2.5));

    // Likes after an import move from the new base, and the import is a set:
    // run again, it leaves the same counts.
    assert!(like(&setup, &page, "u2").await);
    setup.engine.import(&lines, real_now()).await.unwrap();
    let again = setup.engine.read(&page, None, real_now()).await.unwrap();
    assert_eq!((again.likes, again.views), (42, 500));
    assert_eq!(again.counters["stars"], CounterValue::Int(7));
}

#[tokio::test]
async fn an_import_leaves_what_a_line_does_not_name() {
    let setup = Setup::start(generous());
    let page = item(&unique("page"));
    view(&setup, &page, "v1", real_now()).await;
    setup
        .engine
        .add_to_counter(&page, &name("kept"), Amount::Int(3), real_now())
        .await
        .unwrap();
    let body = format!("{{\"item\":\"{page}\",\"counters\":{{\"set\":1}}}}");
    let lines = parse_import(body.as_bytes()).unwrap();
    setup.engine.import(&lines, real_now()).await.unwrap();
    let snapshot = setup.engine.read(&page, None, real_now()).await.unwrap();
    assert_eq!((snapshot.views, snapshot.likes), (1, 0));
    assert_eq!(snapshot.counters["kept"], CounterValue::Int(3));
    assert_eq!(snapshot.counters["set"], CounterValue::Int(1));
}

#[tokio::test]
async fn an_unregistered_item_refuses_the_whole_import_by_its_line() {
    let setup = Setup::start(Settings {
        items: ItemPolicy::Registered,
        ..generous()
    });
    let known = item(&unique("known"));
    let stranger = item(&unique("stranger"));
    setup.engine.register(&known, real_now()).await.unwrap();
    let body = format!(
        "{{\"item\":\"{known}\",\"views\":9}}\n\n{{\"item\":\"{stranger}\",\"views\":9}}\n"
    );
    let lines = parse_import(body.as_bytes()).unwrap();
    let error = setup.engine.import(&lines, real_now()).await.unwrap_err();
    let TransferError::Line { line, reason } = error else {
        panic!("expected a line error, got {error:?}");
    };
    assert_eq!(line, 3);
    assert!(reason.contains("not registered"), "{reason}");
    let snapshot = setup.engine.read(&known, None, real_now()).await.unwrap();
    assert_eq!(snapshot.views, 0, "nothing from the import is written");
}

#[tokio::test]
async fn an_item_outside_the_pattern_is_a_bad_line_before_any_request() {
    let setup = Setup::start(Settings {
        items: ItemPolicy::Pattern(ItemPattern::parse("blog/").unwrap()),
        ..generous()
    });
    let lines =
        parse_import(b"{\"item\":\"blog/a\",\"views\":1}\n{\"item\":\"shop/b\",\"views\":1}")
            .unwrap();
    setup.trips.reset();
    let error = setup.engine.import(&lines, real_now()).await.unwrap_err();
    assert!(
        matches!(&error, TransferError::Line { line: 2, reason } if reason.contains("ITEM_PATTERN")),
        "{error:?}"
    );
    assert_eq!(setup.trips.count(), 0);
}

#[tokio::test]
async fn a_merge_counts_a_liker_of_both_ids_once_across_set_and_bitmap() {
    let setup = Setup::start(generous());
    let bitmap = setup.engine_with(Settings {
        likes_store: LikesStore::Bitmap { max_id: 1_000_000 },
        ..generous()
    });
    let old = item(&unique("old"));
    let new = item(&unique("new"));
    // "42" likes the old id in the Bitmap and the new one in the Set; "7"
    // likes both in the Bitmap; "anon:a" both in the Set; each id has one of its own.
    bitmap.like(&old, "42", "42", real_now()).await.unwrap();
    assert!(like(&setup, &new, "42").await);
    bitmap.like(&old, "7", "7", real_now()).await.unwrap();
    bitmap.like(&new, "7", "7", real_now()).await.unwrap();
    assert!(like(&setup, &old, "anon:a").await);
    assert!(like(&setup, &new, "anon:a").await);
    bitmap.like(&old, "9", "9", real_now()).await.unwrap();
    assert!(like(&setup, &new, "anon:b").await);

    let outcome = setup.engine.merge(&new, &old, real_now()).await.unwrap();
    assert!(outcome.merged);
    assert_eq!(outcome.likes, 5, "42, 7, anon:a, 9, anon:b");

    for who in ["42", "7", "anon:a", "9", "anon:b"] {
        assert!(!like(&setup, &new, who).await, "{who} liked again");
        let answer = bitmap.like(&new, who, who, real_now()).await.unwrap();
        assert!(
            !answer.outcome.unwrap().changed,
            "{who} liked again (bitmap)"
        );
    }
    let snapshot = setup.engine.read(&new, None, real_now()).await.unwrap();
    assert_eq!(snapshot.likes, 5);
    let unliked = setup
        .engine
        .unlike(&new, "42", "42", real_now())
        .await
        .unwrap()
        .outcome
        .unwrap();
    assert_eq!((unliked.likes, unliked.changed), (4, true));
    let gone = setup
        .engine
        .read(&new, Some("42"), real_now())
        .await
        .unwrap();
    assert_eq!(gone.liked, Some(false), "42 is in neither store any more");

    let old_now = setup
        .engine
        .read(&old, Some("9"), real_now())
        .await
        .unwrap();
    assert_eq!((old_now.likes, old_now.liked), (0, Some(false)));
}

#[tokio::test]
async fn a_merge_sums_views_days_counters_bases_and_unique_viewers() {
    let setup = Setup::start(generous());
    let old = item(&unique("old"));
    let new = item(&unique("new"));
    let now = real_now();
    let three_days_ago = now - 3 * 86_400;
    view(&setup, &old, "v1", now).await;
    view(&setup, &old, "v2", now).await;
    view(&setup, &old, "v9", three_days_ago).await;
    view(&setup, &new, "v2", now).await;
    view(&setup, &new, "v3", now).await;
    let import = format!(
        "{{\"item\":\"{old}\",\"likes_base\":10}}\n{{\"item\":\"{new}\",\"likes_base\":5}}"
    );
    setup
        .engine
        .import(&parse_import(import.as_bytes()).unwrap(), now)
        .await
        .unwrap();
    for (page, counter, by) in [
        (&old, "n", Amount::Int(3)),
        (&new, "n", Amount::Int(4)),
        (&old, "mixed", Amount::Float(0.5)),
        (&new, "mixed", Amount::Int(2)),
        (&old, "only_old", Amount::Int(-6)),
    ] {
        setup
            .engine
            .add_to_counter(page, &name(counter), by, real_now())
            .await
            .unwrap();
    }

    let outcome = setup.engine.merge(&new, &old, now).await.unwrap();
    assert_eq!((outcome.likes, outcome.views), (15, 5));

    let snapshot = setup.engine.read(&new, None, now).await.unwrap();
    assert_eq!((snapshot.likes, snapshot.views), (15, 5));
    assert_eq!(snapshot.counters["n"], CounterValue::Int(7));
    assert_eq!(snapshot.counters["mixed"], CounterValue::Float(2.5));
    assert_eq!(snapshot.counters["only_old"], CounterValue::Int(-6));
    assert_eq!(snapshot.unique_viewers.today, 3, "v1, v2, v3");
    assert_eq!(snapshot.unique_viewers.all_time, 4, "and v9");
    let days = setup
        .engine
        .series(&new, Bucket::Day, three_days_ago, now)
        .await
        .unwrap();
    let views: Vec<u64> = days.iter().map(|p| p.views).collect();
    assert_eq!(views, [1, 0, 0, 4]);
    // A day bucket the new id did not have expires as the old one would have.
    let key =
        setup
            .engine
            .keys()
            .views_bucket(&new, Bucket::Day, Bucket::Day.start(three_days_ago));
    let ttl: i64 = setup.cli(&["TTL", &key]).parse().unwrap();
    let expected = Bucket::Day.start(three_days_ago) + Bucket::Day.ttl_seconds() - now;
    assert!(
        (expected - 5..=expected).contains(&ttl),
        "{ttl} vs {expected}"
    );

    let emptied = setup.engine.read(&old, None, now).await.unwrap();
    assert_eq!((emptied.likes, emptied.views), (0, 0));
    assert!(emptied.counters.is_empty());
    assert_eq!(emptied.unique_viewers.all_time, 0);
    let old_days = setup
        .engine
        .series(&old, Bucket::Day, three_days_ago, now)
        .await
        .unwrap();
    assert!(old_days.iter().all(|p| p.views == 0));
}

#[tokio::test]
async fn a_merge_from_an_id_with_nothing_writes_nothing_and_says_so() {
    let setup = Setup::start(generous());
    let old = item(&unique("old"));
    let new = item(&unique("new"));
    view(&setup, &old, "v1", real_now()).await;
    assert!(
        setup
            .engine
            .merge(&new, &old, real_now())
            .await
            .unwrap()
            .merged
    );
    let again = setup.engine.merge(&new, &old, real_now()).await.unwrap();
    assert!(!again.merged);
    assert_eq!((again.likes, again.views), (0, 1));
    let never = item(&unique("never"));
    let quiet = setup.engine.merge(&never, &old, real_now()).await.unwrap();
    assert!(!quiet.merged);
    assert_eq!(
        setup.cli(&["EXISTS", &setup.engine.keys().stats(&never)]),
        "0"
    );
}

#[tokio::test]
async fn an_item_is_never_merged_into_itself() {
    let setup = Setup::start(generous());
    let page = item(&unique("page"));
    setup.trips.reset();
    let error = setup
        .engine
        .merge(&page, &page, real_now())
        .await
        .unwrap_err();
    assert_eq!(error, TransferError::SameItem);
    assert_eq!(setup.trips.count(), 0);
}

#[tokio::test]
async fn a_counter_that_would_overflow_refuses_the_whole_merge() {
    let setup = Setup::start(generous());
    let old = item(&unique("old"));
    let new = item(&unique("new"));
    for (page, counter, by) in [
        (&old, "a", 5),
        (&old, "z", i64::MAX),
        (&new, "a", 1),
        (&new, "z", 1),
    ] {
        setup
            .engine
            .add_to_counter(page, &name(counter), Amount::Int(by), real_now())
            .await
            .unwrap();
    }
    view(&setup, &old, "v1", real_now()).await;
    let error = setup
        .engine
        .merge(&new, &old, real_now())
        .await
        .unwrap_err();
    assert_eq!(
        error,
        TransferError::Engine(EngineError::Invalid(InvalidRequest::CounterOverflow))
    );
    let new_now = setup.engine.read(&new, None, real_now()).await.unwrap();
    assert_eq!(
        new_now.counters["a"],
        CounterValue::Int(1),
        "the add to `a` was undone"
    );
    assert_eq!(new_now.views, 0);
    let old_now = setup.engine.read(&old, None, real_now()).await.unwrap();
    assert_eq!(old_now.views, 1);
    assert_eq!(old_now.counters["z"], CounterValue::Int(i64::MAX));
}

#[tokio::test]
async fn a_merge_into_an_unregistered_item_is_refused() {
    let setup = Setup::start(Settings {
        items: ItemPolicy::Registered,
        ..generous()
    });
    let old = item(&unique("old"));
    let new = item(&unique("new"));
    setup.engine.register(&old, real_now()).await.unwrap();
    let error = setup
        .engine
        .merge(&new, &old, real_now())
        .await
        .unwrap_err();
    assert_eq!(error, TransferError::Engine(EngineError::UnknownItem));
    assert_eq!(
        setup.cli(&["EXISTS", &setup.engine.keys().stats(&old)]),
        "1"
    );
}

#[tokio::test]
async fn with_the_outbox_on_import_and_merge_append_their_events() {
    let setup = Setup::start(Settings {
        outbox: true,
        ..generous()
    });
    let old = item(&unique("old"));
    let new = item(&unique("new"));
    let now = real_now();
    let body = format!(
        "{{\"item\":\"{old}\",\"views\":12,\"likes_base\":3,\"counters\":{{\"n\":2,\"f\":0.5}}}}"
    );
    setup
        .engine
        .import(&parse_import(body.as_bytes()).unwrap(), now)
        .await
        .unwrap();
    setup.engine.merge(&new, &old, now).await.unwrap();

    let from_shard = setup.events(&old).await;
    let mine: Vec<&Event> = from_shard
        .iter()
        .filter(|e| e.item == old.as_str() || e.item == new.as_str())
        .collect();
    let Op::Import {
        views,
        likes_base,
        counters,
    } = &mine[0].op
    else {
        panic!("not an import: {:?}", mine[0]);
    };
    assert_eq!((*views, *likes_base, mine[0].t), (Some(12), Some(3), now));
    assert_eq!(counters["n"], CounterValue::Int(2));
    assert_eq!(counters["f"], CounterValue::Float(0.5));
    let merge = mine
        .iter()
        .find(|e| matches!(e.op, Op::Merge { .. }))
        .unwrap();
    assert_eq!(merge.item, new.as_str());
    assert_eq!(
        merge.op,
        Op::Merge {
            from: old.to_string()
        }
    );

    let to_shard = setup.events(&new).await;
    let marker = to_shard
        .iter()
        .find(|e| e.item == new.as_str() && matches!(e.op, Op::MergedIn { .. }))
        .unwrap();
    assert_eq!(
        marker.op,
        Op::MergedIn {
            from: old.to_string()
        }
    );
}

#[tokio::test]
async fn with_the_outbox_off_nothing_is_appended() {
    let setup = Setup::start(generous());
    let old = item(&unique("old"));
    let new = item(&unique("new"));
    let body = format!("{{\"item\":\"{old}\",\"views\":1}}");
    setup
        .engine
        .import(&parse_import(body.as_bytes()).unwrap(), real_now())
        .await
        .unwrap();
    setup.engine.merge(&new, &old, real_now()).await.unwrap();
    for shard in 0..outbox::SHARDS {
        assert_eq!(
            setup.cli(&["XLEN", &setup.engine.keys().outbox(shard)]),
            "0"
        );
    }
}

#[tokio::test]
async fn an_import_of_the_most_lines_allowed_is_one_script() {
    let setup = Setup::start(generous());
    setup.load_scripts().await;
    let prefix = unique("bulk");
    let body: String = (0..tally::transfer::MAX_IMPORT_LINES)
        .map(|i| {
            format!("{{\"item\":\"{prefix}/{i}\",\"views\":{i},\"counters\":{{\"n\":{i}}}}}\n")
        })
        .collect();
    let lines = parse_import(body.as_bytes()).unwrap();
    setup.trips.reset();
    let started = std::time::Instant::now();
    let imported = setup.engine.import(&lines, real_now()).await.unwrap();
    println!("import of {} lines: {:?}", lines.len(), started.elapsed());
    assert_eq!(imported, 1_000);
    assert_eq!(setup.trips.take(), ["EVALSHA"]);
    let last = item(&format!("{prefix}/999"));
    let snapshot = setup.engine.read(&last, None, real_now()).await.unwrap();
    assert_eq!(snapshot.views, 999);
    assert_eq!(snapshot.counters["n"], CounterValue::Int(999));
}

#[tokio::test]
async fn with_redis_gone_an_import_and_a_merge_fail_as_backend_errors() {
    let mut setup = Setup::start(generous());
    let old = item(&unique("old"));
    let new = item(&unique("new"));
    let lines = parse_import(format!("{{\"item\":\"{old}\",\"views\":1}}").as_bytes()).unwrap();
    setup.redis.stop();
    for error in [
        setup.engine.import(&lines, real_now()).await.unwrap_err(),
        setup
            .engine
            .merge(&new, &old, real_now())
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(error, TransferError::Engine(EngineError::Backend(_))),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn a_merge_of_ten_thousand_likers_on_each_side_is_one_script() {
    let setup = Setup::start(Settings {
        likes_store: LikesStore::Bitmap { max_id: 1_000_000 },
        ..generous()
    });
    setup.load_scripts().await;
    let old = item(&unique("old"));
    let new = item(&unique("new"));
    let keys = setup.engine.keys();
    // Old: 10,000 in its Set (anon ids) and bits 0..10,000; new: 10,000 in its
    // Set, half of them the old Set's, and bits 5,000..15,000.
    let mut old_set = vec!["SADD".to_owned(), keys.likers(&old)];
    old_set.extend((0..10_000).map(|i| format!("anon:{i}")));
    let mut new_set = vec!["SADD".to_owned(), keys.likers(&new)];
    new_set.extend((5_000..15_000).map(|i| format!("anon:{i}")));
    let mut commands = vec![old_set, new_set];
    for (page, bits) in [(&old, 0..10_000), (&new, 5_000..15_000)] {
        let mut setbits = vec!["BITFIELD".to_owned(), keys.liker_bits(page)];
        for bit in bits {
            setbits.extend(["SET".into(), "u1".into(), bit.to_string(), "1".into()]);
        }
        commands.push(setbits);
    }
    for (page, likes) in [(&old, 20_000), (&new, 20_000)] {
        commands.push(vec![
            "HSET".into(),
            keys.stats(page),
            "likes".into(),
            likes.to_string(),
        ]);
    }
    for answer in setup.engine.rest().pipeline(&commands).await.unwrap() {
        answer.unwrap();
    }
    let started = std::time::Instant::now();
    let outcome = setup.engine.merge(&new, &old, real_now()).await.unwrap();
    println!("merge of 20,000 + 20,000 likers: {:?}", started.elapsed());
    assert_eq!(
        outcome.likes,
        15_000 + 15_000,
        "anon:0..15000 and bits 0..15000"
    );
}

#[tokio::test]
async fn the_engine_refuses_more_lines_than_an_import_takes() {
    let setup = Setup::start(generous());
    let prefix = unique("over");
    let body: String = (0..tally::transfer::MAX_IMPORT_LINES)
        .map(|i| format!("{{\"item\":\"{prefix}/{i}\",\"views\":1}}\n"))
        .collect();
    let mut lines = parse_import(body.as_bytes()).unwrap();
    let mut extra = lines[0].clone();
    extra.item = item(&format!("{prefix}/extra"));
    extra.line = 1_001;
    lines.push(extra);
    setup.trips.reset();
    let error = setup.engine.import(&lines, real_now()).await.unwrap_err();
    assert!(
        matches!(error, TransferError::Line { line: 1_001, .. }),
        "{error:?}"
    );
    assert_eq!(setup.trips.count(), 0);
}
