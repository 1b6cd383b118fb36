//! The HTTP side: routes, authentication, body limits, and JSON answers.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use redis::Value;

use crate::auth::{Access, Tokens};
use crate::backend::{Backend, Outcome};
use crate::command::Command;
use crate::encode::{Encoding, Item, Reply, error_text};
use crate::error::GatewayError;
use crate::metrics::{CommandLabels, LatencyLabels, Metrics, RequestLabels, command_label};
use crate::policy::{CommandTable, Lookup, Policy};
use crate::scripts::{KeyLocking, Rewrite};

/// What every request handler shares.
pub struct App {
    /// Accepted tokens.
    pub tokens: Tokens,
    /// Redis.
    pub backend: Backend,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Upstash's `allow-key-locking` flag, stripped before Redis sees it.
    pub key_locking: KeyLocking,
    /// What each token may run.
    pub policy: Policy,
    /// How long a script may run before the gateway stops it with `SCRIPT KILL`.
    pub script_timeout: Duration,
}

/// Which endpoint a request reached, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Command,
    PathStyle,
    Pipeline,
    MultiExec,
    Health,
    Metrics,
}

impl Endpoint {
    fn of(path: &str) -> Endpoint {
        match path {
            "/" => Endpoint::Command,
            "/pipeline" | "/pipeline/" => Endpoint::Pipeline,
            "/multi-exec" | "/multi-exec/" => Endpoint::MultiExec,
            "/healthz" => Endpoint::Health,
            "/metrics" => Endpoint::Metrics,
            _ => Endpoint::PathStyle,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Endpoint::Command => "/",
            Endpoint::PathStyle => "/{cmd}",
            Endpoint::Pipeline => "/pipeline",
            Endpoint::MultiExec => "/multi-exec",
            Endpoint::Health => "/healthz",
            Endpoint::Metrics => "/metrics",
        }
    }
}

/// The one handler: every route goes through it so that authentication,
/// limits and metrics are applied the same way everywhere.
pub async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let started = Instant::now();
    let endpoint = Endpoint::of(request.uri().path());
    let mut command = String::from("-");
    let response = match route(&app, endpoint, request, &mut command).await {
        Ok(response) => response,
        // Redis failures are logged by the backend, once per outage rather than per request.
        Err(error) => error.into_response(),
    };
    let endpoint = endpoint.label();
    app.metrics
        .latency
        .get_or_create(&LatencyLabels {
            endpoint,
            command: command.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint,
            command,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn route(
    app: &App,
    endpoint: Endpoint,
    request: Request,
    label: &mut String,
) -> Result<Response, GatewayError> {
    let (parts, body) = request.into_parts();
    if endpoint == Endpoint::Health {
        return health(app, &parts.method).await;
    }
    let query = parts.uri.query();
    let access = app
        .tokens
        .check(&parts.headers, query)
        .ok_or(GatewayError::Unauthorized)?;
    let encoding = encoding(&parts.headers);
    let post = parts.method == Method::POST;
    match endpoint {
        Endpoint::Metrics if parts.method == Method::GET => Ok(metrics(app)),
        Endpoint::Metrics => Err(GatewayError::MethodNotAllowed("GET")),
        Endpoint::Command | Endpoint::Pipeline | Endpoint::MultiExec if !post => {
            Err(GatewayError::MethodNotAllowed("POST"))
        }
        Endpoint::Command => {
            let body = read_body(app, &parts.headers, body).await?;
            let command = Command::from_body(&body)?;
            one(app, endpoint, command, access, encoding, label).await
        }
        Endpoint::PathStyle if post || parts.method == Method::GET => {
            let body = match post {
                true => Some(read_body(app, &parts.headers, body).await?.to_vec()),
                false => None,
            };
            let command =
                Command::from_path(parts.uri.path(), query, body.filter(|b| !b.is_empty()))?;
            one(app, endpoint, command, access, encoding, label).await
        }
        Endpoint::PathStyle => Err(GatewayError::MethodNotAllowed("GET, POST")),
        Endpoint::Pipeline => {
            let body = read_body(app, &parts.headers, body).await?;
            let commands = Command::batch_from_body(&body)?;
            "batch".clone_into(label);
            pipeline(app, endpoint, commands, access, encoding).await
        }
        Endpoint::MultiExec => {
            let body = read_body(app, &parts.headers, body).await?;
            let commands = Command::batch_from_body(&body)?;
            "batch".clone_into(label);
            transaction(app, endpoint, commands, access, encoding).await
        }
        Endpoint::Health => health(app, &parts.method).await,
    }
}

async fn one(
    app: &App,
    endpoint: Endpoint,
    command: Command,
    access: Access,
    encoding: Encoding,
    label: &mut String,
) -> Result<Response, GatewayError> {
    let command = restrict(command, access);
    let table = app.backend.commands().await?;
    if let Err(refusal) = app.policy.check(&table, &command, access) {
        *label = refused_label(&table, &command);
        return Err(refusal.into());
    }
    let mut command = command;
    let rewrite = app.key_locking.rewrite(&mut command);
    // The label is set once Redis has answered (unknown names become `other`),
    // so a request that got no answer (503) keeps `-`.
    let scripts = Scripts::of(std::iter::once(&command));
    let (mut value, killed) = bounded(app, scripts, app.backend.run(&command)).await?;
    count(app, endpoint, &command, &value, Some(label));
    if killed && was_killed(&value) {
        return Err(GatewayError::ScriptTimeout(app.script_timeout.as_secs()));
    }
    rewrite.restore(&mut value);
    match &value {
        Value::ServerError(e) => Err(GatewayError::Redis(rewrite.restore_text(error_text(e)))),
        _ => Ok(json(
            StatusCode::OK,
            &Item::Result(Reply {
                value: &value,
                encoding,
            }),
        )),
    }
}

async fn pipeline(
    app: &App,
    endpoint: Endpoint,
    commands: Vec<Command>,
    access: Access,
    encoding: Encoding,
) -> Result<Response, GatewayError> {
    // Refused commands answer in place; the others go to Redis in one round trip.
    let table = app.backend.commands().await?;
    let checked: Vec<Result<(Command, Rewrite), String>> = commands
        .into_iter()
        .map(|c| {
            let mut command = restrict(c, access);
            match app.policy.check(&table, &command, access) {
                Ok(()) => {
                    let rewrite = app.key_locking.rewrite(&mut command);
                    Ok((command, rewrite))
                }
                Err(refusal) => Err(refusal.to_string()),
            }
        })
        .collect();
    let runnable: Vec<&Command> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().map(|(command, _)| command))
        .collect();
    let scripts = Scripts::of(runnable.iter().copied());
    let (values, killed) = match runnable.is_empty() {
        true => (Vec::new(), false),
        false => bounded(app, scripts, app.backend.pipeline(&runnable)).await?,
    };
    let mut values = values.into_iter();
    let mut answers = Vec::with_capacity(checked.len());
    for entry in &checked {
        answers.push(match entry {
            Ok((command, rewrite)) => {
                let mut value = values.next().unwrap_or(Value::Nil);
                count(app, endpoint, command, &value, None);
                if killed && was_killed(&value) {
                    Err(GatewayError::ScriptTimeout(app.script_timeout.as_secs()).to_string())
                } else {
                    rewrite.restore(&mut value);
                    Ok((value, rewrite))
                }
            }
            Err(message) => Err(message.clone()),
        });
    }
    let items: Vec<Item> = answers
        .iter()
        .map(|a| match a {
            Ok((value, rewrite)) => item(value, rewrite, encoding),
            Err(message) => Item::Error(message.clone()),
        })
        .collect();
    Ok(json(StatusCode::OK, &items))
}

async fn transaction(
    app: &App,
    endpoint: Endpoint,
    commands: Vec<Command>,
    access: Access,
    encoding: Encoding,
) -> Result<Response, GatewayError> {
    // One refused command aborts the whole transaction before anything runs,
    // as a queuing error would in Redis.
    let table = app.backend.commands().await?;
    let mut checked = Vec::with_capacity(commands.len());
    let mut rewrites = Vec::with_capacity(commands.len());
    for command in commands {
        let mut command = restrict(command, access);
        app.policy.check(&table, &command, access)?;
        rewrites.push(app.key_locking.rewrite(&mut command));
        checked.push(command);
    }
    let scripts = Scripts::of(checked.iter());
    let (outcome, killed) = bounded(app, scripts, app.backend.transaction(&checked)).await?;
    match outcome {
        Outcome::Committed(Value::Array(mut values)) => {
            for ((command, value), rewrite) in checked.iter().zip(&mut values).zip(&rewrites) {
                count(app, endpoint, command, value, None);
                rewrite.restore(value);
            }
            let items: Vec<Item> = values
                .iter()
                .zip(rewrites.iter().chain(std::iter::repeat(&Rewrite::None)))
                .map(|(v, rewrite)| match killed && was_killed(v) {
                    true => Item::Error(
                        GatewayError::ScriptTimeout(app.script_timeout.as_secs()).to_string(),
                    ),
                    false => item(v, rewrite, encoding),
                })
                .collect();
            Ok(json(StatusCode::OK, &items))
        }
        Outcome::Committed(other) => Err(GatewayError::Redis(format!(
            "EXECABORT the transaction did not run (EXEC replied {other:?})"
        ))),
        Outcome::Aborted(message) => Err(GatewayError::Redis(message)),
    }
}

async fn health(app: &App, method: &Method) -> Result<Response, GatewayError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(GatewayError::MethodNotAllowed("GET"));
    }
    match app.backend.ping().await {
        true => Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        false => Ok(json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "unavailable", "error": "Redis does not answer PING"}),
        )),
    }
}

fn metrics(app: &App) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

/// Which kinds of script a request runs, so that a slow one can be stopped.
#[derive(Clone, Copy, Debug, Default)]
struct Scripts {
    lua: bool,
    function: bool,
}

impl Scripts {
    fn of<'a>(commands: impl Iterator<Item = &'a Command>) -> Scripts {
        let mut scripts = Scripts::default();
        for command in commands {
            let name = command.raw_name();
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            scripts.lua |= is("EVAL") || is("EVALSHA") || is("EVAL_RO") || is("EVALSHA_RO");
            scripts.function |= is("FCALL") || is("FCALL_RO");
        }
        scripts
    }
}

/// Runs `work`; when it carries a script still running after the script
/// timeout, stops the script in Redis (which then answers `work` with an
/// error) and says so. Redis only reads other connections once a script has
/// run for its `busy-reply-threshold` (5 s by default), so the kill lands
/// after the later of the two.
async fn bounded<T>(
    app: &App,
    scripts: Scripts,
    work: impl Future<Output = Result<T, crate::backend::BackendError>>,
) -> Result<(T, bool), crate::backend::BackendError> {
    if !scripts.lua && !scripts.function {
        return work.await.map(|v| (v, false));
    }
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => return done.map(|v| (v, false)),
        () = tokio::time::sleep(app.script_timeout) => {}
    }
    let mut killed = scripts.lua && app.backend.kill_script(false).await;
    if scripts.function && !killed {
        killed = app.backend.kill_script(true).await;
    }
    if killed {
        app.metrics.scripts_killed.inc();
    }
    work.await.map(|v| (v, killed))
}

/// Whether a reply is Redis's answer to a script stopped by a kill.
fn was_killed(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.details().is_some_and(|d| d.contains("killed by user")))
}

/// One answer of a batch, with digests in errors named as the client knows them.
fn item<'a>(value: &'a Value, rewrite: &Rewrite, encoding: Encoding) -> Item<'a> {
    match value {
        Value::ServerError(e) => Item::Error(rewrite.restore_text(error_text(e))),
        _ => Item::Result(Reply { value, encoding }),
    }
}

/// The read-only token's scripts run as `EVAL_RO` and friends.
fn restrict(command: Command, access: Access) -> Command {
    match access {
        Access::Full => command,
        Access::ReadOnly => command.into_read_only(),
    }
}

/// The metrics label of a refused command: unknown names count as `other`,
/// so callers cannot grow the label set.
fn refused_label(table: &CommandTable, command: &Command) -> String {
    match table.lookup(command) {
        Lookup::Known(..) => command_label(command.raw_name()),
        Lookup::Unknown => "other".to_owned(),
    }
}

/// Counts a command Redis ran. Unknown commands count as `other`, so callers
/// cannot grow the label set.
fn count(
    app: &App,
    endpoint: Endpoint,
    command: &Command,
    value: &Value,
    label: Option<&mut String>,
) {
    let unknown = matches!(value, Value::ServerError(e)
        if e.details().is_some_and(|d| d.starts_with("unknown command")));
    let name = match unknown {
        true => "other".to_owned(),
        false => command_label(command.raw_name()),
    };
    if let Some(label) = label {
        name.clone_into(label);
    }
    app.metrics
        .commands
        .get_or_create(&CommandLabels {
            endpoint: endpoint.label(),
            command: name,
        })
        .inc();
}

fn encoding(headers: &HeaderMap) -> Encoding {
    let base64 = headers
        .get("upstash-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"base64"));
    match base64 {
        true => Encoding::Base64,
        false => Encoding::Text,
    }
}

async fn read_body(app: &App, headers: &HeaderMap, mut body: Body) -> Result<Bytes, GatewayError> {
    let limit = app.max_body_bytes;
    // An oversized body is still read (and dropped) up to this much, so that
    // the client, still sending, gets to see the 413 rather than a reset.
    let drain_cap = limit.saturating_mul(4);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > drain_cap as u64) {
        return Err(GatewayError::TooLarge(limit));
    }
    let mut kept = Vec::with_capacity(declared.map_or(0, |n| n.min(limit as u64) as usize));
    let mut seen = 0usize;
    let drain = async {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| GatewayError::Body)?.into_data() else {
                continue;
            };
            seen = seen.saturating_add(data.len());
            if seen <= limit {
                kept.extend_from_slice(&data);
            } else if seen > drain_cap {
                break;
            }
        }
        Ok::<(), GatewayError>(())
    };
    match tokio::time::timeout(DRAIN_TIMEOUT, drain).await {
        Ok(Ok(())) if seen <= limit => Ok(Bytes::from(kept)),
        Ok(Ok(())) => Err(GatewayError::TooLarge(limit)),
        Ok(Err(e)) => Err(e),
        Err(_) if seen > limit => Err(GatewayError::TooLarge(limit)),
        Err(_) => Err(GatewayError::Body),
    }
}

/// How long reading one request body may take.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"ERR the reply could not be encoded"}"#,
        )
            .into_response(),
    }
}
