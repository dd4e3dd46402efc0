//! Typed configuration of `kappa dev`, built from the command line in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;

use kappa_actions::ActionConfig;

/// Everything `kappa dev` runs with.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded log and store, and of the views.
    pub data_dir: PathBuf,
    /// Partitions of a topic created by its first ingest.
    pub partitions: u32,
    /// Accepted bearer keys; empty: no authentication (loopback only).
    pub api_keys: Vec<String>,
    /// Process invocations run at once.
    pub workers: usize,
    /// Largest ingest body, bytes.
    pub ingest_limit: usize,
    /// Safety-net tick period, ms.
    pub tick_ms: u64,
    /// Messages buffered per websocket/SSE subscriber before it is considered behind.
    pub subscriber_buffer: usize,
    /// Most connections open at once (past it: 503 and closed).
    pub max_connections: usize,
    /// Most push streams one API key holds open (past it: 429).
    pub max_streams_per_key: usize,
    /// Most registered queries one API key holds (past it: 429).
    pub max_queries_per_key: usize,
    /// Most topics of the embedded log (a directory and files each; idle ones hold no
    /// descriptors).
    pub max_topics: usize,
    /// Messages kept per query for resuming subscribers.
    pub ring: usize,
    /// The embedded log and store `fsync` each write before acknowledging it (they survive a
    /// power cut); without, they survive a crash of the process (`kill -9`), like Kafka's
    /// default of leaving the flush to the operating system.
    pub fsync: bool,
    /// Real Kafka instead of the embedded log.
    pub kafka_brokers: Option<String>,
    /// Real Redis instead of the embedded store.
    pub redis_url: Option<String>,
    /// Key prefix in Redis.
    pub redis_prefix: String,
    /// The handlers' knobs (limits, batch sizes, webhooks).
    pub action: ActionConfig,
}

impl Default for DevConfig {
    fn default() -> Self {
        DevConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./.kappa"),
            partitions: 4,
            api_keys: Vec::new(),
            workers: 4,
            ingest_limit: 16 << 20,
            tick_ms: 1000,
            subscriber_buffer: 256,
            max_connections: 4_096,
            max_streams_per_key: kappa_push::quota::STREAMS_PER_KEY,
            max_queries_per_key: crate::quota::QUERIES_PER_KEY,
            max_topics: 1_000,
            ring: 1024,
            fsync: false,
            kafka_brokers: None,
            redis_url: None,
            redis_prefix: "kappa".into(),
            action: dev_action_config(),
        }
    }
}

/// The handlers' configuration in `kappa dev`: links are named after the in-process actions.
pub fn dev_action_config() -> ActionConfig {
    ActionConfig {
        process_action: "process".into(),
        push_action: "push".into(),
        // The scheduler runs one batch per job, so that queries take turns on the workers.
        fill_activation_percent: 0,
        ..ActionConfig::default()
    }
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Listening beyond loopback without any key would expose every query and record.
    #[error("refusing to listen on non-loopback address {0} without an API key (pass --api-key)")]
    OpenWithoutKeys(SocketAddr),
    /// A value out of range.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

impl DevConfig {
    /// Check the configuration before anything starts.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.api_keys.is_empty() {
            return Err(ConfigError::OpenWithoutKeys(self.listen));
        }
        if self.partitions == 0 {
            return Err(ConfigError::Invalid("--partitions (must be at least 1)"));
        }
        if self.workers == 0 {
            return Err(ConfigError::Invalid("--workers (must be at least 1)"));
        }
        if self.api_keys.iter().any(|k| k.trim().is_empty()) {
            return Err(ConfigError::Invalid("--api-key (must not be empty)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_key() {
        let mut c =
            DevConfig { listen: "0.0.0.0:8080".parse().expect("addr"), ..Default::default() };
        assert_eq!(c.check(), Err(ConfigError::OpenWithoutKeys(c.listen)));
        c.api_keys.push("k".into());
        assert_eq!(c.check(), Ok(()));
        assert_eq!(DevConfig::default().check(), Ok(()));
    }
}
