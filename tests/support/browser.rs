//! Browser test support: headless Chromium driven over WebDriver, and a page
//! server on an origin of its own.
//!
//! - [`Browser`]: a `chromedriver` child (its own process group, killed on drop)
//!   and one WebDriver session with a fresh Chromium profile;
//! - [`PageServer`]: a tiny HTTP server on another loopback port, so pages that
//!   embed the worker's `tally.js` are cross-origin to it, as on a real site.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Group, free_port, wait_for_port};

/// How long a test waits for the page to settle before it fails.
pub const SETTLE: Duration = Duration::from_secs(15);

/// `chromedriver` in a process group of its own: killed with its browsers on drop,
/// or by a watchdog if the test process dies first.
struct Driver {
    _process: Group,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let process = Group::spawn(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "chromedriver did not start (apt-get install chromium-driver)"
        );
        Driver {
            _process: process,
            port,
        }
    }
}

/// One headless Chromium with a profile of its own (its own `localStorage`, so its
/// own anonymous visitor), driven over WebDriver.
pub struct Browser {
    pub client: Client,
    // Dropped after the session: first the driver (and its browser), then the profile.
    driver: Driver,
    profile: TempDir,
}

impl Browser {
    pub async fn launch() -> Browser {
        let driver = Driver::start();
        let profile = tempfile::tempdir().expect("profile dir");
        // Without the networking flags Chromium keeps calling home, which the
        // closed network here turns into stalls.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1200,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("open a WebDriver session in chromium");
        Browser {
            client,
            driver,
            profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    pub async fn reload(&self) {
        self.client.refresh().await.expect("reload");
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `expression` in the page until it is truthy; panics with `what` (and
    /// the last value of `show`, for the failure message) after [`SETTLE`].
    pub async fn wait_until(&self, expression: &str, what: &str) {
        let deadline = Instant::now() + SETTLE;
        let script = format!("return !!({expression});");
        loop {
            if self.eval(&script, vec![]).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let page = self
                    .eval("return document.body && document.body.outerHTML;", vec![])
                    .await;
                panic!("timed out waiting until {what} ({expression})\npage: {page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `<tally-like item=...>` host element.
    pub async fn like(&self, item: &str) -> Element {
        self.client
            .find(Locator::Css(&format!("tally-like[item=\"{item}\"]")))
            .await
            .expect("a tally-like element")
    }

    /// The real `<button>` inside `<tally-like item=...>`'s shadow root.
    pub async fn like_button(&self, item: &str) -> Element {
        self.like(item)
            .await
            .shadow_root()
            .await
            .expect("tally-like has an open shadow root")
            .find(Locator::Css("button"))
            .await
            .expect("tally-like renders a button")
    }

    /// The reflected attribute `name` of the first element matching `selector`.
    pub async fn attr(&self, selector: &str, name: &str) -> Option<String> {
        let value = self
            .eval(
                "const el = document.querySelector(arguments[0]); return el && el.getAttribute(arguments[1]);",
                vec![json!(selector), json!(name)],
            )
            .await;
        value.as_str().map(str::to_owned)
    }

    /// Waits until `<tally-like item=...>` has settled (a count, nothing in flight)
    /// and returns its count and whether it shows as liked.
    pub async fn settled_like(&self, item: &str) -> (u64, bool) {
        let sel = format!("document.querySelector('tally-like[item=\"{item}\"]')");
        self.wait_until(
            &format!("{sel} && {sel}.hasAttribute('likes') && !{sel}.hasAttribute('busy')"),
            &format!("the like button for {item} settles"),
        )
        .await;
        let state = self
            .eval(
                &format!(
                    "const el = {sel}; const b = el.shadowRoot.querySelector('button');
                     return [Number(el.getAttribute('likes')), el.hasAttribute('liked'),
                             b.getAttribute('aria-pressed'), b.querySelector('[part=count]').textContent];"
                ),
                vec![],
            )
            .await;
        let likes = state[0].as_u64().expect("likes is a number");
        let liked = state[1].as_bool().expect("liked is a bool");
        assert_eq!(
            state[2],
            json!(liked.to_string()),
            "aria-pressed follows the state"
        );
        assert_eq!(
            state[3],
            json!(likes.to_string()),
            "the button shows the count"
        );
        (likes, liked)
    }

    /// A PNG of the whole viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }

    /// Ends the WebDriver session (Chromium exits with it).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// What a [`PageServer`] answers for a request path (`None`: 404).
pub type Render = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A tiny HTTP server for test pages on a loopback port of its own.
pub struct PageServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    pub fn start(render: Arc<Render>) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let render = render.clone();
                    thread::spawn(move || serve(stream, &*render));
                }
            }
        });
        PageServer { port, stop }
    }

    /// The page server's origin, as browsers send it in `Origin`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut stream: TcpStream, render: &Render) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&request);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match render(path) {
        Some(html) => ("200 OK", html),
        None => ("404 Not Found", "not found".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// A page on another origin that embeds the worker's `tally.js` and shows a like
/// button and a view count for each item in the `items` query (`/?items=a,b`).
///
/// It records what happened for the test to inspect: `window.events` (every
/// `tally:*` event with its detail), `window.likes` (every value the `likes`
/// attribute took, optimistic ones included) and `window.clicks` (each click's `detail`).
pub fn embedding_page(worker_origin: &str, path: &str) -> Option<String> {
    let items = path.strip_prefix("/?items=")?;
    let elements: String = items
        .split(',')
        .map(|item| {
            format!(
                "<p><tally-like item=\"{item}\"></tally-like> <tally-views item=\"{item}\"></tally-views></p>\n"
            )
        })
        .collect();
    Some(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>A page elsewhere</title>
<script src="{worker_origin}/tally.js" defer></script></head>
<body><h1>A page elsewhere</h1>
<input id="search" placeholder="something focusable before the buttons">
{elements}<script>
window.events = []; window.likes = []; window.clicks = [];
addEventListener("click", (e) => clicks.push(e.detail), true);
for (const type of ["tally:view", "tally:change", "tally:error"]) addEventListener(type, (e) => events.push([type, e.detail]));
new MutationObserver((changes) => changes.forEach((c) => likes.push(c.target.getAttribute("likes"))))
  .observe(document.body, {{ subtree: true, attributes: true, attributeFilter: ["likes"] }});
</script></body></html>"#
    ))
}
