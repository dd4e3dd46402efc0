//! Aggregations as mergeable partial states.
//!
//! # Laws
//! For every aggregation, with `zero` its empty state, `fold` the per-record update and `merge`
//! the combination of two partial states:
//! - identity: `merge(zero, s) == s == merge(s, zero)`;
//! - associativity: `merge(merge(a, b), c) == merge(a, merge(b, c))`;
//! - commutativity: `merge(a, b) == merge(b, a)`;
//! - homomorphism: `merge(fold(xs), fold(ys)) == fold(xs ++ ys)`.
//!
//! What holds, kind by kind, for states folded from disjoint records (as segments are), follows
//! from each kind's [`Algebra`] ([`AggKind::algebra`]):
//! - [`Algebra::Buckets`] (`terms`, `histogram`, `date_histogram`, `range`, `date_range`,
//!   `filter`, `filters`, `missing`, `global`): exactly (`==` on the states) for the buckets —
//!   doc counts add, sub-states merge per key — and for each sub-state as its own algebra says;
//! - [`Algebra::SemigroupOnly`] (`top_hits`, like the request's hits): exactly, the best `size`
//!   under a total order that ends in `@offset`, `@partition`, so no two hits tie;
//! - [`Algebra::Accumulable`] (`value_count`, `sum`, `avg`, `min`, `max`, `stats`,
//!   `extended_stats`): exactly for counts and for sums of integers (and squares) below 1e18,
//!   which add in an `i128`; up to floating-point rounding for other numbers, which go to a
//!   compensated (Neumaier) float whose last bit may depend on the order of merges. `min`/`max`
//!   render an exact value but keep the whole stats state, sums included;
//! - [`Algebra::Sketch`]: `cardinality` exactly (HyperLogLog++: a function of the set of hashes,
//!   see `sketch::hll`), and `percentiles` exactly while the t-digest is in its exact mode;
//!   beyond `4 × compression` distinct values only within the sketch's error bound, as its
//!   centroids depend on the grouping and order of merges (see `sketch::tdigest`, *Merge laws*).
//!
//! `shared/tests/props.rs` pins this with property tests over every aggregation kind:
//! `merging_states_commutes_and_associates` (`a∘b == b∘a`, `(a∘b)∘c == a∘(b∘c)`, with `==` on
//! the states unless an accumulable sum is inexact, read from [`AggKind::algebra`]),
//! `any_split_merged_in_any_order_and_grouping_renders_the_one_pass_result` (homomorphism, in
//! random order and grouping) and `merging_the_empty_state_changes_nothing` (identity); the
//! sketches' own tests bound their error in any split-and-merge tree.
//!
//! # Layout
//! This file holds the shared state types ([`AggState`], [`Bucket`]) and the dispatch of `zero`,
//! `fold`, `merge`, `heap_bytes` and `render` by kind; each family's own code lives in its file:
//! [`metric`], [`cardinality`], [`percentiles`], [`top_hits`], [`terms`], [`histogram`],
//! [`range`] and [`filter`].

mod cardinality;
mod filter;
mod histogram;
mod metric;
mod percentiles;
mod range;
mod terms;
mod top_hits;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use self::metric::Stats;
pub(crate) use self::terms::{SEEN_KEY_OVERHEAD, SeenTerms, Shown, render_from, seen_term_fields};
use crate::date::DateFormat;
use crate::error::{ErrorKind, QueryError};
use crate::eval::Doc;
use crate::hits::TopHits;
use crate::request::{Agg, AggKind, FieldRef};
use crate::sketch::hll::Cardinality;
use crate::sketch::tdigest::TDigest;
use crate::value::TermKey;

/// How an aggregation's partial states combine: which of the laws of merging (stated at the
/// top of `shared/src/agg/mod.rs`) hold exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algebra {
    /// Counts and sums that add (a commutative monoid, with an inverse in principle):
    /// exact for counts and integers below 1e18, up to floating-point rounding otherwise.
    Accumulable,
    /// Merge keeps the best values (associative and commutative, no inverse): exact.
    SemigroupOnly,
    /// A bounded summary: exact merges while the sketch is exact, else within its error bound.
    Sketch,
    /// Buckets by key: doc counts add, keys union, and each bucket's sub-states merge by their
    /// own algebra.
    Buckets,
}

impl AggKind {
    /// The algebra of this kind's partial state (see [`Algebra`] and the laws it labels).
    pub fn algebra(&self) -> Algebra {
        match self {
            AggKind::ValueCount { .. }
            | AggKind::Sum { .. }
            | AggKind::Min { .. }
            | AggKind::Max { .. }
            | AggKind::Avg { .. }
            | AggKind::Stats { .. }
            | AggKind::ExtendedStats { .. } => metric::ALGEBRA,
            AggKind::Cardinality { .. } => cardinality::ALGEBRA,
            AggKind::Percentiles { .. } => percentiles::ALGEBRA,
            AggKind::TopHits { .. } => top_hits::ALGEBRA,
            AggKind::Terms { .. } => terms::ALGEBRA,
            AggKind::Histogram { .. } | AggKind::DateHistogram { .. } => histogram::ALGEBRA,
            AggKind::Range { .. } | AggKind::DateRange { .. } => range::ALGEBRA,
            AggKind::Filter { .. }
            | AggKind::Filters { .. }
            | AggKind::Missing { .. }
            | AggKind::Global => filter::ALGEBRA,
        }
    }
}

/// Estimated bytes of a state beyond its heap parts.
const STATE_BYTES: usize = 48;

/// Estimated bytes of a new bucket beyond its key and sub-aggregations.
const BUCKET_OVERHEAD: usize = 64;

/// The buckets of a `terms` aggregation: looked up by a borrowed key ([`TermKeyRef`]), with
/// std's randomly keyed SipHash (keys are users' data).
///
/// [`TermKeyRef`]: crate::value::TermKeyRef
pub(crate) type TermsMap = hashbrown::HashMap<TermKey, Bucket, std::hash::RandomState>;

/// A bucket: its document count and the states of its sub-aggregations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bucket {
    doc_count: u64,
    subs: Vec<AggState>,
}

/// The partial state of one aggregation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum AggState {
    /// `value_count`.
    Count(u64),
    /// `sum`, `min`, `max`, `avg`, `stats`, `extended_stats`.
    Stats(Stats),
    /// `cardinality`.
    Cardinality(Box<Cardinality>),
    /// `percentiles`.
    Percentiles(Box<TDigest>),
    /// `top_hits`.
    TopHits(TopHits),
    /// `terms`: every key seen, so counts stay exact.
    Terms(TermsMap),
    /// `histogram` (by bucket index) and `date_histogram` (by bucket start, epoch ms).
    Histogram(BTreeMap<i64, Bucket>),
    /// `range`, `date_range`, `filters` (the other bucket last): one bucket per entry.
    Buckets(Vec<Bucket>),
    /// `filter`, `missing`, `global`.
    Single(Box<Bucket>),
}

/// Mutable context of one fold: the memory budget's running estimate.
pub(crate) struct FoldCtx {
    pub(crate) bytes: usize,
    pub(crate) budget: usize,
}

impl FoldCtx {
    pub(crate) fn grow(&mut self, by: isize) -> Result<(), QueryError> {
        self.bytes = self.bytes.saturating_add_signed(by);
        if self.bytes > self.budget {
            return Err(QueryError {
                kind: ErrorKind::CircuitBreaking,
                reason: format!(
                    "the query's partial state exceeds its memory budget of {} bytes; narrow the query (fewer keys, smaller size)",
                    self.budget
                ),
                path: String::new(),
            });
        }
        Ok(())
    }
}

impl Bucket {
    /// A bucket without documents: zero sub-states.
    fn empty(subs: &[Agg]) -> Bucket {
        Bucket { doc_count: 0, subs: subs.iter().map(zero).collect() }
    }

    #[inline]
    fn fold(
        &mut self,
        subs: &[Agg],
        doc: &Doc<'_, '_>,
        ctx: &mut FoldCtx,
    ) -> Result<(), QueryError> {
        self.doc_count += 1;
        for (agg, state) in subs.iter().zip(&mut self.subs) {
            fold(agg, state, doc, ctx)?;
        }
        Ok(())
    }

    /// Returns how many estimated heap bytes the bucket grew by (see [`merge`]).
    fn merge(&mut self, subs: &[Agg], o: &Bucket) -> isize {
        self.doc_count += o.doc_count;
        subs.iter().zip(&mut self.subs).zip(&o.subs).map(|((agg, a), b)| merge(agg, a, b)).sum()
    }

    fn heap_bytes(&self, subs: &[Agg]) -> usize {
        BUCKET_OVERHEAD + subs.iter().zip(&self.subs).map(|(a, s)| heap_bytes(a, s)).sum::<usize>()
    }
}

/// Merge buckets fixed by the request (ranges, filters) position by position; returns the
/// growth (see [`merge`]).
fn merge_each(subs: &[Agg], x: &mut [Bucket], y: &[Bucket]) -> isize {
    x.iter_mut().zip(y).map(|(mine, theirs)| mine.merge(subs, theirs)).sum()
}

/// Estimated heap bytes of a fresh bucket with these sub-aggregations.
fn bucket_bytes(subs: &[Agg]) -> usize {
    BUCKET_OVERHEAD + subs.iter().map(zero_bytes).sum::<usize>()
}

/// Estimated heap bytes of an aggregation's zero state.
fn zero_bytes(agg: &Agg) -> usize {
    match &agg.kind {
        AggKind::Cardinality { .. } => cardinality::HEAP_BYTES,
        AggKind::Percentiles { .. } => percentiles::HEAP_BYTES,
        _ => STATE_BYTES + agg.subs.iter().map(zero_bytes).sum::<usize>(),
    }
}

/// The date format of a date aggregation's field values (borrowed: this runs per record).
fn field_format(format: &Option<DateFormat>) -> &DateFormat {
    format.as_ref().unwrap_or_else(|| DateFormat::default_ref())
}

/// The empty (identity) state of an aggregation.
pub(crate) fn zero(agg: &Agg) -> AggState {
    match &agg.kind {
        AggKind::ValueCount { .. } => AggState::Count(0),
        AggKind::Sum { .. }
        | AggKind::Min { .. }
        | AggKind::Max { .. }
        | AggKind::Avg { .. }
        | AggKind::Stats { .. }
        | AggKind::ExtendedStats { .. } => AggState::Stats(Stats::default()),
        AggKind::Cardinality { precision_threshold, .. } => {
            AggState::Cardinality(Box::new(cardinality::zero(*precision_threshold)))
        }
        AggKind::Percentiles { compression, .. } => {
            AggState::Percentiles(Box::new(percentiles::zero(*compression)))
        }
        AggKind::TopHits { .. } => AggState::TopHits(TopHits::default()),
        AggKind::Terms { .. } => AggState::Terms(TermsMap::default()),
        AggKind::Histogram { .. } | AggKind::DateHistogram { .. } => {
            AggState::Histogram(BTreeMap::new())
        }
        AggKind::Range { ranges, .. } | AggKind::DateRange { ranges, .. } => {
            range::zero(agg, ranges)
        }
        AggKind::Filters { filters, other_bucket_key, .. } => {
            filter::zero_filters(agg, filters.len(), other_bucket_key.is_some())
        }
        AggKind::Filter { .. } | AggKind::Missing { .. } | AggKind::Global => {
            filter::zero_single(agg)
        }
    }
}

/// Fold one matching document into an aggregation's state.
pub(crate) fn fold(
    agg: &Agg,
    state: &mut AggState,
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    match (&agg.kind, state) {
        (AggKind::ValueCount { field }, AggState::Count(n)) => metric::fold_count(field, n, doc),
        (
            AggKind::Sum { field }
            | AggKind::Min { field }
            | AggKind::Max { field }
            | AggKind::Avg { field }
            | AggKind::Stats { field }
            | AggKind::ExtendedStats { field, .. },
            AggState::Stats(s),
        ) => metric::fold_stats(field, s, doc),
        (AggKind::Cardinality { field, .. }, AggState::Cardinality(c)) => {
            cardinality::fold(field, c, doc);
        }
        (AggKind::Percentiles { field, .. }, AggState::Percentiles(t)) => {
            percentiles::fold(field, t, doc);
        }
        (AggKind::TopHits { size, sort, source }, AggState::TopHits(top)) => {
            top_hits::fold(top, *size, sort, source, doc, ctx)?;
        }
        (AggKind::Terms { .. }, AggState::Terms(map)) => terms::fold(agg, map, doc, ctx)?,
        (AggKind::Histogram { .. }, AggState::Histogram(map)) => {
            histogram::fold(agg, map, doc, ctx)?;
        }
        (AggKind::DateHistogram { .. }, AggState::Histogram(map)) => {
            histogram::fold_date(agg, map, doc, ctx)?;
        }
        (AggKind::Range { .. }, AggState::Buckets(buckets)) => {
            range::fold(agg, buckets, doc, ctx)?;
        }
        (AggKind::DateRange { .. }, AggState::Buckets(buckets)) => {
            range::fold_date(agg, buckets, doc, ctx)?;
        }
        (AggKind::Filters { .. }, AggState::Buckets(buckets)) => {
            filter::fold_filters(agg, buckets, doc, ctx)?;
        }
        (AggKind::Filter { query }, AggState::Single(b)) => {
            filter::fold_filter(agg, query, b, doc, ctx)?;
        }
        (AggKind::Missing { field }, AggState::Single(b)) => {
            filter::fold_missing(agg, field, b, doc, ctx)?;
        }
        (AggKind::Global, AggState::Single(b)) => b.fold(&agg.subs, doc, ctx)?,
        _ => unreachable!("a state always has the shape of its aggregation"),
    }
    Ok(())
}

/// Merge `b` into `a` (both states of `agg`).
///
/// Returns how many estimated heap bytes `a` grew by: [`heap_bytes`] of `a` after is its value
/// before plus this. It is found from what `b` brought (the buckets it added, the top hits
/// swapped), not by walking all of `a` again: a live query merges each batch of a few
/// records into a state of any size, on every wake-up.
pub(crate) fn merge(agg: &Agg, a: &mut AggState, b: &AggState) -> isize {
    // Counts, statistics and sketches have a fixed size: they grow by 0.
    match (a, b) {
        (AggState::Count(x), AggState::Count(y)) => {
            *x += y;
            0
        }
        (AggState::Stats(x), AggState::Stats(y)) => {
            x.merge(y);
            0
        }
        (AggState::Cardinality(x), AggState::Cardinality(y)) => {
            x.merge(y);
            0
        }
        (AggState::Percentiles(x), AggState::Percentiles(y)) => {
            x.merge(y);
            0
        }
        (AggState::TopHits(x), AggState::TopHits(y)) => {
            // At most `size` hits: measured before and after.
            let before = top_hits::heap_bytes(x);
            top_hits::merge(&agg.kind, x, y);
            top_hits::heap_bytes(x) as isize - before as isize
        }
        (AggState::Terms(x), AggState::Terms(y)) => terms::merge(&agg.subs, x, y),
        (AggState::Histogram(x), AggState::Histogram(y)) => histogram::merge(&agg.subs, x, y),
        (AggState::Buckets(x), AggState::Buckets(y)) => merge_each(&agg.subs, x, y),
        (AggState::Single(x), AggState::Single(y)) => x.merge(&agg.subs, y),
        _ => unreachable!("states of one aggregation always have one shape"),
    }
}

/// Estimated heap bytes of a state (for the memory budget after merges and loads).
pub(crate) fn heap_bytes(agg: &Agg, state: &AggState) -> usize {
    match state {
        AggState::Count(_) | AggState::Stats(_) => metric::HEAP_BYTES,
        AggState::Cardinality(_) => cardinality::HEAP_BYTES,
        AggState::Percentiles(_) => percentiles::HEAP_BYTES,
        AggState::TopHits(t) => top_hits::heap_bytes(t),
        AggState::Terms(m) => terms::heap_bytes(&agg.subs, m),
        AggState::Histogram(m) => histogram::heap_bytes(&agg.subs, m),
        AggState::Buckets(v) => {
            STATE_BYTES + v.iter().map(|b| b.heap_bytes(&agg.subs)).sum::<usize>()
        }
        AggState::Single(b) => STATE_BYTES + b.heap_bytes(&agg.subs),
    }
}

/// The value a `terms` order reads from a single-value metric, or from the named value of a
/// multi-value one (NaN when undefined or not a metric).
fn order_value(agg: &Agg, state: &AggState, metric: Option<&str>) -> f64 {
    match state {
        AggState::Cardinality(c) => cardinality::order_value(c),
        _ => metric::order_value(&agg.kind, state, metric),
    }
}

/// Counts rendered buckets against the result's limit.
pub(crate) struct RenderCtx<'a> {
    pub(crate) buckets: usize,
    pub(crate) max_buckets: usize,
    pub(crate) topic: &'a str,
    /// The values seen of each field in [`seen_term_fields`].
    pub(crate) seen: Vec<(&'a FieldRef, &'a SeenTerms)>,
    /// Rendering inside a bucket a histogram filled in: Elasticsearch builds its
    /// sub-aggregations empty, so `terms` lists no zero-count buckets there.
    pub(crate) in_empty_bucket: bool,
    /// [`crate::Limits::terms_memo_from_keys`].
    pub(crate) terms_memo_from_keys: usize,
}

impl RenderCtx<'_> {
    fn count(&mut self, n: usize) -> Result<(), QueryError> {
        self.buckets += n;
        if self.buckets > self.max_buckets {
            return Err(QueryError {
                kind: ErrorKind::TooManyBuckets,
                reason: format!(
                    "Trying to create too many buckets. Must be less than or equal to: [{}] but this number of buckets was exceeded. This limit can be set by changing the [max_buckets] limit.",
                    self.max_buckets
                ),
                path: String::new(),
            });
        }
        Ok(())
    }
}

/// Render named aggregations into `out` (the `aggregations` object or a bucket).
pub(crate) fn render_named(
    aggs: &[Agg],
    states: &[AggState],
    out: &mut Map<String, Value>,
    ctx: &mut RenderCtx<'_>,
) -> Result<(), QueryError> {
    for (agg, state) in aggs.iter().zip(states) {
        out.insert(agg.name.clone(), render(agg, state, ctx)?);
    }
    Ok(())
}

/// How a bucket came to be rendered.
#[derive(Clone, Copy, PartialEq)]
enum Origin {
    /// Kept in the state (or fixed by the request: ranges, filters).
    Collected,
    /// Filled in by a histogram between or beside collected keys.
    Filled,
}

fn bucket_json(
    subs: &[Agg],
    b: &Bucket,
    mut head: Map<String, Value>,
    origin: Origin,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    head.insert("doc_count".into(), json!(b.doc_count));
    // A histogram's filled-in bucket holds Elasticsearch's empty aggregations, all the way
    // down; every other bucket aggregates (a terms lists its zero buckets there).
    let filled = ctx.in_empty_bucket || (origin == Origin::Filled && b.doc_count == 0);
    let outer = std::mem::replace(&mut ctx.in_empty_bucket, filled);
    let rendered = render_named(subs, &b.subs, &mut head, ctx);
    ctx.in_empty_bucket = outer;
    rendered?;
    Ok(Value::Object(head))
}

/// Buckets as an object by name (`keyed`) or a list. `origin` is [`Origin::Filled`] for a
/// histogram, whose empty buckets are all filled in.
fn keyed_or_list<'b>(
    subs: &[Agg],
    entries: impl Iterator<Item = (String, Map<String, Value>, &'b Bucket)>,
    keyed: bool,
    origin: Origin,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    if keyed {
        let mut m = Map::new();
        for (name, head, b) in entries {
            m.insert(name, bucket_json(subs, b, head, origin, ctx)?);
        }
        Ok(json!({"buckets": m}))
    } else {
        let v = entries
            .map(|(_, head, b)| bucket_json(subs, b, head, origin, ctx))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({"buckets": v}))
    }
}

/// Render one aggregation in Elasticsearch's response shape.
pub(crate) fn render(
    agg: &Agg,
    state: &AggState,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    Ok(match (&agg.kind, state) {
        (AggKind::ValueCount { .. }, AggState::Count(n)) => metric::render_count(*n),
        (kind, AggState::Stats(s)) => metric::render_stats(kind, s),
        (AggKind::Cardinality { .. }, AggState::Cardinality(c)) => cardinality::render(c),
        (AggKind::Percentiles { percents, keyed, .. }, AggState::Percentiles(t)) => {
            percentiles::render(t, percents, *keyed)
        }
        (AggKind::TopHits { sort, source, .. }, AggState::TopHits(top)) => {
            top_hits::render(top, sort, source, ctx)
        }
        (AggKind::Terms { .. }, AggState::Terms(map)) => terms::render(agg, map, ctx)?,
        (AggKind::Histogram { .. }, AggState::Histogram(map)) => histogram::render(agg, map, ctx)?,
        (AggKind::DateHistogram { .. }, AggState::Histogram(map)) => {
            histogram::render_date(agg, map, ctx)?
        }
        (AggKind::Range { .. }, AggState::Buckets(buckets)) => range::render(agg, buckets, ctx)?,
        (AggKind::DateRange { .. }, AggState::Buckets(buckets)) => {
            range::render_date(agg, buckets, ctx)?
        }
        (AggKind::Filters { .. }, AggState::Buckets(buckets)) => {
            filter::render_filters(agg, buckets, ctx)?
        }
        (
            AggKind::Filter { .. } | AggKind::Missing { .. } | AggKind::Global,
            AggState::Single(b),
        ) => filter::render_single(agg, b, ctx)?,
        _ => unreachable!("a state always has the shape of its aggregation"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::eval::Record;
    use crate::limits::Limits;
    use crate::plan::Plan;

    fn run(aggs: Value, docs: &[Value]) -> Value {
        let plan = Plan::parse(&json!({"topic": "t", "aggs": aggs}), &Limits::default())
            .expect("valid request");
        let mut st = plan.empty_state();
        let bytes: Vec<Vec<u8>> =
            docs.iter().map(|d| serde_json::to_vec(d).expect("serialisable")).collect();
        for (i, b) in bytes.iter().enumerate() {
            let r = Record { value: b, timestamp: 0, offset: i as i64, partition: 0, key: None };
            plan.fold(&mut st, &r).expect("within budget");
        }
        plan.render(&st).expect("renders")["aggregations"].clone()
    }

    #[test]
    fn sum_other_doc_count_ignores_buckets_under_min_doc_count() {
        let docs: Vec<Value> =
            ["a", "a", "a", "b", "b", "c", "c", "d"].iter().map(|c| json!({"c": c})).collect();
        let out =
            run(json!({"t": {"terms": {"field": "c", "min_doc_count": 2, "size": 1}}}), &docs);
        assert_eq!(out["t"]["sum_other_doc_count"], json!(4));
        assert_eq!(out["t"]["buckets"], json!([{"key": "a", "doc_count": 3}]));
    }

    #[test]
    fn terms_orders_by_single_values_and_named_stats_values_only() {
        let subs = json!({
            "c": {"value_count": {"field": "x"}}, "a": {"avg": {"field": "x"}},
            "u": {"cardinality": {"field": "x"}}, "s": {"stats": {"field": "x"}},
            "e": {"extended_stats": {"field": "x"}}, "p": {"percentiles": {"field": "x"}},
        });
        let parses = |order: &str| {
            let terms = json!({"terms": {"field": "k", "order": {order: "desc"}}, "aggs": subs});
            Plan::parse(&json!({"topic": "t", "aggs": {"t": terms}}), &Limits::default()).is_ok()
        };
        for ok in ["c", "a", "u", "s.max", "s.count", "e.sum", "e.variance", "e.std_deviation"] {
            assert!(parses(ok), "{ok}");
        }
        for bad in ["s", "e", "s.variance", "a.value", "u.value", "p", "p.50", "e.lower"] {
            assert!(!parses(bad), "{bad}");
        }
    }

    #[test]
    fn keyed_range_buckets_have_no_key_field() {
        let docs = [json!({"x": 1}), json!({"x": 150})];
        let out = run(
            json!({"r": {"range": {"field": "x", "keyed": true, "ranges": [{"to": 100}, {"from": 100, "key": "big"}]}}}),
            &docs,
        );
        assert_eq!(
            out["r"]["buckets"],
            json!({"*-100.0": {"to": 100.0, "doc_count": 1}, "big": {"from": 100.0, "doc_count": 1}})
        );
    }
}
