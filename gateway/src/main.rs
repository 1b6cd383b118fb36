//! The `tally-gateway` binary: flags and environment in, a serving gateway out.

use clap::Parser;
use tokio::net::TcpListener;

/// An Upstash-compatible Redis REST gateway.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "TALLY_GATEWAY_LISTEN", default_value = "127.0.0.1:8079")]
    listen: String,
    /// Redis URL (`redis://` or `rediss://`, with an optional password).
    #[arg(long, env = "TALLY_GATEWAY_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Bearer token every request must present.
    #[arg(long, env = "TALLY_GATEWAY_TOKEN")]
    token: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let listener = match TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("tally-gateway: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let config = tally_gateway::Config {
        redis_url: args.redis_url,
        token: args.token,
    };
    eprintln!("tally-gateway: listening on http://{}", args.listen);
    match tally_gateway::serve(listener, config, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally-gateway: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
