//! `kappa-gateway`: the websocket/SSE push gateway of a deployed package (see the library).

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use kappa_gateway::GatewayConfig;

/// The same allocator as `kappa dev` (many small, short-lived JSON values across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kappa-gateway",
    version,
    about = "Serve websocket/SSE subscribers of a deployed Kappa package (fed by its push action)"
)]
struct Cli {
    /// Address to listen on (non-loopback addresses need --api-key).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The deployment's Redis.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: String,
    /// Key prefix in Redis (the package's `redis_prefix`).
    #[arg(long, default_value = "kappa")]
    redis_prefix: String,
    /// Token the push action presents on /v1/internal/deltas (repeatable; at least one).
    #[arg(
        long = "push-token",
        env = "KAPPA_PUSH_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    push_tokens: Vec<String>,
    /// Accepted subscriber bearer key (repeatable).
    #[arg(long = "api-key", env = "KAPPA_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    api_keys: Vec<String>,
    /// Messages buffered per websocket/SSE subscriber before it gets a snapshot instead.
    #[arg(long, default_value_t = 256)]
    subscriber_buffer: usize,
    /// Most connections open at once; past it a new one gets a 503 and is closed.
    #[arg(long, default_value_t = 4_096)]
    max_connections: usize,
    /// Most push streams (websocket, SSE) one API key holds open (past it: 429).
    #[arg(long, default_value_t = kappa_push::quota::STREAMS_PER_KEY)]
    max_streams_per_key: usize,
    /// Largest push body, bytes.
    #[arg(long, default_value_t = 16 << 20)]
    push_limit: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    kappa_runtime::runner::init_logging();
    kappa_push::listen::log_descriptor_limit();
    let config = GatewayConfig {
        listen: args.listen,
        redis_url: args.redis_url,
        redis_prefix: args.redis_prefix,
        push_tokens: args.push_tokens,
        api_keys: args.api_keys,
        subscriber_buffer: args.subscriber_buffer,
        max_connections: args.max_connections,
        max_streams_per_key: args.max_streams_per_key,
        push_limit: args.push_limit,
    };
    let running = kappa_gateway::start(config).await.context("kappa-gateway")?;
    eprintln!("kappa-gateway listening on http://{}", running.addr);
    tokio::select! {
        () = async { let _ = tokio::signal::ctrl_c().await; } => {}
        () = running.wait() => {}
    }
    Ok(())
}
