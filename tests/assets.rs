//! The static files (`/`, `/tally.js`, `/openapi.json`) are Workers Static
//! Assets: served by the platform from `assets/` with the headers of
//! `assets/_headers`, without running the worker; or, in a setup that runs
//! the worker first (`[assets] run_worker_first`), fetched by the worker from
//! its `ASSETS` binding and passed on with its CORS grant.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{API_KEY, Assets, Stack, send};

/// The one origin the worker-first stack allows.
const ALLOWED: &str = "https://allowed.example";
/// What the worker's CORS grant exposes (src/edge/cors.rs).
const EXPOSED: &str = "RateLimit, RateLimit-Policy, Retry-After";
/// The `Cache-Control` of `/tally.js` in assets/_headers.
const EMBED_CACHE: &str = "public, max-age=86400, stale-while-revalidate=604800";

/// The worker's own count of answered requests for `route`, from `/metrics`.
async fn requests_counted(http: &reqwest::Client, stack: &Stack, route: &str) -> f64 {
    counted(http, stack, &format!("route=\"{route}\",")).await
}

/// The worker's count of answered requests whose labels begin with `labels`
/// (`route="...",method="...",status="..."}` for one exact series), from `/metrics`.
async fn counted(http: &reqwest::Client, stack: &Stack, labels: &str) -> f64 {
    let text = http
        .get(stack.worker.url("/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("metrics answers")
        .text()
        .await
        .expect("metrics body");
    let prefix = format!("tally_http_requests_total{{{labels}");
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
    wait_until_counted(&http, &stack, r#"route="/v1/items/{item}","#, 0.0).await;
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
        ("/tally.js", "text/javascript; charset=utf-8", EMBED_CACHE),
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

/// One stack per test binary whose worker runs first for the static files
/// (`[assets] run_worker_first = true`), allowing the origin [`ALLOWED`] only
/// and counting every response at once.
fn worker_first() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        Stack::start_with_assets(
            &[
                ("ALLOWED_ORIGINS", ALLOWED),
                ("METRICS_FLUSH_SECONDS", "0"),
                ("RATE_LIMIT_PER_MINUTE", "100000"),
            ],
            Assets::WorkerFirst,
        )
    })
}

/// Every value of the header `name` (one per field line).
fn all(headers: &reqwest::header::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|value| value.to_str().expect("a text header").to_owned())
        .collect()
}

/// Asserts the worker's CORS grant for [`ALLOWED`] is on `headers`, each
/// field once: in place of a file's own `*` (a browser refuses an
/// Access-Control-Allow-Origin of two values), and `Origin` in `Vary`.
fn assert_one_grant(headers: &reqwest::header::HeaderMap) {
    assert_eq!(all(headers, "access-control-allow-origin"), [ALLOWED]);
    assert_eq!(all(headers, "access-control-expose-headers"), [EXPOSED]);
    assert_eq!(all(headers, "vary"), ["Origin"]);
}

/// The bytes of `assets/<file>`.
fn file(name: &str) -> Vec<u8> {
    std::fs::read(support::root().join("assets").join(name)).expect("read the asset")
}

/// Waits until the worker has counted more than `before` requests in the
/// series `labels` (see [`counted`]): it ran for them.
async fn wait_until_counted(http: &reqwest::Client, stack: &Stack, labels: &str, before: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while counted(http, stack, labels).await <= before {
        assert!(
            Instant::now() < deadline,
            "the worker never counted {labels} (it did not run for it?)\n{}",
            stack.worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_embed_fetched_through_the_worker_keeps_its_file_headers_and_gets_one_cors_grant() {
    let stack = worker_first();
    let http = reqwest::Client::new();
    let series = r#"route="/tally.js",method="GET",status="200"}"#;
    let before = counted(&http, stack, series).await;

    let reply = http
        .get(stack.worker.url("/tally.js"))
        .header("Origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "{}", stack.worker.log());
    let headers = reply.headers().clone();
    let body = reply.bytes().await.unwrap();
    assert!(
        body.as_ref() == file("tally.js").as_slice(),
        "not the bytes of assets/tally.js ({} bytes)",
        body.len()
    );
    // The platform's content type and ETag, and the lines of assets/_headers.
    assert_eq!(
        all(&headers, "content-type"),
        ["text/javascript; charset=utf-8"]
    );
    assert_eq!(all(&headers, "cache-control"), [EMBED_CACHE]);
    assert_eq!(all(&headers, "allow"), ["GET, HEAD"]);
    assert_eq!(all(&headers, "x-content-type-options"), ["nosniff"]);
    let etag = all(&headers, "etag");
    assert!(
        etag.len() == 1 && etag[0].starts_with('"') && etag[0].len() > 2,
        "one strong ETag: {etag:?}"
    );
    assert_one_grant(&headers);
    wait_until_counted(&http, stack, series, before).await;
}

#[tokio::test]
async fn revalidating_the_embed_through_the_worker_is_a_304_with_the_cors_grant() {
    let stack = worker_first();
    let http = reqwest::Client::new();
    let get = || {
        http.get(stack.worker.url("/tally.js"))
            .header("Origin", ALLOWED)
    };
    let first = get().send().await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = all(first.headers(), "etag").pop().expect("an ETag");

    let series = r#"route="/tally.js",method="GET",status="304"}"#;
    let before = counted(&http, stack, series).await;
    let again = get().header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304, "{}", stack.worker.log());
    let headers = again.headers().clone();
    assert!(again.bytes().await.unwrap().is_empty(), "a 304 has no body");
    assert_eq!(all(&headers, "etag"), [etag.as_str()]);
    assert_eq!(all(&headers, "cache-control"), [EMBED_CACHE]);
    assert_one_grant(&headers);
    wait_until_counted(&http, stack, series, before).await;

    // The weak form of the tag matches too, as the platform's own answer does.
    let weak = get()
        .header("If-None-Match", format!("W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), 304);
    assert_eq!(
        all(weak.headers(), "access-control-allow-origin"),
        [ALLOWED]
    );

    // Another tag is not a match: the whole file again.
    let stale = get()
        .header("If-None-Match", "\"not-the-tag\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert!(stale.bytes().await.unwrap().as_ref() == file("tally.js").as_slice());
}

#[tokio::test]
async fn a_head_of_the_embed_through_the_worker_has_its_headers_the_grant_and_no_body() {
    let stack = worker_first();
    let http = reqwest::Client::new();
    let series = r#"route="/tally.js",method="HEAD",status="200"}"#;
    let before = counted(&http, stack, series).await;
    let reply = http
        .head(stack.worker.url("/tally.js"))
        .header("Origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "{}", stack.worker.log());
    let headers = reply.headers().clone();
    assert!(
        reply.bytes().await.unwrap().is_empty(),
        "a HEAD has no body"
    );
    assert_eq!(
        all(&headers, "content-type"),
        ["text/javascript; charset=utf-8"]
    );
    assert_eq!(all(&headers, "etag").len(), 1);
    assert_one_grant(&headers);
    wait_until_counted(&http, stack, series, before).await;
}

#[tokio::test]
async fn an_origin_not_allowed_gets_no_grant_from_the_worker_only_a_files_own() {
    let stack = worker_first();
    let http = reqwest::Client::new();
    let series = r#"route="/",method="GET",status="200"}"#;
    let before = counted(&http, stack, series).await;
    // (path, file, the file's own Access-Control-Allow-Origin in assets/_headers)
    for (path, name, own) in [
        ("/", "index.html", None),
        ("/tally.js", "tally.js", Some("*")),
        ("/openapi.json", "openapi.json", Some("*")),
    ] {
        let reply = http
            .get(stack.worker.url(path))
            .header("Origin", "https://elsewhere.example")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{path}: {}", stack.worker.log());
        let headers = reply.headers().clone();
        assert!(
            reply.bytes().await.unwrap().as_ref() == file(name).as_slice(),
            "{path}: not the bytes of assets/{name}"
        );
        assert_eq!(
            all(&headers, "access-control-allow-origin"),
            Vec::from_iter(own.map(str::to_owned)),
            "{path}"
        );
        assert_eq!(
            all(&headers, "access-control-expose-headers"),
            [""; 0],
            "{path}"
        );
        assert_eq!(all(&headers, "vary"), [""; 0], "{path}");
    }
    wait_until_counted(&http, stack, series, before).await;
}

#[tokio::test]
async fn a_path_with_no_file_is_the_workers_json_404_with_the_cors_grant() {
    let stack = worker_first();
    let reply = send(
        reqwest::Client::new()
            .get(stack.worker.url("/nope.js"))
            .header("Origin", ALLOWED),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["error"]["code"], "not_found");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_one_grant(&reply.headers);
}

#[tokio::test]
async fn other_methods_on_a_file_through_the_worker_are_its_405_and_options_its_preflight() {
    let stack = worker_first();
    let http = reqwest::Client::new();
    let post = send(
        http.post(stack.worker.url("/tally.js"))
            .header("Origin", ALLOWED),
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.body["error"]["code"], "method_not_allowed");
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(all(&post.headers, "access-control-allow-origin"), [ALLOWED]);

    let preflight = http
        .request(reqwest::Method::OPTIONS, stack.worker.url("/tally.js"))
        .header("Origin", ALLOWED)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        all(preflight.headers(), "access-control-allow-origin"),
        [ALLOWED]
    );
    let refused = send(
        http.request(reqwest::Method::OPTIONS, stack.worker.url("/tally.js"))
            .header("Origin", "https://elsewhere.example")
            .header("Access-Control-Request-Method", "GET"),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["error"]["code"], "origin_not_allowed");
}

/// `withHeaders` of src/edge/http.js, run by Node on a `Response` of Node's
/// own (the same Fetch API headers as workerd's) whose headers are `own`,
/// with the worker's `extra` ("name\nvalue\n" pairs): the copy's headers,
/// lower-cased and sorted, as JSON pairs.
fn with_headers(own: &[(&str, &str)], extra: &str) -> serde_json::Value {
    let script = r#"
        const [, module, own, extra] = process.argv;
        const { withHeaders } = await import(module);
        const response = new Response("file", { headers: JSON.parse(own) });
        const copy = withHeaders(response, extra);
        if ((await copy.text()) !== "file") throw new Error("the body was not passed on");
        console.log(JSON.stringify([...copy.headers]));
    "#;
    let module = support::root().join("src/edge/http.js");
    let own: serde_json::Map<String, serde_json::Value> = own
        .iter()
        .map(|(name, value)| (name.to_string(), (*value).into()))
        .collect();
    let out = std::process::Command::new("node")
        .args(["--no-warnings", "--input-type=module", "-e", script])
        .arg(format!("file://{}", module.display()))
        .arg(serde_json::Value::Object(own).to_string())
        .arg(extra)
        .output()
        .expect("node runs (wrangler needs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON pairs")
}

#[test]
fn the_workers_headers_replace_a_files_own_of_the_same_name_and_join_its_vary() {
    let headers = with_headers(
        &[
            ("Access-Control-Allow-Origin", "*"),
            ("Vary", "Accept-Encoding"),
            ("ETag", "\"tag\""),
            ("Content-Type", "text/javascript; charset=utf-8"),
        ],
        "Access-Control-Allow-Origin\nhttps://allowed.example\n\
         Access-Control-Expose-Headers\nRateLimit\nVary\nOrigin\n",
    );
    assert_eq!(
        headers,
        serde_json::json!([
            ["access-control-allow-origin", "https://allowed.example"],
            ["access-control-expose-headers", "RateLimit"],
            ["content-type", "text/javascript; charset=utf-8"],
            ["etag", "\"tag\""],
            ["vary", "Accept-Encoding, Origin"],
        ])
    );
    // Two of one name from the worker are both kept.
    let twice = with_headers(&[("X-Mark", "file")], "X-Mark\none\nX-Mark\ntwo\n");
    assert_eq!(
        twice,
        serde_json::json!([
            ["content-type", "text/plain;charset=UTF-8"],
            ["x-mark", "one, two"]
        ])
    );
}
