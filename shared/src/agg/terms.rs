//! `terms`: a bucket per distinct value of a field ([`TermsMap`]). Every key seen is kept, so
//! counts stay exact; `size` and `min_doc_count` apply only when rendering.
//!
//! Algebra: [`Algebra::Buckets`]. Merge unions the keys, adds their doc counts and merges their
//! sub-states, each by its own algebra. With `min_doc_count: 0` the plan also keeps the field's
//! [`SeenTerms`], merged by union.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::{Algebra, Bucket, FoldCtx, Origin, RenderCtx, TermsMap, bucket_bytes, bucket_json};
use crate::error::QueryError;
use crate::eval::Doc;
use crate::request::{Agg, AggKind, FieldRef, Order, TermsFilter, TermsOrderKey};
use crate::value::{TermKey, TermKeyRef};

pub(super) const ALGEBRA: Algebra = Algebra::Buckets;

/// Every value of a field seen in any record, matching the query or not: the zero buckets of
/// `terms` with `min_doc_count: 0`, which Elasticsearch lists from the index's terms. A set,
/// merged by union, so identity, associativity and commutativity hold as for the buckets.
pub(crate) type SeenTerms = BTreeSet<TermKey>;

/// Estimated heap bytes of one seen key beyond its text.
pub(crate) const SEEN_KEY_OVERHEAD: usize = 32;

/// The fields of every `terms` aggregation with `min_doc_count: 0`, anywhere in the tree, once.
pub(crate) fn seen_term_fields(aggs: &[Agg], out: &mut Vec<FieldRef>) {
    for agg in aggs {
        if let AggKind::Terms { field, min_doc_count: 0, .. } = &agg.kind
            && !out.contains(field)
        {
            out.push(field.clone());
        }
        seen_term_fields(&agg.subs, out);
    }
}

/// Whether `include`/`exclude` (`filter`) lets `key` through; `default` when there is none.
#[inline]
fn passes(filter: &Option<TermsFilter>, key: TermKeyRef<'_>, default: bool) -> bool {
    match filter {
        None => default,
        Some(TermsFilter::Regex(_, re)) => re.is_match(&key.as_text()),
        Some(TermsFilter::Values(vs)) => vs.iter().any(|v| TermKeyRef::from_term(v) == Some(key)),
    }
}

/// Count the document once in the bucket of each distinct key it has (or `missing`).
#[inline]
pub(super) fn fold(
    agg: &Agg,
    map: &mut TermsMap,
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    let AggKind::Terms { field, missing, include, exclude, .. } = &agg.kind else {
        unreachable!("a terms state belongs to a terms aggregation")
    };
    let values = doc.values(field);
    // One value (most fields of most records): no list to build.
    let single = match values {
        [one] => TermKeyRef::from_scalar(one),
        _ => None,
    };
    let mut keys: Vec<TermKeyRef<'_>> = Vec::new();
    if single.is_none() {
        keys.extend(values.iter().filter_map(TermKeyRef::from_scalar));
        if keys.is_empty()
            && let Some(k) = missing.as_ref().and_then(TermKeyRef::from_term)
        {
            keys.push(k);
        }
        if keys.len() > 1 {
            keys.sort_unstable();
            keys.dedup();
        }
    }
    for key in single.into_iter().chain(keys) {
        if !passes(include, key, true) || passes(exclude, key, false) {
            continue;
        }
        let bucket = match map.get_mut(&key) {
            Some(b) => b,
            None => {
                let owned = key.to_owned_key();
                ctx.grow((bucket_bytes(&agg.subs) + owned.heap_bytes()) as isize)?;
                map.entry(owned).or_insert_with(|| Bucket::empty(&agg.subs))
            }
        };
        bucket.fold(&agg.subs, doc, ctx)?;
    }
    Ok(())
}

/// Returns the growth (see [`super::merge`]).
pub(super) fn merge(subs: &[Agg], x: &mut TermsMap, y: &TermsMap) -> isize {
    let mut grown = 0;
    for (k, bucket) in y {
        match x.get_mut(k) {
            Some(mine) => grown += mine.merge(subs, bucket),
            None => {
                grown += (k.heap_bytes() + bucket.heap_bytes(subs)) as isize;
                x.insert(k.clone(), bucket.clone());
            }
        }
    }
    grown
}

pub(super) fn heap_bytes(subs: &[Agg], map: &TermsMap) -> usize {
    super::STATE_BYTES + map.iter().map(|(k, b)| k.heap_bytes() + b.heap_bytes(subs)).sum::<usize>()
}

/// What a `terms` render showed, so that the next render of the same aggregation, after more
/// records were merged in, can start from it ([`render_from`]): the keys shown, in order, and
/// the doc count of every eligible bucket (for `sum_other_doc_count`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shown {
    keys: Vec<TermKey>,
    total: u64,
}

impl Shown {
    /// Estimated heap bytes (a few keys: `size` of them at most).
    pub(crate) fn estimated_bytes(&self) -> usize {
        self.keys.iter().map(|k| k.heap_bytes() + SEEN_KEY_OVERHEAD).sum()
    }
}

/// Whether a render of `agg` may start from the keys the last one showed and the keys merged
/// since. Merging only adds to doc counts, so a key neither shown nor merged into still ranks
/// below every key that was shown, while the order looks only at doc counts (descending) and
/// keys; and a bucket only becomes eligible (`min_doc_count` ≥ 1) by being merged into. Not
/// with `min_doc_count: 0` (the zero buckets come from values seen elsewhere), nor an order by
/// a sub-aggregation's metric or by ascending count, which a merge may move either way.
fn renders_from_shown(agg: &Agg) -> bool {
    let AggKind::Terms { min_doc_count, order, .. } = &agg.kind else { return false };
    *min_doc_count >= 1
        && order.iter().all(|(key, dir)| match key {
            TermsOrderKey::Count => *dir == Order::Desc,
            TermsOrderKey::Key => true,
            TermsOrderKey::Metric { .. } => false,
        })
}

/// The top `size` buckets by `order`, with the zero buckets of `min_doc_count: 0`.
pub(super) fn render(
    agg: &Agg,
    map: &TermsMap,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    render_from(agg, map, ctx, None).map(|(rendered, _)| rendered)
}

/// [`render`], and what it showed (for an aggregation that [`renders_from_shown`], with at
/// least `terms_memo_from_keys` keys). `since`:
/// what the last render of this aggregation showed and the states merged into `map` since
/// then; only those buckets are then ranked, not every key.
pub(crate) fn render_from(
    agg: &Agg,
    map: &TermsMap,
    ctx: &mut RenderCtx<'_>,
    since: Option<(&Shown, &[&TermsMap])>,
) -> Result<(Value, Option<Shown>), QueryError> {
    let AggKind::Terms { field, size, min_doc_count, order, include, exclude, .. } = &agg.kind
    else {
        unreachable!("a terms state belongs to a terms aggregation")
    };
    // min_doc_count 0: the field's other values, seen in records that did not reach
    // this bucket, are listed with doc_count 0.
    let zeros: Vec<(TermKey, Bucket)> = match ctx.seen.iter().find(|(f, _)| *f == field) {
        Some((_, seen)) if *min_doc_count == 0 && !ctx.in_empty_bucket => seen
            .iter()
            .filter(|k| !map.contains_key(*k))
            .filter(|k| {
                passes(include, k.as_key_ref(), true) && !passes(exclude, k.as_key_ref(), false)
            })
            .map(|k| (k.clone(), Bucket::empty(&agg.subs)))
            .collect(),
        _ => Vec::new(),
    };
    // Elasticsearch's final reduce drops buckets under min_doc_count without adding
    // them to sum_other_doc_count: "other" counts only eligible buckets cut by size.
    let eligible_count = |count: u64| if count >= *min_doc_count { count } else { 0 };
    // Ranking a few keys instead of all pays once the keys are many (and what was shown is
    // kept only then).
    let remembers = renders_from_shown(agg) && map.len() >= ctx.terms_memo_from_keys;
    let (mut eligible, total): (Vec<(&TermKey, &Bucket)>, u64) = match since {
        Some((shown, merged)) if remembers => {
            // The buckets shown last and those merged into since, each once, with what the
            // merges added to it.
            let mut candidates: HashMap<&TermKey, (&Bucket, u64)> = HashMap::new();
            for key in &shown.keys {
                if let Some((key, bucket)) = map.get_key_value(key) {
                    candidates.entry(key).or_insert((bucket, 0));
                }
            }
            for (key, added) in merged.iter().flat_map(|m| m.iter()) {
                if let Some((key, bucket)) = map.get_key_value(key) {
                    candidates.entry(key).or_insert((bucket, 0)).1 += added.doc_count;
                }
            }
            let mut total = shown.total;
            for (bucket, added) in candidates.values() {
                let before = bucket.doc_count.saturating_sub(*added);
                total = total + eligible_count(bucket.doc_count) - eligible_count(before);
            }
            let eligible = candidates
                .into_iter()
                .filter(|(_, (b, _))| b.doc_count >= *min_doc_count)
                .map(|(k, (b, _))| (k, b))
                .collect();
            (eligible, total)
        }
        _ => {
            let eligible: Vec<(&TermKey, &Bucket)> = map
                .iter()
                .filter(|(_, b)| b.doc_count >= *min_doc_count)
                .chain(zeros.iter().map(|(k, b)| (k, b)))
                .collect();
            let total = eligible.iter().map(|(_, b)| b.doc_count).sum();
            (eligible, total)
        }
    };
    let cmp = |a: &(&TermKey, &Bucket), b: &(&TermKey, &Bucket)| terms_cmp(agg, order, a, b);
    if eligible.len() > *size {
        eligible.select_nth_unstable_by(*size - 1, cmp);
        eligible.truncate(*size);
    }
    eligible.sort_by(cmp);
    ctx.count(eligible.len())?;
    let shown: u64 = eligible.iter().map(|(_, b)| b.doc_count).sum();
    let memo = remembers
        .then(|| Shown { keys: eligible.iter().map(|(k, _)| (*k).clone()).collect(), total });
    let buckets = eligible
        .into_iter()
        .map(|(k, b)| {
            let (key, key_as_string) = k.to_json();
            let mut head = Map::new();
            head.insert("key".into(), key);
            if let Some(s) = key_as_string {
                head.insert("key_as_string".into(), json!(s));
            }
            bucket_json(&agg.subs, b, head, Origin::Collected, ctx)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        json!({"doc_count_error_upper_bound": 0, "sum_other_doc_count": total - shown, "buckets": buckets}),
        memo,
    ))
}

/// A single-value metric of a bucket's sub-aggregation, for ordering (NaN when undefined).
fn order_metric(agg: &Agg, b: &Bucket, index: usize, metric: &Option<String>) -> f64 {
    match (agg.subs.get(index), b.subs.get(index)) {
        (Some(sub), Some(state)) => super::order_value(sub, state, metric.as_deref()),
        _ => f64::NAN,
    }
}

fn terms_cmp(
    agg: &Agg,
    order: &[(TermsOrderKey, Order)],
    a: &(&TermKey, &Bucket),
    b: &(&TermKey, &Bucket),
) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for (key, dir) in order {
        let ord = match key {
            TermsOrderKey::Count => a.1.doc_count.cmp(&b.1.doc_count),
            TermsOrderKey::Key => a.0.cmp_key(b.0),
            TermsOrderKey::Metric { index, metric, .. } => {
                let (x, y) = (
                    order_metric(agg, a.1, *index, metric),
                    order_metric(agg, b.1, *index, metric),
                );
                // Undefined metrics (NaN: an empty avg) sort last in either direction, as
                // Elasticsearch's compareDiscardNaN does; an empty min/max is ±∞.
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => return Ordering::Greater,
                    (false, true) => return Ordering::Less,
                    _ => x.total_cmp(&y),
                }
            }
        };
        let ord = if *dir == Order::Desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}
