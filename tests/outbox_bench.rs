//! `make bench-outbox`: what the outbox costs a like. Throughput of the
//! engine's like through the real gateway and `redis-server` with the outbox
//! off and on, in one run, and Redis memory per stored event. Ignored by
//! `cargo test`; run by `scripts/bench-outbox.sh` (release build). Talks only
//! to its own loopback servers.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_common;
mod support;

use std::time::Instant;

use engine_common::{Setup, real_now, unique};
use tally::engine::{Engine, Settings};
use tally::item::ItemId;
use tally::outbox::{SHARDS, StreamId};

/// Likes per measured phase.
const LIKES_PER_PHASE: usize = 12_000;
/// Concurrent callers, each with its own identities.
const TASKS: usize = 32;
/// Items the likes are spread over (so events go to every shard).
const ITEMS: usize = 100;
/// Events per memory case.
const EVENTS: u64 = 200_000;

fn settings(outbox: bool) -> Settings {
    Settings {
        rate_limit_per_minute: 1_000_000_000,
        outbox,
        ..Settings::default()
    }
}

/// Likes `LIKES_PER_PHASE` new (identity, item) pairs from `TASKS`
/// concurrent tasks; returns likes per second. Every like writes.
async fn like_phase(engine: &Engine, run: &str) -> f64 {
    let items: Vec<ItemId> = (0..ITEMS)
        .map(|i| ItemId::parse(&format!("{run}-post-{i}")).unwrap())
        .collect();
    let items = std::sync::Arc::new(items);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let engine = engine.clone();
        let items = items.clone();
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let now = real_now();
            for n in 0..LIKES_PER_PHASE / TASKS {
                let who = format!("{run}-t{task}-u{n}");
                let page = &items[(task + n) % ITEMS];
                let answer = engine.like(page, &who, "bench", now).await.unwrap();
                assert!(answer.outcome.unwrap().changed, "every like writes");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (LIKES_PER_PHASE / TASKS * TASKS) as f64 / started.elapsed().as_secs_f64()
}

/// `calls` and `usec_per_call` of `EVALSHA` from `INFO commandstats`.
fn evalsha_stats(setup: &Setup) -> (u64, f64) {
    let info = setup.cli(&["INFO", "commandstats"]);
    let line = info
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .expect("evalsha stats");
    let field = |name: &str| -> &str {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .expect(name)
    };
    (
        field("calls").parse().unwrap(),
        field("usec_per_call").parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench-outbox`"]
async fn like_throughput_with_the_outbox_off_and_on() {
    let setup = Setup::start(settings(false));
    setup.load_scripts().await;
    let off = setup.engine_with(settings(false));
    let on = setup.engine_with(settings(true));
    // One unmeasured pass warms the connections and Redis.
    like_phase(&off, &unique("warm")).await;
    println!(
        "Like throughput through the gateway, {TASKS} concurrent callers, {LIKES_PER_PHASE} new likes per phase"
    );
    println!(
        "  (off on on off, twice; Redis CPU is EVALSHA usec_per_call from INFO commandstats):"
    );
    let mut totals = [(0.0, 0.0, 0u32); 2];
    let phases = [false, true, true, false, false, true, true, false];
    for (phase, outbox) in phases.into_iter().enumerate() {
        let engine = if outbox { &on } else { &off };
        setup.cli(&["CONFIG", "RESETSTAT"]);
        let rate = like_phase(engine, &unique(&format!("p{phase}"))).await;
        let (calls, usec) = evalsha_stats(&setup);
        assert_eq!(calls as usize, LIKES_PER_PHASE / TASKS * TASKS);
        let slot = &mut totals[usize::from(outbox)];
        slot.0 += rate;
        slot.1 += usec;
        slot.2 += 1;
        println!(
            "  phase {phase}: outbox {:<3}  {rate:>8.0} likes/s   Redis {usec:>6.2} us/like",
            if outbox { "on" } else { "off" }
        );
    }
    let lag = on.outbox_lag().await.unwrap();
    assert_eq!(lag as usize, 4 * (LIKES_PER_PHASE / TASKS * TASKS));
    let mean = |(sum, usec, n): (f64, f64, u32)| (sum / f64::from(n), usec / f64::from(n));
    let (off_rate, off_usec) = mean(totals[0]);
    let (on_rate, on_usec) = mean(totals[1]);
    println!("  outbox off: {off_rate:>8.0} likes/s, Redis {off_usec:.2} us/like");
    println!("  outbox on:  {on_rate:>8.0} likes/s, Redis {on_usec:.2} us/like");
    println!(
        "  on / off:   {:.3}x likes/s, {:.3}x Redis time per like ({lag} events appended)",
        on_rate / off_rate,
        on_usec / off_usec
    );
}

/// The bytes `MEMORY USAGE … SAMPLES 0` reports for all the outbox streams.
fn outbox_bytes(setup: &Setup) -> u64 {
    (0..SHARDS)
        .map(|shard| {
            let key = setup.engine.keys().outbox(shard);
            setup
                .cli(&["MEMORY", "USAGE", &key, "SAMPLES", "0"])
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum()
}

fn used_memory(setup: &Setup) -> u64 {
    let info = setup.cli(&["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Appends `EVENTS` events made by `command(i)` to a fresh Redis and prints
/// what the outbox streams take, then trims them as a pass would.
async fn memory_case(name: &str, command: impl Fn(&Engine, u64, i64) -> Vec<String>) {
    let setup = Setup::start(settings(true));
    let engine = &setup.engine;
    let now = real_now();
    let before = used_memory(&setup);
    setup.pipe((0..EVENTS).map(|i| command(engine, i, now)));
    let lag = engine.outbox_lag().await.unwrap();
    assert_eq!(lag, EVENTS, "one event per write");
    let streams = outbox_bytes(&setup);
    let used = used_memory(&setup) - before;
    // Trim everything, as a pass that applied it all would.
    let mut marks = [StreamId::ZERO; SHARDS];
    for (shard, mark) in marks.iter_mut().enumerate() {
        let key = engine.keys().outbox(shard);
        let last = setup.cli(&["XREVRANGE", &key, "+", "-", "COUNT", "1"]);
        if let Some(id) = last.lines().next().and_then(StreamId::parse) {
            *mark = id;
        }
    }
    engine.outbox_trim(&marks).await.unwrap();
    let trimmed = outbox_bytes(&setup);
    println!(
        "  {name:<44} {:>10.1} {:>12.1} {trimmed:>12}",
        streams as f64 / EVENTS as f64,
        used as f64 / EVENTS as f64,
    );
}

fn xadd(engine: &Engine, item: &ItemId, fields: &[&str]) -> Vec<String> {
    let mut command = vec![
        "XADD".to_owned(),
        engine.keys().outbox(tally::outbox::shard(item)),
        "*".to_owned(),
    ];
    command.extend(fields.iter().map(|f| (*f).to_owned()));
    command
}

fn post(i: u64) -> ItemId {
    ItemId::parse(&format!("blog/2026/post-{}", i % 1_000)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench-outbox`"]
async fn memory_per_outbox_event() {
    println!(
        "Redis memory per outbox event, {EVENTS} events over 1,000 items (blog/2026/post-N) in 16 streams"
    );
    println!(
        "(B/event: MEMORY USAGE of the streams, and the used_memory delta, which for like.lua also holds\n\
         the likers and counts; then the streams' bytes after trimming all of it):"
    );
    println!(
        "  {:<44} {:>10} {:>12} {:>12}",
        "case", "streams", "used_memory", "after trim"
    );
    memory_case("like.lua, integer user ids", |engine, i, now| {
        engine
            .like_call(&post(i), &i.to_string(), "bench", now, true)
            .evalsha()
    })
    .await;
    memory_case(
        "like.lua, anon: ids (anon: + 22 chars)",
        |engine, i, now| {
            let who = format!("anon:{:022x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            engine
                .like_call(&post(i), &who, "bench", now, true)
                .evalsha()
        },
    )
    .await;
    memory_case(
        "view event (the fields view.lua writes)",
        |engine, i, now| {
            let item = post(i);
            xadd(
                engine,
                &item,
                &["op", "view", "item", item.as_str(), "t", &now.to_string()],
            )
        },
    )
    .await;
    memory_case(
        "view event with a 36-char Idempotency-Key",
        |engine, i, now| {
            let item = post(i);
            let key = format!("{:036x}", u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            xadd(
                engine,
                &item,
                &[
                    "op",
                    "view",
                    "item",
                    item.as_str(),
                    "t",
                    &now.to_string(),
                    "idem",
                    &key,
                ],
            )
        },
    )
    .await;
    memory_case("likes and views interleaved", |engine, i, now| {
        let item = post(i);
        if i % 2 == 0 {
            engine
                .like_call(&item, &i.to_string(), "bench", now, true)
                .evalsha()
        } else {
            xadd(
                engine,
                &item,
                &["op", "view", "item", item.as_str(), "t", &now.to_string()],
            )
        }
    })
    .await;
}
