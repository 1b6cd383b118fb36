//! The outbox: every write script that changes a count appends one event to a
//! Redis Stream in the same atomic step, so a write and its event are applied
//! together or not at all. The reconciliation pass reads the streams, applies
//! the events to the system of record (D1) and trims what it applied.
//!
//! The outbox is [`SHARDS`] streams; an item's events all go to the stream
//! [`shard`] picks from its id, so on Upstash with key locking writes to
//! different items do not queue on one stream key, and one item's events stay
//! in order. Events of different shards are ordered by their stream ids (the
//! Redis server's clock), which [`merge`] uses to apply a batch in one order.
//!
//! This module is pure: it names the event fields, parses stream entries and
//! merges the shards' entries into one ordered, bounded batch.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::decimal;
use crate::engine::{Amount, CounterValue};
use crate::item::ItemId;

/// How many streams the outbox is split into.
pub const SHARDS: usize = 16;

/// The shard (`0..SHARDS`) of `item`'s events: FNV-1a (32 bit) of the id's
/// bytes, modulo [`SHARDS`]. Stable across versions: changing it would split
/// one item's events over two streams and lose their order.
pub fn shard(item: &ItemId) -> usize {
    (crate::fnv1a(item.as_str().as_bytes()) % SHARDS as u32) as usize
}

/// A Redis Stream entry id, `<ms>-<seq>`: ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// The Redis server's clock when the entry was added, in milliseconds.
    pub ms: u64,
    /// The entry's number within that millisecond.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses `<ms>-<seq>` (both decimal).
    pub fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The smallest id after this one (for `XTRIM … MINID`, which keeps ids at
    /// or above the one given).
    pub fn next(self) -> StreamId {
        match self.seq.checked_add(1) {
            Some(seq) => StreamId { ms: self.ms, seq },
            None => StreamId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// What one event changed. The stream entry's fields, by op:
///
/// | `op` | fields besides `op`, `item`, `t` (and `idem` when the request had an `Idempotency-Key`) |
/// |---|---|
/// | `like`, `unlike` | `who`: the identity whose like was added or removed |
/// | `view` | none: one counted view at `t` |
/// | `add` | `name`, `kind` (`int` or `float`), `by` (decimal text): an add to a custom counter |
/// | `import` | `views`, `likes_base` (each optional, decimal), `counters` (JSON object of numbers): starting counts, set |
/// | `merge` | `from`: the item whose likers, views, day buckets and counters were folded into `item` (in `from`'s shard) |
/// | `merged_in` | `from`: the same merge, marked in `item`'s shard; changes nothing by itself |
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `who` now likes the item (the like changed the state).
    Like {
        /// The identity.
        who: String,
    },
    /// `who` no longer likes the item (the unlike changed the state).
    Unlike {
        /// The identity.
        who: String,
    },
    /// One counted view.
    View,
    /// An add to a custom counter.
    Add {
        /// The counter's name.
        name: String,
        /// The amount added, as the script applied it (`float` once the counter holds a fraction).
        by: Amount,
    },
    /// Starting counts set by `POST /v1/admin/import`: each given value replaces the current one.
    Import {
        /// The item's views, when given.
        views: Option<u64>,
        /// Likes counted before Tally (no identities), when given.
        likes_base: Option<u64>,
        /// Counters set to these values.
        counters: BTreeMap<String, CounterValue>,
    },
    /// `from` was folded into the event's item (this event is in `from`'s shard).
    Merge {
        /// The old item id.
        from: String,
    },
    /// The marker of a merge in the new item's shard: applies nothing.
    MergedIn {
        /// The old item id.
        from: String,
    },
}

/// One outbox entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The stream it was read from.
    pub shard: usize,
    /// Its stream id.
    pub id: StreamId,
    /// The item whose counts it changed.
    pub item: String,
    /// The writer's clock, unix seconds (a view's day bucket is the UTC day of `t`).
    pub t: i64,
    /// The request's `Idempotency-Key`, if it had one (for the audit trail).
    pub idem: Option<String>,
    /// What changed.
    pub op: Op,
}

/// A stream entry that is not an event this version knows (bad fields, an
/// unknown op). The pass skips it, logs it and counts it, so one bad entry
/// never stops the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The stream it was read from.
    pub shard: usize,
    /// Its stream id, when that much could be read.
    pub id: Option<StreamId>,
    /// Why it could not be read.
    pub reason: String,
}

impl Event {
    /// Reads one `XRANGE` entry, `[id, [field, value, ...]]`, of stream `shard`.
    pub fn parse(shard: usize, entry: &Value) -> Result<Event, Unreadable> {
        let fail = |id: Option<StreamId>, reason: &str| Unreadable {
            shard,
            id,
            reason: reason.to_owned(),
        };
        let Some([Value::String(id), Value::Array(flat)]) = entry.as_array().map(Vec::as_slice)
        else {
            return Err(fail(None, "not an [id, fields] entry"));
        };
        let id = StreamId::parse(id).ok_or_else(|| fail(None, "bad stream id"))?;
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            let [Value::String(name), Value::String(value)] = pair else {
                return Err(fail(Some(id), "fields are not string pairs"));
            };
            pairs.push((name.as_str(), value.as_str()));
        }
        // A handful of fields: a scan, the last of a repeated name winning.
        let get = |name: &str| pairs.iter().rev().find(|p| p.0 == name).map(|p| p.1);
        let field = |name: &str| get(name).ok_or_else(|| fail(Some(id), &format!("no `{name}`")));
        let text = |name: &str| field(name).map(str::to_owned);
        let op = match field("op")? {
            "like" => Op::Like { who: text("who")? },
            "unlike" => Op::Unlike { who: text("who")? },
            "view" => Op::View,
            "add" => {
                let by = field("by")?;
                let by = match field("kind")? {
                    "int" => by.parse().ok().map(Amount::Int),
                    "float" => decimal::parse(by)
                        .filter(|f| f.is_finite())
                        .map(Amount::Float),
                    _ => None,
                }
                .ok_or_else(|| fail(Some(id), "bad `kind` or `by`"))?;
                Op::Add {
                    name: text("name")?,
                    by,
                }
            }
            "import" => {
                let number = |name: &str| match get(name) {
                    None => Ok(None),
                    Some(v) => v
                        .parse()
                        .map(Some)
                        .map_err(|_| fail(Some(id), &format!("bad `{name}`"))),
                };
                let counters = match get("counters") {
                    None => BTreeMap::new(),
                    Some(json) => {
                        parse_counters(json).ok_or_else(|| fail(Some(id), "bad `counters`"))?
                    }
                };
                Op::Import {
                    views: number("views")?,
                    likes_base: number("likes_base")?,
                    counters,
                }
            }
            "merge" => Op::Merge {
                from: text("from")?,
            },
            "merged_in" => Op::MergedIn {
                from: text("from")?,
            },
            _ => return Err(fail(Some(id), "unknown `op`")),
        };
        Ok(Event {
            shard,
            id,
            item: text("item")?,
            t: field("t")?.parse().map_err(|_| fail(Some(id), "bad `t`"))?,
            idem: get("idem").map(str::to_owned),
            op,
        })
    }
}

/// A JSON object of counter values, as an `import` event carries them.
fn parse_counters(json: &str) -> Option<BTreeMap<String, CounterValue>> {
    let Value::Object(map) = serde_json::from_slice(json.as_bytes()).ok()? else {
        return None;
    };
    let mut counters = BTreeMap::new();
    for (name, value) in map {
        let value = match value.as_i64() {
            Some(n) => CounterValue::Int(n),
            None => CounterValue::Float(value.as_f64().filter(|f| f.is_finite())?),
        };
        counters.insert(name, value);
    }
    Some(counters)
}

/// The positions `n` of `entries` `(id, shard, n)` in stream order: by id,
/// then shard, then position.
pub fn order(entries: impl Iterator<Item = (StreamId, usize, usize)>) -> Vec<usize> {
    let entries: Vec<(StreamId, usize, usize)> = entries.collect();
    let mut order = sorted(entries.len(), &|a, b| entries[a].cmp(&entries[b]));
    for n in &mut order {
        *n = entries[*n].2;
    }
    order
}

/// The positions `0..len` ordered by `cmp`, equal ones in their own order.
/// The one sort of the outbox and record code: every list they order goes
/// through it, as each sort instantiated for another element type (or
/// another comparison) is several KB of the wasm.
pub fn sorted(len: usize, cmp: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..len).collect();
    positions.sort_unstable_by(|&a, &b| cmp(a, b).then(a.cmp(&b)));
    positions
}

/// What one read of the outbox gives the pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// Events to apply, in stream-id order across shards (ties by shard).
    pub events: Vec<Event>,
    /// Entries skipped as unreadable (their ids are covered by `marks`).
    pub unreadable: Vec<Unreadable>,
    /// Per shard, the id of the last entry this batch covers (or the mark it
    /// started from): the high-water marks to store with the applied events.
    pub marks: [StreamId; SHARDS],
    /// Whether some shard has entries past this batch.
    pub more: bool,
}

/// Merges the entries each shard returned after its mark into one batch of at
/// most `max` events, in stream-id order.
///
/// `entries[s]` is what `XRANGE <shard s> (<after[s]> + COUNT <asked>` returned,
/// and `asked` the `COUNT`. A shard that returned `asked` entries may have more,
/// with ids the batch has not seen, so the batch stops at the smallest last id
/// of such shards: no event is applied before an earlier one of another shard.
pub fn merge(
    after: &[StreamId; SHARDS],
    entries: &[Vec<Value>],
    asked: usize,
    max: usize,
) -> Batch {
    let mut cut: Option<StreamId> = None;
    let mut all: Vec<(StreamId, usize, Result<Event, Unreadable>)> = Vec::new();
    for (shard, list) in entries.iter().enumerate().take(SHARDS) {
        let mut last = None;
        for entry in list {
            let parsed = Event::parse(shard, entry);
            let id = match &parsed {
                Ok(event) => Some(event.id),
                Err(bad) => bad.id,
            };
            // An entry without a readable id cannot be placed or trimmed past;
            // it is reported, and the shard stops before it.
            let Some(id) = id else {
                all.push((StreamId::ZERO, shard, parsed));
                break;
            };
            last = Some(id);
            all.push((id, shard, parsed));
        }
        if list.len() >= asked
            && let Some(last) = last
        {
            cut = Some(cut.map_or(last, |c: StreamId| c.min(last)));
        }
    }
    let order = order(
        all.iter()
            .enumerate()
            .map(|(n, (id, shard, _))| (*id, *shard, n)),
    );
    let mut all: Vec<Option<_>> = all.into_iter().map(Some).collect();
    let mut batch = Batch {
        marks: *after,
        ..Batch::default()
    };
    for (id, shard, parsed) in order.into_iter().filter_map(|n| all[n].take()) {
        if id == StreamId::ZERO {
            if let Err(bad) = parsed {
                batch.unreadable.push(bad);
            }
            batch.more = true;
            continue;
        }
        if cut.is_some_and(|c| id > c) || batch.events.len() >= max {
            batch.more = true;
            continue;
        }
        batch.marks[shard] = id;
        match parsed {
            Ok(event) => batch.events.push(event),
            Err(bad) => batch.unreadable.push(bad),
        }
    }
    batch.more |= cut.is_some();
    batch
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(id: &str, fields: &[&str]) -> Value {
        json!([id, fields])
    }

    #[test]
    fn an_items_shard_is_stable_and_in_range() {
        let item = ItemId::parse("blog/2026/hello").unwrap();
        assert_eq!(shard(&item), shard(&item));
        assert!(shard(&item) < SHARDS);
        // FNV-1a of "a" is 0xe40c292c; 0xe40c292c % 16 == 12.
        assert_eq!(shard(&ItemId::parse("a").unwrap()), 12);
    }

    #[test]
    fn stream_ids_order_and_step_as_redis_does() {
        let id = StreamId::parse("1700000000000-5").unwrap();
        assert_eq!(id.to_string(), "1700000000000-5");
        assert!(StreamId::parse("9-0").unwrap() < StreamId::parse("10-0").unwrap());
        assert_eq!(id.next().to_string(), "1700000000000-6");
        assert_eq!(StreamId::parse("nope"), None);
        assert_eq!(StreamId::parse("1-"), None);
    }

    #[test]
    fn every_op_parses_from_its_fields() {
        let like = Event::parse(
            3,
            &entry("5-1", &["op", "like", "item", "a", "t", "100", "who", "u1"]),
        )
        .unwrap();
        assert_eq!(like.op, Op::Like { who: "u1".into() });
        assert_eq!(
            (like.shard, like.id, like.t),
            (3, StreamId { ms: 5, seq: 1 }, 100)
        );
        let add = Event::parse(
            0,
            &entry(
                "6-0",
                &[
                    "op", "add", "item", "a", "t", "1", "name", "n", "kind", "float", "by", "0.5",
                    "idem", "k1",
                ],
            ),
        )
        .unwrap();
        assert_eq!(
            add.op,
            Op::Add {
                name: "n".into(),
                by: Amount::Float(0.5)
            }
        );
        assert_eq!(add.idem.as_deref(), Some("k1"));
        let import = Event::parse(
            0,
            &entry(
                "7-0",
                &[
                    "op",
                    "import",
                    "item",
                    "a",
                    "t",
                    "1",
                    "views",
                    "10",
                    "counters",
                    r#"{"x":2,"y":1.5}"#,
                ],
            ),
        )
        .unwrap();
        let Op::Import {
            views,
            likes_base,
            counters,
        } = import.op
        else {
            panic!("not an import");
        };
        assert_eq!((views, likes_base), (Some(10), None));
        assert_eq!(counters["x"], CounterValue::Int(2));
        assert_eq!(counters["y"], CounterValue::Float(1.5));
    }

    #[test]
    fn unknown_or_broken_entries_are_unreadable_not_fatal() {
        for fields in [
            &["op", "teleport", "item", "a", "t", "1"][..],
            &["op", "like", "item", "a", "t", "1"],
            &[
                "op", "add", "item", "a", "t", "1", "name", "n", "kind", "float", "by", "inf",
            ],
            &["op", "view", "item", "a", "t", "soon"],
        ] {
            let bad = Event::parse(1, &entry("9-9", fields)).unwrap_err();
            assert_eq!(bad.id, StreamId::parse("9-9"), "{fields:?}");
        }
    }

    fn view(id: &str) -> Value {
        entry(id, &["op", "view", "item", "a", "t", "1"])
    }

    fn empty() -> Vec<Vec<Value>> {
        vec![Vec::new(); SHARDS]
    }

    #[test]
    fn a_batch_is_in_id_order_across_shards() {
        let mut entries = empty();
        entries[2] = vec![view("1-0"), view("4-0")];
        entries[7] = vec![view("2-0"), view("3-0")];
        let batch = merge(&[StreamId::ZERO; SHARDS], &entries, 10, 100);
        let ids: Vec<String> = batch.events.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["1-0", "2-0", "3-0", "4-0"]);
        assert_eq!(batch.marks[2].to_string(), "4-0");
        assert_eq!(batch.marks[7].to_string(), "3-0");
        assert_eq!(batch.marks[0], StreamId::ZERO);
        assert!(!batch.more);
    }

    #[test]
    fn equal_ids_in_two_shards_are_ordered_by_shard_and_each_applied_once() {
        // Two streams written within one millisecond: each starts its own sequence.
        let mut entries = empty();
        entries[11] = vec![view("5-0"), view("6-0")];
        entries[3] = vec![view("5-0"), view("5-1")];
        let batch = merge(&[StreamId::ZERO; SHARDS], &entries, 10, 3);
        let got: Vec<(usize, String)> = batch
            .events
            .iter()
            .map(|e| (e.shard, e.id.to_string()))
            .collect();
        assert_eq!(
            got,
            [(3, "5-0".into()), (11, "5-0".into()), (3, "5-1".into())]
        );
        assert_eq!(batch.marks[3].to_string(), "5-1");
        assert_eq!(batch.marks[11].to_string(), "5-0");
        assert!(batch.more);
        // The next batch, from those marks, holds only what is left.
        let mut left = empty();
        left[11] = vec![view("6-0")];
        let rest = merge(&batch.marks, &left, 10, 3);
        let ids: Vec<String> = rest.events.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["6-0"]);
    }

    #[test]
    fn a_full_shard_cuts_the_batch_at_its_last_id() {
        let mut entries = empty();
        // Shard 1 returned all it was asked for: it may hold 3-5 next, so
        // shard 4's 6-0 must wait for the next batch.
        entries[1] = vec![view("1-0"), view("3-0")];
        entries[4] = vec![view("2-0"), view("6-0")];
        let after = [StreamId::ZERO; SHARDS];
        let batch = merge(&after, &entries, 2, 100);
        let ids: Vec<String> = batch.events.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["1-0", "2-0", "3-0"]);
        assert_eq!(batch.marks[4].to_string(), "2-0");
        assert!(batch.more);
    }

    #[test]
    fn a_batch_stops_at_max_events() {
        let mut entries = empty();
        entries[0] = vec![view("1-0"), view("2-0"), view("3-0")];
        let batch = merge(&[StreamId::ZERO; SHARDS], &entries, 10, 2);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.marks[0].to_string(), "2-0");
        assert!(batch.more);
    }

    #[test]
    fn unreadable_entries_advance_the_mark() {
        let mut entries = empty();
        entries[5] = vec![view("1-0"), entry("2-0", &["op", "teleport"]), view("3-0")];
        let batch = merge(&[StreamId::ZERO; SHARDS], &entries, 10, 100);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.unreadable.len(), 1);
        assert_eq!(batch.marks[5].to_string(), "3-0");
    }
}
