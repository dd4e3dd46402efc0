//! Random corpora and random requests over every query and aggregation of the spec.
//!
//! A corpus has a fixed schema, so one index mapping serves every request over it (creating
//! an index costs about half a second; a search a few milliseconds): exact strings (`user`,
//! `lang`, `place.country`), full text (`text`, `title`), integers (`rt`), doubles (`score`),
//! booleans (`flag`), dates as ISO 8601 strings in several shapes and zones or epoch
//! milliseconds (`ts`), and Twitter's `created_at`. Values are sometimes null, arrays (also
//! empty) or missing. Requests are proptest strategies, so a disagreement shrinks to a small
//! request.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};

use crate::corpus::{Corpus, Doc, StringRole, TWITTER_FORMAT};

const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "eve", "Émile"];
const LANGS: [&str; 4] = ["en", "fr", "de", "es"];
const COUNTRIES: [&str; 3] = ["CH", "GB", "US"];
const WORDS: [&str; 10] =
    ["federer", "nadal", "wins", "final", "the", "Wimbledon", "rain", "delay", "centre", "court"];
const DAYS: [&str; 6] =
    ["2024-03-24", "2024-03-25", "2024-03-26", "2024-03-30", "2024-03-31", "2024-04-01"];
const ZONES: [&str; 5] = ["Z", "+02:00", "-05:00", "+05:30", ""];
const TWITTER_DAYS: [&str; 3] = ["Sun Mar 24", "Tue Mar 26", "Mon Apr 01"];

/// The string fields read as full text; every other string field is exact.
pub fn roles() -> BTreeMap<String, StringRole> {
    ["text", "title"].into_iter().map(|f| (f.to_string(), StringRole::FullText)).collect()
}

fn maybe_many<S: Strategy<Value = Value> + Clone + 'static>(one: S) -> BoxedStrategy<Value> {
    prop_oneof![
        6 => one.clone(),
        1 => Just(Value::Null),
        1 => prop::collection::vec(one, 0..3).prop_map(Value::Array),
    ]
    .boxed()
}

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = Value> + Clone {
    prop::sample::select(list).prop_map(|s| json!(s))
}

fn sentence() -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(prop::sample::select(&WORDS[..]), 1..6).prop_map(|w| w.join(" "))
}

fn iso_date() -> impl Strategy<Value = Value> + Clone {
    (
        prop::sample::select(&DAYS[..]),
        0u32..24,
        0u32..60,
        0u32..1000,
        prop::sample::select(&ZONES[..]),
        0u8..6,
    )
        .prop_map(|(day, h, m, ms, zone, shape)| match shape {
            0 => json!(day),
            1 => json!(format!("{day}T{h:02}:{m:02}")),
            2 => json!(format!("{day}T{h:02}:{m:02}:00.{ms:03}{zone}")),
            // Epoch milliseconds, as a number (never short enough to read as a year).
            3 => {
                let base = kappa_core::date::DateFormat::default_format()
                    .parse_millis(day, &kappa_core::date::TimeZone::utc())
                    .unwrap_or(0);
                json!(base + i64::from(h) * 3_600_000 + i64::from(m) * 60_000)
            }
            _ => {
                json!(format!("{day}T{h:02}:{m:02}:30{}", if zone.is_empty() { "Z" } else { zone }))
            }
        })
}

fn twitter_date() -> impl Strategy<Value = Value> + Clone {
    (
        prop::sample::select(&TWITTER_DAYS[..]),
        0u32..24,
        0u32..60,
        prop::sample::select(&["+0000", "+0200", "-0500"][..]),
    )
        .prop_map(|(day, h, m, z)| json!(format!("{day} {h:02}:{m:02}:07 {z} 2024")))
}

fn document() -> impl Strategy<Value = Value> {
    let fields = (
        prop::option::of(maybe_many(pick(&USERS))),
        prop::option::of(maybe_many(pick(&LANGS))),
        prop::option::of(sentence().prop_map(Value::String)),
        prop::option::of(maybe_many(sentence().prop_map(Value::String))),
        prop::option::of(maybe_many((-5i64..60).prop_map(|n| json!(n)))),
        prop::option::of(maybe_many((-40i32..400).prop_map(|n| json!(f64::from(n) / 8.0 + 0.01)))),
        prop::option::of(maybe_many(any::<bool>().prop_map(Value::Bool))),
        prop::option::of(maybe_many(iso_date())),
        prop::option::of(twitter_date()),
        prop::option::of(pick(&COUNTRIES)),
    );
    fields.prop_map(|(user, lang, text, title, rt, score, flag, ts, created_at, country)| {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("user", user);
        put("lang", lang);
        put("text", text);
        put("title", title);
        put("rt", rt);
        put("score", score);
        put("flag", flag);
        put("ts", ts);
        put("created_at", created_at);
        put("place", country.map(|c| json!({"country": c})));
        Value::Object(m)
    })
}

/// A corpus of `n` random documents, the same for the same `seed`.
pub fn corpus(seed: u64, n: usize) -> anyhow::Result<Corpus> {
    let mut runner = runner(seed);
    let docs = prop::collection::vec(document(), n)
        .new_tree(&mut runner)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .current();
    let docs = docs
        .into_iter()
        .enumerate()
        .map(|(i, source)| Doc {
            source,
            // Log timestamps around the documents' dates, a few minutes apart.
            timestamp: 1_711_238_400_000 + 397_000 * i as i64,
            partition: (i % 2) as i32,
            offset: (i / 2) as i64,
            key: (i % 3 == 0).then(|| format!("k{i}")),
        })
        .collect();
    Corpus::new(docs, &roles())
}

/// A deterministic runner.
pub fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &bytes,
        ),
    )
}

// ---- queries -------------------------------------------------------------------------------

const EXACT_FIELDS: [&str; 5] = ["user", "lang", "place.country", "text.keyword", "user.keyword"];

fn exact_value(field: &'static str) -> BoxedStrategy<Value> {
    match field {
        "user" | "user.keyword" => pick(&USERS).boxed(),
        "lang" => pick(&LANGS).boxed(),
        "place.country" => pick(&COUNTRIES).boxed(),
        _ => sentence().prop_map(Value::String).boxed(),
    }
}

fn term_query() -> BoxedStrategy<Value> {
    prop_oneof![
        prop::sample::select(&EXACT_FIELDS[..])
            .prop_flat_map(|f| exact_value(f).prop_map(move |v| json!({"term": {f: v}}))),
        (-5i64..60).prop_map(|n| json!({"term": {"rt": n}})),
        any::<bool>().prop_map(|b| json!({"term": {"flag": b}})),
        pick(&USERS)
            .prop_map(|v| json!({"term": {"user": {"value": v, "case_insensitive": true}}})),
        prop::collection::vec(pick(&USERS), 1..3).prop_map(|v| json!({"terms": {"user": v}})),
        prop::collection::vec(-5i64..60, 1..4).prop_map(|v| json!({"terms": {"rt": v}})),
    ]
    .boxed()
}

fn bound_ops() -> impl Strategy<Value = (Option<&'static str>, Option<&'static str>)> {
    (
        prop::option::of(prop::sample::select(&["gt", "gte"][..])),
        prop::option::of(prop::sample::select(&["lt", "lte"][..])),
    )
}

fn range_body(
    lower: Option<&str>,
    upper: Option<&str>,
    lo: Value,
    hi: Value,
    extra: Value,
) -> Value {
    let mut m = Map::new();
    if let Some(op) = lower {
        m.insert(op.into(), lo);
    }
    if let Some(op) = upper {
        m.insert(op.into(), hi);
    }
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    Value::Object(m)
}

/// Date bounds as users write them: partial dates (rounded by `gt`/`lte`), full instants
/// with zones, epoch numbers with their format.
fn date_bounds() -> BoxedStrategy<(Value, Value, Value)> {
    let partial = prop::sample::select(
        &[
            "2024-03-24",
            "2024-03-25",
            "2024-03-26",
            "2024-03-31",
            "2024-03",
            "2024-03-26T10",
            "2024-03-26T10:15",
            "2024-03-26T10:15:30",
        ][..],
    );
    prop_oneof![
        (
            partial.clone(),
            partial,
            prop::option::of(prop::sample::select(&["+02:00", "-05:00", "Europe/London"][..]))
        )
            .prop_map(|(a, b, tz)| {
                let extra = tz.map_or(json!({}), |z| json!({"time_zone": z}));
                (json!(a), json!(b), extra)
            }),
        (0i64..12, 0i64..12).prop_map(|(a, b)| {
            let day = 86_400_000;
            (
                json!(1_711_238_400_000 + a * day / 2),
                json!(1_711_238_400_000 + b * day),
                json!({"format": "epoch_millis"}),
            )
        }),
        (0i64..12, 0i64..12).prop_map(|(a, b)| {
            (
                json!(1_711_238_400 + a * 43_200),
                json!(1_711_238_400 + b * 86_400),
                json!({"format": "epoch_second"}),
            )
        }),
        (0usize..3, 0usize..3).prop_map(|(a, b)| {
            (
                json!(format!("{}/03/2024", 24 + a)),
                json!(format!("{}/03/2024", 26 + b)),
                json!({"format": "dd/MM/yyyy"}),
            )
        }),
    ]
    .boxed()
}

fn range_query() -> BoxedStrategy<Value> {
    prop_oneof![
        (bound_ops(), -5i64..60, -5i64..60).prop_map(|((l, u), a, b)| {
            json!({"range": {"rt": range_body(l, u, json!(a), json!(b), json!({}))}})
        }),
        (bound_ops(), -5i32..50, -5i32..50).prop_map(|((l, u), a, b)| {
            json!({"range": {"score": range_body(l, u, json!(f64::from(a) / 2.0), json!(f64::from(b)), json!({}))}})
        }),
        (bound_ops(), date_bounds()).prop_map(|((l, u), (a, b, extra))| {
            json!({"range": {"ts": range_body(l, u, a, b, extra)}})
        }),
        (bound_ops(), prop::sample::select(&TWITTER_DAYS[..]), prop::sample::select(&TWITTER_DAYS[..]))
            .prop_map(|((l, u), a, b)| {
                json!({"range": {"created_at": range_body(l, u,
                    json!(format!("{a} 00:00:00 +0000 2024")), json!(format!("{b} 12:00:00 +0000 2024")),
                    json!({"format": TWITTER_FORMAT}))}})
            }),
        (bound_ops(), pick(&USERS), pick(&USERS)).prop_map(|((l, u), a, b)| {
            json!({"range": {"user": range_body(l, u, a, b, json!({}))}})
        }),
    ]
    .boxed()
}

fn text_query() -> BoxedStrategy<Value> {
    let words =
        prop::collection::vec(prop::sample::select(&WORDS[..]), 1..4).prop_map(|w| w.join(" "));
    prop_oneof![
        (prop::sample::select(&["text", "title"][..]), words.clone())
            .prop_map(|(f, q)| json!({"match": {f: q}})),
        (words.clone(), prop::sample::select(&["and", "or"][..]))
            .prop_map(|(q, op)| json!({"match": {"text": {"query": q, "operator": op}}})),
        (words.clone(), prop::sample::select(&["1", "2", "50%", "-1"][..]))
            .prop_map(|(q, m)| json!({"match": {"text": {"query": q, "minimum_should_match": m}}})),
        (prop::sample::select(&WORDS[..]), prop::sample::select(&WORDS[..]))
            .prop_map(|(a, b)| json!({"match_phrase": {"text": format!("{a} {b}")}})),
        (words, prop::sample::select(&["and", "or"][..])).prop_map(|(q, op)| {
            json!({"multi_match": {"query": q, "fields": ["text", "title"], "operator": op}})
        }),
    ]
    .boxed()
}

fn leaf_query() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(json!({"match_all": {}})),
        1 => Just(json!({"match_none": {}})),
        4 => term_query(),
        4 => range_query(),
        2 => prop::sample::select(&["user", "rt", "ts", "flag", "score", "title", "place.country", "missing_field"][..])
            .prop_map(|f| json!({"exists": {"field": f}})),
        2 => (prop::sample::select(&["user", "lang"][..]), prop::sample::select(&["a", "e", "d", "É"][..]))
            .prop_map(|(f, p)| json!({"prefix": {f: p}})),
        2 => (prop::sample::select(&["user", "text.keyword"][..]), prop::sample::select(&["*e*", "?o*", "a*e", "*r"][..]))
            .prop_map(|(f, p)| json!({"wildcard": {f: p}})),
        1 => (prop::sample::select(&["user", "lang"][..]), prop::sample::select(&["A", "É", "E", "Fr"][..]))
            .prop_map(|(f, p)| json!({"prefix": {f: {"value": p, "case_insensitive": true}}})),
        1 => prop::sample::select(&["*E*", "?O*", "A*E", "É*"][..])
            .prop_map(|p| json!({"wildcard": {"user": {"value": p, "case_insensitive": true}}})),
        1 => prop::collection::vec(prop::sample::select(&["k0", "k3", "k6", "k9", "k12", "nope"][..]), 1..4)
            .prop_map(|ids| json!({"ids": {"values": ids}})),
        4 => text_query(),
    ]
    .boxed()
}

/// Any query of the spec, `bool` nesting up to two levels.
pub fn query() -> BoxedStrategy<Value> {
    leaf_query()
        .prop_recursive(2, 12, 4, |inner| {
            let clauses = prop::collection::vec(inner, 0..3);
            (
                clauses.clone(),
                clauses.clone(),
                clauses.clone(),
                clauses,
                prop::option::of(0usize..3),
            )
                .prop_map(|(must, filter, should, must_not, msm)| {
                    let mut b = Map::new();
                    for (k, v) in [
                        ("must", must),
                        ("filter", filter),
                        ("should", should),
                        ("must_not", must_not),
                    ] {
                        if !v.is_empty() {
                            b.insert(k.into(), Value::Array(v));
                        }
                    }
                    if let Some(m) = msm.filter(|_| b.contains_key("should")) {
                        b.insert("minimum_should_match".into(), json!(m));
                    }
                    json!({"bool": b})
                })
                .boxed()
        })
        .boxed()
}

// ---- aggregations --------------------------------------------------------------------------

fn metric_agg() -> BoxedStrategy<Value> {
    let numeric = prop::sample::select(&["rt", "score"][..]);
    prop_oneof![
        (
            prop::sample::select(
                &["value_count", "sum", "min", "max", "avg", "stats", "extended_stats"][..]
            ),
            numeric.clone()
        )
            .prop_map(|(kind, f)| json!({kind: {"field": f}})),
        prop::sample::select(&["user", "lang", "rt", "flag"][..])
            .prop_map(|f| json!({"cardinality": {"field": f}})),
        (numeric.clone(), any::<bool>()).prop_map(|(f, keyed)| {
            json!({"percentiles": {"field": f, "percents": [10, 50, 90], "keyed": keyed}})
        }),
        numeric.prop_map(|f| json!({"percentiles": {"field": f}})),
        prop::sample::select(&["user", "rt", "score"][..])
            .prop_map(|f| json!({"cardinality": {"field": f, "precision_threshold": 10}})),
        (1usize..3, prop::option::of(hits_sort())).prop_map(|(size, sort)| {
            let mut th = json!({"size": size, "_source": ["user", "rt"]});
            if let Some(s) = sort {
                th["sort"] = s;
            }
            json!({"top_hits": th})
        }),
    ]
    .boxed()
}

fn terms_agg() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => plain_terms_agg(),
        1 => (prop::sample::select(&["user", "lang"][..]), prop::sample::select(&[".*e.*", "a.*|b.*"][..]), any::<bool>())
            .prop_map(|(f, re, include)| {
                json!({"terms": {"field": f, (if include { "include" } else { "exclude" }): re}})
            }),
        1 => (prop::sample::select(&["user", "lang"][..]), prop::collection::vec(pick(&USERS), 1..3))
            .prop_map(|(f, vals)| json!({"terms": {"field": f, "exclude": vals}})),
        1 => prop::sample::select(&["user", "lang", "place.country"][..])
            .prop_map(|f| json!({"terms": {"field": f, "missing": "N/A", "size": 3}})),
        1 => (prop::sample::select(&["user", "lang"][..]), prop::sample::select(&["asc", "desc"][..]),
              prop::sample::select(&["m", "st.max", "st.avg"][..]))
            .prop_map(|(f, dir, path)| {
                let sub = if path == "m" { json!({"m": {"max": {"field": "rt"}}}) } else { json!({"st": {"stats": {"field": "rt"}}}) };
                json!({"terms": {"field": f, "size": 3, "order": {path: dir}}, "aggs": sub})
            }),
    ]
    .boxed()
}

fn plain_terms_agg() -> BoxedStrategy<Value> {
    (
        prop::sample::select(&["user", "lang", "rt", "flag", "place.country", "text.keyword"][..]),
        1usize..6,
        prop::sample::select(&[0u64, 1, 2][..]),
        prop::sample::select(vec![
            None,
            Some(json!({"_key": "asc"})),
            Some(json!({"_key": "desc"})),
            Some(json!({"_count": "asc"})),
        ]),
    )
        .prop_map(|(f, size, min_doc_count, order)| {
            let mut t = json!({"field": f, "size": size});
            if min_doc_count != 1 {
                t["min_doc_count"] = json!(min_doc_count);
            }
            if let Some(o) = order {
                t["order"] = o;
            }
            json!({"terms": t})
        })
        .boxed()
}

fn date_histogram_agg() -> BoxedStrategy<Value> {
    let interval = prop_oneof![
        prop::sample::select(&["day", "week", "month", "hour", "1d"][..])
            .prop_map(|i| json!({"calendar_interval": i})),
        prop::sample::select(&["6h", "12h", "1d", "90m"][..])
            .prop_map(|i| json!({"fixed_interval": i})),
    ];
    (
        prop::sample::select(&["ts", "@timestamp", "created_at"][..]),
        interval,
        prop::option::of(prop::sample::select(
            &["+02:00", "-05:00", "Europe/London", "Asia/Kolkata"][..],
        )),
        prop::option::of(prop::sample::select(
            &["yyyy-MM-dd", "yyyy-MM-dd'T'HH:mm", "epoch_millis", "EEE MMM dd HH:mm:ss Z yyyy"][..],
        )),
        prop::sample::select(&[0u64, 1][..]),
        prop::option::of((0usize..3, 0usize..3)),
    )
        .prop_map(|(f, interval, tz, format, min_doc_count, bounds)| {
            let mut h = interval;
            h["field"] = json!(f);
            if let Some(z) = tz {
                h["time_zone"] = json!(z);
            }
            // Twitter's dates need the format (or runtime_mappings): Kappa has no mapping.
            let format =
                if f == "created_at" && format.is_none() { Some(TWITTER_FORMAT) } else { format };
            if let Some(fm) = format {
                h["format"] = json!(fm);
            }
            if min_doc_count != 0 {
                h["min_doc_count"] = json!(min_doc_count);
            }
            if let (Some((a, b)), Some(fm)) = (bounds, format)
                && fm == "yyyy-MM-dd"
            {
                h["extended_bounds"] = json!({"min": DAYS[a], "max": DAYS[3 + b]});
            }
            json!({"date_histogram": h})
        })
        .boxed()
}

fn bucket_agg() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => terms_agg(),
        2 => (prop::sample::select(&[5.0, 10.0, 2.5][..]), prop::sample::select(&[0.0, 1.0][..]), prop::option::of((-20i64..0, 60i64..80)))
            .prop_map(|(interval, offset, bounds)| {
                let mut h = json!({"field": "rt", "interval": interval, "offset": offset});
                if let Some((a, b)) = bounds {
                    h["extended_bounds"] = json!({"min": a, "max": b});
                }
                json!({"histogram": h})
            }),
        3 => date_histogram_agg(),
        1 => (0i64..20, 20i64..50, any::<bool>()).prop_map(|(a, b, keyed)| {
            json!({"range": {"field": "rt", "keyed": keyed, "ranges": [{"to": a}, {"from": a, "to": b}, {"from": b}]}})
        }),
        1 => (prop::sample::select(&DAYS[..]), any::<bool>()).prop_map(|(d, keyed)| {
            json!({"date_range": {"field": "ts", "keyed": keyed, "ranges": [{"to": d}, {"from": d}]}})
        }),
        1 => (0usize..3, prop::option::of(prop::sample::select(&["+02:00", "America/New_York"][..]))).prop_map(|(i, tz)| {
            let mut r = json!({"field": "ts", "format": "dd/MM/yyyy", "ranges": [
                {"to": format!("{}/03/2024", 24 + i)}, {"from": format!("{}/03/2024", 24 + i), "key": "later"}]});
            if let Some(z) = tz {
                r["time_zone"] = json!(z);
            }
            json!({"date_range": r})
        }),
        1 => (prop::sample::select(&[0u64, 1, 2][..]), prop::option::of((0i64..10, 20i64..40)), prop::sample::select(&[0, 3][..])).prop_map(|(m, hb, offset)| {
            let mut h = json!({"field": "rt", "interval": 10, "min_doc_count": m, "offset": offset});
            if let Some((a, b)) = hb {
                h["hard_bounds"] = json!({"min": a, "max": b});
            }
            json!({"histogram": h})
        }),
        1 => (prop::sample::select(&["day", "week"][..]), prop::sample::select(&["6h", "-3h", "+1d"][..]))
            .prop_map(|(i, off)| json!({"date_histogram": {"field": "ts", "calendar_interval": i, "offset": off}})),
        2 => leaf_query().prop_map(|q| json!({"filter": q})),
        1 => (leaf_query(), leaf_query(), any::<bool>()).prop_map(|(a, b, other)| {
            json!({"filters": {"filters": {"a": a, "b": b}, "other_bucket": other}})
        }),
        1 => prop::sample::select(&["user", "rt", "ts"][..]).prop_map(|f| json!({"missing": {"field": f}})),
    ]
    .boxed()
}

/// One to three named aggregations, bucket aggregations with sub-aggregations.
pub fn aggs() -> BoxedStrategy<Value> {
    let sub = prop::collection::vec(prop_oneof![3 => metric_agg(), 1 => bucket_agg()], 0..3);
    let agg = prop_oneof![
        2 => metric_agg(),
        3 => (bucket_agg(), sub).prop_map(|(mut b, subs)| {
            if !subs.is_empty() {
                let named: Map<String, Value> =
                    subs.into_iter().enumerate().map(|(i, s)| (format!("s{i}"), s)).collect();
                b["aggs"] = Value::Object(named);
            }
            b
        }),
        1 => metric_agg().prop_map(|m| json!({"global": {}, "aggs": {"g": m}})),
    ];
    prop::collection::vec(agg, 1..3)
        .prop_map(|list| {
            Value::Object(list.into_iter().enumerate().map(|(i, a)| (format!("a{i}"), a)).collect())
        })
        .boxed()
}

fn hits_sort() -> BoxedStrategy<Value> {
    let one = (
        prop::sample::select(&["rt", "score", "user", "ts", "flag", "@timestamp", "lang"][..]),
        prop::sample::select(&["asc", "desc"][..]),
        any::<bool>(),
    )
        .prop_map(|(f, order, first)| {
            if first {
                json!({f: {"order": order, "missing": "_first"}})
            } else {
                json!({f: order})
            }
        });
    prop::collection::vec(one, 1..3).prop_map(Value::Array).boxed()
}

/// A whole request: a query, aggregations and/or hits.
pub fn request() -> BoxedStrategy<Value> {
    (
        prop::option::of(query()),
        prop::option::of(aggs()),
        prop::sample::select(&[0usize, 0, 3][..]),
        prop::option::of(hits_sort()),
        any::<bool>(),
    )
        .prop_map(|(q, a, size, sort, runtime_twitter)| {
            let mut r = json!({"topic": "t"});
            if let Some(q) = q {
                r["query"] = q;
            }
            if let Some(a) = a {
                r["aggs"] = a;
            }
            if size > 0 {
                r["size"] = json!(size);
                if let Some(s) = sort {
                    r["sort"] = s;
                }
            }
            // Sorting on `ts` as dates needs its type declared (a topic has no mapping), the
            // way an Elasticsearch user declares a runtime field; Twitter dates their format.
            let text = r.to_string();
            let mut runtime = Map::new();
            if text.contains("\"ts\":") && text.contains("sort") {
                runtime.insert("ts".into(), json!({"type": "date"}));
            }
            // Another format on Twitter's dates cannot read them: only their type can.
            let other_format = ["yyyy-MM-dd", "epoch_millis"].iter().any(|f| text.contains(f));
            if (runtime_twitter || other_format) && text.contains("created_at") {
                runtime
                    .insert("created_at".into(), json!({"type": "date", "format": TWITTER_FORMAT}));
            }
            if !runtime.is_empty() {
                r["runtime_mappings"] = Value::Object(runtime);
            }
            r
        })
        .boxed()
}
