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

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use worker::wasm_bindgen::JsValue;
use worker::web_sys::Request;
use worker::{D1Database, D1PreparedStatement, D1Result, Env, Response, console_log, console_warn};

use super::config::Config;
use super::error::AppError;
use super::{http, identity};
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

impl From<worker::Error> for PassError {
    fn from(error: worker::Error) -> Self {
        PassError::App(d1_failed(error))
    }
}

fn d1_failed(error: worker::Error) -> AppError {
    AppError::RecordFailed(error.to_string())
}

/// The `DB` binding, or `503 record_unavailable`.
fn database(env: &Env) -> Result<D1Database, AppError> {
    env.d1("DB").map_err(|_| AppError::RecordUnbound)
}

/// `POST /v1/admin/reconcile` (API key): runs one pass now and answers what it did.
pub async fn reconcile(req: &Request, env: &Env, config: &Config) -> Result<Response, AppError> {
    identity::api_key(req, config)?;
    let db = database(env)?;
    let report = run(&db, config, "request").await?;
    let body = serde_json::json!({
        "events_applied": report.events_applied,
        "items_checked": report.items_checked,
        "repaired": report.repaired,
        "lag": report.lag,
    });
    Ok(http::json(200, &body)?)
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

/// `outbox_state`'s one row.
#[derive(Deserialize)]
struct State {
    seq: i64,
    marks: String,
}

/// The pass under the lease.
async fn pass(
    db: &D1Database,
    config: &Config,
    unreadable: &mut u64,
) -> Result<PassReport, PassError> {
    let engine = config.engine();
    let state: State = db
        .prepare(record::READ_STATE)
        .first(None)
        .await?
        .ok_or_else(|| AppError::RecordFailed("outbox_state has no row: migrate D1".into()))?;
    let mut after = record::parse_marks(&state.marks)
        .ok_or_else(|| AppError::RecordFailed(format!("outbox_state.marks: {}", state.marks)))?;
    let started = http::now_ms();
    let mut seq = state.seq;
    let mut report = PassReport::default();
    let mut touched = std::collections::BTreeSet::new();
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
            let statements = plan
                .statements
                .iter()
                .map(|s| {
                    db.prepare(s.sql)
                        .bind(&[JsValue::from_str(&s.rows), guard.clone()])
                })
                .collect::<worker::Result<Vec<_>>>()?;
            let results = db.batch(statements).await?;
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
    let touched: Vec<String> = touched.into_iter().collect();
    // Up to the marks this pass committed or read from D1: also what a pass
    // that died before its trim left behind (trimming twice removes nothing more).
    engine.outbox_trim(&after).await?;
    let (checked, repaired) = check_drift(db, config, &touched, &after).await?;
    report.items_checked = checked;
    report.repaired = repaired;
    report.lag = engine.outbox_lag().await?;
    Ok(report)
}

/// The rows a statement changed.
fn changes(result: Option<&D1Result>) -> Result<usize, AppError> {
    let meta = result
        .map(D1Result::meta)
        .transpose()
        .map_err(d1_failed)?
        .flatten();
    meta.and_then(|m| m.changes)
        .ok_or_else(|| AppError::RecordFailed("a batch answered no change count".into()))
}

/// A statement bound to `params`.
fn bound(db: &D1Database, sql: &str, params: &[JsValue]) -> Result<D1PreparedStatement, AppError> {
    db.prepare(sql).bind(params).map_err(d1_failed)
}

/// The rows of one result of a batch.
fn rows<T: DeserializeOwned>(result: Option<&D1Result>) -> Result<Vec<T>, AppError> {
    result
        .ok_or_else(|| AppError::RecordFailed("a batch answered too few results".into()))?
        .results()
        .map_err(d1_failed)
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
    let results = db
        .batch(vec![
            bound(
                db,
                record::READ_ITEMS,
                &[JsValue::from_str(
                    &serde_json::to_string(&touched).unwrap_or_default(),
                )],
            )?,
            bound(
                db,
                record::READ_STALEST,
                &[JsValue::from_f64(config.reconcile.sample as f64)],
            )?,
        ])
        .await?;
    let mut sample: BTreeMap<String, ItemRow> = BTreeMap::new();
    for row in rows::<ItemRow>(results.first())?
        .into_iter()
        .chain(rows::<ItemRow>(results.get(1))?)
    {
        sample.insert(row.item.clone(), row);
    }
    // An id the record holds that is no longer valid cannot name Redis keys.
    let sample: Vec<(ItemId, ItemRow)> = sample
        .into_values()
        .filter_map(|row| ItemId::parse(&row.item).ok().map(|id| (id, row)))
        .collect();
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
        let results = db
            .batch(vec![
                bound(db, record::READ_LIKERS_OF, std::slice::from_ref(&names))?,
                bound(db, record::READ_COUNTERS_OF, &[names])?,
            ])
            .await?;
        let likers: Vec<LikerRow> = rows(results.first())?;
        let counters: Vec<CounterRow> = rows(results.get(1))?;
        for (id, row, why) in drifted {
            let item = RecordItem {
                likes_base: u64::try_from(row.likes_base).unwrap_or(0),
                views: u64::try_from(row.views).unwrap_or(0),
                likers: likers
                    .iter()
                    .filter(|l| l.item == row.item)
                    .map(|l| l.who.clone())
                    .collect(),
                counters: counters
                    .iter()
                    .filter(|c| c.item == row.item)
                    .map(|c| (c.name.clone(), c.value()))
                    .collect(),
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
    bound(
        db,
        record::MARK_CHECKED,
        &[
            JsValue::from_str(&serde_json::to_string(&checked).unwrap_or_default()),
            JsValue::from_f64(http::now() as f64),
        ],
    )?
    .run()
    .await
    .map_err(d1_failed)?;
    Ok((ids.len() as u64, repaired))
}

/// A `likers` row.
#[derive(Deserialize)]
struct LikerRow {
    item: String,
    who: String,
}

/// `liked`'s row.
#[derive(Deserialize)]
struct Liked {
    liked: i64,
}

/// `GET /v1/items/{item}?source=record` (API key): the item as the record
/// holds it, in the live read's shape; `who` asks whether that identity likes it.
pub async fn read(
    env: &Env,
    req: &Request,
    config: &Config,
    item: &ItemId,
    who: Option<&str>,
) -> Result<ItemSnapshot, AppError> {
    identity::api_key(req, config)?;
    let db = database(env)?;
    let id = JsValue::from_str(item.as_str());
    let mut statements = vec![
        bound(&db, record::READ_ITEM, std::slice::from_ref(&id))?,
        bound(&db, record::READ_COUNTERS, std::slice::from_ref(&id))?,
    ];
    if let Some(who) = who {
        statements.push(bound(
            &db,
            record::READ_LIKED,
            &[id, JsValue::from_str(who)],
        )?);
    }
    let results = db.batch(statements).await.map_err(d1_failed)?;
    let row: Option<ItemRow> = rows(results.first())?.into_iter().next();
    let counters: Vec<CounterRow> = rows(results.get(1))?;
    let liked = match who {
        Some(_) => Some(
            rows::<Liked>(results.get(2))?
                .first()
                .is_some_and(|l| l.liked > 0),
        ),
        None => None,
    };
    Ok(record::snapshot(
        item.as_str(),
        row.as_ref(),
        &counters,
        liked,
    ))
}

/// A `daily_views` row.
#[derive(Deserialize)]
struct DayRow {
    day: i64,
    views: i64,
}

/// Fills the day points Redis no longer keeps (older than 400 days) from the
/// record's `daily_views`, when a record is bound; one query.
pub async fn fill_old_days(
    env: &Env,
    item: &ItemId,
    points: &mut [Point],
    now: i64,
) -> Result<(), AppError> {
    let gone = |p: &Point| p.t + Bucket::Day.ttl_seconds() <= now;
    let (Some(first), Some(last)) = (
        points.iter().find(|p| gone(p)).map(|p| p.t),
        points.iter().rev().find(|p| gone(p)).map(|p| p.t),
    ) else {
        return Ok(());
    };
    let Ok(db) = env.d1("DB") else {
        return Ok(());
    };
    let days: Vec<DayRow> = bound(
        &db,
        record::READ_DAYS,
        &[
            JsValue::from_str(item.as_str()),
            JsValue::from_f64(first as f64),
            JsValue::from_f64(last as f64),
        ],
    )?
    .all()
    .await
    .map_err(d1_failed)?
    .results()
    .map_err(d1_failed)?;
    let days: BTreeMap<i64, i64> = days.into_iter().map(|d| (d.day, d.views)).collect();
    for point in points.iter_mut().filter(|p| gone(p)) {
        point.views = days
            .get(&point.t)
            .map_or(0, |v| u64::try_from(*v).unwrap_or(0));
    }
    Ok(())
}
