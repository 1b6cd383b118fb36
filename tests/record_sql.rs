//! The statements `tally::record::plan` builds, run on a real SQLite (Python's
//! `sqlite3`, 3.38 or later for `->>`) over `migrations/0001_record.sql`: a
//! batch applies as the record's semantics say, and exactly once under its
//! `seq` guard. The end-to-end tests (tests/api_record.rs) run them on D1's
//! own local emulation.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tally::engine::{Amount, CounterValue};
use tally::outbox::{Batch, Event, Op, SHARDS, StreamId};
use tally::record::{self, Plan};

/// Runs each transaction (a list of `(sql, rows, seq)`) on a fresh database
/// with the migration applied, then the queries; answers, per transaction,
/// the rows its last statement changed, and each query's rows.
const RUNNER: &str = r#"
import json, sqlite3, sys
job = json.load(sys.stdin)
db = sqlite3.connect(":memory:", isolation_level=None)
db.executescript(open(sys.argv[1]).read())
changed = []
for tx in job["transactions"]:
    db.execute("BEGIN")
    last = 0
    for sql, rows, seq in tx:
        last = db.execute(sql, (rows, seq)).rowcount
    db.execute("COMMIT")
    changed.append(last)
answers = [[list(r) for r in db.execute(q).fetchall()] for q in job["queries"]]
print(json.dumps({"changed": changed, "answers": answers}))
"#;

fn run(transactions: &[(&Plan, i64)], queries: &[&str]) -> (Vec<i64>, Vec<Value>) {
    let transactions: Vec<Value> = transactions
        .iter()
        .map(|(plan, seq)| {
            plan.statements
                .iter()
                .map(|s| json!([s.sql, s.rows, seq]))
                .collect()
        })
        .collect();
    let job = json!({"transactions": transactions, "queries": queries});
    let schema = support::root().join("migrations/0001_record.sql");
    let out =
        support::python(RUNNER, &[&schema], &job.to_string()).unwrap_or_else(|out| panic!("{out}"));
    let answer: Value = serde_json::from_str(&out).unwrap();
    let changed = answer["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_i64().unwrap())
        .collect();
    (changed, answer["answers"].as_array().unwrap().clone())
}

fn event(n: u64, item: &str, op: Op) -> Event {
    Event {
        shard: 0,
        id: StreamId { ms: n, seq: 0 },
        item: item.to_owned(),
        t: 86_400 * 3 + n as i64,
        idem: None,
        op,
    }
}

fn batch(events: Vec<Event>) -> Batch {
    let mut marks = [StreamId::ZERO; SHARDS];
    marks[0] = events.last().map_or(StreamId::ZERO, |e| e.id);
    Batch {
        events,
        marks,
        ..Batch::default()
    }
}

fn like(n: u64, item: &str, who: &str) -> Event {
    event(n, item, Op::Like { who: who.into() })
}

const ITEMS: &str = "SELECT item, likes, likes_base, views FROM items ORDER BY item";
const LIKERS: &str = "SELECT item, who FROM likers ORDER BY item, who";
const DAYS: &str = "SELECT item, day, views FROM daily_views ORDER BY item, day";
const COUNTERS: &str =
    "SELECT item, name, int_value, float_value, is_float FROM counters ORDER BY item, name";
const STATE: &str = "SELECT seq FROM outbox_state";

#[test]
fn likes_views_and_adds_land_in_the_record_tables() {
    let plan = record::plan(&batch(vec![
        like(1, "a", "u1"),
        like(2, "a", "u2"),
        event(3, "a", Op::Unlike { who: "u1".into() }),
        event(4, "a", Op::View),
        event(5, "b", Op::View),
        event(
            6,
            "b",
            Op::Add {
                name: "n".into(),
                by: Amount::Int(4),
            },
        ),
        event(
            7,
            "b",
            Op::Add {
                name: "f".into(),
                by: Amount::Float(0.25),
            },
        ),
    ]));
    let (changed, answers) = run(&[(&plan, 0)], &[ITEMS, LIKERS, DAYS, COUNTERS, STATE]);
    assert_eq!(changed, [1], "the state row moved on");
    assert_eq!(answers[0], json!([["a", 1, 0, 1], ["b", 0, 0, 1]]));
    assert_eq!(answers[1], json!([["a", "u2"]]));
    assert_eq!(answers[2], json!([["a", 259_200, 1], ["b", 259_200, 1]]));
    assert_eq!(
        answers[3],
        json!([["b", "f", 0, 0.25, 1], ["b", "n", 4, 0.0, 0]])
    );
    assert_eq!(answers[4], json!([[1]]));
}

#[test]
fn a_batch_applied_twice_under_the_same_seq_changes_nothing_the_second_time() {
    let plan = record::plan(&batch(vec![
        like(1, "a", "u1"),
        event(2, "a", Op::View),
        event(
            3,
            "a",
            Op::Add {
                name: "n".into(),
                by: Amount::Int(2),
            },
        ),
    ]));
    let (changed, answers) = run(&[(&plan, 0), (&plan, 0)], &[ITEMS, COUNTERS, STATE]);
    assert_eq!(changed, [1, 0], "the second apply saw another pass had won");
    assert_eq!(answers[0], json!([["a", 1, 0, 1]]));
    assert_eq!(answers[1], json!([["a", "n", 2, 0.0, 0]]));
    assert_eq!(answers[2], json!([[1]]));
}

#[test]
fn a_like_the_record_already_holds_never_counts_twice() {
    let first = record::plan(&batch(vec![like(1, "a", "u1")]));
    let again = record::plan(&batch(vec![like(2, "a", "u1")]));
    let (_, answers) = run(&[(&first, 0), (&again, 1)], &[ITEMS]);
    assert_eq!(answers[0], json!([["a", 1, 0, 0]]));
}

#[test]
fn an_import_sets_counts_and_a_merge_folds_the_old_item_into_the_new_one() {
    let import = record::plan(&batch(vec![
        like(1, "old", "both"),
        like(2, "old", "u1"),
        like(3, "new", "both"),
        event(4, "old", Op::View),
        event(5, "new", Op::View),
        event(
            6,
            "old",
            Op::Import {
                views: Some(100),
                likes_base: Some(7),
                counters: BTreeMap::from([("c".to_owned(), CounterValue::Int(10))]),
            },
        ),
        event(
            7,
            "new",
            Op::Add {
                name: "c".into(),
                by: Amount::Int(1),
            },
        ),
    ]));
    let merge = record::plan(&batch(vec![
        event(8, "new", Op::Merge { from: "old".into() }),
        event(9, "new", Op::MergedIn { from: "old".into() }),
    ]));
    let (changed, answers) = run(
        &[(&import, 0), (&merge, 1)],
        &[ITEMS, LIKERS, DAYS, COUNTERS],
    );
    assert_eq!(changed, [1, 1]);
    // likes: likes_base 7 + likers {both, u1}; views: 1 + the imported 100.
    assert_eq!(answers[0], json!([["new", 9, 7, 101]]));
    assert_eq!(answers[1], json!([["new", "both"], ["new", "u1"]]));
    assert_eq!(answers[2], json!([["new", 259_200, 2]]));
    assert_eq!(answers[3], json!([["new", "c", 11, 0.0, 0]]));
}

#[test]
fn the_drift_sample_is_the_touched_items_and_the_stalest_each_once_in_item_order() {
    let views = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(n, item)| event(n as u64 + 1, item, Op::View))
        .collect();
    let plan = record::plan(&batch(views));
    let mark = record::MARK_CHECKED
        .replace("?1", r#"'["a","b","c"]'"#)
        .replace("?2", "100");
    // Touched: e and c. The two checked longest ago: d and e (never checked).
    let sample = record::READ_SAMPLE
        .replace("?1", r#"'["e","c"]'"#)
        .replace("?2", "2");
    let (_, answers) = run(&[(&plan, 0)], &[&mark, &sample]);
    assert_eq!(
        answers[1],
        json!([["c", 0, 0, 1], ["d", 0, 0, 1], ["e", 0, 0, 1]])
    );
}
