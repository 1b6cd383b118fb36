//! A client for the Upstash Redis REST protocol: one HTTP request per command
//! (`POST /`) or per batch (`POST /pipeline`).
//!
//! Scripts go out as `EVALSHA`; only a `NOSCRIPT` answer makes the client send
//! the same script once more with `EVAL` (the script did not run, so this is not
//! a retry). Nothing else is ever retried here. Every round trip and every
//! fallback can be observed through a [`RestObserver`], timed by an injectable
//! millisecond [`Clock`] (wasm has no `Instant`).
//!
//! The HTTP itself goes through a [`Transport`]: natively [`ReqwestTransport`]
//! (tests, benchmarks), in the worker the runtime's own `fetch` (the edge's), so
//! the wasm carries no HTTP client of its own.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::scripts::Script;

/// Why a Redis REST call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestError {
    /// The request could not be sent or its answer not read.
    #[error("transport: {0}")]
    Transport(String),
    /// No answer arrived within the client's timeout.
    #[error("timed out")]
    Timeout,
    /// The server answered with an unexpected HTTP status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Redis ran the command and returned an error.
    #[error("redis: {0}")]
    Redis(String),
    /// The answer was not the protocol's JSON.
    #[error("undecodable answer: {0}")]
    Decode(String),
}

impl RestError {
    /// Whether Redis answered that it does not know the script's SHA1.
    pub fn is_noscript(&self) -> bool {
        matches!(self, RestError::Redis(message) if message.starts_with("NOSCRIPT"))
    }
}

/// One HTTP request to the REST endpoint, as an observer sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundTrip<'a> {
    /// The command sent (`EVALSHA`, `EVAL`, `MGET`, `PING`…), or `PIPELINE`.
    pub command: &'a str,
    /// The script's name for `EVALSHA`/`EVAL` (and pipelines of one script).
    pub script: Option<&'static str>,
    /// Wall time of the request, in milliseconds, by the client's clock.
    pub millis: f64,
    /// Whether it succeeded (for a pipeline: the request, not each command).
    pub ok: bool,
    /// Why it failed, when it did (a timeout, a NOSCRIPT...), for failure metrics.
    pub error: Option<&'a RestError>,
}

/// Sees every round trip and every `NOSCRIPT` fallback, e.g. to export metrics.
///
/// `Send + Sync` so one client can be shared by native tasks; in wasm use a
/// `Mutex` or atomics (uncontended there).
pub trait RestObserver: Send + Sync {
    /// One HTTP request finished.
    fn round_trip(&self, trip: &RoundTrip<'_>);
    /// Redis did not know `script`'s SHA1; the client is about to send it with `EVAL`.
    fn noscript_fallback(&self, script: &'static str);
}

/// The future a [`Transport`] answers with: `Send` natively, so a client can be
/// shared by tasks; not in wasm, where JavaScript promises never are.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// The future a [`Transport`] answers with (wasm: not `Send`, like the promises it awaits).
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One HTTP `POST` of a JSON body: how a [`RestClient`] reaches its endpoint.
pub trait Transport: Send + Sync {
    /// Posts `body` (JSON text) to `url` with this `Authorization` value and
    /// answers the HTTP status and the body's text. Fails with
    /// [`RestError::Timeout`] when the whole exchange takes longer than
    /// `timeout`, and [`RestError::Transport`] when it cannot be completed.
    fn post<'a>(
        &'a self,
        url: &'a str,
        authorization: &'a str,
        body: String,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, String), RestError>>;
}

/// [`Transport`] over `reqwest` (native targets: tests, tools, benchmarks).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, Default)]
pub struct ReqwestTransport {
    http: reqwest::Client,
}

#[cfg(not(target_arch = "wasm32"))]
impl Transport for ReqwestTransport {
    fn post<'a>(
        &'a self,
        url: &'a str,
        authorization: &'a str,
        body: String,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, String), RestError>> {
        Box::pin(async move {
            let response = self
                .http
                .post(url)
                .header(reqwest::header::AUTHORIZATION, authorization)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(timeout)
                .body(body)
                .send()
                .await
                .map_err(classify)?;
            let status = response.status().as_u16();
            let text = response.text().await.map_err(classify)?;
            Ok((status, text))
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn classify(error: reqwest::Error) -> RestError {
    if error.is_timeout() {
        RestError::Timeout
    } else if error.is_decode() {
        RestError::Decode(error.to_string())
    } else {
        RestError::Transport(error.to_string())
    }
}

/// A millisecond clock: `js_sys::Date::now` in wasm, [`monotonic_millis`] natively.
pub type Clock = fn() -> f64;

/// Milliseconds since the first call, from `Instant` (native targets only).
#[cfg(not(target_arch = "wasm32"))]
pub fn monotonic_millis() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// Always 0: wasm has no `Instant`; the edge sets a real clock with [`RestClient::with_clock`].
#[cfg(target_arch = "wasm32")]
pub fn monotonic_millis() -> f64 {
    0.0
}

/// A connection-less client for one Redis REST endpoint.
#[derive(Clone)]
pub struct RestClient {
    transport: Arc<dyn Transport>,
    url: String,
    pipeline_url: String,
    /// `Bearer <token>`, built once.
    authorization: String,
    timeout: Duration,
    observer: Option<Arc<dyn RestObserver>>,
    clock: Clock,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("RestClient")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// A client for the endpoint at `url` over `reqwest`, authenticated by
    /// `token`; each request fails with [`RestError::Timeout`] after `timeout`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(url: impl Into<String>, token: impl Into<String>, timeout: Duration) -> Self {
        Self::with_transport(Arc::new(ReqwestTransport::default()), url, token, timeout)
    }

    /// A client for the endpoint at `url` that sends its requests through
    /// `transport`, authenticated by `token`; each request fails with
    /// [`RestError::Timeout`] after `timeout`.
    pub fn with_transport(
        transport: Arc<dyn Transport>,
        url: impl Into<String>,
        token: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        let url = url.into().trim_end_matches('/').to_owned();
        Self {
            transport,
            pipeline_url: format!("{url}/pipeline"),
            url,
            authorization: format!("Bearer {}", token.into()),
            timeout,
            observer: None,
            clock: monotonic_millis,
        }
    }

    /// Reports every round trip and `NOSCRIPT` fallback to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn RestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Times round trips with `clock` (milliseconds) instead of the default.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sends one command, such as `["PING"]`, and returns its result.
    pub async fn command<S: AsRef<str>>(&self, args: &[S]) -> Result<Value, RestError> {
        let name = args.first().map(|a| a.as_ref()).unwrap_or("");
        let name = name.to_ascii_uppercase();
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        self.observed(&name, None, self.post_command(&args)).await
    }

    /// Runs `script` with `EVALSHA`; only on `NOSCRIPT` sends it again with
    /// `EVAL` (which also caches it, so the next call is an `EVALSHA` again).
    pub async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, RestError> {
        let first = self
            .observed(
                "EVALSHA",
                Some(script.name()),
                self.post_command(&script_command("EVALSHA", script.sha1(), keys, args)),
            )
            .await;
        match first {
            Err(e) if e.is_noscript() => {
                self.note_noscript(script.name());
                self.observed(
                    "EVAL",
                    Some(script.name()),
                    self.post_command(&script_command("EVAL", script.source(), keys, args)),
                )
                .await
            }
            other => other,
        }
    }

    /// Sends `commands` in one `POST /pipeline` and returns each result in
    /// order. The outer error is the request's; inner ones are per command.
    /// Not atomic: each command runs on its own.
    pub async fn pipeline(
        &self,
        commands: &[Vec<String>],
    ) -> Result<Vec<Result<Value, RestError>>, RestError> {
        self.observed("PIPELINE", None, self.post_pipeline(commands))
            .await
    }

    /// Runs `script` once per `(keys, args)` in one pipeline of `EVALSHA`s. If
    /// any answers `NOSCRIPT`, the whole batch is sent once more with `EVAL`:
    /// only ever used for read-only scripts, which are idempotent, so running
    /// the entries that did succeed twice changes nothing.
    pub async fn eval_read_only_batch(
        &self,
        script: &Script,
        calls: &[(Vec<String>, Vec<String>)],
    ) -> Result<Vec<Result<Value, RestError>>, RestError> {
        let batch = |verb: &str, body: &str| -> Vec<Vec<String>> {
            calls
                .iter()
                .map(|(keys, args)| {
                    script_command(verb, body, keys, args)
                        .into_iter()
                        .map(Cow::into_owned)
                        .collect()
                })
                .collect()
        };
        let first = self
            .observed(
                "PIPELINE",
                Some(script.name()),
                self.post_pipeline(&batch("EVALSHA", script.sha1())),
            )
            .await?;
        if !first.iter().any(|r| matches!(r, Err(e) if e.is_noscript())) {
            return Ok(first);
        }
        self.note_noscript(script.name());
        self.observed(
            "PIPELINE",
            Some(script.name()),
            self.post_pipeline(&batch("EVAL", script.source())),
        )
        .await
    }

    fn note_noscript(&self, script: &'static str) {
        if let Some(observer) = &self.observer {
            observer.noscript_fallback(script);
        }
    }

    async fn observed<T>(
        &self,
        command: &str,
        script: Option<&'static str>,
        request: impl Future<Output = Result<T, RestError>>,
    ) -> Result<T, RestError> {
        let started = (self.clock)();
        let result = request.await;
        if let Some(observer) = &self.observer {
            observer.round_trip(&RoundTrip {
                command,
                script,
                millis: ((self.clock)() - started).max(0.0),
                ok: result.is_ok(),
                error: result.as_ref().err(),
            });
        }
        result
    }

    async fn post_command<T: serde::Serialize>(&self, args: &[T]) -> Result<Value, RestError> {
        let (status, body) = self.post(&self.url, &args).await?;
        if status != 200 {
            return Err(status_error(status, &body));
        }
        entry(body)
    }

    async fn post_pipeline(
        &self,
        commands: &[Vec<String>],
    ) -> Result<Vec<Result<Value, RestError>>, RestError> {
        let (status, body) = self.post(&self.pipeline_url, &commands).await?;
        if status != 200 {
            return Err(status_error(status, &body));
        }
        let Value::Array(entries) = body else {
            return Err(RestError::Decode(
                "a pipeline answer must be an array".into(),
            ));
        };
        if entries.len() != commands.len() {
            return Err(RestError::Decode(format!(
                "{} answers to {} commands",
                entries.len(),
                commands.len()
            )));
        }
        Ok(entries.into_iter().map(entry).collect())
    }

    async fn post<B: serde::Serialize + ?Sized>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<(u16, Value), RestError> {
        let body = serde_json::to_string(body).map_err(|e| RestError::Transport(e.to_string()))?;
        let (status, text) = self
            .transport
            .post(url, &self.authorization, body, self.timeout)
            .await?;
        match serde_json::from_str::<Value>(&text) {
            Ok(body) => Ok((status, body)),
            // A non-JSON error page (a proxy's 502, say) is still a status error.
            Err(_) if status != 200 => Err(RestError::Status(status)),
            Err(e) => Err(RestError::Decode(e.to_string())),
        }
    }
}

/// `EVALSHA sha numkeys keys... args...` (or `EVAL source ...`).
/// Borrows everything but the key count, which any number of keys spells right.
fn script_command<'a>(
    verb: &'a str,
    body: &'a str,
    keys: &'a [String],
    args: &'a [String],
) -> Vec<Cow<'a, str>> {
    let mut command = Vec::with_capacity(3 + keys.len() + args.len());
    command.push(Cow::Borrowed(verb));
    command.push(Cow::Borrowed(body));
    command.push(Cow::Owned(keys.len().to_string()));
    command.extend(keys.iter().map(|key| Cow::Borrowed(key.as_str())));
    command.extend(args.iter().map(|arg| Cow::Borrowed(arg.as_str())));
    command
}

/// One `{"result": …}` or `{"error": "…"}`.
fn entry(body: Value) -> Result<Value, RestError> {
    let Value::Object(mut object) = body else {
        return Err(RestError::Decode("an answer must be an object".into()));
    };
    if let Some(error) = object.remove("error") {
        return Err(RestError::Redis(
            error.as_str().unwrap_or("unknown error").to_owned(),
        ));
    }
    object
        .remove("result")
        .ok_or_else(|| RestError::Decode("no result field".into()))
}

/// A non-200 answer: 400 with `{"error"}` is Redis refusing the command.
fn status_error(status: u16, body: &Value) -> RestError {
    match body.get("error").and_then(Value::as_str) {
        Some(message) if status == 400 => RestError::Redis(message.to_owned()),
        _ => RestError::Status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_command_counts_its_keys() {
        let keys = vec!["k1".to_owned(), "k2".to_owned()];
        let args = vec!["a".to_owned()];
        assert_eq!(
            script_command("EVALSHA", "abc", &keys, &args),
            ["EVALSHA", "abc", "2", "k1", "k2", "a"]
        );
        // A read takes 35 keys; no count falls back to "0", however many.
        let many: Vec<String> = (0..35).map(|i| format!("k{i}")).collect();
        assert_eq!(script_command("EVALSHA", "abc", &many, &args)[2], "35");
        let more: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        assert_eq!(script_command("EVALSHA", "abc", &more, &args)[2], "200");
    }

    #[test]
    fn only_noscript_errors_are_noscript() {
        assert!(RestError::Redis("NOSCRIPT No matching script.".into()).is_noscript());
        assert!(!RestError::Redis("ERR NOSCRIPT".into()).is_noscript());
        assert!(!RestError::Timeout.is_noscript());
    }

    #[test]
    fn a_400_with_an_error_is_a_redis_error_and_other_statuses_are_not() {
        let body = serde_json::json!({"error": "ERR wrong"});
        assert_eq!(
            status_error(400, &body),
            RestError::Redis("ERR wrong".into())
        );
        assert_eq!(status_error(503, &body), RestError::Status(503));
        assert_eq!(status_error(401, &Value::Null), RestError::Status(401));
    }
}
