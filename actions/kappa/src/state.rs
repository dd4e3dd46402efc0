//! The state the HTTP API serves from: the adapters and scheduler ([`Core`]), the views, the
//! push streams and the API's own knobs and quotas. Assembled by [`crate::server`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use kappa_push::stream::Streams;
use tokio::sync::mpsc;

use crate::config::DevConfig;
use crate::quota::QueryQuota;
use crate::scheduler::Core;
use crate::views::Views;

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
    pub(crate) fn from_dev(c: &DevConfig) -> Self {
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
    pub views: Arc<Views>,
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
