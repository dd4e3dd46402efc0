//! The bucket aggregations chosen by a condition: `filter`, `missing` and `global` (one bucket,
//! [`AggState::Single`]) and `filters` (a bucket per named query, then the `other` bucket,
//! [`AggState::Buckets`]).
//!
//! Algebra: [`Algebra::Buckets`]. Merge adds the doc counts bucket by bucket
//! ([`merge_each`](super::merge_each), or [`Bucket::merge`] for one) and merges their
//! sub-states, each by its own algebra.

use serde_json::{Map, Value, json};

use super::{AggState, Algebra, Bucket, FoldCtx, Origin, RenderCtx, bucket_json, keyed_or_list};
use crate::error::QueryError;
use crate::eval::{Doc, matches};
use crate::request::{Agg, AggKind, FieldRef, Query};
use crate::scan::Scalar;

pub(super) const ALGEBRA: Algebra = Algebra::Buckets;

/// `filter`, `missing`, `global`.
pub(super) fn zero_single(agg: &Agg) -> AggState {
    AggState::Single(Box::new(Bucket::empty(&agg.subs)))
}

/// `filters`: one bucket per filter, and the other bucket last when asked for.
pub(super) fn zero_filters(agg: &Agg, filters: usize, other: bool) -> AggState {
    AggState::Buckets(vec![Bucket::empty(&agg.subs); filters + usize::from(other)])
}

/// `filter`: the documents its query matches.
#[inline]
pub(super) fn fold_filter(
    agg: &Agg,
    query: &Query,
    b: &mut Bucket,
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    if matches(query, doc) {
        b.fold(&agg.subs, doc, ctx)?;
    }
    Ok(())
}

/// `missing`: the documents without a non-null value of the field.
#[inline]
pub(super) fn fold_missing(
    agg: &Agg,
    field: &FieldRef,
    b: &mut Bucket,
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    if doc.values(field).iter().all(|v| matches!(v, Scalar::Null)) {
        b.fold(&agg.subs, doc, ctx)?;
    }
    Ok(())
}

/// `filters`: the document in each bucket whose query matches it, else in the other bucket.
#[inline]
pub(super) fn fold_filters(
    agg: &Agg,
    buckets: &mut [Bucket],
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    let AggKind::Filters { filters, other_bucket_key, .. } = &agg.kind else {
        unreachable!("a filters fold belongs to a filters aggregation")
    };
    let mut any = false;
    for ((_, q), b) in filters.iter().zip(buckets.iter_mut()) {
        if matches(q, doc) {
            any = true;
            b.fold(&agg.subs, doc, ctx)?;
        }
    }
    if !any
        && other_bucket_key.is_some()
        && let Some(b) = buckets.last_mut()
    {
        b.fold(&agg.subs, doc, ctx)?;
    }
    Ok(())
}

/// `filter`, `missing`, `global`: the bucket itself.
pub(super) fn render_single(
    agg: &Agg,
    b: &Bucket,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    ctx.count(1)?;
    bucket_json(&agg.subs, b, Map::new(), Origin::Collected, ctx)
}

/// `filters`: buckets named by their filters, always under `buckets`.
pub(super) fn render_filters(
    agg: &Agg,
    buckets: &[Bucket],
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    let AggKind::Filters { filters, keyed, other_bucket_key } = &agg.kind else {
        unreachable!("a filters render belongs to a filters aggregation")
    };
    ctx.count(buckets.len())?;
    let names =
        filters.iter().map(|(k, _)| k.clone().unwrap_or_default()).chain(other_bucket_key.clone());
    let entries = names.zip(buckets).map(|(name, b)| (name, Map::new(), b));
    let v = keyed_or_list(&agg.subs, entries, *keyed, Origin::Collected, ctx)?;
    // filters always wraps its buckets, keyed or not.
    Ok(match v {
        Value::Object(mut m) if m.contains_key("buckets") => {
            m.remove("buckets").map_or(Value::Null, |b| json!({"buckets": b}))
        }
        other => other,
    })
}
