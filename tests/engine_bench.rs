//! `make bench-engine`: Redis memory per like (Set vs Bitmap) and REST round
//! trips per engine operation. Ignored by `cargo test`; run by
//! `scripts/bench-engine.sh`. Talks only to its own loopback servers.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_common;
mod support;

use engine_common::{Setup, real_now, unique};
use tally::engine::{Amount, Bucket, Engine, Idempotency, LikesStore, Settings, Window};
use tally::item::{CounterName, ItemId};

const LIKES: u64 = 1_000_000;

/// Streams `LIKES` like scripts, exactly as the engine builds them, into Redis
/// with `redis-cli --pipe` (a million REST round trips would measure the
/// gateway, not the data; the SHA1 is the one Redis holds, see
/// [`Setup::load_direct`]), then returns the bytes `MEMORY USAGE` reports for
/// the key holding the likers.
fn load_likes(
    setup: &Setup,
    engine: &Engine,
    page: &ItemId,
    who: impl Fn(u64) -> String,
    store_key: &str,
) -> u64 {
    let now = real_now();
    setup.pipe((0..LIKES).map(|i| {
        engine
            .like_call(page, &who(i), "bench", now, true)
            .evalsha()
    }));
    setup
        .cli(&["MEMORY", "USAGE", store_key, "SAMPLES", "0"])
        .parse()
        .unwrap()
}

fn settings(likes_store: LikesStore) -> Settings {
    Settings {
        rate_limit_per_minute: 10 * LIKES,
        likes_store,
        ..Settings::default()
    }
}

async fn memory_case(name: &str, likes_store: LikesStore, who: impl Fn(u64) -> String) {
    let setup = Setup::start(settings(likes_store));
    let engine = &setup.engine;
    setup.load_scripts().await;
    let page = ItemId::parse(&unique("bench")).unwrap();
    let store_key = match likes_store {
        LikesStore::Set => engine.keys().likers(&page),
        LikesStore::Bitmap { .. } => engine.keys().liker_bits(&page),
    };
    let started = std::time::Instant::now();
    let bytes = load_likes(&setup, engine, &page, who, &store_key);
    let likes = engine.read(&page, None, real_now()).await.unwrap().likes;
    assert_eq!(likes, LIKES, "every like counted");
    let stats: u64 = setup
        .cli(&[
            "MEMORY",
            "USAGE",
            &engine.keys().stats(&page),
            "SAMPLES",
            "0",
        ])
        .parse()
        .unwrap();
    println!(
        "{name:<44} {likes:>9} likes  {bytes:>11} B  {:>7.3} B/like  (+{stats} B count hash; loaded in {:.1} s)",
        bytes as f64 / LIKES as f64,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench-engine`"]
async fn memory_per_like_set_versus_bitmap() {
    println!(
        "Redis memory per like (MEMORY USAGE ... SAMPLES 0 of the likers key), {LIKES} likes:"
    );
    memory_case("set, integer user ids 0..1M", LikesStore::Set, |i| {
        i.to_string()
    })
    .await;
    memory_case(
        "set, anonymous ids (anon: + 22 chars)",
        LikesStore::Set,
        |i| format!("anon:{:022x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    )
    .await;
    memory_case(
        "bitmap, user ids 0..1M (dense)",
        LikesStore::Bitmap { max_id: 16_000_000 },
        |i| i.to_string(),
    )
    .await;
    memory_case(
        "bitmap, every 16th id below 16M (sparse)",
        LikesStore::Bitmap { max_id: 16_000_000 },
        |i| (i * 16).to_string(),
    )
    .await;
}

#[tokio::test]
#[ignore = "benchmark: run with `make bench-engine`"]
async fn round_trips_per_operation() {
    let setup = Setup::start(settings(LikesStore::Set));
    let engine = &setup.engine;
    let page = ItemId::parse(&unique("bench")).unwrap();
    let name = CounterName::parse("n").unwrap();
    let now = real_now();
    let key = Idempotency {
        key: "k".into(),
        fingerprint: "f".into(),
    };
    let batch: Vec<ItemId> = (0..100)
        .map(|i| ItemId::parse(&format!("b{i}")).unwrap())
        .collect();

    // A cold Redis: the first call of a script falls back to EVAL once.
    setup.trips.reset();
    engine.like(&page, "u", "u", now).await.unwrap();
    println!("REST round trips per operation (a cold script first):");
    println!(
        "  {:<34} {} round trips, {} NOSCRIPT fallback",
        "like, script not yet cached",
        setup.trips.take().len(),
        setup.trips.noscripts()
    );
    setup.load_scripts().await;
    setup.trips.reset();

    macro_rules! measure {
        ($label:expr, $call:expr) => {{
            $call.await.unwrap();
            let sent = setup.trips.take();
            println!(
                "  {:<34} {} round trip(s): {}",
                $label,
                sent.len(),
                sent.join(", ")
            );
        }};
    }
    measure!("like", engine.like(&page, "u2", "u2", now));
    measure!("unlike", engine.unlike(&page, "u2", "u2", now));
    measure!(
        "view (with Idempotency-Key)",
        engine.view(&page, "v", "v", now, Some(&key), true)
    );
    measure!(
        "view replay",
        engine.view(&page, "v", "v", now, Some(&key), true)
    );
    measure!(
        "view, bot",
        engine.view(&page, "bot", "bot", now, None, false)
    );
    measure!(
        "add_to_counter",
        engine.add_to_counter(&page, &name, Amount::Float(0.5), now)
    );
    measure!("read", engine.read(&page, Some("u"), now));
    measure!(
        "read_many (100 items)",
        engine.read_many(&batch, Some("u"), now)
    );
    measure!(
        "series (1440 minutes)",
        engine.series(&page, Bucket::Minute, now - 1_439 * 60, now)
    );
    measure!("admit (POST /v1/visitors)", engine.admit("ip:1", now));
    measure!("trending", engine.trending(Window::Day, 10, now));
    assert_eq!(setup.trips.noscripts(), 0);
}
