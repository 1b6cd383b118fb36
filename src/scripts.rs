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
//! limit is written once. What is sent is the file without the text of its
//! comment lines and without indentation ([`minify`], at compile time: a
//! third of the size, in the wasm and in every `EVAL`), line numbers kept for
//! Redis's error messages. A script's SHA1 is computed from that exact source,
//! at compile time.

/// A Lua script and its SHA1 (the name `EVALSHA` knows it by).
#[derive(Debug)]
pub struct Script {
    name: &'static str,
    source: &'static str,
    sha1: [u8; 40],
}

impl Script {
    /// A script called `name` (for logs and metrics) with this source. For the
    /// scripts below (statics) the SHA1 is computed at compile time, so the
    /// wasm carries neither a SHA1 implementation nor the work of one.
    pub const fn new(name: &'static str, source: &'static str) -> Script {
        Script {
            name,
            source,
            sha1: hex(const_sha1::sha1(source.as_bytes()).as_bytes()),
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
        // Always ASCII hex digits, so never the empty fallback.
        std::str::from_utf8(&self.sha1).unwrap_or_default()
    }
}

/// `bytes` as lowercase hex.
const fn hex(bytes: [u8; 20]) -> [u8; 40] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 40];
    let mut i = 0;
    while i < 20 {
        out[2 * i] = DIGITS[(bytes[i] >> 4) as usize];
        out[2 * i + 1] = DIGITS[(bytes[i] & 0xf) as usize];
        i += 1;
    }
    out
}

/// Scripts are the same when their sources are.
impl PartialEq for Script {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Script {}

/// `source` as sent: see [`minify`]. Evaluated at compile time, so only the
/// minified text is in the binary; a script [`minify`] refuses fails the build.
macro_rules! minified {
    ($source:expr) => {{
        const SOURCE: &str = $source;
        const MINIFIED: ([u8; SOURCE.len()], usize) =
            $crate::scripts::minify::<{ SOURCE.len() }>(SOURCE);
        const TEXT: &str = match ::core::str::from_utf8(MINIFIED.0.split_at(MINIFIED.1).0) {
            Ok(text) => text,
            Err(_) => panic!("a minified script is not UTF-8"),
        };
        TEXT
    }};
}
pub(crate) use minified;

/// Lua `source` without the text of its comment lines (each line whose first
/// non-blank characters are `--`; the line itself stays, so line numbers do)
/// and without leading blanks. Comments after code stay: telling them from a
/// `--` inside a string would take a Lua lexer. `N` is the length of `source`.
///
/// # Panics
///
/// On a long bracket (`[[` or `[=`): in a long string or comment, dropping
/// lines or blanks would change the script. At compile time, a failed build.
pub const fn minify<const N: usize>(source: &str) -> ([u8; N], usize) {
    let src = source.as_bytes();
    assert!(src.len() == N, "N must be the length of the source");
    let mut out = [0u8; N];
    let mut len = 0;
    let mut at = 0;
    while at < N {
        if src[at] == b'[' && at + 1 < N && (src[at + 1] == b'[' || src[at + 1] == b'=') {
            panic!("a Lua long bracket ([[ or [=) cannot be minified line by line");
        }
        at += 1;
    }
    at = 0;
    while at < N {
        let mut end = at;
        while end < N && src[end] != b'\n' {
            end += 1;
        }
        let mut start = at;
        while start < end && (src[start] == b' ' || src[start] == b'\t') {
            start += 1;
        }
        let comment = end - start >= 2 && src[start] == b'-' && src[start + 1] == b'-';
        if !comment {
            while start < end {
                out[len] = src[start];
                len += 1;
                start += 1;
            }
        }
        if end < N {
            out[len] = b'\n';
            len += 1;
        }
        at = end + 1;
    }
    (out, len)
}

/// A script with the shebang as its first line: lock only its `KEYS` (Upstash).
macro_rules! locking {
    ($file:literal) => {
        minified!(concat!(
            "#!lua flags=allow-key-locking\n",
            include_str!(concat!("scripts/", $file))
        ))
    };
}

/// [`locking!`], with the rate limit library between the shebang and the script.
macro_rules! limited {
    ($file:literal) => {
        minified!(concat!(
            "#!lua flags=allow-key-locking\n",
            include_str!("scripts/rate_limit_lib.lua"),
            include_str!(concat!("scripts/", $file))
        ))
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
/// Read the snapshots of one or more items, in one call.
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
        let lib_lines = include_str!("scripts/rate_limit_lib.lua").lines().count();
        let like = LIKE.source().lines().collect::<Vec<_>>();
        assert_eq!(like[0], "#!lua flags=allow-key-locking");
        assert!(like[1..=lib_lines].contains(
            &"local function rate_limit(now, key, limit, window, key2, limit2, window2)"
        ));
        assert!(!READ.source().contains("rate_limit("));
    }

    #[test]
    fn a_minified_script_keeps_its_code_and_line_numbers_but_not_its_comments() {
        const SOURCE: &str = "#!lua flags=x\n-- KEYS[1] the item\n  local n = 1 -- one\n\n\t\t--[ note\n  return n\n";
        let (bytes, len) = minify::<{ SOURCE.len() }>(SOURCE);
        assert_eq!(
            std::str::from_utf8(&bytes[..len]),
            Ok("#!lua flags=x\n\nlocal n = 1 -- one\n\n\nreturn n\n")
        );
    }

    #[test]
    fn every_script_is_sent_with_the_lines_of_its_files_and_no_comment_line() {
        let files = [
            (
                "like",
                include_str!("scripts/rate_limit_lib.lua").to_owned()
                    + include_str!("scripts/like.lua"),
            ),
            (
                "view",
                include_str!("scripts/rate_limit_lib.lua").to_owned()
                    + include_str!("scripts/view.lua"),
            ),
            ("read", include_str!("scripts/read.lua").to_owned()),
            ("counter", include_str!("scripts/counter.lua").to_owned()),
        ];
        for (name, file) in files {
            let script = ALL
                .iter()
                .find(|s| s.name() == name)
                .map(|s| s.source())
                .unwrap_or_default();
            assert_eq!(script.lines().count(), 1 + file.lines().count(), "{name}");
            assert!(
                script.len() < file.len() * 2 / 3,
                "{name}: {} of {}",
                script.len(),
                file.len()
            );
            assert!(
                !script
                    .lines()
                    .any(|line| line.trim_start().starts_with("--")),
                "{name}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "long bracket")]
    fn a_long_bracket_is_refused() {
        const SOURCE: &str = "local s = [[\n-- not a comment\n]]";
        minify::<{ SOURCE.len() }>(SOURCE);
    }

    #[test]
    fn every_script_opens_with_the_key_locking_shebang() {
        for script in ALL {
            let first = script.source().lines().next().unwrap_or_default();
            assert_eq!(first, "#!lua flags=allow-key-locking", "{}", script.name());
        }
    }
}
