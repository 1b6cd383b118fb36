//! The system of record (D1): what one outbox batch writes there, and how its
//! rows read back as an item.
//!
//! The reconciliation pass reads a [`Batch`] of outbox events and applies it to
//! D1 in ONE `DB.batch` (a transaction). This module turns the batch into that
//! transaction's statements. Each statement is set-based: it takes all its rows
//! as one JSON parameter (`?1`, read with `json_each`), so a batch of thousands
//! of events is a handful of statements whatever its size (D1 allows 100 bound
//! parameters per statement, so never one parameter per row). Every statement
//! is guarded by the `outbox_state.seq` the pass read (`?2`), and the last one
//! moves `seq` on and stores the new stream marks: if another pass applied the
//! batch first, every statement matches nothing and the last changes no row,
//! which the pass sees. So a batch applies exactly once, however passes overlap
//! or die.
//!
//! Events are aggregated in batch order into segments: likes, views and adds
//! between two imports or merges sum up (a like and an unlike of one identity
//! net out); an import (set semantics) or a merge is a barrier, applied where it
//! stands in the order. This module is pure: no `worker`, tested natively (the
//! SQL itself on a real SQLite in tests/record_sql.rs).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::decimal;
use crate::engine::{Amount, CounterValue, FLOAT_DIGITS, ItemSnapshot, UniqueViewers};
use crate::keys::Bucket;
use crate::outbox::{self, Batch, Event, Op, SHARDS, StreamId};

/// Every statement's guard: the batch applies only on top of the state it was read against.
macro_rules! guard {
    () => {
        "(SELECT seq FROM outbox_state WHERE id = 1) = ?2"
    };
}

/// Reads the state the pass starts from.
pub const READ_STATE: &str = "SELECT seq, marks FROM outbox_state WHERE id = 1";

/// Adds views and ensures the row of every touched item (rows `{item, views, t}`).
const ITEMS_ADD: &str = concat!(
    "INSERT INTO items (item, views, updated_at) ",
    "SELECT value->>'item', value->>'views', value->>'t' FROM json_each(?1) WHERE ",
    guard!(),
    " ON CONFLICT (item) DO UPDATE SET views = views + excluded.views, ",
    "updated_at = max(updated_at, excluded.updated_at)"
);

/// Identities that like an item now (rows `{item, who}`).
const LIKERS_ADD: &str = concat!(
    "INSERT INTO likers (item, who) ",
    "SELECT value->>'item', value->>'who' FROM json_each(?1) WHERE ",
    guard!(),
    " ON CONFLICT DO NOTHING"
);

/// Identities that no longer like an item (rows `{item, who}`).
const LIKERS_REMOVE: &str = concat!(
    "DELETE FROM likers WHERE ",
    guard!(),
    " AND (item, who) IN (SELECT value->>'item', value->>'who' FROM json_each(?1))"
);

/// Recounts the likes of items (rows: item ids) from their likers: membership
/// based, so a like the record already holds never counts twice.
const LIKES_RECOUNT: &str = concat!(
    "UPDATE items SET likes = likes_base + ",
    "(SELECT COUNT(*) FROM likers WHERE likers.item = items.item) WHERE ",
    guard!(),
    " AND item IN (SELECT value FROM json_each(?1))"
);

/// Adds views to day buckets (rows `{item, day, views}`).
const DAYS_ADD: &str = concat!(
    "INSERT INTO daily_views (item, day, views) ",
    "SELECT value->>'item', value->>'day', value->>'views' FROM json_each(?1) WHERE ",
    guard!(),
    " ON CONFLICT (item, day) DO UPDATE SET views = views + excluded.views"
);

/// Adds to custom counters (rows `{item, name, int, float, is_float}`).
const COUNTERS_ADD: &str = concat!(
    "INSERT INTO counters (item, name, int_value, float_value, is_float) ",
    "SELECT value->>'item', value->>'name', value->>'int', value->>'float', value->>'is_float' ",
    "FROM json_each(?1) WHERE ",
    guard!(),
    " ON CONFLICT (item, name) DO UPDATE SET int_value = int_value + excluded.int_value, ",
    "float_value = float_value + excluded.float_value, is_float = max(is_float, excluded.is_float)"
);

/// Sets imported counts (rows `{item, views, likes_base}`, `null` = keep).
const IMPORT_SET: &str = concat!(
    "UPDATE items SET views = coalesce(j.views, items.views), ",
    "likes_base = coalesce(j.likes_base, items.likes_base) ",
    "FROM (SELECT value->>'item' AS item, value->>'views' AS views, ",
    "value->>'likes_base' AS likes_base FROM json_each(?1)) AS j ",
    "WHERE items.item = j.item AND ",
    guard!()
);

/// Sets imported counters (rows `{item, name, int, float, is_float}`).
const COUNTERS_SET: &str = concat!(
    "INSERT INTO counters (item, name, int_value, float_value, is_float) ",
    "SELECT value->>'item', value->>'name', value->>'int', value->>'float', value->>'is_float' ",
    "FROM json_each(?1) WHERE ",
    guard!(),
    " ON CONFLICT (item, name) DO UPDATE SET int_value = excluded.int_value, ",
    "float_value = excluded.float_value, is_float = excluded.is_float"
);

/// A merge's likers union (rows `{to, from}`): a liker of both counts once.
const MERGE_LIKERS: &str = concat!(
    "INSERT INTO likers (item, who) SELECT j.value->>'to', l.who ",
    "FROM json_each(?1) AS j JOIN likers AS l ON l.item = j.value->>'from' WHERE ",
    guard!(),
    " ON CONFLICT DO NOTHING"
);

/// A merge's views and imported likes (rows `{to, from}`).
const MERGE_ITEMS: &str = concat!(
    "UPDATE items SET views = items.views + f.views, likes_base = items.likes_base + f.likes_base ",
    "FROM json_each(?1) AS j JOIN items AS f ON f.item = j.value->>'from' ",
    "WHERE items.item = j.value->>'to' AND ",
    guard!()
);

/// A merge's day buckets, summed (rows `{to, from}`).
const MERGE_DAYS: &str = concat!(
    "INSERT INTO daily_views (item, day, views) SELECT j.value->>'to', d.day, d.views ",
    "FROM json_each(?1) AS j JOIN daily_views AS d ON d.item = j.value->>'from' WHERE ",
    guard!(),
    " ON CONFLICT (item, day) DO UPDATE SET views = views + excluded.views"
);

/// A merge's counters, summed (rows `{to, from}`).
const MERGE_COUNTERS: &str = concat!(
    "INSERT INTO counters (item, name, int_value, float_value, is_float) ",
    "SELECT j.value->>'to', c.name, c.int_value, c.float_value, c.is_float ",
    "FROM json_each(?1) AS j JOIN counters AS c ON c.item = j.value->>'from' WHERE ",
    guard!(),
    " ON CONFLICT (item, name) DO UPDATE SET int_value = int_value + excluded.int_value, ",
    "float_value = float_value + excluded.float_value, is_float = max(is_float, excluded.is_float)"
);

/// The old items of merges, removed from every table (rows `{to, from}`).
const MERGE_DELETES: [&str; 4] = [
    concat!(
        "DELETE FROM likers WHERE ",
        guard!(),
        " AND item IN (SELECT value->>'from' FROM json_each(?1))"
    ),
    concat!(
        "DELETE FROM daily_views WHERE ",
        guard!(),
        " AND item IN (SELECT value->>'from' FROM json_each(?1))"
    ),
    concat!(
        "DELETE FROM counters WHERE ",
        guard!(),
        " AND item IN (SELECT value->>'from' FROM json_each(?1))"
    ),
    concat!(
        "DELETE FROM items WHERE ",
        guard!(),
        " AND item IN (SELECT value->>'from' FROM json_each(?1))"
    ),
];

/// The batch's last statement: the new marks (`?1`, a JSON array of
/// [`SHARDS`] ids) and the next `seq`, only over the `seq` read (`?2`). It
/// changes one row, or none when another pass applied this batch first.
const STATE_ADVANCE: &str =
    "UPDATE outbox_state SET seq = seq + 1, marks = ?1 WHERE id = 1 AND seq = ?2";

/// An item's row (`?1`: the item id).
pub const READ_ITEM: &str = "SELECT item, likes, likes_base, views FROM items WHERE item = ?1";
/// An item's counters (`?1`: the item id).
pub const READ_COUNTERS: &str =
    "SELECT item, name, int_value, float_value, is_float FROM counters WHERE item = ?1";
/// Whether an identity likes an item (`?1`: the item id, `?2`: the identity).
pub const READ_LIKED: &str = "SELECT COUNT(*) AS liked FROM likers WHERE item = ?1 AND who = ?2";
/// An item's views per day from `?2` to `?3` (day starts, unix seconds).
pub const READ_DAYS: &str = "SELECT day, views FROM daily_views \
     WHERE item = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day";
/// The drift check's sample: the rows of the items `?1` (a JSON array of
/// ids) and of the `?2` items checked longest ago, each item once, in item order.
pub const READ_SAMPLE: &str = "SELECT item, likes, likes_base, views FROM items \
     WHERE item IN (SELECT value FROM json_each(?1)) UNION SELECT * FROM \
     (SELECT item, likes, likes_base, views FROM items ORDER BY checked_at, item LIMIT ?2) \
     ORDER BY item";
/// Every liker of the items `?1` (a JSON array of ids), for a repair.
pub const READ_LIKERS_OF: &str =
    "SELECT item, who FROM likers WHERE item IN (SELECT value FROM json_each(?1))";
/// Every counter of the items `?1` (a JSON array of ids), for a repair.
pub const READ_COUNTERS_OF: &str = "SELECT item, name, int_value, float_value, is_float \
     FROM counters WHERE item IN (SELECT value FROM json_each(?1))";
/// Marks the items `?1` (a JSON array of ids) as checked at `?2` (unix seconds).
pub const MARK_CHECKED: &str =
    "UPDATE items SET checked_at = ?2 WHERE item IN (SELECT value FROM json_each(?1))";

/// One statement of the batch: its SQL, bound to `?1` = `rows` (JSON text)
/// and `?2` = the `seq` the pass read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text.
    pub sql: &'static str,
    /// The rows, as one JSON document.
    pub rows: String,
}

/// What applying one batch takes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The statements, in order; the last one advances `outbox_state`.
    pub statements: Vec<Statement>,
    /// Every item whose record the batch changed (for the drift check), sorted.
    pub touched: Vec<String>,
    /// The events applied (unreadable entries are skipped, not applied).
    pub events: usize,
}

/// The statements that apply `batch` on top of `outbox_state.seq` (bound as
/// `?2` to each), ending with the one that stores `batch.marks`.
pub fn plan(batch: &Batch) -> Plan {
    let mut plan = Plan {
        events: batch.events.len(),
        ..Plan::default()
    };
    let mut touched = Vec::new();
    for segment in segments(&batch.events) {
        segment.push_statements(&mut plan.statements, &mut touched);
    }
    plan.statements.push(Statement {
        sql: STATE_ADVANCE,
        rows: marks_json(&batch.marks),
    });
    plan.touched = sorted_set(&touched);
    plan
}

/// Splits `batch` (read after the marks `after`) into batches of at most
/// `size` events, in order, each with the marks of what it and the ones before
/// it cover: applied one after another, they apply exactly `batch`, and a pass
/// that stops between two leaves marks that skip nothing. An unreadable entry
/// goes with the first piece whose last event comes after it.
pub fn split(batch: &Batch, after: &[StreamId; SHARDS], size: usize) -> Vec<Batch> {
    let size = size.max(1);
    if batch.events.len() <= size {
        return vec![batch.clone()];
    }
    let skipped = outbox::order(
        batch
            .unreadable
            .iter()
            .enumerate()
            .filter_map(|(n, u)| Some((u.id?, u.shard, n))),
    );
    let mut skipped = skipped.iter().map(|&n| &batch.unreadable[n]).peekable();
    let pieces = batch.events.len().div_ceil(size);
    let mut marks = *after;
    let mut out = Vec::with_capacity(pieces);
    for (n, chunk) in batch.events.chunks(size).enumerate() {
        let mut piece = Batch {
            events: chunk.to_vec(),
            marks,
            more: true,
            ..Batch::default()
        };
        if n + 1 == pieces {
            // The last piece takes every entry left, and the batch's own marks.
            piece.unreadable = skipped.by_ref().cloned().collect();
            piece
                .unreadable
                .extend(batch.unreadable.iter().filter(|u| u.id.is_none()).cloned());
            piece.marks = batch.marks;
            piece.more = batch.more;
        } else {
            let end = chunk.last().map(|e| (Some(e.id), e.shard));
            while let Some(bad) = skipped.next_if(|u| Some((u.id, u.shard)) < end) {
                piece.unreadable.push(bad.clone());
            }
            let covered = chunk.iter().map(|e| (e.shard, e.id)).chain(
                piece
                    .unreadable
                    .iter()
                    .filter_map(|u| Some((u.shard, u.id?))),
            );
            for (shard, id) in covered {
                piece.marks[shard] = piece.marks[shard].max(id);
            }
        }
        marks = piece.marks;
        out.push(piece);
    }
    out
}

/// The marks as `outbox_state.marks` stores them: a JSON array of [`SHARDS`] ids.
pub fn marks_json(marks: &[StreamId; SHARDS]) -> String {
    serde_json::to_string(&Value::from(
        marks.iter().map(ToString::to_string).collect::<Vec<_>>(),
    ))
    .unwrap_or_default()
}

/// Reads `outbox_state.marks`: `[]` (nothing applied yet) or [`SHARDS`] ids.
pub fn parse_marks(text: &str) -> Option<[StreamId; SHARDS]> {
    // Read as a `Value`, whose parser the wasm has anyway, not as a `Vec<String>`.
    let Value::Array(ids) = serde_json::from_slice(text.as_bytes()).ok()? else {
        return None;
    };
    let mut marks = [StreamId::ZERO; SHARDS];
    if ids.is_empty() {
        return Some(marks);
    }
    if ids.len() != SHARDS {
        return None;
    }
    for (mark, id) in marks.iter_mut().zip(&ids) {
        *mark = StreamId::parse(id.as_str()?)?;
    }
    Some(marks)
}

/// A run of the batch, applied as a unit.
enum Segment {
    /// Likes, views and adds, summed.
    Deltas(Deltas),
    /// Consecutive imports, folded per item (later values win).
    Imports(Imports),
    /// Merges whose items are all distinct (so each old item joins one new one).
    Merges(Vec<Merge>),
}

/// The key of every map of [`Deltas`] and [`Imports`]: (item, identity or
/// counter name or `""`, UTC day start or 0). One key and one value type for
/// all their maps: each map or sort instantiated for other types is more code
/// in the wasm.
type Key = (String, String, i64);

/// A map from [`Key`] to [`Sum`], kept as a list: an entry per event, in
/// order, then sorted by key and folded into one entry per key
/// ([`Sums::fold`]) once the segment is read. Not a `BTreeMap`: its code for
/// this key and value type (insert, split, search, iterators) is more wasm
/// than the one shared sort ([`outbox::sorted`]).
#[derive(Default)]
struct Sums {
    entries: Vec<(Key, Sum)>,
}

impl Sums {
    /// Adds the entry of one event.
    fn push(&mut self, key: Key, sum: Sum) {
        self.entries.push((key, sum));
    }

    /// Sorts the entries by key, each key's in the order they came, and
    /// folds each key's entries, first to last, with `merge`.
    fn fold(&mut self, merge: fn(&mut Sum, &Sum)) {
        let entries = std::mem::take(&mut self.entries);
        for n in outbox::sorted(entries.len(), &|a, b| entries[a].0.cmp(&entries[b].0)) {
            let (key, sum) = &entries[n];
            match self.entries.last_mut() {
                Some((kept, folded)) if kept == key => merge(folded, sum),
                _ => self.entries.push((key.clone(), *sum)),
            }
        }
    }
}

/// `texts` sorted, each once (a set of item ids without a `BTreeSet`, whose
/// code is more wasm than the one shared sort, [`outbox::sorted`]).
pub fn sorted_set(texts: &[String]) -> Vec<String> {
    let mut set: Vec<String> = Vec::new();
    for n in outbox::sorted(texts.len(), &|a, b| texts[a].cmp(&texts[b])) {
        if set.last() != Some(&texts[n]) {
            set.push(texts[n].clone());
        }
    }
    set
}

/// A sum of [`Deltas`] or a value of [`Imports`]; each map uses the fields it names.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    views: u64,
    set_views: Option<u64>,
    likes_base: Option<u64>,
    t: i64,
    likes: bool,
    int: i64,
    float: f64,
    is_float: bool,
}

/// Folds a later delta of a key into its sum: counts add up (integers
/// saturating), the time is the latest, the like state the later one.
fn add(sum: &mut Sum, later: &Sum) {
    sum.views += later.views;
    sum.t = sum.t.max(later.t);
    sum.likes = later.likes;
    sum.int = sum.int.saturating_add(later.int);
    sum.float += later.float;
    sum.is_float |= later.is_float;
}

/// Folds a later import of a key into its value: what the later one sets
/// wins, the time is the latest.
fn replace(value: &mut Sum, later: &Sum) {
    value.set_views = later.set_views.or(value.set_views);
    value.likes_base = later.likes_base.or(value.likes_base);
    value.t = value.t.max(later.t);
    value.int = later.int;
    value.float = later.float;
    value.is_float = later.is_float;
}

#[derive(Default)]
struct Deltas {
    /// Per (item, "", 0): views added and the latest event time `t`.
    items: Sums,
    /// Per (item, identity, 0): whether it `likes` the item after the segment.
    likers: Sums,
    /// Per (item, "", UTC day start): views.
    days: Sums,
    /// Per (item, counter, 0): integer sum, float sum, whether any add `is_float`.
    counters: Sums,
}

#[derive(Default)]
struct Imports {
    /// Per (item, "", 0): the views and likes_base to set (`set_views`,
    /// `likes_base`; `None` keeps the record's) and the latest time `t`.
    items: Sums,
    /// Per (item, counter, 0): the value to set, `int` or (`is_float`) `float`.
    counters: Sums,
}

struct Merge {
    to: String,
    from: String,
    t: i64,
}

/// Cuts the events into segments, in order.
fn segments(events: &[Event]) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    for event in events {
        let item = event.item.clone();
        match &event.op {
            Op::MergedIn { .. } => {}
            Op::Import {
                views,
                likes_base,
                counters,
            } => {
                if !matches!(segments.last(), Some(Segment::Imports(_))) {
                    segments.push(Segment::Imports(Imports::default()));
                }
                if let Some(Segment::Imports(imports)) = segments.last_mut() {
                    for (name, value) in counters {
                        let value = match *value {
                            CounterValue::Int(int) => Sum {
                                int,
                                ..Sum::default()
                            },
                            CounterValue::Float(float) => Sum {
                                float,
                                is_float: true,
                                ..Sum::default()
                            },
                        };
                        imports
                            .counters
                            .push((item.clone(), name.clone(), 0), value);
                    }
                    let import = Sum {
                        set_views: *views,
                        likes_base: *likes_base,
                        // The latest time, from 0.
                        t: event.t.max(0),
                        ..Sum::default()
                    };
                    imports.items.push((item, String::new(), 0), import);
                }
            }
            Op::Merge { from } => {
                if *from == item {
                    continue;
                }
                let fits = |merges: &Vec<Merge>| {
                    merges
                        .iter()
                        .all(|m| ![&m.to, &m.from].iter().any(|x| **x == item || *x == from))
                };
                match segments.last_mut() {
                    Some(Segment::Merges(merges)) if fits(merges) => {}
                    _ => segments.push(Segment::Merges(Vec::new())),
                }
                if let Some(Segment::Merges(merges)) = segments.last_mut() {
                    merges.push(Merge {
                        to: item,
                        from: from.clone(),
                        t: event.t,
                    });
                }
            }
            op => {
                if !matches!(segments.last(), Some(Segment::Deltas(_))) {
                    segments.push(Segment::Deltas(Deltas::default()));
                }
                if let Some(Segment::Deltas(deltas)) = segments.last_mut() {
                    deltas.add(event, op);
                }
            }
        }
    }
    for segment in &mut segments {
        match segment {
            Segment::Deltas(deltas) => {
                for sums in [
                    &mut deltas.items,
                    &mut deltas.likers,
                    &mut deltas.days,
                    &mut deltas.counters,
                ] {
                    sums.fold(add);
                }
            }
            Segment::Imports(imports) => {
                imports.items.fold(replace);
                imports.counters.fold(replace);
            }
            Segment::Merges(_) => {}
        }
    }
    segments
}

impl Deltas {
    fn add(&mut self, event: &Event, op: &Op) {
        let view = matches!(op, Op::View);
        let item = Sum {
            views: u64::from(view),
            t: event.t,
            ..Sum::default()
        };
        self.items
            .push((event.item.clone(), String::new(), 0), item);
        match op {
            Op::Like { who } | Op::Unlike { who } => {
                let likes = matches!(op, Op::Like { .. });
                let key = (event.item.clone(), who.clone(), 0);
                self.likers.push(
                    key,
                    Sum {
                        likes,
                        ..Sum::default()
                    },
                );
            }
            Op::View => {
                let day = Bucket::Day.start(event.t);
                let key = (event.item.clone(), String::new(), day);
                let one = Sum {
                    views: 1,
                    ..Sum::default()
                };
                self.days.push(key, one);
            }
            Op::Add { name, by } => {
                let key = (event.item.clone(), name.clone(), 0);
                let sum = match by {
                    Amount::Int(n) => Sum {
                        int: *n,
                        ..Sum::default()
                    },
                    // Summed from 0.0, as `add` folds: a lone `-0.0` sums to `0.0`.
                    Amount::Float(f) => Sum {
                        float: 0.0 + f,
                        is_float: true,
                        ..Sum::default()
                    },
                };
                self.counters.push(key, sum);
            }
            Op::Import { .. } | Op::Merge { .. } | Op::MergedIn { .. } => {}
        }
    }
}

impl Segment {
    /// Pushes the segment's statements to `out` and its items to `touched`.
    fn push_statements(&self, out: &mut Vec<Statement>, touched: &mut Vec<String>) {
        // Rows are pushed by loops and built by one function, not by a
        // `map(..).collect()` per statement: each closure is another copy of
        // the iterator code in the wasm.
        // Not `Value`'s `to_string`: its `Display` carries serde_json's pretty
        // printer too (1.4 KB of the gzipped wasm). It cannot fail.
        fn json(rows: &[Value]) -> String {
            serde_json::to_string(rows).unwrap_or_default()
        }
        fn push(out: &mut Vec<Statement>, sql: &'static str, rows: Vec<Value>) {
            if !rows.is_empty() {
                out.push(Statement {
                    sql,
                    rows: json(&rows),
                });
            }
        }
        let text = |s: &String| Value::from(s.as_str());
        match self {
            Segment::Deltas(d) => {
                let mut items = Vec::new();
                for ((item, _, _), s) in &d.items.entries {
                    touched.push(item.clone());
                    let (views, t) = (s.views.into(), s.t.into());
                    items.push(object(&mut [
                        ("item", text(item)),
                        ("views", views),
                        ("t", t),
                    ]));
                }
                push(out, ITEMS_ADD, items);
                let (mut added, mut removed, mut liked) = (Vec::new(), Vec::new(), Vec::new());
                for ((item, who, _), s) in &d.likers.entries {
                    let row = object(&mut [("item", text(item)), ("who", text(who))]);
                    if s.likes {
                        added.push(row);
                    } else {
                        removed.push(row);
                    }
                    // The likers are sorted by item: each item once, in order.
                    if liked.last().and_then(Value::as_str) != Some(item.as_str()) {
                        liked.push(text(item));
                    }
                }
                push(out, LIKERS_ADD, added);
                push(out, LIKERS_REMOVE, removed);
                push(out, LIKES_RECOUNT, liked);
                let mut days = Vec::new();
                for ((item, _, day), s) in &d.days.entries {
                    let (day, views) = ((*day).into(), s.views.into());
                    days.push(object(&mut [
                        ("item", text(item)),
                        ("day", day),
                        ("views", views),
                    ]));
                }
                push(out, DAYS_ADD, days);
                let mut counters = Vec::new();
                for ((item, name, _), s) in &d.counters.entries {
                    counters.push(counter_row(item, name, s));
                }
                push(out, COUNTERS_ADD, counters);
            }
            Segment::Imports(imports) => {
                let (mut items, mut sets, mut recount) = (Vec::new(), Vec::new(), Vec::new());
                for ((item, _, _), i) in &imports.items.entries {
                    touched.push(item.clone());
                    let mut row = [("item", text(item)), ("views", 0.into()), ("t", i.t.into())];
                    items.push(object(&mut row));
                    let (views, base) = (i.set_views.into(), i.likes_base.into());
                    sets.push(object(&mut [
                        ("item", text(item)),
                        ("views", views),
                        ("likes_base", base),
                    ]));
                    recount.push(text(item));
                }
                let mut counters = Vec::new();
                for ((item, name, _), s) in &imports.counters.entries {
                    counters.push(counter_row(item, name, s));
                }
                push(out, ITEMS_ADD, items);
                push(out, IMPORT_SET, sets);
                push(out, COUNTERS_SET, counters);
                push(out, LIKES_RECOUNT, recount);
            }
            Segment::Merges(merges) => {
                let (mut items, mut pairs, mut recount) = (Vec::new(), Vec::new(), Vec::new());
                for m in merges {
                    touched.push(m.to.clone());
                    touched.push(m.from.clone());
                    let mut row = [
                        ("item", text(&m.to)),
                        ("views", 0.into()),
                        ("t", m.t.into()),
                    ];
                    items.push(object(&mut row));
                    pairs.push(object(&mut [("to", text(&m.to)), ("from", text(&m.from))]));
                    recount.push(text(&m.to));
                }
                push(out, ITEMS_ADD, items);
                // One text for every merge statement, not a copy of the rows each.
                if !pairs.is_empty() {
                    let pairs = json(&pairs);
                    for sql in [MERGE_LIKERS, MERGE_ITEMS, MERGE_DAYS, MERGE_COUNTERS] {
                        out.push(Statement {
                            sql,
                            rows: pairs.clone(),
                        });
                    }
                    for delete in MERGE_DELETES {
                        out.push(Statement {
                            sql: delete,
                            rows: pairs.clone(),
                        });
                    }
                }
                push(out, LIKES_RECOUNT, recount);
            }
        }
    }
}

/// A JSON object of `fields` (their values are taken, not copied).
fn object(fields: &mut [(&str, Value)]) -> Value {
    let mut object = serde_json::Map::new();
    for (name, value) in fields {
        object.insert((*name).to_owned(), value.take());
    }
    Value::Object(object)
}

/// A counters row `{item, name, int, float, is_float}` of a sum or an imported value.
fn counter_row(item: &str, name: &str, s: &Sum) -> Value {
    object(&mut [
        ("item", item.into()),
        ("name", name.into()),
        ("int", s.int.into()),
        ("float", s.float.into()),
        ("is_float", i64::from(s.is_float).into()),
    ])
}

/// An `items` row as the record's reads select it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ItemRow {
    /// The item id.
    pub item: String,
    /// `likes_base` plus the item's likers.
    pub likes: i64,
    /// Likes imported without identities.
    pub likes_base: i64,
    /// Counted views.
    pub views: i64,
}

/// A `counters` row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CounterRow {
    /// The item id.
    pub item: String,
    /// The counter's name.
    pub name: String,
    /// The sum of integer adds (and imported integer values).
    pub int_value: i64,
    /// The sum of float adds.
    pub float_value: f64,
    /// 1 once a float was added: the counter reads `int_value + float_value`.
    pub is_float: i64,
}

impl CounterRow {
    /// The counter's value as a live read shows it: floats to [`FLOAT_DIGITS`]
    /// digits, and a float sum that is a whole number as an integer, as Redis
    /// prints one (`HINCRBYFLOAT` of 6.5 and 0.5 reads `7`).
    pub fn value(&self) -> CounterValue {
        if self.is_float == 0 {
            return CounterValue::Int(self.int_value);
        }
        let sum = self.int_value as f64 + self.float_value;
        let rounded = decimal::parse(&format!("{:.*e}", FLOAT_DIGITS - 1, sum)).unwrap_or(sum);
        if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
            return CounterValue::Int(rounded as i64);
        }
        CounterValue::Float(rounded)
    }
}

/// The item as the record holds it, in the live read's shape: unique viewers
/// are 0 (HyperLogLogs are not in the record); an item the record does not
/// hold reads as zeros, as a live read of an unknown item does. `liked` is
/// answered when an identity was asked about.
pub fn snapshot(
    item: &str,
    row: Option<&ItemRow>,
    counters: &[CounterRow],
    liked: Option<bool>,
) -> ItemSnapshot {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    ItemSnapshot {
        item: item.to_owned(),
        likes: row.map_or(0, |r| count(r.likes)),
        views: row.map_or(0, |r| count(r.views)),
        unique_viewers: UniqueViewers::default(),
        counters: counters_of(item, counters),
        liked,
    }
}

/// The counters of `item` among `rows`, by name. Built by inserting, not by
/// `collect()`: collecting into a `BTreeMap` sorts, and each sort is more code in the wasm.
pub fn counters_of(item: &str, rows: &[CounterRow]) -> BTreeMap<String, CounterValue> {
    let mut counters = BTreeMap::new();
    for row in rows.iter().filter(|c| c.item == item) {
        counters.insert(row.name.clone(), row.value());
    }
    counters
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(id: u64, item: &str, t: i64, op: Op) -> Event {
        Event {
            shard: 0,
            id: StreamId { ms: id, seq: 0 },
            item: item.to_owned(),
            t,
            idem: None,
            op,
        }
    }

    fn like(id: u64, item: &str, who: &str) -> Event {
        event(id, item, 100, Op::Like { who: who.into() })
    }

    fn unlike(id: u64, item: &str, who: &str) -> Event {
        event(id, item, 100, Op::Unlike { who: who.into() })
    }

    fn batch(events: Vec<Event>) -> Batch {
        let mut marks = [StreamId::ZERO; SHARDS];
        marks[0] = events.last().map_or(StreamId::ZERO, |e| e.id);
        Batch {
            events,
            marks,
            ..Batch::default()
        }
    }

    fn rows(plan: &Plan, sql: &str) -> Vec<Value> {
        plan.statements
            .iter()
            .filter(|s| s.sql == sql)
            .map(|s| serde_json::from_str(&s.rows).unwrap())
            .collect()
    }

    #[test]
    fn a_like_then_an_unlike_of_one_identity_nets_out_in_one_segment() {
        let plan = plan(&batch(vec![
            like(1, "a", "u1"),
            unlike(2, "a", "u1"),
            like(3, "a", "u2"),
        ]));
        assert_eq!(
            rows(&plan, LIKERS_ADD),
            [json!([{"item": "a", "who": "u2"}])]
        );
        assert_eq!(
            rows(&plan, LIKERS_REMOVE),
            [json!([{"item": "a", "who": "u1"}])]
        );
        assert_eq!(rows(&plan, LIKES_RECOUNT), [json!(["a"])]);
        assert_eq!(plan.touched, ["a"]);
        assert_eq!(plan.events, 3);
    }

    #[test]
    fn views_sum_per_item_and_per_utc_day() {
        let day = 86_400;
        let plan = plan(&batch(vec![
            event(1, "a", day + 5, Op::View),
            event(2, "a", day + 6, Op::View),
            event(3, "a", 2 * day + 1, Op::View),
        ]));
        assert_eq!(
            rows(&plan, ITEMS_ADD),
            [json!([{"item": "a", "views": 3, "t": 2 * day + 1}])]
        );
        assert_eq!(
            rows(&plan, DAYS_ADD),
            [json!([
                {"item": "a", "day": day, "views": 2},
                {"item": "a", "day": 2 * day, "views": 1}
            ])]
        );
        assert!(rows(&plan, LIKERS_ADD).is_empty(), "no empty statements");
    }

    #[test]
    fn counter_adds_sum_integers_and_floats_apart() {
        let add = |id, by| {
            event(
                id,
                "a",
                1,
                Op::Add {
                    name: "n".into(),
                    by,
                },
            )
        };
        let plan = plan(&batch(vec![
            add(1, Amount::Int(2)),
            add(2, Amount::Int(3)),
            add(3, Amount::Float(0.5)),
        ]));
        assert_eq!(
            rows(&plan, COUNTERS_ADD),
            [json!([{"item": "a", "name": "n", "int": 5, "float": 0.5, "is_float": 1}])]
        );
    }

    #[test]
    fn rows_are_in_key_order_and_each_keys_events_fold_in_stream_order() {
        let add = |id, item: &str, by| {
            event(
                id,
                item,
                1,
                Op::Add {
                    name: "n".into(),
                    by,
                },
            )
        };
        let plan = plan(&batch(vec![
            like(1, "b", "u1"),
            like(2, "a", "u2"),
            unlike(3, "b", "u1"),
            like(4, "b", "u1"),
            add(5, "b", Amount::Int(i64::MAX)),
            add(6, "b", Amount::Int(1)),
            add(7, "b", Amount::Int(-1)),
            add(8, "a", Amount::Float(-0.0)),
        ]));
        assert_eq!(
            rows(&plan, LIKERS_ADD),
            [json!([{"item": "a", "who": "u2"}, {"item": "b", "who": "u1"}])]
        );
        assert!(
            rows(&plan, LIKERS_REMOVE).is_empty(),
            "u1 likes b at the end"
        );
        // Saturating in stream order: MAX + 1 stays MAX, then - 1.
        assert_eq!(
            rows(&plan, COUNTERS_ADD),
            [json!([
                {"item": "a", "name": "n", "int": 0, "float": 0.0, "is_float": 1},
                {"item": "b", "name": "n", "int": i64::MAX - 1, "float": 0.0, "is_float": 0}
            ])]
        );
        let counters = plan.statements.iter().find(|s| s.sql == COUNTERS_ADD);
        assert!(
            counters.is_some_and(|s| !s.rows.contains("-0.0")),
            "a sum from 0.0 of a lone -0.0 is 0.0"
        );
        assert_eq!(plan.touched, ["a", "b"]);
    }

    #[test]
    fn an_import_is_a_barrier_and_consecutive_imports_fold() {
        let import = |id, views: Option<u64>, likes_base: Option<u64>| {
            event(
                id,
                "a",
                7,
                Op::Import {
                    views,
                    likes_base,
                    counters: BTreeMap::from([("c".to_owned(), CounterValue::Int(id as i64))]),
                },
            )
        };
        let plan = plan(&batch(vec![
            event(1, "a", 1, Op::View),
            import(2, Some(10), None),
            import(3, None, Some(4)),
            event(4, "a", 9, Op::View),
        ]));
        let sqls: Vec<&str> = plan.statements.iter().map(|s| s.sql).collect();
        assert_eq!(
            sqls,
            [
                ITEMS_ADD,
                DAYS_ADD,
                ITEMS_ADD,
                IMPORT_SET,
                COUNTERS_SET,
                LIKES_RECOUNT,
                ITEMS_ADD,
                DAYS_ADD,
                STATE_ADVANCE
            ]
        );
        assert_eq!(
            rows(&plan, IMPORT_SET),
            [json!([{"item": "a", "views": 10, "likes_base": 4}])]
        );
        assert_eq!(
            rows(&plan, COUNTERS_SET),
            [json!([{"item": "a", "name": "c", "int": 3, "float": 0.0, "is_float": 0}])]
        );
    }

    #[test]
    fn merges_sharing_an_item_go_to_separate_segments() {
        let merge = |id, to: &str, from: &str| event(id, to, 1, Op::Merge { from: from.into() });
        let plan = plan(&batch(vec![
            merge(1, "b", "a"),
            merge(2, "d", "c"),
            merge(3, "e", "b"),
            merge(4, "f", "f"),
        ]));
        assert_eq!(
            rows(&plan, MERGE_LIKERS),
            [
                json!([{"to": "b", "from": "a"}, {"to": "d", "from": "c"}]),
                json!([{"to": "e", "from": "b"}])
            ]
        );
        assert_eq!(plan.touched, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn a_split_batch_applies_in_pieces_whose_marks_never_skip_an_event() {
        let mut events = Vec::new();
        for n in 1..=5u64 {
            let mut e = like(n, "a", &format!("u{n}"));
            e.shard = (n % 2) as usize;
            events.push(e);
        }
        let mut whole = batch(events);
        whole.marks[0] = StreamId { ms: 4, seq: 0 };
        whole.marks[1] = StreamId { ms: 5, seq: 0 };
        // Skipped between events 2 and 3: it goes with the piece holding 3.
        whole.unreadable.push(crate::outbox::Unreadable {
            shard: 0,
            id: Some(StreamId { ms: 2, seq: 1 }),
            reason: "unknown `op`".into(),
        });
        let after = [StreamId::ZERO; SHARDS];
        let pieces = split(&whole, &after, 2);
        assert_eq!(pieces.len(), 3);
        let ids = |b: &Batch| b.events.iter().map(|e| e.id.ms).collect::<Vec<_>>();
        assert_eq!(
            pieces.iter().map(ids).collect::<Vec<_>>(),
            [vec![1, 2], vec![3, 4], vec![5]]
        );
        assert_eq!(
            (pieces[0].marks[0].ms, pieces[0].marks[1].ms),
            (2, 1),
            "shard 0 up to 2, shard 1 up to 1"
        );
        assert_eq!((pieces[1].marks[0].ms, pieces[1].marks[1].ms), (4, 3));
        assert_eq!(
            pieces
                .iter()
                .map(|p| p.unreadable.len())
                .collect::<Vec<_>>(),
            [0, 1, 0]
        );
        assert_eq!(pieces[2].marks, whole.marks);
        assert!(pieces[0].more && pieces[1].more && !pieces[2].more);
        assert_eq!(split(&whole, &after, 5), vec![whole]);
    }

    #[test]
    fn the_last_statement_stores_the_marks() {
        let plan = plan(&batch(vec![like(42, "a", "u")]));
        let last = plan.statements.last().unwrap();
        assert_eq!(last.sql, STATE_ADVANCE);
        let marks = parse_marks(&last.rows).unwrap();
        assert_eq!(marks[0], StreamId { ms: 42, seq: 0 });
        assert_eq!(parse_marks("[]"), Some([StreamId::ZERO; SHARDS]));
        assert_eq!(parse_marks("[\"1-0\"]"), None);
        assert_eq!(parse_marks("nope"), None);
        assert_eq!(parse_marks("{}"), None);
        let numbers = serde_json::to_string(&[1; SHARDS]).unwrap();
        assert_eq!(parse_marks(&numbers), None);
        let text = marks_json(&marks);
        assert_eq!(parse_marks(&text.replacen("\"42-0\"", "null", 1)), None);
    }

    #[test]
    fn every_batch_statement_is_guarded_by_the_seq_it_was_read_against() {
        let all = [
            ITEMS_ADD,
            LIKERS_ADD,
            LIKERS_REMOVE,
            LIKES_RECOUNT,
            DAYS_ADD,
            COUNTERS_ADD,
            IMPORT_SET,
            COUNTERS_SET,
            MERGE_LIKERS,
            MERGE_ITEMS,
            MERGE_DAYS,
            MERGE_COUNTERS,
        ];
        for sql in all.iter().chain(&MERGE_DELETES) {
            assert!(sql.contains(guard!()), "{sql}");
            assert!(sql.contains("json_each(?1)"), "{sql}");
        }
        assert!(STATE_ADVANCE.contains("seq = ?2"));
    }

    #[test]
    fn record_rows_read_as_a_snapshot() {
        let row = ItemRow {
            item: "a".into(),
            likes: 3,
            likes_base: 1,
            views: 9,
        };
        let counters = [
            CounterRow {
                item: "a".into(),
                name: "int".into(),
                int_value: 5,
                float_value: 0.0,
                is_float: 0,
            },
            CounterRow {
                item: "a".into(),
                name: "f".into(),
                int_value: 1,
                float_value: 0.1 + 0.2,
                is_float: 1,
            },
        ];
        let snap = snapshot("a", Some(&row), &counters, Some(true));
        assert_eq!((snap.likes, snap.views, snap.liked), (3, 9, Some(true)));
        assert_eq!(snap.counters["int"], CounterValue::Int(5));
        assert_eq!(snap.counters["f"], CounterValue::Float(1.3));
        let whole = CounterRow {
            float_value: 0.5 + 0.5,
            ..counters[1].clone()
        };
        assert_eq!(
            whole.value(),
            CounterValue::Int(2),
            "Redis prints 2, not 2.0"
        );
        let unknown = snapshot("z", None, &[], None);
        assert_eq!((unknown.likes, unknown.views), (0, 0));
        assert!(unknown.counters.is_empty());
    }
}
