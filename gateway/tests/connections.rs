//! Slow and idle clients: header and idle deadlines, and the connection cap,
//! driven with raw TCP.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{Answer, Gateway, Redis, TOKEN, run, send};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn gateway(redis: &Redis, tune: impl FnOnce(&mut tally_gateway::Config)) -> Gateway {
    let mut config = tally_gateway::Config::new(redis.url(), TOKEN);
    tune(&mut config);
    Gateway::start_with(config)
}

/// Reads until the peer closes (or `within` passes); everything read.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

async fn metrics(gateway: &Gateway) -> String {
    metrics_answer(gateway).await.text
}

async fn metrics_answer(gateway: &Gateway) -> Answer {
    send(
        reqwest::Client::new()
            .get(gateway.url("/metrics"))
            .bearer_auth(TOKEN),
    )
    .await
}

const REQUEST: &[u8] =
    b"GET /ping HTTP/1.1\r\nhost: x\r\nauthorization: Bearer gateway-test-token\r\n\r\n";

#[tokio::test]
async fn half_request_lines_are_closed_after_the_header_timeout_while_others_are_served() {
    let redis = Redis::start();
    let g = gateway(&redis, |c| c.header_timeout = Duration::from_secs(1));
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(g.addr).await.unwrap();
        stream.write_all(b"GET /get/k HTT").await.unwrap();
        slow.push(stream);
    }
    // Meanwhile a normal client is served.
    assert_eq!(
        run(&g, json!(["PING"])).await.json(),
        json!({"result": "PONG"})
    );
    let started = Instant::now();
    for stream in &mut slow {
        let closed = read_to_close(stream, Duration::from_secs(20)).await;
        assert_eq!(closed.as_deref(), Some(""), "closed without an answer");
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let text = metrics(&g).await;
    let line = text
        .lines()
        .find(|l| l.starts_with(r#"tally_gateway_connection_timeouts_total{reason="header"}"#))
        .unwrap_or_else(|| panic!("{text}"));
    let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 50, "{line}");
}

#[tokio::test]
async fn connections_past_the_cap_get_503_and_are_closed_and_service_resumes() {
    let redis = Redis::start();
    let g = gateway(&redis, |c| c.max_connections = 4);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(g.addr).await.unwrap());
    }
    // The four are accepted before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fifth = TcpStream::connect(g.addr).await.unwrap();
    let answer = read_to_close(&mut fifth, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("maximum of 4 connections"), "{answer}");

    held.pop();
    // The gateway notices the closed connection in its own time; until then
    // a new connection is a fifth one and refused too, which the count of
    // refusals must show.
    let (text, refused_meanwhile) = until_admitted(|| metrics_answer(&g)).await;
    assert!(
        text.lines().any(|l| l
            == format!(
                "tally_gateway_connections_refused_total {}",
                1 + refused_meanwhile
            )),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "tally_gateway_connections 4"),
        "three held and this one: {text}"
    );
    drop(held);
    let (pong, _) = until_admitted(|| run(&g, json!(["PING"]))).await;
    assert_eq!(pong, r#"{"result":"PONG"}"#);
}

/// The text of the first answer of `request` that is not a refusal (`503`,
/// while the gateway has yet to see connections closed), and how many
/// refusals came before it.
async fn until_admitted<F: Future<Output = Answer>>(request: impl Fn() -> F) -> (String, u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    loop {
        let answer = request().await;
        if answer.status != 503 {
            assert_eq!(answer.status, 200, "{}", answer.text);
            return (answer.text, refused);
        }
        refused += 1;
        assert!(
            Instant::now() < deadline,
            "still refused after 10 s: {}",
            answer.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_before() {
    let redis = Redis::start();
    let g = gateway(&redis, |c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(3);
    });
    let mut stream = TcpStream::connect(g.addr).await.unwrap();
    stream.write_all(REQUEST).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // Past the header timeout, within the idle one: still open.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stream.write_all(REQUEST).await.unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    let started = Instant::now();
    let closed = read_to_close(&mut stream, Duration::from_secs(20)).await;
    assert_eq!(closed.as_deref(), Some(""));
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "not before the idle timeout: {:?}",
        started.elapsed()
    );
    let text = metrics(&g).await;
    assert!(
        text.lines()
            .any(|l| l == r#"tally_gateway_connection_timeouts_total{reason="idle"} 1"#),
        "{text}"
    );
}
