//! An Upstash-compatible Redis REST gateway in front of a real `redis-server`.
//!
//! `wrangler dev`, the tests and self-hosters use it so that Tally needs no
//! cloud account. The binary in `main.rs` parses flags; everything else lives
//! here so that tests can run the real server in-process on port 0.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use redis::aio::ConnectionManager;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// What the gateway needs to know to serve.
#[derive(Clone, Debug)]
pub struct Config {
    /// `redis://[:password@]host:port[/db]` of the Redis behind the gateway.
    pub redis_url: String,
    /// The bearer token every request must present.
    pub token: String,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Redis URL does not parse.
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[from] redis::RedisError),
    /// Serving the listener failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

struct Shared {
    config: Config,
    client: redis::Client,
    // Created on first use, so the gateway starts (and answers 503) while
    // Redis is still down; the manager reconnects by itself afterwards.
    connection: Mutex<Option<ConnectionManager>>,
}

/// Serves the REST protocol on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let client = redis::Client::open(config.redis_url.as_str())?;
    let shared = Arc::new(Shared {
        config,
        client,
        connection: Mutex::new(None),
    });
    let app = Router::new()
        .route("/", post(command))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn command(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    if !authorized(&headers, &shared.config.token) {
        return reply(StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}));
    }
    let Ok(Json::Array(parts)) = serde_json::from_str::<Json>(&body) else {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "ERR the body must be a JSON array command"}));
    };
    let mut cmd = redis::Cmd::new();
    for part in &parts {
        match part {
            Json::String(s) => cmd.arg(s.as_bytes()),
            Json::Number(n) => cmd.arg(n.to_string()),
            _ => return reply(StatusCode::BAD_REQUEST, json!({"error": "ERR arguments must be strings or numbers"})),
        };
    }
    let Some(mut conn) = connection(&shared).await else {
        return unavailable();
    };
    match cmd.query_async::<redis::Value>(&mut conn).await {
        Ok(value) => reply(StatusCode::OK, json!({"result": to_json(value)})),
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => unavailable(),
        Err(e) => reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    }
}

async fn connection(shared: &Shared) -> Option<ConnectionManager> {
    let mut slot = shared.connection.lock().await;
    if slot.is_none() {
        *slot = ConnectionManager::new(shared.client.clone()).await.ok();
    }
    slot.clone()
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given == token)
}

fn to_json(value: redis::Value) -> Json {
    use redis::Value as V;
    match value {
        V::Nil => Json::Null,
        V::Int(i) => json!(i),
        V::BulkString(bytes) => Json::String(String::from_utf8_lossy(&bytes).into_owned()),
        V::SimpleString(s) => Json::String(s),
        V::Okay => Json::String("OK".into()),
        V::Array(items) | V::Set(items) => Json::Array(items.into_iter().map(to_json).collect()),
        other => Json::String(format!("{other:?}")),
    }
}

fn unavailable() -> Response {
    reply(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "Redis is unavailable"}))
}

fn reply(status: StatusCode, body: Json) -> Response {
    (status, axum::Json(body)).into_response()
}
