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
    /// Posts `body` (JSON) to `url` with this `Authorization` value and
    /// answers the HTTP status and the body's bytes. Fails with
    /// [`RestError::Timeout`] when the whole exchange takes longer than
    /// `timeout`, and [`RestError::Transport`] when it cannot be completed.
    fn post<'a>(
        &'a self,
        url: &'a str,
        authorization: &'a str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, Vec<u8>), RestError>>;
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
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, Vec<u8>), RestError>> {
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
            let bytes = response.bytes().await.map_err(classify)?;
            Ok((status, bytes.into()))
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
        let command = command_json(args.iter().map(AsRef::as_ref));
        self.observed(&name, None, self.post_command(command)).await
    }

    /// Runs `script` with `EVALSHA`; only on `NOSCRIPT` sends it again with
    /// `EVAL` (which also caches it, so the next call is an `EVALSHA` again).
    pub async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, RestError> {
        self.eval_call(script, &ScriptArgs::of(keys, args)).await
    }

    /// [`RestClient::eval`] of keys and arguments already written as
    /// [`ScriptArgs`], for calls of many keys.
    pub async fn eval_call(&self, script: &Script, call: &ScriptArgs) -> Result<Value, RestError> {
        let first = self
            .observed(
                "EVALSHA",
                Some(script.name()),
                self.post_command(call.command("EVALSHA", script.sha1())),
            )
            .await;
        match first {
            Err(e) if e.is_noscript() => {
                self.note_noscript(script.name());
                self.observed(
                    "EVAL",
                    Some(script.name()),
                    self.post_command(call.command("EVAL", script.source())),
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
        let commands: Vec<_> = commands
            .iter()
            .map(|command| command_json(command.iter().map(String::as_str)))
            .collect();
        self.observed("PIPELINE", None, self.post_pipeline(&commands))
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
        let batch = |verb, body| -> Vec<_> {
            calls
                .iter()
                .map(|(keys, args)| ScriptArgs::of(keys, args).command(verb, body))
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

    async fn post_command(&self, command: Vec<u8>) -> Result<Value, RestError> {
        let (status, text) = self.post(&self.url, command).await?;
        answer::<Reply>(status, &text)?.into_result()
    }

    /// Posts `commands` (each a JSON array from [`command_json`]) as one pipeline.
    async fn post_pipeline(
        &self,
        commands: &[Vec<u8>],
    ) -> Result<Vec<Result<Value, RestError>>, RestError> {
        let mut body = Vec::with_capacity(2 + commands.iter().map(|c| c.len() + 1).sum::<usize>());
        body.push(b'[');
        for (i, command) in commands.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(command);
        }
        body.push(b']');
        let (status, text) = self.post(&self.pipeline_url, body).await?;
        let replies = answer::<Vec<Reply>>(status, &text)?;
        if replies.len() != commands.len() {
            return Err(RestError::Decode(format!(
                "{} answers to {} commands",
                replies.len(),
                commands.len()
            )));
        }
        Ok(replies.into_iter().map(Reply::into_result).collect())
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Result<(u16, String), RestError> {
        let (status, bytes) = self
            .transport
            .post(url, &self.authorization, body, self.timeout)
            .await?;
        // Answers are JSON, so UTF-8; anything else is read as a text decoder would.
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok((status, text))
    }
}

/// One `{"result": …}` or `{"error": "…"}` (or, not being an object, neither),
/// read straight into place: no map is built for the envelope.
#[derive(Debug, Default)]
struct Reply {
    object: bool,
    /// `Some(Value::Null)` for `"result": null` (a Redis nil); `None` when absent.
    result: Option<Value>,
    error: Option<Value>,
}

impl Reply {
    fn into_result(self) -> Result<Value, RestError> {
        if !self.object {
            return Err(RestError::Decode("an answer must be an object".into()));
        }
        if let Some(error) = self.error {
            return Err(RestError::Redis(
                error.as_str().unwrap_or("unknown error").to_owned(),
            ));
        }
        self.result
            .ok_or_else(|| RestError::Decode("no result field".into()))
    }
}

impl<'de> serde::Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ReplyVisitor)
    }
}

/// Reads an object's `result` and `error`; anything else is a [`Reply`] that is no object.
struct ReplyVisitor;

impl<'de> serde::de::Visitor<'de> for ReplyVisitor {
    type Value = Reply;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a REST answer")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Reply, A::Error> {
        let mut reply = Reply {
            object: true,
            ..Reply::default()
        };
        // A repeated key keeps its last value, as a JSON object read whole would.
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Result => reply.result = Some(map.next_value()?),
                Key::Error => reply.error = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(reply)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Reply, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Reply::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Reply, E> {
        Ok(Reply::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Reply, E> {
        Ok(Reply::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Reply, E> {
        Ok(Reply::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Reply, E> {
        Ok(Reply::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Reply, E> {
        Ok(Reply::default())
    }

    fn visit_unit<E>(self) -> Result<Reply, E> {
        Ok(Reply::default())
    }
}

/// A key of a [`Reply`]: told apart without allocating it.
enum Key {
    Result,
    Error,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl serde::de::Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "result" => Key::Result,
            "error" => Key::Error,
            _ => Key::Other,
        })
    }
}

/// The answer `text` with HTTP `status`, read as `T` when the status is 200.
fn answer<T: serde::de::DeserializeOwned>(status: u16, text: &str) -> Result<T, RestError> {
    if status != 200 {
        return Err(status_error(status, text));
    }
    // Bytes, as everywhere in the crate: each of `from_str` and `from_slice`
    // brings its own copy of serde_json's parser into the wasm.
    serde_json::from_slice(text.as_bytes()).map_err(|e| RestError::Decode(e.to_string()))
}

/// A non-200 answer: 400 with `{"error"}` is Redis refusing the command;
/// anything else (a proxy's HTML error page, say) is the status.
fn status_error(status: u16, text: &str) -> RestError {
    let refused = (status == 400)
        .then(|| serde_json::from_slice::<Reply>(text.as_bytes()).ok())
        .flatten()
        .and_then(|reply| match reply.error {
            Some(Value::String(message)) => Some(message),
            _ => None,
        });
    match refused {
        Some(message) => RestError::Redis(message),
        None => RestError::Status(status),
    }
}

/// The keys and arguments of one script call, each written into the JSON the
/// REST API takes as it is added: a call of many keys (a batch read of 20
/// items names 700) makes no `String` per key, nor copies each once more into
/// the request (docs/benchmarks.md, "session 8"). All keys come before all
/// arguments, as `EVALSHA sha numkeys keys... args...` has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptArgs {
    /// `,"key"` per key.
    keys: Vec<u8>,
    count: usize,
    /// `,"arg"` per argument.
    args: Vec<u8>,
}

impl ScriptArgs {
    /// No keys and no arguments yet, with room for `key_bytes` bytes of keys.
    pub fn with_capacity(key_bytes: usize) -> ScriptArgs {
        ScriptArgs {
            keys: Vec::with_capacity(key_bytes),
            ..ScriptArgs::default()
        }
    }

    /// These `keys` and `args`.
    pub fn of(keys: &[String], args: &[String]) -> ScriptArgs {
        let mut call = ScriptArgs::with_capacity(keys.iter().map(|key| key.len() + 3).sum());
        keys.iter().for_each(|key| call.key(key));
        args.iter().for_each(|arg| call.arg(arg));
        call
    }

    /// Adds a key.
    pub fn key(&mut self, key: &str) {
        self.keys.push(b',');
        push_json_string(&mut self.keys, key);
        self.count += 1;
    }

    /// Adds one key per suffix of `suffixes`: `stem` followed by it. The
    /// stem is written as JSON once and copied for each key; a JSON string
    /// escapes character by character, so the text of `stem` then that of a
    /// suffix is the text of the whole key.
    pub fn stem_keys(&mut self, stem: &str, suffixes: &KeySuffixes) {
        if suffixes.ends.is_empty() {
            return;
        }
        let start = self.keys.len();
        self.keys.extend_from_slice(b",\"");
        push_json_body(&mut self.keys, stem);
        let stem_end = self.keys.len();
        self.keys
            .reserve((stem_end - start) * (suffixes.ends.len() - 1) + suffixes.json.len());
        let mut from = 0;
        for (i, &end) in suffixes.ends.iter().enumerate() {
            if i > 0 {
                self.keys.extend_from_within(start..stem_end);
            }
            self.keys.extend_from_slice(&suffixes.json[from..end]);
            from = end;
        }
        self.count += suffixes.ends.len();
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: &str) {
        self.args.push(b',');
        push_json_string(&mut self.args, arg);
    }

    /// `verb body numkeys keys... args...` (`EVALSHA sha ...` or
    /// `EVAL source ...`), as JSON.
    fn command(&self, verb: &str, body: &str) -> Vec<u8> {
        let count = self.count.to_string();
        let size = verb.len() + body.len() + count.len() + self.keys.len() + self.args.len() + 10;
        let mut json = Vec::with_capacity(size);
        json.push(b'[');
        push_json_string(&mut json, verb);
        json.push(b',');
        push_json_string(&mut json, body);
        json.push(b',');
        push_json_string(&mut json, &count);
        json.extend_from_slice(&self.keys);
        json.extend_from_slice(&self.args);
        json.push(b']');
        json
    }
}

/// The suffixes of keys that share stems ([`ScriptArgs::stem_keys`]), each
/// written as JSON once: a read names the same 35 for every item it reads.
#[derive(Debug, Clone, Default)]
pub struct KeySuffixes {
    /// Each suffix as the rest of a JSON string: escaped, then `"`.
    json: Vec<u8>,
    /// Where each suffix ends in `json`.
    ends: Vec<usize>,
}

impl KeySuffixes {
    /// No suffixes yet, with room for `count` of them.
    pub fn with_capacity(count: usize) -> KeySuffixes {
        KeySuffixes {
            json: Vec::with_capacity(count * 16),
            ends: Vec::with_capacity(count),
        }
    }

    /// Adds a suffix.
    pub fn add(&mut self, suffix: &str) {
        push_json_body(&mut self.json, suffix);
        self.json.push(b'"');
        self.ends.push(self.json.len());
    }
}

/// `parts` as the JSON array of strings the REST API takes, written straight
/// into bytes (see [`push_json_string`]). The bytes are those `serde_json`
/// writes for the same array.
fn command_json<'a>(parts: impl Iterator<Item = &'a str> + Clone) -> Vec<u8> {
    let size = parts.clone().map(|part| part.len() + 3).sum::<usize>() + 2;
    let mut json = Vec::with_capacity(size);
    json.push(b'[');
    for (i, part) in parts.enumerate() {
        if i > 0 {
            json.push(b',');
        }
        push_json_string(&mut json, part);
    }
    json.push(b']');
    json
}

/// `text` as a JSON string: with nothing to escape (keys, numbers, ids,
/// SHA1s) copied as it is, anything else escaped by `serde_json`.
fn push_json_string(json: &mut Vec<u8>, text: &str) {
    json.push(b'"');
    push_json_body(json, text);
    json.push(b'"');
}

/// `text` as the inside of a JSON string, without its quotes (see
/// [`push_json_string`]).
fn push_json_body(json: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        json.extend_from_slice(text.as_bytes());
    } else {
        // Writing into a Vec does not fail, and a &str is always valid JSON
        // text; then its quotes go.
        let start = json.len();
        let _ = serde_json::to_writer(&mut *json, text);
        json.pop();
        json.remove(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &[u8]) -> Vec<String> {
        serde_json::from_slice(json).unwrap()
    }

    #[test]
    fn a_script_command_counts_its_keys() {
        let keys = vec!["k1".to_owned(), "k2".to_owned()];
        let args = vec!["a".to_owned()];
        assert_eq!(
            parsed(&ScriptArgs::of(&keys, &args).command("EVALSHA", "abc")),
            ["EVALSHA", "abc", "2", "k1", "k2", "a"]
        );
        // A read takes 35 keys per item; no count falls back to "0", however many.
        let many: Vec<String> = (0..35).map(|i| format!("k{i}")).collect();
        assert_eq!(
            parsed(&ScriptArgs::of(&many, &args).command("EVALSHA", "abc"))[2],
            "35"
        );
        let more: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        assert_eq!(
            parsed(&ScriptArgs::of(&more, &args).command("EVALSHA", "abc"))[2],
            "200"
        );
    }

    #[test]
    fn keys_and_args_added_one_by_one_are_the_call_of_both_lists() {
        let keys = ["tally:{a}:stats", "k\"ey", "caf\u{e9}\n"].map(String::from);
        let args = ["", "{\"by\": 1}"].map(String::from);
        let mut call = ScriptArgs::with_capacity(0);
        // Added interleaved: keys still come first, in order.
        call.arg(&args[0]);
        call.key(&keys[0]);
        call.key(&keys[1]);
        call.arg(&args[1]);
        call.key(&keys[2]);
        assert_eq!(call, ScriptArgs::of(&keys, &args));
        assert_eq!(
            call.command("EVAL", "return 1"),
            serde_json::to_vec(&[
                "EVAL", "return 1", "3", &keys[0], &keys[1], &keys[2], &args[0], &args[1]
            ])
            .unwrap()
        );
        assert_eq!(
            ScriptArgs::default().command("EVALSHA", "abc"),
            br#"["EVALSHA","abc","0"]"#
        );
    }

    #[test]
    fn keys_sharing_a_stem_are_those_keys_added_one_by_one() {
        let stems = ["tally:{a}:", "", "t\"x:{caf\u{e9}}:", "\\\u{1}\n"];
        let suffixes = [
            "stats",
            "viewers:1764460800",
            "",
            "q\"uote",
            "\t\u{7f}\u{2028}",
        ];
        let mut shared = KeySuffixes::with_capacity(0);
        suffixes.iter().for_each(|suffix| shared.add(suffix));
        let mut together = ScriptArgs::with_capacity(0);
        let mut alone = ScriptArgs::with_capacity(0);
        for stem in stems {
            together.stem_keys(stem, &shared);
            for suffix in suffixes {
                alone.key(&format!("{stem}{suffix}"));
            }
        }
        together.arg("1");
        alone.arg("1");
        assert_eq!(together, alone);
        assert_eq!(together.count, stems.len() * suffixes.len());
        // No suffixes, no keys.
        let mut none = ScriptArgs::with_capacity(0);
        none.stem_keys("tally:{a}:", &KeySuffixes::default());
        assert_eq!(none, ScriptArgs::default());
    }

    #[test]
    fn a_command_is_the_json_serde_json_writes_whatever_its_strings_hold() {
        let parts = [
            "EVAL",
            "local x = \"a\\\\b\"\nreturn x\t",
            "tally:{blog/2026/hello}:viewers:1764460800",
            "",
            "caf\u{e9} \u{1f600}",
            "\u{0}\u{1f}\u{7f}",
            "{\"by\": 1}",
        ];
        assert_eq!(
            command_json(parts.iter().copied()),
            serde_json::to_vec(&parts).unwrap()
        );
        assert_eq!(command_json(std::iter::empty()), b"[]");
    }

    #[test]
    fn only_noscript_errors_are_noscript() {
        assert!(RestError::Redis("NOSCRIPT No matching script.".into()).is_noscript());
        assert!(!RestError::Redis("ERR NOSCRIPT".into()).is_noscript());
        assert!(!RestError::Timeout.is_noscript());
    }

    #[test]
    fn a_400_with_an_error_is_a_redis_error_and_other_statuses_are_not() {
        let body = r#"{"error": "ERR wrong"}"#;
        assert_eq!(
            status_error(400, body),
            RestError::Redis("ERR wrong".into())
        );
        assert_eq!(status_error(503, body), RestError::Status(503));
        assert_eq!(status_error(401, "null"), RestError::Status(401));
        assert_eq!(
            status_error(400, "<html>Bad Request</html>"),
            RestError::Status(400)
        );
    }

    fn reply(text: &str) -> Result<Value, RestError> {
        answer::<Reply>(200, text).and_then(Reply::into_result)
    }

    #[test]
    fn a_reply_is_its_result_or_its_error() {
        assert_eq!(
            reply(r#"{"result": [1, "a"]}"#),
            Ok(serde_json::json!([1, "a"]))
        );
        assert_eq!(
            reply(r#"{"result": "OK", "x": {"y": 1}}"#),
            Ok(Value::from("OK"))
        );
        // A Redis nil is a result, not a missing one.
        assert_eq!(reply(r#"{"result": null}"#), Ok(Value::Null));
        assert_eq!(
            reply(r#"{"result": 1, "error": "ERR no"}"#),
            Err(RestError::Redis("ERR no".into()))
        );
        assert_eq!(
            reply(r#"{"error": 7}"#),
            Err(RestError::Redis("unknown error".into()))
        );
        assert_eq!(reply(r#"{"result": 1, "result": 2}"#), Ok(Value::from(2)));
    }

    #[test]
    fn a_reply_that_is_no_object_or_has_no_result_is_undecodable() {
        for text in ["[1]", "\"OK\"", "3", "null", "{}", r#"{"res\u0075lt2": 1}"#] {
            assert!(
                matches!(reply(text), Err(RestError::Decode(_))),
                "{text}: {:?}",
                reply(text)
            );
        }
        assert!(matches!(
            answer::<Reply>(200, "not json"),
            Err(RestError::Decode(_))
        ));
        // An escaped key is still the key.
        assert_eq!(reply(r#"{"res\u0075lt": 5}"#), Ok(Value::from(5)));
    }

    #[test]
    fn a_pipeline_answer_keeps_each_entry_apart() {
        let replies =
            answer::<Vec<Reply>>(200, r#"[{"result": 1}, 2, {"error": "ERR x"}]"#).map(|replies| {
                replies
                    .into_iter()
                    .map(Reply::into_result)
                    .collect::<Vec<_>>()
            });
        let replies = replies.unwrap_or_default();
        assert_eq!(replies.len(), 3);
        assert_eq!(replies[0], Ok(Value::from(1)));
        assert!(matches!(replies[1], Err(RestError::Decode(_))));
        assert_eq!(replies[2], Err(RestError::Redis("ERR x".into())));
        assert!(matches!(
            answer::<Vec<Reply>>(200, r#"{"result": 1}"#),
            Err(RestError::Decode(_))
        ));
    }
}
