//! `kappa`: the local server (`kappa dev`) and the terminal client (`kappa ingest`, `kappa query`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use kappa::client::{self, Remote};
use kappa::config::{DevConfig, dev_action_config};

#[derive(Parser)]
#[command(name = "kappa", version, about = "Live Elasticsearch-style queries over a Kafka log")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system on this machine: embedded log and store, actions in-process, the API.
    Dev(DevArgs),
    /// Send an NDJSON file to a topic.
    Ingest(IngestArgs),
    /// Post a query and print its result (with --follow, every update).
    Query(QueryArgs),
}

#[derive(Args)]
struct DevArgs {
    /// Address to listen on (non-loopback addresses need --api-key).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the embedded log and store.
    #[arg(long, default_value = "./.kappa")]
    data_dir: PathBuf,
    /// Partitions of a topic created by its first ingest.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Accepted bearer key (repeatable); every route but /healthz then needs one.
    #[arg(long = "api-key", env = "KAPPA_API_KEYS", value_delimiter = ',')]
    api_keys: Vec<String>,
    /// Process invocations run at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Largest ingest body, bytes.
    #[arg(long, default_value_t = 16 << 20)]
    ingest_limit: usize,
    /// Largest query body, bytes.
    #[arg(long, default_value_t = 64 << 10)]
    query_limit: usize,
    /// Safety-net tick period, ms.
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
    /// Messages buffered per websocket/SSE subscriber before it gets a snapshot instead.
    #[arg(long, default_value_t = 256)]
    subscriber_buffer: usize,
    /// Deliver webhooks to loopback and private addresses.
    #[arg(long)]
    allow_private_webhooks: bool,
    /// Use this Kafka cluster instead of the embedded log.
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Use this Redis instead of the embedded store.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Key prefix in Redis.
    #[arg(long, default_value = "kappa")]
    redis_prefix: String,
    /// Most records one process invocation folds.
    #[arg(long, default_value_t = 20_000)]
    batch_records: usize,
}

#[derive(Args)]
struct RemoteArgs {
    /// The server.
    #[arg(long, env = "KAPPA_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Bearer key.
    #[arg(long, env = "KAPPA_API_KEY")]
    api_key: Option<String>,
}

#[derive(Args)]
struct IngestArgs {
    /// NDJSON file (one document per line).
    file: PathBuf,
    /// Topic.
    #[arg(long, default_value = "tweets")]
    topic: String,
    /// Field path whose value keys each record.
    #[arg(long)]
    key: Option<String>,
    /// Largest body sent at once, bytes (under the server's ingest limit).
    #[arg(long, default_value_t = 8 << 20)]
    chunk_bytes: usize,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Args)]
struct QueryArgs {
    /// Query body (JSON).
    file: PathBuf,
    /// Keep printing the result after every update.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

impl DevArgs {
    fn config(self) -> DevConfig {
        let mut action = dev_action_config();
        action.allow_private_webhooks = self.allow_private_webhooks;
        action.batch_records = self.batch_records.max(1);
        action.limits.max_body_bytes = self.query_limit;
        DevConfig {
            listen: self.listen,
            data_dir: self.data_dir,
            partitions: self.partitions,
            api_keys: self.api_keys,
            workers: self.workers,
            ingest_limit: self.ingest_limit,
            tick_ms: self.tick_ms,
            subscriber_buffer: self.subscriber_buffer,
            kafka_brokers: self.kafka_brokers.filter(|s| !s.is_empty()),
            redis_url: self.redis_url.filter(|s| !s.is_empty()),
            redis_prefix: self.redis_prefix,
            action,
            ..DevConfig::default()
        }
    }
}

fn remote(r: RemoteArgs) -> Remote {
    Remote { server: r.server, api_key: r.api_key }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => {
            kappa_runtime::runner::init_logging();
            let running = kappa::start(args.config()).await.context("kappa dev")?;
            eprintln!("kappa dev listening on http://{} ({})", running.addr, running.describe);
            tokio::select! {
                () = async { let _ = tokio::signal::ctrl_c().await; } => {}
                () = running.wait() => {}
            }
        }
        Command::Ingest(args) => {
            client::ingest(
                &remote(args.remote),
                &args.file,
                &args.topic,
                args.key.as_deref(),
                args.chunk_bytes,
            )
            .await
            .context("ingest")?;
        }
        Command::Query(args) => {
            let body = std::fs::read(&args.file)
                .with_context(|| format!("read {}", args.file.display()))?;
            let mut out = std::io::stdout();
            client::query(&remote(args.remote), body, args.follow, &mut out)
                .await
                .context("query")?;
        }
    }
    Ok(())
}
