//! A corpus of bad item ids: each is `400 invalid_item`, and Redis is untouched.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::{Stack, send, token_for};

/// Raw path segments, as they go over the wire, that are not valid item ids.
const BAD_IDS: &[&str] = &[
    "",               // empty
    "%20",            // a space
    "a%20b",          // a space inside
    "%7Bbraces%7D",   // hash-tag braces
    "a%7Bb",          // an opening brace
    "a%7Db",          // a closing brace
    "*",              // a glob
    "a%2Ab",          // an encoded glob
    "%22quoted%22",   // double quotes
    "it's",           // a single quote
    "a%00b",          // NUL
    "a%0Ab",          // LF
    "a%0Db",          // CR
    "x%0D%0ADEL%20*", // CR LF injection
    "a%09b",          // a tab
    "a%7Fb",          // DEL
    "a%08b",          // backspace
    "caf%C3%A9",      // non-ASCII (é)
    "%E2%9C%93",      // non-ASCII (✓)
    "%F0%9F%98%80",   // an emoji
    "%C2%A0",         // a no-break space
    "%FF",            // not UTF-8
    "%C3",            // truncated UTF-8
    "%",              // a lone percent
    "%G1",            // a bad escape
    "a%2",            // a short escape
    "a%25b",          // a percent sign
    "a+b",            // a plus
    "a,b",            // a comma
    "a;b",            // a semicolon
    "a=b",            // an equals sign
    "a%3Fb",          // a question mark
    "a%23b",          // a hash
    "a&b",            // an ampersand
    "a@b",            // an at sign
    "a!b",            // a bang
    "a$b",            // a dollar
    "a(b)",           // parentheses
    "a%5Bb%5D",       // brackets
    "a%7Cb",          // a pipe
    "a%5Cb",          // a backslash
    "a%5Eb",          // a caret
    "a%60b",          // a backtick
    "%3Cscript%3E",   // angle brackets
];

/// Every key but the worker's own metrics (flushed after each response).
fn counting_keys(stack: &Stack) -> Vec<String> {
    let mut keys: Vec<String> = stack
        .redis
        .cli(&["--scan"])
        .lines()
        .filter(|key| !key.contains("{#metrics}"))
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn every_bad_item_id_is_400_invalid_item_and_writes_nothing() {
    let stack = Stack::start();
    let too_long = "a".repeat(201);
    let too_long_decoded = format!("{}%2F%2F", "a".repeat(199));
    let mut corpus: Vec<&str> = BAD_IDS.to_vec();
    corpus.push(&too_long);
    corpus.push(&too_long_decoded);
    assert!(corpus.len() >= 40);

    let http = reqwest::Client::new();
    let token = token_for("id-tester");
    let before = counting_keys(&stack);
    for raw in &corpus {
        let requests = [
            http.put(stack.worker.url(&format!("/v1/items/{raw}/like")))
                .bearer_auth(&token),
            http.post(stack.worker.url(&format!("/v1/items/{raw}/views")))
                .bearer_auth(&token),
            http.get(stack.worker.url(&format!("/v1/items/{raw}"))),
        ];
        for request in requests {
            let reply = send(request).await;
            assert_eq!(reply.status, 400, "{raw:?}: {:?}", reply.body);
            assert_eq!(reply.body["error"]["code"], "invalid_item", "{raw:?}");
            let message = reply.body["error"]["message"].as_str().expect("message");
            assert!(
                !message.contains("tally:"),
                "no key in the message: {message}"
            );
        }
    }
    assert_eq!(counting_keys(&stack), before, "the key count is unchanged");
    assert!(before.is_empty());
}
