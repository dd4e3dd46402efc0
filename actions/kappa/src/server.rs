//! Assembling and starting `kappa dev`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kappa_core::ports::{MemoryLog, MemoryStore, PortError};
use kappa_runtime::http::ReqwestHttp;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backend::{self, Log};
use crate::config::{ConfigError, DevConfig};
use crate::quota::QueryQuota;
use crate::scheduler::{self, Core, SchedulerConfig};
use crate::views::{self, Views};
use kappa_push::stream::Streams;

/// The HTTP layer's knobs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Accepted bearer keys (empty: none needed).
    pub api_keys: Vec<String>,
    /// Largest ingest body, bytes.
    pub ingest_limit: usize,
    /// Partitions of a topic created by ingest.
    pub partitions: u32,
    /// Messages buffered per subscriber.
    pub subscriber_buffer: usize,
    /// Most topics (new ones past it: 400).
    pub max_topics: usize,
}

impl ServerConfig {
    fn from_dev(c: &DevConfig) -> Self {
        ServerConfig {
            api_keys: c.api_keys.clone(),
            ingest_limit: c.ingest_limit,
            partitions: c.partitions,
            subscriber_buffer: c.subscriber_buffer,
            max_topics: c.max_topics,
        }
    }
}

/// The state of the HTTP API.
pub struct Server {
    /// The adapters and the scheduler's chain.
    pub core: Arc<Core>,
    /// Knobs.
    pub config: ServerConfig,
    /// Named views.
    pub views: Views,
    /// Websocket and SSE subscribers.
    pub streams: Arc<Streams>,
    /// Wakes the queries of a topic after an ingest, when the log does not announce its
    /// appends itself (the embedded log does: one wake-up per append, not two).
    pub(crate) wake: Option<mpsc::UnboundedSender<String>>,
    /// Next partition for keyless records.
    pub(crate) round_robin: AtomicU64,
    /// Queries per API key.
    pub(crate) queries: QueryQuota,
    /// Held while a topic is created, so that concurrent ingests cannot pass `max_topics`.
    pub(crate) topic_creation: tokio::sync::Mutex<()>,
}

/// Why `kappa dev` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The log or the store could not be opened.
    #[error(transparent)]
    Backend(#[from] PortError),
    /// The views file is unreadable.
    #[error("views: {0}")]
    Views(String),
    /// The address cannot be bound.
    #[error("listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// Build the core and start the scheduler and the view switcher (needs a tokio runtime).
fn assemble(
    log: Arc<dyn Log>,
    store: Arc<dyn kappa_core::ports::StateStore>,
    appends: Option<tokio::sync::broadcast::Receiver<(String, u32, i64)>>,
    config: &DevConfig,
    views: Views,
) -> Result<Arc<Server>, StartError> {
    let http = ReqwestHttp::new(Duration::from_secs(10))?;
    let (core, jobs) = Core::new(log, store, http, config.action.clone());
    let core = Arc::new(core);
    let (wake_tx, wake_rx) = mpsc::unbounded_channel();
    let ingest_wakes = appends.is_none().then(|| wake_tx.clone());
    scheduler::run(
        core.clone(),
        jobs,
        SchedulerConfig { workers: config.workers, tick_ms: config.tick_ms },
        appends,
        wake_tx.clone(),
        wake_rx,
    );
    let streams = Arc::new(Streams::new(
        core.store.clone(),
        core.hub.clone(),
        config.subscriber_buffer,
        config.max_streams_per_key,
    ));
    let server = Arc::new(Server {
        streams,
        core,
        config: ServerConfig::from_dev(config),
        views,
        wake: ingest_wakes,
        round_robin: AtomicU64::new(0),
        queries: QueryQuota::new(config.max_queries_per_key),
        topic_creation: tokio::sync::Mutex::new(()),
    });
    views::run(server.clone());
    Ok(server)
}

impl Server {
    /// A server over the in-memory log and store (tests of [`crate::api::app`]).
    pub fn in_memory(config: &DevConfig) -> Result<Arc<Server>, StartError> {
        let views = Views::load(None).map_err(StartError::Views)?;
        assemble(
            Arc::new(MemoryLog::default()),
            Arc::new(MemoryStore::new(config.ring)),
            None,
            config,
            views,
        )
    }
}

/// A running server.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Its state.
    pub server: Arc<Server>,
    /// What it runs on.
    pub describe: String,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stop serving (in-flight requests finish).
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }

    /// Serve until the server stops.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Open the backends, start the scheduler and serve the API on `config.listen`.
pub async fn start(config: DevConfig) -> Result<Running, StartError> {
    config.check()?;
    let backends = backend::open(&config).await?;
    let views = Views::load(Some(config.data_dir.join("views.json"))).map_err(StartError::Views)?;
    backend::spawn_idle_file_sweeper(&backends.log);
    let server = assemble(backends.log, backends.store, backends.appends, &config, views)?;
    // Resume every query at once instead of at the first tick.
    let resume = server.core.clone();
    tokio::spawn(async move {
        if let Err(e) = kappa_actions::tick::tick(&resume.env(), None).await {
            tracing::warn!(error = %e, "startup tick failed");
        }
    });
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let app = crate::api::app(server.clone());
    let (shutdown, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        kappa_push::listen::serve(listener, app, config.max_connections, async move {
            let _ = rx.await;
        })
        .await;
    });
    Ok(Running { addr, server, describe: backends.describe, shutdown, task })
}
