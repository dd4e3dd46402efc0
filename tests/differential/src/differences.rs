//! The one list of intended differences between Kappa and Elasticsearch (OpenSearch here).
//!
//! Everything the comparison forgives is in this file, each with its reason; nothing else
//! is tolerated. Where `../shared/spec/query-dsl.md` and OpenSearch disagree, the spec wins
//! and the difference is listed here.
//!
//! Request translation (what Kappa's request means, said in OpenSearch's terms):
//! 1. `topic` names the Kafka topic: OpenSearch gets the corpus's index instead.
//! 2. `runtime_mappings` (type and format, no script) is Elasticsearch 7.11+; OpenSearch 2.x
//!    forked before it. The index mapping states the same types, so it is left out, and a
//!    runtime date format (which in Elasticsearch parses the field's range bounds and renders
//!    its keys) is written into the `range` and `date_histogram` clauses on that field that
//!    name no format.
//! 3. `terms` counts are exact in Kappa (every key is kept, as the spec says): OpenSearch gets
//!    a `shard_size` past the corpus's distinct values, so its one shard returns every term
//!    too (otherwise terms beyond `size * 1.5 + 10` land in `sum_other_doc_count` even under
//!    `min_doc_count`).
//! 4. `size` defaults to 0 (a live query keeps no hits unless asked), Elasticsearch's to 10:
//!    OpenSearch gets the size explicitly.
//! 5. Scores are not computed: hits (and `top_hits`) are in log order unless sorted, and ties
//!    of a sort break by log order. OpenSearch gets `@offset`, `@partition` as the default sort
//!    and as tie-breakers, and their values are dropped from its hits' `sort` arrays.
//!
//! Response differences:
//! 6. `took`, `timed_out`, `_shards`, `max_score`, `_score`, `_index` (the index is the topic),
//!    and Kappa's `@offset`/`@partition` on hits are not compared; the virtual fields the
//!    index stores as real ones are dropped from OpenSearch's `_source`.
//! 7. A hit's `sort` value for a record without the field is `null` in Kappa; Elasticsearch
//!    shows the substitute it sorted with (`Long`/`Integer` `MIN_VALUE`/`MAX_VALUE`,
//!    infinities).
//! 8. A sampling variance of one value is not a number: OpenSearch writes the string `"NaN"`,
//!    Kappa `null` (JSON has no NaN, and the spec's shapes are numbers or null).
//! 9. OpenSearch 2.x renders `"meta": {}` on an aggregation whose filter is an empty `bool`;
//!    Elasticsearch does not, nor does the spec: an empty `meta` is dropped.
//! 10. Sums, averages and variances of non-integral numbers agree to 1e-9 relative: both
//!    engines compensate rounding, in different orders.
//! 11. `percentiles` (t-digest in both, with different merging) agree within the spec's 1%
//!    rank error: at most max(1, 1% of n) of the field's values lie between the two answers.
//! 12. `cardinality` past its `precision_threshold` is an estimate in both, with different
//!    hashes, and Elasticsearch's precision follows the threshold (about 26% standard error
//!    at 10; the spec holds Kappa to 2%, which `kappa-core`'s sketch tests check against exact
//!    counts): where Kappa's answer is past the threshold, neither value is compared. Below
//!    it both are exact and must be equal.
//!
//! Not comparable (counted apart, never as agreeing):
//! 13. A field holding values of several JSON types has no single mapping (an index maps one
//!    type; Kappa keeps each value's type, as the spec says for bucket keys and sorts): such a
//!    corpus is not indexed.
//! 14. Full-text and exact use of the same string field in one request needs a field that is
//!    both `text` and `keyword`; an index cannot map that, Kappa reads both.
//! 15. A request outside the spec's subset (an unsupported query, date math on `now`, no
//!    `topic`) is a 400 in Kappa, as the spec says; OpenSearch may answer it. Both rejecting
//!    (any 4xx/5xx from OpenSearch) agrees.
//!
//! What the corpora and generated requests keep out:
//! 16. A number of at most four digits in a date field is a year to Elasticsearch's default
//!    date format (`strict_date_optional_time` is tried first); the spec reads every number
//!    as epoch milliseconds.
//! 17. Dates in a format the defaults cannot read (Twitter's `created_at`) need that format in
//!    the request, or `runtime_mappings`: a topic has no mapping. Generated requests always
//!    carry one or the other, as the spec asks of users.

use serde_json::{Map, Value, json};

use crate::corpus::{Corpus, VIRTUAL_FIELDS};

/// Relative tolerance of difference 10.
const FLOAT_TOLERANCE: f64 = 1e-9;

/// Kappa's request said in OpenSearch's terms (differences 1-5).
pub fn opensearch_request(request: &Value) -> Value {
    let mut r = request.clone();
    let Value::Object(m) = &mut r else { return r };
    m.remove("topic");
    if let Some(Value::Object(runtime)) = m.remove("runtime_mappings") {
        let formats: Vec<(String, Value)> = runtime
            .iter()
            .filter_map(|(name, def)| Some((name.clone(), def.get("format")?.clone())))
            .collect();
        for (field, format) in &formats {
            for key in ["query", "aggs", "aggregations"] {
                if let Some(part) = m.get_mut(key) {
                    add_runtime_format(part, field, format);
                }
            }
        }
    }
    for key in ["aggs", "aggregations"] {
        if let Some(part) = m.get_mut(key) {
            exact_terms(part);
        }
    }
    m.insert("track_total_hits".into(), json!(true));
    let size = m.get("size").cloned().unwrap_or(json!(0));
    m.insert("size".into(), size);
    let sort = m.remove("sort");
    m.insert("sort".into(), with_log_order(sort));
    if let Some(aggs) = m.get_mut("aggs") {
        add_log_order_to_top_hits(aggs);
    }
    if let Some(aggs) = m.get_mut("aggregations") {
        add_log_order_to_top_hits(aggs);
    }
    r
}

/// Difference 2: the runtime format of `field` into the clauses on it that name none.
fn add_runtime_format(v: &mut Value, field: &str, format: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(range)) = m.get_mut("range")
                && let Some(Value::Object(clause)) = range.get_mut(field)
            {
                clause.entry("format").or_insert_with(|| format.clone());
            }
            if let Some(Value::Object(h)) = m.get_mut("date_histogram")
                && h.get("field").and_then(Value::as_str) == Some(field)
            {
                h.entry("format").or_insert_with(|| format.clone());
            }
            m.values_mut().for_each(|x| add_runtime_format(x, field, format));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| add_runtime_format(x, field, format)),
        _ => {}
    }
}

/// Difference 3: every `terms` aggregation returns all of its shard's terms.
fn exact_terms(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(t)) = m.get_mut("terms")
                && t.contains_key("field")
            {
                t.insert("shard_size".into(), json!(10_000));
            }
            m.values_mut().for_each(exact_terms);
        }
        Value::Array(a) => a.iter_mut().for_each(exact_terms),
        _ => {}
    }
}

fn with_log_order(sort: Option<Value>) -> Value {
    let mut list = match sort {
        None => vec![],
        Some(Value::Array(a)) => a,
        Some(one) => vec![one],
    };
    list.push(json!({"@offset": "asc"}));
    list.push(json!({"@partition": "asc"}));
    Value::Array(list)
}

fn add_log_order_to_top_hits(aggs: &mut Value) {
    let Value::Object(named) = aggs else { return };
    for body in named.values_mut() {
        let Value::Object(b) = body else { continue };
        if let Some(Value::Object(th)) = b.get_mut("top_hits") {
            let sort = th.remove("sort");
            th.insert("sort".into(), with_log_order(sort));
        }
        for key in ["aggs", "aggregations"] {
            if let Some(sub) = b.get_mut(key) {
                add_log_order_to_top_hits(sub);
            }
        }
    }
}

/// Names of the aggregations of a kind anywhere in a request, with their field.
fn aggs_of_kind(aggs: Option<&Value>, kind: &str, out: &mut Vec<(String, String)>) {
    let Some(Value::Object(named)) = aggs else { return };
    for (name, body) in named {
        if let Some(f) = body.get(kind).and_then(|k| k.get("field")).and_then(Value::as_str) {
            out.push((name.clone(), f.to_string()));
        }
        aggs_of_kind(body.get("aggs").or(body.get("aggregations")), kind, out);
    }
}

/// What the comparison needs to know about the request.
pub struct Context<'c> {
    corpus: &'c Corpus,
    percentiles: Vec<(String, String)>,
    request: Value,
    user_sort_keys: usize,
    /// Per `top_hits` path of aggregation names: its own number of sort keys.
    top_hits_sort_keys: Vec<(String, usize)>,
}

impl<'c> Context<'c> {
    /// The context of one request over one corpus.
    pub fn new(request: &Value, corpus: &'c Corpus) -> Context<'c> {
        let aggs = request.get("aggs").or(request.get("aggregations"));
        let mut percentiles = Vec::new();
        aggs_of_kind(aggs, "percentiles", &mut percentiles);

        let sort_len = |s: Option<&Value>| match s {
            None => 0,
            Some(Value::Array(a)) => a.len(),
            Some(_) => 1,
        };
        let mut top_hits_sort_keys = Vec::new();
        collect_top_hits(aggs, "", &mut |path, th| {
            top_hits_sort_keys.push((path.to_string(), sort_len(th.get("sort"))));
        });
        Context {
            corpus,
            percentiles,
            request: request.clone(),
            user_sort_keys: sort_len(request.get("sort")),
            top_hits_sort_keys,
        }
    }
}

/// Every `top_hits` with its path of aggregation names (`a0.g`).
fn collect_top_hits(aggs: Option<&Value>, prefix: &str, f: &mut impl FnMut(&str, &Value)) {
    let Some(Value::Object(named)) = aggs else { return };
    for (name, body) in named {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        if let Some(th) = body.get("top_hits") {
            f(&path, th);
        }
        collect_top_hits(body.get("aggs").or(body.get("aggregations")), &path, f);
    }
}

/// Both answers normalised (differences 6-9, 12), then compared (10-11). Returns the differences, by JSON path; empty when they agree.
pub fn compare(kappa: &Value, opensearch: &Value, ctx: &Context<'_>) -> Vec<String> {
    let mut k = kappa.clone();
    let mut o = opensearch.clone();
    if let Value::Object(m) = &mut o {
        for key in ["took", "timed_out", "_shards", "terminated_early"] {
            m.remove(key);
        }
    }
    normalise_hits(k.get_mut("hits"), ctx.user_sort_keys, None);
    normalise_hits(o.get_mut("hits"), ctx.user_sort_keys, Some(ctx.corpus));
    normalise_aggs(k.get_mut("aggregations"), "", ctx, false);
    normalise_aggs(o.get_mut("aggregations"), "", ctx, true);
    if let (Some(ka), Some(oa)) = (k.get_mut("aggregations"), o.get_mut("aggregations")) {
        let aggs = ctx.request.get("aggs").or(ctx.request.get("aggregations"));
        estimates_past_threshold(aggs, ka, oa);
    }
    let mut out = Vec::new();
    diff(&k, &o, "$", ctx, &mut out);
    out
}

/// `corpus` is given for OpenSearch's hits, whose `_id` is the record's position.
fn normalise_hits(hits: Option<&mut Value>, sort_keys: usize, corpus: Option<&Corpus>) {
    let Some(Value::Object(h)) = hits else { return };
    h.remove("max_score");
    let Some(Value::Array(list)) = h.get_mut("hits") else { return };
    for hit in list {
        let Value::Object(m) = hit else { continue };
        for key in ["_score", "_index", "@offset", "@partition", "_type"] {
            m.remove(key);
        }
        if let Some(corpus) = corpus {
            let position = m.get("_id").and_then(Value::as_str).unwrap_or("").to_string();
            let index_id = |d: &&crate::corpus::Doc| crate::corpus::index_id(corpus.keys_unique, d);
            if let Some(d) = corpus.docs.iter().find(|d| index_id(d) == position) {
                m.insert("_id".into(), json!(d.id()));
            }
            if let Some(Value::Object(src)) = m.get_mut("_source") {
                for f in VIRTUAL_FIELDS {
                    src.remove(f);
                }
            }
            match m.get_mut("sort") {
                Some(Value::Array(s)) if sort_keys > 0 => {
                    s.truncate(sort_keys);
                    for v in s.iter_mut() {
                        if is_missing_substitute(v) {
                            *v = Value::Null;
                        }
                    }
                }
                _ => {
                    m.remove("sort");
                }
            }
        }
    }
}

/// Difference 12: a `cardinality` whose (exact) Kappa answer is past its precision threshold
/// is an estimate on both sides; both values become the same marker. Walks the request's
/// aggregations and both results together, bucket by bucket.
fn estimates_past_threshold(aggs: Option<&Value>, k: &mut Value, o: &mut Value) {
    let Some(Value::Object(named)) = aggs else { return };
    for (name, body) in named {
        let (Some(kr), Some(or)) = (k.get_mut(name), o.get_mut(name)) else { continue };
        let subs = body.get("aggs").or(body.get("aggregations"));
        if let Some(c) = body.get("cardinality") {
            let threshold = c.get("precision_threshold").and_then(Value::as_u64).unwrap_or(3000);
            if kr["value"].as_u64().is_some_and(|v| v > threshold) {
                let marker = json!("estimate past precision_threshold");
                kr["value"] = marker.clone();
                or["value"] = marker;
            }
            continue;
        }
        match (kr.get_mut("buckets"), or.get_mut("buckets")) {
            (Some(Value::Array(kb)), Some(Value::Array(ob))) => {
                for (kb, ob) in kb.iter_mut().zip(ob.iter_mut()) {
                    estimates_past_threshold(subs, kb, ob);
                }
            }
            (Some(Value::Object(kb)), Some(Value::Object(ob))) => {
                for (key, kb) in kb.iter_mut() {
                    if let Some(ob) = ob.get_mut(key) {
                        estimates_past_threshold(subs, kb, ob);
                    }
                }
            }
            // Single-bucket aggregations hold their sub-aggregations directly.
            _ => estimates_past_threshold(subs, kr, or),
        }
    }
}

/// Difference 7: the values Elasticsearch sorts a missing value as.
fn is_missing_substitute(v: &Value) -> bool {
    // Long and Integer (boolean fields) limits; the corpora hold no such values.
    v.as_i64().is_some_and(|i| {
        [i64::MIN, i64::MAX, i64::from(i32::MIN), i64::from(i32::MAX)].contains(&i)
    }) || v.as_u64().is_some_and(|u| u == u64::MAX)
        || matches!(v.as_str(), Some("Infinity" | "-Infinity"))
        || v.as_f64().is_some_and(f64::is_infinite)
}

/// `prefix`: the aggregation names above (`a0` in `a0.g`), bucket keys left out.
fn normalise_aggs(
    aggs: Option<&mut Value>,
    prefix: &str,
    ctx: &Context<'_>,
    from_opensearch: bool,
) {
    let Some(Value::Object(named)) = aggs else { return };
    for (name, result) in named.iter_mut() {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        if let Some((_, n)) = ctx.top_hits_sort_keys.iter().find(|(t, _)| *t == path) {
            normalise_hits(result.get_mut("hits"), *n, from_opensearch.then_some(ctx.corpus));
            continue;
        }
        if let Value::Object(r) = result {
            // Difference 9.
            if r.get("meta") == Some(&json!({})) {
                r.remove("meta");
            }
            normalise_buckets(r, &path, ctx, from_opensearch);
        }
    }
}

fn normalise_buckets(
    r: &mut Map<String, Value>,
    path: &str,
    ctx: &Context<'_>,
    from_opensearch: bool,
) {
    let mut each = |b: &mut Value| {
        if let Value::Object(bm) = b {
            // A bucket's sub-aggregations sit beside key and doc_count.
            let mut subs = Value::Object(std::mem::take(bm));
            normalise_aggs(Some(&mut subs), path, ctx, from_opensearch);
            if let Value::Object(m) = subs {
                *bm = m;
            }
        }
    };
    match r.get_mut("buckets") {
        Some(Value::Array(list)) => list.iter_mut().for_each(&mut each),
        Some(Value::Object(keyed)) => keyed.values_mut().for_each(&mut each),
        _ => {
            // Single-bucket aggregations (filter, missing, global) hold sub-aggregations.
            if r.contains_key("doc_count") {
                let mut subs = Value::Object(std::mem::take(r));
                normalise_aggs(Some(&mut subs), path, ctx, from_opensearch);
                if let Value::Object(m) = subs {
                    *r = m;
                }
            }
        }
    }
}

fn diff(k: &Value, o: &Value, path: &str, ctx: &Context<'_>, out: &mut Vec<String>) {
    match (k, o) {
        (Value::Object(km), Value::Object(om)) => {
            let percentile_field = ctx
                .percentiles
                .iter()
                .find(|(name, _)| path.ends_with(&format!(".{name}")))
                .map(|(_, f)| f.as_str());
            for (key, kv) in km {
                let p = format!("{path}.{key}");
                match om.get(key) {
                    Some(ov) if key == "values" && percentile_field.is_some() => {
                        percentiles_within_rank(
                            kv,
                            ov,
                            percentile_field.unwrap_or(""),
                            &p,
                            ctx,
                            out,
                        )
                    }
                    Some(ov) => diff(kv, ov, &p, ctx, out),
                    None => out.push(format!("{p}: only Kappa has {kv}")),
                }
            }
            for (key, ov) in om {
                if !km.contains_key(key) {
                    out.push(format!("{path}.{key}: only OpenSearch has {ov}"));
                }
            }
        }
        (Value::Array(ka), Value::Array(oa)) => {
            if ka.len() != oa.len() {
                out.push(format!("{path}: Kappa has {} items, OpenSearch {}", ka.len(), oa.len()));
            }
            for (i, (kv, ov)) in ka.iter().zip(oa).enumerate() {
                diff(kv, ov, &format!("{path}[{i}]"), ctx, out);
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let (x, y) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            let scale = x.abs().max(y.abs()).max(1.0);
            // NaN (a number that did not parse) never agrees.
            let close = (x - y).abs() <= FLOAT_TOLERANCE * scale;
            if !close {
                out.push(format!("{path}: Kappa {a}, OpenSearch {b}"));
            }
        }
        // Difference 8.
        (Value::Null, Value::String(s)) if s == "NaN" => {}
        _ if k != o => out.push(format!("{path}: Kappa {k}, OpenSearch {o}")),
        _ => {}
    }
}

/// Difference 11: percentile answers may differ by 1% of the ranks.
fn percentiles_within_rank(
    k: &Value,
    o: &Value,
    field: &str,
    path: &str,
    ctx: &Context<'_>,
    out: &mut Vec<String>,
) {
    let values = ctx.corpus.numbers_of(field);
    let allowed = (values.len() / 100).max(1);
    let pairs: Vec<(String, Value, Value)> = match (k, o) {
        (Value::Object(km), Value::Object(om)) => km
            .iter()
            .map(|(p, kv)| (p.clone(), kv.clone(), om.get(p).cloned().unwrap_or(Value::Null)))
            .collect(),
        (Value::Array(ka), Value::Array(oa)) => ka
            .iter()
            .zip(oa)
            .map(|(kv, ov)| (kv["key"].to_string(), kv["value"].clone(), ov["value"].clone()))
            .collect(),
        _ => {
            out.push(format!("{path}: Kappa {k}, OpenSearch {o}"));
            return;
        }
    };
    for (p, kv, ov) in pairs {
        match (kv.as_f64(), ov.as_f64()) {
            (Some(a), Some(b)) => {
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                let between = values.iter().filter(|v| **v > lo && **v < hi).count();
                if between > allowed {
                    out.push(format!(
                        "{path}.{p}: Kappa {a}, OpenSearch {b}: {between} values apart (allowed {allowed})"
                    ));
                }
            }
            _ if kv != ov => out.push(format!("{path}.{p}: Kappa {kv}, OpenSearch {ov}")),
            _ => {}
        }
    }
}
