//! The official `@upstash/redis` npm client works against the gateway unchanged.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Both, TOKEN};

#[tokio::test]
async fn the_official_upstash_client_runs_set_get_counters_scripts_pipelines_and_multi() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        root.join("node_modules/@upstash/redis").exists(),
        "node_modules/@upstash/redis is missing: run `npm ci` at the repository root"
    );
    let both = Both::start();
    let output = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstash/client.mjs"))
        .args([&both.url(""), TOKEN, &common::unique("upstash")])
        .output()
        .expect("node is installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the client failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.trim(), "ok");

    // It really came through the gateway, on the endpoints the client batches into.
    let metrics = common::send(
        reqwest::Client::new()
            .get(both.url("/metrics"))
            .bearer_auth(TOKEN),
    )
    .await;
    for endpoint in ["/pipeline", "/multi-exec"] {
        let prefix = format!(
            "tally_gateway_requests_total{{endpoint=\"{endpoint}\",command=\"batch\",status=\"200\"}}"
        );
        assert!(
            metrics.text.lines().any(|l| l.starts_with(&prefix)),
            "{endpoint} unused:\n{}",
            metrics.text
        );
    }
    assert!(
        metrics.text.contains(r#"command="evalsha"}"#),
        "{}",
        metrics.text
    );
}
