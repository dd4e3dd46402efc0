//! Numeric metrics: `value_count` ([`AggState::Count`]) and `sum`, `min`, `max`, `avg`, `stats`,
//! `extended_stats`, which all keep one [`Stats`] state (count, sum, sum of squares, min, max)
//! and differ only in what they render.
//!
//! Algebra: [`Algebra::Accumulable`]. Counts and sums add; an [`ExactSum`] is exact for
//! integers below 1e18 and compensated (Neumaier) otherwise, so its last bit may depend on the
//! order of merges. `min`/`max` would be semigroup-only on their own, but they keep the whole
//! stats state (one fold, one encoding), so their state accumulates like the others.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{AggState, Algebra};
use crate::eval::Doc;
use crate::request::{AggKind, FieldRef};
use crate::scan::Scalar;
use crate::value::{double_json, numeric};

pub(super) const ALGEBRA: Algebra = Algebra::Accumulable;

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

    pub(super) fn merge(&mut self, o: &Stats) {
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

/// Estimated heap bytes of either state (neither grows).
pub(super) const HEAP_BYTES: usize = super::STATE_BYTES;

/// `value_count`: the field's values that are neither null nor objects.
#[inline]
pub(super) fn fold_count(field: &FieldRef, n: &mut u64, doc: &Doc<'_, '_>) {
    *n += doc.values(field).iter().filter(|v| !matches!(v, Scalar::Null | Scalar::Object)).count()
        as u64;
}

/// The stats kinds: every numeric value of the field (numeric strings coerced).
#[inline]
pub(super) fn fold_stats(field: &FieldRef, s: &mut Stats, doc: &Doc<'_, '_>) {
    doc.values(field).iter().filter_map(numeric).for_each(|x| s.add(x));
}

pub(super) fn render_count(n: u64) -> Value {
    json!({"value": n})
}

/// One of the stats kinds, from the shared state.
pub(super) fn render_stats(kind: &AggKind, s: &Stats) -> Value {
    match kind {
        AggKind::Sum { .. } => json!({"value": double_json(s.sum.value())}),
        AggKind::Min { .. } => json!({"value": s.opt(s.min)}),
        AggKind::Max { .. } => json!({"value": s.opt(s.max)}),
        AggKind::Avg { .. } => json!({"value": s.opt(s.avg())}),
        AggKind::Stats { .. } => stats_json(s),
        AggKind::ExtendedStats { sigma, .. } => {
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
        _ => unreachable!("a stats state belongs to a stats kind"),
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

/// The value a `terms` order reads from one of these metrics (NaN when undefined); `metric`
/// names the value of a multi-value `stats`/`extended_stats`.
pub(super) fn order_value(kind: &AggKind, state: &AggState, metric: Option<&str>) -> f64 {
    match (kind, state) {
        (AggKind::ValueCount { .. }, AggState::Count(n)) => *n as f64,
        (AggKind::Sum { .. }, AggState::Stats(s)) => s.metric("sum"),
        (AggKind::Min { .. }, AggState::Stats(s)) => s.metric("min"),
        (AggKind::Max { .. }, AggState::Stats(s)) => s.metric("max"),
        (AggKind::Avg { .. }, AggState::Stats(s)) => s.metric("avg"),
        (AggKind::Stats { .. } | AggKind::ExtendedStats { .. }, AggState::Stats(s)) => {
            s.metric(metric.unwrap_or(""))
        }
        _ => f64::NAN,
    }
}
