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
    /// Most time a query may spend folding one record on average, in microseconds, measured
    /// over an invocation once it has folded for [`MIN_MEASURED_FOLD_MS`]: a query costlier than
    /// that (a pathological pattern) fails with `circuit_breaking_exception` instead of taking
    /// a core for ever. Ordinary queries cost 0.5–10 µs a record.
    pub max_fold_micros_per_record: u64,
    /// A top-level `terms` with at least this many keys remembers what its render showed, and
    /// the render after a live wake-up ranks only those keys and the ones the wake-up touched
    /// instead of every key ([`crate::Plan::render_after`]). A smaller one is cheaper ranked
    /// whole. `0`: always remember.
    pub terms_memo_from_keys: usize,
}

/// Folding time an invocation must have spent before its cost per record is judged: shorter
/// measurements are too coarse (a millisecond clock) and too noisy (a busy machine).
pub const MIN_MEASURED_FOLD_MS: i64 = 1_000;

/// Most memory a compiled terms `include`/`exclude` pattern may take: a pattern that needs more
/// is refused with a 400 instead of slowing every record. (`wildcard` patterns compile to a list
/// no longer than the pattern, see [`crate::wildcard`].)
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
            max_fold_micros_per_record: 1_000,
            terms_memo_from_keys: 1_024,
        }
    }
}

impl Limits {
    /// Whether `records` folded in `fold_ms` of wall time are within
    /// [`Limits::max_fold_micros_per_record`] (judged from [`MIN_MEASURED_FOLD_MS`] on).
    pub fn check_fold_cost(&self, fold_ms: i64, records: u64) -> Result<(), crate::QueryError> {
        if fold_ms < MIN_MEASURED_FOLD_MS {
            return Ok(());
        }
        let micros_per_record = fold_ms.unsigned_abs().saturating_mul(1_000) / records.max(1);
        if micros_per_record <= self.max_fold_micros_per_record {
            return Ok(());
        }
        Err(crate::QueryError {
            kind: crate::error::ErrorKind::CircuitBreaking,
            reason: format!(
                "the query costs {micros_per_record} µs of folding per record, over its budget of {} µs (max_fold_micros_per_record); simplify its patterns",
                self.max_fold_micros_per_record
            ),
            path: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fold_cost_is_judged_once_measured_long_enough() {
        let limits = Limits { max_fold_micros_per_record: 1_000, ..Limits::default() };
        assert!(limits.check_fold_cost(999, 1).is_ok(), "too short to judge");
        assert!(limits.check_fold_cost(1_000, 1_000).is_ok(), "1 ms a record is the budget");
        let e = limits.check_fold_cost(1_000, 999).expect_err("just over");
        assert_eq!(e.kind.as_str(), "circuit_breaking_exception");
        assert!(e.reason.contains("max_fold_micros_per_record"), "{}", e.reason);
        assert!(limits.check_fold_cost(5_000, 0).is_err(), "no record in 5 s");
        assert!(limits.check_fold_cost(60_000, 10_000_000).is_ok(), "6 µs a record");
    }
}
