//! The engine's side of the reconciliation pass: read, trim and measure the
//! outbox, hold the pass's lease, audit live items against the system of
//! record and repair them from it. Pure: Redis REST only, no `worker`; the
//! edge (src/edge/record.rs) runs the pass and talks to D1.
//!
//! The truth is "the record plus the unapplied events": the record holds every
//! applied event exactly once and the outbox every unapplied one, so an item's
//! live counts should be the record's plus its pending events. [`Engine::audit`]
//! measures that; [`Engine::repair`] restores it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::engine::{CounterValue, Engine, EngineError, integers, non_negative, unexpected};
use crate::item::ItemId;
use crate::outbox::{self, Batch, SHARDS, StreamId};
use crate::scripts;

/// The most entries of a shard's tail (after the mark) that [`Engine::audit`]
/// and [`Engine::repair`] read for one item; a longer tail blocks the item
/// until the pass has applied more of it.
pub const TAIL_SCAN: usize = 1_000;

/// An item as the system of record (D1) holds it, for [`Engine::repair`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordItem {
    /// Likes without identities (imported), `items.likes_base`.
    pub likes_base: u64,
    /// Counted views, `items.views`.
    pub views: u64,
    /// Every identity that likes the item, `likers.who`.
    pub likers: Vec<String>,
    /// Custom counters by name (`counters`: `int_value`, or the float sum when `is_float`).
    pub counters: BTreeMap<String, CounterValue>,
}

/// One item as Redis holds it now, with its unapplied outbox events, from
/// [`Engine::audit`]. A count that is missing reads 0; one that is not a
/// number reads -1, which no record matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveItem {
    /// Whether Redis has anything of the item (its stats, likers or counters).
    pub exists: bool,
    /// The `likes` count.
    pub likes: i64,
    /// The `views` count.
    pub views: i64,
    /// The `likes_base` field (imported likes without identities).
    pub likes_base: i64,
    /// Identities in the likers Set plus bits in the Bitmap.
    pub members: u64,
    /// Likes minus unlikes of the item in its shard after the mark.
    pub pending_likes: i64,
    /// Counted views of the item in its shard after the mark.
    pub pending_views: u64,
    /// The shard's tail holds an import, merge or merged_in of the item, or
    /// is longer than [`TAIL_SCAN`]: the pending counts are not the whole
    /// story, so the item must be neither judged nor repaired now.
    pub blocked: bool,
}

impl LiveItem {
    /// What differs between Redis and the record (whose `likes` and `views`
    /// are given) plus the pending events, as one line for the log; `None`
    /// when they agree or the item is blocked. A `Some` means: repair it.
    pub fn drift(&self, record_likes: u64, record_views: u64) -> Option<String> {
        if self.blocked {
            return None;
        }
        if !self.exists {
            return Some(format!(
                "lost: record has likes {record_likes}, views {record_views}"
            ));
        }
        let want_likes = i128::from(record_likes) + i128::from(self.pending_likes);
        let want_views = i128::from(record_views) + i128::from(self.pending_views);
        let members = i128::from(self.likes_base) + i128::from(self.members);
        let mut differs = Vec::new();
        if i128::from(self.likes) != want_likes {
            differs.push(format!(
                "likes {} != record+pending {}",
                self.likes,
                show(want_likes)
            ));
        }
        if i128::from(self.views) != want_views {
            differs.push(format!(
                "views {} != record+pending {}",
                self.views,
                show(want_views)
            ));
        }
        if i128::from(self.likes) != members {
            differs.push(format!(
                "likes {} != likes_base+likers {}",
                self.likes,
                show(members)
            ));
        }
        (!differs.is_empty()).then(|| differs.join(", "))
    }
}

/// A sum of a `u64` and an `i64` as text, without `i128`'s formatting code
/// in the wasm (1.4 KB for this one log line).
fn show(n: i128) -> String {
    match (u64::try_from(n), i64::try_from(n)) {
        (Ok(n), _) => n.to_string(),
        (_, Ok(n)) => n.to_string(),
        _ => format!("more than {}", u64::MAX),
    }
}

/// An item's counts in Redis, as [`Engine::repair`] found and left them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveCounts {
    /// The `likes` count (-1: not a number).
    pub likes: i64,
    /// The `views` count (-1: not a number).
    pub views: i64,
    /// Identities in the likers Set plus bits in the Bitmap.
    pub members: u64,
}

/// The answer to [`Engine::repair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairOutcome {
    /// The item now holds the record plus its pending events.
    Repaired {
        /// Its counts before.
        before: LiveCounts,
        /// Its counts after.
        after: LiveCounts,
    },
    /// Nothing written: the item's tail holds an import, merge or merged_in
    /// of it, or is longer than [`TAIL_SCAN`]. A later pass retries.
    Blocked,
}

impl Engine {
    /// Reads at most `max` (at least 1) outbox events after the marks
    /// `after`, in stream-id order across the shards: one pipeline of one
    /// `XRANGE <shard> (<mark> + COUNT max` per shard, then [`outbox::merge`].
    pub async fn outbox_read(
        &self,
        after: &[StreamId; SHARDS],
        max: usize,
    ) -> Result<Batch, EngineError> {
        let max = max.max(1);
        let count = max.to_string();
        let commands: Vec<Vec<String>> = after
            .iter()
            .enumerate()
            .map(|(shard, mark)| {
                vec![
                    "XRANGE".to_owned(),
                    self.keys().outbox(shard),
                    format!("({mark}"),
                    "+".to_owned(),
                    "COUNT".to_owned(),
                    count.clone(),
                ]
            })
            .collect();
        let entries = self
            .answers("outbox read", &commands)
            .await?
            .into_iter()
            .map(|answer| match answer {
                Value::Array(entries) => Ok(entries),
                other => Err(unexpected("outbox read", &other)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(outbox::merge(after, &entries, max, max))
    }

    /// Trims what the system of record has applied: `XTRIM <shard> MINID
    /// <mark.next()>` for every shard whose mark is past `0-0` (exact, never
    /// `~`: ids after the mark are never removed), as one pipeline. Call it
    /// only after the record committed `marks`. Returns the entries removed.
    pub async fn outbox_trim(&self, marks: &[StreamId; SHARDS]) -> Result<u64, EngineError> {
        let commands: Vec<Vec<String>> = marks
            .iter()
            .enumerate()
            .filter(|(_, mark)| **mark != StreamId::ZERO)
            .map(|(shard, mark)| {
                vec![
                    "XTRIM".to_owned(),
                    self.keys().outbox(shard),
                    "MINID".to_owned(),
                    mark.next().to_string(),
                ]
            })
            .collect();
        self.sum("outbox trim", &commands).await
    }

    /// The outbox's lag: the sum of its shards' `XLEN`, one pipeline. After a
    /// trim this is exactly the number of unapplied events.
    pub async fn outbox_lag(&self) -> Result<u64, EngineError> {
        let commands: Vec<Vec<String>> = (0..SHARDS)
            .map(|shard| vec!["XLEN".to_owned(), self.keys().outbox(shard)])
            .collect();
        self.sum("outbox lag", &commands).await
    }

    /// Takes the reconciliation lease for `holder` (a random id per pass) for
    /// `ttl_ms` milliseconds (at least 1): `SET <lease> <holder> NX PX`. False
    /// when another pass holds it.
    pub async fn lease(&self, holder: &str, ttl_ms: u64) -> Result<bool, EngineError> {
        let key = self.keys().reconcile_lease();
        let ttl = ttl_ms.max(1).to_string();
        let answer = self
            .rest()
            .command(&["SET", key.as_str(), holder, "NX", "PX", ttl.as_str()])
            .await?;
        match answer {
            Value::String(ok) if ok == "OK" => Ok(true),
            Value::Null => Ok(false),
            other => Err(unexpected("lease", &other)),
        }
    }

    /// Gives the lease up if `holder` still holds it (a compare-and-delete
    /// script); true when it did. A lease that expired and was taken by
    /// another pass is left alone.
    pub async fn release(&self, holder: &str) -> Result<bool, EngineError> {
        let keys = [self.keys().reconcile_lease()];
        let answer = self
            .rest()
            .eval(&scripts::RELEASE, &keys, &[holder.to_owned()])
            .await?;
        match answer.as_i64() {
            Some(released) => Ok(released == 1),
            None => Err(unexpected("release", &answer)),
        }
    }

    /// Each item's live counts and pending events (after its shard's mark in
    /// `marks`), in the order asked: one pipeline of the read-only `audit.lua`.
    pub async fn audit(
        &self,
        items: &[ItemId],
        marks: &[StreamId; SHARDS],
    ) -> Result<Vec<LiveItem>, EngineError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let calls: Vec<(Vec<String>, Vec<String>)> = items
            .iter()
            .map(|item| {
                let shard = outbox::shard(item);
                (
                    self.item_keys(item, shard),
                    vec![
                        item.as_str().to_owned(),
                        marks[shard].to_string(),
                        TAIL_SCAN.to_string(),
                    ],
                )
            })
            .collect();
        let answers = self
            .rest()
            .eval_read_only_batch(&scripts::AUDIT, &calls)
            .await?;
        answers
            .into_iter()
            .map(|answer| {
                let answer = answer?;
                let n = integers("audit", &answer, 8)?;
                Ok(LiveItem {
                    exists: n[0] == 1,
                    likes: n[1],
                    views: n[2],
                    likes_base: n[3],
                    members: non_negative(n[4]),
                    pending_likes: n[5],
                    pending_views: non_negative(n[6]),
                    blocked: n[7] == 1,
                })
            })
            .collect()
    }

    /// Sets `item` in Redis to `record` plus its events after `mark` (its
    /// shard's applied mark), as one `repair.lua`: likers := the record's ±
    /// the pending likes, all in the Set (the Bitmap is deleted; `like.lua`
    /// reads both stores); likes := likes_base + that count; views := the
    /// record's + pending views; counters := the record's + pending adds;
    /// `registered` is kept. Not retried: run it again to retry (it is a set,
    /// idempotent while the record and the tail stay the same).
    pub async fn repair(
        &self,
        item: &ItemId,
        record: &RecordItem,
        mark: StreamId,
    ) -> Result<RepairOutcome, EngineError> {
        let shard = outbox::shard(item);
        let keys = self.item_keys(item, shard);
        let mut args = vec![
            item.as_str().to_owned(),
            mark.to_string(),
            TAIL_SCAN.to_string(),
            record.likes_base.to_string(),
            record.views.to_string(),
            record.counters.len().to_string(),
        ];
        for (name, value) in &record.counters {
            args.push(name.clone());
            args.push(match value {
                CounterValue::Int(n) => n.to_string(),
                CounterValue::Float(f) => f.to_string(),
            });
        }
        args.extend(record.likers.iter().cloned());
        let answer = self.rest().eval(&scripts::REPAIR, &keys, &args).await?;
        let n = integers("repair", &answer, 7)?;
        if n[0] != 1 {
            return Ok(RepairOutcome::Blocked);
        }
        let counts = |at: usize| LiveCounts {
            likes: n[at],
            views: n[at + 1],
            members: non_negative(n[at + 2]),
        };
        Ok(RepairOutcome::Repaired {
            before: counts(1),
            after: counts(4),
        })
    }

    /// The keys `audit.lua` and `repair.lua` take, in their order.
    fn item_keys(&self, item: &ItemId, shard: usize) -> Vec<String> {
        let keys = self.keys();
        vec![
            keys.stats(item),
            keys.likers(item),
            keys.liker_bits(item),
            keys.counters(item),
            keys.outbox(shard),
        ]
    }

    /// Sends `commands` as one pipeline (none: no request) and returns their
    /// answers; any command's error is the call's.
    async fn answers(
        &self,
        what: &str,
        commands: &[Vec<String>],
    ) -> Result<Vec<Value>, EngineError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let answers = self.rest().pipeline(commands).await?;
        if answers.len() != commands.len() {
            return Err(EngineError::Unexpected(format!("{what}: too few answers")));
        }
        Ok(answers.into_iter().collect::<Result<Vec<_>, _>>()?)
    }

    /// The sum of `commands`' integer answers, as one pipeline.
    async fn sum(&self, what: &str, commands: &[Vec<String>]) -> Result<u64, EngineError> {
        self.answers(what, commands)
            .await?
            .iter()
            .map(|answer| answer.as_u64().ok_or_else(|| unexpected(what, answer)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> LiveItem {
        LiveItem {
            exists: true,
            likes: 5,
            views: 9,
            likes_base: 2,
            members: 3,
            pending_likes: 1,
            pending_views: 4,
            blocked: false,
        }
    }

    #[test]
    fn an_item_that_is_the_record_plus_its_pending_events_has_no_drift() {
        assert_eq!(live().drift(4, 5), None);
    }

    #[test]
    fn each_kind_of_drift_is_named() {
        let lost = LiveItem {
            exists: false,
            ..LiveItem::default()
        };
        assert!(lost.drift(0, 1).unwrap().starts_with("lost"));
        assert!(
            live()
                .drift(3, 5)
                .unwrap()
                .contains("likes 5 != record+pending 4")
        );
        assert!(live().drift(4, 6).unwrap().contains("views 9"));
        let corrupted = LiveItem {
            likes: 7,
            pending_likes: 3,
            ..live()
        };
        assert_eq!(
            corrupted.drift(4, 5).as_deref(),
            Some("likes 7 != likes_base+likers 5")
        );
    }

    #[test]
    fn a_blocked_item_is_never_judged() {
        let blocked = LiveItem {
            exists: false,
            blocked: true,
            ..live()
        };
        assert_eq!(blocked.drift(100, 100), None);
    }
}
