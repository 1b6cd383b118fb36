//! Every command the running Redis knows (`COMMAND`), and every subcommand of
//! its containers, sent with each token: the gateway's answer must follow the
//! documented policy (docs/gateway.md, "What each token may do").
//!
//! The Redis is this test's own. Arguments are chosen so that a command the
//! gateway lets through fails Redis's arity or syntax check instead of doing
//! anything: one argument too many for a fixed arity, one too few for a
//! minimum, one bogus option where no argument is needed.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{Both, READ_ONLY_TOKEN, TOKEN, send};
use serde_json::{Value as Json, json};

/// What the gateway did with a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Sent to Redis (whatever Redis answered).
    Allowed,
    Admin,
    ConnectionState,
    Transaction,
    PubSub,
    Blocking,
    NoPerm,
}

/// One command or subcommand from Redis's table.
struct Entry {
    /// `get`, `config|get`.
    name: String,
    arity: i64,
    flags: Vec<String>,
    /// Has subcommands: sent bare, since a bogus argument would name an
    /// unknown subcommand.
    container: bool,
}

const BOGUS: &str = "__tally_fuzz__";

/// The policy as docs/gateway.md states it.
fn expected(entry: &Entry, read_only: bool) -> Verdict {
    let (name, sub) = match entry.name.split_once('|') {
        Some((name, sub)) => (name, Some(sub)),
        None => (entry.name.as_str(), None),
    };
    let flag = |f: &str| entry.flags.iter().any(|g| g == f);
    let connection_state = [
        "asking",
        "auth",
        "hello",
        "monitor",
        "psync",
        "quit",
        "readonly",
        "readwrite",
        "replconf",
        "reset",
        "select",
        "sync",
        "unwatch",
        "watch",
    ];
    let client_admin = ["kill", "list", "pause", "unblock", "unpause"];
    if ["multi", "exec", "discard"].contains(&name) {
        return Verdict::Transaction;
    }
    if connection_state.contains(&name)
        || (name == "client" && !sub.is_some_and(|s| client_admin.contains(&s)))
        || entry.name == "script|debug"
    {
        return Verdict::ConnectionState;
    }
    if name.ends_with("subscribe") {
        return Verdict::PubSub;
    }
    if ["wait", "waitaof"].contains(&name)
        || (flag("blocking") && !["xread", "xreadgroup"].contains(&name))
    {
        return Verdict::Blocking;
    }
    if flag("admin") || name == "migrate" {
        return Verdict::Admin;
    }
    let extras = [
        "command",
        "command|count",
        "command|docs",
        "command|getkeys",
        "command|getkeysandflags",
        "command|info",
        "command|list",
        "echo",
        "ping",
        "script|exists",
        "script|load",
        "time",
    ];
    // The read-only token's scripts run as EVAL_RO, EVALSHA_RO and FCALL_RO.
    let scripts = ["eval", "evalsha", "fcall"];
    let readonly =
        (flag("readonly") && !flag("write") && !flag("admin")) || scripts.contains(&name);
    if read_only && !readonly && !extras.contains(&entry.name.as_str()) {
        return Verdict::NoPerm;
    }
    Verdict::Allowed
}

/// Parts that make Redis refuse the command on arity or syntax.
fn harmless_parts(entry: &Entry) -> Vec<String> {
    let mut parts: Vec<String> = entry.name.split('|').map(str::to_owned).collect();
    let base = parts.len() as i64;
    let total = match entry.arity {
        _ if entry.container => base,
        0 => base,
        a if a > 0 => a + 1,
        a if -a > base => -a - 1,
        _ => base + 1,
    };
    while (parts.len() as i64) < total {
        parts.push(BOGUS.to_owned());
    }
    parts
}

fn observed(status: u16, body: &Json) -> Verdict {
    let error = body["error"].as_str().unwrap_or_default();
    if status == 200 || !body["error"].is_string() {
        return Verdict::Allowed;
    }
    if error.contains("changes connection state") {
        Verdict::ConnectionState
    } else if error.contains("send the transaction to /multi-exec") {
        Verdict::Transaction
    } else if error.contains("pub/sub command") {
        Verdict::PubSub
    } else if error.contains("blocking command") {
        Verdict::Blocking
    } else if error.contains("server administration") {
        Verdict::Admin
    } else if error.starts_with("NOPERM this token") {
        Verdict::NoPerm
    } else {
        Verdict::Allowed
    }
}

fn entries(command_reply: &Json) -> Vec<Entry> {
    fn add(out: &mut Vec<Entry>, entry: &Json) {
        let name = entry[0].as_str().unwrap().to_ascii_lowercase();
        let flags = entry[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect();
        let subs = entry[9].as_array().map_or(0, Vec::len);
        out.push(Entry {
            name,
            arity: entry[1].as_i64().unwrap(),
            flags,
            container: subs > 0,
        });
        for sub in entry[9].as_array().into_iter().flatten() {
            add(out, sub);
        }
    }
    let mut out = Vec::new();
    for entry in command_reply.as_array().unwrap() {
        add(&mut out, entry);
    }
    out
}

#[tokio::test]
async fn every_command_redis_knows_gets_the_documented_verdict_for_each_token() {
    let both = Both::start();
    let client = reqwest::Client::new();
    let table = common::run(&both.gateway, json!(["COMMAND"])).await;
    assert_eq!(table.status, 200);
    let mut entries = entries(&table.json()["result"]);
    let names: Vec<String> = common::run(&both.gateway, json!(["COMMAND", "LIST"]))
        .await
        .json()["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    for name in &names {
        assert!(
            entries.iter().any(|e| &e.name == name),
            "{name} from COMMAND LIST is covered"
        );
    }
    // DEBUG has subcommands that COMMAND does not list; some would crash or
    // stall Redis if they ran. And a name no Redis knows.
    for sub in ["sleep", "segfault", "reload", "set-active-expire", "object"] {
        entries.push(Entry {
            name: format!("debug|{sub}"),
            arity: -2,
            flags: vec!["admin".into()],
            container: false,
        });
    }
    entries.push(Entry {
        name: "nosuchcommand".into(),
        arity: -1,
        flags: vec![],
        container: false,
    });

    let from_redis = entries.len() - 6;
    let mut mismatches = Vec::new();
    let mut refused: BTreeMap<(&str, Verdict), usize> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let parts = harmless_parts(entry);
        for (token, secret) in [("full", TOKEN), ("read-only", READ_ONLY_TOKEN)] {
            let answer = send(client.post(both.url("/")).bearer_auth(secret).json(&parts)).await;
            assert_ne!(
                answer.status, 503,
                "{parts:?}: Redis went away: {}",
                answer.text
            );
            let got = observed(answer.status, &answer.json());
            let want = match entry.name.as_str() {
                // Not in Redis's table: Redis answers the full token itself.
                "nosuchcommand" if token == "full" => Verdict::Allowed,
                "nosuchcommand" => Verdict::NoPerm,
                _ => expected(entry, token == "read-only"),
            };
            if got != want {
                mismatches.push(format!(
                    "{token} {parts:?}: want {want:?}, got {got:?}: {}",
                    answer.text
                ));
            }
            if got != Verdict::Allowed && i < from_redis {
                *refused.entry((token, got)).or_default() += 1;
            }
        }
    }
    for token in ["full", "read-only"] {
        let total: usize = refused
            .iter()
            .filter(|((t, _), _)| *t == token)
            .map(|(_, n)| n)
            .sum();
        let detail: Vec<String> = refused
            .iter()
            .filter(|((t, _), _)| *t == token)
            .map(|((_, v), n)| format!("{v:?} {n}"))
            .collect();
        println!(
            "{token} token: {total} of the {from_redis} commands and subcommands in COMMAND refused ({}); COMMAND LIST has {} names",
            detail.join(", "),
            names.len()
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(
        refused
            .get(&("full", Verdict::Admin))
            .is_some_and(|n| *n >= 50),
        "{refused:?}"
    );
    assert_eq!(both.redis.cli(&["PING"]), "PONG", "Redis survived");
}
