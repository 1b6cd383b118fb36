//! Scripts and the REST client: SHA1s, the NOSCRIPT fallback, no other retry.

#![cfg(not(target_arch = "wasm32"))]

mod engine_common;
mod support;

use engine_common::{Setup, item, unique};
use tally::engine::{EngineError, Settings};
use tally::outbox::{SHARDS, StreamId};
use tally::rest::RestError;
use tally::scripts;

#[tokio::test]
async fn every_scripts_sha1_equals_what_script_load_returns() {
    let setup = Setup::start(Settings::default());
    for script in scripts::ALL {
        let loaded = setup
            .engine
            .rest()
            .command(&["SCRIPT", "LOAD", script.source()])
            .await
            .unwrap();
        assert_eq!(loaded.as_str(), Some(script.sha1()), "{}", script.name());
    }
}

#[tokio::test]
async fn after_script_flush_one_call_falls_back_to_eval_and_the_next_uses_evalsha_again() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("flush"));
    // A fresh Redis has no scripts: the first call falls back, the next does not.
    setup.engine.like(&page, "u1", "u1", 1_000).await.unwrap();
    assert_eq!(setup.trips.take(), ["EVALSHA", "EVAL"]);
    setup.engine.unlike(&page, "u1", "u1", 1_000).await.unwrap();
    setup.engine.like(&page, "u1", "u1", 1_000).await.unwrap();
    assert_eq!(setup.trips.take(), ["EVALSHA", "EVALSHA"]);
    setup.trips.reset();

    assert_eq!(setup.cli(&["SCRIPT", "FLUSH"]), "OK");
    let second = setup.engine.like(&page, "u2", "u2", 1_000).await.unwrap();
    assert_eq!(second.outcome.unwrap().likes, 2);
    assert_eq!(setup.trips.take(), ["EVALSHA", "EVAL"]);
    assert_eq!(setup.trips.noscripts(), 1);

    let third = setup.engine.like(&page, "u3", "u3", 1_000).await.unwrap();
    assert_eq!(third.outcome.unwrap().likes, 3);
    assert_eq!(setup.trips.take(), ["EVALSHA"]);
    assert_eq!(setup.trips.noscripts(), 1);
}

#[tokio::test]
async fn a_batch_read_after_script_flush_is_sent_once_more_with_eval() {
    let setup = Setup::start(Settings::default());
    let pages = [item(&unique("a")), item(&unique("b"))];
    setup
        .engine
        .like(&pages[1], "u1", "u1", 1_000)
        .await
        .unwrap();
    setup.engine.read_many(&pages, None, 1_000).await.unwrap();
    setup.cli(&["SCRIPT", "FLUSH"]);
    setup.trips.reset();

    let snapshots = setup.engine.read_many(&pages, None, 1_000).await.unwrap();
    assert_eq!(snapshots[1].likes, 1);
    assert_eq!(setup.trips.take(), ["EVALSHA", "EVAL"]);
    assert_eq!(setup.trips.noscripts(), 1);

    setup.engine.read_many(&pages, None, 1_000).await.unwrap();
    assert_eq!(setup.trips.take(), ["EVALSHA"]);
}

#[tokio::test]
async fn an_audit_after_script_flush_is_sent_once_more_as_a_pipeline_of_evals() {
    let setup = Setup::start(Settings::default());
    let pages = [item(&unique("a")), item(&unique("b"))];
    setup
        .engine
        .like(&pages[1], "u1", "u1", 1_000)
        .await
        .unwrap();
    let marks = [StreamId::ZERO; SHARDS];
    setup.engine.audit(&pages, &marks).await.unwrap();
    setup.cli(&["SCRIPT", "FLUSH"]);
    setup.trips.reset();

    let live = setup.engine.audit(&pages, &marks).await.unwrap();
    assert_eq!((live[0].exists, live[1].likes), (false, 1));
    assert_eq!(setup.trips.take(), ["PIPELINE", "PIPELINE"]);
    assert_eq!(setup.trips.noscripts(), 1);

    setup.engine.audit(&pages, &marks).await.unwrap();
    assert_eq!(setup.trips.take(), ["PIPELINE"]);
}

#[tokio::test]
async fn a_redis_error_other_than_noscript_is_not_retried() {
    let setup = Setup::start(Settings::default());
    let page = item(&unique("wrongtype"));
    let likers = setup.engine.keys().likers(&page);
    setup
        .engine
        .like(&item(&unique("warm")), "u1", "u1", 1_000)
        .await
        .unwrap();
    setup.cli(&["SET", &likers, "not a set"]);
    setup.trips.reset();

    let error = setup
        .engine
        .like(&page, "u1", "u1", 1_000)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::Backend(RestError::Redis(m)) if m.contains("WRONGTYPE")),
        "{error:?}"
    );
    assert_eq!(setup.trips.take(), ["EVALSHA"]);
    assert_eq!(setup.trips.noscripts(), 0);
}

#[tokio::test]
async fn an_unreachable_backend_is_one_failed_round_trip_and_a_transport_error() {
    let mut setup = Setup::start(Settings::default());
    setup.gateway.stop();
    setup.trips.take();

    let error = setup.engine.ping().await.unwrap_err();
    assert!(
        matches!(error, EngineError::Backend(RestError::Transport(_))),
        "{error:?}"
    );
    assert_eq!(
        setup.trips.log.lock().unwrap().as_slice(),
        [("PING".to_owned(), None, false)]
    );
}

#[tokio::test]
async fn a_slow_backend_is_a_timeout() {
    // A listener that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let rest = tally::rest::RestClient::new(url, "t", std::time::Duration::from_millis(200));
    let error = rest.command(&["PING"]).await.unwrap_err();
    assert_eq!(error, RestError::Timeout);
    drop(listener);
}
