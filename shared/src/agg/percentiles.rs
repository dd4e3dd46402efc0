//! `percentiles`: a t-digest ([`TDigest`], see `sketch::tdigest`) of the field's numbers.
//!
//! Algebra: [`Algebra::Sketch`]. Up to `4 × compression` distinct values the digest keeps them
//! all and merges are exact (`==`); beyond, its centroids depend on the grouping and order of
//! merges, and the laws hold only within the sketch's error bound (`sketch::tdigest`, *Merge
//! laws*).

use serde_json::{Map, Value, json};

use super::Algebra;
use crate::eval::Doc;
use crate::request::FieldRef;
use crate::sketch::tdigest::TDigest;
use crate::value::{double_json, java_double, numeric};

pub(super) const ALGEBRA: Algebra = Algebra::Sketch;

/// Estimated heap bytes of the state (a digest's size is bounded).
pub(super) const HEAP_BYTES: usize = 512;

pub(super) fn zero(compression: f64) -> TDigest {
    TDigest::new(compression)
}

#[inline]
pub(super) fn fold(field: &FieldRef, t: &mut TDigest, doc: &Doc<'_, '_>) {
    doc.values(field).iter().filter_map(numeric).for_each(|x| t.add(x));
}

pub(super) fn render(t: &TDigest, percents: &[f64], keyed: bool) -> Value {
    let value = |p: f64| t.percentile(p).map_or(Value::Null, double_json);
    if keyed {
        let m: Map<String, Value> = percents.iter().map(|p| (java_double(*p), value(*p))).collect();
        json!({"values": m})
    } else {
        json!({"values": percents.iter().map(|p| json!({"key": double_json(*p), "value": value(*p)})).collect::<Vec<_>>()})
    }
}
