//! Identity tokens end to end: every bad token is `401` and writes nothing.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};
use support::{JWT_SECRET, encode, send, shared, unique};

const FUTURE: i64 = 4_000_000_000;

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn hs256(input: &str, secret: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn signed(header: &str, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = hs256(&input, secret);
    format!("{input}.{signature}")
}

/// Tokens that must all be refused, each with what is wrong with it.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let payload = format!(r#"{{"sub":"mallory","exp":{FUTURE}}}"#);
    let good = signed(header, &payload, JWT_SECRET.as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    let hs512 = {
        let input = format!("{}.{}", b64(r#"{"alg":"HS512"}"#), b64(&payload));
        let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(JWT_SECRET.as_bytes())
            .expect("any key length");
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    vec![
        (
            "forged signature",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(r#"{"sub":"admin","exp":4000000000}"#),
                parts[2]
            ),
        ),
        ("wrong secret", signed(header, &payload, b"not the secret")),
        (
            "expired",
            signed(
                header,
                r#"{"sub":"mallory","exp":1000000000}"#,
                JWT_SECRET.as_bytes(),
            ),
        ),
        (
            "missing exp",
            signed(header, r#"{"sub":"mallory"}"#, JWT_SECRET.as_bytes()),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&payload)
            ),
        ),
        ("HS512", hs512),
        ("malformed", "not-a-token".to_owned()),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("garbage base64", "!!!.???.***".to_owned()),
    ]
}

#[tokio::test]
async fn every_bad_token_is_refused_with_401_and_nothing_is_written() {
    let http = reqwest::Client::new();
    let item = unique("auth");
    let worker = &shared().worker;
    for (what, token) in bad_tokens() {
        let like = send(
            http.put(worker.url(&format!("/v1/items/{}/like", encode(&item))))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(like.status, 401, "like with {what}");
        assert_eq!(
            like.body["error"]["code"], "unauthorized",
            "like with {what}"
        );

        let view = send(
            http.post(worker.url(&format!("/v1/items/{}/views", encode(&item))))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(view.status, 401, "view with {what}");

        let read = send(
            http.get(worker.url(&format!("/v1/items/{}", encode(&item))))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(read.status, 401, "read with {what}");
    }
    let keys = shared()
        .redis
        .cli(&["--scan", "--pattern", &format!("*{item}*")]);
    assert_eq!(keys, "", "no key of the item exists");
}

#[tokio::test]
async fn a_scheme_other_than_bearer_is_refused() {
    let http = reqwest::Client::new();
    let item = unique("basic");
    let reply = send(
        http.put(shared().worker.url(&format!("/v1/items/{item}/like")))
            .header("Authorization", "Basic dXNlcjpwYXNz"),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn a_visitor_token_is_issued_and_accepted_for_likes() {
    let http = reqwest::Client::new();
    let issued = send(http.post(shared().worker.url("/v1/visitors"))).await;
    assert_eq!(issued.status, 201);
    let token = issued.body["token"].as_str().expect("token string");
    let visitor = issued.body["visitor"].as_str().expect("visitor string");
    assert!(visitor.starts_with("anon:"), "{visitor}");
    assert!(issued.body["expires_at"].as_i64().expect("expires_at") > 1_700_000_000);
    assert!(issued.header("ratelimit").is_some());

    let item = unique("visitor-like");
    let like = send(
        http.put(shared().worker.url(&format!("/v1/items/{item}/like")))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(like.status, 200);
    assert_eq!(like.body["likes"], 1);

    let other = send(http.post(shared().worker.url("/v1/visitors"))).await;
    assert_ne!(
        other.body["visitor"], issued.body["visitor"],
        "visitors are distinct"
    );
}
