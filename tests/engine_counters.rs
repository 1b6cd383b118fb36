//! Custom counters: integers, floats, and the two mixed.

#![cfg(not(target_arch = "wasm32"))]

mod engine_common;
mod support;

use engine_common::{Setup, item, unique};
use tally::engine::{Amount, CounterValue, EngineError, InvalidRequest, Settings};
use tally::item::CounterName;

#[tokio::test]
async fn a_float_counter_added_a_tenth_ten_times_reads_back_one() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let name = CounterName::parse("score").unwrap();
    let mut last = CounterValue::Int(0);
    for _ in 0..10 {
        last = setup
            .engine
            .add_to_counter(&page, &name, Amount::Float(0.1))
            .await
            .unwrap();
    }
    assert_eq!(last, CounterValue::Int(1));
    let snapshot = setup.engine.read(&page, None, 0).await.unwrap();
    assert_eq!(snapshot.counters.get("score"), Some(&CounterValue::Int(1)));

    let after = setup
        .engine
        .add_to_counter(&page, &name, Amount::Float(0.2))
        .await
        .unwrap();
    assert_eq!(after, CounterValue::Float(1.2));
}

#[tokio::test]
async fn integer_counters_stay_integers_until_a_fraction_is_added() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let tokens = CounterName::parse("tokens").unwrap();
    let add = |by| {
        let (engine, page, tokens) = (setup.engine.clone(), page.clone(), tokens.clone());
        async move { engine.add_to_counter(&page, &tokens, by).await.unwrap() }
    };
    assert_eq!(add(Amount::Int(3)).await, CounterValue::Int(3));
    assert_eq!(add(Amount::Int(-1)).await, CounterValue::Int(2));
    assert_eq!(add(Amount::Float(0.25)).await, CounterValue::Float(2.25));
    assert_eq!(add(Amount::Int(1)).await, CounterValue::Float(3.25));
    assert_eq!(add(Amount::Float(0.75)).await, CounterValue::Int(4));
    assert_eq!(add(Amount::Int(1)).await, CounterValue::Int(5));
}

#[tokio::test]
async fn an_infinite_amount_is_refused_before_any_request_and_an_overflow_after() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let name = CounterName::parse("n").unwrap();
    for bad in [f64::NAN, f64::INFINITY] {
        let error = setup
            .engine
            .add_to_counter(&page, &name, Amount::Float(bad))
            .await
            .unwrap_err();
        assert_eq!(error, EngineError::Invalid(InvalidRequest::NotFinite));
    }
    assert_eq!(setup.trips.count(), 0);

    setup
        .engine
        .add_to_counter(&page, &name, Amount::Int(i64::MAX))
        .await
        .unwrap();
    let error = setup
        .engine
        .add_to_counter(&page, &name, Amount::Int(1))
        .await
        .unwrap_err();
    assert_eq!(error, EngineError::Invalid(InvalidRequest::CounterOverflow));
}
