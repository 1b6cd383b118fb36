//! Views: dedupe, buckets and their TTLs, idempotency, bots, series, trending.
//! Time is what the test passes in; nothing sleeps.

#![cfg(not(target_arch = "wasm32"))]
// Helpers outside #[test] fns unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod support;

use engine_common::{Setup, item, real_now, unique};
use tally::engine::{
    Bucket, EngineError, Idempotency, Point, Settings, Trend, UniquePoint, UniqueViewers,
    ViewOutcome, Window,
};
use tally::item::ItemId;

fn recorded(views: u64, counted: bool) -> Option<ViewOutcome> {
    Some(ViewOutcome::Recorded { views, counted })
}

async fn view(setup: &Setup, page: &ItemId, viewer: &str, now: i64) -> Option<ViewOutcome> {
    setup
        .engine
        .view(page, viewer, viewer, now, None, true)
        .await
        .unwrap()
        .outcome
}

#[tokio::test]
async fn a_viewer_counts_once_per_dedupe_window_measured_on_the_callers_clock() {
    let setup = Setup::start(Settings {
        view_dedupe_seconds: 1_800,
        ..Settings::default()
    });
    let page = item(&unique("page"));
    // The first view is one second before a minute and an hour boundary.
    let t0 = 7_200 * 1_000 - 1;
    assert_eq!(view(&setup, &page, "v1", t0).await, recorded(1, true));
    assert_eq!(view(&setup, &page, "v1", t0 + 2).await, recorded(1, false));
    assert_eq!(
        view(&setup, &page, "v1", t0 + 1_799).await,
        recorded(1, false)
    );
    assert_eq!(
        view(&setup, &page, "v2", t0 + 1_799).await,
        recorded(2, true)
    );
    assert_eq!(
        view(&setup, &page, "v1", t0 + 1_800).await,
        recorded(3, true)
    );
    // The window restarts at the last counted view.
    assert_eq!(
        view(&setup, &page, "v1", t0 + 3_599).await,
        recorded(3, false)
    );
    assert_eq!(
        view(&setup, &page, "v1", t0 + 3_600).await,
        recorded(4, true)
    );
    // Dedupe is per item.
    let other = item(&unique("other"));
    assert_eq!(
        view(&setup, &other, "v1", t0 + 3_600).await,
        recorded(1, true)
    );
}

#[tokio::test]
async fn buckets_expire_from_their_start_as_passed_in_argv_and_later_hits_do_not_push_that_back() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let keys = setup.engine.keys().clone();
    let ttl = |key: String| -> i64 { setup.cli(&["TTL", &key]).parse().unwrap() };

    let now = real_now();
    view(&setup, &page, "v1", now).await;
    for bucket in Bucket::ALL {
        let left = ttl(keys.views_bucket(&page, bucket, bucket.start(now)));
        let most = bucket.ttl_seconds();
        assert!(
            left <= most && left > most - bucket.seconds() - 5,
            "{bucket:?}: {left}"
        );
    }

    // A minute bucket that started 48 h minus 2 minutes ago has about 2 minutes left...
    let old = Bucket::Minute.start(now - 48 * 3_600 + 120);
    view(&setup, &page, "v2", old).await;
    let minute = keys.views_bucket(&page, Bucket::Minute, old);
    let first = ttl(minute.clone());
    assert!((1..=125).contains(&first), "{first}");
    // ...and another hit in it leaves that alone.
    view(&setup, &page, "v3", old + 30).await;
    assert_eq!(setup.cli(&["GET", &minute]), "2");
    assert!(ttl(minute) <= first);

    // A bucket already past its lifetime is not kept, though the view counts.
    let ancient = now - 49 * 3_600;
    assert_eq!(view(&setup, &page, "v4", ancient).await, recorded(4, true));
    let gone = keys.views_bucket(&page, Bucket::Minute, Bucket::Minute.start(ancient));
    assert_eq!(setup.cli(&["EXISTS", &gone]), "0");
}

#[tokio::test]
async fn an_idempotent_replay_returns_the_first_answer_counts_nothing_and_uses_no_rate_slot() {
    let setup = Setup::start(Settings {
        rate_limit_per_minute: 3,
        ..Settings::default()
    });
    let page = item(&unique("page"));
    let key = Idempotency {
        key: "retry-1".into(),
        fingerprint: "fp-a".into(),
    };
    let now = 60_000;
    let first = setup
        .engine
        .view(&page, "v1", "ip:1", now, Some(&key), true)
        .await
        .unwrap();
    assert_eq!(first.outcome, recorded(1, true));
    assert_eq!(first.rate.remaining, 2);

    // Someone else's view moves the count; the replay still answers the first result.
    view(&setup, &page, "v2", now).await;
    for _ in 0..5 {
        let replay = setup
            .engine
            .view(&page, "v1", "ip:1", now + 5, Some(&key), true)
            .await
            .unwrap();
        assert_eq!(
            replay.outcome,
            Some(ViewOutcome::Replayed {
                views: 1,
                counted: true
            })
        );
        assert_eq!(replay.rate.remaining, 2);
    }
    assert_eq!(setup.engine.read(&page, None, now).await.unwrap().views, 2);

    let reused = Idempotency {
        fingerprint: "fp-b".into(),
        ..key.clone()
    };
    let conflict = setup
        .engine
        .view(&page, "v3", "ip:1", now, Some(&reused), true)
        .await
        .unwrap();
    assert_eq!(conflict.outcome, Some(ViewOutcome::Conflict));
    assert_eq!(setup.engine.read(&page, None, now).await.unwrap().views, 2);

    let record = setup.engine.keys().idempotency("retry-1");
    let ttl: i64 = setup.cli(&["TTL", &record]).parse().unwrap();
    assert!(ttl > 86_000 && ttl <= 86_400, "{ttl}");
}

#[tokio::test]
async fn a_view_over_the_limit_writes_nothing() {
    let setup = Setup::start(Settings {
        rate_limit_per_minute: 1,
        ..Settings::default()
    });
    let page = item(&unique("page"));
    let key = Idempotency {
        key: "k".into(),
        fingerprint: "f".into(),
    };
    view(&setup, &page, "v1", 600).await;
    let limited = setup
        .engine
        .view(&page, "v2", "v1", 601, Some(&key), true)
        .await
        .unwrap();
    assert_eq!(limited.outcome, None);
    assert_eq!(limited.rate.reset_seconds, 59);
    let keys = setup.engine.keys();
    assert_eq!(setup.cli(&["EXISTS", &keys.idempotency("k")]), "0");
    assert_eq!(setup.cli(&["EXISTS", &keys.seen(&page, "v2")]), "0");
    assert_eq!(setup.engine.read(&page, None, 601).await.unwrap().views, 1);
}

#[tokio::test]
async fn a_bot_is_answered_the_count_and_counted_nowhere() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let now = real_now();
    view(&setup, &page, "person", now).await;
    let bot = setup
        .engine
        .view(&page, "crawler", "crawler", now, None, false)
        .await
        .unwrap();
    assert_eq!(bot.outcome, recorded(1, false));
    let snapshot = setup.engine.read(&page, None, now).await.unwrap();
    assert_eq!((snapshot.views, snapshot.unique_viewers.today), (1, 1));
    let points = setup
        .engine
        .series(&page, Bucket::Minute, now, now)
        .await
        .unwrap();
    assert_eq!(
        points,
        [Point {
            t: Bucket::Minute.start(now),
            views: 1
        }]
    );
}

#[tokio::test]
async fn unique_viewers_are_per_utc_day() {
    let setup = Setup::start(Settings {
        view_dedupe_seconds: 60,
        ..Settings::default()
    });
    let page = item(&unique("page"));
    // Today in real time: a day's viewers expire 31 days after it starts.
    let day = Bucket::Day.start(real_now());
    for (viewer, t) in [
        ("a", day + 10),
        ("b", day + 20),
        ("a", day + 5_000),
        ("c", day + 86_399),
    ] {
        view(&setup, &page, viewer, t).await;
    }
    view(&setup, &page, "a", day + 86_400).await;
    let today = setup.engine.read(&page, None, day + 100).await.unwrap();
    // Views are all-time; viewers are today's.
    assert_eq!((today.views, today.unique_viewers.today), (5, 3));
    let tomorrow = setup.engine.read(&page, None, day + 86_400).await.unwrap();
    assert_eq!((tomorrow.views, tomorrow.unique_viewers.today), (5, 1));
    // Yesterday still counts in the windows of several days.
    assert_eq!(tomorrow.unique_viewers.last_7_days, 3);
}

#[tokio::test]
async fn unique_viewers_over_7_30_days_and_all_time_are_one_read() {
    let setup = Setup::start(Settings {
        view_dedupe_seconds: 60,
        ..Settings::default()
    });
    let page = item(&unique("windows"));
    let now = real_now();
    let d = 86_400;
    // "old" viewed 40 days ago: that day's HyperLogLog is gone (it expired
    // 31 days after the day began), but the all-time one keeps the viewer.
    for (viewer, t) in [
        ("old", now - 40 * d),
        ("month", now - 20 * d),
        ("week", now - 3 * d),
        ("week", now - 2 * d),
        ("a", now - 3 * d),
        ("a", now),
        ("b", now),
    ] {
        view(&setup, &page, viewer, t).await;
    }
    let day = Bucket::Day.start(now);
    let kept = setup.cli(&["TTL", &setup.engine.keys().viewers(&page, day)]);
    let kept: i64 = kept.parse().unwrap();
    assert!(kept > 30 * d && kept <= 31 * d, "{kept}");
    setup.load_scripts().await;
    setup.trips.reset();
    let snapshot = setup.engine.read(&page, None, now).await.unwrap();
    assert_eq!(setup.trips.count(), 1);
    assert_eq!(
        snapshot.unique_viewers,
        UniqueViewers {
            today: 2,
            last_7_days: 3,
            last_30_days: 4,
            all_time: 5,
        }
    );
    let batch = setup
        .engine
        .read_many(std::slice::from_ref(&page), None, now)
        .await
        .unwrap();
    assert_eq!(batch[0].unique_viewers, snapshot.unique_viewers);
}

#[tokio::test]
async fn a_unique_series_counts_each_kept_day_in_one_pipeline() {
    let setup = Setup::start(Settings {
        view_dedupe_seconds: 60,
        ..Settings::default()
    });
    let page = item(&unique("daily"));
    let now = real_now();
    let d = 86_400;
    let today = Bucket::Day.start(now);
    for (viewer, t) in [("a", now - 2 * d), ("b", now - 2 * d), ("a", now)] {
        view(&setup, &page, viewer, t).await;
    }
    setup.trips.reset();
    let points = setup
        .engine
        .unique_series(&page, now - 3 * d, now + d, now)
        .await
        .unwrap();
    assert_eq!(setup.trips.take(), ["PIPELINE"]);
    let expected: Vec<UniquePoint> = [0, 2, 0, 1, 0]
        .iter()
        .enumerate()
        .map(|(i, &n)| UniquePoint {
            t: today + (i as i64 - 3) * d,
            unique_viewers: n,
        })
        .collect();
    assert_eq!(points, expected);
    // Days older than 31 days are no longer kept: zeros, and no command.
    let old = setup
        .engine
        .unique_series(&page, now - 60 * d, now - 40 * d, now)
        .await
        .unwrap();
    assert_eq!(setup.trips.count(), 0);
    assert!(old.iter().all(|p| p.unique_viewers == 0));
    assert_eq!(old.len(), 21);
}

#[tokio::test]
async fn a_series_has_every_bucket_in_range_with_zeros_in_one_mget() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let h = Bucket::Hour.start(real_now());
    for (viewer, t) in [("a", h + 5), ("b", h + 30), ("c", h + 185)] {
        view(&setup, &page, viewer, t).await;
    }
    setup.trips.take();
    let points = setup
        .engine
        .series(&page, Bucket::Minute, h + 59, h + 240)
        .await
        .unwrap();
    assert_eq!(setup.trips.take(), ["MGET"]);
    let views: Vec<(i64, u64)> = points.iter().map(|p| (p.t - h, p.views)).collect();
    assert_eq!(views, [(0, 2), (60, 0), (120, 0), (180, 1), (240, 0)]);
    let hours = setup
        .engine
        .series(&page, Bucket::Hour, h, h)
        .await
        .unwrap();
    assert_eq!(hours, [Point { t: h, views: 3 }]);
}

#[tokio::test]
async fn a_series_longer_than_1440_points_or_backwards_is_refused_before_any_request() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let engine = &setup.engine;
    assert_eq!(
        engine
            .series(&page, Bucket::Minute, 0, 1_439 * 60)
            .await
            .unwrap()
            .len(),
        1_440
    );
    setup.trips.take();
    for (from, to) in [(0, 1_440 * 60), (10, 9)] {
        let error = engine
            .series(&page, Bucket::Minute, from, to)
            .await
            .unwrap_err();
        assert!(matches!(error, EngineError::Invalid(_)), "{error:?}");
    }
    assert_eq!(setup.trips.count(), 0);
}

#[tokio::test]
async fn trending_lists_the_most_viewed_items_of_the_current_window_first() {
    let setup = Setup::start(Settings::default());
    let (a, b, c) = (item("a"), item("b"), item("c"));
    // Real time: trending sets expire two windows after they start.
    let now = real_now();
    // Another hour of the same UTC day.
    let other_hour = if now % 86_400 >= 3_600 {
        now - 3_600
    } else {
        now + 3_600
    };
    // Each counted view (a viewer of its own) counts in trending, in the view script.
    let view = |page: &ItemId, at: i64| {
        let (engine, page) = (setup.engine.clone(), page.clone());
        async move {
            let viewer = unique("viewer");
            let outcome = engine
                .view(&page, &viewer, &viewer, at, None, true)
                .await
                .unwrap()
                .outcome;
            assert!(matches!(
                outcome,
                Some(ViewOutcome::Recorded { counted: true, .. })
            ));
        }
    };
    for page in [&a, &c, &a, &b, &c, &a, &a] {
        view(page, now).await;
    }
    // Another hour counts for the day, not for this hour.
    view(&b, other_hour).await;
    view(&b, other_hour).await;
    // A deduplicated view and a bot's view count nowhere.
    setup
        .engine
        .view(&c, "same", "same", now, None, true)
        .await
        .unwrap();
    setup
        .engine
        .view(&c, "same", "same", now, None, true)
        .await
        .unwrap();
    setup
        .engine
        .view(&c, "bot", "bot", now, None, false)
        .await
        .unwrap();
    let trend = |item: &str, views| Trend {
        item: item.into(),
        views,
    };
    assert_eq!(
        setup.engine.trending(Window::Hour, 2, now).await.unwrap(),
        [trend("a", 4), trend("c", 3)]
    );
    assert_eq!(
        setup.engine.trending(Window::Day, 10, now).await.unwrap(),
        [trend("a", 4), trend("c", 3), trend("b", 3)]
    );
    assert!(setup.engine.trending(Window::Day, 0, now).await.is_err());
}

#[tokio::test]
async fn an_idempotency_key_reused_on_another_item_is_a_conflict() {
    let setup = Setup::start(Settings::default());
    let (first, second) = (item(&unique("first")), item(&unique("second")));
    let on = |page: &ItemId| Idempotency {
        key: unique("key"),
        fingerprint: format!("POST /v1/items/{page}/views v1"),
    };
    let key = on(&first);
    let view = |page: ItemId, key: Idempotency| {
        let engine = setup.engine.clone();
        async move {
            engine
                .view(&page, "v1", "v1", 1_000, Some(&key), true)
                .await
                .unwrap()
                .outcome
        }
    };
    assert_eq!(view(first.clone(), key.clone()).await, recorded(1, true));
    let reused = Idempotency {
        fingerprint: on(&second).fingerprint,
        ..key
    };
    assert_eq!(
        view(second.clone(), reused).await,
        Some(ViewOutcome::Conflict)
    );
    assert_eq!(
        setup.engine.read(&second, None, 1_000).await.unwrap().views,
        0
    );
}
