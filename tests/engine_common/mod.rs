//! Shared setup of the engine tests: a real `redis-server` behind the real
//! gateway, an engine under a key prefix of its own, and a record of every
//! REST round trip the engine makes.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tally::engine::{Engine, Settings};
use tally::item::ItemId;
use tally::outbox::{self, Event};
use tally::rest::{RestClient, RestObserver, RoundTrip};

use crate::support::{GATEWAY_TOKEN, Gateway, Redis};

/// Every round trip and `NOSCRIPT` fallback, in order.
#[derive(Default)]
pub struct Trips {
    pub log: Mutex<Vec<(String, Option<&'static str>, bool)>>,
    pub noscript: Mutex<Vec<&'static str>>,
}

impl Trips {
    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The commands sent since the log was last taken.
    pub fn take(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .drain(..)
            .map(|(c, _, _)| c)
            .collect()
    }

    /// Forgets everything seen so far.
    pub fn reset(&self) {
        self.log.lock().unwrap().clear();
        self.noscript.lock().unwrap().clear();
    }

    pub fn noscripts(&self) -> usize {
        self.noscript.lock().unwrap().len()
    }
}

impl RestObserver for Trips {
    fn round_trip(&self, trip: &RoundTrip<'_>) {
        self.log
            .lock()
            .unwrap()
            .push((trip.command.to_owned(), trip.script, trip.ok));
    }

    fn noscript_fallback(&self, script: &'static str) {
        self.noscript.lock().unwrap().push(script);
    }
}

/// Redis, the gateway and one engine over them.
pub struct Setup {
    pub engine: Engine,
    pub trips: Arc<Trips>,
    pub gateway: Gateway,
    pub redis: Redis,
}

impl Setup {
    /// A fresh Redis and gateway; the engine's prefix is unique to this test.
    pub fn start(settings: Settings) -> Setup {
        let redis = Redis::start();
        let gateway = Gateway::start(&redis.url());
        let trips = Arc::new(Trips::default());
        let engine = Engine::new(
            client(&gateway, trips.clone()),
            Settings {
                prefix: unique("t"),
                ..settings
            },
        );
        Setup {
            engine,
            trips,
            gateway,
            redis,
        }
    }

    /// Loads every script, as after a first use, so that no call below pays
    /// a NOSCRIPT fallback (a fresh Redis would make each first call two trips).
    pub async fn load_scripts(&self) {
        for script in tally::scripts::ALL {
            self.engine
                .rest()
                .command(&["SCRIPT", "LOAD", script.source()])
                .await
                .unwrap();
        }
    }

    /// Another engine on the same Redis and key prefix with other settings, as
    /// after a restart with another configuration.
    pub fn engine_with(&self, settings: Settings) -> Engine {
        Engine::new(
            client(&self.gateway, self.trips.clone()),
            Settings {
                prefix: self.engine.settings().prefix.clone(),
                ..settings
            },
        )
    }

    /// Loads `script` straight into Redis (not through the gateway) and
    /// returns the SHA1 Redis knows it by, for `EVALSHA`s sent with
    /// `redis-cli --pipe`: Redis refuses the `allow-key-locking` line, which
    /// the gateway strips (docs/gateway.md), so Redis never holds the flagged
    /// body whose SHA1 the engine sends.
    pub fn load_direct(&self, script: &tally::scripts::Script) -> String {
        let source = script.source();
        let body = source.split_once('\n').map_or(source, |(_, rest)| rest);
        self.cli(&["SCRIPT", "LOAD", body])
    }

    /// Streams `commands` into Redis with `redis-cli --pipe` (for benchmarks:
    /// a million REST round trips would measure the gateway, not the data).
    /// An `EVALSHA` (of the like script) is sent with the SHA1 of the body
    /// Redis holds ([`Setup::load_direct`]). Any error fails the test.
    pub fn pipe(&self, commands: impl Iterator<Item = Vec<String>>) {
        let like = self.load_direct(&tally::scripts::LIKE);
        let mut cli = Command::new("redis-cli")
            .args(["-p", &self.redis.port.to_string(), "--pipe"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli");
        {
            let mut out = BufWriter::new(cli.stdin.take().unwrap());
            for mut command in commands {
                if command[0] == "EVALSHA" {
                    command[1].clone_from(&like);
                }
                write!(out, "*{}\r\n", command.len()).unwrap();
                for arg in &command {
                    write!(out, "${}\r\n{arg}\r\n", arg.len()).unwrap();
                }
            }
        }
        let output = cli.wait_with_output().unwrap();
        let summary = String::from_utf8_lossy(&output.stdout);
        assert!(summary.contains("errors: 0"), "redis-cli --pipe: {summary}");
    }

    /// Every entry of `item`'s outbox stream, parsed; an unreadable one fails the test.
    pub async fn events(&self, item: &ItemId) -> Vec<Event> {
        let shard = outbox::shard(item);
        let key = self.engine.keys().outbox(shard);
        let answer = self
            .engine
            .rest()
            .command(&["XRANGE", key.as_str(), "-", "+"])
            .await
            .unwrap();
        answer
            .as_array()
            .unwrap_or_else(|| panic!("XRANGE answered {answer}"))
            .iter()
            .map(|entry| Event::parse(shard, entry).unwrap())
            .collect()
    }

    /// A key of this test's engine, in `redis-cli` form.
    pub fn cli(&self, args: &[&str]) -> String {
        self.redis.cli(args)
    }
}

pub fn client(gateway: &Gateway, trips: Arc<Trips>) -> RestClient {
    RestClient::new(gateway.url(), GATEWAY_TOKEN, Duration::from_secs(10)).with_observer(trips)
}

/// A name no other test in this process uses.
pub fn unique(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn item(id: &str) -> ItemId {
    ItemId::parse(id).unwrap()
}

/// The real time, unix seconds (for tests whose TTLs Redis measures).
pub fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
