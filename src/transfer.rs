//! Import and merge: starting counts from another counter, and folding an old
//! item id into a new one (renamed pages).
//!
//! [`parse_import`] reads and checks an NDJSON import whole before anything
//! is written (pure, unit-tested); [`Engine::import`] and [`Engine::merge`]
//! each run one atomic script (`import.lua`, `merge.lua`) that also appends
//! the outbox events (`import`, `merge` and `merged_in`, see
//! [`crate::outbox`]) when the system of record is on.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::engine::{
    Bucket, CounterValue, Engine, EngineError, InvalidRequest, VIEWERS_TTL_SECONDS, unexpected,
};
use crate::item::{CounterName, ItemId, ItemPolicy};
use crate::outbox;
use crate::scripts;

/// The most item lines one import takes (blank lines aside).
pub const MAX_IMPORT_LINES: usize = 1_000;
/// The largest import body, in bytes (256 KiB).
pub const MAX_IMPORT_BYTES: usize = 256 * 1024;
/// The largest `views` or `likes_base` an import sets: 2^53 - 1, the largest
/// integer every JSON reader (JavaScript's included) holds exactly.
pub const MAX_IMPORT_COUNT: u64 = (1 << 53) - 1;
/// The fields an import line may have.
const FIELDS: [&str; 4] = ["item", "views", "likes_base", "counters"];

/// Day buckets a merge moves: every day still kept (400, `Bucket::Day`'s lifetime).
const MERGE_DAYS: i64 = 400;
/// Daily HyperLogLogs a merge moves: every day still kept (31).
const MERGE_VIEWER_DAYS: i64 = VIEWERS_TTL_SECONDS / 86_400;

/// One line of an import: an item and the counts to set on it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportLine {
    /// The line's number in the body (1-based, blank lines counted).
    pub line: usize,
    /// The item.
    pub item: ItemId,
    /// Views to set, when given.
    pub views: Option<u64>,
    /// Likes counted before Tally (no identities), when given: likes become
    /// this plus the identities that like the item.
    pub likes_base: Option<u64>,
    /// Custom counters to set (others are left as they are), by name, each
    /// checked by [`CounterName::parse`]. Keyed by `String`, as a live read's
    /// counters are: one `BTreeMap` type in the wasm for both.
    pub counters: BTreeMap<String, CounterValue>,
}

/// Why an import or a merge was refused, or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransferError {
    /// A line of the import is not valid; nothing was written.
    #[error("line {line}: {reason}")]
    Line {
        /// The line's number (1-based).
        line: usize,
        /// What is wrong with it, for the client.
        reason: String,
    },
    /// The import has no item lines.
    #[error("the body has no lines: send one JSON object per line")]
    Empty,
    /// A merge of an item into itself.
    #[error("`from` must be another item than the one merged into")]
    SameItem,
    /// The engine refused or failed (unknown item, counter overflow, Redis).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl TransferError {
    fn line(line: usize, reason: impl Into<String>) -> TransferError {
        TransferError::Line {
            line,
            reason: reason.into(),
        }
    }
}

/// Reads an NDJSON import: one JSON object per line, `{"item", "views",
/// "likes_base", "counters"}`, `item` and at least one other field required,
/// no other field allowed, each item at most once; blank lines are skipped.
/// The first bad line is the error, so a caller writes nothing unless every
/// line is good.
pub fn parse_import(body: &[u8]) -> Result<Vec<ImportLine>, TransferError> {
    let mut lines = Vec::new();
    // The ids so far, sorted: a `BTreeSet` type would be more wasm, and at
    // most MAX_IMPORT_LINES ids make inserting in place cheap.
    let mut seen: Vec<String> = Vec::new();
    for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let text =
            std::str::from_utf8(raw).map_err(|_| TransferError::line(number, "not valid UTF-8"))?;
        if text.trim().is_empty() {
            continue;
        }
        if lines.len() == MAX_IMPORT_LINES {
            return Err(TransferError::line(
                number,
                format!(
                    "an import takes at most {MAX_IMPORT_LINES} lines: split the file (importing is idempotent)"
                ),
            ));
        }
        let line = parse_line(number, text)?;
        let id = line.item.as_str();
        match seen.binary_search_by(|seen| seen.as_str().cmp(id)) {
            Err(at) => seen.insert(at, id.to_owned()),
            Ok(_) => {
                let first = lines
                    .iter()
                    .find(|l: &&ImportLine| l.item == line.item)
                    .map_or(number, |l| l.line);
                return Err(TransferError::line(
                    number,
                    format!("item `{}` is already on line {first}", line.item),
                ));
            }
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return Err(TransferError::Empty);
    }
    Ok(lines)
}

fn parse_line(number: usize, text: &str) -> Result<ImportLine, TransferError> {
    let bad = |reason: String| TransferError::line(number, reason);
    let value: Value = serde_json::from_slice(text.as_bytes())
        .map_err(|e| bad(format!("not valid JSON (column {})", e.column())))?;
    let Value::Object(object) = value else {
        return Err(bad("not a JSON object".into()));
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown field `{unknown}`: a line has item, views, likes_base and counters"
        )));
    }
    let item = object
        .get("item")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`item` (a string) is required".into()))?;
    let item = ItemId::parse(item).map_err(|e| bad(format!("`item`: {e}")))?;
    let views = count(&object, "views").map_err(&bad)?;
    let likes_base = count(&object, "likes_base").map_err(&bad)?;
    let counters = match object.get("counters") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => counters(map).map_err(&bad)?,
        Some(_) => return Err(bad("`counters` must be an object of numbers".into())),
    };
    if views.is_none() && likes_base.is_none() && counters.is_empty() {
        return Err(bad(
            "nothing to set: give views, likes_base or counters".into()
        ));
    }
    Ok(ImportLine {
        line: number,
        item,
        views,
        likes_base,
        counters,
    })
}

/// An optional count field: an integer from 0 to [`MAX_IMPORT_COUNT`].
fn count(object: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match object.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|&n| n <= MAX_IMPORT_COUNT)
            .map(Some)
            .ok_or_else(|| format!("`{name}` must be an integer from 0 to {MAX_IMPORT_COUNT}")),
    }
}

fn counters(map: &Map<String, Value>) -> Result<BTreeMap<String, CounterValue>, String> {
    // Inserted, not collected: collecting into a `BTreeMap` sorts, and each
    // sort is more code in the wasm.
    let mut counters = BTreeMap::new();
    for (name, value) in map {
        let name = CounterName::parse(name).map_err(|e| format!("counter `{name}`: {e}"))?;
        let number = value
            .as_number()
            .ok_or_else(|| format!("counter `{name}` must be a number"))?;
        let value = match number.as_i64() {
            Some(n) => CounterValue::Int(n),
            None => {
                let f = number
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| format!("counter `{name}` must be a finite number"))?;
                // A whole float (`2.0`) is the integer Redis keeps and
                // reads back (`2`): the event and the record say so too.
                if f.fract() == 0.0 && f.abs() < 9.0e18 {
                    CounterValue::Int(f as i64)
                } else {
                    CounterValue::Float(f)
                }
            }
        };
        counters.insert(name.as_str().to_owned(), value);
    }
    Ok(counters)
}

/// A counter value as Redis keeps it (the text `HSET` stores).
fn counter_text(value: &CounterValue) -> String {
    match value {
        CounterValue::Int(n) => n.to_string(),
        CounterValue::Float(f) => f.to_string(),
    }
}

/// The counters of a line as the `import` event's JSON object.
fn counters_json(counters: &BTreeMap<String, CounterValue>) -> String {
    // Inserted, not collected: each `collect()` into a map is another sort in the wasm.
    let mut map = Map::new();
    for (name, value) in counters {
        let value = match value {
            CounterValue::Int(n) => Value::from(*n),
            CounterValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
        };
        map.insert(name.clone(), value);
    }
    serde_json::to_string(&map).unwrap_or_default()
}

/// The answer to a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeOutcome {
    /// False when the old item had nothing: then nothing was written.
    pub merged: bool,
    /// The new item's likes now.
    pub likes: u64,
    /// The new item's views now.
    pub views: u64,
}

impl Engine {
    /// Sets the counts of every line's item (lines as [`parse_import`] reads
    /// them: at most [`MAX_IMPORT_LINES`], each item once), as one atomic
    /// `import.lua`: all or nothing. Under `ITEMS=pattern` an id outside the pattern is a bad
    /// line; under `ITEMS=registered` an unregistered one is (checked in the
    /// script before any write). Answers how many items were set.
    pub async fn import(&self, lines: &[ImportLine], now: i64) -> Result<u64, TransferError> {
        if lines.is_empty() {
            return Err(TransferError::Empty);
        }
        if let Some(over) = lines.get(MAX_IMPORT_LINES) {
            return Err(TransferError::line(
                over.line,
                format!("an import takes at most {MAX_IMPORT_LINES} lines"),
            ));
        }
        for line in lines {
            if !self.may_write(&line.item) {
                return Err(TransferError::line(
                    line.line,
                    format!("item `{}` is outside ITEM_PATTERN", line.item),
                ));
            }
        }
        let keys = self.keys();
        let mut call_keys = Vec::with_capacity(lines.len() * 5);
        let mut args = vec![
            now.to_string(),
            self.registered_arg().to_owned(),
            self.outbox_arg().to_owned(),
            lines.len().to_string(),
        ];
        let text = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        for line in lines {
            let item = &line.item;
            call_keys.extend([
                keys.stats(item),
                keys.counters(item),
                keys.likers(item),
                keys.liker_bits(item),
                keys.outbox(outbox::shard(item)),
            ]);
            args.extend([
                item.as_str().to_owned(),
                text(line.views),
                text(line.likes_base),
                if line.counters.is_empty() {
                    String::new()
                } else {
                    counters_json(&line.counters)
                },
                line.counters.len().to_string(),
            ]);
            for (name, value) in &line.counters {
                args.push(name.clone());
                args.push(counter_text(value));
            }
        }
        let answer = self
            .rest()
            .eval(&scripts::IMPORT, &call_keys, &args)
            .await
            .map_err(EngineError::from)?;
        match integers(&answer).as_deref() {
            Some([1, n]) => Ok(u64::try_from(*n).unwrap_or(0)),
            Some([4, i]) => {
                let line = usize::try_from(*i)
                    .ok()
                    .and_then(|i| lines.get(i.checked_sub(1)?))
                    .ok_or_else(|| unexpected("import", &answer))?;
                Err(TransferError::line(
                    line.line,
                    format!("item `{}` is not registered (ITEMS=registered)", line.item),
                ))
            }
            _ => Err(unexpected("import", &answer).into()),
        }
    }

    /// Folds `from` into `item`, as one atomic `merge.lua` (see its header):
    /// likers united, likes_base, views, day buckets and custom counters
    /// summed, viewer HyperLogLogs merged, then `from`'s keys deleted. A
    /// `from` with nothing is no error: nothing is written and `merged` is
    /// false (so a merge run twice is harmless). `from` may be any valid id,
    /// even one outside `ITEM_PATTERN` (to move counts away from it); `item`
    /// must be writable ([`EngineError::UnknownItem`] otherwise).
    pub async fn merge(
        &self,
        item: &ItemId,
        from: &ItemId,
        now: i64,
    ) -> Result<MergeOutcome, TransferError> {
        if item == from {
            return Err(TransferError::SameItem);
        }
        if !self.may_write(item) {
            return Err(EngineError::UnknownItem.into());
        }
        let keys = self.keys();
        let day = Bucket::Day.seconds();
        let today = Bucket::Day.start(now);
        let mut call_keys =
            Vec::with_capacity((12 + 2 * (MERGE_DAYS + MERGE_VIEWER_DAYS)) as usize);
        for id in [item, from] {
            call_keys.extend([
                keys.stats(id),
                keys.counters(id),
                keys.likers(id),
                keys.liker_bits(id),
                keys.viewers_all_time(id),
            ]);
        }
        call_keys.push(keys.outbox(outbox::shard(from)));
        call_keys.push(keys.outbox(outbox::shard(item)));
        for id in [item, from] {
            call_keys.extend(
                (0..MERGE_DAYS).map(|back| keys.views_bucket(id, Bucket::Day, today - back * day)),
            );
        }
        for id in [item, from] {
            call_keys
                .extend((0..MERGE_VIEWER_DAYS).map(|back| keys.viewers(id, today - back * day)));
        }
        let args = vec![
            now.to_string(),
            self.registered_arg().to_owned(),
            self.outbox_arg().to_owned(),
            item.as_str().to_owned(),
            from.as_str().to_owned(),
            today.to_string(),
            MERGE_DAYS.to_string(),
            MERGE_VIEWER_DAYS.to_string(),
            Bucket::Day.ttl_seconds().to_string(),
            VIEWERS_TTL_SECONDS.to_string(),
        ];
        let answer = self
            .rest()
            .eval(&scripts::MERGE, &call_keys, &args)
            .await
            .map_err(EngineError::from)?;
        match integers(&answer).as_deref() {
            Some([1, merged, likes, views]) => Ok(MergeOutcome {
                merged: *merged == 1,
                likes: u64::try_from(*likes).unwrap_or(0),
                views: u64::try_from(*views).unwrap_or(0),
            }),
            Some([4, ..]) => Err(EngineError::UnknownItem.into()),
            Some([5, ..]) => Err(EngineError::Invalid(InvalidRequest::CounterOverflow).into()),
            _ => Err(unexpected("merge", &answer).into()),
        }
    }

    /// Whether `ITEM_PATTERN` lets `item` be written (`ITEMS=registered` is
    /// checked by the scripts).
    fn may_write(&self, item: &ItemId) -> bool {
        match &self.settings().items {
            ItemPolicy::Pattern(pattern) => pattern.matches(item),
            _ => true,
        }
    }

    /// The scripts' `registered` argument: '1' under `ITEMS=registered`.
    fn registered_arg(&self) -> &'static str {
        match self.settings().items {
            ItemPolicy::Registered => "1",
            _ => "0",
        }
    }

    /// The scripts' `outbox` argument: '1' when the system of record is on.
    fn outbox_arg(&self) -> &'static str {
        if self.settings().outbox { "1" } else { "0" }
    }
}

fn integers(answer: &Value) -> Option<Vec<i64>> {
    answer.as_array()?.iter().map(Value::as_i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_error(body: &str) -> (usize, String) {
        match parse_import(body.as_bytes()) {
            Err(TransferError::Line { line, reason }) => (line, reason),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn an_import_reads_every_field_and_skips_blank_lines() {
        let body = "{\"item\":\"a\",\"views\":10,\"likes_base\":3}\n\n  \r\n{\"item\":\"b/c\",\"counters\":{\"n\":2,\"x\":0.5,\"w\":3.0}}\r\n";
        let lines = parse_import(body.as_bytes()).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 1);
        assert_eq!(lines[0].item.as_str(), "a");
        assert_eq!((lines[0].views, lines[0].likes_base), (Some(10), Some(3)));
        assert!(lines[0].counters.is_empty());
        assert_eq!(lines[1].line, 4);
        assert_eq!(lines[1].counters["n"], CounterValue::Int(2));
        assert_eq!(lines[1].counters["x"], CounterValue::Float(0.5));
        assert_eq!(lines[1].counters["w"], CounterValue::Int(3));
        assert_eq!(lines[1].views, None);
    }

    #[test]
    fn each_kind_of_bad_line_is_named_by_its_number() {
        let good = "{\"item\":\"ok\",\"views\":1}\n";
        for (bad, says) in [
            ("{\"item\":\"a\",\"views\":1", "not valid JSON"),
            ("[1,2]", "not a JSON object"),
            ("{\"views\":1}", "`item`"),
            ("{\"item\":\"a b\",\"views\":1}", "`item`: item ids are"),
            (
                "{\"item\":\"a\",\"views\":-1}",
                "`views` must be an integer",
            ),
            (
                "{\"item\":\"a\",\"views\":1.5}",
                "`views` must be an integer",
            ),
            (
                "{\"item\":\"a\",\"likes_base\":\"3\"}",
                "`likes_base` must be",
            ),
            (
                "{\"item\":\"a\",\"views\":9007199254740992}",
                "`views` must be",
            ),
            (
                "{\"item\":\"a\",\"views\":1,\"likes\":2}",
                "unknown field `likes`",
            ),
            (
                "{\"item\":\"a\",\"counters\":[1]}",
                "`counters` must be an object",
            ),
            ("{\"item\":\"a\",\"counters\":{\"a/b\":1}}", "counter `a/b`"),
            (
                "{\"item\":\"a\",\"counters\":{\"n\":\"1\"}}",
                "must be a number",
            ),
            ("{\"item\":\"a\"}", "nothing to set"),
            ("{\"item\":\"ok\",\"views\":2}", "already on line 1"),
        ] {
            let (line, reason) = line_error(&format!("{good}\n{bad}\n"));
            assert_eq!(line, 3, "{bad}");
            assert!(reason.contains(says), "{bad}: {reason}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_a_bad_line() {
        let mut body = b"{\"item\":\"a\",\"views\":1}\n".to_vec();
        body.extend_from_slice(b"{\"item\":\"\xff\",\"views\":1}\n");
        assert_eq!(
            parse_import(&body),
            Err(TransferError::line(2, "not valid UTF-8"))
        );
    }

    #[test]
    fn an_empty_body_is_refused() {
        assert_eq!(parse_import(b"\n \n"), Err(TransferError::Empty));
        assert_eq!(parse_import(b""), Err(TransferError::Empty));
    }

    #[test]
    fn the_line_after_the_last_allowed_one_is_refused() {
        let mut body = String::new();
        for i in 0..MAX_IMPORT_LINES {
            body.push_str(&format!("{{\"item\":\"i{i}\",\"views\":1}}\n"));
        }
        assert_eq!(
            parse_import(body.as_bytes()).unwrap().len(),
            MAX_IMPORT_LINES
        );
        body.push_str("\n{\"item\":\"last\",\"views\":1}\n");
        let (line, reason) = line_error(&body);
        assert_eq!(line, MAX_IMPORT_LINES + 2);
        assert!(reason.contains("at most 1000 lines"), "{reason}");
    }

    #[test]
    fn counters_go_to_redis_as_text_and_to_the_event_as_json() {
        let mut counters = BTreeMap::new();
        counters.insert("n".to_owned(), CounterValue::Int(-7));
        counters.insert("x".to_owned(), CounterValue::Float(2.5));
        assert_eq!(counters_json(&counters), r#"{"n":-7,"x":2.5}"#);
        assert_eq!(counter_text(&CounterValue::Float(2.5)), "2.5");
        assert_eq!(
            counter_text(&CounterValue::Int(i64::MIN)),
            i64::MIN.to_string()
        );
    }

    #[test]
    fn a_merge_moves_every_day_still_kept() {
        assert_eq!(MERGE_DAYS * 86_400, Bucket::Day.ttl_seconds());
        assert_eq!(MERGE_VIEWER_DAYS, 31);
    }
}
