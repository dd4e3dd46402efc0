//! `histogram` (buckets keyed by index: `floor((x - offset) / interval)`) and `date_histogram`
//! (keyed by bucket start, epoch ms, in the aggregation's time zone): one ordered map of
//! buckets. Only buckets with documents are kept; empty ones are filled in when rendering.
//!
//! Algebra: [`Algebra::Buckets`]. Merge unions the keys, adds their doc counts and merges their
//! sub-states, each by its own algebra.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{
    Algebra, Bucket, FoldCtx, Origin, RenderCtx, bucket_bytes, field_format, keyed_or_list,
};
use crate::date::{self, TimeZone};
use crate::error::QueryError;
use crate::eval::{Doc, date_millis};
use crate::request::{Agg, AggKind, DateInterval};
use crate::value::{double_json, java_double, numeric};

pub(super) const ALGEBRA: Algebra = Algebra::Buckets;

/// The buckets of either kind, by key.
pub(super) type Histogram = BTreeMap<i64, Bucket>;

/// The start of the `date_histogram` bucket holding `ms` (the fold's key; the render's bounds).
#[inline]
fn date_floor(interval: &DateInterval, offset: i64, time_zone: &TimeZone, ms: i64) -> i64 {
    match interval {
        DateInterval::Calendar(unit) => {
            date::calendar_floor(ms - offset, *unit, time_zone) + offset
        }
        DateInterval::Fixed(iv) => date::fixed_floor(ms, *iv, offset, time_zone),
    }
}

/// `histogram`: count the document in the bucket of each of its numbers.
#[inline]
pub(super) fn fold(
    agg: &Agg,
    map: &mut Histogram,
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    let AggKind::Histogram { field, interval, offset, hard_bounds, .. } = &agg.kind else {
        unreachable!("a histogram fold belongs to a histogram aggregation")
    };
    let mut idx: Vec<i64> = Vec::new();
    for x in doc.values(field).iter().filter_map(numeric) {
        let n = ((x - offset) / interval).floor();
        // hard_bounds limit buckets, not values: Elasticsearch keeps a value when
        // `index * interval` (the offset left out) lies within the bounds.
        let start = n * interval;
        if let Some(b) = hard_bounds
            && (b.min.is_some_and(|m| start < m) || b.max.is_some_and(|m| start > m))
        {
            continue;
        }
        // Bucket indexes are exact as i64 (every f64 past 2^53 is an integer); a value
        // whose bucket lies past that fails the query visibly instead of vanishing.
        if n.abs() < 9.2e18 {
            idx.push(n as i64);
        } else {
            return Err(QueryError::illegal(
                &format!("aggs.{}.histogram", agg.name),
                format!(
                    "the value {x} falls in bucket {n:e} of interval {interval}: past the ±9.2e18 buckets a histogram can key; use a larger interval"
                ),
            ));
        }
    }
    fold_indexed(agg, map, &mut idx, doc, ctx)
}

/// `date_histogram`: count the document in the bucket of each of its dates.
#[inline]
pub(super) fn fold_date(
    agg: &Agg,
    map: &mut Histogram,
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    let AggKind::DateHistogram { field, interval, offset, time_zone, format, .. } = &agg.kind
    else {
        unreachable!("a date_histogram fold belongs to a date_histogram aggregation")
    };
    let start = |ms: i64| date_floor(interval, *offset, time_zone, ms);
    match doc.values(field) {
        // One value (a record's time): no list to build.
        [one] => {
            if let Some(ms) = date_millis(one, format.as_ref()) {
                fold_indexed(agg, map, &mut [start(ms)], doc, ctx)?;
            }
            Ok(())
        }
        values => {
            let mut starts: Vec<i64> =
                values.iter().filter_map(|v| date_millis(v, format.as_ref())).map(start).collect();
            fold_indexed(agg, map, &mut starts, doc, ctx)
        }
    }
}

/// Count a document once in each distinct bucket of `keys`.
#[inline]
fn fold_indexed(
    agg: &Agg,
    map: &mut Histogram,
    keys: &mut [i64],
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    keys.sort_unstable();
    for (i, &k) in keys.iter().enumerate() {
        if i > 0 && keys[i - 1] == k {
            continue;
        }
        let bucket = match map.get_mut(&k) {
            Some(b) => b,
            None => {
                ctx.grow(bucket_bytes(&agg.subs) as isize)?;
                map.entry(k).or_insert_with(|| Bucket::empty(&agg.subs))
            }
        };
        bucket.fold(&agg.subs, doc, ctx)?;
    }
    Ok(())
}

/// Returns the growth (see [`super::merge`]).
pub(super) fn merge(subs: &[Agg], x: &mut Histogram, y: &Histogram) -> isize {
    let mut grown = 0;
    for (k, bucket) in y {
        match x.get_mut(k) {
            Some(mine) => grown += mine.merge(subs, bucket),
            None => {
                grown += bucket.heap_bytes(subs) as isize;
                x.insert(*k, bucket.clone());
            }
        }
    }
    grown
}

pub(super) fn heap_bytes(subs: &[Agg], map: &Histogram) -> usize {
    super::STATE_BYTES + map.values().map(|b| b.heap_bytes(subs)).sum::<usize>()
}

/// `histogram`: the buckets from the first to the last key (with `min_doc_count: 0`, widened by
/// `extended_bounds` and cut by `hard_bounds`), or those with enough documents.
pub(super) fn render(
    agg: &Agg,
    map: &Histogram,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    let AggKind::Histogram {
        interval,
        offset,
        min_doc_count,
        extended_bounds,
        hard_bounds,
        keyed,
        ..
    } = &agg.kind
    else {
        unreachable!("a histogram render belongs to a histogram aggregation")
    };
    let to_idx = |x: f64| ((x - offset) / interval).floor() as i64;
    let mut lo = map.keys().next().copied();
    let mut hi = map.keys().next_back().copied();
    if *min_doc_count == 0 {
        if let Some(b) = extended_bounds {
            lo = min_opt(lo, b.min.map(to_idx));
            hi = max_opt(hi, b.max.map(to_idx));
        }
        // The bucket indexes hard_bounds admit, by the rule the fold applies.
        if let Some(b) = hard_bounds {
            let first = |m: f64| (m / interval).ceil() as i64;
            let last = |m: f64| (m / interval).floor() as i64;
            lo = lo.map(|l| b.min.map_or(l, |m| l.max(first(m))));
            hi = hi.map(|h| b.max.map_or(h, |m| h.min(last(m))));
        }
    }
    let keys = filled_keys(map, *min_doc_count, lo, hi, |k| k + 1, ctx)?;
    let entries = keys.into_iter().map(|k| {
        let key = k as f64 * interval + offset;
        let mut head = Map::new();
        head.insert("key".into(), double_json(key));
        (java_double(key), head, k)
    });
    histogram_json(agg, map, entries, *keyed, ctx)
}

/// `date_histogram`: as [`render`], bucket by calendar or fixed interval.
pub(super) fn render_date(
    agg: &Agg,
    map: &Histogram,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    let AggKind::DateHistogram {
        interval,
        offset,
        time_zone,
        format,
        min_doc_count,
        extended_bounds,
        keyed,
        ..
    } = &agg.kind
    else {
        unreachable!("a date_histogram render belongs to a date_histogram aggregation")
    };
    let floor = |ms: i64| date_floor(interval, *offset, time_zone, ms);
    let next = |start: i64| match interval {
        DateInterval::Calendar(unit) => {
            date::calendar_next(start - offset, *unit, time_zone) + offset
        }
        DateInterval::Fixed(iv) => {
            let n = date::fixed_floor(start + iv, *iv, *offset, time_zone);
            if n > start { n } else { start + iv }
        }
    };
    let mut lo = map.keys().next().copied();
    let mut hi = map.keys().next_back().copied();
    if *min_doc_count == 0
        && let Some(b) = extended_bounds
    {
        lo = min_opt(lo, b.min.map(|m| floor(m as i64)));
        hi = max_opt(hi, b.max.map(|m| floor(m as i64)));
    }
    let keys = filled_keys(map, *min_doc_count, lo, hi, next, ctx)?;
    let fmt = field_format(format);
    let entries = keys.into_iter().map(|k| {
        let s = fmt.format_millis(k, time_zone);
        let mut head = Map::new();
        head.insert("key_as_string".into(), json!(s));
        head.insert("key".into(), json!(k));
        (s, head, k)
    });
    histogram_json(agg, map, entries, *keyed, ctx)
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// The keys a histogram renders: with min_doc_count 0 every key from lo to hi, else the keys
/// with enough documents. Checks the bucket limit before materialising.
fn filled_keys(
    map: &Histogram,
    min_doc_count: u64,
    lo: Option<i64>,
    hi: Option<i64>,
    next: impl Fn(i64) -> i64,
    ctx: &mut RenderCtx<'_>,
) -> Result<Vec<i64>, QueryError> {
    if min_doc_count > 0 {
        let keys: Vec<i64> =
            map.iter().filter(|(_, b)| b.doc_count >= min_doc_count).map(|(k, _)| *k).collect();
        ctx.count(keys.len())?;
        return Ok(keys);
    }
    let (Some(lo), Some(hi)) = (lo, hi) else { return Ok(Vec::new()) };
    let mut keys = Vec::new();
    let mut k = lo;
    while k <= hi {
        ctx.count(1)?;
        keys.push(k);
        let n = next(k);
        if n <= k {
            break;
        }
        k = n;
    }
    Ok(keys)
}

fn histogram_json(
    agg: &Agg,
    map: &Histogram,
    entries: impl Iterator<Item = (String, Map<String, Value>, i64)>,
    keyed: bool,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    let empty = Bucket::empty(&agg.subs);
    let entries: Vec<(String, Map<String, Value>, &Bucket)> =
        entries.map(|(s, h, k)| (s, h, map.get(&k).unwrap_or(&empty))).collect();
    keyed_or_list(&agg.subs, entries.into_iter(), keyed, Origin::Filled, ctx)
}
