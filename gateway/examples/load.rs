//! A small HTTP load generator for `scripts/bench-gateway.sh`: keeps N
//! keep-alive connections busy with one JSON POST at a time each, for a fixed
//! time, and prints requests per second. Loopback only, bounded in time.
//!
//! `load URL TOKEN CONNECTIONS SECONDS BODY_TEMPLATE` — every `__rand_int__`
//! in the template becomes a random number below 10000, as in `redis-benchmark -r`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Distinct request bodies generated up front, so the client spends its time sending.
const BODIES: usize = 4096;
const WARMUP: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, token, connections, seconds, template] = args.as_slice() else {
        eprintln!("usage: load URL TOKEN CONNECTIONS SECONDS BODY_TEMPLATE");
        std::process::exit(2);
    };
    let uri: hyper::Uri = url.parse().expect("a URL");
    assert!(
        matches!(uri.host(), Some("127.0.0.1" | "localhost")),
        "loopback only"
    );
    let connections: usize = connections.parse().expect("a number of connections");
    let duration = Duration::from_secs(seconds.parse().expect("a number of seconds"));
    let bodies = Arc::new(bodies(template));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let mut tasks = Vec::new();
    for n in 0..connections {
        let (uri, token, bodies) = (uri.clone(), format!("Bearer {token}"), bodies.clone());
        let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap_or(80));
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(connection);
            let mut i = n * 7919;
            while !stop.load(Ordering::Relaxed) {
                i = (i + 1) % BODIES;
                let request = hyper::Request::post(uri.path())
                    .header("host", "127.0.0.1")
                    .header("authorization", &token)
                    .header("content-type", "application/json")
                    .body(Full::new(bodies[i].clone()))
                    .unwrap();
                let ok = match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.into_body().collect().await.map(|b| b.to_bytes());
                        status == 200 && body.is_ok_and(|b| b.starts_with(b"{\"result\""))
                    }
                    Err(_) => false,
                };
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if sender.ready().await.is_err() {
                        break;
                    }
                }
            }
        }));
    }

    tokio::time::sleep(WARMUP).await;
    let (start_count, started) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(duration).await;
    let (end_count, elapsed) = (done.load(Ordering::Relaxed), started.elapsed());
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let requests = end_count - start_count;
    let failures = failed.load(Ordering::Relaxed);
    println!(
        "{:.0} requests/s ({requests} requests in {:.1} s, {failures} failed)",
        requests as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    if failures > 0 {
        std::process::exit(1);
    }
}

/// Request bodies from the template, with pseudo-random numbers (xorshift; no
/// need for anything better here).
fn bodies(template: &str) -> Vec<Bytes> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % 10_000
    };
    (0..BODIES)
        .map(|_| {
            let mut body = String::new();
            let mut rest = template;
            while let Some(at) = rest.find("__rand_int__") {
                body.push_str(&rest[..at]);
                body.push_str(&next().to_string());
                rest = &rest[at + "__rand_int__".len()..];
            }
            body.push_str(rest);
            Bytes::from(body)
        })
        .collect()
}
