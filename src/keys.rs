//! Every Redis key Tally uses is built here, and nowhere else.
//!
//! An item's keys share the hash tag `{<item>}`: `tally:{blog/x}:stats`. Item ids
//! cannot contain `{` or `}` ([`crate::item`]), so the tag is always the whole id.
//! Rate-limit, idempotency and trending keys are outside any item's tag; a write
//! script takes the writer's rate-limit key (and a view its idempotency record)
//! next to the item's keys, which needs a single-shard Redis (Upstash, one
//! `redis-server`), as docs/data-model.md says.

use crate::item::{CounterName, ItemId};

/// A time-series bucket of views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// One minute; kept 48 hours.
    Minute,
    /// One hour; kept 35 days.
    Hour,
    /// One UTC day; kept 400 days.
    Day,
}

impl Bucket {
    /// Every bucket kind, finest first.
    pub const ALL: [Bucket; 3] = [Bucket::Minute, Bucket::Hour, Bucket::Day];

    /// The bucket's width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Bucket::Minute => 60,
            Bucket::Hour => 3_600,
            Bucket::Day => 86_400,
        }
    }

    /// How long a bucket lives after it starts, in seconds (48 h / 35 d / 400 d).
    pub fn ttl_seconds(self) -> i64 {
        match self {
            Bucket::Minute => 48 * 3_600,
            Bucket::Hour => 35 * 86_400,
            Bucket::Day => 400 * 86_400,
        }
    }

    /// Whether the bucket that starts at `start` has outlived its TTL at `now`:
    /// Redis no longer keeps it.
    pub fn expired(self, start: i64, now: i64) -> bool {
        start + self.ttl_seconds() <= now
    }

    /// The start (unix seconds) of the bucket holding `t`.
    pub fn start(self, t: i64) -> i64 {
        t.div_euclid(self.seconds()) * self.seconds()
    }

    /// The lowercase name used in keys and in the API (`minute`, `hour`, `day`).
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// A trending window: the current clock hour or UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The current clock hour.
    Hour,
    /// The current UTC day.
    Day,
}

impl Window {
    /// Both windows.
    pub const ALL: [Window; 2] = [Window::Hour, Window::Day];

    /// The window's bucket (same width and alignment).
    pub fn bucket(self) -> Bucket {
        match self {
            Window::Hour => Bucket::Hour,
            Window::Day => Bucket::Day,
        }
    }

    /// How long a trending set lives after its window starts: two windows, so the
    /// previous one can still be read just after a boundary.
    pub fn ttl_seconds(self) -> i64 {
        2 * self.bucket().seconds()
    }

    /// The lowercase name used in keys and in the API (`hour`, `day`).
    pub fn as_str(self) -> &'static str {
        self.bucket().as_str()
    }
}

/// The width of a rate-limit window, in seconds (the limit is per minute).
pub const RATE_WINDOW_SECONDS: i64 = 60;

/// Builds key names under one configurable prefix (`KEY_PREFIX`, default `tally`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:{<item>}:` then `parts` then `number`, if any: one
    /// allocation, and no formatting machinery.
    fn item_with(&self, item: &ItemId, parts: &[&str], number: Option<i64>) -> String {
        let length = parts.iter().map(|part| part.len()).sum::<usize>();
        let mut keys = self.of_sized(item, length + 20);
        keys.set(parts, number);
        keys.key
    }

    /// One of the keys [`ItemKeys`] builds, as its own `String`.
    fn owned(&self, item: &ItemId, key: impl FnOnce(&mut ItemKeys) -> &str) -> String {
        let mut keys = self.of(item);
        key(&mut keys);
        keys.key
    }

    /// The keys of `item`, built one after the other in one buffer.
    pub fn of(&self, item: &ItemId) -> ItemKeys {
        self.of_sized(item, 20)
    }

    /// [`Keys::of`], with room for `rest` bytes after `<prefix>:{<item>}:`.
    fn of_sized(&self, item: &ItemId, rest: usize) -> ItemKeys {
        let mut key = String::with_capacity(self.prefix.len() + item.as_str().len() + 4 + rest);
        key.push_str(&self.prefix);
        key.push_str(":{");
        key.push_str(item.as_str());
        key.push_str("}:");
        ItemKeys {
            base: key.len(),
            key,
        }
    }

    /// Hash with the fields `likes` and `views`: the item's exact counts.
    pub fn stats(&self, item: &ItemId) -> String {
        self.owned(item, ItemKeys::stats)
    }

    /// Hash of custom counters, one field per counter name.
    pub fn counters(&self, item: &ItemId) -> String {
        self.owned(item, ItemKeys::counters)
    }

    /// The hash field of one custom counter (its name, as is).
    pub fn counter_field(name: &CounterName) -> String {
        name.as_str().to_owned()
    }

    /// Set of the identities that like the item.
    pub fn likers(&self, item: &ItemId) -> String {
        self.owned(item, ItemKeys::likers)
    }

    /// Bitmap of the integer user ids that like the item (bitmap mode only).
    pub fn liker_bits(&self, item: &ItemId) -> String {
        self.owned(item, ItemKeys::liker_bits)
    }

    /// The dedupe marker of one viewer: the time of the viewer's last counted view.
    pub fn seen(&self, item: &ItemId, viewer: &str) -> String {
        self.item_with(item, &["seen:", viewer], None)
    }

    /// The stored first answer to a view request with this `Idempotency-Key`.
    /// Not per item: the same key on another item is another request (409),
    /// which the stored fingerprint (method, path, viewer) tells apart.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:idem:{{{key}}}", self.prefix)
    }

    /// The view counter of the bucket starting at `start` (unix seconds).
    pub fn views_bucket(&self, item: &ItemId, bucket: Bucket, start: i64) -> String {
        self.item_with(item, &["views:", bucket.as_str(), ":"], Some(start))
    }

    /// The HyperLogLog of the item's viewers on the UTC day starting at `day_start`.
    pub fn viewers(&self, item: &ItemId, day_start: i64) -> String {
        self.owned(item, |keys| keys.viewers(day_start))
    }

    /// The HyperLogLog of every viewer the item has had (since unique windows
    /// were introduced); never expires.
    pub fn viewers_all_time(&self, item: &ItemId) -> String {
        self.owned(item, ItemKeys::viewers_all_time)
    }

    /// The rate-limit counter of `limiter` for the window starting at `window_start`.
    pub fn rate(&self, limiter: &str, window_start: i64) -> String {
        format!("{}:rl:{{{limiter}}}:{window_start}", self.prefix)
    }

    /// Hash of the worker's metrics summed over every isolate, one field per
    /// series ([`crate::metrics`]). `#` cannot occur in an item id, so no
    /// item's keys can collide with these.
    pub fn metrics(&self) -> String {
        format!("{}:{{#metrics}}", self.prefix)
    }

    /// The number of the last metrics batch applied from one isolate (same tag).
    pub fn metrics_batch(&self, isolate: &str) -> String {
        format!("{}:{{#metrics}}:batch:{isolate}", self.prefix)
    }

    /// Stream `shard` (`0..outbox::SHARDS`) of the outbox: the events of the
    /// items [`crate::outbox::shard`] maps there, until the system of record
    /// has applied them.
    pub fn outbox(&self, shard: usize) -> String {
        format!("{}:{{#outbox:{shard}}}", self.prefix)
    }

    /// The lease of the reconciliation pass that is running, if any.
    pub fn reconcile_lease(&self) -> String {
        format!("{}:{{#record}}:lease", self.prefix)
    }

    /// The sorted set of view counts per item for one trending window.
    pub fn trending(&self, window: Window, start: i64) -> String {
        format!("{}:trending:{}:{start}", self.prefix, window.as_str())
    }
}

/// The keys of one item ([`Keys::of`]), each built over the last in one
/// buffer: a read names 35 keys per item, with one allocation in all. Each
/// method answers the key it built, as [`Keys`]' method of the same name does.
#[derive(Debug)]
pub struct ItemKeys {
    /// The last key built; its first `base` bytes are `<prefix>:{<item>}:`.
    key: String,
    base: usize,
}

impl ItemKeys {
    /// The parts of an item's keys after its stem ([`ItemKeys::stem`]): the
    /// same methods, over an empty stem. A read names the same 35 of them for
    /// every item it reads, so it writes them once (`Engine::read_call`).
    pub fn suffixes() -> ItemKeys {
        ItemKeys {
            key: String::with_capacity(24),
            base: 0,
        }
    }

    /// `<prefix>:{<item>}:`, which every key of the item starts with.
    pub fn stem(&self) -> &str {
        &self.key[..self.base]
    }

    /// `<prefix>:{<item>}:` then `parts` then `number`, if any.
    fn set(&mut self, parts: &[&str], number: Option<i64>) -> &str {
        self.key.truncate(self.base);
        for part in parts {
            self.key.push_str(part);
        }
        if let Some(number) = number {
            push_decimal(&mut self.key, number);
        }
        &self.key
    }

    /// [`Keys::stats`].
    pub fn stats(&mut self) -> &str {
        self.set(&["stats"], None)
    }

    /// [`Keys::counters`].
    pub fn counters(&mut self) -> &str {
        self.set(&["counters"], None)
    }

    /// [`Keys::likers`].
    pub fn likers(&mut self) -> &str {
        self.set(&["likers"], None)
    }

    /// [`Keys::liker_bits`].
    pub fn liker_bits(&mut self) -> &str {
        self.set(&["likers:bits"], None)
    }

    /// [`Keys::viewers`].
    pub fn viewers(&mut self, day_start: i64) -> &str {
        self.set(&["viewers:"], Some(day_start))
    }

    /// [`Keys::viewers_all_time`].
    pub fn viewers_all_time(&mut self) -> &str {
        self.set(&["viewers:all"], None)
    }
}

/// Appends `number` in decimal, as `Display` writes it.
fn push_decimal(text: &mut String, number: i64) {
    if number < 0 {
        text.push('-');
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = number.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        text.push(char::from(digit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_expires_exactly_its_ttl_after_it_starts() {
        let start = Bucket::Day.start(1_800_000_000);
        let ttl = Bucket::Day.ttl_seconds();
        assert!(!Bucket::Day.expired(start, start + ttl - 1));
        assert!(Bucket::Day.expired(start, start + ttl));
        let minute = Bucket::Minute.ttl_seconds();
        assert!(!Bucket::Minute.expired(start, start + minute - 1));
        assert!(Bucket::Minute.expired(start, start + minute));
    }

    #[test]
    fn item_keys_share_the_item_as_hash_tag() {
        let keys = Keys::new("tally");
        let item = ItemId::parse("blog/2026/hello").unwrap();
        assert_eq!(keys.stats(&item), "tally:{blog/2026/hello}:stats");
        assert_eq!(
            keys.views_bucket(&item, Bucket::Hour, 7200),
            "tally:{blog/2026/hello}:views:hour:7200"
        );
        assert_eq!(
            keys.seen(&item, "u{1}"),
            "tally:{blog/2026/hello}:seen:u{1}"
        );
        assert_eq!(keys.rate("ip:1.2.3.4", 60), "tally:rl:{ip:1.2.3.4}:60");
        assert_eq!(keys.metrics(), "tally:{#metrics}");
        assert_eq!(keys.metrics_batch("i1"), "tally:{#metrics}:batch:i1");
        assert_eq!(keys.outbox(15), "tally:{#outbox:15}");
        assert_eq!(keys.reconcile_lease(), "tally:{#record}:lease");
    }

    #[test]
    fn keys_built_in_one_buffer_are_the_keys_built_alone() {
        let keys = Keys::new("tally");
        let item = ItemId::parse("blog/2026/hello").unwrap();
        let mut built = keys.of(&item);
        // A long key, then shorter ones over it: each is whole, nothing left over.
        assert_eq!(
            built.viewers(1_764_460_800),
            keys.viewers(&item, 1_764_460_800)
        );
        assert_eq!(built.stats(), "tally:{blog/2026/hello}:stats");
        assert_eq!(built.stats(), keys.stats(&item));
        assert_eq!(built.counters(), keys.counters(&item));
        assert_eq!(built.likers(), keys.likers(&item));
        assert_eq!(built.liker_bits(), "tally:{blog/2026/hello}:likers:bits");
        assert_eq!(
            built.viewers_all_time(),
            "tally:{blog/2026/hello}:viewers:all"
        );
        assert_eq!(built.viewers(0), "tally:{blog/2026/hello}:viewers:0");
    }

    #[test]
    fn a_key_is_its_items_stem_then_its_suffix() {
        let keys = Keys::new("tally");
        let item = ItemId::parse("blog/2026/hello").unwrap();
        let mut built = keys.of(&item);
        let mut suffix = ItemKeys::suffixes();
        assert_eq!(built.stem(), "tally:{blog/2026/hello}:");
        type Build = fn(&mut ItemKeys) -> &str;
        let pairs: [(Build, &str); 5] = [
            (ItemKeys::stats, "stats"),
            (ItemKeys::counters, "counters"),
            (ItemKeys::likers, "likers"),
            (ItemKeys::liker_bits, "likers:bits"),
            (ItemKeys::viewers_all_time, "viewers:all"),
        ];
        for (key, expected) in pairs {
            assert_eq!(key(&mut suffix), expected);
            let whole = key(&mut built).to_owned();
            assert_eq!(whole, format!("{}{expected}", built.stem()));
        }
        assert_eq!(suffix.viewers(1_764_460_800), "viewers:1764460800");
        assert_eq!(
            format!("{}{}", built.stem(), suffix.viewers(86_400)),
            keys.viewers(&item, 86_400)
        );
        // Building keys leaves the stem as it was.
        assert_eq!(built.stem(), "tally:{blog/2026/hello}:");
    }

    #[test]
    fn numbers_in_keys_are_written_as_display_writes_them() {
        for number in [0, 7, -7, 60, 1_764_460_800, -86_400, i64::MAX, i64::MIN] {
            let mut text = String::from("x:");
            push_decimal(&mut text, number);
            assert_eq!(text, format!("x:{number}"));
        }
        let keys = Keys::new("t");
        let item = ItemId::parse("a").unwrap();
        assert_eq!(
            keys.viewers(&item, 1_764_460_800),
            "t:{a}:viewers:1764460800"
        );
        assert_eq!(
            keys.views_bucket(&item, Bucket::Day, -86_400),
            "t:{a}:views:day:-86400"
        );
    }

    #[test]
    fn bucket_starts_align_down_even_before_1970() {
        assert_eq!(Bucket::Minute.start(119), 60);
        assert_eq!(Bucket::Day.start(-1), -86_400);
    }
}
