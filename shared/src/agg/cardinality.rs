//! `cardinality`: an approximate count of distinct values, as a HyperLogLog++ sketch
//! ([`Cardinality`], see `sketch::hll`) of the values' hashes.
//!
//! Algebra: [`Algebra::Sketch`]. The count is an estimate within the sketch's error bound, but
//! merges are exact: the state is a function of the set of hashes inserted, so identity,
//! associativity and commutativity hold with `==`.

use serde_json::{Value, json};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::Algebra;
use crate::eval::Doc;
use crate::request::FieldRef;
use crate::scan::Scalar;
use crate::sketch::hll::Cardinality;
use crate::value::TermKey;

pub(super) const ALGEBRA: Algebra = Algebra::Sketch;

/// Estimated heap bytes of the state (a sketch's size is bounded).
pub(super) const HEAP_BYTES: usize = 256;

/// Seed of `cardinality` hashes ("kappa"); changing it changes stored sketches.
const HASH_SEED: u64 = 0x006b_6170_7061;

/// Hash of a value: typed, so `"1"` and `1` differ, and `1.0` equals `1`.
#[inline]
fn value_hash(v: &Scalar<'_>) -> Option<u64> {
    const SEED: u64 = HASH_SEED;
    Some(match v {
        // Hash strings without allocating a key (the same hash as their `TermKey::Str`).
        Scalar::Str(s) => xxh3_64_with_seed(s.as_bytes(), SEED),
        other => match TermKey::from_scalar(other)? {
            TermKey::Str(s) => xxh3_64_with_seed(s.as_bytes(), SEED),
            TermKey::Int(i) => xxh3_64_with_seed(&i.to_le_bytes(), SEED ^ 1),
            TermKey::Float(bits) => xxh3_64_with_seed(&bits.to_le_bytes(), SEED ^ 2),
            TermKey::Bool(b) => xxh3_64_with_seed(&[u8::from(b)], SEED ^ 3),
        },
    })
}

pub(super) fn zero(precision_threshold: u32) -> Cardinality {
    Cardinality::new(precision_threshold)
}

#[inline]
pub(super) fn fold(field: &FieldRef, c: &mut Cardinality, doc: &Doc<'_, '_>) {
    doc.values(field).iter().filter_map(value_hash).for_each(|h| c.insert_hash(h));
}

pub(super) fn render(c: &Cardinality) -> Value {
    json!({"value": c.estimate()})
}

/// The value a `terms` order reads.
pub(super) fn order_value(c: &Cardinality) -> f64 {
    c.estimate() as f64
}
