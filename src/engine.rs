//! The counting engine: likes, views, custom counters and reads, each one
//! Redis REST round trip (a script, a pipeline or one command).
//!
//! It knows nothing of HTTP or `worker`; the edge turns its answers into
//! responses. Time always comes in as an argument (`now`, unix seconds) and
//! goes to Redis in `ARGV`, so tests drive the clock.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::item::{CounterName, ItemId, ItemPolicy};
use crate::keys::{ItemKeys, Keys, RATE_WINDOW_SECONDS};
use crate::outbox;
use crate::rest::{KeySuffixes, RestClient, RestError, ScriptArgs};
use crate::scripts::{self, Script};

pub use crate::keys::{Bucket, Window};

/// How long an `Idempotency-Key` remembers its first answer, in seconds (24 h).
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 86_400;
/// How long a day's HyperLogLog of viewers lives after the day starts (31
/// days): long enough for the last 30 days' window and its daily series.
pub const VIEWERS_TTL_SECONDS: i64 = 31 * 86_400;
/// The widest window of unique viewers built from daily HyperLogLogs, in days.
pub const UNIQUE_WINDOW_DAYS: i64 = 30;
/// The most points one series read returns.
pub const MAX_SERIES_POINTS: i64 = 1_440;
/// The most items one batch read takes.
pub const MAX_BATCH_ITEMS: usize = 100;
/// The `KEYS` `read.lua` takes per item: 6 and the 29 days before today.
const READ_KEYS_PER_ITEM: usize = 6 + UNIQUE_WINDOW_DAYS as usize - 1;
/// The most items one trending read returns.
pub const MAX_TRENDING: usize = 100;
/// Redis's largest bitmap (512 MB): ids at or above it use the Set whatever `BITMAP_MAX_ID` says.
pub const MAX_BITMAP_BITS: u64 = 1 << 32;
/// Significant digits float counters are read back with (see [`CounterValue`]).
pub const FLOAT_DIGITS: usize = 15;
/// The width of the window of the visitor-token minting budget, in seconds.
pub const MINT_WINDOW_SECONDS: i64 = 3_600;
/// How much more a network's visitor tokens may write than one identity, by default.
pub const NETWORK_LIMIT_FACTOR: u64 = 10;

/// Where the identities that like an item are kept (`LIKES_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikesStore {
    /// A Set of identities (`LIKES_STORE=set`, the default).
    Set,
    /// A Bitmap for canonical decimal user ids below `max_id` (`BITMAP_MAX_ID`);
    /// every other identity still goes to the Set. The count stays exact.
    Bitmap {
        /// Ids at or above this use the Set, bounding the bitmap at `max_id / 8` bytes.
        max_id: u64,
    },
}

/// What the engine is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Prefix of every key (`KEY_PREFIX`).
    pub prefix: String,
    /// A viewer counts once per item within this many seconds (`VIEW_DEDUPE_SECONDS`; at least 1).
    pub view_dedupe_seconds: u64,
    /// Writes allowed per limiter per one-minute window (`RATE_LIMIT_PER_MINUTE`).
    pub rate_limit_per_minute: u64,
    /// Writes allowed per minute to all the visitor tokens of one client
    /// network together (`NETWORK_RATE_LIMIT_PER_MINUTE`, default 10x the above).
    pub network_rate_limit_per_minute: u64,
    /// Visitor tokens one client network may mint per clock hour
    /// (`VISITOR_MINTS_PER_HOUR`), on top of the per-minute limit.
    pub visitor_mints_per_hour: u64,
    /// Where likes are kept (`LIKES_STORE`, `BITMAP_MAX_ID`).
    pub likes_store: LikesStore,
    /// Which item ids may be written (`ITEMS`, `ITEM_PATTERN`).
    pub items: ItemPolicy,
    /// Whether the write scripts append each change to the outbox
    /// ([`crate::outbox`]): on only when a system of record (the `DB`
    /// binding) applies and trims it, since nothing else would.
    pub outbox: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: "tally".to_owned(),
            view_dedupe_seconds: 1_800,
            rate_limit_per_minute: 120,
            network_rate_limit_per_minute: 120 * NETWORK_LIMIT_FACTOR,
            visitor_mints_per_hour: 500,
            likes_store: LikesStore::Set,
            items: ItemPolicy::Open,
            outbox: false,
        }
    }
}

/// Whose rate limits a write counts against.
///
/// Every write counts against its `subject`'s limit (`RATE_LIMIT_PER_MINUTE`):
/// an identity, or the hashed client network of a request without a token.
/// A write by a visitor token also counts against its `network`'s limit
/// (`NETWORK_RATE_LIMIT_PER_MINUTE`), in the same script, so a farm of visitor
/// tokens on one network shares one budget. Identities the site signs itself
/// have no network: the site vouches for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limiter<'a> {
    /// The writer's own limiter.
    pub subject: &'a str,
    /// The limiter of the writer's client network, for visitor tokens.
    pub network: Option<&'a str>,
}

impl<'a> Limiter<'a> {
    /// A visitor token's holder `subject`, writing from `network`.
    pub fn visitor(subject: &'a str, network: &'a str) -> Limiter<'a> {
        Limiter {
            subject,
            network: Some(network),
        }
    }
}

impl<'a> From<&'a str> for Limiter<'a> {
    fn from(subject: &'a str) -> Self {
        Limiter {
            subject,
            network: None,
        }
    }
}

impl<'a> From<&'a String> for Limiter<'a> {
    fn from(subject: &'a String) -> Self {
        Limiter::from(subject.as_str())
    }
}

/// A rate limit's state after a request, for the `RateLimit` header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    /// Writes allowed per window.
    pub limit: u64,
    /// Writes left in the current window.
    pub remaining: u64,
    /// Seconds until the current window ends.
    pub reset_seconds: u64,
}

/// The answer to a rate-limited write.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited<T> {
    /// The limit's state after this request.
    pub rate: RateStatus,
    /// The write's outcome, or `None` when over the limit: then NOTHING was written.
    pub outcome: Option<T>,
}

/// The answer to a like or an unlike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LikeOutcome {
    /// Identities that like the item now.
    pub likes: u64,
    /// Whether the caller likes it now.
    pub liked: bool,
    /// False when the state already was as asked.
    pub changed: bool,
}

/// The answer to a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewOutcome {
    /// Handled now; `counted` is false for a repeat within the dedupe window or a bot.
    Recorded {
        /// The item's views now.
        views: u64,
        /// Whether this view was counted.
        counted: bool,
    },
    /// Same `Idempotency-Key` and fingerprint as an earlier request: its answer; nothing counted.
    Replayed {
        /// The views the first request answered.
        views: u64,
        /// Whether the first request was counted.
        counted: bool,
    },
    /// The `Idempotency-Key` was used with another request (answer 409); nothing written.
    Conflict,
}

/// The answer to an add to a custom counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CounterOutcome {
    /// Added now; the counter's new value.
    Added(CounterValue),
    /// Same `Idempotency-Key` and fingerprint as an earlier request: its answer; nothing added.
    Replayed(CounterValue),
    /// The `Idempotency-Key` was used with another request (answer 409); nothing written.
    Conflict,
}

/// An `Idempotency-Key` and the fingerprint of the request that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The header's value (1–255 printable ASCII, checked by the edge).
    pub key: String,
    /// A hash of what makes two requests the same (method, path, and the
    /// viewer or the amount), computed by the edge.
    pub fingerprint: String,
}

/// How much to add to a custom counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// An integer (`HINCRBY`).
    Int(i64),
    /// A float (`HINCRBYFLOAT`); must be finite.
    Float(f64),
}

/// A custom counter's value.
///
/// Redis keeps counters as text. A counter whose text is an integer is `Int`;
/// any other is `Float`, parsed to `f64` and rounded to [`FLOAT_DIGITS`]
/// significant digits: Redis adds in `long double` and prints 17 digits, so
/// 15 digits hide the binary noise (0.1 added ten times reads `1`) while
/// keeping every digit an `f64` carries exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CounterValue {
    /// An integer counter.
    Int(i64),
    /// A fractional counter.
    Float(f64),
}

/// Everything a client shows about one item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemSnapshot {
    /// The item id.
    pub item: String,
    /// Identities that like it.
    pub likes: u64,
    /// Counted views.
    pub views: u64,
    /// Distinct viewers over several windows, estimated by HyperLogLogs (~0.81% error).
    pub unique_viewers: UniqueViewers,
    /// Custom counters by name.
    pub counters: BTreeMap<String, CounterValue>,
    /// Whether the identity asking likes it; `None` without an identity.
    pub liked: Option<bool>,
}

/// Distinct viewers of an item over several windows, each estimated by a
/// HyperLogLog (standard error ~0.81%). A window of days counts the UTC days
/// ending today, today included. Each is at least the narrower ones before it
/// (the estimates of separate HyperLogLogs could otherwise disagree by their error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UniqueViewers {
    /// Today (UTC).
    pub today: u64,
    /// Today and the 6 days before.
    pub last_7_days: u64,
    /// Today and the 29 days before.
    pub last_30_days: u64,
    /// Every viewer since the item's all-time HyperLogLog was started.
    pub all_time: u64,
}

/// One day of a unique-viewers series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniquePoint {
    /// The UTC day's start, unix seconds.
    pub t: i64,
    /// Distinct viewers that day (HyperLogLog estimate); 0 for days no longer kept.
    pub unique_viewers: u64,
}

/// One bucket of a views series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The bucket's start, unix seconds.
    pub t: i64,
    /// Views counted in it.
    pub views: u64,
}

/// One entry of a trending list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trend {
    /// The item id.
    pub item: String,
    /// Views counted in the window.
    pub views: u64,
}

/// A request the engine refuses before sending anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// A series ends before it starts.
    #[error("`from` must not be after `to`")]
    SeriesBackwards,
    /// A series spans more than 1440 buckets.
    #[error("a series has at most 1440 points: narrow the range or use a larger bucket")]
    SeriesTooLong,
    /// A batch read of no items or more than 100.
    #[error("ids takes 1-100 item ids")]
    BatchSize,
    /// A trending limit of 0 or over 100.
    #[error("limit must be 1-100")]
    TrendingLimit,
    /// A float amount that is NaN or infinite.
    #[error("by must be a finite number")]
    NotFinite,
    /// The counter would overflow (integer) or not be a finite double (float),
    /// or it holds text that is not a number.
    #[error("the counter would overflow or not hold a finite number: nothing was added")]
    CounterOverflow,
}

/// Why an engine call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// Redis REST was unreachable, slow or failing (the edge answers 503).
    #[error("counter store: {0}")]
    Backend(#[from] RestError),
    /// The request is invalid; the message is for the client (the edge answers 400).
    #[error("{0}")]
    Invalid(#[from] InvalidRequest),
    /// The item id is outside `ITEM_PATTERN`, or not registered under
    /// `ITEMS=registered` (the edge answers 404); nothing was written.
    #[error("unknown item")]
    UnknownItem,
    /// A script or command answered in a shape the engine does not know.
    #[error("unexpected answer from the counter store: {0}")]
    Unexpected(String),
}

/// A script call as the engine would make it: for pipelining and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The script.
    pub script: &'static Script,
    /// Its `KEYS`.
    pub keys: Vec<String>,
    /// Its `ARGV`.
    pub args: Vec<String>,
}

impl Call {
    /// The `EVALSHA` command that runs this call.
    pub fn evalsha(&self) -> Vec<String> {
        let mut command = vec![
            "EVALSHA".to_owned(),
            self.script.sha1().to_owned(),
            self.keys.len().to_string(),
        ];
        command.extend(self.keys.iter().cloned());
        command.extend(self.args.iter().cloned());
        command
    }
}

/// Likes, views, counters and reads over one Redis REST endpoint.
#[derive(Debug, Clone)]
pub struct Engine {
    rest: RestClient,
    settings: Settings,
    keys: Keys,
}

impl Engine {
    /// An engine over `rest`, configured by `settings`.
    pub fn new(rest: RestClient, settings: Settings) -> Engine {
        let keys = Keys::new(settings.prefix.clone());
        Engine {
            rest,
            settings,
            keys,
        }
    }

    /// The REST client (for health checks and metrics).
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The key builder in force.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// One `PING` round trip.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.rest.command(&["PING"]).await?;
        Ok(())
    }

    /// `who` likes `item`, as one atomic script under `limiter`'s rate limits.
    pub async fn like(
        &self,
        item: &ItemId,
        who: &str,
        limiter: impl Into<Limiter<'_>>,
        now: i64,
    ) -> Result<Limited<LikeOutcome>, EngineError> {
        self.check_item(item)?;
        self.run_like(self.like_call(item, who, limiter, now, true))
            .await
    }

    /// `who` no longer likes `item`, as one atomic script under `limiter`'s rate limits.
    pub async fn unlike(
        &self,
        item: &ItemId,
        who: &str,
        limiter: impl Into<Limiter<'_>>,
        now: i64,
    ) -> Result<Limited<LikeOutcome>, EngineError> {
        self.check_item(item)?;
        self.run_like(self.like_call(item, who, limiter, now, false))
            .await
    }

    /// The script call [`Engine::like`] (or, with `like = false`, [`Engine::unlike`]) makes.
    /// The script looks in both stores, so switching `LIKES_STORE` never
    /// counts a like twice; a new like goes to the Bitmap in bitmap mode.
    pub fn like_call<'a>(
        &self,
        item: &ItemId,
        who: &str,
        limiter: impl Into<Limiter<'a>>,
        now: i64,
        like: bool,
    ) -> Call {
        let (mut keys, mut args) = self.limits(limiter.into(), now);
        keys.extend([
            self.keys.stats(item),
            self.keys.likers(item),
            self.keys.liker_bits(item),
            self.outbox_key(item),
        ]);
        let store = if self.bitmap_offset(who).is_some() {
            "bits"
        } else {
            "set"
        };
        args.extend([
            self.registered_flag().to_owned(),
            who.to_owned(),
            user_bit(who).map(|o| o.to_string()).unwrap_or_default(),
            store.to_owned(),
            if like { "1" } else { "0" }.to_owned(),
            self.outbox_flag().to_owned(),
            item.as_str().to_owned(),
        ]);
        Call {
            script: &scripts::LIKE,
            keys,
            args,
        }
    }

    async fn run_like(&self, call: Call) -> Result<Limited<LikeOutcome>, EngineError> {
        let answer = self.rest.eval(call.script, &call.keys, &call.args).await?;
        let fields = integers("script", &answer, 6)?;
        if fields[0] == 4 {
            return Err(EngineError::UnknownItem);
        }
        let rate = self.rate_status(fields[1], fields[2]);
        let outcome = (fields[0] == 1).then(|| LikeOutcome {
            likes: non_negative(fields[3]),
            liked: fields[4] == 1,
            changed: fields[5] == 1,
        });
        Ok(Limited { rate, outcome })
    }

    /// Records a view of `item` by `viewer`, as one atomic script under
    /// `limiter`'s rate limits; a counted view also counts in the current
    /// hour's and day's trending sets, in the same script. A replay or
    /// conflict of `idempotency` uses no rate-limit slot (it writes nothing); a
    /// view that is not `countable` (a bot) uses one and answers the current count.
    pub async fn view(
        &self,
        item: &ItemId,
        viewer: &str,
        limiter: impl Into<Limiter<'_>>,
        now: i64,
        idempotency: Option<&Idempotency>,
        countable: bool,
    ) -> Result<Limited<ViewOutcome>, EngineError> {
        self.check_item(item)?;
        let day = Bucket::Day.start(now);
        let (mut keys, mut args) = self.limits(limiter.into(), now);
        keys.extend([self.keys.stats(item), self.keys.seen(item, viewer)]);
        args.extend([
            self.registered_flag().to_owned(),
            viewer.to_owned(),
            self.settings.view_dedupe_seconds.max(1).to_string(),
            if countable { "1" } else { "0" }.to_owned(),
        ]);
        for bucket in Bucket::ALL {
            let start = bucket.start(now);
            keys.push(self.keys.views_bucket(item, bucket, start));
            args.push((start + bucket.ttl_seconds()).to_string());
        }
        keys.push(self.keys.viewers(item, day));
        args.push((day + VIEWERS_TTL_SECONDS).to_string());
        args.push(item.as_str().to_owned());
        for window in Window::ALL {
            let start = window.bucket().start(now);
            keys.push(self.keys.trending(window, start));
            args.push((start + window.ttl_seconds()).to_string());
        }
        keys.push(self.keys.viewers_all_time(item));
        keys.push(self.outbox_key(item));
        args.push(self.outbox_flag().to_owned());
        if let Some(idempotency) = idempotency {
            keys.push(self.keys.idempotency(&idempotency.key));
            args.push(idempotency.fingerprint.clone());
            args.push(IDEMPOTENCY_TTL_SECONDS.to_string());
            args.push(idempotency.key.clone());
        }

        let answer = self.rest.eval(&scripts::VIEW, &keys, &args).await?;
        let fields = integers("script", &answer, 5)?;
        let rate = self.rate_status(fields[1], fields[2]);
        let views = non_negative(fields[3]);
        let counted = fields[4] == 1;
        let outcome = match fields[0] {
            0 => None,
            1 => Some(ViewOutcome::Recorded { views, counted }),
            2 => Some(ViewOutcome::Replayed { views, counted }),
            3 => Some(ViewOutcome::Conflict),
            4 => return Err(EngineError::UnknownItem),
            other => return Err(EngineError::Unexpected(format!("view status {other}"))),
        };
        Ok(Limited { rate, outcome })
    }

    /// Adds `by` to the custom counter `name` of `item` at `now` (unix seconds,
    /// the outbox event's time) and returns its value. An integer added to a
    /// counter that holds a fraction is added as a float.
    pub async fn add_to_counter(
        &self,
        item: &ItemId,
        name: &CounterName,
        by: Amount,
        now: i64,
    ) -> Result<CounterValue, EngineError> {
        match self.add_to_counter_once(item, name, by, now, None).await? {
            CounterOutcome::Added(value) => Ok(value),
            other => Err(EngineError::Unexpected(format!(
                "counter: {other:?} without an idempotency key"
            ))),
        }
    }

    /// [`Engine::add_to_counter`], at most once per `idempotency` key: a
    /// retry of the same request within 24 h gets the first answer, and the
    /// key with another request is a conflict; both write nothing. An add
    /// whose result would not be a finite double is refused before anything
    /// is written ([`InvalidRequest::CounterOverflow`]).
    pub async fn add_to_counter_once(
        &self,
        item: &ItemId,
        name: &CounterName,
        by: Amount,
        now: i64,
        idempotency: Option<&Idempotency>,
    ) -> Result<CounterOutcome, EngineError> {
        let (kind, amount) = match by {
            Amount::Int(n) => ("int", n.to_string()),
            Amount::Float(f) if f.is_finite() => ("float", f.to_string()),
            Amount::Float(_) => return Err(InvalidRequest::NotFinite.into()),
        };
        self.check_item(item)?;
        let mut keys = vec![
            self.keys.counters(item),
            self.keys.stats(item),
            self.outbox_key(item),
        ];
        let mut args = vec![
            now.to_string(),
            self.registered_flag().to_owned(),
            Keys::counter_field(name),
            kind.to_owned(),
            amount,
            self.outbox_flag().to_owned(),
            item.as_str().to_owned(),
        ];
        if let Some(idempotency) = idempotency {
            keys.push(self.keys.idempotency(&idempotency.key));
            args.push(idempotency.fingerprint.clone());
            args.push(IDEMPOTENCY_TTL_SECONDS.to_string());
            args.push(idempotency.key.clone());
        }
        let answer = self.rest.eval(&scripts::COUNTER, &keys, &args).await?;
        let Some([status, kind, value]) = answer.as_array().map(Vec::as_slice) else {
            return Err(unexpected("counter", &answer));
        };
        let answered = || match (kind.as_str(), value) {
            (Some("int"), text) => as_i64(text).map(CounterValue::Int),
            (Some("float"), Value::String(text)) => counter_value(text),
            _ => None,
        };
        match as_i64(status) {
            Some(1) => answered()
                .map(CounterOutcome::Added)
                .ok_or_else(|| unexpected("counter", &answer)),
            Some(2) => answered()
                .map(CounterOutcome::Replayed)
                .ok_or_else(|| unexpected("counter", &answer)),
            Some(3) => Ok(CounterOutcome::Conflict),
            Some(4) => Err(EngineError::UnknownItem),
            Some(5) => Err(InvalidRequest::CounterOverflow.into()),
            _ => Err(unexpected("counter", &answer)),
        }
    }

    /// Registers `item` (`PUT /v1/items/{item}`, for `ITEMS=registered`):
    /// true when this call created it, false when it already was. One command.
    pub async fn register(&self, item: &ItemId, now: i64) -> Result<bool, EngineError> {
        self.check_item(item)?;
        let key = self.keys.stats(item);
        let now = now.to_string();
        let answer = self
            .rest
            .command(&["HSETNX", key.as_str(), "registered", now.as_str()])
            .await?;
        match as_i64(&answer) {
            Some(created) => Ok(created == 1),
            None => Err(unexpected("register", &answer)),
        }
    }

    /// One item's snapshot, in one round trip; `liked` is answered for `who`.
    pub async fn read(
        &self,
        item: &ItemId,
        who: Option<&str>,
        now: i64,
    ) -> Result<ItemSnapshot, EngineError> {
        let mut snapshots = self
            .read_many_unchecked(std::slice::from_ref(item), who, now)
            .await?;
        snapshots
            .pop()
            .ok_or_else(|| EngineError::Unexpected("read: no snapshot".into()))
    }

    /// Up to 100 items' snapshots in one script call (one `EVALSHA`), in the
    /// order asked, a repeated item read each time it is asked.
    pub async fn read_many(
        &self,
        items: &[ItemId],
        who: Option<&str>,
        now: i64,
    ) -> Result<Vec<ItemSnapshot>, EngineError> {
        if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
            return Err(InvalidRequest::BatchSize.into());
        }
        self.read_many_unchecked(items, who, now).await
    }

    /// [`Engine::read_many`] without the batch size check: `read.lua` with
    /// [`READ_KEYS_PER_ITEM`] keys per item, one snapshot per item back.
    async fn read_many_unchecked(
        &self,
        items: &[ItemId],
        who: Option<&str>,
        now: i64,
    ) -> Result<Vec<ItemSnapshot>, EngineError> {
        for item in items {
            self.check_item(item)?;
        }
        let call = self.read_call(items, who, now);
        let answer = self.rest.eval_call(&scripts::READ, &call).await?;
        let answers = answer
            .as_array()
            .filter(|answers| answers.len() == items.len())
            .ok_or_else(|| unexpected("read", &answer))?;
        items
            .iter()
            .zip(answers)
            .map(|(item, answer)| snapshot(item, answer))
            .collect()
    }

    /// The `KEYS` (35 per item, in the order of `items`) and `ARGV` of one
    /// `read.lua` call for `items`, asked by `who` at `now`, written as they
    /// go into the request (a batch of 20 items names 700 keys).
    fn read_call(&self, items: &[ItemId], who: Option<&str>, now: i64) -> ScriptArgs {
        let today = Bucket::Day.start(now);
        let day = Bucket::Day.seconds();
        let mut call = ScriptArgs::with_capacity(
            items
                .iter()
                .map(|item| {
                    READ_KEYS_PER_ITEM * (self.keys.prefix().len() + item.as_str().len() + 25)
                })
                .sum(),
        );
        // Every item's keys are its stem and the same 35 suffixes: those are
        // written once, and each key is two copies (session 9, docs/benchmarks.md).
        let mut suffix = ItemKeys::suffixes();
        let mut suffixes = KeySuffixes::with_capacity(READ_KEYS_PER_ITEM);
        suffixes.add(suffix.stats());
        suffixes.add(suffix.counters());
        suffixes.add(suffix.viewers(today));
        suffixes.add(suffix.likers());
        suffixes.add(suffix.liker_bits());
        suffixes.add(suffix.viewers_all_time());
        for back in 1..UNIQUE_WINDOW_DAYS {
            suffixes.add(suffix.viewers(today - back * day));
        }
        for item in items {
            call.stem_keys(self.keys.of(item).stem(), &suffixes);
        }
        // Any canonical id's bit is read, whatever the mode: LIKES_STORE may
        // have been switched (GETBIT past a bitmap's end reads 0, allocating nothing).
        let offset = who.and_then(user_bit).map(|o| o.to_string());
        call.arg(&now.to_string());
        call.arg(who.unwrap_or(""));
        call.arg(offset.as_deref().unwrap_or(""));
        call
    }

    /// Views per `bucket` for every bucket from the one holding `from` to the
    /// one holding `to` (0 where none), as one `MGET`; at most 1440 points.
    pub async fn series(
        &self,
        item: &ItemId,
        bucket: Bucket,
        from: i64,
        to: i64,
    ) -> Result<Vec<Point>, EngineError> {
        self.check_item(item)?;
        if from > to {
            return Err(InvalidRequest::SeriesBackwards.into());
        }
        let (first, last) = (bucket.start(from), bucket.start(to));
        let count = (last - first) / bucket.seconds() + 1;
        if count > MAX_SERIES_POINTS {
            return Err(InvalidRequest::SeriesTooLong.into());
        }
        let starts: Vec<i64> = (0..count).map(|i| first + i * bucket.seconds()).collect();
        let mut command = vec!["MGET".to_owned()];
        command.extend(
            starts
                .iter()
                .map(|&t| self.keys.views_bucket(item, bucket, t)),
        );
        let answer = self.rest.command(&command).await?;
        let values = answer
            .as_array()
            .filter(|values| values.len() == starts.len())
            .ok_or_else(|| unexpected("series", &answer))?;
        starts
            .iter()
            .zip(values)
            .map(|(&t, value)| {
                let views = match value {
                    Value::Null => 0,
                    other => as_i64(other).ok_or_else(|| unexpected("series", other))?,
                };
                Ok(Point {
                    t,
                    views: non_negative(views),
                })
            })
            .collect()
    }

    /// Distinct viewers per UTC day for every day from the one holding `from`
    /// to the one holding `to`, as one pipeline of `PFCOUNT`s over the days
    /// still kept (31 days up to `now`); older and future days read 0 without a
    /// command. At most 1440 points.
    pub async fn unique_series(
        &self,
        item: &ItemId,
        from: i64,
        to: i64,
        now: i64,
    ) -> Result<Vec<UniquePoint>, EngineError> {
        if from > to {
            return Err(InvalidRequest::SeriesBackwards.into());
        }
        let day = Bucket::Day.seconds();
        let (first, last) = (Bucket::Day.start(from), Bucket::Day.start(to));
        let count = (last - first) / day + 1;
        if count > MAX_SERIES_POINTS {
            return Err(InvalidRequest::SeriesTooLong.into());
        }
        let today = Bucket::Day.start(now);
        let kept = |t: i64| t <= today && t + VIEWERS_TTL_SECONDS > now;
        let starts: Vec<i64> = (0..count).map(|i| first + i * day).collect();
        let commands: Vec<Vec<String>> = starts
            .iter()
            .filter(|&&t| kept(t))
            .map(|&t| vec!["PFCOUNT".to_owned(), self.keys.viewers(item, t)])
            .collect();
        let mut answers = if commands.is_empty() {
            Vec::new()
        } else {
            self.rest.pipeline(&commands).await?
        }
        .into_iter();
        starts
            .iter()
            .map(|&t| {
                let unique_viewers = if kept(t) {
                    let answer = answers.next().ok_or_else(|| {
                        EngineError::Unexpected("unique series: too few answers".into())
                    })??;
                    non_negative(
                        as_i64(&answer).ok_or_else(|| unexpected("unique series", &answer))?,
                    )
                } else {
                    0
                };
                Ok(UniquePoint { t, unique_viewers })
            })
            .collect()
    }

    /// One hit on `limiter`'s minute limit and hourly minting budget
    /// (`POST /v1/visitors`; `limiter` is the client's network).
    pub async fn admit(&self, limiter: &str, now: i64) -> Result<Limited<()>, EngineError> {
        let hour = now.div_euclid(MINT_WINDOW_SECONDS) * MINT_WINDOW_SECONDS;
        let keys = [
            self.rate_key(limiter, now),
            self.keys.rate(&format!("mint:{limiter}"), hour),
        ];
        let mut args = self.rate_args(now);
        args.push(self.settings.visitor_mints_per_hour.to_string());
        args.push(MINT_WINDOW_SECONDS.to_string());
        let answer = self.rest.eval(&scripts::RATE_LIMIT, &keys, &args).await?;
        // {admitted, count, limit, reset}: the limit is the one sent.
        let fields = integers("script", &answer, 4)?;
        Ok(Limited {
            rate: self.rate_status(fields[1], fields[3]),
            outcome: (fields[0] == 1).then_some(()),
        })
    }

    /// The `limit` (1–100) most viewed items of the current hour or UTC day,
    /// most viewed first (ties by item id, descending).
    pub async fn trending(
        &self,
        window: Window,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Trend>, EngineError> {
        if limit == 0 || limit > MAX_TRENDING {
            return Err(InvalidRequest::TrendingLimit.into());
        }
        let key = self.keys.trending(window, window.bucket().start(now));
        let stop = (limit - 1).to_string();
        let answer = self
            .rest
            .command(&["ZREVRANGE", key.as_str(), "0", stop.as_str(), "WITHSCORES"])
            .await?;
        let flat = answer
            .as_array()
            .ok_or_else(|| unexpected("trending", &answer))?;
        flat.chunks(2)
            .map(|pair| match pair {
                [Value::String(item), score] => Ok(Trend {
                    item: item.clone(),
                    views: as_f64(score)
                        .map(|s| s.max(0.0) as u64)
                        .ok_or_else(|| unexpected("trending", score))?,
                }),
                _ => Err(unexpected("trending", &answer)),
            })
            .collect()
    }

    /// The Bitmap offset a new like of `who` goes to, when bitmap mode is on
    /// and `who` is a canonical decimal id below the maximum ("042" is not
    /// 42: it is another identity).
    fn bitmap_offset(&self, who: &str) -> Option<u64> {
        let LikesStore::Bitmap { max_id } = self.settings.likes_store else {
            return None;
        };
        user_bit(who).filter(|&id| id < max_id)
    }

    /// `404 unknown_item` for an id outside `ITEM_PATTERN`, before any request:
    /// such an id can never exist, so reads refuse it as writes do.
    fn check_item(&self, item: &ItemId) -> Result<(), EngineError> {
        match &self.settings.items {
            ItemPolicy::Pattern(pattern) if !pattern.matches(item) => Err(EngineError::UnknownItem),
            _ => Ok(()),
        }
    }

    /// The outbox stream of `item`'s events: a fixed `KEYS` position of every
    /// write script, whether or not the outbox is on, so positions never move
    /// with configuration.
    fn outbox_key(&self, item: &ItemId) -> String {
        self.keys.outbox(outbox::shard(item))
    }

    /// The write scripts' `outbox` argument: '1' when [`Settings::outbox`] is on.
    fn outbox_flag(&self) -> &'static str {
        if self.settings.outbox { "1" } else { "0" }
    }

    /// The write scripts' `registered` argument: '1' under `ITEMS=registered`.
    fn registered_flag(&self) -> &'static str {
        match self.settings.items {
            ItemPolicy::Registered => "1",
            _ => "0",
        }
    }

    /// The two rate-limit keys and the five rate-limit arguments every write
    /// script starts with (see `rate_limit_lib.lua`).
    fn limits(&self, limiter: Limiter<'_>, now: i64) -> (Vec<String>, Vec<String>) {
        let own = self.rate_key(limiter.subject, now);
        let (network, network_limit) = match limiter.network {
            Some(network) => (
                self.rate_key(network, now),
                self.settings.network_rate_limit_per_minute,
            ),
            None => (own.clone(), 0),
        };
        let mut args = self.rate_args(now);
        args.push(network_limit.to_string());
        args.push(RATE_WINDOW_SECONDS.to_string());
        (vec![own, network], args)
    }

    fn rate_key(&self, limiter: &str, now: i64) -> String {
        self.keys.rate(
            limiter,
            now.div_euclid(RATE_WINDOW_SECONDS) * RATE_WINDOW_SECONDS,
        )
    }

    fn rate_args(&self, now: i64) -> Vec<String> {
        vec![
            now.to_string(),
            self.settings.rate_limit_per_minute.to_string(),
            RATE_WINDOW_SECONDS.to_string(),
        ]
    }

    fn rate_status(&self, count: i64, reset: i64) -> RateStatus {
        let limit = self.settings.rate_limit_per_minute;
        RateStatus {
            limit,
            remaining: limit.saturating_sub(non_negative(count)),
            reset_seconds: non_negative(reset),
        }
    }
}

fn snapshot(item: &ItemId, answer: &Value) -> Result<ItemSnapshot, EngineError> {
    let Some([likes, views, today, counters, liked, week, month, all_time]) =
        answer.as_array().map(Vec::as_slice)
    else {
        return Err(unexpected("read", answer));
    };
    let int = |v: &Value| as_i64(v).ok_or_else(|| unexpected("read", answer));
    let flat = counters
        .as_array()
        .ok_or_else(|| unexpected("read", answer))?;
    let mut map = BTreeMap::new();
    for pair in flat.chunks(2) {
        let [Value::String(name), Value::String(text)] = pair else {
            return Err(unexpected("read", answer));
        };
        // A counter whose text is not a finite double (written by hand, or
        // before adds were checked: `inf`, `nan`, `1.99e308`, garbage) is left
        // out rather than failing the whole read.
        if let Some(value) = counter_value(text) {
            map.insert(name.clone(), value);
        }
    }
    Ok(ItemSnapshot {
        item: item.as_str().to_owned(),
        likes: non_negative(int(likes)?),
        views: non_negative(int(views)?),
        unique_viewers: {
            let today = non_negative(int(today)?);
            let last_7_days = non_negative(int(week)?).max(today);
            let last_30_days = non_negative(int(month)?).max(last_7_days);
            UniqueViewers {
                today,
                last_7_days,
                last_30_days,
                all_time: non_negative(int(all_time)?).max(last_30_days),
            }
        },
        counters: map,
        liked: match int(liked)? {
            -1 => None,
            flag => Some(flag == 1),
        },
    })
}

/// A counter's text as Redis keeps it: an integer, or a float rounded to
/// [`FLOAT_DIGITS`] significant digits.
fn counter_value(text: &str) -> Option<CounterValue> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(CounterValue::Int(n));
    }
    let f = crate::decimal::parse(text).filter(|f| f.is_finite())?;
    let rounded = crate::decimal::parse(&format!("{:.*e}", FLOAT_DIGITS - 1, f))?;
    Some(CounterValue::Float(rounded))
}

/// The bit of `who` in an item's Bitmap: a canonical decimal id below 2^32.
fn user_bit(who: &str) -> Option<u64> {
    let id: u64 = who.parse().ok()?;
    (id < MAX_BITMAP_BITS && id.to_string() == who).then_some(id)
}

/// A script's answer of exactly `len` integers; anything else is
/// [`EngineError::Unexpected`], named by `what`.
pub(crate) fn integers(what: &str, answer: &Value, len: usize) -> Result<Vec<i64>, EngineError> {
    answer
        .as_array()
        .filter(|a| a.len() == len)
        .and_then(|a| a.iter().map(as_i64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| unexpected(what, answer))
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => crate::decimal::parse(s),
        _ => None,
    }
}

/// A count as Redis answered it, with a negative one (never written by Tally) read as 0.
pub(crate) fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// An answer in a shape the engine does not know, shown (up to 200 bytes) in the error.
pub(crate) fn unexpected(what: &str, value: &Value) -> EngineError {
    let mut shown = serde_json::to_string(value).unwrap_or_default();
    shown.truncate(200);
    EngineError::Unexpected(format!("{what}: {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_counters_read_back_to_fifteen_digits() {
        assert_eq!(counter_value("1"), Some(CounterValue::Int(1)));
        assert_eq!(
            counter_value("0.99999999999999999"),
            Some(CounterValue::Float(1.0))
        );
        assert_eq!(counter_value("17.25"), Some(CounterValue::Float(17.25)));
        assert_eq!(counter_value("nope"), None);
        for unreadable in ["inf", "-inf", "nan", "1.99e308"] {
            assert_eq!(counter_value(unreadable), None, "{unreadable}");
        }
    }

    /// A REST endpoint that answers every request with one fixed body: a
    /// read script answering the wrong number of snapshots cannot be caused
    /// with the real one.
    #[cfg(not(target_arch = "wasm32"))]
    struct Canned(String);

    #[cfg(not(target_arch = "wasm32"))]
    impl crate::rest::Transport for Canned {
        fn post<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: Vec<u8>,
            _: std::time::Duration,
        ) -> crate::rest::BoxFuture<'a, Result<(u16, Vec<u8>), RestError>> {
            Box::pin(async move { Ok((200, self.0.clone().into_bytes())) })
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[tokio::test]
    async fn a_read_answered_with_the_wrong_number_of_snapshots_is_unexpected() {
        let one = "[3,0,0,[],-1,0,0,0]";
        let engine = |result: &str| {
            let canned = Canned(format!(r#"{{"result": {result}}}"#));
            let rest = RestClient::with_transport(
                std::sync::Arc::new(canned),
                "http://canned",
                "t",
                std::time::Duration::from_secs(1),
            );
            Engine::new(rest, Settings::default())
        };
        let [a, b] = ["a", "b"].map(|id| ItemId::parse(id).unwrap());
        let pair = [a.clone(), b];
        let read = engine(&format!("[{one}]")).read(&a, None, 0).await;
        assert_eq!(read.map(|s| s.likes), Ok(3));
        let many = engine(&format!("[{one},{one}]"))
            .read_many(&pair, None, 0)
            .await;
        assert_eq!(many.map(|s| s.len()), Ok(2));

        for (result, items) in [
            (format!("[{one}]"), &pair[..]),
            (format!("[{one},{one},{one}]"), &pair[..]),
            (format!("[{one},{one}]"), &pair[..1]),
            ("[]".to_owned(), &pair[..1]),
            (one.to_owned(), &pair[..1]),
            ("3".to_owned(), &pair[..1]),
        ] {
            let error = engine(&result).read_many(items, None, 0).await.unwrap_err();
            assert!(
                matches!(error, EngineError::Unexpected(_)),
                "{result}: {error:?}"
            );
            if let [item] = items {
                let error = engine(&result).read(item, None, 0).await;
                assert!(
                    matches!(error, Err(EngineError::Unexpected(_))),
                    "{result}: {error:?}"
                );
            }
        }
    }

    // Natively only: the wasm REST client has no default transport.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn only_canonical_ids_below_the_maximum_use_the_bitmap() {
        let rest = RestClient::new("http://127.0.0.1:9", "t", std::time::Duration::from_secs(1));
        let settings = Settings {
            likes_store: LikesStore::Bitmap { max_id: 1000 },
            ..Settings::default()
        };
        let engine = Engine::new(rest, settings);
        assert_eq!(engine.bitmap_offset("42"), Some(42));
        assert_eq!(engine.bitmap_offset("0"), Some(0));
        let unbounded = Engine::new(
            engine.rest.clone(),
            Settings {
                likes_store: LikesStore::Bitmap { max_id: u64::MAX },
                ..Settings::default()
            },
        );
        assert_eq!(unbounded.bitmap_offset("4294967295"), Some(4_294_967_295));
        assert_eq!(unbounded.bitmap_offset("4294967296"), None);
        for other in ["042", "+42", "1000", "-1", "anon:42", "", " 42"] {
            assert_eq!(engine.bitmap_offset(other), None, "{other:?}");
        }
    }
}
