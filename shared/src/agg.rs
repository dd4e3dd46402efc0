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
//! What holds, kind by kind, for states folded from disjoint records (as segments are):
//! - exactly (`==` on the states): `value_count`, the bucket aggregations (`terms`,
//!   `histogram`, `date_histogram`, `range`, `date_range`, `filter`, `filters`, `missing`,
//!   `global`: doc counts add, sub-states merge per key), `min`/`max`, `top_hits` and the
//!   request's hits (best `size` under a total order that ends in `@offset`, `@partition`, so no
//!   two hits tie), `cardinality` (HyperLogLog++: a function of the set of hashes, see
//!   `sketch::hll`), and `percentiles` while the t-digest is in its exact mode;
//! - up to floating-point rounding: the sums behind `sum`/`avg`/`stats`/`extended_stats`.
//!   Integers (and squares) below 1e18 add exactly in an `i128`; other numbers go to a
//!   compensated (Neumaier) float, whose last bit may depend on the order of merges;
//! - associative and commutative only within the sketch's error bound: `percentiles` in the
//!   t-digest's approximate mode (beyond `4 × compression` distinct values), whose centroids
//!   depend on the grouping and order of merges (see `sketch::tdigest`, *Merge laws*).
//!
//! `shared/tests/props.rs` pins this with property tests over every aggregation kind:
//! `merging_states_commutes_and_associates` (`a∘b == b∘a`, `(a∘b)∘c == a∘(b∘c)`),
//! `any_split_merged_in_any_order_and_grouping_renders_the_one_pass_result` (homomorphism, in
//! random order and grouping) and `merging_the_empty_state_changes_nothing` (identity); the
//! sketches' own tests bound their error in any split-and-merge tree.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::date::{self, DateFormat};
use crate::error::{ErrorKind, QueryError};
use crate::eval::{Doc, date_millis, matches};
use crate::hits::TopHits;
use crate::request::{Agg, AggKind, DateInterval, FieldRef, Order, TermsFilter, TermsOrderKey};
use crate::scan::Scalar;
use crate::sketch::hll::Cardinality;
use crate::sketch::tdigest::TDigest;
use crate::value::{TermKey, TermKeyRef, double_json, java_double, numeric};

/// Estimated bytes of a new bucket beyond its key and sub-aggregations.
const BUCKET_OVERHEAD: usize = 64;

/// Count, sum, sum of squares, min and max of numeric values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stats {
    count: u64,
    sum: ExactSum,
    sum_of_squares: ExactSum,
    min: f64,
    max: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            count: 0,
            sum: ExactSum::default(),
            sum_of_squares: ExactSum::default(),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

/// A sum that is exact for integers (i128) and compensated (Neumaier) for other numbers.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct ExactSum {
    int: i128,
    float: f64,
    compensation: f64,
}

impl ExactSum {
    fn add(&mut self, x: f64) {
        if x.fract() == 0.0 && x.abs() < 1.0e18 {
            // Integers sum exactly, whatever the grouping.
            match self.int.checked_add(x as i128) {
                Some(s) => self.int = s,
                None => self.add_float(x),
            }
        } else {
            self.add_float(x);
        }
    }

    fn add_float(&mut self, x: f64) {
        let t = self.float + x;
        if self.float.abs() >= x.abs() {
            self.compensation += (self.float - t) + x;
        } else {
            self.compensation += (x - t) + self.float;
        }
        self.float = t;
    }

    fn merge(&mut self, o: &ExactSum) {
        match self.int.checked_add(o.int) {
            Some(s) => self.int = s,
            None => self.add_float(o.int as f64),
        }
        self.add_float(o.float);
        self.compensation += o.compensation;
    }

    fn value(&self) -> f64 {
        self.int as f64 + (self.float + self.compensation)
    }
}

impl Stats {
    fn add(&mut self, x: f64) {
        self.count += 1;
        self.sum.add(x);
        self.sum_of_squares.add(x * x);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn merge(&mut self, o: &Stats) {
        self.count += o.count;
        self.sum.merge(&o.sum);
        self.sum_of_squares.merge(&o.sum_of_squares);
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    fn opt(&self, x: f64) -> Value {
        if self.count == 0 { Value::Null } else { double_json(x) }
    }

    fn avg(&self) -> f64 {
        self.sum.value() / self.count as f64
    }

    fn variance(&self) -> f64 {
        let n = self.count as f64;
        let mean = self.avg();
        (self.sum_of_squares.value() / n - mean * mean).max(0.0)
    }

    /// The named metric, for `terms` ordering (NaN when undefined).
    fn metric(&self, name: &str) -> f64 {
        let undefined = self.count == 0;
        match name {
            "count" => self.count as f64,
            "sum" => self.sum.value(),
            // Without values Elasticsearch's min is +∞ and max -∞ (rendered null), and a
            // terms order by them sorts such buckets as those infinities.
            "min" => self.min,
            "max" => self.max,
            _ if undefined => f64::NAN,
            "avg" => self.avg(),
            "sum_of_squares" => self.sum_of_squares.value(),
            "variance" => self.variance(),
            "std_deviation" => self.variance().sqrt(),
            _ => f64::NAN,
        }
    }
}

/// The buckets of a `terms` aggregation: looked up by a borrowed key ([`TermKeyRef`]), with
/// std's randomly keyed SipHash (keys are users' data).
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
            AggState::Cardinality(Box::new(Cardinality::new(*precision_threshold)))
        }
        AggKind::Percentiles { compression, .. } => {
            AggState::Percentiles(Box::new(TDigest::new(*compression)))
        }
        AggKind::TopHits { .. } => AggState::TopHits(TopHits::default()),
        AggKind::Terms { .. } => AggState::Terms(TermsMap::default()),
        AggKind::Histogram { .. } | AggKind::DateHistogram { .. } => {
            AggState::Histogram(BTreeMap::new())
        }
        AggKind::Range { ranges, .. } | AggKind::DateRange { ranges, .. } => {
            AggState::Buckets(vec![empty_bucket(&agg.subs); ranges.len()])
        }
        AggKind::Filters { filters, other_bucket_key, .. } => AggState::Buckets(vec![
                empty_bucket(&agg.subs);
                filters.len() + usize::from(other_bucket_key.is_some())
            ]),
        AggKind::Filter { .. } | AggKind::Missing { .. } | AggKind::Global => {
            AggState::Single(Box::new(empty_bucket(&agg.subs)))
        }
    }
}

fn empty_bucket(subs: &[Agg]) -> Bucket {
    Bucket { doc_count: 0, subs: subs.iter().map(zero).collect() }
}

/// Estimated heap bytes of a fresh bucket with these sub-aggregations.
fn bucket_bytes(subs: &[Agg]) -> usize {
    BUCKET_OVERHEAD + subs.iter().map(zero_bytes).sum::<usize>()
}

fn zero_bytes(agg: &Agg) -> usize {
    match &agg.kind {
        AggKind::Cardinality { .. } => 256,
        AggKind::Percentiles { .. } => 512,
        _ => 48 + agg.subs.iter().map(zero_bytes).sum::<usize>(),
    }
}

impl Bucket {
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

    fn merge(&mut self, subs: &[Agg], o: &Bucket) {
        self.doc_count += o.doc_count;
        for ((agg, a), b) in subs.iter().zip(&mut self.subs).zip(&o.subs) {
            merge(agg, a, b);
        }
    }

    fn heap_bytes(&self, subs: &[Agg]) -> usize {
        BUCKET_OVERHEAD + subs.iter().zip(&self.subs).map(|(a, s)| heap_bytes(a, s)).sum::<usize>()
    }
}

/// Seed of `cardinality` hashes ("kappa"); changing it changes stored sketches.
const HASH_SEED: u64 = 0x006b_6170_7061;

/// Hash of a value for `cardinality`: typed, so `"1"` and `1` differ, and `1.0` equals `1`.
fn value_hash(v: &Scalar<'_>) -> Option<u64> {
    const SEED: u64 = HASH_SEED;
    Some(match TermKey::from_scalar(v)? {
        TermKey::Str(s) => xxh3_64_with_seed(s.as_bytes(), SEED),
        TermKey::Int(i) => xxh3_64_with_seed(&i.to_le_bytes(), SEED ^ 1),
        TermKey::Float(bits) => xxh3_64_with_seed(&bits.to_le_bytes(), SEED ^ 2),
        TermKey::Bool(b) => xxh3_64_with_seed(&[u8::from(b)], SEED ^ 3),
    })
}

fn str_hash(v: &Scalar<'_>) -> Option<u64> {
    match v {
        // Hash strings without allocating a key.
        Scalar::Str(s) => Some(xxh3_64_with_seed(s.as_bytes(), HASH_SEED)),
        other => value_hash(other),
    }
}

fn passes(filter: &Option<TermsFilter>, key: TermKeyRef<'_>, default: bool) -> bool {
    match filter {
        None => default,
        Some(TermsFilter::Regex(_, re)) => re.is_match(&key.as_text()),
        Some(TermsFilter::Values(vs)) => vs.iter().any(|v| TermKeyRef::from_term(v) == Some(key)),
    }
}

/// The date format of a date aggregation's field values (borrowed: this runs per record).
fn field_format(format: &Option<DateFormat>) -> &DateFormat {
    format.as_ref().unwrap_or_else(|| default_date_format())
}

/// The default date format, parsed once.
pub(crate) fn default_date_format() -> &'static DateFormat {
    static DEFAULT: std::sync::LazyLock<DateFormat> =
        std::sync::LazyLock::new(DateFormat::default_format);
    &DEFAULT
}

/// Fold one matching document into an aggregation's state.
pub(crate) fn fold(
    agg: &Agg,
    state: &mut AggState,
    doc: &Doc<'_, '_>,
    ctx: &mut FoldCtx,
) -> Result<(), QueryError> {
    match (&agg.kind, state) {
        (AggKind::ValueCount { field }, AggState::Count(n)) => {
            *n += doc
                .values(field)
                .iter()
                .filter(|v| !matches!(v, Scalar::Null | Scalar::Object))
                .count() as u64;
        }
        (
            AggKind::Sum { field }
            | AggKind::Min { field }
            | AggKind::Max { field }
            | AggKind::Avg { field }
            | AggKind::Stats { field }
            | AggKind::ExtendedStats { field, .. },
            AggState::Stats(s),
        ) => doc.values(field).iter().filter_map(numeric).for_each(|x| s.add(x)),
        (AggKind::Cardinality { field, .. }, AggState::Cardinality(c)) => {
            doc.values(field).iter().filter_map(str_hash).for_each(|h| c.insert_hash(h));
        }
        (AggKind::Percentiles { field, .. }, AggState::Percentiles(t)) => {
            doc.values(field).iter().filter_map(numeric).for_each(|x| t.add(x));
        }
        (AggKind::TopHits { size, sort, source }, AggState::TopHits(top)) => {
            let delta = top.add(doc, *size, sort, source);
            ctx.grow(delta)?;
        }
        (AggKind::Terms { field, missing, include, exclude, .. }, AggState::Terms(map)) => {
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
                        map.entry(owned).or_insert_with(|| empty_bucket(&agg.subs))
                    }
                };
                bucket.fold(&agg.subs, doc, ctx)?;
            }
        }
        (
            AggKind::Histogram { field, interval, offset, hard_bounds, .. },
            AggState::Histogram(map),
        ) => {
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
            fold_indexed(agg, map, &mut idx, doc, ctx)?;
        }
        (
            AggKind::DateHistogram { field, interval, offset, time_zone, format, .. },
            AggState::Histogram(map),
        ) => {
            let start = |ms: i64| match interval {
                DateInterval::Calendar(unit) => {
                    date::calendar_floor(ms - offset, *unit, time_zone) + offset
                }
                DateInterval::Fixed(iv) => date::fixed_floor(ms, *iv, *offset, time_zone),
            };
            match doc.values(field) {
                // One value (a record's time): no list to build.
                [one] => {
                    if let Some(ms) = date_millis(one, format.as_ref()) {
                        fold_indexed(agg, map, &mut [start(ms)], doc, ctx)?;
                    }
                }
                values => {
                    let mut starts: Vec<i64> = values
                        .iter()
                        .filter_map(|v| date_millis(v, format.as_ref()))
                        .map(start)
                        .collect();
                    fold_indexed(agg, map, &mut starts, doc, ctx)?;
                }
            }
        }
        (AggKind::Range { field, ranges, .. }, AggState::Buckets(buckets)) => {
            let xs: Vec<f64> = doc.values(field).iter().filter_map(numeric).collect();
            for (r, b) in ranges.iter().zip(buckets.iter_mut()) {
                if xs.iter().any(|x| r.from.is_none_or(|f| *x >= f) && r.to.is_none_or(|t| *x < t))
                {
                    b.fold(&agg.subs, doc, ctx)?;
                }
            }
        }
        (AggKind::DateRange { field, ranges, format, .. }, AggState::Buckets(buckets)) => {
            let xs: Vec<f64> = doc
                .values(field)
                .iter()
                .filter_map(|v| date_millis(v, format.as_ref()))
                .map(|ms| ms as f64)
                .collect();
            for (r, b) in ranges.iter().zip(buckets.iter_mut()) {
                if xs.iter().any(|x| r.from.is_none_or(|f| *x >= f) && r.to.is_none_or(|t| *x < t))
                {
                    b.fold(&agg.subs, doc, ctx)?;
                }
            }
        }
        (AggKind::Filters { filters, other_bucket_key, .. }, AggState::Buckets(buckets)) => {
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
        }
        (AggKind::Filter { query }, AggState::Single(b)) => {
            if matches(query, doc) {
                b.fold(&agg.subs, doc, ctx)?;
            }
        }
        (AggKind::Missing { field }, AggState::Single(b)) => {
            if doc.values(field).iter().all(|v| matches!(v, Scalar::Null)) {
                b.fold(&agg.subs, doc, ctx)?;
            }
        }
        (AggKind::Global, AggState::Single(b)) => b.fold(&agg.subs, doc, ctx)?,
        _ => unreachable!("a state always has the shape of its aggregation"),
    }
    Ok(())
}

/// Count a document once in each distinct bucket of `keys`.
fn fold_indexed(
    agg: &Agg,
    map: &mut BTreeMap<i64, Bucket>,
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
                map.entry(k).or_insert_with(|| empty_bucket(&agg.subs))
            }
        };
        bucket.fold(&agg.subs, doc, ctx)?;
    }
    Ok(())
}

/// Merge `b` into `a` (both states of `agg`).
pub(crate) fn merge(agg: &Agg, a: &mut AggState, b: &AggState) {
    match (a, b) {
        (AggState::Count(x), AggState::Count(y)) => *x += y,
        (AggState::Stats(x), AggState::Stats(y)) => x.merge(y),
        (AggState::Cardinality(x), AggState::Cardinality(y)) => x.merge(y),
        (AggState::Percentiles(x), AggState::Percentiles(y)) => x.merge(y),
        (AggState::TopHits(x), AggState::TopHits(y)) => {
            if let AggKind::TopHits { size, sort, .. } = &agg.kind {
                x.merge(y, *size, sort);
            }
        }
        (AggState::Terms(x), AggState::Terms(y)) => {
            for (k, bucket) in y {
                match x.get_mut(k) {
                    Some(mine) => mine.merge(&agg.subs, bucket),
                    None => {
                        x.insert(k.clone(), bucket.clone());
                    }
                }
            }
        }
        (AggState::Histogram(x), AggState::Histogram(y)) => {
            for (k, bucket) in y {
                match x.get_mut(k) {
                    Some(mine) => mine.merge(&agg.subs, bucket),
                    None => {
                        x.insert(*k, bucket.clone());
                    }
                }
            }
        }
        (AggState::Buckets(x), AggState::Buckets(y)) => {
            for (mine, theirs) in x.iter_mut().zip(y) {
                mine.merge(&agg.subs, theirs);
            }
        }
        (AggState::Single(x), AggState::Single(y)) => x.merge(&agg.subs, y),
        _ => unreachable!("states of one aggregation always have one shape"),
    }
}

/// Estimated heap bytes of a state (for the memory budget after merges and loads).
pub(crate) fn heap_bytes(agg: &Agg, state: &AggState) -> usize {
    match state {
        AggState::Count(_) | AggState::Stats(_) => 48,
        AggState::Cardinality(_) => 256,
        AggState::Percentiles(_) => 512,
        AggState::TopHits(t) => 48 + t.heap_bytes(),
        AggState::Terms(m) => {
            48 + m.iter().map(|(k, b)| k.heap_bytes() + b.heap_bytes(&agg.subs)).sum::<usize>()
        }
        AggState::Histogram(m) => 48 + m.values().map(|b| b.heap_bytes(&agg.subs)).sum::<usize>(),
        AggState::Buckets(v) => 48 + v.iter().map(|b| b.heap_bytes(&agg.subs)).sum::<usize>(),
        AggState::Single(b) => 48 + b.heap_bytes(&agg.subs),
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

/// Render one aggregation in Elasticsearch's response shape.
pub(crate) fn render(
    agg: &Agg,
    state: &AggState,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    Ok(match (&agg.kind, state) {
        (AggKind::ValueCount { .. }, AggState::Count(n)) => json!({"value": n}),
        (AggKind::Sum { .. }, AggState::Stats(s)) => json!({"value": double_json(s.sum.value())}),
        (AggKind::Min { .. }, AggState::Stats(s)) => json!({"value": s.opt(s.min)}),
        (AggKind::Max { .. }, AggState::Stats(s)) => json!({"value": s.opt(s.max)}),
        (AggKind::Avg { .. }, AggState::Stats(s)) => json!({"value": s.opt(s.avg())}),
        (AggKind::Stats { .. }, AggState::Stats(s)) => stats_json(s),
        (AggKind::ExtendedStats { sigma, .. }, AggState::Stats(s)) => {
            let mut v = stats_json(s);
            let n = s.count as f64;
            let var = s.variance();
            let var_sampling = if s.count > 1 { var * n / (n - 1.0) } else { f64::NAN };
            let sd = var.sqrt();
            let sd_sampling = var_sampling.sqrt();
            let avg = s.avg();
            let m = v.as_object_mut().expect("stats is an object");
            m.insert("sum_of_squares".into(), s.opt(s.sum_of_squares.value()));
            m.insert("variance".into(), s.opt(var));
            m.insert("variance_population".into(), s.opt(var));
            m.insert("variance_sampling".into(), s.opt(var_sampling));
            m.insert("std_deviation".into(), s.opt(sd));
            m.insert("std_deviation_population".into(), s.opt(sd));
            m.insert("std_deviation_sampling".into(), s.opt(sd_sampling));
            m.insert(
                "std_deviation_bounds".into(),
                json!({
                    "upper": s.opt(avg + sigma * sd), "lower": s.opt(avg - sigma * sd),
                    "upper_population": s.opt(avg + sigma * sd), "lower_population": s.opt(avg - sigma * sd),
                    "upper_sampling": s.opt(avg + sigma * sd_sampling), "lower_sampling": s.opt(avg - sigma * sd_sampling),
                }),
            );
            v
        }
        (AggKind::Cardinality { .. }, AggState::Cardinality(c)) => json!({"value": c.estimate()}),
        (AggKind::Percentiles { percents, keyed, .. }, AggState::Percentiles(t)) => {
            let value = |p: f64| t.percentile(p).map_or(Value::Null, double_json);
            if *keyed {
                let m: Map<String, Value> =
                    percents.iter().map(|p| (java_double(*p), value(*p))).collect();
                json!({"values": m})
            } else {
                json!({"values": percents.iter().map(|p| json!({"key": double_json(*p), "value": value(*p)})).collect::<Vec<_>>()})
            }
        }
        (AggKind::TopHits { sort, source, .. }, AggState::TopHits(top)) => {
            json!({"hits": top.render(ctx.topic, sort, source)})
        }
        (
            AggKind::Terms { field, size, min_doc_count, order, include, exclude, .. },
            AggState::Terms(map),
        ) => {
            // min_doc_count 0: the field's other values, seen in records that did not reach
            // this bucket, are listed with doc_count 0.
            let zeros: Vec<(TermKey, Bucket)> = match ctx.seen.iter().find(|(f, _)| *f == field) {
                Some((_, seen)) if *min_doc_count == 0 && !ctx.in_empty_bucket => seen
                    .iter()
                    .filter(|k| !map.contains_key(*k))
                    .filter(|k| {
                        passes(include, k.as_key_ref(), true)
                            && !passes(exclude, k.as_key_ref(), false)
                    })
                    .map(|k| (k.clone(), empty_bucket(&agg.subs)))
                    .collect(),
                _ => Vec::new(),
            };
            let mut eligible: Vec<(&TermKey, &Bucket)> = map
                .iter()
                .filter(|(_, b)| b.doc_count >= *min_doc_count)
                .chain(zeros.iter().map(|(k, b)| (k, b)))
                .collect();
            // Elasticsearch's final reduce drops buckets under min_doc_count without adding
            // them to sum_other_doc_count: "other" counts only eligible buckets cut by size.
            let total: u64 = eligible.iter().map(|(_, b)| b.doc_count).sum();
            let cmp =
                |a: &(&TermKey, &Bucket), b: &(&TermKey, &Bucket)| terms_cmp(agg, order, a, b);
            if eligible.len() > *size {
                eligible.select_nth_unstable_by(*size - 1, cmp);
                eligible.truncate(*size);
            }
            eligible.sort_by(cmp);
            ctx.count(eligible.len())?;
            let shown: u64 = eligible.iter().map(|(_, b)| b.doc_count).sum();
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
            json!({"doc_count_error_upper_bound": 0, "sum_other_doc_count": total - shown, "buckets": buckets})
        }
        (
            AggKind::Histogram {
                interval,
                offset,
                min_doc_count,
                extended_bounds,
                hard_bounds,
                keyed,
                ..
            },
            AggState::Histogram(map),
        ) => {
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
            histogram_json(agg, map, entries, *keyed, ctx)?
        }
        (
            AggKind::DateHistogram {
                interval,
                offset,
                time_zone,
                format,
                min_doc_count,
                extended_bounds,
                keyed,
                ..
            },
            AggState::Histogram(map),
        ) => {
            let floor = |ms: i64| match interval {
                DateInterval::Calendar(unit) => {
                    date::calendar_floor(ms - offset, *unit, time_zone) + offset
                }
                DateInterval::Fixed(iv) => date::fixed_floor(ms, *iv, *offset, time_zone),
            };
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
            histogram_json(agg, map, entries, *keyed, ctx)?
        }
        (AggKind::Range { ranges, keyed, .. }, AggState::Buckets(buckets)) => {
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
            keyed_or_list(&agg.subs, entries, *keyed, Origin::Collected, ctx)?
        }
        (
            AggKind::DateRange { ranges, keyed, format, time_zone, .. },
            AggState::Buckets(buckets),
        ) => {
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
            keyed_or_list(&agg.subs, entries, *keyed, Origin::Collected, ctx)?
        }
        (AggKind::Filters { filters, keyed, other_bucket_key }, AggState::Buckets(buckets)) => {
            ctx.count(buckets.len())?;
            let names = filters
                .iter()
                .map(|(k, _)| k.clone().unwrap_or_default())
                .chain(other_bucket_key.clone());
            let entries = names.zip(buckets).map(|(name, b)| (name, Map::new(), b));
            let v = keyed_or_list(&agg.subs, entries, *keyed, Origin::Collected, ctx)?;
            // filters always wraps its buckets, keyed or not.
            match v {
                Value::Object(mut m) if m.contains_key("buckets") => {
                    m.remove("buckets").map_or(Value::Null, |b| json!({"buckets": b}))
                }
                other => other,
            }
        }
        (
            AggKind::Filter { .. } | AggKind::Missing { .. } | AggKind::Global,
            AggState::Single(b),
        ) => {
            ctx.count(1)?;
            bucket_json(&agg.subs, b, Map::new(), Origin::Collected, ctx)?
        }
        _ => unreachable!("a state always has the shape of its aggregation"),
    })
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
    map: &BTreeMap<i64, Bucket>,
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
    map: &BTreeMap<i64, Bucket>,
    entries: impl Iterator<Item = (String, Map<String, Value>, i64)>,
    keyed: bool,
    ctx: &mut RenderCtx<'_>,
) -> Result<Value, QueryError> {
    let empty = empty_bucket(&agg.subs);
    let entries: Vec<(String, Map<String, Value>, &Bucket)> =
        entries.map(|(s, h, k)| (s, h, map.get(&k).unwrap_or(&empty))).collect();
    keyed_or_list(&agg.subs, entries.into_iter(), keyed, Origin::Filled, ctx)
}

/// `origin` is [`Origin::Filled`] for a histogram, whose empty buckets are all filled in.
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

fn stats_json(s: &Stats) -> Value {
    json!({
        "count": s.count,
        "min": s.opt(s.min),
        "max": s.opt(s.max),
        "avg": s.opt(s.avg()),
        "sum": double_json(s.sum.value()),
    })
}

/// A single-value metric of a bucket's sub-aggregation, for ordering (NaN when undefined).
fn order_metric(agg: &Agg, b: &Bucket, index: usize, metric: &Option<String>) -> f64 {
    let (Some(sub), Some(state)) = (agg.subs.get(index), b.subs.get(index)) else {
        return f64::NAN;
    };
    match (&sub.kind, state) {
        (AggKind::ValueCount { .. }, AggState::Count(n)) => *n as f64,
        (AggKind::Sum { .. }, AggState::Stats(s)) => s.metric("sum"),
        (AggKind::Min { .. }, AggState::Stats(s)) => s.metric("min"),
        (AggKind::Max { .. }, AggState::Stats(s)) => s.metric("max"),
        (AggKind::Avg { .. }, AggState::Stats(s)) => s.metric("avg"),
        (AggKind::Stats { .. } | AggKind::ExtendedStats { .. }, AggState::Stats(s)) => {
            s.metric(metric.as_deref().unwrap_or(""))
        }
        (AggKind::Cardinality { .. }, AggState::Cardinality(c)) => c.estimate() as f64,
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
