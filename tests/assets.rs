//! The static files (`/`, `/tally.js`, `/openapi.json`) are Workers Static
//! Assets: served by the platform from `assets/` with the headers of
//! `assets/_headers`, without running the worker.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, Instant};

use support::{API_KEY, Stack, send};

/// The worker's own count of answered requests for `route`, from `/metrics`.
async fn requests_counted(http: &reqwest::Client, stack: &Stack, route: &str) -> f64 {
    let text = http
        .get(stack.worker.url("/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("metrics answers")
        .text()
        .await
        .expect("metrics body");
    let prefix = format!("tally_http_requests_total{{route=\"{route}\",");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn static_files_are_served_without_running_the_worker() {
    let stack = Stack::start_with(&[("METRICS_FLUSH_SECONDS", "0")]);
    let http = reqwest::Client::new();
    for path in ["/", "/tally.js", "/openapi.json", "/tally.js"] {
        let reply = http.get(stack.worker.url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}: {}", stack.worker.log());
    }
    // A request the worker does answer, to see its counts arrive.
    let probe = "/v1/items/assets-probe";
    assert_eq!(
        http.get(stack.worker.url(probe))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while requests_counted(&http, &stack, "/v1/items/{item}").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the worker's counts never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for route in ["/", "/tally.js", "/openapi.json"] {
        assert_eq!(
            requests_counted(&http, &stack, route).await,
            0.0,
            "the worker ran for {route}"
        );
    }
}

#[tokio::test]
async fn static_files_carry_their_headers_and_other_methods_are_405_with_allow() {
    let stack = support::shared();
    let http = reqwest::Client::new();
    for (path, content_type, cache) in [
        ("/", "text/html; charset=utf-8", "public, max-age=300"),
        (
            "/tally.js",
            "text/javascript; charset=utf-8",
            "public, max-age=86400, stale-while-revalidate=604800",
        ),
        ("/openapi.json", "application/json", "public, max-age=300"),
    ] {
        let header = |reply: &reqwest::Response, name: &str| {
            reply
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let reply = http.get(stack.worker.url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        assert_eq!(
            header(&reply, "content-type").as_deref(),
            Some(content_type)
        );
        assert_eq!(header(&reply, "cache-control").as_deref(), Some(cache));
        let etag = header(&reply, "etag").expect("an ETag");
        let again = http
            .get(stack.worker.url(path))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(header(&again, "cache-control").as_deref(), Some(cache));

        let post = http.post(stack.worker.url(path)).send().await.unwrap();
        assert_eq!(post.status(), 405, "{path}");
        assert_eq!(
            header(&post, "allow").as_deref(),
            Some("GET, HEAD"),
            "{path}"
        );
    }
    let embed = http
        .get(stack.worker.url("/tally.js"))
        .send()
        .await
        .unwrap();
    let headers = embed.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn the_headers_file_itself_is_not_served() {
    let stack = support::shared();
    let reply = send(reqwest::Client::new().get(stack.worker.url("/_headers"))).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["error"]["code"], "not_found");
}
