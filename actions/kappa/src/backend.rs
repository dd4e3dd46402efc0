//! The log and the store `kappa dev` runs on: embedded by default, Kafka and Redis on request.

use std::sync::Arc;

use kappa_core::ports::{LogReader, LogWriter, PortError, StateStore};
use kappa_log_embedded::{EmbeddedLog, EmbeddedLogConfig};
use kappa_log_kafka::{KafkaLog, KafkaLogConfig};
use kappa_state_embedded::EmbeddedStore;
use kappa_state_redis::{RedisStore, RedisStoreConfig};
use tokio::sync::broadcast;

use crate::config::DevConfig;

/// A log that is read and written.
pub trait Log: LogReader + LogWriter {
    /// Topics this process keeps, when it keeps them itself (the embedded log has a directory
    /// and files per partition); `None` when a cluster holds them (Kafka limits its own).
    fn topic_count(&self) -> Option<usize> {
        None
    }

    /// Close the files no read or append used since the previous call (see
    /// [`IDLE_FILE_SWEEP`]); how many were closed.
    fn release_idle_files(&self) -> usize {
        0
    }
}
impl Log for EmbeddedLog {
    fn topic_count(&self) -> Option<usize> {
        Some(EmbeddedLog::topic_count(self))
    }

    fn release_idle_files(&self) -> usize {
        EmbeddedLog::release_idle_files(self)
    }
}

/// How often `kappa dev` closes the log files unused since the last sweep, so that an idle
/// topic gives its descriptors back within one to two periods.
pub const IDLE_FILE_SWEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Sweep idle log files every [`IDLE_FILE_SWEEP`] for as long as the log is in use.
pub fn spawn_idle_file_sweeper(log: &Arc<dyn Log>) {
    let log = Arc::downgrade(log);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(IDLE_FILE_SWEEP);
        interval.tick().await;
        loop {
            interval.tick().await;
            let Some(log) = log.upgrade() else { return };
            let closed = log.release_idle_files();
            if closed > 0 {
                tracing::debug!(closed, "closed idle log files");
            }
        }
    });
}
impl Log for KafkaLog {}
impl Log for kappa_core::ports::MemoryLog {}

/// The opened backends.
pub struct Backends {
    /// The log.
    pub log: Arc<dyn Log>,
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// Append notifications `(topic, partition, high)`, when the log has them (embedded).
    pub appends: Option<broadcast::Receiver<(String, u32, i64)>>,
    /// What runs, for the startup line.
    pub describe: String,
}

/// Open the log and the store the configuration names.
pub async fn open(config: &DevConfig) -> Result<Backends, PortError> {
    let io = |what: &str, e: std::io::Error| {
        PortError::permanent("kappa-dev", format!("{what} {}: {e}", config.data_dir.display()))
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| io("create", e))?;
    let (log, appends, log_name): (Arc<dyn Log>, _, String) = match &config.kafka_brokers {
        Some(brokers) => {
            let log =
                KafkaLog::connect(KafkaLogConfig { brokers: brokers.clone(), extra: vec![] })?;
            (Arc::new(log), None, format!("kafka {brokers}"))
        }
        None => {
            let dir = config.data_dir.join("log");
            let log = EmbeddedLog::open(
                &dir,
                EmbeddedLogConfig { fsync: config.fsync, ..EmbeddedLogConfig::default() },
            )?;
            let appends = log.subscribe();
            (Arc::new(log), Some(appends), format!("embedded log {}", dir.display()))
        }
    };
    let (store, store_name): (Arc<dyn StateStore>, String) = match &config.redis_url {
        Some(url) => {
            let store = RedisStore::connect(
                url,
                RedisStoreConfig { key_prefix: config.redis_prefix.clone(), ring: config.ring },
            )
            .await?;
            let name = format!("{store:?}");
            (Arc::new(store), name)
        }
        None => {
            let path = config.data_dir.join("state.redb");
            let store = EmbeddedStore::open_with(&path, config.ring, config.fsync)?;
            (Arc::new(store), format!("embedded store {}", path.display()))
        }
    };
    let embedded = config.kafka_brokers.is_none() || config.redis_url.is_none();
    let durability = match (embedded, config.fsync) {
        (false, _) => "",
        (true, true) => "; fsync on every write",
        (true, false) => "; no fsync: survives kill -9, not a power cut (--fsync)",
    };
    Ok(Backends { log, store, appends, describe: format!("{log_name}; {store_name}{durability}") })
}
