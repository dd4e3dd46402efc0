//! `top_hits`: the best `size` documents under the aggregation's sort ([`TopHits`], shared with
//! the request's own hits in `hits.rs`).
//!
//! Algebra: [`Algebra::SemigroupOnly`]. Merge keeps the best `size` of both sides under a total
//! order that ends in `@offset`, `@partition` (no two hits tie), so the laws hold with `==`;
//! but what it drops cannot be recovered: there is no inverse, only the records again.

use serde_json::{Value, json};

use super::{Algebra, FoldCtx, RenderCtx};
use crate::error::QueryError;
use crate::eval::Doc;
use crate::hits::TopHits;
use crate::request::{AggKind, SortSpec, SourceFilter};

pub(super) const ALGEBRA: Algebra = Algebra::SemigroupOnly;

/// Offer the document; the memory budget follows the hits kept.
#[inline]
pub(super) fn fold(
    top: &mut TopHits,
    size: usize,
    sort: &[SortSpec],
    source: &SourceFilter,
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    let delta = top.add(doc, size, sort, source);
    ctx.grow(delta)
}

/// Keep the best `size` of both.
pub(super) fn merge(kind: &AggKind, top: &mut TopHits, other: &TopHits) {
    if let AggKind::TopHits { size, sort, .. } = kind {
        top.merge(other, *size, sort);
    }
}

pub(super) fn heap_bytes(top: &TopHits) -> usize {
    super::STATE_BYTES + top.heap_bytes()
}

pub(super) fn render(
    top: &TopHits,
    sort: &[SortSpec],
    source: &SourceFilter,
    ctx: &RenderCtx<'_>,
) -> Value {
    json!({"hits": top.render(ctx.topic, sort, source)})
}
