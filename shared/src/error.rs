//! Errors of the core, shaped like Elasticsearch's so the HTTP layer can answer them verbatim.
//!
//! Every error says whether retrying the same call could succeed ([`QueryError::is_retryable`],
//! [`StateError::is_retryable`]): bad queries and corrupt states never heal by themselves, so the
//! chain must fail them instead of re-invoking.

use serde_json::{Value, json};

/// The Elasticsearch error `type` of a [`QueryError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body is not valid query JSON, or uses an unknown or unsupported construct.
    Parsing,
    /// A known construct with a value that is out of range or inconsistent.
    IllegalArgument,
    /// A result would exceed the bucket limit.
    TooManyBuckets,
    /// A query's partial state outgrew its memory budget.
    CircuitBreaking,
    /// The request body is over its size limit (HTTP 413).
    TooLarge,
}

impl ErrorKind {
    /// The Elasticsearch `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Parsing => "parsing_exception",
            ErrorKind::IllegalArgument => "illegal_argument_exception",
            ErrorKind::TooManyBuckets => "too_many_buckets_exception",
            ErrorKind::CircuitBreaking => "circuit_breaking_exception",
            ErrorKind::TooLarge => "content_too_long_exception",
        }
    }

    /// The HTTP status Elasticsearch answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Parsing | ErrorKind::IllegalArgument => 400,
            ErrorKind::TooManyBuckets => 400,
            ErrorKind::CircuitBreaking => 429,
            ErrorKind::TooLarge => 413,
        }
    }
}

/// A query that cannot be accepted or computed: `reason` names the problem, `path` the JSON path
/// of the offending part of the request body (dotted, e.g. `aggs.tags.terms`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason} (at {path})", kind.as_str())]
pub struct QueryError {
    /// Elasticsearch error type.
    pub kind: ErrorKind,
    /// Human-readable reason, in Elasticsearch's wording style (`[terms] unknown field [sizee]`).
    pub reason: String,
    /// Dotted JSON path of the problem in the request body; empty for the whole body.
    pub path: String,
}

impl QueryError {
    /// A `parsing_exception` at `path`.
    pub fn parsing(path: &str, reason: impl Into<String>) -> Self {
        QueryError { kind: ErrorKind::Parsing, reason: reason.into(), path: path.to_string() }
    }

    /// An `illegal_argument_exception` at `path`.
    pub fn illegal(path: &str, reason: impl Into<String>) -> Self {
        QueryError {
            kind: ErrorKind::IllegalArgument,
            reason: reason.into(),
            path: path.to_string(),
        }
    }

    /// Whether the same request could succeed later: never for a bad query; a blown budget
    /// or bucket limit is a property of the data, so retrying the same batch fails again.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// The Elasticsearch-style error body: `{"error":{"type","reason","path"},"status"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "error": { "type": self.kind.as_str(), "reason": self.reason, "path": self.path },
            "status": self.kind.status(),
        })
    }
}

/// A stored partial state that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The bytes were written by another state format version.
    #[error("partial state format version {found} is not {expected}")]
    Version {
        /// Version byte found.
        found: u8,
        /// Version this build reads.
        expected: u8,
    },
    /// The bytes were written for another query.
    #[error("partial state belongs to query {found}, not {expected}")]
    WrongQuery {
        /// Query id found in the state.
        found: String,
        /// Query id expected.
        expected: String,
    },
    /// The bytes are not a valid state.
    #[error("corrupt partial state: {0}")]
    Corrupt(String),
    /// Two states of different queries or shapes were merged.
    #[error("cannot merge partial states of different shapes")]
    ShapeMismatch,
}

impl StateError {
    /// Decoding the same bytes again fails the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
