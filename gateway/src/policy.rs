//! What each token may run.
//!
//! Three rules, checked in this order:
//!
//! 1. **Never, for any token**: commands that change or depend on the state
//!    of the connection, which every request shares ([`CONNECTION_STATE`],
//!    `CLIENT` but for its admin subcommands, `SCRIPT DEBUG`), transactions
//!    outside `/multi-exec`, subscriptions, and commands that block.
//! 2. **Server administration** (every command Redis itself flags `admin`,
//!    plus `MIGRATE`), refused unless the gateway runs with `--allow-admin`.
//! 3. **The read-only token** runs only what Redis flags `readonly` (the
//!    commands of the ACL category `@read`), plus [`READ_ONLY_EXTRAS`]; unknown
//!    commands are refused. Its scripts run as `EVAL_RO` and friends.
//!
//! The flags come from the Redis behind the gateway (`COMMAND`, read on every
//! new connection), so a command added by a newer Redis or a module is judged
//! by what Redis says it does, never by a list kept here.

use std::collections::HashMap;

use redis::Value;

use crate::auth::Access;
use crate::command::{Command, Refusal};

/// Commands that change or depend on the shared connection's state.
pub const CONNECTION_STATE: &[&str] = &[
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

/// `CLIENT` subcommands that are server administration rather than about the
/// gateway's own connection; every other `CLIENT` form is connection state.
pub const CLIENT_ADMIN: &[&str] = &["kill", "list", "pause", "unblock", "unpause"];

/// Commands that would hold the shared connection until data arrives.
pub const BLOCKING: &[&str] = &[
    "blmove",
    "blmpop",
    "blpop",
    "brpop",
    "brpoplpush",
    "bzmpop",
    "bzpopmax",
    "bzpopmin",
    "wait",
    "waitaof",
];

/// Subscriptions need a long-lived connection.
pub const SUBSCRIBE: &[&str] = &[
    "psubscribe",
    "punsubscribe",
    "ssubscribe",
    "subscribe",
    "sunsubscribe",
    "unsubscribe",
];

/// Server administration that Redis does not flag `admin`: it sends keys to
/// another server.
pub const EXTRA_ADMIN: &[&str] = &["migrate"];

/// What the read-only token may run although Redis does not flag it
/// `readonly`: they touch no data. `SCRIPT LOAD` only fills the script cache,
/// which `EVALSHA_RO` needs.
pub const READ_ONLY_EXTRAS: &[&str] = &[
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

/// The flags of one command (or `container|subcommand`) in Redis's table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Flagged `readonly`: reads data, writes none.
    pub readonly: bool,
    /// Flagged `write`.
    pub write: bool,
    /// Flagged `admin`.
    pub admin: bool,
    /// Flagged `blocking`.
    pub blocking: bool,
    /// Has subcommands (`CONFIG`, `CLIENT`, `SCRIPT`...).
    pub container: bool,
}

/// Redis's command table, as `COMMAND` reports it.
#[derive(Clone, Debug, Default)]
pub struct CommandTable {
    entries: HashMap<String, Entry>,
}

/// How a command resolves against the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A command, or a container's subcommand, Redis knows: its lower-case
    /// name (`get`, `config|get`) and flags.
    Known(String, Entry),
    /// A name Redis does not know (or a container's unknown subcommand).
    Unknown,
}

/// Why `COMMAND`'s reply could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply to COMMAND: {0}")]
pub struct TableError(String);

impl CommandTable {
    /// Reads the reply to `COMMAND` (RESP2: an array of command entries,
    /// each `[name, arity, flags, first, last, step, acl categories, tips,
    /// key specs, subcommands]`).
    pub fn from_reply(reply: &Value) -> Result<CommandTable, TableError> {
        let Value::Array(commands) = reply else {
            return Err(TableError(format!("not an array: {reply:?}")));
        };
        let mut table = CommandTable::default();
        for command in commands {
            table.add(command)?;
        }
        if table.entries.is_empty() {
            return Err(TableError("no commands".into()));
        }
        Ok(table)
    }

    fn add(&mut self, entry: &Value) -> Result<(), TableError> {
        let Value::Array(fields) = entry else {
            return Err(TableError(format!("an entry is not an array: {entry:?}")));
        };
        let name = fields
            .first()
            .and_then(text)
            .ok_or_else(|| TableError("an entry has no name".into()))?
            .to_ascii_lowercase();
        let mut flags = Entry::default();
        if let Some(Value::Array(list)) = fields.get(2) {
            for flag in list.iter().filter_map(text) {
                match flag.as_str() {
                    "readonly" => flags.readonly = true,
                    "write" => flags.write = true,
                    "admin" => flags.admin = true,
                    "blocking" => flags.blocking = true,
                    _ => {}
                }
            }
        }
        if let Some(Value::Array(subcommands)) = fields.get(9) {
            flags.container = !subcommands.is_empty();
            for sub in subcommands {
                self.add(sub)?;
            }
        }
        self.entries.insert(name, flags);
        Ok(())
    }

    /// The entry for `command`: its subcommand's for a container given one.
    pub fn lookup(&self, command: &Command) -> Lookup {
        let name = String::from_utf8_lossy(command.raw_name()).to_ascii_lowercase();
        let Some(entry) = self.entries.get(&name) else {
            return Lookup::Unknown;
        };
        match (entry.container, command.parts.get(1)) {
            (true, Some(sub)) => {
                let full = format!(
                    "{name}|{}",
                    String::from_utf8_lossy(sub).to_ascii_lowercase()
                );
                match self.entries.get(&full) {
                    Some(sub) => Lookup::Known(full, *sub),
                    None => Lookup::Unknown,
                }
            }
            _ => Lookup::Known(name, *entry),
        }
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// The gateway's rules, with the one switch operators have.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    /// Lets the full token run server administration (`--allow-admin`).
    pub allow_admin: bool,
}

impl Policy {
    /// Whether `command` (already rewritten to `EVAL_RO` and friends for the
    /// read-only token) may run with `access`.
    pub fn check(
        &self,
        table: &CommandTable,
        command: &Command,
        access: Access,
    ) -> Result<(), Refusal> {
        let name = String::from_utf8_lossy(command.raw_name()).to_ascii_lowercase();
        let sub = command
            .parts
            .get(1)
            .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
        let lookup = table.lookup(command);
        let entry = match &lookup {
            Lookup::Known(_, entry) => Some(*entry),
            Lookup::Unknown => None,
        };
        let shown = match &lookup {
            Lookup::Known(full, _) => full.clone(),
            Lookup::Unknown => name.clone(),
        };

        // 1. Never, for any token.
        match name.as_str() {
            "multi" | "exec" | "discard" => return Err(Refusal::Transaction(name)),
            "xread" | "xreadgroup" if command.blocks_stream_read() => {
                return Err(Refusal::Blocking(format!("{name} block")));
            }
            "xread" | "xreadgroup" => {}
            "client" if !sub.as_deref().is_some_and(|s| CLIENT_ADMIN.contains(&s)) => {
                return Err(Refusal::ConnectionState(shown));
            }
            "script" if sub.as_deref() == Some("debug") => {
                return Err(Refusal::ConnectionState(shown));
            }
            n if CONNECTION_STATE.contains(&n) => return Err(Refusal::ConnectionState(name)),
            n if SUBSCRIBE.contains(&n) => return Err(Refusal::PubSub(name)),
            n if BLOCKING.contains(&n) || entry.is_some_and(|e| e.blocking) => {
                return Err(Refusal::Blocking(name));
            }
            _ => {}
        }

        // 2. Server administration.
        let admin = entry.is_some_and(|e| e.admin)
            || EXTRA_ADMIN.contains(&name.as_str())
            || (name == "client" && sub.is_some());
        if admin && !self.allow_admin {
            return Err(Refusal::Admin(shown));
        }

        // 3. The read-only token.
        if access == Access::ReadOnly {
            let allowed = match &lookup {
                Lookup::Known(full, entry) => {
                    (entry.readonly && !entry.write && !entry.admin)
                        || READ_ONLY_EXTRAS.contains(&full.as_str())
                }
                Lookup::Unknown => false,
            };
            if !allowed {
                return Err(Refusal::ReadOnly(shown));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Command {
        Command {
            parts: parts.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    fn entry(name: &str, flags: &[&str], subs: Vec<Value>) -> Value {
        let status = |s: &str| Value::SimpleString(s.to_owned());
        Value::Array(vec![
            Value::BulkString(name.as_bytes().to_vec()),
            Value::Int(-1),
            Value::Array(flags.iter().map(|f| status(f)).collect()),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Array(vec![]),
            Value::Array(vec![]),
            Value::Array(vec![]),
            Value::Array(subs),
        ])
    }

    fn table() -> CommandTable {
        CommandTable::from_reply(&Value::Array(vec![
            entry("get", &["readonly", "fast"], vec![]),
            entry("set", &["write", "denyoom"], vec![]),
            entry("hgetdel", &["write", "fast"], vec![]),
            entry("shutdown", &["admin", "noscript"], vec![]),
            entry("migrate", &["write"], vec![]),
            entry("blpop", &["write", "blocking"], vec![]),
            entry("xread", &["readonly", "blocking"], vec![]),
            entry("eval_ro", &["readonly", "noscript"], vec![]),
            entry("ping", &["fast"], vec![]),
            entry(
                "config",
                &[],
                vec![
                    entry("config|get", &["admin"], vec![]),
                    entry("config|help", &["loading"], vec![]),
                ],
            ),
            entry(
                "script",
                &[],
                vec![
                    entry("script|flush", &["noscript"], vec![]),
                    entry("script|load", &["noscript"], vec![]),
                    entry("script|debug", &["noscript"], vec![]),
                ],
            ),
            entry(
                "client",
                &[],
                vec![
                    entry("client|kill", &["admin"], vec![]),
                    entry("client|setname", &["noscript"], vec![]),
                ],
            ),
        ]))
        .unwrap()
    }

    fn verdict(policy: Policy, parts: &[&str], access: Access) -> &'static str {
        match policy.check(&table(), &cmd(parts), access) {
            Ok(()) => "ok",
            Err(Refusal::Admin(_)) => "admin",
            Err(Refusal::ConnectionState(_)) => "connection",
            Err(Refusal::ReadOnly(_)) => "noperm",
            Err(Refusal::Blocking(_)) => "blocking",
            Err(Refusal::PubSub(_)) => "pubsub",
            Err(Refusal::Transaction(_)) => "transaction",
        }
    }

    #[test]
    fn the_full_token_runs_data_commands_but_not_administration() {
        let p = Policy::default();
        assert_eq!(verdict(p, &["SET", "k", "v"], Access::Full), "ok");
        assert_eq!(verdict(p, &["SCRIPT", "FLUSH"], Access::Full), "ok");
        assert_eq!(verdict(p, &["NOSUCH"], Access::Full), "ok", "Redis answers");
        assert_eq!(verdict(p, &["shutdown", "nosave"], Access::Full), "admin");
        assert_eq!(verdict(p, &["MIGRATE", "h"], Access::Full), "admin");
        assert_eq!(verdict(p, &["CONFIG", "GET", "x"], Access::Full), "admin");
        assert_eq!(verdict(p, &["CONFIG", "HELP"], Access::Full), "ok");
        assert_eq!(verdict(p, &["CLIENT", "KILL", "x"], Access::Full), "admin");
    }

    #[test]
    fn allow_admin_reenables_administration_but_never_connection_state() {
        let p = Policy { allow_admin: true };
        assert_eq!(verdict(p, &["SHUTDOWN"], Access::Full), "ok");
        assert_eq!(verdict(p, &["CLIENT", "KILL", "x"], Access::Full), "ok");
        assert_eq!(
            verdict(p, &["SCRIPT", "DEBUG", "YES"], Access::Full),
            "connection"
        );
        assert_eq!(
            verdict(p, &["CLIENT", "SETNAME", "x"], Access::Full),
            "connection"
        );
        assert_eq!(verdict(p, &["CLIENT"], Access::Full), "connection");
        assert_eq!(verdict(p, &["SELECT", "1"], Access::Full), "connection");
    }

    #[test]
    fn blocking_is_read_from_redis_flags_but_plain_xread_runs() {
        let p = Policy::default();
        assert_eq!(verdict(p, &["BLPOP", "l", "0"], Access::Full), "blocking");
        assert_eq!(
            verdict(p, &["XREAD", "STREAMS", "s", "0"], Access::Full),
            "ok"
        );
        assert_eq!(
            verdict(
                p,
                &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
                Access::Full
            ),
            "blocking"
        );
    }

    #[test]
    fn the_read_only_token_runs_what_redis_flags_readonly_and_nothing_unknown() {
        let p = Policy::default();
        assert_eq!(verdict(p, &["GET", "k"], Access::ReadOnly), "ok");
        assert_eq!(
            verdict(p, &["EVAL_RO", "return 1", "0"], Access::ReadOnly),
            "ok"
        );
        assert_eq!(verdict(p, &["PING"], Access::ReadOnly), "ok");
        assert_eq!(verdict(p, &["SCRIPT", "LOAD", "x"], Access::ReadOnly), "ok");
        assert_eq!(verdict(p, &["SET", "k", "v"], Access::ReadOnly), "noperm");
        assert_eq!(verdict(p, &["HGETDEL", "k"], Access::ReadOnly), "noperm");
        assert_eq!(verdict(p, &["SCRIPT", "FLUSH"], Access::ReadOnly), "noperm");
        assert_eq!(verdict(p, &["NOSUCH"], Access::ReadOnly), "noperm");
        assert_eq!(
            verdict(p, &["SCRIPT", "NOSUCH"], Access::ReadOnly),
            "noperm"
        );
        assert_eq!(
            verdict(p, &["CONFIG", "GET", "x"], Access::ReadOnly),
            "admin"
        );
    }
}
