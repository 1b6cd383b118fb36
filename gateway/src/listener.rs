//! Accepting connections: at most `max_connections` at once (past it, a new
//! connection gets a `503` and is closed), a deadline for each request's
//! headers, a deadline for idle keep-alive connections, and a graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::http::{App, handle};

/// How many connections, and for how long each may wait.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most; more are refused with `503`.
    pub max_connections: usize,
    /// How long a request's headers may take to arrive, counted from the
    /// connection's opening or from the first byte after the last response.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may stay silent between requests.
    pub idle_timeout: Duration,
}

/// Serves `listener` until `shutdown` completes, then stops accepting and
/// waits for the connections to finish their requests in flight.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: keep serving the others.
                    eprintln!("tally-gateway: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            app.metrics.connections_refused.inc();
            refuse(&stream, limits.max_connections);
            continue;
        };
        app.metrics.connections.inc();
        let (app, stopping) = (app.clone(), stopping.clone());
        tokio::spawn(async move {
            serve_connection(stream, &app, limits, stopping).await;
            app.metrics.connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Each connection holds a permit until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// Answers `503` at once and closes: queueing would let a few slow clients
/// hold every later one hostage.
fn refuse(stream: &TcpStream, max: usize) {
    let body = format!(
        "{{\"error\":\"ERR the gateway already serves its maximum of {max} connections; retry shortly\"}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // A fresh socket's send buffer takes this whole; if not, the client
    // still sees the connection closed.
    let _ = stream.try_write(response.as_bytes());
}

async fn serve_connection(
    stream: TcpStream,
    app: &Arc<App>,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: clock.clone(),
    });
    let service = {
        let (app, clock) = (app.clone(), clock.clone());
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let app = app.clone();
            let busy = Busy::start(&clock);
            async move {
                let response = handle(State(app), request.map(Body::new)).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(connection);
    let stopped = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopped);
    // Once closing, the connection gets until this instant to finish.
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            expired = clock.expired(limits), if closing.is_none() => {
                app.metrics.timed_out(expired.label());
                match expired {
                    // Half a request after the deadline: no answer is owed.
                    Expired::Header => break,
                    Expired::Idle => {
                        connection.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + limits.header_timeout);
                    }
                }
            }
            () = &mut stopped, if closing.is_none() => {
                // Requests in flight finish; the binary bounds the drain.
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + DRAIN_LIMIT);
            }
            () = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => break,
        }
    }
}

/// A bound on a drain the binary has not stopped by itself.
const DRAIN_LIMIT: Duration = Duration::from_secs(3600);

/// Which deadline a connection missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expired {
    /// A request's headers did not arrive in time.
    Header,
    /// The connection stayed silent between requests.
    Idle,
}

impl Expired {
    fn label(self) -> &'static str {
        match self {
            Expired::Header => "header",
            Expired::Idle => "idle",
        }
    }
}

/// What a connection is doing, in milliseconds since it opened.
struct Clock {
    origin: Instant,
    /// When the headers now awaited began (1 + ms), 0 when none are awaited.
    head_since: AtomicU64,
    /// When the last response was produced (ms).
    idle_since: AtomicU64,
    /// Requests being handled.
    busy: AtomicUsize,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            // A new connection owes its first headers from the start.
            head_since: AtomicU64::new(1),
            idle_since: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn on_read(&self) {
        if self.busy.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Acquire) == 0 {
            self.head_since.store(self.now() + 1, Ordering::Release);
        }
    }

    /// Resolves when the connection misses a deadline.
    async fn expired(&self, limits: Limits) -> Expired {
        let header = u64::try_from(limits.header_timeout.as_millis()).unwrap_or(u64::MAX);
        let idle = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            let now = self.now();
            let head = self.head_since.load(Ordering::Acquire);
            let wait = if self.busy.load(Ordering::Acquire) > 0 {
                // A request in flight has the response timeout for a bound.
                header
            } else if head > 0 {
                match (head - 1).saturating_add(header).checked_sub(now) {
                    Some(left) if left > 0 => left,
                    _ => return Expired::Header,
                }
            } else {
                let since = self.idle_since.load(Ordering::Acquire);
                match since.saturating_add(idle).checked_sub(now) {
                    Some(left) if left > 0 => left,
                    _ => return Expired::Idle,
                }
            };
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// Marks a request in flight on its connection until dropped.
struct Busy(Arc<Clock>);

impl Busy {
    fn start(clock: &Arc<Clock>) -> Busy {
        clock.busy.fetch_add(1, Ordering::AcqRel);
        clock.head_since.store(0, Ordering::Release);
        Busy(clock.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, telling the clock when bytes arrive.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
