//! Bounded mergeable sketches for approximate aggregations.
pub mod hll;
pub mod tdigest;
