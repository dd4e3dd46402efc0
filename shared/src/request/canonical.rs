//! Canonical form: every default explicit, numbers normalised; keys are sorted when serialised.

use serde_json::{Map, Value, json};

use crate::date::{self, DateFormat};
use crate::sort;
use crate::value::{TermValue, number_json};

use super::*;

impl RuntimeField {
    fn canonical(&self) -> Value {
        json!({"type": self.kind.as_str(), "format": self.format.as_ref().map(DateFormat::spec)})
    }
}

impl SearchRequest {
    /// The canonical JSON of the request: equal for any two bodies that mean the same query.
    pub fn canonical(&self) -> Value {
        json!({
            "topic": self.topic,
            "query": self.query.canonical(),
            "aggs": aggs_canonical(&self.aggs),
            "size": self.size,
            "sort": self.sort.iter().map(SortSpec::canonical).collect::<Vec<_>>(),
            "_source": self.source.canonical(),
            "runtime_mappings": self.runtime.iter().map(|r| (r.name.clone(), r.canonical())).collect::<Map<String, Value>>(),
        })
    }
}

fn aggs_canonical(aggs: &[Agg]) -> Value {
    Value::Object(aggs.iter().map(|a| (a.name.clone(), a.canonical())).collect())
}

fn opt_num(v: Option<f64>) -> Value {
    v.map_or(Value::Null, number_json)
}

fn bound_json(b: &Option<Bound>) -> Value {
    match b {
        None => Value::Null,
        Some(Bound::Num(n)) => number_json(*n),
        Some(Bound::Str(s)) => Value::String(s.clone()),
    }
}

fn bounds_json(b: &Option<Bounds>) -> Value {
    b.map_or(Value::Null, |b| json!({"min": opt_num(b.min), "max": opt_num(b.max)}))
}

fn msm_json(m: &Option<MinimumShouldMatch>) -> Value {
    m.map_or(Value::Null, MinimumShouldMatch::to_json)
}

impl Query {
    /// Canonical JSON of the clause.
    pub fn canonical(&self) -> Value {
        match self {
            Query::MatchAll => json!({"match_all": {}}),
            Query::MatchNone => json!({"match_none": {}}),
            Query::Term { field, value, case_insensitive } => {
                json!({"term": {field.name(): {"value": value.to_json(), "case_insensitive": case_insensitive}}})
            }
            Query::Terms { field, values } => {
                let mut v: Vec<Value> = values.iter().map(TermValue::to_json).collect();
                sort::stable_by(&mut v, |a, b| a.to_string().cmp(&b.to_string()));
                v.dedup();
                json!({"terms": {field.name(): v}})
            }
            Query::Range { field, kind, gt, gte, lt, lte } => {
                let kind = match kind {
                    RangeKind::Numeric => json!("numeric"),
                    RangeKind::Keyword => json!("keyword"),
                    RangeKind::Date { format, time_zone } => {
                        json!({"format": format.spec(), "time_zone": time_zone.spec()})
                    }
                };
                json!({"range": {field.name(): {"gt": bound_json(gt), "gte": bound_json(gte), "lt": bound_json(lt), "lte": bound_json(lte), "kind": kind}}})
            }
            Query::Exists { field } => json!({"exists": {"field": field.name()}}),
            Query::Prefix { field, value, case_insensitive } => {
                json!({"prefix": {field.name(): {"value": value, "case_insensitive": case_insensitive}}})
            }
            Query::Wildcard { field, pattern, case_insensitive, .. } => {
                json!({"wildcard": {field.name(): {"value": pattern, "case_insensitive": case_insensitive}}})
            }
            Query::Ids { values } => {
                let mut v = values.clone();
                sort::stable(&mut v);
                v.dedup();
                json!({"ids": {"values": v}})
            }
            Query::Match { field, tokens, and, minimum_should_match, .. } => {
                json!({"match": {field.name(): {"tokens": tokens, "operator": if *and {"and"} else {"or"}, "minimum_should_match": msm_json(minimum_should_match)}}})
            }
            Query::MatchPhrase { field, tokens, .. } => {
                json!({"match_phrase": {field.name(): {"tokens": tokens}}})
            }
            Query::MultiMatch { fields, tokens, and, minimum_should_match, .. } => {
                let mut f: Vec<&str> = fields.iter().map(FieldRef::name).collect();
                sort::stable(&mut f);
                f.dedup();
                json!({"multi_match": {"fields": f, "tokens": tokens, "operator": if *and {"and"} else {"or"}, "minimum_should_match": msm_json(minimum_should_match)}})
            }
            Query::Bool { must, filter, should, must_not, minimum_should_match } => {
                // must and filter are the same without scores; clause order never matters.
                let canon = |qs: &[&Query]| {
                    let mut v: Vec<Value> = qs.iter().map(|q| q.canonical()).collect();
                    sort::stable_by(&mut v, |a, b| a.to_string().cmp(&b.to_string()));
                    v
                };
                let all: Vec<&Query> = must.iter().chain(filter).collect();
                let should_refs: Vec<&Query> = should.iter().collect();
                let not_refs: Vec<&Query> = must_not.iter().collect();
                json!({"bool": {"filter": canon(&all), "should": canon(&should_refs), "must_not": canon(&not_refs), "minimum_should_match": msm_json(minimum_should_match)}})
            }
        }
    }
}

impl SortSpec {
    fn canonical(&self) -> Value {
        json!({
            "field": self.field.as_ref().map_or("_doc", FieldRef::name),
            "order": self.order.as_str(),
            "missing": if self.missing_first { "_first" } else { "_last" },
            "mode": if self.mode_max { "max" } else { "min" },
        })
    }
}

impl SourceFilter {
    fn canonical(&self) -> Value {
        if self.disabled {
            return Value::Bool(false);
        }
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            sort::stable(&mut v);
            v.dedup();
            v
        };
        json!({"includes": sorted(&self.includes), "excludes": sorted(&self.excludes)})
    }
}

impl Agg {
    fn canonical(&self) -> Value {
        let f = |field: &FieldRef| json!(field.name());
        let body = match &self.kind {
            AggKind::ValueCount { field }
            | AggKind::Sum { field }
            | AggKind::Min { field }
            | AggKind::Max { field }
            | AggKind::Avg { field }
            | AggKind::Stats { field }
            | AggKind::Missing { field } => json!({"field": f(field)}),
            AggKind::ExtendedStats { field, sigma } => {
                json!({"field": f(field), "sigma": number_json(*sigma)})
            }
            AggKind::Cardinality { field, precision_threshold } => {
                json!({"field": f(field), "precision_threshold": precision_threshold})
            }
            AggKind::Percentiles { field, percents, keyed, compression } => {
                json!({"field": f(field), "percents": percents.iter().map(|p| number_json(*p)).collect::<Vec<_>>(), "keyed": keyed, "compression": number_json(*compression)})
            }
            AggKind::TopHits { size, sort, source } => {
                json!({"size": size, "sort": sort.iter().map(SortSpec::canonical).collect::<Vec<_>>(), "_source": source.canonical()})
            }
            AggKind::Terms { field, size, min_doc_count, order, missing, include, exclude } => {
                let filter = |t: &Option<TermsFilter>| match t {
                    None => Value::Null,
                    Some(TermsFilter::Regex(s, _)) => json!({"regex": s}),
                    Some(TermsFilter::Values(v)) => {
                        json!({"values": v.iter().map(TermValue::to_json).collect::<Vec<_>>()})
                    }
                };
                let order: Vec<Value> = order
                    .iter()
                    .map(|(k, o)| {
                        let k = match k {
                            TermsOrderKey::Count => "_count".to_string(),
                            TermsOrderKey::Key => "_key".to_string(),
                            TermsOrderKey::Metric { path, .. } => path.clone(),
                        };
                        json!([k, o.as_str()])
                    })
                    .collect();
                json!({"field": f(field), "size": size, "min_doc_count": min_doc_count, "order": order, "missing": missing.as_ref().map_or(Value::Null, TermValue::to_json), "include": filter(include), "exclude": filter(exclude)})
            }
            AggKind::Histogram {
                field,
                interval,
                offset,
                min_doc_count,
                extended_bounds,
                hard_bounds,
                keyed,
            } => {
                json!({"field": f(field), "interval": number_json(*interval), "offset": number_json(*offset), "min_doc_count": min_doc_count, "extended_bounds": bounds_json(extended_bounds), "hard_bounds": bounds_json(hard_bounds), "keyed": keyed})
            }
            AggKind::DateHistogram {
                field,
                interval,
                offset,
                time_zone,
                format,
                min_doc_count,
                extended_bounds,
                keyed,
            } => {
                let interval = match interval {
                    DateInterval::Calendar(u) => json!({"calendar_interval": u.canonical()}),
                    DateInterval::Fixed(ms) => {
                        json!({"fixed_interval": date::fixed_interval_spec(*ms)})
                    }
                };
                json!({"field": f(field), "interval": interval, "offset": offset, "time_zone": time_zone.spec(), "format": format.as_ref().map(DateFormat::spec), "min_doc_count": min_doc_count, "extended_bounds": bounds_json(extended_bounds), "keyed": keyed})
            }
            AggKind::Range { field, ranges, keyed } => {
                json!({"field": f(field), "ranges": ranges_json(ranges), "keyed": keyed})
            }
            AggKind::DateRange { field, ranges, keyed, format, time_zone } => {
                json!({"field": f(field), "ranges": ranges_json(ranges), "keyed": keyed, "format": format.as_ref().map(DateFormat::spec), "time_zone": time_zone.spec()})
            }
            AggKind::Filter { query } => query.canonical(),
            AggKind::Filters { filters, keyed, other_bucket_key } => {
                json!({"filters": filters.iter().map(|(k, q)| json!([k, q.canonical()])).collect::<Vec<_>>(), "keyed": keyed, "other_bucket_key": other_bucket_key})
            }
            AggKind::Global => json!({}),
        };
        json!({self.kind.type_name(): body, "aggs": aggs_canonical(&self.subs)})
    }
}

fn ranges_json(ranges: &[RangeSpec]) -> Value {
    Value::Array(
        ranges
            .iter()
            .map(|r| json!({"from": opt_num(r.from), "to": opt_num(r.to), "key": r.key}))
            .collect(),
    )
}
