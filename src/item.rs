//! Item ids and custom counter names: validated once, at the edge of the engine.
//!
//! Both are plain ASCII from a small alphabet, so they can be put into Redis key
//! names as they are: none of `{`, `}` or whitespace can appear (see [`crate::keys`]).

use std::fmt;

/// The longest item id, in bytes (after percent-decoding).
pub const MAX_ITEM_BYTES: usize = 200;
/// The longest custom counter name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// An item id was empty, too long or had a byte outside the allowed alphabet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item ids are 1-200 bytes of A-Z a-z 0-9 . _ ~ - : /")]
pub struct InvalidItem;

/// A counter name was empty, too long or had a byte outside the allowed alphabet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("counter names are 1-64 bytes of A-Z a-z 0-9 . _ ~ - :")]
pub struct InvalidName;

/// A valid item id, such as `blog/2026/hello`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemId(String);

impl ItemId {
    /// Validates an already percent-decoded item id.
    pub fn parse(decoded: &str) -> Result<ItemId, InvalidItem> {
        let ok = (1..=MAX_ITEM_BYTES).contains(&decoded.len())
            && decoded.bytes().all(|b| is_name_byte(b) || b == b'/');
        if ok {
            Ok(ItemId(decoded.to_owned()))
        } else {
            Err(InvalidItem)
        }
    }

    /// The id as sent by the client (decoded).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid custom counter name, such as `tokens` or `score:weekly`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterName(String);

impl CounterName {
    /// Validates a counter name (the item-id alphabet without `/`, at most 64 bytes).
    pub fn parse(s: &str) -> Result<CounterName, InvalidName> {
        if (1..=MAX_NAME_BYTES).contains(&s.len()) && s.bytes().all(is_name_byte) {
            Ok(CounterName(s.to_owned()))
        } else {
            Err(InvalidName)
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CounterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which item ids may be written (`ITEMS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ItemPolicy {
    /// Any valid id (`ITEMS=open`, the default).
    #[default]
    Open,
    /// Ids that match `ITEM_PATTERN` (`ITEMS=pattern`); others are `404 unknown_item`.
    Pattern(ItemPattern),
    /// Ids registered with the API key (`ITEMS=registered`, `PUT /v1/items/{item}`).
    Registered,
}

/// `ITEM_PATTERN` was empty or named something no item id can match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "ITEM_PATTERN is a comma list of id prefixes or globs with `*` (e.g. `blog/,docs/*/intro`)"
)]
pub struct InvalidPattern;

/// `ITEM_PATTERN`: a comma list of entries, each a prefix (`blog/`) or, when
/// it has a `*`, a glob that must match the whole id (`*` matches any run of
/// characters, `/` included: `docs/*/intro`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemPattern {
    entries: Vec<String>,
}

impl ItemPattern {
    /// Parses the comma list; every entry must use the item-id alphabet (plus `*`).
    pub fn parse(list: &str) -> Result<ItemPattern, InvalidPattern> {
        let entries: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        let valid = |e: &String| e.bytes().all(|b| is_name_byte(b) || b == b'/' || b == b'*');
        if entries.is_empty() || !entries.iter().all(valid) {
            return Err(InvalidPattern);
        }
        Ok(ItemPattern { entries })
    }

    /// Whether `item` matches any entry.
    pub fn matches(&self, item: &ItemId) -> bool {
        let id = item.as_str().as_bytes();
        self.entries.iter().any(|entry| {
            if entry.contains('*') {
                glob(entry.as_bytes(), id)
            } else {
                id.starts_with(entry.as_bytes())
            }
        })
    }
}

/// Whether `text` matches `pattern` whole, `*` matching any run of bytes:
/// linear, backtracking only to the last `*`.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-' | b':')
}

/// Strictly percent-decodes ONE raw path segment.
///
/// Every `%` must start a two-hex-digit escape and the result must be UTF-8;
/// otherwise `None`. `+` stays `+` (this is a path, not a form).
pub fn decode_segment(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_page_path_and_the_whole_alphabet() {
        assert!(ItemId::parse("blog/2026/hello").is_ok());
        assert!(ItemId::parse("AZaz09._~-:/").is_ok());
        assert!(ItemId::parse(&"a".repeat(200)).is_ok());
    }

    #[test]
    fn refuses_empty_long_and_foreign_item_ids() {
        for bad in ["", "a b", "a{b}", "é", "a%2F", "a?b", "a#b", "a\n"] {
            assert_eq!(ItemId::parse(bad), Err(InvalidItem), "{bad:?}");
        }
        assert_eq!(ItemId::parse(&"a".repeat(201)), Err(InvalidItem));
    }

    #[test]
    fn counter_names_refuse_a_slash_and_more_than_64_bytes() {
        assert!(CounterName::parse("score:weekly").is_ok());
        assert!(CounterName::parse(&"n".repeat(64)).is_ok());
        assert_eq!(CounterName::parse("a/b"), Err(InvalidName));
        assert_eq!(CounterName::parse(&"n".repeat(65)), Err(InvalidName));
        assert_eq!(CounterName::parse(""), Err(InvalidName));
    }

    #[test]
    fn a_pattern_entry_is_a_prefix_or_a_whole_id_glob() {
        let pattern = ItemPattern::parse("blog/, docs/*/intro,*-draft").unwrap();
        let matches = |id: &str| pattern.matches(&ItemId::parse(id).unwrap());
        assert!(matches("blog/2026/hello"));
        assert!(matches("docs/v1/intro"));
        assert!(matches("docs/v1/beta/intro"));
        assert!(matches("x-draft"));
        assert!(!matches("blogs"));
        assert!(!matches("docs/v1/intro/more"));
        assert!(!matches("random-id"));
        for bad in ["", " , ", "a b", "{x}"] {
            assert_eq!(ItemPattern::parse(bad), Err(InvalidPattern), "{bad:?}");
        }
    }

    #[test]
    fn decodes_escapes_strictly() {
        assert_eq!(
            decode_segment("blog%2F2026%2fhello").as_deref(),
            Some("blog/2026/hello")
        );
        assert_eq!(decode_segment("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_segment("%C3%A9").as_deref(), Some("é"));
        for bad in ["%", "%2", "%zz", "a%g0", "%FF", "%C3"] {
            assert_eq!(decode_segment(bad), None, "{bad:?}");
        }
    }
}
