//! Test support: real servers on free loopback ports, stopped when dropped.
//!
//! - [`Redis`]: a `redis-server` child process with its data in a temp folder;
//! - [`Gateway`]: the project's REST gateway, served in-process on its own runtime;
//! - [`Worker`]: the built wasm worker under `wrangler dev --test-scheduled`,
//!   with its own local D1 database (the system of record, `DB`), migrated;
//! - [`Stack`]: all three wired together.
//!
//! Every child runs in its own process group, watched by a tiny shell loop that
//! kills the group if the test process dies first, so no server outlives a run.

// Test support panics loudly on setup failures: that is how a test should fail.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The token tests use between the worker and the gateway.
pub const GATEWAY_TOKEN: &str = "test-gateway-token";
/// The JWT secret the test worker verifies tokens with.
pub const JWT_SECRET: &str = "test-jwt-secret";
/// The API key for the test worker's server-to-server routes.
pub const API_KEY: &str = "test-api-key";

/// The repository root (where `Cargo.toml`, `wrangler.toml` and `build/` live).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `python3 -c script args...` with `input` on stdin (the modules the
/// checks use are installed by `scripts/setup.sh --test`): its stdout, or, when
/// it exits with an error, its stdout and stderr.
pub fn python(script: &str, args: &[&Path], input: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/setup.sh --test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("python finishes");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(stdout + &String::from_utf8_lossy(&out.stderr))
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A child process in a process group of its own, killed with its group on drop.
pub struct Group {
    child: Child,
}

impl Group {
    pub fn spawn(command: &mut Command) -> Group {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        // If this test process dies without dropping us, the watchdog kills the
        // group. It is detached on purpose: it must outlive this process.
        let watchdog = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -KILL -{group} 2>/dev/null",
            parent = std::process::id(),
            group = child.id(),
        );
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &watchdog])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the watchdog");
        Group { child }
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }

    fn stop(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real `redis-server` on a free loopback port, without persistence unless
/// started with [`Redis::start_persistent`].
pub struct Redis {
    pub port: u16,
    dir: TempDir,
    persistence: &'static [&'static str],
    process: Option<Group>,
}

/// No persistence: a restarted server is empty.
const NO_PERSISTENCE: &[&str] = &["--save", "", "--appendonly", "no"];
/// An append-only file synced once a second, as `make dev` runs Redis.
const AOF_EVERY_SECOND: &[&str] = &[
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
];

impl Redis {
    pub fn start() -> Redis {
        Self::start_with_persistence(NO_PERSISTENCE)
    }

    /// A server that keeps an append-only file synced every second
    /// (`appendfsync everysec`): [`Redis::resume`] after [`Redis::stop`]
    /// (a `kill -9`) reloads it, less what was not yet synced.
    pub fn start_persistent() -> Redis {
        Self::start_with_persistence(AOF_EVERY_SECOND)
    }

    fn start_with_persistence(persistence: &'static [&'static str]) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            persistence,
            process: None,
        };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with `SIGKILL` (`kill -9`), as a crash would.
    pub fn stop(&mut self) {
        self.process.take();
    }

    /// Starts the server again on the same port and folder (empty, unless it
    /// keeps an append-only file).
    pub fn resume(&mut self) {
        let process = Group::spawn(
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
                .args(self.persistence)
                .args(["--loglevel", "warning"])
                .arg("--dir")
                .arg(self.dir.path())
                .stdout(Stdio::null()),
        );
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "redis-server did not start on port {}",
            self.port
        );
        self.process = Some(process);
    }

    /// Runs one command with `redis-cli` and returns its raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Calls of `EVALSHA` and `EVAL` this server has run so far (`INFO
    /// commandstats`; the commands a script runs count apart, under their names).
    pub fn script_calls(&self) -> u64 {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }
}

/// The project's REST gateway, served in-process on a runtime of its own.
pub struct Gateway {
    pub addr: SocketAddr,
    redis_url: String,
    running: Option<(tokio::sync::oneshot::Sender<()>, thread::JoinHandle<()>)>,
}

impl Gateway {
    pub fn start(redis_url: &str) -> Gateway {
        // Port 0: the system picks a free port as the gateway binds it. A port
        // found free first and bound later may be taken in between (by the
        // source port of any connection opened meanwhile).
        let mut gateway = Gateway {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            redis_url: redis_url.to_owned(),
            running: None,
        };
        gateway.resume();
        gateway
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving at once, dropping open connections, as a crash would.
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }

    /// Serves again on the same address (the first time, on the port the
    /// system picks).
    pub fn resume(&mut self) {
        let addr = self.addr;
        let config = tally_gateway::Config::new(self.redis_url.clone(), GATEWAY_TOKEN);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (listening, ready) = std::sync::mpsc::channel::<SocketAddr>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("gateway runtime");
            runtime.block_on(async move {
                // A backlog of 1024, as the gateway binary listens with: std's
                // 128 overflows when the worker opens hundreds of connections
                // at once, and a dropped SYN is retried only a second later,
                // past the worker's Redis timeout.
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.set_reuseaddr(true).expect("SO_REUSEADDR");
                socket.bind(addr).expect("bind the gateway's port");
                let listener = socket.listen(1024).expect("listen");
                let _ = listening.send(listener.local_addr().expect("the gateway's address"));
                tokio::select! {
                    served = tally_gateway::serve(listener, config, std::future::pending()) => {
                        served.expect("gateway serves");
                    }
                    _ = stopped => {}
                }
            });
            // Dropping the runtime cancels every open connection.
            runtime.shutdown_background();
        });
        self.addr = ready.recv().expect("the gateway listens");
        self.running = Some((stop, thread));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The test worker's D1 database (`DB`, the system of record).
#[derive(Debug, Clone)]
pub enum Record {
    /// A fresh local database with the migrations applied (the default).
    Fresh,
    /// The local database persisted in this folder (another worker's
    /// [`Worker::record_dir`]): a restarted worker finds what the first left.
    At(PathBuf),
    /// No `DB` binding: the outbox is off and the record routes answer 503.
    Unbound,
    /// A fresh database in a Worker of its own, as `wrangler.record.toml`
    /// deploys it: the worker under test is then the edge build
    /// (`build/edge/`), with that Worker bound as `RECORD`, as
    /// `wrangler.edge.toml` deploys it (both under one `wrangler dev`).
    Apart,
    /// The edge build with no `RECORD` Worker: Redis alone.
    EdgeAlone,
}

/// The Workers a test runs, by where its system of record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One Worker, the whole build (`wrangler.toml`).
    One,
    /// The edge build in front of the whole build, bound as `RECORD`.
    Two,
    /// The edge build alone.
    Edge,
}

/// Whether a request for a static file runs the test worker first (`[assets]
/// run_worker_first` in its config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assets {
    /// As deployed: the platform serves a matching file without running the
    /// worker (the default).
    PlatformFirst,
    /// `run_worker_first = true`: every request runs the worker, which hands
    /// the static files to the `ASSETS` binding.
    WorkerFirst,
}

/// The built wasm worker under `wrangler dev --test-scheduled` (so
/// `GET /__scheduled` runs the cron handler), configured through a `.dev.vars`
/// file of its own so that tests never read the developer's.
pub struct Worker {
    pub port: u16,
    dir: TempDir,
    record: Option<PathBuf>,
    process: Option<Group>,
}

/// The database id every test worker's config gives `DB` (local only: the
/// file Miniflare keeps it in is named after it, so a copy of the migrated
/// template is found by every worker).
const TEST_DATABASE_ID: &str = "00000000-0000-4000-8000-000000000000";

/// A folder holding a local D1 database with the migrations applied: made
/// with `wrangler d1 migrations apply DB --local --persist-to` (about 3 s)
/// once per version of `migrations/` and kept under `target/`; each worker
/// starts from a copy of it (milliseconds).
fn migrated_template() -> &'static Path {
    static TEMPLATE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let mut migrations: Vec<PathBuf> = fs::read_dir(root().join("migrations"))
            .expect("read migrations/")
            .map(|entry| entry.expect("a folder entry").path())
            .collect();
        migrations.sort();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for path in &migrations {
            let bytes = fs::read(path).expect("read a migration");
            for byte in path
                .file_name()
                .unwrap()
                .as_encoded_bytes()
                .iter()
                .chain(&bytes)
            {
                hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let home = root().join("target/d1-template");
        let template = home.join(format!("{hash:016x}"));
        if template.join("state").exists() {
            return template.join("state");
        }
        fs::create_dir_all(&home).expect("create target/d1-template");
        let work = tempfile::tempdir_in(&home).expect("temp dir");
        let config = format!(
            "name = \"tally-test-migrations\"\ncompatibility_date = \"2026-04-20\"\n{}",
            d1_section()
        );
        fs::write(work.path().join("wrangler.toml"), config).expect("write wrangler.toml");
        let started = Instant::now();
        let out = Command::new(root().join("node_modules/.bin/wrangler"))
            .current_dir(work.path())
            .args([
                "d1",
                "migrations",
                "apply",
                "DB",
                "--local",
                "--persist-to",
                "state",
            ])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("XDG_CONFIG_HOME", work.path())
            .env("CI", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run wrangler d1 migrations apply");
        assert!(
            out.status.success(),
            "wrangler d1 migrations apply failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "support: D1 migrations applied in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // Another test process may have made it meanwhile: either copy will do.
        let made = work.keep();
        if fs::rename(&made, &template).is_err() {
            let _ = fs::remove_dir_all(&made);
        }
        template.join("state")
    })
}

/// The `[[d1_databases]]` table of a test worker's config.
fn d1_section() -> String {
    format!(
        "\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"tally\"\n\
         database_id = \"{TEST_DATABASE_ID}\"\nmigrations_dir = \"{}\"\n",
        root().join("migrations").display()
    )
}

/// Copies the folder `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create a folder");
    for entry in fs::read_dir(from).expect("read a folder") {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

impl Worker {
    /// Starts `wrangler dev` on the bundle in `build/`, pointing at
    /// `gateway_url`, with a fresh D1 database. `vars` add to or override the
    /// defaults (`NAME`, value).
    pub fn start(gateway_url: &str, vars: &[(&str, &str)]) -> Worker {
        Self::start_with_record(gateway_url, vars, Record::Fresh)
    }

    /// [`Worker::start`] with the D1 database `record`.
    pub fn start_with_record(gateway_url: &str, vars: &[(&str, &str)], record: Record) -> Worker {
        Self::start_configured(gateway_url, vars, record, Assets::PlatformFirst)
    }

    /// [`Worker::start_with_record`], its static files routed by `assets`.
    fn start_configured(
        gateway_url: &str,
        vars: &[(&str, &str)],
        record: Record,
        assets: Assets,
    ) -> Worker {
        let started = Instant::now();
        let whole = root().join("build/index.js");
        let edge = root().join("build/edge/index.js");
        for bundle in [&whole, &edge] {
            assert!(
                bundle.exists(),
                "{} is missing: build the worker first (`make build`, or `make test` which does)",
                bundle.display()
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh = || {
            let state = dir.path().join("d1");
            copy_dir(migrated_template(), &state);
            state
        };
        let (record, layout) = match record {
            Record::Fresh => (Some(fresh()), Layout::One),
            Record::At(state) => (Some(state), Layout::One),
            Record::Unbound => (None, Layout::One),
            Record::Apart => (Some(fresh()), Layout::Two),
            Record::EdgeAlone => (None, Layout::Edge),
        };
        let config = match layout {
            Layout::One => wrangler_config(&whole, record.is_some(), assets),
            Layout::Two => wrangler_config(&edge, false, assets) + RECORD_SERVICE,
            Layout::Edge => wrangler_config(&edge, false, assets),
        };
        fs::write(dir.path().join("wrangler.toml"), config).expect("write wrangler.toml");
        if layout == Layout::Two {
            fs::write(dir.path().join("record.toml"), record_config(&whole))
                .expect("write record.toml");
        }
        let mut all: Vec<(String, String)> = [
            ("UPSTASH_REDIS_REST_URL", gateway_url),
            ("UPSTASH_REDIS_REST_TOKEN", GATEWAY_TOKEN),
            ("TALLY_JWT_SECRET", JWT_SECRET),
            ("TALLY_API_KEY", API_KEY),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (name, value) in vars {
            all.retain(|(k, _)| k != name);
            all.push((name.to_string(), value.to_string()));
        }
        let dev_vars: String = all.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        fs::write(dir.path().join(".dev.vars"), dev_vars).expect("write .dev.vars");

        // A free port can be taken by another process before wrangler binds
        // it (tests run in parallel): then wrangler exits at once, and it is
        // started again on other ports.
        let mut worker = Worker {
            port: 0,
            dir,
            record,
            process: None,
        };
        for attempt in 1..=3 {
            worker.port = free_port();
            let log = fs::File::create(worker.dir.path().join("wrangler.log")).expect("log file");
            let mut command = Command::new(root().join("node_modules/.bin/wrangler"));
            command
                .current_dir(worker.dir.path())
                .args([
                    "dev",
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    &worker.port.to_string(),
                ])
                .args(["--inspector-port", &free_port().to_string()]);
            if layout == Layout::Two {
                // The edge first: `wrangler dev` serves the first config's Worker.
                command.args(["-c", "wrangler.toml", "-c", "record.toml"]);
            }
            command.args(["--test-scheduled", "--log-level", "warn"]);
            if let Some(state) = &worker.record {
                command.arg("--persist-to").arg(state);
            }
            worker.process = Some(Group::spawn(
                command
                    .env("WRANGLER_SEND_METRICS", "false")
                    .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
                    .env("XDG_CONFIG_HOME", worker.dir.path())
                    .stdout(log.try_clone().expect("log file"))
                    .stderr(log),
            ));
            match worker.wait_until_ready() {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    eprintln!("support: wrangler dev found its port taken; starting it again");
                    worker.process.take();
                }
                Err(log) => panic!("wrangler dev did not become ready:\n{log}"),
            }
        }
        eprintln!(
            "support: wrangler dev ready in {:.1} s ({layout:?}; D1: {})",
            started.elapsed().as_secs_f64(),
            if worker.record.is_some() {
                "bound"
            } else {
                "none"
            }
        );
        worker
    }

    /// The folder its D1 database persists in (`None`: no `DB` binding).
    pub fn record_dir(&self) -> Option<PathBuf> {
        self.record.clone()
    }

    /// Kills `wrangler dev` (its folder, and the D1 database in it, stay
    /// until the `Worker` is dropped).
    pub fn stop(&mut self) {
        self.process.take();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What wrangler printed so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("wrangler.log")).unwrap_or_default()
    }

    /// Waits until workerd answers on the worker's port; the log if it
    /// does not within 90 s, or if wrangler found the port taken.
    fn wait_until_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            // Any HTTP answer means workerd has loaded the bundle.
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let request =
                    "GET /__ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                let mut answer = [0u8; 12];
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_exact(&mut answer).is_ok()
                    && answer.starts_with(b"HTTP/1.1")
                {
                    return Ok(());
                }
            }
            let log = self.log();
            if log.contains("Address already in use") {
                return Err(log);
            }
            thread::sleep(Duration::from_millis(200));
        }
        Err(self.log())
    }
}

/// The deployed `compatibility_date = "…"` line, read from wrangler.toml.
fn compatibility_date() -> String {
    fs::read_to_string(root().join("wrangler.toml"))
        .expect("read wrangler.toml")
        .lines()
        .find(|l| l.starts_with("compatibility_date"))
        .expect("wrangler.toml sets compatibility_date")
        .to_owned()
}

fn wrangler_config(bundle: &Path, d1: bool, assets: Assets) -> String {
    let date = compatibility_date();
    // The static files, as deployed: served by the platform from assets/
    // (unless `assets` runs the worker first).
    let mut config = format!(
        "name = \"tally-test\"\nmain = \"{}\"\n{date}\n\n[assets]\ndirectory = \"{}\"\nbinding = \"ASSETS\"\n",
        bundle.display(),
        root().join("assets").display()
    );
    if assets == Assets::WorkerFirst {
        config.push_str("run_worker_first = true\n");
    }
    if d1 {
        config.push_str(&d1_section());
    }
    config
}

/// The edge's `RECORD` binding to the Worker of [`record_config`].
const RECORD_SERVICE: &str =
    "\n[[services]]\nbinding = \"RECORD\"\nservice = \"tally-record-test\"\n";

/// The record Worker's config: the whole build, with the D1 database.
fn record_config(bundle: &Path) -> String {
    let date = compatibility_date();
    format!(
        "name = \"tally-record-test\"\nmain = \"{}\"\n{date}\n{}",
        bundle.display(),
        d1_section()
    )
}

/// Redis, the gateway and the worker, wired together.
pub struct Stack {
    pub worker: Worker,
    pub gateway: Gateway,
    pub redis: Redis,
}

impl Stack {
    pub fn start() -> Stack {
        Self::start_with(&[])
    }

    pub fn start_with(vars: &[(&str, &str)]) -> Stack {
        Self::start_on(Redis::start(), vars, Record::Fresh)
    }

    /// [`Stack::start_with`], its worker's static files routed by `assets`.
    pub fn start_with_assets(vars: &[(&str, &str)], assets: Assets) -> Stack {
        Self::start_configured(Redis::start(), vars, Record::Fresh, assets)
    }

    /// A stack over `redis`, whose worker has the D1 database `record`.
    pub fn start_on(redis: Redis, vars: &[(&str, &str)], record: Record) -> Stack {
        Self::start_configured(redis, vars, record, Assets::PlatformFirst)
    }

    fn start_configured(
        redis: Redis,
        vars: &[(&str, &str)],
        record: Record,
        assets: Assets,
    ) -> Stack {
        let gateway = Gateway::start(&redis.url());
        let worker = Worker::start_configured(&gateway.url(), vars, record, assets);
        Stack {
            worker,
            gateway,
            redis,
        }
    }
}

/// Where tests may leave files worth keeping (screenshots and the like).
pub fn artifacts() -> PathBuf {
    let dir = root().join("tests/artifacts");
    fs::create_dir_all(&dir).expect("create tests/artifacts");
    dir
}

/// One stack per test binary, started on first use and stopped when the test
/// process exits (by the watchdogs). Tests sharing it use unique item ids.
pub fn shared() -> &'static Stack {
    static STACK: std::sync::OnceLock<Stack> = std::sync::OnceLock::new();
    // A generous Redis timeout: the shared stack's tests check exact counts
    // under bursts of hundreds of requests on a 2-core machine, where the
    // worker's own queue can hold a round trip past the 2 s default. Tests of
    // the timeout itself start a stack of their own.
    STACK.get_or_init(|| {
        Stack::start_with(&[
            ("RATE_LIMIT_PER_MINUTE", "100000"),
            ("REDIS_TIMEOUT_MS", "10000"),
        ])
    })
}

/// An item id no other test uses.
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{}-{n}", std::process::id())
}

/// A valid identity token for `sub`, signed with the test worker's secret.
pub fn token_for(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
        + 3600;
    tally::token::sign(
        &tally::token::Claims {
            sub: sub.to_owned(),
            exp,
            count_views: true,
        },
        JWT_SECRET.as_bytes(),
    )
}

/// Percent-encodes one path segment (everything but unreserved characters).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A response, read whole: status, headers and the JSON body (`Null` if none).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Reply {
    /// A header as a string, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request and reads the whole reply.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("the worker answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("read the body");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Runs every future as its own task, all at once, and collects the results in order.
pub async fn all_at_once<T: Send + 'static>(
    futures: impl IntoIterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("task completes"));
    }
    results
}
