//! `kappa`: the local server (`kappa dev`) and the terminal client (`kappa ingest`, `kappa query`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use kappa::client::{self, Remote};
use kappa::config::{DevConfig, dev_action_config};
use kappa::demo::{self, DemoConfig, Schedule};

/// glibc's allocator functions took about a quarter of the server's CPU under push load (many
/// small, short-lived JSON values across threads; `perf`, BENCHMARKS.md); mimalloc's take less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Stream synthetic event-week tweets into a running server or a Kafka topic.
    Demo(DemoArgs),
}

#[derive(Args)]
struct FeedArgs {
    /// Peak rate multiplier during a "match" (bursts at the end of each cycle).
    #[arg(long = "demo-peak", default_value_t = 4.0)]
    peak: f64,
    /// Length of one quiet-then-match cycle, seconds.
    #[arg(long = "demo-cycle-secs", default_value_t = 60.0)]
    cycle_secs: f64,
    /// Length of the match at the end of each cycle, seconds (0: a flat rate).
    #[arg(long = "demo-match-secs", default_value_t = 15.0)]
    match_secs: f64,
    /// Generator seed.
    #[arg(long = "demo-seed", default_value_t = 2026)]
    seed: u64,
}

#[derive(Args)]
struct DemoArgs {
    /// Background rate, records per second (more during matches, see --demo-peak).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Topic.
    #[arg(long, default_value = "tweets")]
    topic: String,
    /// Write straight to this Kafka cluster instead of a server.
    #[arg(long = "kafka", conflicts_with = "server")]
    kafka: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Index of the first generated record (use a new one to avoid repeating tweets).
    #[arg(long, default_value_t = 0)]
    start_index: u64,
    #[command(flatten)]
    feed: FeedArgs,
    #[command(flatten)]
    remote: RemoteArgs,
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
    #[arg(long = "api-key", env = "KAPPA_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    api_keys: Vec<String>,
    /// Process invocations run at once (the live queries of a topic advance in one group per
    /// core, up to this many).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Largest ingest body, bytes.
    #[arg(long, default_value_t = 16 << 20)]
    ingest_limit: usize,
    /// Largest query body, bytes.
    #[arg(long, default_value_t = 64 << 10)]
    query_limit: usize,
    /// Safety-net tick period, ms (longer when a tick takes over a tenth of it: many queries).
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
    /// Messages buffered per websocket/SSE subscriber before it gets a snapshot instead.
    #[arg(long, default_value_t = 256)]
    subscriber_buffer: usize,
    /// Most connections open at once; past it a new one gets a 503 and is closed.
    #[arg(long, default_value_t = 4_096)]
    max_connections: usize,
    /// Deliver webhooks to loopback and private addresses.
    #[arg(long)]
    allow_private_webhooks: bool,
    /// fsync every write of the embedded log and store before acknowledging it, so that they
    /// survive a power cut (without: a crash of the process, like Kafka's default).
    #[arg(long)]
    fsync: bool,
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
    /// Most distinct queries registered at once (past it: 429 until others are deleted).
    #[arg(long, default_value_t = 1_000)]
    max_queries: usize,
    /// Most webhooks of one query.
    #[arg(long, default_value_t = 16)]
    max_webhooks_per_query: usize,
    /// Most registered queries one API key holds (past it: 429 until it deletes some).
    #[arg(long, default_value_t = kappa::quota::QUERIES_PER_KEY)]
    max_queries_per_key: usize,
    /// Most push streams (websocket, SSE) one API key holds open (past it: 429).
    #[arg(long, default_value_t = kappa_push::quota::STREAMS_PER_KEY)]
    max_streams_per_key: usize,
    /// Most topics of the embedded log (a new topic past it: 400); an idle topic's files are
    /// closed within a minute.
    #[arg(long, default_value_t = 1_000)]
    max_topics: usize,
    /// Stream synthetic event-week tweets into topic `tweets` (see --demo-rate).
    #[arg(long)]
    demo: bool,
    /// Background demo rate, records per second (more during matches).
    #[arg(long, default_value_t = 50.0)]
    demo_rate: f64,
    #[command(flatten)]
    feed: FeedArgs,
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

impl FeedArgs {
    fn demo_config(&self, rate: f64) -> DemoConfig {
        DemoConfig {
            schedule: Schedule {
                rate: rate.max(0.0),
                peak: self.peak.max(0.0),
                cycle_secs: self.cycle_secs,
                match_secs: self.match_secs,
            },
            seed: self.seed,
            ..DemoConfig::default()
        }
    }
}

impl DevArgs {
    fn config(self) -> DevConfig {
        let mut action = dev_action_config();
        action.allow_private_webhooks = self.allow_private_webhooks;
        action.batch_records = self.batch_records.max(1);
        action.max_queries = self.max_queries;
        action.max_webhooks_per_query = self.max_webhooks_per_query;
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
            max_connections: self.max_connections,
            max_streams_per_key: self.max_streams_per_key,
            max_queries_per_key: self.max_queries_per_key,
            max_topics: self.max_topics,
            fsync: self.fsync,
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
            kappa_push::listen::log_descriptor_limit();
            let demo = if args.demo {
                let config = args.feed.demo_config(args.demo_rate);
                let tweet_gen = demo::load_generator(&demo::base_path(), config.seed)?;
                Some((Arc::new(tweet_gen), config))
            } else {
                None
            };
            let running = kappa::start(args.config()).await.context("kappa dev")?;
            eprintln!("kappa dev listening on http://{} ({})", running.addr, running.describe);
            if let Some((tweet_gen, config)) = demo {
                eprintln!(
                    "demo: streaming tweets into topic {} at {}/s ({}x during matches)",
                    config.topic, config.schedule.rate, config.schedule.peak
                );
                let feed = demo::spawn(tweet_gen, running.server.clone(), config);
                tokio::spawn(async move {
                    match feed.await {
                        Ok(Err(e)) => tracing::error!(error = %e, "demo stopped"),
                        Err(e) => tracing::error!(error = %e, "demo task failed"),
                        Ok(Ok(_)) => {}
                    }
                });
            }
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
        Command::Demo(args) => {
            kappa_runtime::runner::init_logging();
            let mut config = args.feed.demo_config(args.rate);
            config.topic = kappa_core::Topic::new(args.topic).context("--topic")?;
            config.max_records = args.count;
            config.start_index = args.start_index;
            let tweet_gen = Arc::new(demo::load_generator(&demo::base_path(), config.seed)?);
            let (sink, target) = match &args.kafka {
                Some(brokers) => (demo::Sink::kafka(brokers)?, format!("kafka {brokers}")),
                None => {
                    let r = remote(args.remote);
                    let target = r.server.clone();
                    (demo::Sink::http(r), target)
                }
            };
            eprintln!(
                "demo: streaming tweets into {target} topic {} at {}/s ({}x during matches)",
                config.topic, config.schedule.rate, config.schedule.peak
            );
            let sent = tokio::select! {
                r = demo::run(tweet_gen, sink, config) => r.context("demo")?,
                _ = tokio::signal::ctrl_c() => 0,
            };
            if sent > 0 {
                eprintln!("demo: sent {sent} records");
            }
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
