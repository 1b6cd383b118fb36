//! Authentication on every route.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Both, TOKEN, send};

const ROUTES: [(&str, &str, &str); 6] = [
    ("POST", "/", r#"["SET", "k", "v"]"#),
    ("GET", "/get/k", ""),
    ("POST", "/set/k", "v"),
    ("POST", "/pipeline", r#"[["SET", "k", "v"]]"#),
    ("POST", "/multi-exec", r#"[["SET", "k", "v"]]"#),
    ("GET", "/metrics", ""),
];

fn request(both: &Both, method: &str, path: &str, body: &str) -> reqwest::RequestBuilder {
    let client = reqwest::Client::new();
    let url = both.url(path);
    match method {
        "POST" => client.post(url).body(body.to_owned()),
        _ => client.get(url),
    }
}

#[tokio::test]
async fn every_route_refuses_a_missing_or_wrong_token_with_401() {
    let both = Both::start();
    for (method, path, body) in ROUTES {
        let joiner = if path.contains('?') { '&' } else { '?' };
        for (label, request) in [
            ("no token", request(&both, method, path, body)),
            (
                "wrong bearer",
                request(&both, method, path, body).bearer_auth("nope"),
            ),
            (
                "token prefix",
                request(&both, method, path, body).bearer_auth(&TOKEN[..TOKEN.len() - 1]),
            ),
            (
                "basic scheme",
                request(&both, method, path, body).basic_auth(TOKEN, None::<&str>),
            ),
            (
                "wrong query token",
                request(&both, method, &format!("{path}{joiner}_token=nope"), body),
            ),
        ] {
            let answer = send(request).await;
            assert_eq!(answer.status, 401, "{method} {path} with {label}");
            assert!(
                answer.json()["error"].is_string(),
                "{method} {path} with {label}"
            );
        }
    }
    assert_eq!(both.redis.cli(&["EXISTS", "k"]), "0", "nothing ran");
}

#[tokio::test]
async fn every_route_accepts_the_token_as_bearer_or_query() {
    let both = Both::start();
    for (method, path, body) in ROUTES {
        let by_bearer = send(request(&both, method, path, body).bearer_auth(TOKEN)).await;
        assert_eq!(by_bearer.status, 200, "{method} {path}: {}", by_bearer.text);
        let by_query = send(request(
            &both,
            method,
            &format!("{path}?_token={TOKEN}"),
            body,
        ))
        .await;
        assert_eq!(by_query.status, 200, "{method} {path}: {}", by_query.text);
    }
}
