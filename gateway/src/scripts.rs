//! Upstash's `allow-key-locking` script flag on a stock Redis.
//!
//! On Upstash, a script whose first line is `#!lua flags=allow-key-locking`
//! locks only its `KEYS` instead of the whole database. Redis 7 refuses that
//! flag ("Unexpected flag in script shebang"), so the gateway removes it
//! before Redis sees the script and keeps every other flag: `#!lua
//! flags=allow-key-locking,no-writes` becomes `#!lua flags=no-writes`, and
//! `#!lua flags=allow-key-locking` becomes `#!lua`. The shebang line stays, so
//! the script keeps Redis 7's shebang semantics (a script without `no-writes`
//! may not run as `EVAL_RO`) and its line numbers in error messages.
//!
//! Clients compute the SHA1 of the body they hold, the flagged one, while
//! Redis caches the stripped body under another SHA1. A map from the first to
//! the second makes `EVALSHA`, `SCRIPT LOAD` and `SCRIPT EXISTS` answer as on
//! Upstash. The map only translates names: Redis's own cache decides whether
//! a script is loaded, so after a Redis restart `EVALSHA` answers `NOSCRIPT`
//! and the client falls back to `EVAL`, which maps the digest again.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use redis::Value;

use crate::command::Command;

/// The Upstash flag that stock Redis does not know.
const KEY_LOCKING: &str = "allow-key-locking";

/// Mappings kept before the map is emptied. Each is a pair of 40-character
/// digests; forgetting one costs one `NOSCRIPT` and one `EVAL`, so a caller
/// who loads endless distinct scripts cannot grow the gateway's memory.
const MAX_DIGESTS: usize = 10_000;

/// Flagged-body SHA1 → stripped-body SHA1, both lower-case hex.
#[derive(Debug, Default)]
pub struct KeyLocking {
    digests: RwLock<HashMap<String, String>>,
}

/// What was changed in a command, so that its reply can be changed back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Nothing: the command carried no flagged script or mapped digest.
    None,
    /// A script body or digest was replaced: Redis's replies name `stripped`,
    /// the client knows `flagged`.
    Digest {
        /// The SHA1 the client computed, of the flagged body.
        flagged: String,
        /// The SHA1 Redis knows, of the stripped body.
        stripped: String,
    },
}

impl KeyLocking {
    /// An empty map.
    pub fn new() -> KeyLocking {
        KeyLocking::default()
    }

    /// Strips the flag from `EVAL`/`EVAL_RO`/`SCRIPT LOAD` bodies and maps
    /// `EVALSHA`/`EVALSHA_RO`/`SCRIPT EXISTS` digests, in place.
    pub fn rewrite(&self, command: &mut Command) -> Rewrite {
        let name = command.raw_name();
        if name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVAL_RO") {
            return self.strip_body(command, 1);
        }
        if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVALSHA_RO") {
            return match command.parts.get_mut(1) {
                Some(digest) => self.map_digest(digest),
                None => Rewrite::None,
            };
        }
        if !name.eq_ignore_ascii_case(b"SCRIPT") {
            return Rewrite::None;
        }
        let sub = command.parts.get(1).map(|s| s.to_ascii_uppercase());
        match sub.as_deref() {
            Some(b"LOAD") => self.strip_body(command, 2),
            Some(b"EXISTS") => {
                for digest in command.parts.iter_mut().skip(2) {
                    self.map_digest(digest);
                }
                Rewrite::None
            }
            _ => Rewrite::None,
        }
    }

    fn strip_body(&self, command: &mut Command, at: usize) -> Rewrite {
        let Some(body) = command.parts.get_mut(at) else {
            return Rewrite::None;
        };
        let Some(stripped) = strip_flag(body) else {
            return Rewrite::None;
        };
        let flagged = sha1_hex(body);
        let stripped_digest = sha1_hex(&stripped);
        *body = stripped;
        let mut digests = self.digests.write().unwrap_or_else(PoisonError::into_inner);
        if !digests.contains_key(&flagged) {
            if digests.len() >= MAX_DIGESTS {
                digests.clear();
            }
            digests.insert(flagged.clone(), stripped_digest.clone());
        }
        Rewrite::Digest {
            flagged,
            stripped: stripped_digest,
        }
    }

    fn map_digest(&self, digest: &mut Vec<u8>) -> Rewrite {
        let Ok(given) = std::str::from_utf8(digest) else {
            return Rewrite::None;
        };
        let flagged = given.to_ascii_lowercase();
        let stripped = self
            .digests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&flagged)
            .cloned();
        match stripped {
            Some(stripped) => {
                *digest = stripped.clone().into_bytes();
                Rewrite::Digest { flagged, stripped }
            }
            None => Rewrite::None,
        }
    }
}

impl Rewrite {
    /// Names the flagged digest where Redis's reply names the stripped one:
    /// `SCRIPT LOAD`'s answer, and error texts (`... script: <sha1>, on ...`).
    pub fn restore(&self, value: &mut Value) {
        let Rewrite::Digest { flagged, stripped } = self else {
            return;
        };
        if let Value::BulkString(bytes) = value
            && bytes.as_slice() == stripped.as_bytes()
        {
            *bytes = flagged.clone().into_bytes();
        }
    }

    /// An error text with the stripped digest replaced by the flagged one.
    pub fn restore_text(&self, text: String) -> String {
        match self {
            Rewrite::Digest { flagged, stripped } if text.contains(stripped.as_str()) => {
                text.replace(stripped.as_str(), flagged)
            }
            _ => text,
        }
    }
}

/// The body without `allow-key-locking` in its shebang, or `None` when the
/// body has no such flag (or no well-formed `#!lua` shebang line, which Redis
/// itself then reports).
pub fn strip_flag(body: &[u8]) -> Option<Vec<u8>> {
    let end = body.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&body[..end]).ok()?;
    let mut words = line.split_ascii_whitespace();
    if words.next()? != "#!lua" {
        return None;
    }
    let mut options = Vec::new();
    let mut found = false;
    for word in words {
        // Quoted options are rare; Redis parses them itself.
        if word.contains(['"', '\'']) {
            return None;
        }
        match word.strip_prefix("flags=") {
            Some(flags) => {
                let kept: Vec<&str> = flags
                    .split(',')
                    .filter(|flag| {
                        let ours = *flag == KEY_LOCKING;
                        found |= ours;
                        !ours
                    })
                    .collect();
                if !kept.is_empty() && kept != [""] {
                    options.push(format!("flags={}", kept.join(",")));
                }
            }
            None => options.push(word.to_owned()),
        }
    }
    if !found {
        return None;
    }
    let mut stripped = String::from("#!lua");
    for option in options {
        stripped.push(' ');
        stripped.push_str(&option);
    }
    let mut out = stripped.into_bytes();
    out.extend_from_slice(&body[end..]);
    Some(out)
}

/// Lower-case hex SHA1, as Redis names scripts.
pub fn sha1_hex(bytes: &[u8]) -> String {
    sha1_smol::Sha1::from(bytes).digest().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(body: &str) -> Option<String> {
        strip_flag(body.as_bytes()).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn the_flag_alone_leaves_a_bare_shebang() {
        assert_eq!(
            stripped("#!lua flags=allow-key-locking\nreturn 1"),
            Some("#!lua\nreturn 1".into())
        );
    }

    #[test]
    fn other_flags_are_kept_in_order() {
        assert_eq!(
            stripped("#!lua flags=allow-key-locking,no-writes\nreturn 1"),
            Some("#!lua flags=no-writes\nreturn 1".into())
        );
        assert_eq!(
            stripped("#!lua flags=no-writes,allow-key-locking,allow-oom\r\nreturn 1"),
            Some("#!lua flags=no-writes,allow-oom\nreturn 1".into())
        );
    }

    #[test]
    fn scripts_without_the_flag_are_left_alone() {
        assert_eq!(stripped("return 1"), None);
        assert_eq!(stripped("#!lua flags=no-writes\nreturn 1"), None);
        assert_eq!(stripped("#!lua flags=allow-key-locking"), None);
        assert_eq!(stripped("#!python flags=allow-key-locking\nx"), None);
        assert_eq!(stripped("-- allow-key-locking\nreturn 1"), None);
    }

    #[test]
    fn evalsha_of_a_flagged_body_names_the_stripped_one_after_an_eval() {
        let map = KeyLocking::new();
        let body = "#!lua flags=allow-key-locking\nreturn 1";
        let flagged = sha1_hex(body.as_bytes());
        let mut evalsha = Command {
            parts: vec![b"evalsha".to_vec(), flagged.to_uppercase().into_bytes()],
        };
        assert_eq!(map.rewrite(&mut evalsha), Rewrite::None, "not mapped yet");
        let mut eval = Command {
            parts: vec![b"EVAL".to_vec(), body.as_bytes().to_vec(), b"0".to_vec()],
        };
        let rewrite = map.rewrite(&mut eval);
        assert_eq!(eval.parts[1], b"#!lua\nreturn 1");
        let stripped = sha1_hex(b"#!lua\nreturn 1");
        assert_eq!(
            rewrite,
            Rewrite::Digest {
                flagged: flagged.clone(),
                stripped: stripped.clone()
            }
        );
        assert!(matches!(map.rewrite(&mut evalsha), Rewrite::Digest { .. }));
        assert_eq!(evalsha.parts[1], stripped.as_bytes());
    }

    #[test]
    fn script_load_answers_the_flagged_digest() {
        let map = KeyLocking::new();
        let body = b"#!lua flags=allow-key-locking,no-writes\nreturn 1".to_vec();
        let mut load = Command {
            parts: vec![b"script".to_vec(), b"load".to_vec(), body.clone()],
        };
        let rewrite = map.rewrite(&mut load);
        let mut reply = Value::BulkString(sha1_hex(&load.parts[2]).into_bytes());
        rewrite.restore(&mut reply);
        assert_eq!(reply, Value::BulkString(sha1_hex(&body).into_bytes()));
    }
}
