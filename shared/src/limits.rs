//! Limits that keep hostile or careless queries from exhausting a small action.
//!
//! The defaults are the public contract of api.md; every limit is configurable by the deployment.

use serde::{Deserialize, Serialize};

/// Configurable limits applied when parsing a request and while folding records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted query body, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Deepest JSON nesting of a query body.
    pub max_depth: usize,
    /// Largest `size` of the request's live hits and of `top_hits`.
    pub max_size: usize,
    /// Largest `size` of a `terms` aggregation.
    pub max_terms_size: usize,
    /// Most buckets in one rendered result.
    pub max_buckets: usize,
    /// Memory budget of one query's partial state, in (estimated) bytes.
    pub max_state_bytes: usize,
    /// Longest regular expression (`terms` `include`/`exclude`), in characters: Elasticsearch's
    /// `index.max_regex_length`. Compiled patterns are bounded too ([`MAX_COMPILED_REGEX_BYTES`]).
    pub max_regex_length: usize,
}

/// Most memory a compiled pattern (regex, wildcard) and its lazy DFA may take: a pattern that
/// needs more is refused with a 400 instead of slowing every record.
pub const MAX_COMPILED_REGEX_BYTES: usize = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_depth: 32,
            max_size: 10_000,
            max_terms_size: 10_000,
            max_buckets: 65_535,
            max_state_bytes: 64 * 1024 * 1024,
            max_regex_length: 1_000,
        }
    }
}
