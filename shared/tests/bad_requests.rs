//! Bad input: a corpus of malformed query bodies, each answered by a clean Elasticsearch-style
//! error naming the problem and its path; and arbitrary JSON, which must never panic.

use kappa_core::{ErrorKind, Limits, Plan, Record};
use proptest::prelude::*;
use serde_json::{Value, json};

fn corpus() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/bad_requests.ndjson");
    let text = std::fs::read_to_string(path).expect("corpus file is present");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus lines are JSON"))
        .collect()
}

#[test]
fn every_malformed_body_gets_a_clean_error_naming_its_path() {
    let cases = corpus();
    assert!(cases.len() >= 50, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let why = case["why"].as_str().unwrap_or("?");
        match Plan::parse(&case["body"], &Limits::default()) {
            Ok(_) => failures.push(format!("{why}: accepted")),
            Err(e) => {
                let body = e.to_json();
                if body["error"]["type"] != case["type"] || body["error"]["path"] != case["path"] {
                    failures.push(format!(
                        "{why}: got {body}, expected type {} path {}",
                        case["type"], case["path"]
                    ));
                }
                assert_eq!(body["status"], json!(e.kind.status()));
                assert!(!e.reason.is_empty());
                assert!(!e.is_retryable());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn limits_are_configurable_and_enforced() {
    let tight = Limits {
        max_depth: 4,
        max_size: 5,
        max_terms_size: 3,
        max_body_bytes: 64,
        ..Limits::default()
    };
    let deep = json!({"topic": "t", "query": {"bool": {"must": [{"bool": {"must": [{"match_all": {}}]}}]}}});
    let e = Plan::parse(&deep, &tight).expect_err("too deep");
    assert_eq!(e.kind, ErrorKind::IllegalArgument);
    assert!(e.reason.contains("depth"), "{}", e.reason);
    assert!(Plan::parse(&deep, &Limits::default()).is_ok());
    assert!(Plan::parse(&json!({"topic": "t", "size": 6}), &tight).is_err());
    assert!(Plan::parse(&json!({"topic": "t", "size": 5}), &tight).is_ok());
    assert!(
        Plan::parse(
            &json!({"topic": "t", "aggs": {"a": {"terms": {"field": "x", "size": 4}}}}),
            &tight
        )
        .is_err()
    );
    let big = br#"{"topic":"t","query":{"match":{"text":"a very long query that goes past sixty four bytes"}}}"#;
    let e = kappa_core::request::parse_request_bytes(big, &tight).expect_err("too large");
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert_eq!(e.kind.status(), 413);
}

#[test]
fn pathological_patterns_are_refused_not_run() {
    let terms = |include: String| json!({"topic": "t", "aggs": {"a": {"terms": {"field": "x", "include": include}}}});
    // The pattern that stalled kappa dev for 40 s (issue #17): 9 KB of nested lazy repetitions.
    let stall = format!("{}x", "(?:a|b)*?".repeat(1000));
    let e = Plan::parse(&terms(stall), &Limits::default()).expect_err("too long");
    assert_eq!(e.kind, ErrorKind::IllegalArgument);
    assert!(e.reason.contains("exceeds the allowed maximum of [1000]"), "{}", e.reason);
    assert_eq!(e.path, "aggs.a.terms.include");
    // Configurable, like Elasticsearch's index.max_regex_length.
    let short = Limits { max_regex_length: 5, ..Limits::default() };
    assert!(Plan::parse(&terms("abcdef".into()), &short).is_err());
    assert!(Plan::parse(&terms("abcde".into()), &short).is_ok());
    // Short, but compiling into more than the bound allows (counted repetitions blow up).
    let huge = "(?:\\w{1000}){1000}".to_string();
    let e = Plan::parse(&terms(huge), &Limits::default()).expect_err("too big compiled");
    assert_eq!(e.kind, ErrorKind::IllegalArgument);
    let wildcard = json!({"topic": "t", "query": {"wildcard": {"x": {"value": "*a*b*c*"}}}});
    assert!(Plan::parse(&wildcard, &Limits::default()).is_ok());
}

#[test]
fn a_terms_aggregation_over_too_many_keys_fails_cleanly_within_its_budget() {
    let limits = Limits { max_state_bytes: 256 * 1024, ..Limits::default() };
    let plan =
        Plan::parse(&json!({"topic": "t", "aggs": {"k": {"terms": {"field": "id"}}}}), &limits)
            .expect("valid");
    let mut state = plan.empty_state();
    let mut error = None;
    for i in 0..100_000i64 {
        let value = format!(r#"{{"id":"user-{i:08}"}}"#);
        let rec =
            Record { value: value.as_bytes(), timestamp: 0, offset: i, partition: 0, key: None };
        if let Err(e) = plan.fold(&mut state, &rec) {
            error = Some((i, e));
            break;
        }
    }
    let (at, e) = error.expect("the budget stops the fold");
    assert_eq!(e.kind, ErrorKind::CircuitBreaking);
    assert!(at > 100, "stopped too early, at {at}");
    assert!(state.estimated_bytes() <= limits.max_state_bytes + 4096);
}

#[test]
fn too_many_buckets_in_a_result_is_an_error_not_a_huge_answer() {
    let limits = Limits { max_buckets: 100, ..Limits::default() };
    let plan = Plan::parse(
        &json!({"topic": "t", "aggs": {"h": {"histogram": {"field": "n", "interval": 1}}}}),
        &limits,
    )
    .expect("valid");
    let mut state = plan.empty_state();
    for (i, n) in [0, 1_000_000].into_iter().enumerate() {
        let v = format!(r#"{{"n":{n}}}"#);
        plan.fold(
            &mut state,
            &Record {
                value: v.as_bytes(),
                timestamp: 0,
                offset: i as i64,
                partition: 0,
                key: None,
            },
        )
        .expect("folds");
    }
    let e = plan.render(&state).expect_err("gap filling would exceed the limit");
    assert_eq!(e.kind, ErrorKind::TooManyBuckets);
}

/// Arbitrary JSON biased towards the query language's own keys, so the parser goes deep.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "topic",
        "query",
        "aggs",
        "size",
        "sort",
        "_source",
        "bool",
        "must",
        "should",
        "filter",
        "must_not",
        "term",
        "terms",
        "range",
        "match",
        "field",
        "gte",
        "lt",
        "format",
        "time_zone",
        "interval",
        "fixed_interval",
        "calendar_interval",
        "histogram",
        "date_histogram",
        "order",
        "_count",
        "_key",
        "ranges",
        "from",
        "to",
        "percents",
        "filters",
        "global",
        "value",
        "x",
        "text",
        "minimum_should_match",
        "operator",
        "top_hits",
        "extended_bounds",
        "min",
        "max",
        "missing",
        "include",
        "keyed",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z0-9 .*%<|-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "1h",
            "day",
            "2d",
            "t",
            "desc",
            "asc",
            "and",
            "50%",
            "-1",
            "yyyy-MM-dd",
            "Europe/London",
            "+01:00",
            "now"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(6, 64, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..4).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The fuzz target CI runs for a bounded time (PROPTEST_CASES raises it).
    #[test]
    fn arbitrary_json_never_panics(query in arbitrary_json(), aggs in arbitrary_json(), wrap in any::<bool>()) {
        let body = if wrap { json!({"topic": "t", "query": query, "aggs": aggs}) } else { query };
        if let Ok(plan) = Plan::parse(&body, &Limits::default()) {
            let mut s = plan.empty_state();
            for (i, v) in [r#"{"x":1,"text":"a b","field":[1,"2",null]}"#, "nope", r#"{"value":{"x":"2020-01-01"}}"#].iter().enumerate() {
                let _ = plan.fold(&mut s, &Record { value: v.as_bytes(), timestamp: 1_700_000_000_000, offset: i as i64, partition: 0, key: Some(b"k") });
            }
            let _ = plan.render(&s);
        }
    }
}

#[test]
fn histogram_keys_are_exact_at_any_magnitude_or_a_clear_error() {
    let body = json!({"topic": "t", "aggs": {"h": {"histogram": {"field": "x", "interval": 1}}}});
    let plan = Plan::parse(&body, &Limits::default()).expect("valid");
    let fold = |doc: &str| {
        let mut state = plan.empty_state();
        let rec = kappa_core::Record {
            value: doc.as_bytes(),
            timestamp: 0,
            offset: 0,
            partition: 0,
            key: None,
        };
        plan.fold(&mut state, &rec).map(|()| state)
    };
    // Past 9e15 buckets (they vanished silently before), still exact.
    let state = fold(r#"{"x": 100000000000000000}"#).expect("folds");
    let result = plan.render(&state).expect("renders");
    let buckets = &result["aggregations"]["h"]["buckets"];
    assert_eq!(buckets[0]["key"], json!(1e17), "{result}");
    assert_eq!(buckets[0]["doc_count"], json!(1));
    // Past what a bucket index can hold: a clear error, not a silent gap.
    let e = fold(r#"{"x": 1e300}"#).expect_err("no bucket can key it");
    assert_eq!(e.kind, ErrorKind::IllegalArgument);
    assert!(e.reason.contains("larger interval"), "{}", e.reason);
}
