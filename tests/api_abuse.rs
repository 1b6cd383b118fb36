//! Bot farms through visitor tokens, end to end: what one client network can
//! mint and write, measured and printed (`--nocapture` shows the figures).

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{Gateway, Redis, Reply, Worker, all_at_once, send, token_for, unique};

/// Sleeps past the next minute boundary when one is close, so a burst lands
/// inside one fixed window.
async fn start_of_a_window() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let into_minute = now.as_secs() % 60;
    if into_minute > 40 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
}

/// Sleeps into the next clock hour when this one ends within a minute, so a
/// budget is spent inside one hourly window.
async fn not_at_the_end_of_an_hour() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let into_hour = now.as_secs() % 3_600;
    if into_hour > 3_540 {
        tokio::time::sleep(Duration::from_secs(3_601 - into_hour)).await;
    }
}

async fn mint(http: &reqwest::Client, worker: &Worker, ip: &str) -> Reply {
    send(
        http.post(worker.url("/v1/visitors"))
            .header("CF-Connecting-IP", ip),
    )
    .await
}

/// Mints from `ips` in turn until the first refusal; how many were minted.
async fn mint_until_refused(
    http: &reqwest::Client,
    worker: &Worker,
    ips: impl Fn(usize) -> String,
    cap: usize,
) -> usize {
    for n in 0..cap {
        let reply = mint(http, worker, &ips(n)).await;
        if reply.status == 429 {
            assert_eq!(reply.body["error"]["code"], "rate_limited");
            return n;
        }
        assert_eq!(reply.status, 201, "{:?}", reply.body);
    }
    cap
}

#[tokio::test]
async fn one_ipv4_address_or_ipv6_64_mints_at_most_its_hourly_budget() {
    let redis = Redis::start();
    let gateway = Gateway::start(&redis.url());
    let http = reqwest::Client::new();
    not_at_the_end_of_an_hour().await;

    // A small budget, so that the test spends a whole hour's worth of it.
    let small = Worker::start(
        &gateway.url(),
        &[
            ("RATE_LIMIT_PER_MINUTE", "1000"),
            ("VISITOR_MINTS_PER_HOUR", "25"),
            ("KEY_PREFIX", "small"),
        ],
    );
    let ipv4 = mint_until_refused(&http, &small, |_| "198.51.100.7".into(), 100).await;
    // Every token from a different address of one /64: rotating does not help.
    let ipv6 =
        mint_until_refused(&http, &small, |n| format!("2001:db8:7:7::{:x}", n + 1), 100).await;
    println!("VISITOR_MINTS_PER_HOUR=25: one IPv4 minted {ipv4}, one IPv6 /64 minted {ipv6}");
    assert_eq!((ipv4, ipv6), (25, 25));
    // The refusal lasts until the clock hour ends, and says so.
    let refused = mint(&http, &small, "2001:db8:7:7:ffff::1").await;
    assert_eq!(refused.status, 429);
    let retry: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=3_600).contains(&retry), "{retry}");
    // Other networks are not affected.
    assert_eq!(mint(&http, &small, "198.51.100.8").await.status, 201);
    assert_eq!(mint(&http, &small, "2001:db8:7:8::1").await.status, 201);

    // The default budget, measured with the minute limit out of the way.
    let default = Worker::start(
        &gateway.url(),
        &[
            ("RATE_LIMIT_PER_MINUTE", "100000"),
            ("KEY_PREFIX", "default"),
        ],
    );
    let ipv4 = mint_until_refused(&http, &default, |_| "203.0.113.50".into(), 2_000).await;
    let ipv6 = mint_until_refused(
        &http,
        &default,
        |n| format!("2001:db8:50:50:{:x}::1", n + 1),
        2_000,
    )
    .await;
    println!(
        "defaults (VISITOR_MINTS_PER_HOUR=500, RATE_LIMIT_PER_MINUTE=120 per minute): \
         one IPv4 mints {ipv4} per clock hour, one IPv6 /64 mints {ipv6}"
    );
    assert_eq!((ipv4, ipv6), (500, 500));
}

/// 300 visitor identities, all on one network, each liking `item` once, 30
/// at a time, within one minute; how many were admitted, and the likes the
/// item has afterwards.
async fn farm_likes(
    http: &reqwest::Client,
    worker: &Worker,
    item: &str,
    ip: impl Fn(usize) -> String,
) -> (usize, u64) {
    start_of_a_window().await;
    let started = std::time::Instant::now();
    let mut replies = Vec::new();
    for chunk in (0..300).collect::<Vec<_>>().chunks(30) {
        replies.extend(
            all_at_once(chunk.iter().map(|&n| {
                let request = http
                    .put(worker.url(&format!("/v1/items/{item}/like")))
                    .header("CF-Connecting-IP", ip(n))
                    .bearer_auth(token_for(&format!("anon:farm-{n}-{item}")));
                send(request)
            }))
            .await,
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "one minute window"
    );
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let other: Vec<_> = replies
        .iter()
        .filter(|r| r.status != 200 && r.status != 429)
        .map(|r| (r.status, r.body.clone()))
        .collect();
    assert!(other.is_empty(), "{other:?}");
    let read = send(http.get(worker.url(&format!("/v1/items/{item}")))).await;
    (admitted, read.body["likes"].as_u64().expect("likes"))
}

#[tokio::test]
async fn three_hundred_visitor_identities_on_one_network_add_at_most_the_network_limit() {
    let redis = Redis::start();
    let gateway = Gateway::start(&redis.url());
    let http = reqwest::Client::new();

    // RATE_LIMIT_PER_MINUTE=10: each visitor 10 writes a minute, the network 100.
    let tight = Worker::start(
        &gateway.url(),
        &[("RATE_LIMIT_PER_MINUTE", "10"), ("KEY_PREFIX", "tight")],
    );
    let item = unique("farmed");
    let (admitted, likes) = farm_likes(&http, &tight, &item, |_| "198.51.100.9".into()).await;
    println!(
        "RATE_LIMIT_PER_MINUTE=10 (network 100): 300 visitors on one IPv4 added {likes} likes in a minute"
    );
    assert_eq!((admitted, likes), (100, 100));

    let item6 = unique("farmed6");
    let (admitted, likes) = farm_likes(&http, &tight, &item6, |n| {
        format!("2001:db8:9:9::{:x}", n + 1)
    })
    .await;
    println!(
        "RATE_LIMIT_PER_MINUTE=10 (network 100): 300 visitors across one IPv6 /64 added {likes} likes"
    );
    assert_eq!((admitted, likes), (100, 100));

    // A site-signed identity on the same network is exempt; a visitor on
    // another network has its own budget.
    let site = send(
        http.put(tight.url(&format!("/v1/items/{item}/like")))
            .header("CF-Connecting-IP", "198.51.100.9")
            .bearer_auth(token_for("site-user-1")),
    )
    .await;
    assert_eq!(site.status, 200, "{:?}", site.body);
    let elsewhere = send(
        http.put(tight.url(&format!("/v1/items/{item}/like")))
            .header("CF-Connecting-IP", "198.51.100.10")
            .bearer_auth(token_for("anon:elsewhere")),
    )
    .await;
    assert_eq!(elsewhere.status, 200, "{:?}", elsewhere.body);

    // With the defaults (120 per visitor, 1200 per network) 300 visitors fit.
    let defaults = Worker::start(&gateway.url(), &[("KEY_PREFIX", "defaults")]);
    let item = unique("farmed-defaults");
    let (_, likes) = farm_likes(&http, &defaults, &item, |_| "198.51.100.11".into()).await;
    println!(
        "defaults (network 1200 a minute): 300 visitors on one IPv4 added {likes} likes in a minute"
    );
    assert_eq!(likes, 300);
}

#[tokio::test]
async fn anonymous_views_from_one_ipv6_64_are_one_viewer() {
    let redis = Redis::start();
    let gateway = Gateway::start(&redis.url());
    let worker = Worker::start(&gateway.url(), &[]);
    let http = reqwest::Client::new();
    let item = unique("v6-views");
    let view = |ip: &str| {
        send(
            http.post(worker.url(&format!("/v1/items/{item}/views")))
                .header("CF-Connecting-IP", ip)
                .header("User-Agent", "Firefox"),
        )
    };
    assert_eq!(view("2001:db8:5:5::1").await.body["counted"], true);
    assert_eq!(view("2001:db8:5:5:abcd::2").await.body["counted"], false);
    assert_eq!(view("2001:db8:5:6::1").await.body["counted"], true);
}
