//! Custom counters: integers, floats, and the two mixed.

#![cfg(not(target_arch = "wasm32"))]

mod engine_common;
mod support;

use engine_common::{Setup, item, unique};
use tally::engine::{
    Amount, CounterOutcome, CounterValue, EngineError, Idempotency, InvalidRequest, Settings,
};
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
            .add_to_counter(&page, &name, Amount::Float(0.1), 1_000)
            .await
            .unwrap();
    }
    assert_eq!(last, CounterValue::Int(1));
    let snapshot = setup.engine.read(&page, None, 0).await.unwrap();
    assert_eq!(snapshot.counters.get("score"), Some(&CounterValue::Int(1)));

    let after = setup
        .engine
        .add_to_counter(&page, &name, Amount::Float(0.2), 1_000)
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
        async move {
            engine
                .add_to_counter(&page, &tokens, by, 1_000)
                .await
                .unwrap()
        }
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
            .add_to_counter(&page, &name, Amount::Float(bad), 1_000)
            .await
            .unwrap_err();
        assert_eq!(error, EngineError::Invalid(InvalidRequest::NotFinite));
    }
    assert_eq!(setup.trips.count(), 0);

    setup
        .engine
        .add_to_counter(&page, &name, Amount::Int(i64::MAX), 1_000)
        .await
        .unwrap();
    let error = setup
        .engine
        .add_to_counter(&page, &name, Amount::Int(1), 1_000)
        .await
        .unwrap_err();
    assert_eq!(error, EngineError::Invalid(InvalidRequest::CounterOverflow));
}

#[tokio::test]
async fn an_add_past_the_largest_double_is_refused_and_writes_nothing() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let name = CounterName::parse("huge").unwrap();
    let first = setup
        .engine
        .add_to_counter(&page, &name, Amount::Float(1e308), 1_000)
        .await
        .unwrap();
    assert_eq!(first, CounterValue::Float(1e308));
    let key = setup.engine.keys().counters(&page);
    let stored = setup.cli(&["HGET", &key, "huge"]);
    let error = setup
        .engine
        .add_to_counter(&page, &name, Amount::Float(1e308), 1_000)
        .await
        .unwrap_err();
    assert_eq!(error, EngineError::Invalid(InvalidRequest::CounterOverflow));
    assert_eq!(setup.cli(&["HGET", &key, "huge"]), stored);
    let snapshot = setup.engine.read(&page, None, 0).await.unwrap();
    assert_eq!(snapshot.counters["huge"], CounterValue::Float(1e308));
}

#[tokio::test]
async fn reads_survive_any_text_already_in_the_counters_hash() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let key = setup.engine.keys().counters(&page);
    for (field, text) in [
        ("big", "1.99e308"),
        ("inf", "inf"),
        ("nan", "nan"),
        ("junk", "garbage"),
        ("ok", "7"),
    ] {
        setup.cli(&["HSET", &key, field, text]);
    }
    let stats = setup.engine.keys().stats(&page);
    setup.cli(&["HSET", &stats, "likes", "garbage"]);
    let snapshot = setup.engine.read(&page, None, 1_000).await.unwrap();
    assert_eq!(
        snapshot.counters.clone().into_iter().collect::<Vec<_>>(),
        [("ok".to_owned(), CounterValue::Int(7))]
    );
    assert_eq!(snapshot.likes, 0);
    // In a batch, each repeat reads the same, and the item after it is unharmed.
    let liked = item(&unique("liked"));
    setup.engine.like(&liked, "u", "u", 1_000).await.unwrap();
    let batch = setup
        .engine
        .read_many(&[page.clone(), page.clone(), liked], None, 1_000)
        .await
        .unwrap();
    assert_eq!(batch[..2], [snapshot.clone(), snapshot]);
    assert_eq!(batch[2].likes, 1);
    // Adding to an unreadable counter is refused and leaves it as it was.
    for field in ["big", "inf", "nan", "junk"] {
        let name = CounterName::parse(field).unwrap();
        for by in [Amount::Int(1), Amount::Float(0.5)] {
            let error = setup
                .engine
                .add_to_counter(&page, &name, by, 1_000)
                .await
                .unwrap_err();
            assert_eq!(error, EngineError::Invalid(InvalidRequest::CounterOverflow));
        }
    }
    assert_eq!(setup.cli(&["HGET", &key, "big"]), "1.99e308");
}

#[tokio::test]
async fn an_idempotent_add_replays_its_first_answer_and_a_reused_key_conflicts() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("page"));
    let name = CounterName::parse("tokens").unwrap();
    let key = |fingerprint: &str| Idempotency {
        key: unique("key"),
        fingerprint: fingerprint.to_owned(),
    };
    let add = |by, idempotency: Idempotency| {
        let (engine, page, name) = (setup.engine.clone(), page.clone(), name.clone());
        async move {
            engine
                .add_to_counter_once(&page, &name, by, 1_000, Some(&idempotency))
                .await
                .unwrap()
        }
    };
    let first = key("add 5");
    assert_eq!(
        add(Amount::Int(5), first.clone()).await,
        CounterOutcome::Added(CounterValue::Int(5))
    );
    setup
        .engine
        .add_to_counter(&page, &name, Amount::Int(1), 1_000)
        .await
        .unwrap();
    // The retry answers what the first request answered, and adds nothing.
    assert_eq!(
        add(Amount::Int(5), first.clone()).await,
        CounterOutcome::Replayed(CounterValue::Int(5))
    );
    let reused = Idempotency {
        fingerprint: "add 6".into(),
        ..first
    };
    assert_eq!(add(Amount::Int(6), reused).await, CounterOutcome::Conflict);
    let floats = key("add 0.25");
    assert_eq!(
        add(Amount::Float(0.25), floats.clone()).await,
        CounterOutcome::Added(CounterValue::Float(6.25))
    );
    assert_eq!(
        add(Amount::Float(0.25), floats.clone()).await,
        CounterOutcome::Replayed(CounterValue::Float(6.25))
    );
    let snapshot = setup.engine.read(&page, None, 0).await.unwrap();
    assert_eq!(snapshot.counters["tokens"], CounterValue::Float(6.25));
    let ttl: i64 = setup
        .cli(&["TTL", &setup.engine.keys().idempotency(&floats.key)])
        .parse()
        .unwrap();
    assert!((86_000..=86_400).contains(&ttl), "{ttl}");
}
