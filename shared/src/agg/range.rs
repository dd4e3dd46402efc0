//! `range` and `date_range`: a bucket per requested range (from inclusive, to exclusive; dates
//! as epoch ms), in request order ([`AggState::Buckets`]).
//!
//! Algebra: [`Algebra::Buckets`]. Merge adds the doc counts bucket by bucket
//! ([`merge_each`](super::merge_each)) and merges their sub-states, each by its own algebra.

use serde_json::{Map, Value, json};

use super::{AggState, Algebra, Bucket, FoldCtx, Origin, RenderCtx, field_format, keyed_or_list};
use crate::error::QueryError;
use crate::eval::{Doc, date_millis};
use crate::request::{Agg, AggKind, RangeSpec};
use crate::value::{double_json, java_double, numeric};

pub(super) const ALGEBRA: Algebra = Algebra::Buckets;

pub(super) fn zero(agg: &Agg, ranges: &[RangeSpec]) -> AggState {
    AggState::Buckets(vec![Bucket::empty(&agg.subs); ranges.len()])
}

/// `range`: the field's numbers.
#[inline]
pub(super) fn fold(
    agg: &Agg,
    buckets: &mut [Bucket],
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    let AggKind::Range { field, ranges, .. } = &agg.kind else {
        unreachable!("a range fold belongs to a range aggregation")
    };
    let xs: Vec<f64> = doc.values(field).iter().filter_map(numeric).collect();
    fold_in_ranges(agg, ranges, buckets, &xs, doc, ctx)
}

/// `date_range`: the field's dates, as epoch ms.
#[inline]
pub(super) fn fold_date(
    agg: &Agg,
    buckets: &mut [Bucket],
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    let AggKind::DateRange { field, ranges, format, .. } = &agg.kind else {
        unreachable!("a date_range fold belongs to a date_range aggregation")
    };
    let xs: Vec<f64> = doc
        .values(field)
        .iter()
        .filter_map(|v| date_millis(v, format.as_ref()))
        .map(|ms| ms as f64)
        .collect();
    fold_in_ranges(agg, ranges, buckets, &xs, doc, ctx)
}

/// Count the document once in each range that holds any of `xs`.
#[inline]
fn fold_in_ranges(
    agg: &Agg,
    ranges: &[RangeSpec],
    buckets: &mut [Bucket],
    xs: &[f64],
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    for (r, b) in ranges.iter().zip(buckets.iter_mut()) {
        if xs.iter().any(|x| r.from.is_none_or(|f| *x >= f) && r.to.is_none_or(|t| *x < t)) {
            b.fold(&agg.subs, doc, ctx)?;
        }
    }
    Ok(())
}

/// `range`: buckets keyed `from-to` unless named.
pub(super) fn render(
    agg: &Agg,
    buckets: &[Bucket],
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    let AggKind::Range { ranges, keyed, .. } = &agg.kind else {
        unreachable!("a range render belongs to a range aggregation")
    };
    ctx.count(buckets.len())?;
    let entries = ranges.iter().zip(buckets).map(|(r, b)| {
        let key = r.key.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                r.from.map_or("*".into(), java_double),
                r.to.map_or("*".into(), java_double)
            )
        });
        let mut head = Map::new();
        // Keyed range buckets are named by their key and carry no `key` field.
        if !*keyed {
            head.insert("key".into(), json!(key));
        }
        if let Some(f) = r.from {
            head.insert("from".into(), double_json(f));
        }
        if let Some(t) = r.to {
            head.insert("to".into(), double_json(t));
        }
        (key, head, b)
    });
    keyed_or_list(&agg.subs, entries, *keyed, Origin::Collected, ctx)
}

/// `date_range`: as [`render`], with the bounds also formatted as dates.
pub(super) fn render_date(
    agg: &Agg,
    buckets: &[Bucket],
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    let AggKind::DateRange { ranges, keyed, format, time_zone, .. } = &agg.kind else {
        unreachable!("a date_range render belongs to a date_range aggregation")
    };
    ctx.count(buckets.len())?;
    let fmt = field_format(format);
    let entries = ranges.iter().zip(buckets).map(|(r, b)| {
        let fs = r.from.map(|f| fmt.format_millis(f as i64, time_zone));
        let ts = r.to.map(|t| fmt.format_millis(t as i64, time_zone));
        let key = r.key.clone().unwrap_or_else(|| {
            format!("{}-{}", fs.as_deref().unwrap_or("*"), ts.as_deref().unwrap_or("*"))
        });
        let mut head = Map::new();
        if !*keyed {
            head.insert("key".into(), json!(key));
        }
        if let (Some(f), Some(s)) = (r.from, &fs) {
            head.insert("from".into(), double_json(f));
            head.insert("from_as_string".into(), json!(s));
        }
        if let (Some(t), Some(s)) = (r.to, &ts) {
            head.insert("to".into(), double_json(t));
            head.insert("to_as_string".into(), json!(s));
        }
        (key, head, b)
    });
    keyed_or_list(&agg.subs, entries, *keyed, Origin::Collected, ctx)
}
