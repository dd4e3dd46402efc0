//! Assembling and starting `kappa dev`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kappa_core::ports::{MemoryLog, MemoryStore, PortError};
use kappa_push::stream::Streams;
use kappa_runtime::http::ReqwestHttp;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backend::{self, Log};
use crate::config::{ConfigError, DevConfig};
use crate::quota::QueryQuota;
use crate::scheduler::{self, Core, SchedulerConfig};
use crate::state::{Server, ServerConfig};
use crate::views::{self, Views};

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
) -> Result<Arc<Server>, StartError> {
    let http = ReqwestHttp::new(Duration::from_secs(10))?;
    // One live group per core a worker can use: the live queries of a topic then advance on
    // every core at once (each group reads and scans the new records once).
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let live_shards = u32::try_from(cores.min(config.workers).max(1)).unwrap_or(1);
    let (core, jobs) = Core::new(log, store, http, config.action.clone(), live_shards);
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
        views: Arc::new(Views::default()),
        wake: ingest_wakes,
        round_robin: AtomicU64::new(0),
        queries: QueryQuota::new(config.max_queries_per_key),
        topic_creation: tokio::sync::Mutex::new(()),
    });
    views::run(server.core.clone(), server.views.clone());
    Ok(server)
}

impl Server {
    /// A server over the in-memory log and store (tests of [`crate::api::app`]).
    pub fn in_memory(config: &DevConfig) -> Result<Arc<Server>, StartError> {
        assemble(
            Arc::new(MemoryLog::default()),
            Arc::new(MemoryStore::new(config.ring)),
            None,
            config,
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
    backend::spawn_idle_file_sweeper(&backends.log);
    let server = assemble(backends.log, backends.store, backends.appends, &config)?;
    let imported = views::import(&server.core, &config.data_dir.join("views.json"))
        .await
        .map_err(StartError::Views)?;
    if imported > 0 {
        tracing::info!(views = imported, "views.json moved into the store");
    }
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
