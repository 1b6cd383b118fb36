//! The system of record end to end: wrangler dev (with its local D1) →
//! gateway → redis-server, each test on a stack of its own (they cause
//! faults, and the drift check samples the whole record). Run with
//! `--nocapture` to see the figures: events applied, pass durations.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use support::{API_KEY, GATEWAY_TOKEN, Record, Redis, Stack, Worker, encode, send, token_for};

/// Stacks are heavy for a 2-core machine: these tests run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Settings every stack here runs with: no rate limit in the way, a generous
/// Redis timeout under bursts.
const VARS: &[(&str, &str)] = &[
    ("RATE_LIMIT_PER_MINUTE", "1000000"),
    ("NETWORK_RATE_LIMIT_PER_MINUTE", "1000000"),
    ("REDIS_TIMEOUT_MS", "10000"),
];

fn vars(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    VARS.iter().chain(extra).copied().collect()
}

/// The worker's API, by its base URL (so a task can own it).
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn of(worker: &Worker) -> Api {
        Api {
            base: worker.url(""),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn like(&self, method: Method, item: &str, who: &str) -> support::Reply {
        let url = self.url(&format!("/v1/items/{}/like", encode(item)));
        send(self.http.request(method, url).bearer_auth(token_for(who))).await
    }

    async fn view(&self, item: &str, who: &str) -> support::Reply {
        let url = self.url(&format!("/v1/items/{}/views", encode(item)));
        send(self.http.post(url).bearer_auth(token_for(who))).await
    }

    async fn add(&self, item: &str, name: &str, by: Value) -> support::Reply {
        let url = self.url(&format!("/v1/items/{}/counters/{name}", encode(item)));
        send(
            self.http
                .post(url)
                .bearer_auth(API_KEY)
                .json(&json!({ "by": by })),
        )
        .await
    }

    async fn live(&self, item: &str, who: Option<&str>) -> support::Reply {
        let mut request = self
            .http
            .get(self.url(&format!("/v1/items/{}", encode(item))));
        if let Some(who) = who {
            request = request.bearer_auth(token_for(who));
        }
        send(request).await
    }

    async fn record(&self, item: &str, who: Option<&str>) -> support::Reply {
        let mut url = self.url(&format!("/v1/items/{}?source=record", encode(item)));
        if let Some(who) = who {
            url.push_str(&format!("&who={}", encode(who)));
        }
        send(self.http.get(url).bearer_auth(API_KEY)).await
    }

    /// One pass by hand; prints what it did and how long it took.
    async fn reconcile(&self) -> support::Reply {
        let started = Instant::now();
        let reply = send(
            self.http
                .post(self.url("/v1/admin/reconcile"))
                .bearer_auth(API_KEY),
        )
        .await;
        println!(
            "reconcile: {} {} in {} ms",
            reply.status,
            reply.body,
            started.elapsed().as_millis()
        );
        reply
    }

    /// Passes until the outbox is empty and nothing drifts; the events applied in all.
    async fn reconcile_fully(&self) -> u64 {
        let mut applied = 0;
        for _ in 0..20 {
            let reply = self.reconcile().await;
            assert_eq!(reply.status, 200, "{:?}", reply.body);
            applied += reply.body["events_applied"].as_u64().unwrap();
            if reply.body["lag"] == 0 && reply.body["repaired"] == 0 {
                return applied;
            }
        }
        panic!("the outbox never emptied");
    }

    async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("the worker answers")
            .text()
            .await
            .expect("a body")
    }

    /// Asserts that the record answers every item exactly as Redis does
    /// (likes, views, counters; `liked` for `who`), and returns the live bodies.
    async fn assert_record_is_live(&self, items: &[String], who: &str) -> Vec<Value> {
        let mut bodies = Vec::new();
        for item in items {
            let live = self.live(item, Some(who)).await;
            let record = self.record(item, Some(who)).await;
            assert_eq!((live.status, record.status), (200, 200), "{item}");
            for field in ["item", "likes", "views", "counters", "liked"] {
                assert_eq!(
                    record.body[field], live.body[field],
                    "{item}: {field} differs: record {} live {}",
                    record.body, live.body
                );
            }
            assert_eq!(record.body["unique_viewers"]["all_time"], 0);
            bodies.push(live.body);
        }
        bodies
    }
}

/// Item ids unique to one test.
fn items(name: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| support::unique(&format!("{name}{i}")))
        .collect()
}

/// Whether a reply is a write that appended one outbox event.
fn changed(reply: &support::Reply) -> bool {
    reply.status == 200
        && (reply.body["changed"] == true
            || reply.body["counted"] == true
            || reply.body.get("value").is_some())
}

/// 50 identities writing at once: 20 writes each, a mix of likes, unlikes,
/// views and counter adds over `items`. Answers the writes that appended an event.
async fn thousand_writes(api: &Api, items: &[String]) -> u64 {
    let events = Arc::new(AtomicU64::new(0));
    let tasks = (0..50).map(|who| {
        let (api, items, events) = (api.clone(), items.to_vec(), events.clone());
        async move {
            let name = format!("user{who}");
            for k in 0..20usize {
                let item = &items[(who + k) % items.len()];
                let reply = match k % 4 {
                    0 => api.like(Method::PUT, item, &name).await,
                    1 => api.view(item, &name).await,
                    2 if k % 8 == 2 => api.add(item, "n", json!(k as i64 - 5)).await,
                    2 => api.add(item, "f", json!(0.5)).await,
                    // Unlikes what step k - 3 liked: half of them change something.
                    _ if who % 2 == 0 => {
                        let liked = &items[(who + k - 3) % items.len()];
                        api.like(Method::DELETE, liked, &name).await
                    }
                    _ => api.like(Method::DELETE, item, &name).await,
                };
                assert_eq!(reply.status, 200, "{:?}", reply.body);
                if changed(&reply) {
                    events.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    support::all_at_once(tasks).await;
    events.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_thousand_concurrent_writes_a_reconcile_makes_the_record_equal_the_live_counts() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start_with(&vars(&[]));
    let api = Api::of(&stack.worker);
    let items = items("rec-thousand", 7);
    let started = Instant::now();
    let events = thousand_writes(&api, &items).await;
    println!(
        "1000 writes by 50 identities in {} ms: {events} changed a count",
        started.elapsed().as_millis()
    );
    let first = api.reconcile().await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["events_applied"], events, "one event per change");
    assert_eq!(first.body["lag"], 0);
    assert_eq!(first.body["repaired"], 0, "nothing drifted");
    assert!(first.body["items_checked"].as_u64().unwrap() >= items.len() as u64);
    let bodies = api.assert_record_is_live(&items, "user0").await;
    assert!(bodies.iter().any(|b| b["likes"].as_u64() > Some(0)));
    assert!(bodies.iter().any(|b| b["views"].as_u64() > Some(0)));
    assert!(bodies.iter().any(|b| b["counters"]["f"].is_number()));
    let again = api.reconcile().await;
    assert_eq!(again.body["events_applied"], 0, "nothing is applied twice");
    let metrics = api.metrics().await;
    assert!(
        metrics.contains(&format!("tally_record_events_applied_total {events}\n")),
        "{metrics}"
    );
    assert!(metrics.contains("tally_outbox_lag_events 0\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pass_killed_between_the_record_and_the_trim_applies_nothing_twice_when_run_again() {
    let _one = ONE_AT_A_TIME.lock().await;
    let faulty = vars(&[
        ("TALLY_FAULT", "reconcile_after_record"),
        ("RECONCILE_LEASE_SECONDS", "2"),
    ]);
    let mut stack = Stack::start_with(&faulty);
    let api = Api::of(&stack.worker);
    let items = items("rec-killed", 3);
    let mut events = 0;
    for (i, item) in items.iter().enumerate() {
        for who in 0..5 {
            let name = format!("u{who}");
            events += u64::from(changed(&api.like(Method::PUT, item, &name).await));
            events += u64::from(changed(&api.view(item, &name).await));
        }
        events += u64::from(changed(&api.add(item, "n", json!(i + 1)).await));
    }
    let killed = api.reconcile().await;
    assert_eq!(
        killed.status, 500,
        "the pass stopped after the record: {:?}",
        killed.body
    );
    let busy = api.reconcile().await;
    assert_eq!(
        busy.status, 409,
        "its lease is left to expire: {:?}",
        busy.body
    );
    assert_eq!(busy.body["error"]["code"], "reconcile_running");

    // A new worker on the same D1 database, without the fault, once the lease expired.
    let record = stack.worker.record_dir().expect("a D1 database");
    stack.worker.stop();
    let worker = Worker::start_with_record(&stack.gateway.url(), &vars(&[]), Record::At(record));
    let api = Api::of(&worker);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = api.like(Method::PUT, &items[0], "late").await;
    assert!(changed(&after));
    let again = api.reconcile().await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(
        again.body["events_applied"], 1,
        "only the write made after the killed pass: its {events} events were committed once"
    );
    assert_eq!(
        again.body["lag"], 0,
        "the killed pass's events were trimmed"
    );
    assert_eq!(again.body["repaired"], 0);
    let bodies = api.assert_record_is_live(&items, "u0").await;
    assert_eq!(bodies[0]["likes"], 6);
    assert_eq!(bodies[1]["views"], 5);
    assert_eq!(bodies[2]["counters"]["n"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_flushall_a_reconcile_restores_redis_and_an_earlier_liker_cannot_like_twice() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start_with(&vars(&[]));
    let api = Api::of(&stack.worker);
    let items = items("rec-flushed", 4);
    for (i, item) in items.iter().enumerate() {
        for who in 0..=i {
            api.like(Method::PUT, item, &format!("fan{who}")).await;
            api.view(item, &format!("fan{who}")).await;
        }
        api.add(item, "stars", json!(10 * (i + 1))).await;
        api.add(item, "score", json!(1.25)).await;
    }
    api.reconcile_fully().await;
    let before = api.assert_record_is_live(&items, "fan0").await;

    assert_eq!(stack.redis.cli(&["FLUSHALL"]), "OK");
    let gone = api.live(&items[3], None).await;
    assert_eq!(
        (gone.body["likes"].clone(), gone.body["views"].clone()),
        (json!(0), json!(0))
    );

    let restored = api.reconcile().await;
    assert_eq!(restored.status, 200, "{:?}", restored.body);
    assert_eq!(
        restored.body["repaired"],
        items.len(),
        "every lost item restored"
    );
    let after = api.assert_record_is_live(&items, "fan0").await;
    for (after, before) in after.iter().zip(&before) {
        // Unique viewers are estimates kept in Redis only: the loss keeps them.
        for field in ["likes", "views", "counters", "liked"] {
            assert_eq!(
                after[field], before[field],
                "{field} as before the FLUSHALL"
            );
        }
    }
    let second = api.like(Method::PUT, &items[3], "fan2").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body["changed"], false, "fan2 liked before the loss");
    assert_eq!(second.body["likes"], 4);
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("tally_record_repairs_total 4\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_redis_is_killed_under_appendfsync_everysec_a_reconcile_makes_live_equal_the_record()
{
    let _one = ONE_AT_A_TIME.lock().await;
    let mut stack = Stack::start_on(Redis::start_persistent(), &vars(&[]), Record::Fresh);
    let api = Api::of(&stack.worker);
    let items = items("rec-crash", 5);
    let writing = Arc::new(AtomicBool::new(true));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..10)
        .map(|w| {
            let (api, items, writing, acknowledged) = (
                api.clone(),
                items.clone(),
                writing.clone(),
                acknowledged.clone(),
            );
            async move {
                let mut k = 0usize;
                while writing.load(Ordering::Relaxed) {
                    let item = &items[(w + k) % items.len()];
                    let who = format!("w{w}-{k}");
                    let reply = match k % 3 {
                        0 => api.like(Method::PUT, item, &who).await,
                        1 => api.view(item, &who).await,
                        _ => api.add(item, "n", json!(1)).await,
                    };
                    if changed(&reply) {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    k += 1;
                }
            }
        })
        .collect();
    let writers = tokio::spawn(support::all_at_once(writers));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A pass while writes go on, then kill -9 within the same second: what
    // Redis had not yet synced is lost, some of it already in the record.
    let during = api.reconcile().await;
    assert_eq!(during.status, 200, "{:?}", during.body);
    stack.redis.stop();
    let killed_after = acknowledged.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.redis.resume();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    writing.store(false, Ordering::Relaxed);
    writers.await.expect("the writers end");
    let applied = during.body["events_applied"].as_u64().unwrap() + api.reconcile_fully().await;
    let bodies = api.assert_record_is_live(&items, "w0-0").await;
    let kept: u64 = bodies
        .iter()
        .map(|b| {
            b["likes"].as_u64().unwrap()
                + b["views"].as_u64().unwrap()
                + b["counters"]["n"].as_u64().unwrap_or(0)
        })
        .sum();
    let total = acknowledged.load(Ordering::Relaxed);
    // Writes Redis ran but whose answer the kill cut off count without being
    // acknowledged, so `kept` may exceed `total`; live == record is the claim.
    println!(
        "kill -9 under appendfsync everysec: {total} writes acknowledged ({killed_after} before the kill), \
         {kept} counted after recovery, {applied} events applied to the record"
    );
    assert!(kept > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn likes_corrupted_by_hand_in_redis_are_repaired_by_the_next_pass_and_counted() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start_with(&vars(&[]));
    let api = Api::of(&stack.worker);
    let item = support::unique("rec-corrupt");
    for who in 0..3 {
        api.like(Method::PUT, &item, &format!("p{who}")).await;
    }
    api.reconcile_fully().await;
    let key = format!("tally:{{{item}}}:stats");
    assert_eq!(stack.redis.cli(&["HSET", &key, "likes", "999"]), "0");
    assert_eq!(api.live(&item, None).await.body["likes"], 999);

    let pass = api.reconcile().await;
    assert_eq!(pass.body["repaired"], 1, "{:?}", pass.body);
    assert_eq!(api.live(&item, None).await.body["likes"], 3);
    api.assert_record_is_live(std::slice::from_ref(&item), "p1")
        .await;
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("tally_record_repairs_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tally_record_passes_total{outcome=\"applied\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_d1_binding_the_record_routes_answer_503_and_nothing_is_appended() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start_on(Redis::start(), &vars(&[]), Record::Unbound);
    let api = Api::of(&stack.worker);
    let item = support::unique("rec-unbound");
    assert_eq!(api.like(Method::PUT, &item, "a").await.body["likes"], 1);

    let reconcile = api.reconcile().await;
    assert_eq!(reconcile.status, 503);
    assert_eq!(reconcile.body["error"]["code"], "record_unavailable");
    let read = api.record(&item, None).await;
    assert_eq!(read.status, 503);
    assert_eq!(read.body["error"]["code"], "record_unavailable");
    let streams: u64 = (0..tally::outbox::SHARDS)
        .map(|s| {
            let key = format!("tally:{{#outbox:{s}}}");
            stack.redis.cli(&["XLEN", &key]).parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(streams, 0, "no outbox without a record to apply it");

    // The source parameter is checked, and the record needs the API key.
    let url = api.url(&format!("/v1/items/{}?source=elsewhere", encode(&item)));
    let bad = send(api.http.get(url)).await;
    assert_eq!(
        (bad.status, bad.body["error"]["code"].clone()),
        (400, json!("invalid_query"))
    );
    let url = api.url(&format!("/v1/items/{}?source=record&who=", encode(&item)));
    let nobody = send(api.http.get(url).bearer_auth(API_KEY)).await;
    assert_eq!(
        (nobody.status, nobody.body["error"]["code"].clone()),
        (400, json!("invalid_query"))
    );
    let url = api.url(&format!("/v1/items/{}?source=record", encode(&item)));
    let anonymous = send(api.http.get(url)).await;
    assert_eq!(anonymous.status, 401);
    let url = api.url("/v1/admin/reconcile");
    let anonymous = send(api.http.post(url)).await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_pass_applies_ten_thousand_events() {
    use tally::engine::{Amount, Engine, Settings};
    use tally::item::{CounterName, ItemId};

    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start_with(&vars(&[("RECONCILE_MAX_EVENTS", "10000")]));
    let api = Api::of(&stack.worker);
    // The events are written by the engine itself (natively, straight to the
    // gateway): the same scripts the worker runs, much faster than through
    // wrangler dev.
    let engine = Arc::new(Engine::new(
        tally::rest::RestClient::new(stack.gateway.url(), GATEWAY_TOKEN, Duration::from_secs(10)),
        Settings {
            outbox: true,
            rate_limit_per_minute: 1_000_000_000,
            ..Settings::default()
        },
    ));
    let items = items("rec-ten-k", 100);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let started = Instant::now();
    let tasks = items.iter().cloned().map(|item| {
        let engine = engine.clone();
        async move {
            let id = ItemId::parse(&item).unwrap();
            let name = CounterName::parse("n").unwrap();
            for k in 0..100 {
                let who = format!("v{k}");
                match k % 3 {
                    0 => drop(engine.like(&id, &who, who.as_str(), now).await.unwrap()),
                    1 => drop(
                        engine
                            .view(&id, &who, who.as_str(), now, None, true)
                            .await
                            .unwrap(),
                    ),
                    _ => drop(
                        engine
                            .add_to_counter_once(&id, &name, Amount::Int(2), now, None)
                            .await
                            .unwrap(),
                    ),
                }
            }
        }
    });
    support::all_at_once(tasks).await;
    println!(
        "10,000 events written in {} ms",
        started.elapsed().as_millis()
    );
    let started = Instant::now();
    let pass = api.reconcile().await;
    let took = started.elapsed();
    assert_eq!(pass.status, 200, "{:?}", pass.body);
    assert_eq!(pass.body["events_applied"], 10_000);
    assert_eq!(pass.body["lag"], 0);
    println!(
        "one pass over 10,000 events: {} ms (one read, 5 D1 transactions of 2,000, trim, drift check of {} items)",
        took.as_millis(),
        pass.body["items_checked"]
    );
    let bodies = api.assert_record_is_live(&items[..10], "v0").await;
    assert_eq!(bodies[0]["likes"], 34);
    assert_eq!(bodies[0]["views"], 33);
    assert_eq!(bodies[0]["counters"]["n"], 66);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cron_trigger_runs_a_pass_into_the_record() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start_with(&vars(&[]));
    let api = Api::of(&stack.worker);
    let item = support::unique("rec-cron");
    api.like(Method::PUT, &item, "early").await;
    api.view(&item, "early").await;
    assert_eq!(
        api.record(&item, None).await.body["likes"],
        0,
        "not applied yet"
    );

    // What `wrangler dev --test-scheduled` offers in place of the minute's cron.
    let cron = api.url("/__scheduled?cron=*+*+*+*+*");
    let ran = api.http.get(cron).send().await.expect("the worker answers");
    assert_eq!(ran.status(), 200);
    let record = api.record(&item, Some("early")).await;
    assert_eq!(
        (record.body["likes"].clone(), record.body["views"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(record.body["liked"], true);
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("tally_record_events_applied_total 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("tally_outbox_lag_events 0\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn day_series_older_than_redis_keeps_are_read_from_the_record() {
    use tally::engine::{Engine, Settings};
    use tally::item::ItemId;

    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start_with(&vars(&[]));
    let api = Api::of(&stack.worker);
    let item = support::unique("rec-old-days");
    // Views written with a clock 500 days back: their day buckets expire in
    // Redis at once (they live 400 days), their events carry the old time.
    let engine = Engine::new(
        tally::rest::RestClient::new(stack.gateway.url(), GATEWAY_TOKEN, Duration::from_secs(10)),
        Settings {
            outbox: true,
            ..Settings::default()
        },
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = 86_400;
    let old = (now - 500 * day).div_euclid(day) * day;
    let id = ItemId::parse(&item).unwrap();
    for viewer in ["a", "b", "c"] {
        engine
            .view(&id, viewer, viewer, old + 3_600, None, true)
            .await
            .unwrap();
    }
    let series = |from: i64, to: i64| {
        let url = api.url(&format!(
            "/v1/items/{}/views/series?bucket=day&from={from}&to={to}",
            encode(&item)
        ));
        send(api.http.get(url))
    };
    let before = series(old - day, old + day).await;
    assert_eq!(
        before.body["points"][1],
        json!({"t": old, "views": 0}),
        "Redis has dropped the day"
    );

    assert_eq!(api.reconcile().await.body["events_applied"], 3);
    let after = series(old - day, old + day).await;
    assert_eq!(after.status, 200);
    assert_eq!(
        after.body["points"],
        json!([
            {"t": old - day, "views": 0},
            {"t": old, "views": 3},
            {"t": old + day, "views": 0}
        ])
    );
}
