//! Property tests of the algebra: for random documents and random queries from the supported
//! set, any split of the input into batches, folded and merged in any order and grouping,
//! renders what one pass renders; merging commutes and associates; the empty state is the
//! identity; states survive encode/decode; and applying `diff(a, b)` to `a` gives `b` (results,
//! and any JSON).

use kappa_core::request::Agg;
use kappa_core::{Algebra, Limits, PartialState, Plan, Record, ScanGroup, patch};
use proptest::prelude::*;
use serde_json::{Value, json};

const TAGS: &[&str] = &["wimbledon", "federer", "Tennis", "ace", "nadal", "z", "déjà/vu", "🎾"];
const WORDS: &[&str] = &[
    "Federer",
    "wins",
    "the",
    "final",
    "ACE",
    "serve",
    "rain",
    "delay",
    "<3",
    "Fédérer",
    "🎾🔥",
    "İSTANBUL",
    "\u{212A}elvin",
    "a/b",
];
const USERS: &[&str] = &["alice", "bob", "carol", "dave", "erin"];

/// One generated record: a JSON document (or junk) and its log timestamp.
#[derive(Debug, Clone)]
struct Rec {
    value: Vec<u8>,
    timestamp: i64,
    key: Option<String>,
}

fn tag_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(TAGS).prop_map(|t| json!(t)),
        2 => prop::collection::vec(prop::sample::select(TAGS), 0..4).prop_map(|v| json!(v)),
        1 => Just(Value::Null),
        1 => (0i64..3).prop_map(|n| json!(n)),
    ]
}

fn number_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-50i64..50).prop_map(|n| json!(n)),
        2 => (-5000i64..5000).prop_map(|n| json!(n as f64 / 100.0)),
        1 => Just(json!("12")),
        1 => Just(Value::Null),
        1 => prop::collection::vec(-10i64..10, 0..3).prop_map(|v| json!(v)),
    ]
}

/// Any JSON, with keys that need escaping in a JSON Pointer and arrays that grow and shrink.
fn json_doc() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        prop::sample::select(&["x", "y", ""][..]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(&["a", "b", "a/b", "~", "~1", "0", ""][..]),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = Rec> {
    let doc = (
        prop::option::of(tag_value()),
        prop::option::of(number_value()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(USERS)),
        prop::collection::vec(prop::sample::select(WORDS), 0..6),
        0i64..(3 * 86_400_000),
        prop::option::of(0u32..1000),
        any::<bool>(),
    )
        .prop_map(|(tag, n, flag, user, words, t, key, api_bytes)| {
            let mut m = serde_json::Map::new();
            if let Some(tag) = tag {
                m.insert("tag".into(), tag);
            }
            if let Some(n) = n {
                m.insert("n".into(), n);
            }
            if let Some(f) = flag {
                m.insert("flag".into(), json!(f));
            }
            if let Some(u) = user {
                m.insert("user".into(), json!({"name": u}));
            }
            m.insert("text".into(), json!(words.join(" ")));
            let when = 1_782_000_000_000i64 + t;
            let iso = chrono::DateTime::from_timestamp_millis(when)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default();
            m.insert("when".into(), json!(iso));
            let compact = Value::Object(m).to_string().into_bytes();
            // Half the records as the Twitter API writes them: `\uXXXX` escapes (surrogate
            // pairs for emoji), `\/`, escaped `<` and `>`.
            let value = if api_bytes {
                let mut api = Vec::new();
                kappa_tweetgen::write_api_escaped(&compact, &mut api);
                api
            } else {
                compact
            };
            Rec { value, timestamp: when, key: key.map(|k| format!("k{k}")) }
        });
    prop_oneof![
        12 => doc,
        1 => Just(Rec { value: b"{not json".to_vec(), timestamp: 1_782_000_000_000, key: None }),
        1 => Just(Rec { value: b"[1,2]".to_vec(), timestamp: 1_782_000_000_000, key: None }),
    ]
}

fn query_clause() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!({"match_all": {}})),
        prop::sample::select(TAGS).prop_map(|t| json!({"term": {"tag": t}})),
        (-50i64..50).prop_map(|x| json!({"range": {"n": {"gte": x}}})),
        prop::sample::select(WORDS).prop_map(|w| json!({"match": {"text": w}})),
        Just(json!({"match_phrase": {"text": "the final"}})),
        Just(json!({"exists": {"field": "user.name"}})),
        Just(json!({"prefix": {"user.name": "c"}})),
        Just(json!({"range": {"when": {"lt": "2026-06-22T12:00:00Z"}}})),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        (prop::collection::vec(inner.clone(), 0..3), prop::collection::vec(inner.clone(), 0..3), prop::collection::vec(inner, 0..2))
            .prop_map(|(must, should, not)| json!({"bool": {"must": must, "should": should, "must_not": not}}))
    })
}

fn aggregation() -> impl Strategy<Value = (String, Value)> {
    let metric = prop_oneof![
        Just(json!({"avg": {"field": "n"}})),
        Just(json!({"sum": {"field": "n"}})),
        Just(json!({"stats": {"field": "n"}})),
        Just(json!({"extended_stats": {"field": "n"}})),
        Just(json!({"cardinality": {"field": "user.name", "precision_threshold": 3}})),
        Just(json!({"cardinality": {"field": "tag"}})),
        Just(json!({"percentiles": {"field": "n"}})),
        Just(json!({"value_count": {"field": "tag"}})),
        Just(json!({"min": {"field": "n"}})),
        Just(json!({"max": {"field": "@timestamp"}})),
        Just(json!({"top_hits": {"size": 2, "sort": [{"n": "desc"}], "_source": ["n", "tag"]}})),
    ];
    let bucket = prop_oneof![
        (1usize..4).prop_map(|s| json!({"terms": {"field": "tag", "size": s}})),
        Just(json!({"terms": {"field": "user.name", "order": {"_key": "desc"}}})),
        Just(json!({"terms": {"field": "flag"}})),
        Just(json!({"terms": {"field": "n", "size": 2, "min_doc_count": 2}})),
        Just(json!({"terms": {"field": "tag", "size": 2, "order": {"_count": "asc"}}})),
        // min_doc_count 0 keeps every value seen in any record: a set merged by union.
        (1usize..4).prop_map(|s| json!({"terms": {"field": "tag", "size": s, "min_doc_count": 0}})),
        Just(json!({"histogram": {"field": "n", "interval": 10},
            "aggs": {"tags": {"terms": {"field": "tag", "min_doc_count": 0}}}})),
        Just(json!({"histogram": {"field": "n", "interval": 10}})),
        Just(json!({"date_histogram": {"field": "@timestamp", "fixed_interval": "6h"}})),
        Just(
            json!({"date_histogram": {"field": "when", "calendar_interval": "day", "time_zone": "Europe/Paris"}})
        ),
        Just(
            json!({"range": {"field": "n", "ranges": [{"to": 0}, {"from": 0, "to": 20}, {"from": 10}]}})
        ),
        Just(
            json!({"filters": {"filters": {"a": {"term": {"tag": "ace"}}, "b": {"match": {"text": "final"}}}, "other_bucket": true}})
        ),
        Just(json!({"date_range": {"field": "when", "time_zone": "Europe/Paris",
            "ranges": [{"to": "2026-06-21"}, {"from": "2026-06-21", "to": "2026-06-21T12:00:00"}, {"from": "2026-06-22"}]}})),
        Just(json!({"missing": {"field": "tag"}})),
        Just(json!({"filter": {"range": {"n": {"lt": 0}}}})),
    ];
    (bucket, prop::option::of(metric.clone()), metric, 0usize..3).prop_map(
        |(bucket, sub, metric, which)| match which {
            0 => ("m".to_string(), metric),
            1 => {
                let mut b = bucket;
                if let Some(sub) = sub {
                    b["aggs"] = json!({"inner": sub});
                }
                ("b".to_string(), b)
            }
            _ => ("g".to_string(), json!({"global": {}, "aggs": {"all": metric}})),
        },
    )
}

fn request() -> impl Strategy<Value = Value> {
    (query_clause(), prop::collection::vec(aggregation(), 0..3), 0usize..4, any::<bool>()).prop_map(
        |(q, aggs, size, sorted)| {
            let mut body = json!({"topic": "t", "query": q, "size": size});
            let mut named = serde_json::Map::new();
            for (i, (name, a)) in aggs.into_iter().enumerate() {
                named.insert(format!("{name}{i}"), a);
            }
            body["aggs"] = Value::Object(named);
            if sorted {
                body["sort"] = json!([{"n": {"order": "desc", "missing": "_first"}}]);
            }
            body
        },
    )
}

fn fold(plan: &Plan, recs: &[Rec], first_offset: usize) -> PartialState {
    let mut s = plan.empty_state();
    for (i, r) in recs.iter().enumerate() {
        let rec = Record {
            value: &r.value,
            timestamp: r.timestamp,
            offset: (first_offset + i) as i64,
            partition: 0,
            key: r.key.as_deref().map(str::as_bytes),
        };
        plan.fold(&mut s, &rec).expect("within budget");
    }
    s
}

/// Merge states in a grouping chosen by `shape` (a random binary tree over the list).
fn merge_tree(plan: &Plan, mut states: Vec<PartialState>, shape: &[usize]) -> PartialState {
    let mut k = 0;
    while states.len() > 1 {
        let i = shape.get(k).copied().unwrap_or(0) % (states.len() - 1);
        k += 1;
        let right = states.remove(i + 1);
        plan.merge(&mut states[i], &right).expect("within budget");
    }
    states.pop().unwrap_or_else(|| plan.empty_state())
}

/// `states` reordered by the random swaps `picks` (a Fisher–Yates shuffle when long enough).
fn shuffle(mut states: Vec<PartialState>, picks: &[prop::sample::Index]) -> Vec<PartialState> {
    for (k, pick) in picks.iter().enumerate() {
        let len = states.len();
        if len > 1 {
            states.swap(k % len, pick.index(len));
        }
    }
    states
}

/// Merge `right` into a copy of `left`.
fn merged(plan: &Plan, left: &PartialState, right: &PartialState) -> PartialState {
    let mut out = left.clone();
    plan.merge(&mut out, right).expect("within budget");
    out
}

/// Whether every sum the states keep is exact. Only [`Algebra::Accumulable`] kinds keep sums
/// that may round (`ExactSum`): integers add in an `i128`, but a non-integral number, or an
/// integer (or square, for `sum_of_squares`) from 1e18 on such as a squared epoch-ms timestamp,
/// goes to its compensated float, which is exact only up to rounding. Then states merged in
/// another order may differ in the last bit and only what they render is compared
/// (approximately). Every other kind's state is exact here: bucket counts, top hits, and the
/// sketches (percentiles stay in the t-digest's exact mode: at most 80 values).
fn sums_are_exact(plan: &Plan, body: &Value, recs: &[Rec]) -> bool {
    /// The JSON parameters of each accumulable aggregation in the tree.
    fn accumulable<'a>(aggs: &[Agg], json: &'a Value, out: &mut Vec<&'a Value>) {
        for agg in aggs {
            let this = &json[agg.name.as_str()];
            if agg.kind.algebra() == Algebra::Accumulable {
                out.push(&this[agg.kind.type_name()]);
            }
            accumulable(&agg.subs, &this["aggs"], out);
        }
    }
    fn fractional(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.as_f64().is_some_and(|x| x.fract() != 0.0),
            Value::Array(a) => a.iter().any(fractional),
            Value::Object(m) => m.values().any(fractional),
            _ => false,
        }
    }
    let mut sums = Vec::new();
    accumulable(&plan.request().aggs, &body["aggs"], &mut sums);
    sums.is_empty()
        || (!sums.iter().any(|params| params["field"] == json!("@timestamp"))
            && !recs
                .iter()
                .any(|r| serde_json::from_slice::<Value>(&r.value).is_ok_and(|v| fractional(&v))))
}

/// Fold `recs` split at `cuts`, reorder the parts by `picks`, merge them in the grouping `shape`,
/// and check that the result renders what one pass renders.
fn check_split_and_merge(
    body: &Value,
    recs: &[Rec],
    cuts: Vec<usize>,
    picks: &[prop::sample::Index],
    shape: &[usize],
) -> Result<(), TestCaseError> {
    let plan = Plan::parse(body, &Limits::default()).expect("generated requests are valid");
    let one_pass = plan.render(&fold(&plan, recs, 0)).expect("renders");
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(recs.len())).collect();
    cuts.push(0);
    cuts.push(recs.len());
    cuts.sort_unstable();
    let parts: Vec<PartialState> =
        cuts.windows(2).map(|w| fold(&plan, &recs[w[0]..w[1]], w[0])).collect();
    // The same parts with exact memory estimates (as decoded), for the estimate's check below.
    let exact = |s: &PartialState| plan.decode(&plan.encode(s)).expect("decodes");
    let exact_parts: Vec<PartialState> = parts.iter().map(exact).collect();
    let merged = merge_tree(&plan, shuffle(parts, picks), shape);
    let rendered = plan.render(&merged).expect("renders");
    prop_assert!(
        approx_eq(&one_pass, &rendered),
        "one pass:\n{one_pass:#}\nmerged:\n{rendered:#}\nbody: {body}"
    );
    prop_assert_eq!(merged.records(), recs.len() as u64);
    // Merges count the memory estimate by what they add (`agg::merge`): from parts whose
    // estimates are exact, the merged estimate is the one counted afresh.
    let merged = merge_tree(&plan, shuffle(exact_parts, picks), shape);
    prop_assert_eq!(merged.estimated_bytes(), exact(&merged).estimated_bytes());
    Ok(())
}

/// JSON equality where floats may differ by rounding (sums of non-integral numbers).
fn approx_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| approx_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| approx_eq(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn any_split_merged_in_any_grouping_renders_the_one_pass_result(
        body in request(),
        recs in prop::collection::vec(document(), 0..40),
        cuts in prop::collection::vec(0usize..40, 0..6),
        shape in prop::collection::vec(0usize..8, 0..8),
    ) {
        check_split_and_merge(&body, &recs, cuts, &[], &shape)?;
    }

    #[test]
    fn any_split_merged_in_any_order_and_grouping_renders_the_one_pass_result(
        body in request(),
        recs in prop::collection::vec(document(), 0..40),
        cuts in prop::collection::vec(0usize..40, 0..6),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        shape in prop::collection::vec(0usize..8, 0..8),
    ) {
        // Segments of a query are folded by concurrent invocations and merged in whatever order
        // their checkpoints are loaded, not in log order.
        check_split_and_merge(&body, &recs, cuts, &picks, &shape)?;
    }

    /// Commutativity and associativity of the states themselves, not only of what they render:
    /// exact (`==`) for every aggregation kind when its sums are exact ([`sums_are_exact`], by
    /// each kind's [`Algebra`]), and up to floating-point rounding of sums otherwise. Percentiles
    /// stay in the t-digest's exact mode here (at most 80 values); its approximate mode depends
    /// on the grouping and is bounded by the sketch's own tests (`sketch::tdigest`).
    #[test]
    fn merging_states_commutes_and_associates(
        body in request(),
        recs in prop::collection::vec(document(), 0..40),
        cut_a in 0usize..40,
        cut_b in 0usize..40,
    ) {
        let plan = Plan::parse(&body, &Limits::default()).expect("valid");
        let (i, j) = (cut_a.min(cut_b).min(recs.len()), cut_a.max(cut_b).min(recs.len()));
        let a = fold(&plan, &recs[..i], 0);
        let b = fold(&plan, &recs[i..j], i);
        let c = fold(&plan, &recs[j..], j);
        let (ab, ba) = (merged(&plan, &a, &b), merged(&plan, &b, &a));
        let (ab_c, a_bc) = (merged(&plan, &ab, &c), merged(&plan, &a, &merged(&plan, &b, &c)));
        let render = |s: &PartialState| plan.render(s).expect("renders");
        prop_assert!(approx_eq(&render(&ab), &render(&ba)), "a∘b:\n{:#}\nb∘a:\n{:#}\nbody: {body}", render(&ab), render(&ba));
        prop_assert!(approx_eq(&render(&ab_c), &render(&a_bc)), "body: {body}");
        if sums_are_exact(&plan, &body, &recs) {
            prop_assert_eq!(&ab, &ba, "body: {}", body);
            prop_assert_eq!(&ab_c, &a_bc, "body: {}", body);
        }
    }

    #[test]
    fn merging_the_empty_state_changes_nothing(body in request(), recs in prop::collection::vec(document(), 0..30)) {
        let plan = Plan::parse(&body, &Limits::default()).expect("valid");
        let s = fold(&plan, &recs, 0);
        let mut left = plan.empty_state();
        plan.merge(&mut left, &s).expect("merges");
        let mut right = s.clone();
        plan.merge(&mut right, &plan.empty_state()).expect("merges");
        prop_assert_eq!(&left, &s);
        prop_assert_eq!(&right, &s);
    }

    #[test]
    fn a_batch_that_may_not_change_the_result_does_not(
        body in request(),
        recs in prop::collection::vec(document(), 0..30),
        more in prop::collection::vec(document(), 0..10),
    ) {
        // The live refresh keeps the stored result, neither rendered nor compared, after such
        // a batch (`Plan::may_change_result`).
        let plan = Plan::parse(&body, &Limits::default()).expect("valid");
        let before = fold(&plan, &recs, 0);
        let delta = fold(&plan, &more, recs.len());
        let mut after = before.clone();
        plan.merge(&mut after, &delta).expect("merges");
        if !plan.may_change_result(&delta) {
            prop_assert_eq!(plan.render(&after).ok(), plan.render(&before).ok());
        }
    }

    #[test]
    fn states_round_trip_through_encoding(body in request(), recs in prop::collection::vec(document(), 0..30)) {
        let plan = Plan::parse(&body, &Limits::default()).expect("valid");
        let s = fold(&plan, &recs, 0);
        let decoded = plan.decode(&plan.encode(&s)).expect("decodes");
        prop_assert_eq!(&decoded, &s);
        prop_assert_eq!(plan.render(&decoded).expect("renders"), plan.render(&s).expect("renders"));
    }

    /// A checkpoint whose state is the first batch's encoding followed by what each later
    /// batch added (`StateStore::compare_and_append_checkpoint`) decodes to the one-pass state.
    #[test]
    fn states_appended_batch_by_batch_decode_to_the_one_pass_state(
        body in request(),
        recs in prop::collection::vec(document(), 0..40),
        cuts in prop::collection::vec(0usize..40, 0..6),
    ) {
        let plan = Plan::parse(&body, &Limits::default()).expect("valid");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(recs.len())).collect();
        cuts.extend([0, recs.len()]);
        cuts.sort_unstable();
        let mut stored = Vec::new();
        for w in cuts.windows(2) {
            stored.extend(plan.encode(&fold(&plan, &recs[w[0]..w[1]], w[0])));
        }
        let decoded = plan.decode(&stored).expect("decodes");
        let one_pass = fold(&plan, &recs, 0);
        prop_assert!(
            approx_eq(&plan.render(&decoded).expect("renders"), &plan.render(&one_pass).expect("renders")),
            "pieces at {cuts:?}, body: {body}"
        );
        prop_assert_eq!(decoded.records(), recs.len() as u64);
        // The estimate is counted afresh, as for a state decoded whole.
        prop_assert_eq!(decoded.estimated_bytes(), plan.decode(&plan.encode(&decoded)).expect("decodes").estimated_bytes());
    }

    /// A render that starts from the last render's memo and the states merged since answers
    /// what a render of the whole state does, batch after batch.
    #[test]
    fn a_render_from_the_last_ones_memo_equals_a_whole_render(
        body in request(),
        recs in prop::collection::vec(document(), 0..40),
        cuts in prop::collection::vec(0usize..40, 0..8),
        memo_from_keys in 0usize..4,
    ) {
        // Few keys here: the memo from 0 to 3 keys (1,024 by default).
        let limits = Limits { terms_memo_from_keys: memo_from_keys, ..Limits::default() };
        let plan = Plan::parse(&body, &limits).expect("valid");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(recs.len())).collect();
        cuts.extend([0, recs.len()]);
        cuts.sort_unstable();
        let mut state = plan.empty_state();
        let mut memo = None;
        for w in cuts.windows(2) {
            // Each batch as two states merged in, as a refresh merges one per segment.
            let middle = (w[0] + w[1]) / 2;
            let parts = [fold(&plan, &recs[w[0]..middle], w[0]), fold(&plan, &recs[middle..w[1]], middle)];
            for part in &parts {
                plan.merge(&mut state, part).expect("merges");
            }
            let merged: Vec<&PartialState> = parts.iter().collect();
            match (plan.render(&state), plan.render_after(&state, memo.as_ref(), &merged)) {
                (Ok(whole), Ok((from_memo, next))) => {
                    prop_assert_eq!(&from_memo, &whole, "batch {:?}, body: {}", w, body);
                    memo = Some(next);
                }
                (Err(_), Err(_)) => memo = None,
                (whole, from_memo) => prop_assert!(false, "{whole:?} but {from_memo:?}"),
            }
        }
    }

    #[test]
    fn applying_the_diff_of_two_results_gives_the_second(
        body in request(),
        recs in prop::collection::vec(document(), 0..30),
        cut in 0usize..30,
    ) {
        let plan = Plan::parse(&body, &Limits::default()).expect("valid");
        let cut = cut.min(recs.len());
        let before = plan.render(&fold(&plan, &recs[..cut], 0)).expect("renders");
        let after = plan.render(&fold(&plan, &recs, 0)).expect("renders");
        let delta = patch::diff(&before, &after);
        let mut doc = before.clone();
        patch::apply(&mut doc, &delta).expect("applies");
        prop_assert_eq!(doc, after);
    }

    #[test]
    fn applying_the_diff_of_any_two_documents_gives_the_second(a in json_doc(), b in json_doc()) {
        let delta = patch::diff(&a, &b);
        let mut doc = a.clone();
        patch::apply(&mut doc, &delta).expect("applies");
        prop_assert_eq!(&doc, &b);
        prop_assert_eq!(patch::diff(&b, &b), json!([]), "no change, no operation");
    }

    #[test]
    fn equivalent_bodies_share_an_id(body in request()) {
        // Re-serialising with keys in another order and defaults spelled out keeps the id.
        let plan = Plan::parse(&body, &Limits::default()).expect("valid");
        let mut reordered: serde_json::Map<String, Value> = body.as_object().cloned().unwrap_or_default().into_iter().rev().collect();
        if !reordered.contains_key("sort") {
            reordered.insert("sort".into(), json!([]));
        }
        let again = Plan::parse(&Value::Object(reordered), &Limits::default()).expect("valid");
        prop_assert_eq!(plan.id(), again.id());
    }
}

#[test]
fn only_a_batch_without_matches_on_a_plan_that_sees_only_matches_leaves_the_result() {
    let rec = |text: &str| Rec {
        value: serde_json::to_vec(&json!({"text": text, "tag": "x"})).expect("json"),
        timestamp: 0,
        key: None,
    };
    let may_change = |body: Value, text: &str| {
        let plan = Plan::parse(&body, &Limits::default()).expect("valid");
        plan.may_change_result(&fold(&plan, &[rec(text)], 0))
    };
    let query = json!({"match": {"text": "federer"}});
    let terms = json!({"terms": {"field": "tag"}});
    let plain = json!({"topic": "t", "query": query, "aggs": {"tags": terms}});
    assert!(!may_change(plain.clone(), "nadal wins"), "no match: the result stands");
    assert!(may_change(plain, "federer wins"), "a match");
    let global = json!({"topic": "t", "query": query, "aggs": {"all": {"global": {}}}});
    assert!(may_change(global, "nadal wins"), "a global aggregation sees every record");
    let zeros = json!({"topic": "t", "query": query,
        "aggs": {"tags": {"terms": {"field": "tag", "min_doc_count": 0}}}});
    assert!(may_change(zeros, "nadal wins"), "min_doc_count 0 lists values of every record");
}

#[test]
fn ids_differ_when_meaning_differs_and_agree_when_it_does_not() {
    let l = Limits::default();
    let id = |b: Value| Plan::parse(&b, &l).expect("valid").id().to_string();
    let a = id(
        json!({"topic": "t", "aggs": {"h": {"date_histogram": {"field": "@timestamp", "fixed_interval": "60m"}}}}),
    );
    let b = id(
        json!({"aggs": {"h": {"date_histogram": {"fixed_interval": "1h", "field": "@timestamp", "min_doc_count": 0}}}, "topic": "t", "size": 0, "query": {"match_all": {}}}),
    );
    assert_eq!(a, b);
    let c = id(
        json!({"topic": "t", "aggs": {"h": {"date_histogram": {"field": "@timestamp", "fixed_interval": "2h"}}}}),
    );
    assert_ne!(a, c);
    assert!(a.starts_with("q_") && a.len() == 34, "{a}");
    let d = id(
        json!({"topic": "u", "aggs": {"h": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h"}}}}),
    );
    assert_ne!(a, d);
}

/// One character as it may appear inside a JSON string in a record's bytes: raw, in the other
/// ASCII case, as a `\uXXXX` escape (hex digits in either case, surrogate pairs beyond the BMP),
/// or for `k`/`i` as the non-ASCII characters that lowercase to them (KELVIN SIGN, `İ`).
fn spelled_char(c: char) -> impl Strategy<Value = String> {
    let escape = |c: char, upper_hex: bool| -> String {
        let mut units = [0u16; 2];
        c.encode_utf16(&mut units)
            .iter()
            .map(|u| if upper_hex { format!("\\u{u:04X}") } else { format!("\\u{u:04x}") })
            .collect()
    };
    let mut forms = vec![
        c.to_string(),
        c.to_ascii_uppercase().to_string(),
        escape(c, false),
        escape(c, true),
        escape(c.to_ascii_uppercase(), false),
    ];
    match c {
        'k' => forms.extend(["\u{212A}".to_string(), escape('\u{212A}', false)]),
        'i' => forms.extend(["\u{130}".to_string(), escape('\u{130}', true)]),
        '/' => forms.push("\\/".to_string()),
        _ => {}
    }
    prop::sample::select(forms)
}

/// A word spelled in the record's bytes, character by character.
fn spelled_word(word: String) -> impl Strategy<Value = String> {
    word.chars().map(spelled_char).collect::<Vec<_>>().prop_map(|parts| parts.concat())
}

/// JSON string content around the word: plain words, and the escapes the Twitter API writes
/// for characters that are no letter of any word (`<`, `>`, `/`, emoji, `…`, accents).
fn filler() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(
            &[
                " ",
                "the ",
                "final ",
                "\\u003c",
                "\\u003e",
                "\\/",
                "\\ud83c\\udfbe",
                "\\u2026",
                "\\u00e9",
                "\\n",
                "\\\"",
                "ace",
                "K",
                "\\u004b",
                "#",
                "@",
                "'s ",
                "é",
                "日本",
            ][..],
        ),
        0..6,
    )
    .prop_map(|v| v.concat())
}

/// A query word (letters including `k` and `i`, which have non-ASCII spellings) and a record
/// that holds it in some spelling, or a near miss, in the queried field or another one.
fn word_and_record() -> impl Strategy<Value = (String, Vec<u8>)> {
    let word = prop::collection::vec(
        prop::sample::select(&['f', 'e', 'd', 'r', 'k', 'i', 'a', 'z'][..]),
        1..7,
    )
    .prop_map(|c| c.into_iter().collect::<String>());
    word.prop_flat_map(|w| {
        let near_miss =
            format!("{}{}", &w[..w.len() - 1], if w.ends_with('z') { 'a' } else { 'z' });
        let spelled = prop_oneof![spelled_word(w.clone()), spelled_word(near_miss)];
        (Just(w), filler(), spelled, filler(), any::<bool>())
    })
    .prop_map(|(w, before, spelled, after, in_text)| {
        let body = format!("{before}{spelled}{after}");
        let record = if in_text {
            format!(r#"{{"text":"{body}","n":1}}"#)
        } else {
            format!(r#"{{"other":"{body}","text":"{before}"}}"#)
        };
        (w, record.into_bytes())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The pre-filter's law: a record it rules out never matches the full evaluation. The same
    /// `match` query with a `global` aggregation (which disables the pre-filter: it sees every
    /// record) must count exactly the same hits.
    #[test]
    fn a_record_the_prefilter_rules_out_never_matches((word, record) in word_and_record()) {
        let limits = Limits::default();
        let query = json!({"match": {"text": word}});
        let filtered = Plan::parse(&json!({"topic": "t", "query": query}), &limits).expect("valid");
        let unfiltered = Plan::parse(
            &json!({"topic": "t", "query": query, "aggs": {"all": {"global": {}}}}),
            &limits,
        )
        .expect("valid");
        prop_assert!(filtered.has_prefilter() && !unfiltered.has_prefilter());
        let rec = Record { value: &record, timestamp: 0, offset: 0, partition: 0, key: None };
        let (mut a, mut b) = (filtered.empty_state(), unfiltered.empty_state());
        filtered.fold(&mut a, &rec).expect("folds");
        unfiltered.fold(&mut b, &rec).expect("folds");
        prop_assert_eq!(b.skipped(), 0, "the generated record is JSON: {}", String::from_utf8_lossy(&record));
        prop_assert_eq!(a.matched(), b.matched(), "record {}", String::from_utf8_lossy(&record));
    }
}

/// Records as the log gives them, at offsets `0..`.
fn records_of(recs: &[Rec]) -> Vec<Record<'_>> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| Record {
            value: &r.value,
            timestamp: r.timestamp,
            offset: i as i64,
            partition: 0,
            key: r.key.as_deref().map(str::as_bytes),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Many plans over one scan (`kappa_core::group`): whatever the other plans of a group,
    /// and wherever each one starts reading, each plan's state is the one it folds alone.
    #[test]
    fn a_group_of_plans_folds_each_as_it_would_alone(
        bodies in prop::collection::vec((request(), any::<bool>()), 1..6),
        recs in prop::collection::vec(document(), 0..40),
        froms in prop::collection::vec(0usize..45, 6),
        chunk in 1usize..17,
    ) {
        let plans: Vec<Plan> = bodies
            .into_iter()
            .map(|(mut body, typed)| {
                if typed {
                    // Converted values live in the plan's own copy, never in the shared scan.
                    body["runtime_mappings"] = json!({"n": {"type": "long"}, "tag": {"type": "keyword"}});
                }
                Plan::parse(&body, &Limits::default()).expect("generated requests are valid")
            })
            .collect();
        let group = ScanGroup::new(&plans.iter().collect::<Vec<_>>());
        let records = records_of(&recs);
        let mut states: Vec<PartialState> = plans.iter().map(Plan::empty_state).collect();
        let mut spare = Vec::new();
        for part in records.chunks(chunk) {
            let scanned = group.scan(part.iter().copied(), &mut spare);
            for (member, (plan, state)) in plans.iter().zip(&mut states).enumerate() {
                let range = scanned.positions(froms[member] as i64, None);
                group.fold(plan, member, state, &scanned, range).expect("within budget");
            }
            scanned.recycle(&mut spare);
        }
        for (member, plan) in plans.iter().enumerate() {
            let from = froms[member].min(recs.len());
            let alone = fold(plan, &recs[from..], from);
            prop_assert_eq!(&states[member], &alone, "member {} of {} plans", member, plans.len());
            prop_assert_eq!(plan.render(&states[member]), plan.render(&alone));
        }
    }
}
