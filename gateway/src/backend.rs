//! The Redis side: one multiplexed connection for ordinary commands and
//! pipelines, a pool of connections for transactions, and reconnection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Value};
use std::sync::{PoisonError, RwLock};

use tokio::sync::Mutex;

use crate::command::Command;
use crate::encode::error_text;
use crate::metrics::Metrics;
use crate::policy::CommandTable;

/// How long after a failed connection attempt requests fail without trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(200);

/// Why Redis did not answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Redis is unreachable, the connection broke, or it did not answer in
    /// time. The detail is logged, not sent to clients.
    #[error("Redis is unavailable; the gateway is reconnecting, retry shortly")]
    Unavailable(String),
}

/// Timeouts and sizes of the Redis side.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long one request (a command, a pipeline, a transaction) may wait for its answer.
    pub response_timeout: Duration,
    /// Connections kept for `/multi-exec`.
    pub pool_size: usize,
}

/// Connections to one Redis.
pub struct Backend {
    client: redis::Client,
    config: AsyncConnectionConfig,
    // The live connection, with its generation (1 for the first, +1 per
    // reconnect) and the command table Redis reported on it.
    current: RwLock<Option<Live>>,
    // One reconnect at a time; others wait for its outcome.
    connecting: Mutex<()>,
    // When the last connection attempt failed: for a moment after it, requests
    // fail fast instead of each waiting out its own connect timeout.
    failed_at: std::sync::Mutex<Option<Instant>>,
    generation: AtomicU64,
    // The connection `SCRIPT KILL` goes over, made at the first kill.
    control: Mutex<Option<MultiplexedConnection>>,
    pool: Pool,
    metrics: Arc<Metrics>,
}

impl Backend {
    /// Prepares connections to `url`; nothing connects until the first request,
    /// so the gateway starts (and answers 503) while Redis is still down.
    pub fn new(
        url: &str,
        options: &BackendOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Backend, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout));
        let manager = Manager::new_with_config(url, config.clone())?;
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.response_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))?;
        Ok(Backend {
            client,
            config,
            current: RwLock::new(None),
            connecting: Mutex::new(()),
            failed_at: std::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            control: Mutex::new(None),
            pool,
            metrics,
        })
    }

    /// Runs one command; a Redis error comes back as `Value::ServerError`.
    pub async fn run(&self, command: &Command) -> Result<Value, BackendError> {
        let mut cmd = redis::Cmd::new();
        for part in &command.parts {
            cmd.arg(part.as_slice());
        }
        let Live {
            generation,
            mut conn,
            ..
        } = self.connection().await?;
        let result = conn.req_packed_command(&cmd).await;
        self.settle(result, generation)
    }

    /// Redis's command table, read when the current connection was made.
    pub async fn commands(&self) -> Result<Arc<CommandTable>, BackendError> {
        Ok(self.connection().await?.table)
    }

    /// Stops the script running in Redis (`SCRIPT KILL`, or `FUNCTION KILL`
    /// for a function) from a connection of its own, since the shared one is
    /// waiting for that script. True when Redis stopped it.
    pub async fn kill_script(&self, function: bool) -> bool {
        let kill = match function {
            true => redis::cmd("FUNCTION").arg("KILL").to_owned(),
            false => redis::cmd("SCRIPT").arg("KILL").to_owned(),
        };
        // One kill at a time, on one connection kept for them: many requests
        // queued behind a runaway script all time out together.
        let mut control = self.control.lock().await;
        let mut conn = match control.take() {
            Some(conn) => conn,
            None => match self
                .client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
            {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("tally-gateway: cannot connect to stop a slow script: {e}");
                    return false;
                }
            },
        };
        let answer = conn.req_packed_command(&kill).await;
        let stopped = match answer {
            Ok(Value::Okay) => true,
            Ok(Value::ServerError(e)) => {
                // NOTBUSY: it ended meanwhile; UNKILLABLE: it has written.
                eprintln!(
                    "tally-gateway: could not stop a slow script: {}",
                    error_text(&e)
                );
                false
            }
            Ok(other) => {
                eprintln!("tally-gateway: unexpected answer to a script kill: {other:?}");
                false
            }
            Err(e) => {
                eprintln!("tally-gateway: could not stop a slow script: {e}");
                return false;
            }
        };
        *control = Some(conn);
        stopped
    }

    /// Runs commands in order in one round trip, not atomically.
    pub async fn pipeline(&self, commands: &[&Command]) -> Result<Vec<Value>, BackendError> {
        let pipe = pack(commands.iter().map(|c| c.parts.as_slice()));
        let Live {
            generation,
            mut conn,
            ..
        } = self.connection().await?;
        let result = conn.req_packed_commands(&pipe, 0, commands.len()).await;
        self.settle(result, generation)
    }

    /// Runs commands as one MULTI/EXEC transaction on a pooled connection of
    /// its own, so nothing else shares that connection meanwhile.
    pub async fn transaction(&self, commands: &[Command]) -> Result<Outcome, BackendError> {
        let multi = [b"MULTI".to_vec()];
        let exec = [b"EXEC".to_vec()];
        let pipe = pack(
            std::iter::once(multi.as_slice())
                .chain(commands.iter().map(|c| c.parts.as_slice()))
                .chain(std::iter::once(exec.as_slice())),
        );
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let mut replies = conn
            .req_packed_commands(&pipe, 0, commands.len() + 2)
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let exec = replies
            .pop()
            .ok_or_else(|| BackendError::Unavailable("no reply to EXEC".into()))?;
        let Value::ServerError(aborted) = exec else {
            return Ok(Outcome::Committed(exec));
        };
        // EXECABORT alone does not say which command was wrong; the queuing error does.
        let cause = replies.iter().find_map(|r| match r {
            Value::ServerError(e) => Some(error_text(e)),
            _ => None,
        });
        Ok(Outcome::Aborted(match cause {
            Some(cause) => format!("{} ({cause})", error_text(&aborted)),
            None => error_text(&aborted),
        }))
    }

    /// Sends PING; true when Redis answers PONG.
    pub async fn ping(&self) -> bool {
        let ping = Command {
            parts: vec![b"PING".to_vec()],
        };
        matches!(self.run(&ping).await, Ok(Value::SimpleString(ref s)) if s == "PONG")
    }

    async fn connection(&self) -> Result<Live, BackendError> {
        if let Some(current) = self.live() {
            return Ok(current);
        }
        let _turn = self.connecting.lock().await;
        if let Some(current) = self.live() {
            return Ok(current);
        }
        let recently_failed = self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE);
        if recently_failed {
            return Err(BackendError::Unavailable(
                "the last connection attempt failed just now".into(),
            ));
        }
        let (conn, table) = match self.connect().await {
            Ok(connected) => connected,
            Err(e) => {
                // Logged here, at most once per RETRY_AFTER_FAILURE, not per request.
                eprintln!("tally-gateway: cannot connect to Redis: {e}");
                *self
                    .failed_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                return Err(BackendError::Unavailable(e));
            }
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        if generation > 1 {
            self.metrics.redis_reconnects.inc();
        }
        let live = Live {
            generation,
            conn,
            table: Arc::new(table),
        };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(live.clone());
        Ok(live)
    }

    /// A new connection, and the command table of the Redis it reaches: what
    /// each token may run is decided from it, so no connection is used
    /// without one.
    async fn connect(&self) -> Result<(MultiplexedConnection, CommandTable), String> {
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| e.to_string())?;
        let reply = conn
            .req_packed_command(&redis::cmd("COMMAND"))
            .await
            .map_err(|e| format!("COMMAND failed: {e}"))?;
        if let Value::ServerError(e) = &reply {
            return Err(format!(
                "COMMAND failed ({}); the gateway's Redis user must be allowed COMMAND",
                error_text(e)
            ));
        }
        let table = CommandTable::from_reply(&reply).map_err(|e| e.to_string())?;
        Ok((conn, table))
    }

    fn live(&self) -> Option<Live> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Maps a connection error to `Unavailable` and drops the broken
    /// connection so that the next request reconnects.
    fn settle<T>(&self, result: redis::RedisResult<T>, generation: u64) -> Result<T, BackendError> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => {
                if e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_io_error() {
                    let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
                    // Only if no one has replaced it already.
                    if current.as_ref().is_some_and(|l| l.generation == generation) {
                        eprintln!("tally-gateway: lost the connection to Redis: {e}");
                        *current = None;
                    }
                }
                Err(BackendError::Unavailable(e.to_string()))
            }
        }
    }
}

/// The connection in use, and what was learnt when it was made.
#[derive(Clone)]
struct Live {
    generation: u64,
    conn: MultiplexedConnection,
    table: Arc<CommandTable>,
}

/// How a transaction ended.
pub enum Outcome {
    /// EXEC ran: an array of per-command replies (errors among them as `Value::ServerError`).
    Committed(Value),
    /// Redis discarded the transaction (EXECABORT), with why.
    Aborted(String),
}

fn pack<'a>(commands: impl Iterator<Item = &'a [Vec<u8>]>) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for parts in commands {
        let mut cmd = redis::Cmd::new();
        for part in parts {
            cmd.arg(part.as_slice());
        }
        pipe.add_command(cmd);
    }
    pipe
}
