//! `GET /openapi.json` is kept true: the document is valid OpenAPI 3.1, names
//! exactly the worker's routes, and real responses of the worker — successes
//! and every kind of error — match it in status, content type, headers and body.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use support::{API_KEY, Stack};

fn document() -> Value {
    let text = std::fs::read_to_string(support::root().join("assets/openapi.json"))
        .expect("read assets/openapi.json");
    serde_json::from_str(&text).expect("the document is JSON")
}

/// Runs a Python check (tools from `scripts/setup.sh --test`) with `input` on stdin.
fn python(script: &str, input: &str) -> String {
    let document = support::root().join("assets/openapi.json");
    support::python(script, &[&document], input).unwrap_or_else(|out| panic!("{out}"))
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let out = python(
        "import json, sys\n\
         from openapi_spec_validator import validate\n\
         doc = json.load(open(sys.argv[1]))\n\
         assert doc['openapi'].startswith('3.1'), doc['openapi']\n\
         validate(doc)\n\
         print('valid')",
        "",
    );
    assert_eq!(out.trim(), "valid");
}

#[test]
fn the_document_lists_exactly_the_routes_the_metrics_label() {
    let doc = document();
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    let routes: BTreeSet<&str> = tally::metrics::ROUTES.iter().copied().collect();
    assert_eq!(paths, routes);
}

/// Checks each observed response against the document: the status must be
/// documented for the operation (or be the global 404/405), the content type
/// must be one it lists, required headers present, every documented header and
/// every JSON body valid against its schema. Prints one line per problem.
const CONFORMANCE: &str = r##"
import json, sys
from jsonschema import Draft202012Validator

doc = json.load(open(sys.argv[1]))
observations = json.load(sys.stdin)

def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **extra}
    return node

def check(schema, value):
    root = {**schema, "components": doc["components"]}
    return [e.message for e in Draft202012Validator(root).iter_errors(value)]

problems = []
for o in observations:
    where = f"{o['method']} {o['url']} -> {o['status']}"
    operation = doc["paths"].get(o["template"], {}).get(o["method"].lower())
    status = str(o["status"])
    if operation is not None and status in operation["responses"]:
        response = deref(operation["responses"][status])
    elif operation is None and status == "404":
        response = deref({"$ref": "#/components/responses/NotFound"})
    elif operation is None and status == "405":
        response = deref({"$ref": "#/components/responses/MethodNotAllowed"})
    else:
        problems.append(f"{where}: status not documented")
        continue
    headers = {k.lower(): v for k, v in o["headers"].items()}
    for name, header in response.get("headers", {}).items():
        header = deref(header)
        value = headers.get(name.lower())
        if value is None:
            if header.get("required"):
                problems.append(f"{where}: header {name} missing")
            continue
        for error in check(header.get("schema", {}), value):
            problems.append(f"{where}: header {name}: {error}")
    content = response.get("content")
    if not content:
        if o["body"]:
            problems.append(f"{where}: a body where none is documented")
        continue
    media = headers.get("content-type", "").replace(" ", "").lower()
    listed = {k.replace(" ", "").lower(): v for k, v in content.items()}
    if media not in listed:
        problems.append(f"{where}: content type {media!r} not in {list(content)}")
        continue
    if media.startswith("application/json"):
        try:
            body = json.loads(o["body"])
        except ValueError:
            problems.append(f"{where}: body is not JSON")
            continue
        for error in check(listed[media].get("schema", {}), body):
            problems.append(f"{where}: body: {error}")

for p in problems:
    print(p)
"##;

/// One real response, kept for the conformance check.
struct Observed {
    method: Method,
    template: String,
    url: String,
    status: u16,
    headers: Value,
    body: String,
}

struct Client {
    http: reqwest::Client,
    stack: Stack,
    seen: Vec<Observed>,
}

impl Client {
    /// Sends a request, records its response and returns status and JSON body.
    async fn send(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let url = self.stack.worker.url(path);
        let response = build(self.http.request(method.clone(), &url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers: serde_json::Map<String, Value> = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
            .collect();
        let body = response.text().await.expect("body");
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        self.seen.push(Observed {
            method,
            template: template.to_owned(),
            url: path.to_owned(),
            status,
            headers: Value::Object(headers),
            body,
        });
        (status, json)
    }
}

#[tokio::test]
async fn real_responses_of_every_route_and_error_match_the_document() {
    let stack = Stack::start_with(&[("RATE_LIMIT_PER_MINUTE", "20")]);
    let mut c = Client {
        http: reqwest::Client::new(),
        stack,
        seen: Vec::new(),
    };
    let none = |r: reqwest::RequestBuilder| r;
    let api_key = |r: reqwest::RequestBuilder| r.bearer_auth(API_KEY);
    const ITEM: &str = "/v1/items/{item}";
    const LIKE: &str = "/v1/items/{item}/like";
    const VIEWS: &str = "/v1/items/{item}/views";
    const SERIES: &str = "/v1/items/{item}/views/series";
    const COUNTER: &str = "/v1/items/{item}/counters/{name}";

    let (status, visitor) = c
        .send(Method::POST, "/v1/visitors", "/v1/visitors", none)
        .await;
    assert_eq!(status, 201, "{}", c.stack.worker.log());
    let token = visitor["token"].as_str().expect("a token").to_owned();
    let (_, other) = c
        .send(Method::POST, "/v1/visitors", "/v1/visitors", none)
        .await;
    let other = other["token"].as_str().expect("a token").to_owned();
    let auth = |t: &str| {
        let t = t.to_owned();
        move |r: reqwest::RequestBuilder| r.bearer_auth(t)
    };

    c.send(Method::GET, "/healthz", "/healthz", none).await;
    c.send(Method::GET, "/", "/", none).await;
    let (_, _) = c.send(Method::GET, "/tally.js", "/tally.js", none).await;
    let etag = c.seen.last().expect("seen").headers["etag"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, _) = c
        .send(Method::GET, "/tally.js", "/tally.js", |r| {
            r.header("If-None-Match", etag)
        })
        .await;
    assert_eq!(status, 304);
    let (_, served) = c
        .send(Method::GET, "/openapi.json", "/openapi.json", none)
        .await;
    assert_eq!(
        served,
        document(),
        "the worker serves assets/openapi.json as is"
    );

    let page = "/v1/items/blog%2F2026%2Fconform";
    c.send(Method::PUT, LIKE, &format!("{page}/like"), auth(&token))
        .await;
    c.send(Method::PUT, LIKE, &format!("{page}/like"), auth(&token))
        .await;
    c.send(Method::DELETE, LIKE, &format!("{page}/like"), auth(&token))
        .await;
    c.send(Method::PUT, LIKE, &format!("{page}/like"), none)
        .await;
    c.send(
        Method::PUT,
        LIKE,
        &format!("{page}/like"),
        auth("forged.token.x"),
    )
    .await;
    c.send(Method::PUT, LIKE, "/v1/items/bad%20item/like", auth(&token))
        .await;

    let key = |k: &str| {
        let k = k.to_owned();
        move |r: reqwest::RequestBuilder| r.header("Idempotency-Key", k)
    };
    c.send(Method::POST, VIEWS, &format!("{page}/views"), none)
        .await;
    c.send(
        Method::POST,
        VIEWS,
        &format!("{page}/views"),
        key("conform-1"),
    )
    .await;
    let (status, _) = c
        .send(
            Method::POST,
            VIEWS,
            &format!("{page}/views"),
            key("conform-1"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .send(Method::POST, VIEWS, &format!("{page}/views"), |r| {
            r.bearer_auth(&other).header("Idempotency-Key", "conform-1")
        })
        .await;
    assert_eq!(status, 409);
    let (status, _) = c
        .send(
            Method::POST,
            VIEWS,
            &format!("{page}/views"),
            key(&"k".repeat(300)),
        )
        .await;
    assert_eq!(status, 400);

    let counter = format!("{page}/counters/score");
    for body in [json!({"by": 3}), json!({"by": 0.25})] {
        let (status, _) = c
            .send(Method::POST, COUNTER, &counter, |r| {
                r.bearer_auth(API_KEY).json(&body)
            })
            .await;
        assert_eq!(status, 200);
    }
    c.send(Method::POST, COUNTER, &counter, |r| {
        r.json(&json!({"by": 1}))
    })
    .await;
    c.send(Method::POST, COUNTER, &counter, |r| {
        r.bearer_auth(API_KEY).body("{\"by\": \"x\"}")
    })
    .await;
    c.send(
        Method::POST,
        COUNTER,
        &format!("{page}/counters/a%2Fb"),
        |r| r.bearer_auth(API_KEY).json(&json!({"by": 1})),
    )
    .await;
    let (status, _) = c
        .send(Method::POST, COUNTER, &counter, |r| {
            r.bearer_auth(API_KEY)
                .body(format!("{{\"by\": 1, \"pad\": \"{}\"}}", "x".repeat(9000)))
        })
        .await;
    assert_eq!(status, 413);

    let overflow = format!("{page}/counters/huge");
    for expected in [200, 422] {
        let (status, _) = c
            .send(Method::POST, COUNTER, &overflow, |r| {
                r.bearer_auth(API_KEY).json(&json!({"by": 1e308}))
            })
            .await;
        assert_eq!(status, expected);
    }
    for _ in 0..2 {
        let (status, _) = c
            .send(Method::POST, COUNTER, &counter, |r| {
                r.bearer_auth(API_KEY)
                    .header("Idempotency-Key", "conform-counter")
                    .json(&json!({"by": 1}))
            })
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = c
        .send(Method::POST, COUNTER, &counter, |r| {
            r.bearer_auth(API_KEY)
                .header("Idempotency-Key", "conform-counter")
                .json(&json!({"by": 2}))
        })
        .await;
    assert_eq!(status, 409);

    for expected in [201, 200] {
        let (status, _) = c.send(Method::PUT, ITEM, page, api_key).await;
        assert_eq!(status, expected);
    }
    let (status, _) = c.send(Method::PUT, ITEM, page, auth(&token)).await;
    assert_eq!(status, 401);

    c.send(Method::GET, ITEM, page, none).await;
    c.send(Method::GET, ITEM, page, auth(&token)).await;
    c.send(Method::GET, ITEM, "/v1/items/%ZZ", none).await;
    c.send(
        Method::GET,
        "/v1/items",
        "/v1/items?ids=blog/2026/conform,about",
        none,
    )
    .await;
    c.send(Method::GET, "/v1/items", "/v1/items", none).await;
    c.send(
        Method::GET,
        SERIES,
        &format!("{page}/views/series?bucket=hour"),
        none,
    )
    .await;
    c.send(
        Method::GET,
        SERIES,
        &format!("{page}/views/series?bucket=week"),
        none,
    )
    .await;
    c.send(
        Method::GET,
        SERIES,
        &format!("{page}/views/series?bucket=day&metric=unique"),
        none,
    )
    .await;
    c.send(
        Method::GET,
        SERIES,
        &format!("{page}/views/series?bucket=hour&metric=unique"),
        none,
    )
    .await;
    const IMPORT: &str = "/v1/admin/import";
    const MERGE: &str = "/v1/admin/items/{item}/merge";
    let ndjson =
        |body: &'static str| move |r: reqwest::RequestBuilder| r.bearer_auth(API_KEY).body(body);
    let import_line = "{\"item\": \"blog/2026/imported\", \"views\": 5, \"likes_base\": 2}\n";
    c.send(Method::POST, IMPORT, IMPORT, ndjson(import_line))
        .await;
    c.send(Method::POST, IMPORT, IMPORT, ndjson("{\"item\": 1}"))
        .await;
    c.send(Method::POST, IMPORT, IMPORT, ndjson("\n")).await;
    c.send(Method::POST, IMPORT, IMPORT, |r| r.body(import_line))
        .await;
    let too_big = "\n".repeat(256 * 1024 + 1);
    c.send(Method::POST, IMPORT, IMPORT, |r| {
        r.bearer_auth(API_KEY).body(too_big)
    })
    .await;
    let merge = format!("{page}/merge").replace("/v1/items/", "/v1/admin/items/");
    let from = |from: &str| {
        let body = json!({ "from": from });
        move |r: reqwest::RequestBuilder| r.bearer_auth(API_KEY).json(&body)
    };
    c.send(Method::POST, MERGE, &merge, from("blog/2026/imported"))
        .await;
    c.send(Method::POST, MERGE, &merge, from("blog/2026/conform"))
        .await;
    c.send(Method::POST, MERGE, &merge, from("bad id")).await;
    c.send(Method::POST, MERGE, &merge, |r| {
        r.json(&json!({"from": "blog/2026/imported"}))
    })
    .await;
    const BADGE: &str = "/v1/items/{item}/badge.svg";
    let badge = format!("{page}/badge.svg?metric=likes&label=a%3Cb&color=4c1&style=flat-square");
    c.send(Method::GET, BADGE, &badge, none).await;
    let etag = c
        .seen
        .last()
        .map(|o| o.headers["etag"].clone())
        .expect("seen");
    let etag = etag.as_str().unwrap_or_default().to_owned();
    c.send(Method::GET, BADGE, &badge, |r| {
        r.header("If-None-Match", etag)
    })
    .await;
    c.send(
        Method::GET,
        BADGE,
        &format!("{page}/badge.svg?color=nope"),
        none,
    )
    .await;
    c.send(
        Method::GET,
        "/v1/trending",
        "/v1/trending?window=day&limit=5",
        none,
    )
    .await;
    c.send(Method::GET, "/v1/trending", "/v1/trending?limit=0", none)
        .await;
    c.send(Method::GET, "/metrics", "/metrics", api_key).await;
    c.send(Method::GET, "/metrics", "/metrics", none).await;
    // The system of record: a pass (its answer), the record's read, their errors.
    const RECONCILE: &str = "/v1/admin/reconcile";
    let (status, _) = c.send(Method::POST, RECONCILE, RECONCILE, api_key).await;
    assert_eq!(status, 200);
    c.send(Method::POST, RECONCILE, RECONCILE, none).await;
    let record = format!("{page}?source=record");
    let (status, _) = c.send(Method::GET, ITEM, &record, api_key).await;
    assert_eq!(status, 200);
    c.send(Method::GET, ITEM, &format!("{record}&who=alice"), api_key)
        .await;
    c.send(Method::GET, ITEM, &record, none).await;
    let (status, _) = c
        .send(Method::GET, ITEM, &format!("{page}?source=elsewhere"), none)
        .await;
    assert_eq!(status, 400);
    c.send(Method::GET, "unknown", "/v2/nothing-here", none)
        .await;
    let (status, _) = c
        .send(
            Method::PATCH,
            "unknown",
            &format!("{page}/like"),
            auth(&token),
        )
        .await;
    assert_eq!(status, 405);

    // A CORS preflight on every path that documents one (the static files are
    // served by the platform, which answers no preflight).
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    let preflighted: Vec<&String> = paths
        .iter()
        .filter(|(_, ops)| ops.get("options").is_some())
        .map(|(template, _)| template)
        .collect();
    assert!(preflighted.len() >= 10, "{preflighted:?}");
    for template in preflighted {
        let path = template
            .replace("{item}", "blog%2F2026%2Fconform")
            .replace("{name}", "score");
        let (status, _) = c
            .send(Method::OPTIONS, template, &path, |r| {
                r.header("Origin", "https://example.test")
                    .header("Access-Control-Request-Method", "PUT")
            })
            .await;
        assert_eq!(status, 204, "OPTIONS {path}");
    }

    // Over the write limit: the 21st like of one identity in this minute.
    let mut limited = 0;
    for _ in 0..21 {
        let (status, _) = c
            .send(Method::PUT, LIKE, &format!("{page}/like"), auth(&other))
            .await;
        limited += usize::from(status == 429);
    }
    assert!(limited >= 1, "the limit of 20 was never reached");

    // Redis gone: 503 with Retry-After.
    c.stack.redis.stop();
    let (status, _) = c.send(Method::GET, ITEM, page, none).await;
    assert_eq!(status, 503);

    let observed: Vec<Value> = c
        .seen
        .iter()
        .map(|o| {
            let template = if o.template == "unknown" {
                ""
            } else {
                o.template.as_str()
            };
            json!({"method": o.method.as_str(), "template": template, "url": o.url,
                   "status": o.status, "headers": o.headers, "body": o.body})
        })
        .collect();
    let problems = python(CONFORMANCE, &Value::from(observed).to_string());
    assert!(
        problems.trim().is_empty(),
        "responses that break the document:\n{problems}"
    );

    // Every documented operation was seen answering with a success.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if method == "parameters" {
                continue;
            }
            let ok = c.seen.iter().any(|o| {
                &o.template == path
                    && o.method.as_str().eq_ignore_ascii_case(method)
                    && (200..300).contains(&o.status)
            });
            assert!(ok, "{method} {path} was never exercised successfully");
        }
    }
    let statuses: BTreeSet<u16> = c.seen.iter().map(|o| o.status).collect();
    for status in [
        200, 201, 204, 304, 400, 401, 404, 405, 409, 413, 422, 429, 503,
    ] {
        assert!(statuses.contains(&status), "no {status} was checked");
    }
}
