//! Load generator for `scripts/bench-api.sh`: keeps N keep-alive connections
//! busy with one worker API request at a time each, for a fixed time, and
//! prints requests per second and how many requests failed (transport errors
//! and non-2xx answers). Loopback only, bounded in time.
//!
//! `load_api URL PHASE CONNECTIONS SECONDS JWT_SECRET`, where `PHASE` is
//! - `healthz`: `GET /healthz` (one Redis `PING` round trip), the baseline;
//! - `likes`: `PUT /v1/items/{item}/like`, each connection with its own
//!   identity token, cycling over [`ITEMS`] items;
//! - `reads`: `GET /v1/items/{item}` over the same items, without a token.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

// Examples are built for wasm32 too by `cargo clippy --target wasm32-unknown-unknown
// --all-targets`; there is nothing to run there.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use tally::token::{Claims, sign};

    /// Distinct items the likes and reads cycle over.
    const ITEMS: usize = 1000;
    /// Traffic before the measured window, so every connection is open and warm.
    const WARMUP: Duration = Duration::from_secs(1);

    /// What one phase sends.
    #[derive(Clone, Copy)]
    enum Phase {
        Healthz,
        Likes,
        Reads,
    }

    /// Tallies shared by every connection.
    #[derive(Default)]
    struct Counts {
        ok: AtomicU64,
        failed: AtomicU64,
        /// The status of the first non-2xx answer (0: none yet), for the report.
        first_status: AtomicU64,
    }

    #[tokio::main]
    pub async fn main() {
        let args: Vec<String> = std::env::args().collect();
        let [_, url, phase, connections, seconds, secret] = args.as_slice() else {
            eprintln!("usage: load_api URL healthz|likes|reads CONNECTIONS SECONDS JWT_SECRET");
            std::process::exit(2);
        };
        let uri: hyper::Uri = url.parse().expect("a URL");
        assert!(
            matches!(uri.host(), Some("127.0.0.1" | "localhost")),
            "loopback only"
        );
        let addr = format!(
            "{}:{}",
            uri.host().unwrap_or("127.0.0.1"),
            uri.port_u16().unwrap_or(80)
        );
        let phase = match phase.as_str() {
            "healthz" => Phase::Healthz,
            "likes" => Phase::Likes,
            "reads" => Phase::Reads,
            other => panic!("unknown phase {other}: healthz, likes or reads"),
        };
        let connections: usize = connections.parse().expect("a number of connections");
        let duration = Duration::from_secs(seconds.parse().expect("a number of seconds"));
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs() as i64
            + 3600;

        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for n in 0..connections {
            let claims = Claims {
                sub: format!("bench-user-{n}"),
                exp,
                count_views: true,
            };
            let authorization = format!("Bearer {}", sign(&claims, secret.as_bytes()));
            let (addr, counts, stop) = (addr.clone(), counts.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                connection(&addr, phase, n, &authorization, &counts, &stop).await;
            }));
        }

        tokio::time::sleep(WARMUP).await;
        let (start_count, started) = (counts.ok.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(duration).await;
        let (end_count, elapsed) = (counts.ok.load(Ordering::Relaxed), started.elapsed());
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let requests = end_count - start_count;
        let failures = counts.failed.load(Ordering::Relaxed);
        let first_status = counts.first_status.load(Ordering::Relaxed);
        let status_note = if first_status == 0 {
            String::new()
        } else {
            format!(", first non-2xx: {first_status}")
        };
        println!(
            "{:.0} requests/s ({requests} requests in {:.1} s, {failures} failed{status_note})",
            requests as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        if failures > 0 {
            std::process::exit(1);
        }
    }

    /// One keep-alive connection sending requests back to back until `stop`.
    async fn connection(
        addr: &str,
        phase: Phase,
        n: usize,
        authorization: &str,
        counts: &Counts,
        stop: &AtomicBool,
    ) {
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        tokio::spawn(conn);
        // Connections start at different items so they rarely hit the same one together.
        let mut item = n * 7919;
        while !stop.load(Ordering::Relaxed) {
            item = (item + 1) % ITEMS;
            let request = match phase {
                Phase::Healthz => hyper::Request::get("/healthz"),
                Phase::Likes => hyper::Request::put(format!("/v1/items/bench-{item}/like"))
                    .header("authorization", authorization),
                Phase::Reads => hyper::Request::get(format!("/v1/items/bench-{item}")),
            }
            .header("host", "127.0.0.1")
            .body(Empty::<Bytes>::new())
            .expect("a valid request");
            let status = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status();
                    // The whole body must arrive, or the request did not complete.
                    match response.into_body().collect().await {
                        Ok(_) => Some(status),
                        Err(_) => None,
                    }
                }
                Err(_) => None,
            };
            if status.is_some_and(|s| s.is_success()) {
                counts.ok.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            counts.failed.fetch_add(1, Ordering::Relaxed);
            if let Some(status) = status {
                let _ = counts.first_status.compare_exchange(
                    0,
                    u64::from(status.as_u16()),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            if sender.ready().await.is_err() {
                return;
            }
        }
    }
}
