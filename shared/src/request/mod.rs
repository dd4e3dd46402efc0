//! The request body of `POST /v1/queries`: parsed, validated and canonicalised.
//!
//! Parsing is strict: every key of every object is either understood or rejected with an
//! Elasticsearch-style [`QueryError`](crate::error::QueryError) naming the construct and its
//! JSON path, so a typo never silently changes a long-running computation. The parsed
//! [`SearchRequest`] renders back into a canonical JSON form (sorted keys, explicit defaults,
//! normalised numbers and intervals) whose hash is the query's identity (see
//! [`crate::identity`]).
//!
//! This file holds the typed request (the AST); `parse.rs` builds it from JSON and
//! `canonical.rs` renders its canonical form.

use regex_lite::Regex;
use serde_json::{Value, json};

use crate::date::{CalendarUnit, DateFormat, TimeZone};
use crate::scan::Scalar;
use crate::topic::Topic;
use crate::value::TermValue;

/// A document field as a query names it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRef {
    /// `@timestamp`: the record's log timestamp, epoch ms.
    Timestamp,
    /// `@offset`: the record's offset in its partition.
    Offset,
    /// `@partition`: the record's partition.
    Partition,
    /// `@key`: the record key, as UTF-8 text.
    Key,
    /// A dotted path into the document, extracted into `slot`. `fallback` is the slot of
    /// the base field of an `x.keyword` path, used when the document has no literal `keyword`.
    Path {
        /// The name as written.
        name: String,
        /// Slot of the path in the record's extracted values.
        slot: usize,
        /// For `x.keyword`: slot of `x`.
        fallback: Option<usize>,
    },
}

impl FieldRef {
    /// The name as written in the query.
    pub fn name(&self) -> &str {
        match self {
            FieldRef::Timestamp => "@timestamp",
            FieldRef::Offset => "@offset",
            FieldRef::Partition => "@partition",
            FieldRef::Key => "@key",
            FieldRef::Path { name, .. } => name,
        }
    }
}

/// `minimum_should_match`, resolved against a number of optional clauses when evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinimumShouldMatch {
    /// An absolute count (negative: all but that many).
    Count(i64),
    /// A percentage (negative: all but that share), rounded down as Elasticsearch does.
    Percent(i64),
}

impl MinimumShouldMatch {
    /// How many of `n` optional clauses must match. More than `n` is kept, not clamped: as in
    /// Elasticsearch, asking for more clauses than there are matches nothing.
    pub fn resolve(self, n: usize) -> usize {
        let n = n as i64;
        let k = match self {
            MinimumShouldMatch::Count(c) if c < 0 => n + c,
            MinimumShouldMatch::Count(c) => c,
            MinimumShouldMatch::Percent(p) if p < 0 => n - (n * -p) / 100,
            MinimumShouldMatch::Percent(p) => (n * p) / 100,
        };
        k.max(0) as usize
    }

    /// How many `should` clauses of a `bool` must match. With only `should` clauses (beside
    /// `must_not`) at least one must, whatever `minimum_should_match` says below that: Lucene
    /// treats such a query as a disjunction.
    pub fn required_should(
        msm: Option<MinimumShouldMatch>,
        should: usize,
        only_should: bool,
    ) -> usize {
        msm.map_or(0, |m| m.resolve(should)).max(usize::from(only_should && should > 0))
    }

    fn to_json(self) -> Value {
        match self {
            MinimumShouldMatch::Count(c) => json!(c),
            MinimumShouldMatch::Percent(p) => json!(format!("{p}%")),
        }
    }
}

/// How `range` compares values.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeKind {
    /// Numbers (numeric strings coerced; ISO dates in documents read as epoch ms).
    Numeric,
    /// Dates: bounds and string values parsed with `format` in `time_zone`, numbers as epoch ms.
    Date {
        /// Parses bounds and document strings.
        format: DateFormat,
        /// Zone for values without an offset.
        time_zone: TimeZone,
    },
    /// Exact strings, compared by bytes (a keyword range).
    Keyword,
}

/// One bound of a range.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// A numeric bound (dates: epoch ms).
    Num(f64),
    /// A keyword bound.
    Str(String),
}

/// A query clause of the Elasticsearch query DSL subset.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Query {
    MatchAll,
    MatchNone,
    Term {
        field: FieldRef,
        value: TermValue,
        case_insensitive: bool,
    },
    Terms {
        field: FieldRef,
        values: Vec<TermValue>,
    },
    Range {
        field: FieldRef,
        kind: RangeKind,
        gt: Option<Bound>,
        gte: Option<Bound>,
        lt: Option<Bound>,
        lte: Option<Bound>,
    },
    Exists {
        field: FieldRef,
    },
    Prefix {
        field: FieldRef,
        value: String,
        case_insensitive: bool,
    },
    Wildcard {
        field: FieldRef,
        pattern: String,
        case_insensitive: bool,
        matcher: crate::wildcard::Wildcard,
    },
    Ids {
        values: Vec<String>,
    },
    Match {
        field: FieldRef,
        query: String,
        tokens: Vec<String>,
        and: bool,
        minimum_should_match: Option<MinimumShouldMatch>,
    },
    MatchPhrase {
        field: FieldRef,
        query: String,
        tokens: Vec<String>,
    },
    MultiMatch {
        fields: Vec<FieldRef>,
        query: String,
        tokens: Vec<String>,
        and: bool,
        minimum_should_match: Option<MinimumShouldMatch>,
    },
    Bool {
        must: Vec<Query>,
        filter: Vec<Query>,
        should: Vec<Query>,
        must_not: Vec<Query>,
        minimum_should_match: Option<MinimumShouldMatch>,
    },
}

/// Direction of a sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

impl Order {
    fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// One key of a hits `sort`.
#[derive(Debug, Clone, PartialEq)]
pub struct SortSpec {
    /// The field; `None` is `_doc` (log order).
    pub field: Option<FieldRef>,
    /// Direction.
    pub order: Order,
    /// Documents without a value go first (`_first`) instead of last.
    pub missing_first: bool,
    /// Multi-valued fields sort by their maximum instead of their minimum.
    pub mode_max: bool,
}

/// Which parts of `_source` a hit returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceFilter {
    /// `_source: false`.
    pub disabled: bool,
    /// Patterns of paths to keep (empty: all); `*` is a wildcard.
    pub includes: Vec<String>,
    /// Patterns of paths to drop.
    pub excludes: Vec<String>,
}

/// Order of `terms` buckets.
#[derive(Debug, Clone, PartialEq)]
pub enum TermsOrderKey {
    /// `_count`.
    Count,
    /// `_key`.
    Key,
    /// A single-value metric sub-aggregation, by index among the bucket's sub-aggregations,
    /// and for multi-value metrics (`stats`) the metric name.
    Metric {
        /// Path as written (`avg_rt` or `rt_stats.max`).
        path: String,
        /// Index into the bucket's sub-aggregations.
        index: usize,
        /// Metric name inside a multi-value metric.
        metric: Option<String>,
    },
}

/// `include`/`exclude` of a `terms` aggregation.
#[derive(Debug, Clone)]
pub enum TermsFilter {
    /// A regular expression over the key's text, matching the whole key.
    Regex(String, Regex),
    /// Exact values.
    Values(Vec<TermValue>),
}

/// One range of `range`/`date_range` (from inclusive, to exclusive; dates in epoch ms).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSpec {
    /// Lower bound, inclusive.
    pub from: Option<f64>,
    /// Upper bound, exclusive.
    pub to: Option<f64>,
    /// Explicit key.
    pub key: Option<String>,
}

/// `calendar_interval` or `fixed_interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DateInterval {
    /// Calendar-aware unit.
    Calendar(CalendarUnit),
    /// Fixed length in ms.
    Fixed(i64),
}

/// `min`/`max` pair of `extended_bounds`/`hard_bounds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Lower end.
    pub min: Option<f64>,
    /// Upper end.
    pub max: Option<f64>,
}

/// The kind of an aggregation and its parameters.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum AggKind {
    ValueCount {
        field: FieldRef,
    },
    Sum {
        field: FieldRef,
    },
    Min {
        field: FieldRef,
    },
    Max {
        field: FieldRef,
    },
    Avg {
        field: FieldRef,
    },
    Stats {
        field: FieldRef,
    },
    ExtendedStats {
        field: FieldRef,
        sigma: f64,
    },
    Cardinality {
        field: FieldRef,
        precision_threshold: u32,
    },
    Percentiles {
        field: FieldRef,
        percents: Vec<f64>,
        keyed: bool,
        compression: f64,
    },
    TopHits {
        size: usize,
        sort: Vec<SortSpec>,
        source: SourceFilter,
    },
    Terms {
        field: FieldRef,
        size: usize,
        min_doc_count: u64,
        order: Vec<(TermsOrderKey, Order)>,
        missing: Option<TermValue>,
        include: Option<TermsFilter>,
        exclude: Option<TermsFilter>,
    },
    Histogram {
        field: FieldRef,
        interval: f64,
        offset: f64,
        min_doc_count: u64,
        extended_bounds: Option<Bounds>,
        hard_bounds: Option<Bounds>,
        keyed: bool,
    },
    DateHistogram {
        field: FieldRef,
        interval: DateInterval,
        offset: i64,
        time_zone: TimeZone,
        format: Option<DateFormat>,
        min_doc_count: u64,
        extended_bounds: Option<Bounds>,
        keyed: bool,
    },
    Range {
        field: FieldRef,
        ranges: Vec<RangeSpec>,
        keyed: bool,
    },
    DateRange {
        field: FieldRef,
        ranges: Vec<RangeSpec>,
        keyed: bool,
        format: Option<DateFormat>,
        time_zone: TimeZone,
    },
    Filter {
        query: Query,
    },
    Filters {
        filters: Vec<(Option<String>, Query)>,
        keyed: bool,
        other_bucket_key: Option<String>,
    },
    Missing {
        field: FieldRef,
    },
    Global,
}

impl AggKind {
    /// Whether a `terms` order can read `metric` from an aggregation of this kind: a
    /// single-value metric whole (`None`), or a named value of `stats`/`extended_stats` (what
    /// the fold's `order_value` reads, `shared/src/agg/`).
    pub(crate) fn orders_terms(&self, metric: Option<&str>) -> bool {
        const STATS: &[&str] = &["count", "min", "max", "avg", "sum"];
        const EXTENDED_ONLY: &[&str] = &["sum_of_squares", "variance", "std_deviation"];
        match (self, metric) {
            (
                AggKind::ValueCount { .. }
                | AggKind::Sum { .. }
                | AggKind::Min { .. }
                | AggKind::Max { .. }
                | AggKind::Avg { .. }
                | AggKind::Cardinality { .. },
                None,
            ) => true,
            (AggKind::Stats { .. }, Some(m)) => STATS.contains(&m),
            (AggKind::ExtendedStats { .. }, Some(m)) => {
                STATS.contains(&m) || EXTENDED_ONLY.contains(&m)
            }
            _ => false,
        }
    }

    /// Metric aggregations cannot hold sub-aggregations.
    pub fn is_metric(&self) -> bool {
        matches!(
            self,
            AggKind::ValueCount { .. }
                | AggKind::Sum { .. }
                | AggKind::Min { .. }
                | AggKind::Max { .. }
                | AggKind::Avg { .. }
                | AggKind::Stats { .. }
                | AggKind::ExtendedStats { .. }
                | AggKind::Cardinality { .. }
                | AggKind::Percentiles { .. }
                | AggKind::TopHits { .. }
        )
    }

    /// The Elasticsearch type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            AggKind::ValueCount { .. } => "value_count",
            AggKind::Sum { .. } => "sum",
            AggKind::Min { .. } => "min",
            AggKind::Max { .. } => "max",
            AggKind::Avg { .. } => "avg",
            AggKind::Stats { .. } => "stats",
            AggKind::ExtendedStats { .. } => "extended_stats",
            AggKind::Cardinality { .. } => "cardinality",
            AggKind::Percentiles { .. } => "percentiles",
            AggKind::TopHits { .. } => "top_hits",
            AggKind::Terms { .. } => "terms",
            AggKind::Histogram { .. } => "histogram",
            AggKind::DateHistogram { .. } => "date_histogram",
            AggKind::Range { .. } => "range",
            AggKind::DateRange { .. } => "date_range",
            AggKind::Filter { .. } => "filter",
            AggKind::Filters { .. } => "filters",
            AggKind::Missing { .. } => "missing",
            AggKind::Global => "global",
        }
    }
}

/// An aggregation with its sub-aggregations (sorted by name).
#[derive(Debug, Clone)]
pub struct Agg {
    /// Name in the request and the response.
    pub name: String,
    /// Kind and parameters.
    pub kind: AggKind,
    /// Sub-aggregations, by name.
    pub subs: Vec<Agg>,
}

/// The type a `runtime_mappings` entry declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeType {
    /// `date`: epoch ms (numbers as epoch millis, strings through the format).
    Date,
    /// `keyword`: the value's text.
    Keyword,
    /// `long`: an integer (fractions truncated, as a Java long conversion does).
    Long,
    /// `double`: a number.
    Double,
    /// `boolean`: `true`/`false` (also as strings).
    Boolean,
}

impl RuntimeType {
    fn parse(s: &str) -> Option<RuntimeType> {
        Some(match s {
            "date" => RuntimeType::Date,
            "keyword" => RuntimeType::Keyword,
            "long" => RuntimeType::Long,
            "double" => RuntimeType::Double,
            "boolean" => RuntimeType::Boolean,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            RuntimeType::Date => "date",
            RuntimeType::Keyword => "keyword",
            RuntimeType::Long => "long",
            RuntimeType::Double => "double",
            RuntimeType::Boolean => "boolean",
        }
    }
}

/// A field typed by `runtime_mappings` (Elasticsearch's search-time mapping, without script).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeField {
    /// The field name.
    pub name: String,
    /// Slot of the field's path.
    pub slot: usize,
    /// The declared type.
    pub kind: RuntimeType,
    /// `date` only: the field's format (parses its strings, renders its keys).
    pub format: Option<DateFormat>,
}

impl RuntimeField {
    /// The value as the declared type; `None` (missing) when it does not convert.
    pub fn convert<'a>(&self, v: Scalar<'a>) -> Option<Scalar<'a>> {
        let number = |v: &Scalar<'_>| match v {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match self.kind {
            RuntimeType::Date => {
                let ms = match &v {
                    Scalar::Int(_) | Scalar::Float(_) => number(&v).and_then(|n| {
                        self.format.as_ref().map_or_else(
                            || DateFormat::default_format().number_to_millis(n),
                            |f| f.number_to_millis(n),
                        )
                    }),
                    Scalar::Str(s) => match &self.format {
                        Some(f) => f.parse_millis(s, &TimeZone::utc()),
                        None => DateFormat::default_format().parse_millis(s, &TimeZone::utc()),
                    },
                    _ => None,
                };
                ms.map(Scalar::Int)
            }
            RuntimeType::Keyword => match v {
                Scalar::Str(s) => Some(Scalar::Str(s)),
                Scalar::Int(i) => Some(Scalar::Str(i.to_string().into())),
                Scalar::Float(f) => Some(Scalar::Str(crate::value::java_double(f).into())),
                Scalar::Bool(b) => Some(Scalar::Str(b.to_string().into())),
                _ => None,
            },
            RuntimeType::Long => number(&v)
                .filter(|n| n.is_finite() && n.abs() < 9.2e18)
                .map(|n| Scalar::Int(n.trunc() as i64)),
            RuntimeType::Double => number(&v).filter(|n| n.is_finite()).map(Scalar::Float),
            RuntimeType::Boolean => match v {
                Scalar::Bool(b) => Some(Scalar::Bool(b)),
                Scalar::Str(s) if s == "true" => Some(Scalar::Bool(true)),
                Scalar::Str(s) if s == "false" => Some(Scalar::Bool(false)),
                _ => None,
            },
        }
    }
}

/// A validated query request.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The Kafka topic the query reads.
    pub topic: Topic,
    /// Which records match.
    pub query: Query,
    /// Aggregations, by name.
    pub aggs: Vec<Agg>,
    /// Number of hits kept live.
    pub size: usize,
    /// Order of hits (empty: log order).
    pub sort: Vec<SortSpec>,
    /// Which parts of `_source` hits carry.
    pub source: SourceFilter,
    /// Every document path the request reads, by slot.
    pub paths: Vec<String>,
    /// Fields typed by `runtime_mappings`, by name.
    pub runtime: Vec<RuntimeField>,
}

mod canonical;
mod parse;

pub use parse::{parse_request, parse_request_bytes};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn date_math_bounds_are_rejected_not_compared_as_keywords() {
        let limits = Limits::default();
        for bound in ["now", "now-1d", "now/d", "now+1h/h"] {
            let body = json!({"topic": "t", "query": {"range": {"ts": {"gte": bound}}}});
            let err = parse_request(&body, &limits).expect_err(bound);
            assert_eq!(err.path, "query.range.ts.gte", "{bound}");
        }
        // A keyword range on words that merely start with "now" stays a keyword range.
        let body = json!({"topic": "t", "query": {"range": {"name": {"gte": "nowhere"}}}});
        let req = parse_request(&body, &limits).expect("keyword range");
        assert!(matches!(req.query, Query::Range { kind: RangeKind::Keyword, .. }));
    }
}
