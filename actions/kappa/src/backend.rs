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
    /// Topics this process holds open, when it holds them itself (the embedded log keeps a
    /// file per partition open); `None` when a cluster holds them (Kafka limits its own).
    fn topic_count(&self) -> Option<usize> {
        None
    }
}
impl Log for EmbeddedLog {
    fn topic_count(&self) -> Option<usize> {
        Some(EmbeddedLog::topic_count(self))
    }
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
