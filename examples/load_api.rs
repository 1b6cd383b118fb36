//! Load generator for `scripts/bench-api.sh`: keeps N keep-alive connections
//! busy with one worker API request at a time each, for a fixed time after a
//! one-second warm-up, and prints one line of `name=value` figures: requests
//! and requests/s in the measured window, failures (transport errors and
//! unexpected statuses), requests the server closed the connection on before
//! answering (`closed`; the connection is opened again), how many answers
//! showed a write (`marked`), and the CPU time the server's process tree spent
//! in that same window. Loopback only, bounded in time.
//!
//! `load_api URL PHASE CONNECTIONS SECONDS JWT_SECRET TAG [CPU_PID]`, where `PHASE` is
//! - `notfound`: `GET /bench/unknown`, expecting `404` (no I/O: the floor);
//! - `healthz`: `GET /healthz` (one Redis `PING` round trip);
//! - `like` / `unlike`: `PUT` / `DELETE /v1/items/{item}/like`, each connection
//!   with its own identity `{TAG}-u{n}` walking its own sequence of items, so
//!   every like is a new (identity, item) pair and writes; an `unlike` phase with
//!   the same `TAG` walks the same sequence and removes those likes
//!   (`marked` counts answers with `"changed":true`); a `like` phase keeps
//!   liking, unmeasured, for as long again after its window, so the unlike
//!   phase has likes to remove even when it runs faster;
//! - `view`: `POST /v1/items/{item}/views` with identity `{TAG}-v{n}` over its
//!   own sequence of items, so every view is a new (viewer, item) pair and is
//!   counted (`marked` counts `"counted":true`);
//! - `read`: `GET /v1/items/{item}` without a token;
//! - `batch`: `GET /v1/items?ids=...` with 20 consecutive items, without a token.
//!
//! `CPU_PID`: the process whose tree's user+system CPU time is read from
//! `/proc` at the start and the end of the measured window (`cpu_ms`).
//! `total` and `total_marked` count every expected answer of the run, warm-up
//! included, for figures taken around the whole run (Redis commands).

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
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use tally::token::{Claims, sign};

    /// Distinct items the phases walk over; far more than one connection reaches in a phase.
    const ITEMS: usize = 100_000;
    /// Items per batch read.
    const BATCH: usize = 20;
    /// Traffic before the measured window, so every connection is open and warm.
    const WARMUP: Duration = Duration::from_secs(1);

    /// What one phase sends.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Phase {
        NotFound,
        Healthz,
        Like,
        Unlike,
        View,
        Read,
        Batch,
    }

    impl Phase {
        fn parse(name: &str) -> Option<Phase> {
            Some(match name {
                "notfound" => Phase::NotFound,
                "healthz" => Phase::Healthz,
                "like" => Phase::Like,
                "unlike" => Phase::Unlike,
                "view" => Phase::View,
                "read" => Phase::Read,
                "batch" => Phase::Batch,
                _ => return None,
            })
        }

        /// The text an answer shows when the request wrote something.
        fn marker(self) -> Option<&'static [u8]> {
            match self {
                Phase::Like | Phase::Unlike => Some(br#""changed":true"#),
                Phase::View => Some(br#""counted":true"#),
                _ => None,
            }
        }
    }

    /// Tallies shared by every connection.
    #[derive(Default)]
    struct Counts {
        ok: AtomicU64,
        marked: AtomicU64,
        failed: AtomicU64,
        /// Requests the server closed the connection on before answering.
        closed: AtomicU64,
        /// The status of the first unexpected answer (0: none yet), for the report.
        first_status: AtomicU64,
        /// Whether a failed exchange was already described on stderr (the first only).
        told: AtomicBool,
    }

    impl Counts {
        /// Describes the first exchange that failed without an answer (stderr).
        fn tell(&self, what: &str, error: &dyn std::fmt::Display) {
            if !self.told.swap(true, Ordering::Relaxed) {
                eprintln!("load_api: first failed exchange: {what}: {error}");
            }
        }
    }

    #[tokio::main]
    pub async fn main() {
        let args: Vec<String> = std::env::args().collect();
        let (url, phase, connections, seconds, secret, tag, cpu_pid) = match args.as_slice() {
            [_, url, phase, connections, seconds, secret, tag] => {
                (url, phase, connections, seconds, secret, tag, None)
            }
            [_, url, phase, connections, seconds, secret, tag, pid] => (
                url,
                phase,
                connections,
                seconds,
                secret,
                tag,
                Some(pid.parse::<u32>().expect("a process id")),
            ),
            _ => {
                eprintln!(
                    "usage: load_api URL notfound|healthz|like|unlike|view|read|batch \
                     CONNECTIONS SECONDS JWT_SECRET TAG [CPU_PID]"
                );
                std::process::exit(2);
            }
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
        let phase = Phase::parse(phase).unwrap_or_else(|| panic!("unknown phase {phase}"));
        let connections: usize = connections.parse().expect("a number of connections");
        let duration = Duration::from_secs(seconds.parse().expect("a number of seconds"));
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs() as i64
            + 3600;
        let user = if phase == Phase::View { "v" } else { "u" };

        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for n in 0..connections {
            let claims = Claims {
                sub: format!("{tag}-{user}{n}"),
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
        let cpu_start = cpu_pid.map(tree_cpu_ms);
        let (start_ok, start_marked, started) = (
            counts.ok.load(Ordering::Relaxed),
            counts.marked.load(Ordering::Relaxed),
            Instant::now(),
        );
        tokio::time::sleep(duration).await;
        let (end_ok, end_marked, elapsed) = (
            counts.ok.load(Ordering::Relaxed),
            counts.marked.load(Ordering::Relaxed),
            started.elapsed(),
        );
        let cpu_end = cpu_pid.map(tree_cpu_ms);
        if phase == Phase::Like {
            // Unmeasured likes past the window, so that an unlike phase that
            // runs faster than this one still finds a like to remove.
            tokio::time::sleep(duration).await;
        }
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let requests = end_ok - start_ok;
        let (total, total_marked) = (
            counts.ok.load(Ordering::Relaxed),
            counts.marked.load(Ordering::Relaxed),
        );
        let failures = counts.failed.load(Ordering::Relaxed);
        let closed = counts.closed.load(Ordering::Relaxed);
        let cpu_ms = match (cpu_start, cpu_end) {
            (Some(a), Some(b)) => format!("{:.0}", b - a),
            _ => "-".to_owned(),
        };
        println!(
            "requests={requests} seconds={:.2} rps={:.0} failed={failures} closed={closed} marked={} \
             total={total} total_marked={total_marked} cpu_ms={cpu_ms} first_status={}",
            elapsed.as_secs_f64(),
            requests as f64 / elapsed.as_secs_f64(),
            end_marked - start_marked,
            counts.first_status.load(Ordering::Relaxed),
        );
        // A phase where nothing succeeded measured nothing: that is a failure too.
        // So is a server that closes more than one connection in 1,000 requests.
        if failures > 0 || total == 0 || closed * 1000 > total {
            std::process::exit(1);
        }
    }

    /// One keep-alive connection sending requests back to back until `stop`.
    /// When the server closes it before answering a request (workerd does, a few
    /// times in 10,000 at thousands of requests/s), that is counted in `closed`
    /// and a new connection goes on, as wrk does; the request is not sent again.
    async fn connection(
        addr: &str,
        phase: Phase,
        n: usize,
        authorization: &str,
        counts: &Counts,
        stop: &AtomicBool,
    ) {
        // Each connection walks its own run of items, starting far from the others'.
        let mut item = n * 7919 % ITEMS;
        while !stop.load(Ordering::Relaxed) {
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
            exchanges(&mut sender, phase, &mut item, authorization, counts, stop).await;
        }
    }

    /// Requests on one open connection until `stop`, or until the server closed it.
    async fn exchanges(
        sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        phase: Phase,
        item: &mut usize,
        authorization: &str,
        counts: &Counts,
        stop: &AtomicBool,
    ) {
        let expected = if phase == Phase::NotFound { 404 } else { 200 };
        while !stop.load(Ordering::Relaxed) {
            let (method, uri, token) = match phase {
                Phase::NotFound => ("GET", "/bench/unknown".to_owned(), false),
                Phase::Healthz => ("GET", "/healthz".to_owned(), false),
                Phase::Like => ("PUT", format!("/v1/items/bench-{item}/like"), true),
                Phase::Unlike => ("DELETE", format!("/v1/items/bench-{item}/like"), true),
                Phase::View => ("POST", format!("/v1/items/bench-{item}/views"), true),
                Phase::Read => ("GET", format!("/v1/items/bench-{item}"), false),
                Phase::Batch => {
                    let ids: Vec<String> = (0..BATCH)
                        .map(|i| format!("bench-{}", (*item + i) % ITEMS))
                        .collect();
                    ("GET", format!("/v1/items?ids={}", ids.join(",")), false)
                }
            };
            let mut request = hyper::Request::builder()
                .method(method)
                .uri(uri)
                .header("host", "127.0.0.1");
            if token {
                request = request.header("authorization", authorization);
            }
            let request = request
                .body(Empty::<Bytes>::new())
                .expect("a valid request");
            *item = (*item + 1) % ITEMS;
            let answer = match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // The whole body must arrive, or the request did not complete.
                    match response.into_body().collect().await {
                        Ok(body) => Some((status, body.to_bytes())),
                        Err(error) => {
                            counts.tell("reading the body", &error);
                            None
                        }
                    }
                }
                Err(error) if error.is_incomplete_message() || error.is_canceled() => {
                    // Closed by the server with no answer begun: reconnect.
                    counts.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(error) => {
                    counts.tell("sending the request", &error);
                    None
                }
            };
            match answer {
                Some((status, body)) if status == expected => {
                    counts.ok.fetch_add(1, Ordering::Relaxed);
                    if phase
                        .marker()
                        .is_some_and(|m| body.windows(m.len()).any(|w| w == m))
                    {
                        counts.marked.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                Some((status, _)) => {
                    let _ = counts.first_status.compare_exchange(
                        0,
                        u64::from(status),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                None => {}
            }
            counts.failed.fetch_add(1, Ordering::Relaxed);
            if sender.ready().await.is_err() {
                return;
            }
        }
    }

    /// User+system CPU milliseconds of `root` and all its descendants, from
    /// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of 1/100 s: Linux's
    /// `USER_HZ` on every architecture it exports to user space).
    fn tree_cpu_ms(root: u32) -> f64 {
        let mut parent_and_ticks: HashMap<u32, (u32, u64)> = HashMap::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // The command name may hold spaces; the fields after it do not.
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    continue;
                };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // `rest` starts at field 3 (state): ppid is field 4, utime 14, stime 15.
                let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
                if let (Some(ppid), Some(utime), Some(stime)) = (field(4), field(14), field(15)) {
                    parent_and_ticks.insert(pid, (ppid as u32, utime + stime));
                }
            }
        }
        let mut ticks = 0;
        let mut todo = vec![root];
        while let Some(pid) = todo.pop() {
            ticks += parent_and_ticks.get(&pid).map_or(0, |&(_, t)| t);
            todo.extend(
                parent_and_ticks
                    .iter()
                    .filter(|&(_, &(ppid, _))| ppid == pid)
                    .map(|(&child, _)| child),
            );
        }
        ticks as f64 * 10.0
    }
}
