//! Percentile estimation in the style of Elasticsearch's `percentiles`
//! aggregation: a *merging t-digest* (Dunning & Ertl, "Computing Extremely
//! Accurate Quantiles Using t-Digests", 2019) with an exact small-data mode.
//!
//! # Algorithm
//!
//! A [`TDigest`] is a sorted list of centroids `(mean, weight)` plus an
//! unsorted buffer of raw values. [`TDigest::add`] only appends to the buffer;
//! when the buffer fills (≈ `10 × compression` values), on [`TDigest::merge`],
//! before serialization and (on a copy) before answering a query, the buffer
//! and the centroids are sorted together and *compressed*:
//!
//! * **Exact mode.** While the digest holds at most `4 × compression`
//!   distinct values, every centroid is a run of identical values
//!   `(value, multiplicity)`. Nothing is lost, so percentiles are exact in
//!   the Elasticsearch sense (see below) for any number of values with few
//!   distinct values (e.g. small integers) and for every input of at most
//!   `4 × compression` values.
//! * **Approximate mode.** Beyond that, one greedy merge pass builds the new
//!   centroid list under the `k1` scale function
//!   `k(q) = δ / (2π) · asin(2q − 1)`: a centroid covering the quantile
//!   range `[q_l, q_r]` must satisfy `k(q_r) − k(q_l) ≤ 1`. Centroids are
//!   therefore tiny near the tails (`Δq ≈ π²/δ²` at the extremes). In the
//!   middle, where `k1` would allow up to `Δq = π/δ`, a centroid is also
//!   capped at `Δq ≤ 2/δ` (1 / compression: 1 % of the values for the
//!   default), because a centroid can end up straddling a gap that a later
//!   merge fills (see *Merge laws*), and then its whole weight is misplaced
//!   in rank. The digest holds at most ≈ `δ` centroids, typically
//!   `0.7 δ`–`0.9 δ`. Runs of identical values that are known to be pure
//!   (raw buffered values, exact-mode runs) may be split across centroids,
//!   which keeps a heavy point mass from turning into one oversized centroid.
//!   Here `δ = 2 × compression` (the extra factor buys accuracy after many
//!   merges at ≈ 2 KiB of state for the default compression).
//!
//! `min` and `max` are always tracked exactly. Non-finite inputs (NaN, ±∞)
//! are ignored; `-0.0` is stored as `0.0`.
//!
//! # Percentile interpolation
//!
//! With `n` values and `index = percent / 100 × n`:
//!
//! * **Exact mode** (same as the sorting digest Elasticsearch uses for small
//!   inputs; Hyndman–Fan type 5): the `i`-th smallest value (0-based, `x_i`)
//!   sits at rank `i + 0.5`. If `index < 0.5` the answer is `min`, if
//!   `index > n − 0.5` it is `max`, otherwise with `j = ⌊index − 0.5⌋` and
//!   `f = index − 0.5 − j` the answer is `x_j · (1 − f) + x_{j+1} · f`.
//!   For `[1, 2, 3, 4, 5]`: p0 = 1, p25 = 1.75, p50 = 3, p100 = 5.
//! * **Approximate mode** (t-digest's `MergingDigest.quantile`): centroid
//!   `i` sits at the rank of its centre; the answer is interpolated linearly
//!   between neighbouring centroid centres, between `min` (at rank 1) and the
//!   first centre, and between the last centre and `max` (at rank `n − 1`).
//!   Unit-weight centroids are treated as point masses of width 1.
//!
//! # Error bound
//!
//! Exact mode has no error. In approximate mode the rank error of a
//! percentile `q` is a fraction of the local centroid width
//! `Δq ≈ min(2π·sqrt(q(1−q))/δ, 2/δ)`, and at most that width when a
//! centroid straddles a gap that a later merge fills; the tests check
//! `|rank(estimate)/n − q| ≤ 1 %`
//! for `q ∈ {1, 5, 25, 50, 75, 95, 99} %` on uniform, normal, Pareto and
//! heavily duplicated data of up to 10⁶ values, in one pass and after
//! arbitrary split-and-merge trees. The state holds `O(compression)`
//! centroids: under 10 KiB serialized for compression 100.
//!
//! # Merge laws
//!
//! [`TDigest::merge`] is a multiset union followed by compression.
//! `TDigest::new(c)` is an exact identity: merging an empty digest into any
//! digest (or vice versa, for equal compressions) leaves it `==`. In exact
//! mode the state is a function of the multiset of values, so merging is
//! associative and commutative *exactly*. In approximate mode the centroids
//! depend on the merge order and grouping (as for every t-digest), but every
//! grouping satisfies the same rank-error bound. The merged digest keeps the
//! compression of the receiver.
//!
//! Merging digests of disjoint value ranges (e.g. consecutive slices of
//! sorted data) is the hard case: a centroid that absorbs values from both
//! sides of a gap sits, by its mean, inside the gap, and once a later merge
//! fills the gap that centroid's weight is counted on the wrong side of the
//! filling values. Two rules bound this: the `2/δ` width cap above, and a
//! merge never lets one centroid span a seam where a long run (at least a
//! centroid's width) of the receiver's items meets a long run of the other
//! digest's items, so disjoint inputs stay apart.
//!
//! Equality (`==`) and serialization see a digest *with its buffer
//! compressed*, so a round trip through serde compares equal.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::f64::consts::PI;

/// Elasticsearch's default `compression`.
pub const DEFAULT_COMPRESSION: f64 = 100.0;

/// Smallest accepted compression; smaller (or non-finite) values are
/// clamped (NaN becomes [`DEFAULT_COMPRESSION`]).
pub const MIN_COMPRESSION: f64 = 1.0;

/// Largest accepted compression (bounds the state size).
pub const MAX_COMPRESSION: f64 = 10_000.0;

/// Internal scale parameter `δ` as a multiple of the compression.
const SCALE_FACTOR: f64 = 2.0;

/// A centroid covers at most this many `1/δ` of the quantile range (caps
/// `k1`'s `π/δ` at the median; see the module docs).
const MAX_WIDTH_FACTOR: f64 = 2.0;

/// Exact mode holds at most this many distinct values per unit compression.
const EXACT_FACTOR: f64 = 4.0;

/// Buffer capacity per unit compression.
const BUFFER_FACTOR: f64 = 10.0;

/// One cluster of values: their mean and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Centroid {
    mean: f64,
    weight: u64,
}

/// A mergeable percentile sketch (Elasticsearch `percentiles`).
///
/// See the [module documentation](self) for the algorithm, the error bound,
/// the interpolation formula and the merge laws.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "TDigestRepr", into = "TDigestRepr")]
pub struct TDigest {
    compression: f64,
    /// Sorted by mean; all weights > 0.
    centroids: Vec<Centroid>,
    /// True while every centroid is a run of identical values (and the
    /// centroid means are strictly increasing).
    exact: bool,
    /// Raw values not yet folded into `centroids` (all finite).
    buffer: Vec<f64>,
    /// Total weight of `centroids` plus `buffer.len()`.
    count: u64,
    /// Exact minimum (`+∞` when empty).
    min: f64,
    /// Exact maximum (`−∞` when empty).
    max: f64,
}

impl Default for TDigest {
    /// An empty digest with [`DEFAULT_COMPRESSION`].
    fn default() -> Self {
        Self::new(DEFAULT_COMPRESSION)
    }
}

impl PartialEq for TDigest {
    /// Compares the digests as they are after compressing their buffers
    /// (the serialized view).
    fn eq(&self, other: &Self) -> bool {
        let a = self.flushed();
        let b = other.flushed();
        a.compression == b.compression
            && a.count == b.count
            && a.exact == b.exact
            && a.centroids == b.centroids
            && (a.count == 0 || (a.min == b.min && a.max == b.max))
    }
}

impl TDigest {
    /// Creates an empty digest. `compression` is as in Elasticsearch
    /// (default [`DEFAULT_COMPRESSION`]); it is clamped to
    /// [`MIN_COMPRESSION`]`..=`[`MAX_COMPRESSION`], NaN means the default.
    pub fn new(compression: f64) -> Self {
        Self {
            compression: sanitize_compression(compression),
            centroids: Vec::new(),
            exact: true,
            buffer: Vec::new(),
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// The (sanitized) compression parameter.
    pub fn compression(&self) -> f64 {
        self.compression
    }

    /// Adds one value. NaN and ±∞ are ignored. Amortised `O(log compression)`.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let x = if x == 0.0 { 0.0 } else { x };
        self.buffer.push(x);
        self.count = self.count.saturating_add(1);
        if x < self.min {
            self.min = x;
        }
        if x > self.max {
            self.max = x;
        }
        if self.buffer.len() >= self.buffer_capacity() {
            self.compress();
        }
    }

    /// Merges `other` into `self` (multiset union, then compression with
    /// `self`'s compression). Merging an empty digest is a no-op.
    pub fn merge(&mut self, other: &TDigest) {
        if other.count == 0 {
            return;
        }
        self.count = self.count.saturating_add(other.count);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        let mut items = self.take_items();
        items.extend(other.centroids.iter().map(|c| Item {
            mean: c.mean,
            weight: c.weight,
            pure: other.exact,
            from_other: true,
        }));
        items.extend(other.buffer.iter().map(|&x| Item {
            mean: x,
            weight: 1,
            pure: true,
            from_other: true,
        }));
        self.rebuild(items);
    }

    /// Number of (finite) values added, including merged digests.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest value added, `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value added, `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Whether all values are still represented exactly (no lossy
    /// compression has happened).
    pub fn is_exact(&self) -> bool {
        self.flushed().exact
    }

    /// Estimated `percent`-th percentile, `percent` in `[0, 100]` as in
    /// Elasticsearch (values outside are clamped). `None` when the digest is
    /// empty or `percent` is NaN. `0` gives the exact minimum, `100` the exact
    /// maximum.
    pub fn percentile(&self, percent: f64) -> Option<f64> {
        if self.count == 0 || percent.is_nan() {
            return None;
        }
        let q = (percent / 100.0).clamp(0.0, 1.0);
        let d = self.flushed();
        let v = if d.exact { d.exact_quantile(q) } else { d.approx_quantile(q) };
        Some(v.clamp(d.min, d.max))
    }

    /// Several percentiles at once (compresses the buffer copy only once).
    pub fn percentiles(&self, percents: &[f64]) -> Vec<Option<f64>> {
        let d = self.flushed();
        percents.iter().map(|&p| d.percentile(p)).collect()
    }

    /// Folds the buffer into the centroids. Never needed for correctness;
    /// useful before cloning or storing many digests.
    pub fn compress(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let items = self.take_items();
        self.rebuild(items);
    }

    /// A view of `self` with an empty buffer (borrowed when already so).
    fn flushed(&self) -> std::borrow::Cow<'_, TDigest> {
        if self.buffer.is_empty() {
            std::borrow::Cow::Borrowed(self)
        } else {
            let mut d = self.clone();
            d.compress();
            std::borrow::Cow::Owned(d)
        }
    }

    fn buffer_capacity(&self) -> usize {
        (self.compression * BUFFER_FACTOR).ceil().max(64.0) as usize
    }

    fn exact_limit(&self) -> usize {
        (self.compression * EXACT_FACTOR).ceil() as usize
    }

    fn delta(&self) -> f64 {
        self.compression * SCALE_FACTOR
    }

    /// Moves centroids and buffer out as merge items.
    fn take_items(&mut self) -> Vec<Item> {
        let pure = self.exact;
        let mut items: Vec<Item> = self
            .centroids
            .drain(..)
            .map(|c| Item { mean: c.mean, weight: c.weight, pure, from_other: false })
            .collect();
        items.extend(self.buffer.drain(..).map(|x| Item {
            mean: x,
            weight: 1,
            pure: true,
            from_other: false,
        }));
        items
    }

    /// Sorts `items` and rebuilds the centroid list (exact if possible).
    fn rebuild(&mut self, mut items: Vec<Item>) {
        items.sort_by(|a, b| a.mean.total_cmp(&b.mean));
        let total: u64 = items.iter().fold(0u64, |s, i| s.saturating_add(i.weight));
        if items.iter().all(|i| i.pure) {
            let mut runs: Vec<Centroid> = Vec::new();
            for it in &items {
                match runs.last_mut() {
                    Some(last) if last.mean == it.mean => {
                        last.weight = last.weight.saturating_add(it.weight);
                    }
                    _ => runs.push(Centroid { mean: it.mean, weight: it.weight }),
                }
            }
            if runs.len() <= self.exact_limit() {
                self.centroids = runs;
                self.exact = true;
                return;
            }
        }
        self.centroids = greedy_merge(&items, total, self.delta());
        self.exact = false;
    }

    fn exact_quantile(&self, q: f64) -> f64 {
        let n = self.count as f64;
        let index = q * n;
        if self.count == 1 || index < 0.5 {
            return self.min;
        }
        if n - index <= 0.5 {
            return self.max;
        }
        let pos = index - 0.5;
        let j = pos.floor();
        let f = pos - j;
        let j = j as u64;
        let a = self.value_at(j);
        let b = self.value_at(j.saturating_add(1));
        lerp(a, b, f)
    }

    /// The `rank`-th smallest value (0-based) in exact mode.
    fn value_at(&self, rank: u64) -> f64 {
        let mut cum = 0u64;
        for c in &self.centroids {
            cum = cum.saturating_add(c.weight);
            if rank < cum {
                return c.mean;
            }
        }
        self.max
    }

    fn approx_quantile(&self, q: f64) -> f64 {
        let cs = &self.centroids;
        let (Some(first), Some(last)) = (cs.first(), cs.last()) else {
            return self.min;
        };
        let n = self.count as f64;
        let index = q * n;
        if index < 1.0 {
            return self.min;
        }
        if index > n - 1.0 {
            return self.max;
        }
        let w0 = first.weight as f64;
        if index < w0 / 2.0 {
            // Between min (rank 1) and the first centroid's centre.
            return interpolate(1.0, self.min, w0 / 2.0, first.mean, index);
        }
        let wl = last.weight as f64;
        if index > n - wl / 2.0 {
            // Between the last centroid's centre and max (rank n - 1).
            return interpolate(n - wl / 2.0, last.mean, n - 1.0, self.max, index);
        }
        let mut left_centre = w0 / 2.0;
        for pair in cs.windows(2) {
            let [l, r] = pair else { break };
            let (wl, wr) = (l.weight as f64, r.weight as f64);
            let right_centre = left_centre + (wl + wr) / 2.0;
            if index < right_centre {
                let mut lo = left_centre;
                let mut hi = right_centre;
                if l.weight == 1 {
                    if index - left_centre < 0.5 {
                        return l.mean;
                    }
                    lo += 0.5;
                }
                if r.weight == 1 {
                    if right_centre - index <= 0.5 {
                        return r.mean;
                    }
                    hi -= 0.5;
                }
                return interpolate(lo, l.mean, hi, r.mean, index);
            }
            left_centre = right_centre;
        }
        last.mean
    }
}

/// One input to a compression pass.
#[derive(Debug, Clone, Copy)]
struct Item {
    mean: f64,
    weight: u64,
    /// All values in this item are identical, so it may be split.
    pure: bool,
    /// Comes from the digest being merged in, not the receiver.
    from_other: bool,
}

/// The `k1` scale function, `k(q) = δ/(2π) asin(2q − 1)`.
fn k1(q: f64, delta: f64) -> f64 {
    delta / (2.0 * PI) * (2.0 * q - 1.0).clamp(-1.0, 1.0).asin()
}

/// Inverse of [`k1`], clamped to `[0, 1]`.
fn k1_inv(k: f64, delta: f64) -> f64 {
    let angle = (k * 2.0 * PI / delta).clamp(-PI / 2.0, PI / 2.0);
    ((angle.sin() + 1.0) / 2.0).clamp(0.0, 1.0)
}

/// Largest cumulative weight the centroid starting after `w_before` may reach:
/// one unit of `k1`, and at most `MAX_WIDTH_FACTOR / δ` of the quantile range.
fn weight_limit(w_before: u64, total: u64, delta: f64) -> u64 {
    let n = total as f64;
    let q0 = w_before as f64 / n;
    let q1 = k1_inv(k1(q0, delta) + 1.0, delta).min(q0 + MAX_WIDTH_FACTOR / delta);
    // Saturating float-to-int cast.
    (q1 * n).floor() as u64
}

/// For each item, the total weight of the run of consecutive items from the
/// same digest (receiver or merged-in) that it belongs to.
fn source_run_weights(items: &[Item]) -> Vec<u64> {
    let mut out = Vec::with_capacity(items.len());
    for run in items.chunk_by(|a, b| a.from_other == b.from_other) {
        let w = run.iter().fold(0u64, |s, i| s.saturating_add(i.weight));
        out.extend(std::iter::repeat_n(w, run.len()));
    }
    out
}

/// One greedy merging-digest pass over sorted items.
fn greedy_merge(items: &[Item], total: u64, delta: f64) -> Vec<Centroid> {
    let runs = source_run_weights(items);
    let mut out: Vec<Centroid> = Vec::new();
    let mut cur = Centroid { mean: 0.0, weight: 0 };
    let mut before = 0u64;
    let mut limit = weight_limit(0, total, delta);
    for (i, it) in items.iter().enumerate() {
        // Two long runs from different digests meeting here means disjoint
        // ranges with a gap between them: a centroid spanning the seam would
        // be misplaced in rank once a later merge fills the gap.
        let seam = i > 0 && items[i - 1].from_other != it.from_other && {
            let width = limit.saturating_sub(before);
            runs[i - 1] >= width && runs[i] >= width
        };
        if seam && cur.weight > 0 {
            before = before.saturating_add(cur.weight);
            out.push(cur);
            cur.weight = 0;
            limit = weight_limit(before, total, delta);
        }
        let mut rem = it.weight;
        while rem > 0 {
            let cap = limit.saturating_sub(before.saturating_add(cur.weight));
            if rem <= cap || (cur.weight == 0 && !it.pure) {
                absorb(&mut cur, it.mean, rem);
                rem = 0;
            } else {
                if it.pure {
                    let take = if cur.weight == 0 { cap.max(1) } else { cap }.min(rem);
                    if take > 0 {
                        absorb(&mut cur, it.mean, take);
                        rem -= take;
                    }
                }
                before = before.saturating_add(cur.weight);
                out.push(cur);
                cur.weight = 0;
                limit = weight_limit(before, total, delta);
            }
        }
    }
    if cur.weight > 0 {
        out.push(cur);
    }
    out
}

/// Adds `w` copies of `x` to centroid `c` (weighted mean, overflow-safe).
fn absorb(c: &mut Centroid, x: f64, w: u64) {
    if c.weight == 0 {
        c.mean = x;
        c.weight = w;
        return;
    }
    let total = c.weight.saturating_add(w);
    let f = w as f64 / total as f64;
    c.mean = lerp(c.mean, x, f);
    c.weight = total;
}

/// `a + (b − a) · t` without overflow, clamped between `a` and `b`.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let v = a * (1.0 - t) + b * t;
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    if v.is_nan() { lo } else { v.clamp(lo, hi) }
}

/// Linear interpolation through `(x0, y0)` and `(x1, y1)` at `x`.
fn interpolate(x0: f64, y0: f64, x1: f64, y1: f64, x: f64) -> f64 {
    let span = x1 - x0;
    if span <= 0.0 || span.is_nan() {
        return y0;
    }
    lerp(y0, y1, ((x - x0) / span).clamp(0.0, 1.0))
}

fn sanitize_compression(c: f64) -> f64 {
    if c.is_nan() { DEFAULT_COMPRESSION } else { c.clamp(MIN_COMPRESSION, MAX_COMPRESSION) }
}

/// Error returned when a serialized [`TDigest`] is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TDigestDecodeError {
    /// A centroid mean, the minimum or the maximum is not finite.
    #[error("non-finite value in serialized t-digest")]
    NonFinite,
    /// A centroid has weight zero.
    #[error("zero-weight centroid")]
    ZeroWeight,
    /// Centroid means are not sorted (strictly, in exact mode).
    #[error("centroids are not sorted by mean")]
    Unsorted,
    /// Centroids lie outside `[min, max]`, or min/max are inconsistent with
    /// emptiness.
    #[error("min/max inconsistent with the centroids")]
    BadBounds,
    /// An exact-mode digest holds more distinct values than allowed.
    #[error("exact-mode digest holds too many distinct values")]
    TooManyExact,
}

/// Serialized form: the compressed digest.
#[derive(Serialize, Deserialize)]
struct TDigestRepr {
    compression: f64,
    exact: bool,
    /// `[min, max]`, `None` when empty.
    bounds: Option<[f64; 2]>,
    centroids: Vec<Centroid>,
}

impl From<TDigest> for TDigestRepr {
    fn from(mut d: TDigest) -> Self {
        d.compress();
        Self {
            compression: d.compression,
            exact: d.exact,
            bounds: (d.count > 0).then_some([d.min, d.max]),
            centroids: d.centroids,
        }
    }
}

impl TryFrom<TDigestRepr> for TDigest {
    type Error = TDigestDecodeError;

    fn try_from(r: TDigestRepr) -> Result<Self, Self::Error> {
        let mut d = TDigest::new(r.compression);
        let mut count = 0u64;
        for c in &r.centroids {
            if !c.mean.is_finite() {
                return Err(TDigestDecodeError::NonFinite);
            }
            if c.weight == 0 {
                return Err(TDigestDecodeError::ZeroWeight);
            }
            count = count.saturating_add(c.weight);
        }
        for pair in r.centroids.windows(2) {
            if let [a, b] = pair {
                let ord = a.mean.total_cmp(&b.mean);
                if ord == Ordering::Greater || (r.exact && ord == Ordering::Equal) {
                    return Err(TDigestDecodeError::Unsorted);
                }
            }
        }
        match (r.bounds, r.centroids.first(), r.centroids.last()) {
            (None, None, None) => {}
            (Some([min, max]), Some(first), Some(last)) => {
                if !min.is_finite() || !max.is_finite() {
                    return Err(TDigestDecodeError::NonFinite);
                }
                if min > first.mean || max < last.mean {
                    return Err(TDigestDecodeError::BadBounds);
                }
                if r.exact && (min != first.mean || max != last.mean) {
                    return Err(TDigestDecodeError::BadBounds);
                }
                d.min = if min == 0.0 { 0.0 } else { min };
                d.max = if max == 0.0 { 0.0 } else { max };
            }
            _ => return Err(TDigestDecodeError::BadBounds),
        }
        if r.exact && r.centroids.len() > d.exact_limit() {
            return Err(TDigestDecodeError::TooManyExact);
        }
        d.exact = r.exact;
        d.count = count;
        d.centroids = r.centroids;
        for c in &mut d.centroids {
            if c.mean == 0.0 {
                c.mean = 0.0;
            }
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::sketch::test_rng::TestRng;

    const QS: [f64; 7] = [1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0];

    #[derive(Debug, Clone, Copy)]
    enum Dist {
        Uniform,
        Normal,
        Pareto,
        SmallInts,
        Ints5000,
        ZeroHeavy,
        Sorted,
    }

    const DISTS: [Dist; 7] = [
        Dist::Uniform,
        Dist::Normal,
        Dist::Pareto,
        Dist::SmallInts,
        Dist::Ints5000,
        Dist::ZeroHeavy,
        Dist::Sorted,
    ];

    fn sample(d: Dist, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = TestRng::seed_from_u64(seed);
        let mut v: Vec<f64> = (0..n)
            .map(|_| match d {
                Dist::Uniform | Dist::Sorted => rng.unit() * 1000.0 - 200.0,
                Dist::Normal => {
                    let u1: f64 = 1.0 - rng.unit();
                    let u2: f64 = rng.unit();
                    50.0 + 10.0 * (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
                }
                Dist::Pareto => (1.0 - rng.unit()).powf(-1.0 / 1.2),
                Dist::SmallInts => rng.below(51) as f64,
                Dist::Ints5000 => rng.below(5000) as f64,
                Dist::ZeroHeavy => {
                    if rng.chance(0.3) {
                        0.0
                    } else {
                        rng.unit() * 10.0
                    }
                }
            })
            .collect();
        if matches!(d, Dist::Sorted) {
            v.sort_by(f64::total_cmp);
        }
        v
    }

    /// Distance from `q` (fraction) to the rank interval of `v` in `sorted`.
    fn rank_error(sorted: &[f64], v: f64, q: f64) -> f64 {
        let n = sorted.len() as f64;
        let lo = sorted.partition_point(|&x| x < v) as f64 / n;
        let hi = sorted.partition_point(|&x| x <= v) as f64 / n;
        if q < lo {
            lo - q
        } else if q > hi {
            q - hi
        } else {
            0.0
        }
    }

    fn max_rank_error(d: &TDigest, data: &[f64]) -> f64 {
        let mut sorted = data.to_vec();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(d.count(), sorted.len() as u64);
        assert_eq!(d.min(), sorted.first().copied());
        assert_eq!(d.max(), sorted.last().copied());
        QS.iter()
            .map(|&p| rank_error(&sorted, d.percentile(p).unwrap(), p / 100.0))
            .fold(0.0, f64::max)
    }

    fn build(values: &[f64]) -> TDigest {
        let mut d = TDigest::default();
        for &x in values {
            d.add(x);
        }
        d
    }

    fn merge_in_grouping(mut parts: Vec<TDigest>, picks: &[(usize, usize, bool)]) -> TDigest {
        let mut k = 0;
        while parts.len() > 1 {
            let (a, b, flip) = picks.get(k).copied().unwrap_or((0, 0, false));
            k += 1;
            let i = a % parts.len();
            let taken = parts.remove(i);
            let j = b % parts.len();
            if flip {
                let mut t = taken;
                t.merge(&parts[j]);
                parts[j] = t;
            } else {
                parts[j].merge(&taken);
            }
        }
        parts.pop().unwrap_or_default()
    }

    #[test]
    fn empty_digest() {
        let d = TDigest::default();
        assert_eq!(d.count(), 0);
        assert_eq!(d.percentile(50.0), None);
        assert_eq!(d.min(), None);
        assert_eq!(d.max(), None);
        assert_eq!(d.compression(), 100.0);
    }

    #[test]
    fn small_inputs_are_exact_es_style() {
        let d = build(&[5.0, 3.0, 1.0, 4.0, 2.0]);
        assert_eq!(d.percentile(50.0), Some(3.0));
        assert_eq!(d.percentile(0.0), Some(1.0));
        assert_eq!(d.percentile(100.0), Some(5.0));
        assert_eq!(d.percentile(25.0), Some(1.75));
        assert_eq!(d.percentile(75.0), Some(4.25));
        assert_eq!(d.percentile(-5.0), Some(1.0));
        assert_eq!(d.percentile(500.0), Some(5.0));
        assert_eq!(d.percentile(f64::NAN), None);
        let one = build(&[42.0]);
        for p in QS {
            assert_eq!(one.percentile(p), Some(42.0));
        }
        let two = build(&[1.0, 3.0]);
        assert_eq!(two.percentile(50.0), Some(2.0));
        // Duplicates behave as repeated singletons.
        let dup = build(&[1.0, 1.0, 1.0, 2.0]);
        assert_eq!(dup.percentile(50.0), Some(1.0));
        assert_eq!(dup.percentile(75.0), Some(1.5));
        assert!(dup.is_exact());
    }

    #[test]
    fn ignores_non_finite_and_normalises_negative_zero() {
        let mut d = TDigest::default();
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1.0] {
            d.add(x);
        }
        assert_eq!(d.count(), 2);
        assert!(d.min().unwrap().is_sign_positive());
        assert_eq!(d.percentile(0.0), Some(0.0));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let mut d = TDigest::new(5.0);
        for i in 0..10_000 {
            d.add(if i % 2 == 0 { f64::MAX } else { -f64::MAX });
            d.add(f64::from(i));
        }
        for p in [0.0, 1.0, 25.0, 50.0, 75.0, 99.0, 100.0] {
            let v = d.percentile(p).unwrap();
            assert!(v.is_finite(), "p{p} -> {v}");
        }
    }

    #[test]
    fn compression_is_sanitized() {
        assert_eq!(TDigest::new(f64::NAN).compression(), DEFAULT_COMPRESSION);
        assert_eq!(TDigest::new(-3.0).compression(), MIN_COMPRESSION);
        assert_eq!(TDigest::new(f64::INFINITY).compression(), MAX_COMPRESSION);
        let mut d = TDigest::new(0.0);
        for i in 0..1000 {
            d.add(f64::from(i));
        }
        assert!(d.percentile(50.0).unwrap().is_finite());
    }

    #[test]
    fn one_million_values_each_distribution() {
        for (seed, dist) in DISTS.iter().enumerate() {
            let data = sample(*dist, 1_000_000, seed as u64 + 10);
            let d = build(&data);
            let err = max_rank_error(&d, &data);
            let bytes = postcard::to_allocvec(&d).unwrap();
            println!(
                "{dist:?}: max rank error {err:.5}, {} centroids, {} bytes",
                d.flushed().centroids.len(),
                bytes.len()
            );
            assert!(err <= 0.01, "{dist:?}: rank error {err}");
            assert!(bytes.len() <= 10 * 1024, "{dist:?}: {} bytes", bytes.len());
        }
    }

    /// The Kappa pattern: deserialize, add a batch, serialize; plus a random
    /// merge tree of per-batch digests.
    #[test]
    fn one_million_values_in_batches() {
        let mut rng = TestRng::seed_from_u64(5);
        for (seed, dist) in DISTS.iter().enumerate() {
            let data = sample(*dist, 1_000_000, seed as u64 + 100);
            let mut bounds = vec![0, data.len()];
            for _ in 0..199 {
                bounds.push(rng.below(data.len() as u64) as usize);
            }
            bounds.sort_unstable();
            let mut stored = postcard::to_allocvec(&TDigest::default()).unwrap();
            let mut parts = Vec::new();
            for w in bounds.windows(2) {
                let mut d: TDigest = postcard::from_bytes(&stored).unwrap();
                let mut part = TDigest::default();
                for &x in &data[w[0]..w[1]] {
                    d.add(x);
                    part.add(x);
                }
                stored = postcard::to_allocvec(&d).unwrap();
                assert!(stored.len() <= 10 * 1024);
                parts.push(part);
            }
            let sequential: TDigest = postcard::from_bytes(&stored).unwrap();
            let picks: Vec<(usize, usize, bool)> = (0..parts.len())
                .map(|_| (rng.next_u64() as usize, rng.next_u64() as usize, rng.chance(0.5)))
                .collect();
            let tree = merge_in_grouping(parts, &picks);
            let e1 = max_rank_error(&sequential, &data);
            let e2 = max_rank_error(&tree, &data);
            println!("{dist:?}: sequential+serde {e1:.5}, merge tree {e2:.5}");
            assert!(e1 <= 0.01 && e2 <= 0.01, "{dist:?}: {e1} {e2}");
        }
    }

    /// Worst case for a merging digest: a compression after every few values
    /// (tiny batches, each one stored and reloaded).
    #[test]
    fn tiny_batches_with_serde_between_each() {
        let mut rng = TestRng::seed_from_u64(11);
        for (seed, dist) in DISTS.iter().enumerate() {
            let data = sample(*dist, 200_000, seed as u64 + 1000);
            let mut d = TDigest::default();
            let mut i = 0;
            while i < data.len() {
                let end = (i + 1 + rng.below(19) as usize).min(data.len());
                for &x in &data[i..end] {
                    d.add(x);
                }
                i = end;
                let bytes = postcard::to_allocvec(&d).unwrap();
                d = postcard::from_bytes(&bytes).unwrap();
            }
            let err = max_rank_error(&d, &data);
            println!("{dist:?}: tiny batches {err:.5}");
            assert!(err <= 0.01, "{dist:?}: {err}");
        }
    }

    #[test]
    fn small_ints_stay_exact_across_merges() {
        let data = sample(Dist::SmallInts, 100_000, 3);
        let mut a = build(&data[..30_000]);
        let b = build(&data[30_000..]);
        a.merge(&b);
        let one = build(&data);
        assert!(one.is_exact());
        assert_eq!(a, one);
        let mut sorted = data.clone();
        sorted.sort_by(f64::total_cmp);
        for p in QS {
            let v = one.percentile(p).unwrap();
            assert_eq!(v, v.round(), "exact integer answer");
            assert_eq!(rank_error(&sorted, v, p / 100.0), 0.0);
        }
    }

    #[test]
    fn fuzzed_bytes_never_panic() {
        let mut rng = TestRng::seed_from_u64(99);
        let good = postcard::to_allocvec(&build(&sample(Dist::Normal, 5000, 1))).unwrap();
        let exact = postcard::to_allocvec(&build(&[1.0, 2.0, 3.0])).unwrap();
        for _ in 0..5000 {
            let mut b = if rng.chance(0.5) { good.clone() } else { exact.clone() };
            let i = rng.below(b.len() as u64) as usize;
            b[i] = rng.next_u64() as u8;
            b.truncate(rng.below(b.len() as u64 + 1) as usize);
            if let Ok(d) = postcard::from_bytes::<TDigest>(&b) {
                let mut e = d.clone();
                e.merge(&d);
                e.add(1.0);
                for p in [0.0, 1.0, 50.0, 99.0, 100.0] {
                    let v = e.percentile(p).unwrap();
                    assert!(v.is_finite());
                }
            }
        }
    }

    /// The CI failure (seed kept in `proptest-regressions/sketch/tdigest.txt`):
    /// sorted data cut into 23 slices and merged in a deep tree whose early
    /// merges join slices far apart, so centroids could straddle the gaps that
    /// later merges fill. Every digest in the tree must hold the bound against
    /// its own values, not only the root (the old code failed at step 2).
    #[test]
    fn sorted_slices_merged_across_gaps_within_one_percent() {
        let data = sample(Dist::Sorted, 25_154, 17_802_363_259_855_828);
        let bounds = [
            0, 4023, 4380, 5046, 5500, 6248, 7179, 8653, 8894, 9422, 12526, 12716, 13473, 14373,
            16426, 17405, 17929, 18292, 19168, 19329, 22763, 22919, 24575, 25154,
        ];
        // (take, merge into, receiver is the taken one) as in `merge_in_grouping`.
        let picks = [
            (19, 5, true),
            (5, 15, true),
            (8, 12, false),
            (14, 11, true),
            (4, 11, true),
            (5, 3, false),
            (4, 15, false),
            (2, 8, false),
            (1, 11, false),
            (2, 6, true),
            (3, 10, false),
            (9, 10, false),
            (10, 0, false),
        ];
        let mut parts: Vec<(TDigest, Vec<f64>)> = bounds
            .windows(2)
            .map(|w| (build(&data[w[0]..w[1]]), data[w[0]..w[1]].to_vec()))
            .collect();
        let mut step = 0;
        while parts.len() > 1 {
            let (a, b, flip) = picks.get(step).copied().unwrap_or((0, 0, false));
            step += 1;
            let taken = parts.remove(a % parts.len());
            let j = b % parts.len();
            let (mut receiver, other) =
                if flip { (taken, parts[j].clone()) } else { (parts[j].clone(), taken) };
            receiver.0.merge(&other.0);
            receiver.1.extend_from_slice(&other.1);
            let err = max_rank_error(&receiver.0, &receiver.1);
            assert!(err <= 0.01, "step {step}: n={} rank error {err}", receiver.1.len());
            parts[j] = receiver;
        }
        assert_eq!(parts[0].1.len(), data.len());
    }

    fn dist_strategy() -> impl Strategy<Value = Dist> {
        prop::sample::select(DISTS.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_split_and_grouping_within_one_percent(
            dist in dist_strategy(),
            seed in any::<u64>(),
            n in 1usize..30_000,
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
            picks in prop::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 0..40),
        ) {
            let data = sample(dist, n, seed);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(n + 1)).collect();
            points.push(0);
            points.push(n);
            points.sort_unstable();
            let parts: Vec<TDigest> = points.windows(2).map(|w| build(&data[w[0]..w[1]])).collect();
            let merged = merge_in_grouping(parts, &picks);
            let err = max_rank_error(&merged, &data);
            // Tiny inputs: interpolating between adjacent samples is inherently
            // up to half a sample (0.5 / n) away in rank.
            let tolerance = 0.01f64.max(0.5 / n as f64 + 1e-12);
            prop_assert!(err <= tolerance, "{:?} n={} err={}", dist, n, err);
        }

        #[test]
        fn empty_is_identity(values in prop::collection::vec(-1e6f64..1e6, 0..3000)) {
            let d = build(&values);
            let mut right = d.clone();
            right.merge(&TDigest::default());
            prop_assert_eq!(&right, &d);
            prop_assert_eq!(right.buffer.len(), d.buffer.len());
            let mut left = TDigest::default();
            left.merge(&d);
            prop_assert_eq!(&left, &d);
        }

        #[test]
        fn postcard_round_trip(values in prop::collection::vec(-1e6f64..1e6, 0..3000)) {
            let d = build(&values);
            let bytes = postcard::to_allocvec(&d).unwrap();
            let back: TDigest = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&back, &d);
            for p in QS {
                prop_assert_eq!(back.percentile(p), d.percentile(p));
            }
        }

        #[test]
        fn exact_mode_matches_sorted_formula(values in prop::collection::vec(-1e3f64..1e3, 1..400), p in 0.0f64..=100.0) {
            let d = build(&values);
            prop_assert!(d.is_exact());
            let mut s = values.clone();
            s.sort_by(f64::total_cmp);
            let n = s.len() as f64;
            let index = p / 100.0 * n;
            let expected = if index < 0.5 {
                s[0]
            } else if n - index <= 0.5 {
                s[s.len() - 1]
            } else {
                let pos = index - 0.5;
                let j = pos.floor() as usize;
                let f = pos - pos.floor();
                s[j] * (1.0 - f) + s[j + 1] * f
            };
            let got = d.percentile(p).unwrap();
            prop_assert!((got - expected).abs() <= 1e-9 * (1.0 + expected.abs()), "{} vs {}", got, expected);
        }
    }
}
