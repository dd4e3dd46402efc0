//! Errors of the actions: each says whether re-invoking makes sense.

use kappa_core::ports::PortError;
use kappa_core::{QueryError, StateError};
use serde_json::{Value, json};

/// Why an action failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActionError {
    /// The request is invalid (answered 4xx; never retried).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A stored state cannot be read by this engine.
    #[error(transparent)]
    State(#[from] StateError),
    /// An adapter failed.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The event is malformed.
    #[error("bad event: {0}")]
    BadEvent(String),
    /// The query or topic does not exist.
    #[error("{what} [{name}] not found")]
    NotFound {
        /// `query` or `topic`.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// As many distinct queries as allowed are registered (retry once others are deleted).
    #[error(
        "too many queries: at most {limit} are registered at once (max_queries); delete unused ones"
    )]
    TooManyQueries {
        /// The limit.
        limit: usize,
    },
}

impl ActionError {
    /// Whether invoking the action again with the same event may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ActionError::Port(e) => e.is_retryable(),
            // Once other queries are deleted or reclaimed.
            ActionError::TooManyQueries { .. } => true,
            _ => false,
        }
    }

    /// HTTP status for web actions.
    pub fn status(&self) -> u16 {
        match self {
            ActionError::Query(e) => e.kind.status(),
            ActionError::BadEvent(_) => 400,
            ActionError::NotFound { .. } => 404,
            ActionError::TooManyQueries { .. } => 429,
            ActionError::Port(e) if e.is_retryable() => 503,
            _ => 500,
        }
    }

    /// Elasticsearch-style error body.
    pub fn to_json(&self) -> Value {
        match self {
            ActionError::Query(e) => e.to_json(),
            ActionError::NotFound { what: "topic", name } => json!({
                "error": {"type": "index_not_found_exception", "reason": format!("no such index [{name}]"), "index": name},
                "status": 404,
            }),
            ActionError::NotFound { what, name } => json!({
                "error": {"type": "resource_not_found_exception", "reason": format!("{what} [{name}] not found")},
                "status": 404,
            }),
            ActionError::TooManyQueries { .. } => json!({
                "error": {"type": "es_rejected_execution_exception", "reason": self.to_string(), "retryable": true},
                "status": 429,
            }),
            other => json!({
                "error": {"type": if other.is_retryable() { "unavailable_exception" } else { "exception" }, "reason": other.to_string(), "retryable": other.is_retryable()},
                "status": other.status(),
            }),
        }
    }
}
