//! The system of record at the edge: the reconciliation pass (every minute by
//! the cron trigger, or `POST /v1/admin/reconcile`), and reads from D1
//! (`GET /v1/items/{item}?source=record`, day series older than Redis keeps).
//!
//! One pass: take the lease in Redis → read `outbox_state` (seq, marks) from
//! D1 → read the outbox after the marks → apply the batch in ONE `DB.batch`,
//! guarded by the seq → trim only if this pass's batch moved the seq → check a
//! sample of items for drift and repair them from the record → release the
//! lease. A pass that dies anywhere leaves the lease to expire and the outbox
//! untrimmed; the next pass reads the marks D1 committed, so nothing is
//! applied twice and nothing is lost. The SQL is built by [`crate::record`],
//! the Redis calls by [`crate::reconcile`].

use worker::js_sys::{Array, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::types::D1Database as D1Sys;
use worker::{D1Database, Env, console_log, console_warn};

use super::config::Config;
use super::error::AppError;
use super::http::{self, Incoming, Reply};
use super::identity;
use crate::engine::{Bucket, EngineError, ItemSnapshot, Point};
use crate::item::ItemId;
use crate::metrics::Metrics;
use crate::outbox::{self, SHARDS, StreamId};
use crate::reconcile::{RecordItem, RepairOutcome};
use crate::record::{self, CounterRow, ItemRow};

/// The most events one D1 transaction applies: a pass applies up to
/// `RECONCILE_MAX_EVENTS` in transactions of this size.
const BATCH_EVENTS: usize = 2_000;
/// A pass starts no new batch after this long (ms): the cron runs every minute.
const TIME_BUDGET_MS: f64 = 20_000.0;
/// The most items the pass repairs (each is one script with all its likers).
const MAX_REPAIRS: usize = 20;
/// The most touched items the drift check samples besides the stalest ones.
const MAX_TOUCHED_CHECKED: usize = 100;

/// What one pass did (the body of `POST /v1/admin/reconcile`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Outbox events this pass applied to the record.
    pub events_applied: u64,
    /// Items whose live counts were compared with the record.
    pub items_checked: u64,
    /// Items restored from the record.
    pub repaired: u64,
    /// Outbox events still unapplied after the pass.
    pub lag: u64,
}

/// Why a pass did not finish.
enum PassError {
    /// Another pass holds the lease.
    Busy,
    /// Another pass applied the same batch first (the seq had moved).
    Superseded,
    /// `TALLY_FAULT=reconcile_after_record` stopped it after the record committed.
    Fault,
    /// The app error to answer with.
    App(AppError),
}

impl From<AppError> for PassError {
    fn from(error: AppError) -> Self {
        PassError::App(error)
    }
}

impl From<EngineError> for PassError {
    fn from(error: EngineError) -> Self {
        PassError::App(error.into())
    }
}

/// The `DB` binding, or `503 record_unavailable`.
fn database(env: &Env) -> Result<D1Database, AppError> {
    env.d1("DB").map_err(|_| AppError::RecordUnbound)
}

/// `POST /v1/admin/reconcile` (API key): runs one pass now and answers what it did.
pub async fn reconcile(req: &Incoming, env: &Env, config: &Config) -> Result<Reply, AppError> {
    identity::api_key(req, config)?;
    let db = database(env)?;
    let report = run(&db, config, "request").await?;
    let body = serde_json::json!({
        "events_applied": report.events_applied,
        "items_checked": report.items_checked,
        "repaired": report.repaired,
        "lag": report.lag,
    });
    Reply::json(200, &body)
}

/// The cron trigger's pass (`[triggers] crons`): one pass, logged.
pub async fn scheduled(env: &Env, config: &Config) {
    let db = match database(env) {
        Ok(db) => db,
        Err(_) => {
            console_warn!("reconcile: no D1 binding `DB`: nothing to reconcile into");
            return;
        }
    };
    // Failures are logged by `run`; there is nobody to answer.
    let _ = run(&db, config, "cron").await;
}

/// One pass, counted in the metrics hash and logged; its error as the route answers it.
async fn run(db: &D1Database, config: &Config, by: &str) -> Result<PassReport, AppError> {
    let started = http::now_ms();
    let engine = config.engine();
    let holder = format!(
        "{:013x}",
        (worker::js_sys::Math::random() * 2f64.powi(52)) as u64
    );
    let leased = engine.lease(&holder, config.reconcile.lease_ms).await?;
    let (result, unreadable) = if leased {
        let mut unreadable = 0;
        let result = pass(db, config, &mut unreadable).await;
        (result, unreadable)
    } else {
        (Err(PassError::Busy), 0)
    };
    if leased
        && !matches!(result, Err(PassError::Fault))
        && let Err(e) = engine.release(&holder).await
    {
        console_warn!("reconcile: the lease could not be released (it expires by itself): {e}");
    }
    let took = http::now_ms() - started;
    let (outcome, report) = match &result {
        Ok(report) if report.events_applied > 0 || unreadable > 0 => ("applied", *report),
        Ok(report) => ("idle", *report),
        Err(PassError::Busy) => ("busy", PassReport::default()),
        Err(PassError::Superseded) => ("superseded", PassReport::default()),
        Err(PassError::Fault) => {
            console_warn!(
                "reconcile ({by}): TALLY_FAULT=reconcile_after_record: stopped after the record committed, as a crash there would"
            );
            return Err(AppError::Internal(
                "fault injected: reconcile_after_record".into(),
            ));
        }
        Err(PassError::App(_)) => ("failed", PassReport::default()),
    };
    console_log!(
        "reconcile ({by}): {outcome} in {took:.0} ms: {} events applied, {unreadable} unreadable skipped, {} items checked, {} repaired, lag {}",
        report.events_applied,
        report.items_checked,
        report.repaired,
        report.lag
    );
    let mut metrics = Metrics::new();
    metrics.record_pass(outcome, report.events_applied, report.repaired, unreadable);
    count(config, &metrics).await;
    match result {
        Ok(report) => Ok(report),
        Err(PassError::Busy) => Err(AppError::ReconcileRunning),
        Err(PassError::Superseded) => Err(AppError::ReconcileRunning),
        Err(PassError::App(error)) => Err(error),
        Err(PassError::Fault) => Err(AppError::Internal("fault injected".into())),
    }
}

/// Adds a pass's counts to the metrics hash (one pipeline of `HINCRBY`s).
async fn count(config: &Config, metrics: &Metrics) {
    let key = config.engine().keys().metrics();
    let commands: Vec<Vec<String>> = metrics
        .to_args()
        .chunks_exact(2)
        .map(|pair| {
            vec![
                "HINCRBY".to_owned(),
                key.clone(),
                pair[0].clone(),
                pair[1].clone(),
            ]
        })
        .collect();
    if let Err(e) = config.unobserved_client().pipeline(&commands).await {
        console_warn!("reconcile: the pass's metrics were not counted: {e}");
    }
}

/// The pass under the lease.
async fn pass(
    db: &D1Database,
    config: &Config,
    unreadable: &mut u64,
) -> Result<PassReport, PassError> {
    let engine = config.engine();
    let answers = query(db, &[Sql(record::READ_STATE, Vec::new())]).await?;
    let state = rows(&answers, 0)?
        .first()
        .ok_or_else(|| AppError::RecordFailed("outbox_state has no row: migrate D1".into()))?;
    let marks = text(state, "marks")?;
    let mut after = record::parse_marks(&marks)
        .ok_or_else(|| AppError::RecordFailed(format!("outbox_state.marks: {marks}")))?;
    let started = http::now_ms();
    let mut seq = int(state, "seq")?;
    let mut report = PassReport::default();
    let mut touched = Vec::new();
    // Reads of up to RECONCILE_MAX_EVENTS (less what was applied), each
    // applied in D1 transactions of at most BATCH_EVENTS, until the outbox is
    // drained, RECONCILE_MAX_EVENTS are applied or the time budget is spent.
    'reads: loop {
        let left = config
            .reconcile
            .max_events
            .saturating_sub(report.events_applied as usize);
        let read = engine.outbox_read(&after, left.max(1)).await?;
        for bad in &read.unreadable {
            console_warn!(
                "reconcile: skipped unreadable outbox entry {} of shard {}: {}",
                bad.id.map_or_else(|| "?".to_owned(), |id| id.to_string()),
                bad.shard,
                bad.reason
            );
        }
        if read.marks == after {
            break;
        }
        for batch in record::split(&read, &after, BATCH_EVENTS) {
            let plan = record::plan(&batch);
            let guard = JsValue::from_f64(seq as f64);
            let statements: Vec<Sql<'_>> = plan
                .statements
                .iter()
                .map(|s| Sql(s.sql, vec![JsValue::from_str(&s.rows), guard.clone()]))
                .collect();
            let results = query(db, &statements).await?;
            if changes(results.last())? != 1 {
                // Another pass applied this batch (the lease expired under a
                // slow pass): what it committed is its to trim and check.
                if report.events_applied == 0 && *unreadable == 0 {
                    return Err(PassError::Superseded);
                }
                break 'reads;
            }
            if config.reconcile.stop_after_record {
                return Err(PassError::Fault);
            }
            seq += 1;
            after = batch.marks;
            report.events_applied += plan.events as u64;
            *unreadable += batch.unreadable.len() as u64;
            touched.extend(plan.touched);
            if http::now_ms() - started > TIME_BUDGET_MS {
                break 'reads;
            }
        }
        if !read.more || report.events_applied as usize >= config.reconcile.max_events {
            break;
        }
    }
    let touched = record::sorted_set(&touched);
    // Up to the marks this pass committed or read from D1: also what a pass
    // that died before its trim left behind (trimming twice removes nothing more).
    engine.outbox_trim(&after).await?;
    let (checked, repaired) = check_drift(db, config, &touched, &after).await?;
    report.items_checked = checked;
    report.repaired = repaired;
    report.lag = engine.outbox_lag().await?;
    Ok(report)
}

/// One statement: its SQL and its parameters (`?1`, `?2`...).
struct Sql<'a>(&'a str, Vec<JsValue>);

/// What D1 answered one statement of a batch.
struct Answer {
    /// Its rows: JS objects, read with [`text`], [`int`] and [`float`].
    rows: Vec<JsValue>,
    /// The rows it changed (`meta.changes`).
    changes: Option<f64>,
}

/// Runs `statements` as ONE `DB.batch` (one transaction) and answers each
/// one's rows and change count. Every D1 call goes through here, and rows are
/// read field by field: the worker crate's typed reads deserialise through
/// serde-wasm-bindgen, which put a deserializer per row type in the wasm.
async fn query(db: &D1Database, statements: &[Sql<'_>]) -> Result<Vec<Answer>, AppError> {
    let sys: &D1Sys = db.unchecked_ref();
    let prepared = Array::new();
    for Sql(sql, params) in statements {
        let statement = sys.prepare(sql).map_err(js_failed)?;
        let params: Array = params.iter().collect();
        prepared.push(statement.bind(params).map_err(js_failed)?.as_ref());
    }
    let promise = sys.batch(prepared).map_err(js_failed)?;
    let results = JsFuture::from(promise).await.map_err(js_failed)?;
    let results: Array = results.dyn_into().map_err(js_failed)?;
    Ok(results
        .iter()
        .map(|result| Answer {
            rows: field(&result, "results")
                .dyn_into::<Array>()
                .map(|rows| rows.to_vec())
                .unwrap_or_default(),
            changes: field(&field(&result, "meta"), "changes").as_f64(),
        })
        .collect())
}

/// D1's error, as the detail of `503 record_unavailable` (logged, never answered).
fn js_failed(error: JsValue) -> AppError {
    AppError::RecordFailed(super::error::js_message(&error))
}

/// A property of a JS object (`undefined` when it has none).
fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn bad_column(name: &str) -> AppError {
    AppError::RecordFailed(format!("column {name}: missing or of the wrong type"))
}

/// A text column of a row.
fn text(row: &JsValue, name: &str) -> Result<String, AppError> {
    field(row, name).as_string().ok_or_else(|| bad_column(name))
}

/// A numeric column of a row.
fn float(row: &JsValue, name: &str) -> Result<f64, AppError> {
    field(row, name).as_f64().ok_or_else(|| bad_column(name))
}

/// An integer column of a row (a JS number that is a safe integer).
fn int(row: &JsValue, name: &str) -> Result<i64, AppError> {
    let n = float(row, name)?;
    let safe = n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0;
    safe.then_some(n as i64).ok_or_else(|| bad_column(name))
}

/// The rows of the `n`th statement of a batch.
fn rows(answers: &[Answer], n: usize) -> Result<&[JsValue], AppError> {
    answers
        .get(n)
        .map(|a| a.rows.as_slice())
        .ok_or_else(|| AppError::RecordFailed("a batch answered too few results".into()))
}

/// Every row read by `read`, or the first failure: a loop, not a
/// `collect::<Result<Vec<_>, _>>()`, which puts about 1 KB of iterator
/// adapters in the wasm for each call site.
fn each<T>(
    rows: &[JsValue],
    read: impl Fn(&JsValue) -> Result<T, AppError>,
) -> Result<Vec<T>, AppError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(read(row)?);
    }
    Ok(out)
}

/// The rows a statement changed.
fn changes(result: Option<&Answer>) -> Result<usize, AppError> {
    result
        .and_then(|a| a.changes)
        .map(|n| n as usize)
        .ok_or_else(|| AppError::RecordFailed("a batch answered no change count".into()))
}

/// An `items` row.
fn item_row(row: &JsValue) -> Result<ItemRow, AppError> {
    Ok(ItemRow {
        item: text(row, "item")?,
        likes: int(row, "likes")?,
        likes_base: int(row, "likes_base")?,
        views: int(row, "views")?,
    })
}

/// A `counters` row.
fn counter_row(row: &JsValue) -> Result<CounterRow, AppError> {
    Ok(CounterRow {
        item: text(row, "item")?,
        name: text(row, "name")?,
        int_value: int(row, "int_value")?,
        float_value: float(row, "float_value")?,
        is_float: int(row, "is_float")?,
    })
}

/// Compares the items the batch touched and the ones checked longest ago with
/// Redis, repairs up to [`MAX_REPAIRS`] that drifted, and marks them checked.
/// Answers (items checked, items repaired).
async fn check_drift(
    db: &D1Database,
    config: &Config,
    touched: &[String],
    marks: &[StreamId; SHARDS],
) -> Result<(u64, u64), PassError> {
    let touched: Vec<&String> = touched.iter().take(MAX_TOUCHED_CHECKED).collect();
    let results = query(
        db,
        &[Sql(
            record::READ_SAMPLE,
            vec![
                JsValue::from_str(&serde_json::to_string(&touched).unwrap_or_default()),
                JsValue::from_f64(config.reconcile.sample as f64),
            ],
        )],
    )
    .await?;
    // Each item once, in item order (SQLite's UNION and ORDER BY).
    let mut sample: Vec<(ItemId, ItemRow)> = Vec::new();
    for row in rows(&results, 0)? {
        let row = item_row(row)?;
        // An id the record holds that is no longer valid cannot name Redis keys.
        if let Ok(id) = ItemId::parse(&row.item) {
            sample.push((id, row));
        }
    }
    if sample.is_empty() {
        return Ok((0, 0));
    }
    let engine = config.engine();
    let ids: Vec<ItemId> = sample.iter().map(|(id, _)| id.clone()).collect();
    let live = engine.audit(&ids, marks).await?;
    let drifted: Vec<(&ItemId, &ItemRow, String)> = sample
        .iter()
        .zip(&live)
        .filter_map(|((id, row), live)| {
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            live.drift(count(row.likes), count(row.views))
                .map(|why| (id, row, why))
        })
        .take(MAX_REPAIRS)
        .collect();
    let mut repaired = 0;
    if !drifted.is_empty() {
        let names: Vec<&str> = drifted.iter().map(|(id, _, _)| id.as_str()).collect();
        let names = JsValue::from_str(&serde_json::to_string(&names).unwrap_or_default());
        let results = query(
            db,
            &[
                Sql(record::READ_LIKERS_OF, vec![names.clone()]),
                Sql(record::READ_COUNTERS_OF, vec![names]),
            ],
        )
        .await?;
        let likers = each(rows(&results, 0)?, |row| {
            Ok((text(row, "item")?, text(row, "who")?))
        })?;
        let counters = each(rows(&results, 1)?, counter_row)?;
        for (id, row, why) in drifted {
            let item = RecordItem {
                likes_base: u64::try_from(row.likes_base).unwrap_or(0),
                views: u64::try_from(row.views).unwrap_or(0),
                likers: likers
                    .iter()
                    .filter(|(item, _)| *item == row.item)
                    .map(|(_, who)| who.clone())
                    .collect(),
                counters: record::counters_of(&row.item, &counters),
            };
            match engine.repair(id, &item, marks[outbox::shard(id)]).await? {
                RepairOutcome::Repaired { before, after } => {
                    repaired += 1;
                    console_log!(
                        "reconcile: repaired {}: {why}; likes {} -> {}, views {} -> {}, likers {} -> {}",
                        id.as_str(),
                        before.likes,
                        after.likes,
                        before.views,
                        after.views,
                        before.members,
                        after.members
                    );
                }
                RepairOutcome::Blocked => {
                    console_log!(
                        "reconcile: {} drifted ({why}) but has an import or merge pending: left for a later pass",
                        id.as_str()
                    );
                }
            }
        }
    }
    let checked: Vec<&str> = ids.iter().map(ItemId::as_str).collect();
    query(
        db,
        &[Sql(
            record::MARK_CHECKED,
            vec![
                JsValue::from_str(&serde_json::to_string(&checked).unwrap_or_default()),
                JsValue::from_f64(http::now() as f64),
            ],
        )],
    )
    .await?;
    Ok((ids.len() as u64, repaired))
}

/// `GET /v1/items/{item}?source=record` (API key): the item as the record
/// holds it, in the live read's shape; `who` asks whether that identity likes it.
pub async fn read(
    env: &Env,
    req: &Incoming,
    config: &Config,
    item: &ItemId,
    who: Option<&str>,
) -> Result<ItemSnapshot, AppError> {
    identity::api_key(req, config)?;
    let db = database(env)?;
    let id = JsValue::from_str(item.as_str());
    let mut statements = vec![
        Sql(record::READ_ITEM, vec![id.clone()]),
        Sql(record::READ_COUNTERS, vec![id.clone()]),
    ];
    if let Some(who) = who {
        statements.push(Sql(record::READ_LIKED, vec![id, JsValue::from_str(who)]));
    }
    let results = query(&db, &statements).await?;
    let row = rows(&results, 0)?.first().map(item_row).transpose()?;
    let counters = each(rows(&results, 1)?, counter_row)?;
    let liked = match who {
        Some(_) => match rows(&results, 2)?.first() {
            Some(row) => Some(int(row, "liked")? > 0),
            None => Some(false),
        },
        None => None,
    };
    Ok(record::snapshot(
        item.as_str(),
        row.as_ref(),
        &counters,
        liked,
    ))
}

/// Fills the day points Redis no longer keeps (older than 400 days) from the
/// record's `daily_views`, when a record is bound; one query.
pub async fn fill_old_days(
    env: &Env,
    item: &ItemId,
    points: &mut [Point],
    now: i64,
) -> Result<(), AppError> {
    let gone = |p: &Point| Bucket::Day.expired(p.t, now);
    let (Some(first), Some(last)) = (
        points.iter().find(|p| gone(p)).map(|p| p.t),
        points.iter().rev().find(|p| gone(p)).map(|p| p.t),
    ) else {
        return Ok(());
    };
    let Ok(db) = env.d1("DB") else {
        return Ok(());
    };
    let results = query(
        &db,
        &[Sql(
            record::READ_DAYS,
            vec![
                JsValue::from_str(item.as_str()),
                JsValue::from_f64(first as f64),
                JsValue::from_f64(last as f64),
            ],
        )],
    )
    .await?;
    // In day order (`ORDER BY day`), so a binary search finds a point's day.
    let days = each(rows(&results, 0)?, |row| {
        Ok((int(row, "day")?, int(row, "views")?))
    })?;
    for point in points.iter_mut().filter(|p| gone(p)) {
        point.views = days
            .binary_search_by_key(&point.t, |d| d.0)
            .map_or(0, |n| u64::try_from(days[n].1).unwrap_or(0));
    }
    Ok(())
}
