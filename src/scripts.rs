//! The Lua scripts Tally runs on Redis, each loaded from its `.lua` file.
//!
//! Every script states its KEYS, ARGV, return value and why it must be atomic
//! in a header. Every script is sent with a first line of its own, the
//! shebang `#!lua flags=allow-key-locking`: Upstash then locks only the keys
//! in `KEYS`, which every script declares, instead of running each script
//! under its global lock (locally, `tally-gateway` strips the flag as Upstash
//! does, see docs/gateway.md). The read script cannot add `no-writes`: it
//! calls `PFCOUNT`, which Redis flags `may-replicate` (it caches the count in
//! the HyperLogLog), and a `no-writes` script may not call it. Scripts guarded by a rate
//! limit get the shared `rate_limit_lib.lua` right after that line, so the
//! limit is written once. A script's SHA1 is computed from its exact source,
//! once, the first time it is needed.

use std::sync::OnceLock;

/// A Lua script and its SHA1 (the name `EVALSHA` knows it by).
#[derive(Debug)]
pub struct Script {
    name: &'static str,
    source: &'static str,
    sha1: OnceLock<String>,
}

impl Script {
    /// A script called `name` (for logs and metrics) with this source.
    pub const fn new(name: &'static str, source: &'static str) -> Script {
        Script {
            name,
            source,
            sha1: OnceLock::new(),
        }
    }

    /// The short name, e.g. `like`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The exact source sent with `EVAL` and hashed for `EVALSHA`.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The lowercase hex SHA1 of the source, as `SCRIPT LOAD` returns it.
    pub fn sha1(&self) -> &str {
        self.sha1
            .get_or_init(|| sha1_smol::Sha1::from(self.source).digest().to_string())
    }
}

/// Scripts are the same when their sources are.
impl PartialEq for Script {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Script {}

/// A script with the shebang as its first line: lock only its `KEYS` (Upstash).
macro_rules! locking {
    ($file:literal) => {
        concat!(
            "#!lua flags=allow-key-locking\n",
            include_str!(concat!("scripts/", $file))
        )
    };
}

/// [`locking!`], with the rate limit library between the shebang and the script.
macro_rules! limited {
    ($file:literal) => {
        concat!(
            "#!lua flags=allow-key-locking\n",
            include_str!("scripts/rate_limit_lib.lua"),
            include_str!(concat!("scripts/", $file))
        )
    };
}

/// A hit on a network's minute limit and hourly budget (`POST /v1/visitors`).
pub static RATE_LIMIT: Script = Script::new("rate_limit", limited!("rate_limit.lua"));
/// Like or unlike, in the Set or the Bitmap.
pub static LIKE: Script = Script::new("like", limited!("like.lua"));
/// Record a view: dedupe, idempotency, counters, buckets, viewers, trending.
pub static VIEW: Script = Script::new("view", limited!("view.lua"));
/// Add to a custom counter (integer or float), optionally idempotent.
pub static COUNTER: Script = Script::new("counter", locking!("counter.lua"));
/// Read one item's snapshot.
pub static READ: Script = Script::new("read", locking!("read.lua"));

/// One item's live counts and unapplied outbox events, read only (the drift check).
pub static AUDIT: Script = Script::new("audit", locking!("audit.lua"));
/// Set one item to the system of record plus its unapplied events.
pub static REPAIR: Script = Script::new("repair", locking!("repair.lua"));
/// Give up the reconciliation lease if it is still ours.
pub static RELEASE: Script = Script::new("release", locking!("release.lua"));
/// Set the starting counts of many items (`POST /v1/admin/import`).
pub static IMPORT: Script = Script::new("import", locking!("import.lua"));
/// Fold an old item id into a new one (`POST /v1/admin/items/{item}/merge`).
pub static MERGE: Script = Script::new("merge", locking!("merge.lua"));

/// Every script, for loading and for the SHA1 test.
pub static ALL: [&Script; 10] = [
    &RATE_LIMIT,
    &LIKE,
    &VIEW,
    &COUNTER,
    &READ,
    &AUDIT,
    &REPAIR,
    &RELEASE,
    &IMPORT,
    &MERGE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha1_is_the_lowercase_hex_of_the_source() {
        let script = Script::new("t", "return 1");
        assert_eq!(script.sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    #[test]
    fn limited_scripts_carry_the_rate_limit_prelude() {
        assert!(
            LIKE.source()
                .starts_with("#!lua flags=allow-key-locking\n-- rate_limit_lib.lua")
        );
        assert!(!READ.source().contains("rate_limit("));
    }

    #[test]
    fn every_script_opens_with_the_key_locking_shebang() {
        for script in ALL {
            let first = script.source().lines().next().unwrap_or_default();
            assert_eq!(first, "#!lua flags=allow-key-locking", "{}", script.name());
        }
    }
}
