//! The `tally-gateway` binary: configuration from flags, its own variables and SRH's.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Redis, send};
use serde_json::json;

/// The binary with a clean configuration environment, killed on drop.
struct Binary(Child);

impl Binary {
    fn start(args: &[&str], env: &[(&str, &str)], port: u16) -> Binary {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally-gateway"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TALLY_GATEWAY_") || name.starts_with("SRH_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the gateway did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Binary(child)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn set_and_get(port: u16, token: &str) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/");
    let set = send(
        client
            .post(&url)
            .bearer_auth(token)
            .json(&json!(["SET", "bin", "ok?"])),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let get = send(
        client
            .post(&url)
            .bearer_auth(token)
            .json(&json!(["GET", "bin"])),
    )
    .await;
    (get.status, get.json())
}

#[tokio::test]
async fn srh_variables_configure_a_drop_in_replacement() {
    let redis = Redis::start();
    let port = common::free_port();
    let _gateway = Binary::start(
        &[],
        &[
            ("SRH_MODE", "env"),
            ("SRH_TOKEN", "srh-token"),
            ("SRH_CONNECTION_STRING", &redis.url()),
            ("SRH_PORT", &port.to_string()),
        ],
        port,
    );
    assert_eq!(
        set_and_get(port, "srh-token").await,
        (200, json!({"result": "ok?"}))
    );
    // SRH_PORT binds loopback, not every interface.
    for address in non_loopback_addresses() {
        assert!(
            std::net::TcpStream::connect((address, port)).is_err(),
            "reachable on {address}:{port}"
        );
    }
}

/// This machine's addresses other than loopback, as `hostname -I` lists them.
fn non_loopback_addresses() -> Vec<std::net::IpAddr> {
    let Ok(output) = Command::new("hostname").arg("-I").output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse().ok())
        .filter(|a: &std::net::IpAddr| !a.is_loopback())
        .collect()
}

#[tokio::test]
async fn the_allow_admin_variable_lets_the_full_token_administer() {
    let redis = Redis::start();
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let _gateway = Binary::start(
        &[
            "--listen",
            &listen,
            "--redis-url",
            &redis.url(),
            "--token",
            "t",
        ],
        &[("TALLY_GATEWAY_ALLOW_ADMIN", "true")],
        port,
    );
    let answer = send(
        reqwest::Client::new()
            .post(format!("http://{listen}/"))
            .bearer_auth("t")
            .json(&json!(["CONFIG", "GET", "maxmemory"])),
    )
    .await;
    assert_eq!(answer.json(), json!({"result": ["maxmemory", "0"]}));
}

#[tokio::test]
async fn a_password_in_the_redis_url_is_used() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let port = common::free_port();
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let listen = format!("127.0.0.1:{port}");
    let _gateway = Binary::start(
        &["--listen", &listen, "--redis-url", &url, "--token", "t"],
        &[],
        port,
    );
    assert_eq!(
        set_and_get(port, "t").await,
        (200, json!({"result": "ok?"}))
    );
}

#[tokio::test]
async fn a_wrong_redis_password_is_503_without_leaking_it() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let port = common::free_port();
    let url = format!("redis://:wrong-pw@127.0.0.1:{}", redis.port);
    let listen = format!("127.0.0.1:{port}");
    let _gateway = Binary::start(
        &["--listen", &listen, "--redis-url", &url, "--token", "t"],
        &[],
        port,
    );
    let answer = send(
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/"))
            .bearer_auth("t")
            .json(&json!(["PING"])),
    )
    .await;
    assert_eq!(answer.status, 503);
    assert!(!answer.text.contains("wrong-pw"));
}

#[test]
fn a_missing_token_an_unsupported_srh_mode_or_impossible_limits_stop_at_startup() {
    for (args, env) in [
        (vec!["--listen", "127.0.0.1:0"], vec![]),
        (
            vec!["--listen", "127.0.0.1:0"],
            vec![("SRH_MODE", "file"), ("SRH_TOKEN", "t")],
        ),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--token",
                "t",
                "--script-timeout",
                "10",
            ],
            vec![],
        ),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--token",
                "t",
                "--max-connections",
                "0",
            ],
            vec![],
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally-gateway"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TALLY_GATEWAY_") || name.starts_with("SRH_") {
                command.env_remove(name);
            }
        }
        let output = command
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} {env:?}");
        assert!(!String::from_utf8_lossy(&output.stderr).is_empty());
    }
}

#[tokio::test]
async fn a_rediss_url_speaks_tls_and_a_plain_server_behind_it_is_503() {
    let redis = Redis::start();
    let gateway = common::Gateway::start(&format!("rediss://127.0.0.1:{}", redis.port));
    let answer = common::run(&gateway, json!(["PING"])).await;
    assert_eq!(answer.status, 503, "{}", answer.text);
}
