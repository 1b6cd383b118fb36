//! The `tally-gateway` binary: flags and environment in, a serving gateway out.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;

/// An Upstash-compatible Redis REST gateway.
///
/// Each setting is a flag, or its `TALLY_GATEWAY_*` variable, or (for drop-in
/// use in a serverless-redis-http setup) SRH's variable.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on [default: 127.0.0.1:8079, or 127.0.0.1:$SRH_PORT];
    /// loopback unless told otherwise (e.g. 0.0.0.0:8079 in a container).
    #[arg(long, env = "TALLY_GATEWAY_LISTEN")]
    listen: Option<String>,
    /// Redis URL: `redis://` or `rediss://`, with an optional `user:password@`
    /// [default: $SRH_CONNECTION_STRING, or redis://127.0.0.1:6379].
    #[arg(long, env = "TALLY_GATEWAY_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// The token every request must present [or $SRH_TOKEN].
    #[arg(long, env = "TALLY_GATEWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// An optional token that may only read; its writes get NOPERM.
    #[arg(long, env = "TALLY_GATEWAY_READONLY_TOKEN", hide_env_values = true)]
    readonly_token: Option<String>,
    /// Largest request body in bytes; larger bodies get 413.
    #[arg(long, env = "TALLY_GATEWAY_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Redis connections kept for /multi-exec transactions [default: 16, or $SRH_MAX_CONNECTIONS].
    #[arg(long, env = "TALLY_GATEWAY_POOL_SIZE")]
    pool_size: Option<usize>,
    /// Seconds a command may wait for Redis before the request gets 503.
    #[arg(long, env = "TALLY_GATEWAY_RESPONSE_TIMEOUT", default_value_t = 10)]
    response_timeout: u64,
    /// Seconds a script may run before the gateway stops it with SCRIPT KILL
    /// and answers 504; must be less than the response timeout.
    #[arg(long, env = "TALLY_GATEWAY_SCRIPT_TIMEOUT", default_value_t = 5)]
    script_timeout: u64,
    /// Let the full token run server administration (SHUTDOWN, CONFIG,
    /// DEBUG...); connection-state commands stay refused.
    #[arg(long, env = "TALLY_GATEWAY_ALLOW_ADMIN")]
    allow_admin: bool,
    /// Open HTTP connections at most; more get 503 and are closed.
    #[arg(long, env = "TALLY_GATEWAY_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a request's headers may take to arrive before the connection is closed.
    #[arg(long, env = "TALLY_GATEWAY_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a keep-alive connection may stay silent before it is closed.
    #[arg(long, env = "TALLY_GATEWAY_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds to finish requests in flight after SIGTERM or Ctrl-C.
    #[arg(long, env = "TALLY_GATEWAY_DRAIN_SECONDS", default_value_t = 30)]
    drain_seconds: u64,
}

fn from_srh(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(mode) = from_srh("SRH_MODE").filter(|m| m != "env") {
        eprintln!(
            "tally-gateway: SRH_MODE={mode} is not supported; configure one Redis with SRH_CONNECTION_STRING and SRH_TOKEN (SRH_MODE=env)"
        );
        return ExitCode::FAILURE;
    }
    let listen = args
        .listen
        .or_else(|| from_srh("SRH_PORT").map(|port| format!("127.0.0.1:{port}")))
        .unwrap_or_else(|| "127.0.0.1:8079".to_owned());
    let redis_url = args
        .redis_url
        .or_else(|| from_srh("SRH_CONNECTION_STRING"))
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let Some(token) = args.token.or_else(|| from_srh("SRH_TOKEN")) else {
        eprintln!("tally-gateway: a token is required: --token, TALLY_GATEWAY_TOKEN or SRH_TOKEN");
        return ExitCode::FAILURE;
    };
    let listener = match TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("tally-gateway: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = tally_gateway::Config::new(redis_url, token);
    config.read_only_token = args.readonly_token;
    config.max_body_bytes = args.max_body_bytes;
    let pool_size = args
        .pool_size
        .or_else(|| from_srh("SRH_MAX_CONNECTIONS").and_then(|n| n.parse().ok()))
        .unwrap_or(16);
    config.pool_size = pool_size.max(1);
    config.response_timeout = Duration::from_secs(args.response_timeout.max(1));
    config.script_timeout = Duration::from_secs(args.script_timeout);
    config.allow_admin = args.allow_admin;
    config.max_connections = args.max_connections;
    config.header_timeout = Duration::from_secs(args.header_timeout);
    config.idle_timeout = Duration::from_secs(args.idle_timeout);

    let (signalled, mut on_signal) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        stop_signal().await;
        eprintln!("tally-gateway: stopping, finishing requests in flight");
        let _ = signalled.send(true);
    };
    let drain = Duration::from_secs(args.drain_seconds);
    let deadline = async move {
        let _ = on_signal.wait_for(|s| *s).await;
        tokio::time::sleep(drain).await;
    };
    eprintln!("tally-gateway: listening on http://{listen}");
    tokio::select! {
        served = tally_gateway::serve(listener, config, shutdown) => match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tally-gateway: {e}");
                ExitCode::FAILURE
            }
        },
        () = deadline => {
            eprintln!("tally-gateway: requests still in flight after {}s; exiting", drain.as_secs());
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM (how containers and `make dev` stop us) or Ctrl-C.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
