//! Likes: exact under concurrency, in Set and Bitmap mode, under the rate limit.

#![cfg(not(target_arch = "wasm32"))]
// Helpers outside #[test] fns unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use engine_common::{Setup, item, unique};
use tally::engine::{LikeOutcome, LikesStore, Limiter, Settings};

const TASKS: usize = 64;
const OPS_PER_TASK: usize = 40;

fn generous(likes_store: LikesStore) -> Settings {
    Settings {
        rate_limit_per_minute: 1_000_000,
        likes_store,
        ..Settings::default()
    }
}

/// 64 tasks like and unlike one item for random identities of `pool`; the
/// oracle adds up, per identity, what each answer says changed.
async fn hammer(
    setup: &Setup,
    page: &tally::item::ItemId,
    pool: Arc<Vec<String>>,
) -> HashMap<String, i64> {
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let engine = setup.engine.clone();
        let page = page.clone();
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (task as u64 + 1);
            let mut net = HashMap::<String, i64>::new();
            for _ in 0..OPS_PER_TASK {
                // xorshift64: deterministic, no dependency.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let who = &pool[(state % pool.len() as u64) as usize];
                let like = state >> 40 & 1 == 1;
                let answer = if like {
                    engine.like(&page, who, who, 1_000).await
                } else {
                    engine.unlike(&page, who, who, 1_000).await
                };
                let outcome = answer.unwrap().outcome.unwrap();
                assert_eq!(outcome.liked, like);
                if outcome.changed {
                    *net.entry(who.clone()).or_default() += if like { 1 } else { -1 };
                }
            }
            net
        }));
    }
    let mut oracle = HashMap::<String, i64>::new();
    for task in tasks {
        for (who, n) in task.await.unwrap() {
            *oracle.entry(who).or_default() += n;
        }
    }
    oracle
}

/// Every identity's net change is 0 or 1, and the engine agrees with it one by one.
async fn check_each(
    setup: &Setup,
    page: &tally::item::ItemId,
    pool: &[String],
    oracle: &HashMap<String, i64>,
) -> u64 {
    let mut expected = 0;
    for who in pool {
        let net = oracle.get(who).copied().unwrap_or(0);
        assert!(net == 0 || net == 1, "{who} moved {net}");
        expected += net as u64;
        let snapshot = setup.engine.read(page, Some(who), 1_000).await.unwrap();
        assert_eq!(snapshot.liked, Some(net == 1), "{who}");
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_likes_and_unlikes_from_overlapping_identities_count_exactly() {
    let setup = Setup::start(generous(LikesStore::Set));
    let page = item(&unique("hot"));
    let pool: Arc<Vec<String>> = Arc::new((0..500).map(|i| format!("user-{i}")).collect());

    let oracle = hammer(&setup, &page, pool.clone()).await;
    let expected = check_each(&setup, &page, &pool, &oracle).await;

    let likes = setup.engine.read(&page, None, 1_000).await.unwrap().likes;
    let scard: u64 = setup
        .cli(&["SCARD", &setup.engine.keys().likers(&page)])
        .parse()
        .unwrap();
    assert_eq!((likes, scard), (expected, expected));
    let members: BTreeSet<String> = setup
        .cli(&["SMEMBERS", &setup.engine.keys().likers(&page)])
        .lines()
        .map(str::to_owned)
        .collect();
    let liked: BTreeSet<String> = oracle
        .iter()
        .filter(|(_, n)| **n == 1)
        .map(|(w, _)| w.clone())
        .collect();
    assert_eq!(members, liked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_likes_in_bitmap_mode_count_exactly_across_bitmap_and_set() {
    let setup = Setup::start(generous(LikesStore::Bitmap { max_id: 400 }));
    let page = item(&unique("hot"));
    // 400 integer ids use the bitmap; "0400"-style and anon ids use the set.
    let pool: Arc<Vec<String>> = Arc::new(
        (0..400)
            .map(|i| i.to_string())
            .chain((400..450).map(|i| i.to_string()))
            .chain((0..50).map(|i| format!("anon:{i}")))
            .collect(),
    );

    let oracle = hammer(&setup, &page, pool.clone()).await;
    let expected = check_each(&setup, &page, &pool, &oracle).await;

    let keys = setup.engine.keys();
    let bits: u64 = setup
        .cli(&["BITCOUNT", &keys.liker_bits(&page)])
        .parse()
        .unwrap();
    let scard: u64 = setup.cli(&["SCARD", &keys.likers(&page)]).parse().unwrap();
    let likes = setup.engine.read(&page, None, 1_000).await.unwrap().likes;
    assert!(
        bits > 0 && scard > 0,
        "both stores are used: {bits} bits, {scard} members"
    );
    assert_eq!((likes, bits + scard), (expected, expected));
    for member in setup.cli(&["SMEMBERS", &keys.likers(&page)]).lines() {
        let id: Option<u64> = member.parse().ok();
        assert!(
            id.is_none_or(|id| id >= 400),
            "{member} belongs in the bitmap"
        );
    }
}

#[tokio::test]
async fn a_repeated_like_or_unlike_changes_nothing() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let like = |who: &'static str| {
        let (engine, page) = (setup.engine.clone(), page.clone());
        async move {
            engine
                .like(&page, who, who, 1_000)
                .await
                .unwrap()
                .outcome
                .unwrap()
        }
    };
    let unlike = |who: &'static str| {
        let (engine, page) = (setup.engine.clone(), page.clone());
        async move {
            engine
                .unlike(&page, who, who, 1_000)
                .await
                .unwrap()
                .outcome
                .unwrap()
        }
    };
    let outcome = |likes, liked, changed| LikeOutcome {
        likes,
        liked,
        changed,
    };

    assert_eq!(like("ann").await, outcome(1, true, true));
    assert_eq!(like("ann").await, outcome(1, true, false));
    assert_eq!(like("bob").await, outcome(2, true, true));
    assert_eq!(unlike("ann").await, outcome(1, false, true));
    assert_eq!(unlike("ann").await, outcome(1, false, false));
    assert_eq!(unlike("cid").await, outcome(1, false, false));
}

#[tokio::test]
async fn a_like_over_the_limit_writes_nothing() {
    let setup = Setup::start(Settings {
        rate_limit_per_minute: 2,
        ..Settings::default()
    });
    let page = item(&unique("page"));
    let now = 1_000_040;
    let first = setup.engine.like(&page, "a", "ip:1", now).await.unwrap();
    assert_eq!((first.rate.remaining, first.rate.reset_seconds), (1, 40));
    setup.engine.like(&page, "b", "ip:1", now).await.unwrap();
    let third = setup
        .engine
        .like(&page, "c", "ip:1", now + 1)
        .await
        .unwrap();
    assert_eq!(third.outcome, None);
    assert_eq!(
        (
            third.rate.limit,
            third.rate.remaining,
            third.rate.reset_seconds
        ),
        (2, 0, 39)
    );
    assert_eq!(
        setup.cli(&["SCARD", &setup.engine.keys().likers(&page)]),
        "2"
    );

    // The next window admits again.
    let later = setup
        .engine
        .like(&page, "c", "ip:1", now + 40)
        .await
        .unwrap();
    assert_eq!(later.outcome.unwrap().likes, 3);
}

#[tokio::test]
async fn switching_the_likes_store_never_counts_a_like_twice_and_unlike_still_removes_it() {
    let setup = Setup::start(generous(LikesStore::Set));
    let bitmap = setup.engine_with(generous(LikesStore::Bitmap { max_id: 1_000 }));
    let page = item(&unique("switch"));
    let like = |engine: &tally::engine::Engine, on: bool| {
        let (engine, page) = (engine.clone(), page.clone());
        async move {
            let answer = if on {
                engine.like(&page, "42", "42", 1_000).await
            } else {
                engine.unlike(&page, "42", "42", 1_000).await
            };
            answer.unwrap().outcome.unwrap()
        }
    };
    let outcome = |likes, liked, changed| LikeOutcome {
        likes,
        liked,
        changed,
    };
    // Set mode, then bitmap mode: the like in the Set still counts.
    assert_eq!(like(&setup.engine, true).await, outcome(1, true, true));
    assert_eq!(like(&bitmap, true).await, outcome(1, true, false));
    assert_eq!(
        bitmap.read(&page, Some("42"), 1_000).await.unwrap().liked,
        Some(true)
    );
    assert_eq!(like(&bitmap, false).await, outcome(0, false, true));
    assert_eq!(
        setup.cli(&["EXISTS", &setup.engine.keys().likers(&page)]),
        "0"
    );

    // Bitmap mode, then set mode: the bit still counts, and unlike clears it.
    assert_eq!(like(&bitmap, true).await, outcome(1, true, true));
    assert_eq!(like(&setup.engine, true).await, outcome(1, true, false));
    assert_eq!(
        setup
            .engine
            .read(&page, Some("42"), 1_000)
            .await
            .unwrap()
            .liked,
        Some(true)
    );
    assert_eq!(like(&setup.engine, false).await, outcome(0, false, true));
    assert_eq!(
        setup.cli(&["GETBIT", &setup.engine.keys().liker_bits(&page), "42"]),
        "0"
    );
}

#[tokio::test]
async fn a_bitmap_unlike_of_a_bit_never_set_writes_nothing() {
    let setup = Setup::start(generous(LikesStore::Bitmap { max_id: 10_000_000 }));
    let page = item(&unique("never-liked"));
    let answer = setup
        .engine
        .unlike(&page, "9999999", "9999999", 1_000)
        .await
        .unwrap()
        .outcome
        .unwrap();
    assert_eq!((answer.likes, answer.changed), (0, false));
    let bits = setup.engine.keys().liker_bits(&page);
    assert_eq!(setup.cli(&["EXISTS", &bits]), "0");
    assert_eq!(
        setup.cli(&["EXISTS", &setup.engine.keys().stats(&page)]),
        "0"
    );
}

#[tokio::test]
async fn visitor_writes_also_count_against_their_network_and_site_identities_do_not() {
    let setup = Setup::start(Settings {
        rate_limit_per_minute: 5,
        network_rate_limit_per_minute: 3,
        ..Settings::default()
    });
    let page = item(&unique("farm"));
    let network = unique("net:");
    let now = 1_999_990;
    let mut likes = Vec::new();
    for n in 0..5 {
        let who = format!("anon:{n}");
        let answer = setup
            .engine
            .like(&page, &who, Limiter::visitor(&who, &network), now)
            .await
            .unwrap();
        likes.push(answer.outcome.map(|o| o.likes));
        if answer.outcome.is_none() {
            // Refused by the network: nothing left until its window resets.
            assert_eq!((answer.rate.remaining, answer.rate.reset_seconds), (0, 50));
        }
    }
    assert_eq!(likes, [Some(1), Some(2), Some(3), None, None]);
    // The refused visitors' own limits were not charged either.
    assert_eq!(
        setup.cli(&["EXISTS", &setup.engine.keys().rate("anon:3", now - 10)]),
        "0"
    );
    // A site-signed identity on the same network has no network limit.
    let site = setup
        .engine
        .like(&page, "user-7", "user-7", now)
        .await
        .unwrap();
    assert_eq!(site.outcome.map(|o| o.likes), Some(4));
}
