//! The back-end examples (`examples/node`, `examples/python`, `examples/rust`)
//! and `make token`, run against the real worker: wrangler dev → gateway →
//! redis-server. An example that rots fails here.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{API_KEY, JWT_SECRET, encode, root, send, shared, token_for, unique};

/// Runs an example with the test worker's URL and secrets, as `user` on
/// `item`, and returns what it printed; fails the test if it does not succeed.
fn run_example(mut command: Command, user: &str, item: &str) -> String {
    let worker = &shared().worker;
    let output = command
        .current_dir(root())
        .env("TALLY_URL", worker.url(""))
        .env("TALLY_JWT_SECRET", JWT_SECRET)
        .env("TALLY_API_KEY", API_KEY)
        .env("TALLY_USER", user)
        .env("TALLY_ITEM", item)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        printed(&output)
    );
    let stdout = String::from_utf8(output.stdout).expect("the example prints UTF-8");
    println!("{stdout}");
    stdout
}

fn printed(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What every example prints for a first run on a fresh item.
fn expected_story(user: &str, item: &str) -> String {
    format!(
        "minted an HS256 token for {user} (expires in 3600 s)\n\
         liked {item} as {user}: likes=1 liked=true changed=true\n\
         read {item} as {user}: likes=1 liked=true\n\
         added 3 to downloads on {item}: value=3\n\
         read back downloads on {item}: 3\n"
    )
}

/// Reads the item from the worker, as `who` when given.
async fn read(item: &str, who: Option<&str>) -> Value {
    let http = reqwest::Client::new();
    let mut request = http.get(shared().worker.url(&format!("/v1/items/{}", encode(item))));
    if let Some(who) = who {
        request = request.bearer_auth(token_for(who));
    }
    let reply = send(request).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

/// The worker holds what the example did: one like, by `user` only, and the counter at 3.
async fn assert_worker_state_after_one_run(user: &str, item: &str) {
    let as_user = read(item, Some(user)).await;
    assert_eq!(as_user["likes"], json!(1), "{as_user}");
    assert_eq!(as_user["liked"], json!(true), "{as_user}");
    assert_eq!(as_user["counters"], json!({"downloads": 3}), "{as_user}");
    let as_someone_else = read(item, Some(&unique("someone-else"))).await;
    assert_eq!(as_someone_else["liked"], json!(false), "{as_someone_else}");
}

#[tokio::test]
async fn the_node_example_likes_as_its_user_and_adds_to_a_counter() {
    let (user, item) = (
        unique("node-user"),
        format!("blog/{}", unique("node-example")),
    );
    let mut node = Command::new("node");
    node.arg("examples/node/backend.mjs");
    let printed = run_example(node, &user, &item);
    assert_eq!(printed, expected_story(&user, &item));
    assert_worker_state_after_one_run(&user, &item).await;
}

#[tokio::test]
async fn the_python_example_likes_as_its_user_and_adds_to_a_counter() {
    let (user, item) = (
        unique("python-user"),
        format!("blog/{}", unique("python-example")),
    );
    let has_pyjwt = Command::new("python3")
        .args(["-c", "import jwt"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_pyjwt,
        "PyJWT is missing: `bash scripts/setup.sh --test` installs it"
    );
    let mut python = Command::new("python3");
    python.arg("examples/python/backend.py");
    let printed = run_example(python, &user, &item);
    assert_eq!(printed, expected_story(&user, &item));
    assert_worker_state_after_one_run(&user, &item).await;
}

#[tokio::test]
async fn the_rust_example_likes_as_its_user_and_adds_to_a_counter() {
    let (user, item) = (
        unique("rust-user"),
        format!("blog/{}", unique("rust-example")),
    );
    // `cargo test` has built the example already; `cargo run` then only runs it.
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["run", "--quiet", "--locked", "--example", "backend"]);
    // Cargo sets these for this test process; build scripts that track them
    // (ring's does) would see them change and rebuild half the tree.
    for (name, _) in std::env::vars() {
        let set_by_cargo_test = ["CARGO_PKG_", "CARGO_BIN_EXE_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&name.as_str());
        if set_by_cargo_test {
            cargo.env_remove(name);
        }
    }
    let printed = run_example(cargo, &user, &item);
    assert_eq!(printed, expected_story(&user, &item));
    assert_worker_state_after_one_run(&user, &item).await;
}

#[tokio::test]
async fn an_example_run_again_changes_the_like_no_more_and_adds_to_the_counter_again() {
    let (user, item) = (unique("rerun-user"), format!("blog/{}", unique("rerun")));
    let node = || {
        let mut node = Command::new("node");
        node.arg("examples/node/backend.mjs");
        node
    };
    run_example(node(), &user, &item);
    let second = run_example(node(), &user, &item);
    assert!(
        second.contains(&format!(
            "liked {item} as {user}: likes=1 liked=true changed=false\n"
        )),
        "{second}"
    );
    assert!(
        second.contains(&format!("added 3 to downloads on {item}: value=6\n")),
        "{second}"
    );
}

#[tokio::test]
async fn an_example_without_the_worker_url_says_which_setting_is_missing() {
    let output = Command::new("node")
        .arg("examples/node/backend.mjs")
        .current_dir(root())
        .env_remove("TALLY_URL")
        .output()
        .expect("run node");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("set TALLY_URL"),
        "{}",
        printed(&output)
    );
}

/// Runs as from a shell, not under `make test`: a make run by make prints
/// "Entering directory" lines, which a user's `$(make token ...)` never sees.
fn outside_make(command: &mut Command) -> &mut Command {
    command
        .env_remove("MAKELEVEL")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
}

/// Runs `make token` with `vars` added to its environment.
fn make_token(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut make = Command::new("make");
    make.arg("token")
        .args(args)
        .current_dir(root())
        .env_remove("TALLY_JWT_SECRET")
        .env_remove("SUB");
    outside_make(&mut make);
    for (name, value) in vars {
        make.env(name, value);
    }
    make.output().expect("run make")
}

#[tokio::test]
async fn make_token_prints_a_token_the_worker_accepts_for_that_user() {
    let (user, item) = (unique("make-token-user"), unique("make-token"));
    let sub = format!("SUB={user}");
    let output = make_token(&[&sub], &[("TALLY_JWT_SECRET", JWT_SECRET)]);
    assert!(output.status.success(), "{}", printed(&output));
    let token = String::from_utf8(output.stdout).expect("UTF-8");
    let token = token.trim();

    let http = reqwest::Client::new();
    let url = shared()
        .worker
        .url(&format!("/v1/items/{}/like", encode(&item)));
    let like = send(http.put(url).bearer_auth(token)).await;
    assert_eq!(like.status, 200, "{:?}", like.body);
    assert_eq!(like.body["liked"], json!(true));
    assert_eq!(read(&item, Some(&user)).await["liked"], json!(true));
}

#[test]
fn make_token_signs_with_the_local_secret_from_dev_vars() {
    // `make dev` runs the worker with .dev.vars, copied from .dev.vars.example.
    let dev_vars = [".dev.vars", ".dev.vars.example"]
        .iter()
        .map(|name| root().join(name))
        .find(|path| path.exists())
        .expect(".dev.vars.example exists");
    let secret = std::fs::read_to_string(&dev_vars)
        .expect("read the dev vars")
        .lines()
        .find_map(|line| line.strip_prefix("TALLY_JWT_SECRET="))
        .map(|value| value.trim().trim_matches(['"', '\'']).to_owned())
        .expect("the dev vars set TALLY_JWT_SECRET");

    let output = make_token(&["SUB=user-42", "TTL=600"], &[]);
    assert!(output.status.success(), "{}", printed(&output));
    let token = String::from_utf8(output.stdout).expect("UTF-8");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let claims = tally::token::verify(token.trim(), secret.as_bytes(), now)
        .unwrap_or_else(|e| panic!("{} does not verify: {e}", dev_vars.display()));
    assert_eq!(claims.sub, "user-42");
    assert!((now + 590..=now + 610).contains(&claims.exp), "{claims:?}");
}

#[test]
fn make_token_without_sub_says_how_to_use_it() {
    let output = make_token(&[], &[]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("usage: make token SUB="),
        "{}",
        printed(&output)
    );
}

/// The README's `console` blocks in order: each `$ ` command with the lines it shows.
fn readme_sessions(readme: &str) -> Vec<(String, Vec<String>)> {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_console = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
        } else if in_console {
            match line.strip_prefix("$ ") {
                Some(command) => steps.push((command.to_owned(), Vec::new())),
                None => steps
                    .last_mut()
                    .expect("a console block starts with a command")
                    .1
                    .push(line.to_owned()),
            }
        }
    }
    steps
}

/// Bucket start times (`"t":1796004000`) depend on the clock; the rest must match.
fn without_times(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("\"t\":") {
        out.push_str(&rest[..at + 4]);
        rest = rest[at + 4..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('0');
    }
    out.push_str(rest);
    out
}

#[test]
fn the_readme_sessions_answer_what_the_readme_shows() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read README.md");
    let steps = readme_sessions(&readme);
    assert!(steps.len() >= 8, "the README's console sessions: {steps:?}");
    // The README talks to `make dev`; this runs the same commands against the test worker.
    let worker = &shared().worker;
    let local = |text: &str| {
        text.replace("http://127.0.0.1:8787", &worker.url(""))
            .replace("local-dev-api-key", API_KEY)
            .replace("local-dev-jwt-secret-change-me", JWT_SECRET)
    };
    let script: String = steps
        .iter()
        .enumerate()
        .map(|(i, (command, _))| format!("echo '@@ {i}'\n{}\necho\n", local(command)))
        .collect();
    let mut bash = Command::new("bash");
    bash.args(["-c", &script])
        .current_dir(root())
        .env("TALLY_JWT_SECRET", JWT_SECRET);
    for name in ["TALLY_URL", "TALLY_API_KEY", "TALLY_USER", "TALLY_ITEM"] {
        bash.env_remove(name);
    }
    let output = outside_make(&mut bash).output().expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");

    let mut answers = stdout.split("@@ ").skip(1);
    for (i, (command, shown)) in steps.iter().enumerate() {
        let answer = answers.next().unwrap_or_default();
        let got: Vec<String> = answer
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(without_times)
            .collect();
        let want: Vec<String> = shown.iter().map(|l| without_times(&local(l))).collect();
        assert_eq!(
            got,
            want,
            "README step {i}, `{command}`, answered differently (stderr: {})",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
