//! Transactions under concurrency: each `/multi-exec` is atomic on its own connection.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Both, post};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_incr_transactions_on_one_key_give_exact_results() {
    let both = Both::start();
    let gateway = std::sync::Arc::new(both.gateway);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                post(
                    &gateway,
                    "/multi-exec",
                    json!([["INCR", "tx"], ["INCR", "tx"], ["GET", "tx"]]),
                )
                .await
            })
        })
        .collect();
    let mut firsts = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
        let items = answer.json();
        let first = items[0]["result"].as_i64().unwrap();
        // No other transaction ran between this one's commands.
        assert_eq!(items[1]["result"].as_i64(), Some(first + 1), "{items}");
        assert_eq!(
            items[2]["result"],
            json!((first + 1).to_string()),
            "{items}"
        );
        firsts.push(first);
    }
    firsts.sort_unstable();
    let expected: Vec<i64> = (0..32).map(|i| 2 * i + 1).collect();
    assert_eq!(
        firsts, expected,
        "each transaction saw its own consecutive pair"
    );
    assert_eq!(both.redis.cli(&["GET", "tx"]), "64");
}
