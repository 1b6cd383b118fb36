//! The browser embed end to end: headless Chromium on a page from another origin
//! that loads `tally.js` from the worker under `wrangler dev` → gateway → redis.

#![cfg(not(target_arch = "wasm32"))]
// Helpers panic on setup failures, as the tests themselves do.
#![allow(clippy::expect_used)]

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use browser::{Browser, PageServer, embedding_page};
use fantoccini::actions::{
    InputSource, KeyAction, KeyActions, MOUSE_BUTTON_LEFT, MouseActions, PointerAction,
};
use fantoccini::key::Key;
use serde_json::{Value, json};
use support::Stack;

/// The worker stack plus a page server on another origin, the only one CORS allows.
struct Site {
    stack: Stack,
    page: PageServer,
}

impl Site {
    fn start() -> Site {
        Site::start_with(&[])
    }

    /// A site of its own, with extra worker `vars`.
    fn start_with(vars: &[(&str, &str)]) -> Site {
        let worker_origin = Arc::new(OnceLock::<String>::new());
        let origin = worker_origin.clone();
        let page = PageServer::start(Arc::new(move |path: &str| {
            embedding_page(origin.get()?, path)
        }));
        let origin = page.origin();
        let mut all = vec![("ALLOWED_ORIGINS", origin.as_str())];
        all.extend_from_slice(vars);
        let stack = Stack::start_with(&all);
        let _ = worker_origin.set(stack.worker.url(""));
        Site { stack, page }
    }

    /// Tests that leave the stack running share one while any of them runs.
    fn shared() -> Arc<Site> {
        static SHARED: Mutex<Weak<Site>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(site) = slot.upgrade() {
            return site;
        }
        let site = Arc::new(Site::start());
        *slot = Arc::downgrade(&site);
        site
    }

    /// The cross-origin page showing `items`.
    fn page_with(&self, items: &[&str]) -> String {
        format!("{}/?items={}", self.page.origin(), items.join(","))
    }

    /// What the API says about `item`, asked directly.
    async fn item(&self, item: &str) -> Value {
        let url = self
            .stack
            .worker
            .url(&format!("/v1/items/{}", item.replace('/', "%2F")));
        let response = reqwest::get(&url).await.expect("GET the item");
        assert_eq!(response.status(), 200, "{}", self.stack.worker.log());
        response.json().await.expect("item json")
    }
}

/// Presses and releases `key` on whatever has focus, as a keyboard would.
async fn press(browser: &Browser, key: Key) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key.into() })
        .then(KeyAction::Up { value: key.into() });
    browser
        .client
        .perform_actions(keys)
        .await
        .expect("press a key");
}

#[tokio::test]
async fn clicking_like_adds_one_survives_a_reload_and_clicking_again_takes_it_back() {
    let site = Site::shared();
    let item = "blog/2026/like-reload";
    let b = Browser::launch().await;
    b.goto(&site.page_with(&[item])).await;
    assert_eq!(b.settled_like(item).await, (0, false));

    b.like_button(item).await.click().await.expect("click");
    assert_eq!(b.settled_like(item).await, (1, true));
    assert_eq!(site.item(item).await["likes"], 1);

    b.reload().await;
    assert_eq!(
        b.settled_like(item).await,
        (1, true),
        "the visitor token in localStorage keeps the like"
    );

    b.like_button(item).await.click().await.expect("click");
    assert_eq!(b.settled_like(item).await, (0, false));
    assert_eq!(site.item(item).await["likes"], 0);
    b.close().await;
}

#[tokio::test]
async fn two_browser_profiles_liking_the_same_item_count_two() {
    let site = Site::shared();
    let item = "browser:two-profiles";
    let first = Browser::launch().await;
    let second = Browser::launch().await;

    first.goto(&site.page_with(&[item])).await;
    first.settled_like(item).await;
    first.like_button(item).await.click().await.expect("click");
    assert_eq!(first.settled_like(item).await, (1, true));

    second.goto(&site.page_with(&[item])).await;
    assert_eq!(
        second.settled_like(item).await,
        (1, false),
        "another profile is another visitor"
    );
    second.like_button(item).await.click().await.expect("click");
    assert_eq!(second.settled_like(item).await, (2, true));

    first.reload().await;
    assert_eq!(first.settled_like(item).await, (2, true));
    assert_eq!(site.item(item).await["likes"], 2);
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn a_fast_double_click_counts_once() {
    let site = Site::shared();
    let item = "browser:double-click";
    let b = Browser::launch().await;
    b.goto(&site.page_with(&[item])).await;
    assert_eq!(b.settled_like(item).await, (0, false));

    let button = b.like_button(item).await;
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: button,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    b.client.perform_actions(mouse).await.expect("double click");
    assert_eq!(
        b.eval("return window.clicks;", vec![]).await,
        json!([1, 2]),
        "the browser saw a real double click"
    );

    assert_eq!(b.settled_like(item).await, (1, true));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.settled_like(item).await,
        (1, true),
        "nothing else arrives"
    );
    assert_eq!(site.item(item).await["likes"], 1);
    b.close().await;
}

#[tokio::test]
async fn a_page_load_records_one_view_and_a_reload_inside_the_dedupe_window_does_not() {
    let site = Site::shared();
    let item = "browser:views-once";
    let views = format!("tally-views[item=\"{item}\"]");
    let b = Browser::launch().await;

    b.goto(&site.page_with(&[item])).await;
    b.wait_until(
        &format!("document.querySelector('{views}').hasAttribute('views')"),
        "the view count shows",
    )
    .await;
    assert_eq!(b.attr(&views, "views").await.as_deref(), Some("1"));
    let events = b.eval("return window.events;", vec![]).await;
    assert_eq!(
        events,
        json!([["tally:view", {"item": item, "views": 1, "counted": true}]])
    );
    assert_eq!(site.item(item).await["views"], 1);

    b.reload().await;
    b.wait_until(
        &format!("document.querySelector('{views}').hasAttribute('views')"),
        "the view count shows again",
    )
    .await;
    assert_eq!(b.attr(&views, "views").await.as_deref(), Some("1"));
    let events = b.eval("return window.events;", vec![]).await;
    assert_eq!(
        events,
        json!([["tally:view", {"item": item, "views": 1, "counted": false}]])
    );
    assert_eq!(site.item(item).await["views"], 1);
    b.close().await;
}

#[tokio::test]
async fn two_elements_for_one_item_record_a_single_view_and_share_the_like() {
    let site = Site::shared();
    let item = "browser:twice-on-a-page";
    let b = Browser::launch().await;
    b.goto(&site.page_with(&[item, item])).await;
    b.wait_until(
        &format!("[...document.querySelectorAll('tally-views[item=\"{item}\"]')].every((el) => el.getAttribute('views') === '1')"),
        "both elements show the one view",
    )
    .await;
    let events = b.eval("return window.events;", vec![]).await;
    assert_eq!(
        events,
        json!([["tally:view", {"item": item, "views": 1, "counted": true}]]),
        "one view recorded"
    );
    assert_eq!(site.item(item).await["views"], 1);

    b.like_button(item).await.click().await.expect("click");
    assert_eq!(b.settled_like(item).await, (1, true));
    b.wait_until(
        &format!("[...document.querySelectorAll('tally-like[item=\"{item}\"]')].every((el) => el.hasAttribute('liked') && el.getAttribute('likes') === '1')"),
        "the other button follows",
    )
    .await;
    b.close().await;
}

#[tokio::test]
async fn with_the_gateway_stopped_a_click_shows_the_failure_and_the_count_rolls_back() {
    let mut site = Site::start();
    let item = "browser:gateway-down";
    let like = format!("tally-like[item=\"{item}\"]");
    let b = Browser::launch().await;
    b.goto(&site.page_with(&[item])).await;
    assert_eq!(b.settled_like(item).await, (0, false));

    site.stack.gateway.stop();
    b.like_button(item).await.click().await.expect("click");
    b.wait_until(
        &format!("document.querySelector('{like}').hasAttribute('error')"),
        "the failure shows",
    )
    .await;
    assert_eq!(
        b.settled_like(item).await,
        (0, false),
        "the count rolled back"
    );
    assert_eq!(
        b.eval("return window.likes;", vec![]).await,
        json!(["0", "1", "0"]),
        "shown at once, then rolled back"
    );
    let message = b
        .eval(
            &format!("return document.querySelector('{like}').shadowRoot.querySelector('[role=status]').textContent;"),
            vec![],
        )
        .await;
    assert!(
        message.as_str().is_some_and(|m| m.contains("wasn't saved")),
        "the failure is explained: {message}"
    );
    assert_eq!(
        b.attr(&like, "error").await.as_deref(),
        Some("backend_unavailable")
    );

    site.stack.gateway.resume();
    b.like_button(item).await.click().await.expect("click");
    assert_eq!(b.settled_like(item).await, (1, true), "works again");
    assert_eq!(b.attr(&like, "error").await, None, "the failure is cleared");
    b.close().await;
}

#[tokio::test]
async fn a_rate_limited_click_rolls_back_and_says_when_to_retry() {
    let site = Site::start_with(&[("RATE_LIMIT_PER_MINUTE", "4")]);
    let item = "browser:rate-limited";
    let like = format!("tally-like[item=\"{item}\"]");
    let b = Browser::launch().await;
    b.goto(&site.page_with(&[item])).await;
    let mut state = b.settled_like(item).await;

    // Views and the visitor token spend some of the budget too: click until refused.
    for _ in 0..6 {
        b.like_button(item).await.click().await.expect("click");
        let before = state;
        state = b.settled_like(item).await;
        if b.attr(&like, "error").await.is_some() {
            assert_eq!(state, before, "the refused click rolled back");
            break;
        }
        assert_ne!(state, before, "an accepted click toggles");
    }
    assert_eq!(
        b.attr(&like, "error").await.as_deref(),
        Some("rate_limited")
    );
    let message = b
        .eval(
            &format!("return document.querySelector('{like}').shadowRoot.querySelector('[role=status]').textContent;"),
            vec![],
        )
        .await;
    let message = message.as_str().unwrap_or_default();
    assert!(
        message.starts_with("Too many requests: try again in ") && message.ends_with(" s."),
        "the wait comes from Retry-After: {message}"
    );
    let server = site.item(item).await;
    assert_eq!(
        server["likes"],
        json!(state.0),
        "the page shows the server's count"
    );
    b.close().await;
}

#[tokio::test]
async fn keyboard_only_like_works() {
    let site = Site::shared();
    let item = "browser:keyboard";
    let host = format!("tally-like[item=\"{item}\"]");
    let b = Browser::launch().await;
    b.goto(&site.page_with(&[item])).await;
    assert_eq!(b.settled_like(item).await, (0, false));

    let focused = format!(
        "document.activeElement && document.activeElement.matches('{host}') && \
         document.activeElement.shadowRoot.activeElement.matches('button:focus-visible')"
    );
    for _ in 0..5 {
        press(&b, Key::Tab).await;
        if b.eval(&format!("return !!({focused});"), vec![]).await == json!(true) {
            break;
        }
    }
    b.wait_until(&focused, "Tab reaches the like button").await;
    let outline = b
        .eval(
            &format!("return getComputedStyle(document.querySelector('{host}').shadowRoot.querySelector('button')).outlineStyle;"),
            vec![],
        )
        .await;
    assert_eq!(outline, json!("solid"), "the focus ring shows");

    press(&b, Key::Enter).await;
    assert_eq!(b.settled_like(item).await, (1, true));
    press(&b, Key::Space).await;
    assert_eq!(b.settled_like(item).await, (0, false));
    assert_eq!(site.item(item).await["likes"], 0);
    b.close().await;
}

#[tokio::test]
async fn a_token_given_with_set_token_is_used_instead_of_the_visitor_token() {
    let site = Site::shared();
    let item = "browser:set-token";
    let http = reqwest::Client::new();
    let minted: Value = http
        .post(site.stack.worker.url("/v1/visitors"))
        .send()
        .await
        .expect("mint a token")
        .json()
        .await
        .expect("token json");
    let token = minted["token"].as_str().expect("a token").to_owned();
    let liked = http
        .put(site.stack.worker.url(&format!("/v1/items/{item}/like")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("like through the API");
    assert_eq!(liked.status(), 200);

    let b = Browser::launch().await;
    b.goto(&site.page_with(&[item])).await;
    assert_eq!(
        b.settled_like(item).await,
        (1, false),
        "the page's visitor has not liked it"
    );

    b.eval("Tally.setToken(arguments[0]);", vec![json!(token)])
        .await;
    b.wait_until(
        &format!("document.querySelector('tally-like[item=\"{item}\"]').hasAttribute('liked')"),
        "the signed-in user's like shows",
    )
    .await;
    b.like_button(item).await.click().await.expect("click");
    assert_eq!(b.settled_like(item).await, (0, false));
    assert_eq!(
        site.item(item).await["likes"],
        0,
        "the unlike was the token's"
    );
    b.close().await;
}

#[tokio::test]
async fn tally_js_is_cached_for_a_day_and_revalidates_with_its_etag() {
    let site = Site::shared();
    let http = reqwest::Client::new();
    let url = site.stack.worker.url("/tally.js");

    let script = http.get(&url).send().await.expect("GET /tally.js");
    assert_eq!(script.status(), 200);
    let headers = script.headers().clone();
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    let cache = headers["cache-control"].to_str().expect("ascii");
    assert!(cache.starts_with("public, max-age=86400"), "{cache}");
    let etag = headers["etag"].to_str().expect("ascii").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let body = script.text().await.expect("body");
    assert!(body.contains("customElements.define(\"tally-like\""));

    let again = http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.text().await.expect("body").is_empty());

    let stale = http
        .get(&url)
        .header("If-None-Match", "\"0000\"")
        .send()
        .await
        .expect("revalidate");
    assert_eq!(stale.status(), 200, "another tag gets the file");

    let page = http
        .get(site.stack.worker.url("/"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers().contains_key("etag"));

    let api = http
        .get(site.stack.worker.url("/v1/items/browser:cache"))
        .send()
        .await
        .expect("GET an item");
    assert_eq!(
        api.headers()["cache-control"],
        "no-store",
        "counts are never cached"
    );
}

#[tokio::test]
async fn the_demo_page_shows_items_a_chart_and_trending_and_is_kept_as_a_screenshot() {
    let site = Site::shared();
    let b = Browser::launch().await;
    b.goto(&site.stack.worker.url("/")).await;

    b.wait_until(
        "[...document.querySelectorAll('tally-like')].every((el) => el.hasAttribute('likes'))",
        "every like button has its count",
    )
    .await;
    b.wait_until(
        "document.querySelectorAll('tally-views[views]').length === document.querySelectorAll('tally-views').length",
        "every view count shows",
    )
    .await;
    let items = b
        .eval(
            "return document.querySelectorAll('.items tally-like').length;",
            vec![],
        )
        .await;
    assert!(
        items.as_u64().is_some_and(|n| n >= 3),
        "a handful of items: {items}"
    );

    b.like_button("demo:likes")
        .await
        .click()
        .await
        .expect("click");
    assert_eq!(b.settled_like("demo:likes").await, (1, true));

    b.wait_until(
        "document.querySelectorAll('#chart rect.bar').length >= 10 && \
         [...document.querySelectorAll('#chart rect.bar')].some((r) => Number(r.getAttribute('height')) > 0)",
        "the chart shows this load's views",
    )
    .await;
    b.wait_until(
        "[...document.querySelectorAll('#trending li span[title^=\"demo:\"]')].length >= 3",
        "trending lists the demo items",
    )
    .await;

    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = support::artifacts().join("demo.png");
    std::fs::write(&path, png).expect("write the screenshot");
    eprintln!("demo page screenshot: {}", path.display());
    b.close().await;
}

#[tokio::test]
async fn the_tally_ignore_fragment_and_ignore_me_stop_this_browser_counting_views() {
    let site = Site::shared();
    let item = "browser:ignore-me";
    let views = format!("tally-views[item=\"{item}\"]");
    let shown = format!("document.querySelector('{views}').hasAttribute('views')");
    let b = Browser::launch().await;

    // A visit with #tally-ignore: counts show, nothing is recorded, and it sticks.
    b.goto(&format!("{}#tally-ignore", site.page_with(&[item])))
        .await;
    b.wait_until(&shown, "the view count shows").await;
    assert_eq!(b.attr(&views, "views").await.as_deref(), Some("0"));
    assert_eq!(b.attr(&views, "ignored").await.as_deref(), Some(""));
    assert_eq!(b.eval("return window.events;", vec![]).await, json!([]));
    assert_eq!(
        b.eval(
            "return [Tally.ignored(), localStorage.getItem('tally:ignore')];",
            vec![]
        )
        .await,
        json!([true, "1"])
    );
    b.goto(&site.page_with(&[item])).await;
    b.wait_until(&shown, "the view count shows without the fragment")
        .await;
    assert_eq!(b.attr(&views, "views").await.as_deref(), Some("0"));
    assert_eq!(site.item(item).await["views"], 0);

    // Tally.ignoreMe(false) counts this browser again from the next page load.
    b.eval("Tally.ignoreMe(false);", vec![]).await;
    assert_eq!(b.attr(&views, "ignored").await, None);
    b.goto(&site.page_with(&[item])).await;
    b.wait_until(&shown, "the view count shows once counted")
        .await;
    assert_eq!(b.attr(&views, "views").await.as_deref(), Some("1"));
    assert_eq!(site.item(item).await["views"], 1);

    // And Tally.ignoreMe(true) stops it again, kept across loads.
    b.eval("Tally.ignoreMe(true);", vec![]).await;
    b.goto(&site.page_with(&[item])).await;
    b.wait_until(&shown, "the view count shows while ignored")
        .await;
    assert_eq!(b.eval("return window.events;", vec![]).await, json!([]));
    assert_eq!(b.attr(&views, "ignored").await.as_deref(), Some(""));
    b.close().await;
}

#[tokio::test]
async fn the_demo_page_shows_the_ignored_state_and_counts_again_on_request() {
    let site = Site::shared();
    let b = Browser::launch().await;
    b.goto(&format!("{}#tally-ignore", site.stack.worker.url("/")))
        .await;
    b.wait_until(
        "!document.getElementById('ignored').hidden && document.querySelector('tally-views[item=\"demo:home\"][ignored]')",
        "the demo page says this browser is ignored",
    )
    .await;
    b.client
        .find(fantoccini::Locator::Id("count-me"))
        .await
        .expect("the count-me link")
        .click()
        .await
        .expect("click");
    b.wait_until(
        "document.getElementById('ignored').hidden && localStorage.getItem('tally:ignore') === null",
        "the demo page counts this browser again",
    )
    .await;
    b.close().await;
}

#[tokio::test]
async fn tally_views_with_metric_unique_shows_unique_visitors() {
    let site = Site::shared();
    let item = "browser:unique";
    let b = Browser::launch().await;
    b.goto(&site.page_with(&[item])).await;
    b.eval(
        &format!(
            "document.body.insertAdjacentHTML('beforeend', \
             '<tally-views id=\"all\" item=\"{item}\" metric=\"unique\"></tally-views>\
              <tally-views id=\"today\" item=\"{item}\" metric=\"unique\" window=\"today\"></tally-views>');"
        ),
        vec![],
    )
    .await;
    b.wait_until(
        "document.getElementById('all').getAttribute('visitors') === '1' && \
         document.getElementById('today').getAttribute('visitors') === '1'",
        "both unique counts show this browser",
    )
    .await;
    let text = b
        .eval(
            "return [...document.getElementById('all').shadowRoot.querySelectorAll('span')].map((s) => s.textContent).join('');",
            vec![],
        )
        .await;
    assert_eq!(text, "1 visitor");
    assert_eq!(site.item(item).await["unique_viewers"]["all_time"], 1);
    b.close().await;
}
