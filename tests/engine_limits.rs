//! The fixed-window rate limit: exact under concurrency, windows from ARGV time.

#![cfg(not(target_arch = "wasm32"))]

mod engine_common;
mod support;

use std::collections::BTreeSet;

use engine_common::{Setup, unique};
use tally::engine::Settings;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_concurrent_hits_on_a_limit_of_one_hundred_admit_exactly_one_hundred() {
    let setup = Setup::start(Settings {
        rate_limit_per_minute: 100,
        ..Settings::default()
    });
    let limiter = unique("ip:");
    let now = 6_000_030;
    let hits: Vec<_> = (0..300)
        .map(|_| {
            let (engine, limiter) = (setup.engine.clone(), limiter.clone());
            tokio::spawn(async move { engine.admit(&limiter, now).await.unwrap() })
        })
        .collect();
    let mut admitted_remaining = BTreeSet::new();
    let mut refused = 0;
    for hit in hits {
        let answer = hit.await.unwrap();
        assert_eq!((answer.rate.limit, answer.rate.reset_seconds), (100, 30));
        match answer.outcome {
            Some(()) => assert!(admitted_remaining.insert(answer.rate.remaining)),
            None => {
                assert_eq!(answer.rate.remaining, 0);
                refused += 1;
            }
        }
    }
    assert_eq!((admitted_remaining.len(), refused), (100, 200));
    assert_eq!(admitted_remaining, (0..100).collect());
    let key = setup.engine.keys().rate(&limiter, 6_000_000);
    assert_eq!(setup.cli(&["GET", &key]), "100");
}

#[tokio::test]
async fn each_window_starts_afresh_and_its_counter_expires_on_the_first_hit() {
    let setup = Setup::start(Settings {
        rate_limit_per_minute: 1,
        ..Settings::default()
    });
    let limiter = unique("user");
    assert!(
        setup
            .engine
            .admit(&limiter, 119)
            .await
            .unwrap()
            .outcome
            .is_some()
    );
    let refused = setup.engine.admit(&limiter, 119).await.unwrap();
    assert_eq!((refused.outcome, refused.rate.reset_seconds), (None, 1));
    let next = setup.engine.admit(&limiter, 120).await.unwrap();
    assert_eq!(
        (next.outcome, next.rate.remaining, next.rate.reset_seconds),
        (Some(()), 0, 60)
    );

    let ttl: i64 = setup
        .cli(&["TTL", &setup.engine.keys().rate(&limiter, 60)])
        .parse()
        .unwrap();
    assert!((55..=61).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn a_network_mints_at_most_its_hourly_budget_and_the_next_hour_admits_again() {
    let setup = Setup::start(Settings {
        rate_limit_per_minute: 1_000,
        visitor_mints_per_hour: 7,
        ..Settings::default()
    });
    let limiter = unique("ip:");
    // Ten minutes into an hour, in different minutes.
    let hour = 3_600 * 500;
    let mut admitted = 0;
    for n in 0..20 {
        let answer = setup
            .engine
            .admit(&limiter, hour + 600 + n * 60)
            .await
            .unwrap();
        match answer.outcome {
            Some(()) => admitted += 1,
            None => {
                // Refused by the budget: nothing left until the next hour.
                assert_eq!(answer.rate.remaining, 0);
                assert_eq!(answer.rate.reset_seconds, (3_600 - 600 - n * 60) as u64);
            }
        }
    }
    assert_eq!(admitted, 7);
    let next = setup.engine.admit(&limiter, hour + 3_600).await.unwrap();
    assert!(next.outcome.is_some());
}
