//! Test support for the gateway: a real `redis-server` on a free loopback port
//! and the gateway served in-process in front of it, both stopped on drop.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tempfile::TempDir;

/// The full token of test gateways.
pub const TOKEN: &str = "gateway-test-token";
/// The read-only token of test gateways.
pub const READ_ONLY_TOKEN: &str = "gateway-test-read-only";

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A `redis-server` without persistence, killed on drop.
pub struct Redis {
    pub port: u16,
    dir: TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// With extra `redis-server` arguments, such as `["--requirepass", "pw"]`.
    pub fn start_with(extra: &[&str]) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "redis-server did not start"
        );
        self.child = Some(child);
    }

    /// One command through `redis-cli`, raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli_at(self.port, args)
    }
}

/// One command through `redis-cli` to the server on `port`, raw output; for
/// a thread that cannot borrow the [`Redis`].
pub fn cli_at(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The gateway, in-process on a runtime of its own.
pub struct Gateway {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Gateway {
    /// A gateway with the test tokens and default limits.
    pub fn start(redis_url: &str) -> Gateway {
        let mut config = tally_gateway::Config::new(redis_url, TOKEN);
        config.read_only_token = Some(READ_ONLY_TOKEN.to_owned());
        Gateway::start_with(config)
    }

    pub fn start_with(config: tally_gateway::Config) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    served = tally_gateway::serve(listener, config, std::future::pending()) => served.unwrap(),
                    _ = stopped => {}
                }
            });
            runtime.shutdown_background();
        });
        Gateway {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Redis and a gateway in front of it.
pub struct Both {
    pub gateway: Gateway,
    pub redis: Redis,
}

impl Both {
    pub fn start() -> Both {
        let redis = Redis::start();
        let gateway = Gateway::start(&redis.url());
        Both { gateway, redis }
    }

    pub fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }
}

/// An HTTP answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        headers,
        text,
    }
}

/// POSTs a JSON body to `path` with the full token.
pub async fn post(gateway: &Gateway, path: &str, body: Json) -> Answer {
    let client = reqwest::Client::new();
    send(
        client
            .post(gateway.url(path))
            .bearer_auth(TOKEN)
            .json(&body),
    )
    .await
}

/// Runs one command through `POST /` with the full token.
pub async fn run(gateway: &Gateway, command: Json) -> Answer {
    post(gateway, "/", command).await
}

/// A key prefix no other test uses.
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
