//! The core engine's speed over a two-week log of real-tweet-shaped records.
//!
//! Run with: `scripts/fetch-tweets.sh && cargo bench -p kappa-core --bench core`
//! (`KAPPA_BENCH_RECORDS=N` sets the log length, default 300,000; `KAPPA_BENCH_FORMAT=api`
//! (default), `reserialized` or `both` the records' bytes, see `kappa_tweetgen::RecordFormat`;
//! `KAPPA_BENCH_ONLY=Q1,Q2` a subset of queries, `G` the group figure). Prints records/s and MB/s
//! on one core for the benchmark queries of BENCHMARKS.md, µs for merge, render and diff, and
//! what one shared scan and each member's fold cost for 1, 4, 100 and 1,000 distinct queries of
//! the desk mix (`kappa_tweetgen::desk_query`) read together.

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark binary measures wall time and reads its knobs"
)]

use std::hint::black_box;
use std::time::Instant;

use kappa_core::{Limits, PartialState, Plan, Record, ScanGroup, patch};
use kappa_tweetgen::{GenConfig, RecordFormat, TweetGen};
use serde_json::{Value, json};

struct Log {
    records: Vec<(i64, Vec<u8>)>,
    bytes: usize,
}

fn build_log(n: u64, format: RecordFormat) -> Log {
    let base = TweetGen::load_default_base().expect("run scripts/fetch-tweets.sh first");
    let generator = TweetGen::new(base, GenConfig { total: n, format, ..GenConfig::default() });
    let records: Vec<(i64, Vec<u8>)> =
        generator.iter(0..n).map(|r| (r.timestamp_ms, r.value)).collect();
    let bytes = records.iter().map(|(_, v)| v.len()).sum();
    Log { records, bytes }
}

fn fold_range(plan: &Plan, log: &Log, range: std::ops::Range<usize>) -> PartialState {
    let mut state = plan.empty_state();
    let records = range.map(|i| {
        let (ts, value) = &log.records[i];
        Record { value, timestamp: *ts, offset: i as i64, partition: 0, key: None }
    });
    plan.fold_all(&mut state, records).expect("within budget");
    state
}

fn queries() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Q1 match federer on text, count",
            json!({"topic": "tweets", "size": 0, "query": {"match": {"text": "federer"}}}),
        ),
        (
            "Q2 terms hashtags + hourly created_at",
            json!({"topic": "tweets", "size": 0, "aggs": {
            "tags": {"terms": {"field": "entities.hashtags.text", "size": 10}},
            "per_hour": {"date_histogram": {"field": "created_at",
                "format": "EEE MMM dd HH:mm:ss Z yyyy", "fixed_interval": "1h"}}}}),
        ),
        (
            "Q3 stats retweets + cardinality users",
            json!({"topic": "tweets", "aggs": {
            "rt": {"stats": {"field": "retweet_count"}},
            "users": {"cardinality": {"field": "user.screen_name"}}}}),
        ),
        (
            "Q4 bool lang+range, terms users, top_hits",
            json!({"topic": "tweets",
            "query": {"bool": {"filter": [{"term": {"lang": "en"}},
                {"range": {"created_at": {"gte": "Wed Jul 01 00:00:00 +0000 2026", "format": "EEE MMM dd HH:mm:ss Z yyyy"}}}]}},
            "aggs": {"users": {"terms": {"field": "user.screen_name", "size": 100},
                "aggs": {"best": {"top_hits": {"size": 5, "sort": [{"retweet_count": "desc"}], "_source": ["text", "full_text", "retweet_count"]}}}}}}),
        ),
        (
            "Q5 multi_match federer on text/full_text",
            json!({"topic": "tweets", "query": {"multi_match": {"query": "federer", "fields": ["text", "full_text"]}}}),
        ),
        (
            "Q6 terms hashtags + hourly @timestamp",
            json!({"topic": "tweets", "aggs": {
            "tags": {"terms": {"field": "entities.hashtags.text", "size": 10}},
            "per_hour": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h"}}}}),
        ),
    ]
}

fn main() {
    let n: u64 =
        std::env::var("KAPPA_BENCH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300_000);
    let formats: Vec<RecordFormat> =
        match std::env::var("KAPPA_BENCH_FORMAT").as_deref().unwrap_or("api") {
            "both" => vec![RecordFormat::Api, RecordFormat::Reserialized],
            f => vec![f.parse().expect("KAPPA_BENCH_FORMAT: api, reserialized or both")],
        };
    let only = std::env::var("KAPPA_BENCH_ONLY").unwrap_or_default();
    let limits = Limits::default();
    let mut q2 = None;
    let mut q2_log = None;
    for format in formats {
        let t = Instant::now();
        let log = build_log(n, format);
        println!(
            "log ({format:?} bytes): {} records, {:.1} MB, {:.0} B/record average (built in {:.1}s)",
            log.records.len(),
            log.bytes as f64 / 1e6,
            log.bytes as f64 / log.records.len() as f64,
            t.elapsed().as_secs_f64()
        );
        println!("{:<44} {:>14} {:>10} {:>10}", "query (one core)", "records/s", "MB/s", "matched");
        for (name, body) in queries() {
            let tag = name.split(' ').next().unwrap_or(name);
            if !only.is_empty() && !only.split(',').any(|o| o == tag) {
                continue;
            }
            let plan = Plan::parse(&body, &limits).expect("benchmark queries are valid");
            // Warm up caches and the allocator, then measure the best of three passes.
            black_box(fold_range(&plan, &log, 0..log.records.len().min(20_000)));
            let mut best = f64::MAX;
            let mut state = None;
            for _ in 0..3 {
                let t = Instant::now();
                let s = fold_range(&plan, &log, 0..log.records.len());
                best = best.min(t.elapsed().as_secs_f64());
                state = Some(s);
            }
            let state = state.expect("three passes ran");
            println!(
                "{:<44} {:>14.0} {:>10.0} {:>10}",
                name,
                log.records.len() as f64 / best,
                log.bytes as f64 / 1e6 / best,
                state.matched()
            );
            if tag == "Q2" && q2.is_none() {
                q2 = Some(plan);
            }
        }
        if only.is_empty() || only.split(',').any(|o| o == "G") {
            group_figures(&log, &limits);
        }
        if q2_log.is_none() {
            q2_log = Some(log);
        }
    }
    let (Some(plan), Some(log)) = (q2, q2_log) else {
        return;
    };
    let half = log.records.len() / 2;
    let a = fold_range(&plan, &log, 0..half);
    let b = fold_range(&plan, &log, half..log.records.len());
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        let mut m = a.clone();
        plan.merge(&mut m, black_box(&b)).expect("merges");
        black_box(m);
    }
    let clone_t = Instant::now();
    for _ in 0..reps {
        black_box(a.clone());
    }
    let clone_us = clone_t.elapsed().as_secs_f64() * 1e6 / f64::from(reps);
    let merge_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(reps) - clone_us;
    let mut full = a.clone();
    plan.merge(&mut full, &b).expect("merges");
    let t = Instant::now();
    for _ in 0..reps {
        black_box(plan.render(&full).expect("renders"));
    }
    let render_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(reps);
    // A live delta: the result before and after one more batch of 1,000 records.
    let before =
        plan.render(&fold_range(&plan, &log, 0..log.records.len() - 1000)).expect("renders");
    let after = plan.render(&full).expect("renders");
    let t = Instant::now();
    let mut delta = Value::Null;
    for _ in 0..reps {
        delta = patch::diff(black_box(&before), black_box(&after));
    }
    let diff_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(reps);
    let encoded = plan.encode(&full);
    let t = Instant::now();
    for _ in 0..reps {
        black_box(plan.decode(black_box(&encoded)).expect("decodes"));
    }
    let decode_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(reps);
    println!("Q2 merge of two partial states: {merge_us:.1} µs");
    println!(
        "Q2 render: {render_us:.1} µs; diff of a live update: {diff_us:.1} µs ({} ops)",
        delta.as_array().map_or(0, Vec::len)
    );
    println!("Q2 state: {} bytes encoded, decode {decode_us:.1} µs", encoded.len());
}

/// One shared scan and every member's fold over the log in chunks of 1,000 records, as a
/// process invocation runs a group: ns per record for the scan, ns per record and member for
/// the folds, by kind of the desk mix.
fn group_figures(log: &Log, limits: &Limits) {
    for members in [1usize, 4, 100, 1000] {
        let plans: Vec<Plan> = (0..members)
            .map(|i| Plan::parse(&kappa_tweetgen::desk_query("tweets", i), limits).expect("valid"))
            .collect();
        let refs: Vec<&Plan> = plans.iter().collect();
        let group = ScanGroup::new(&refs);
        let mut states: Vec<PartialState> = plans.iter().map(Plan::empty_state).collect();
        let (mut scan_s, mut fold_s) = (0.0f64, [0.0f64; 4]);
        let mut spare = Vec::new();
        for (c, chunk) in log.records.chunks(1_000).enumerate() {
            let records = chunk.iter().enumerate().map(|(i, (ts, value))| Record {
                value,
                timestamp: *ts,
                offset: (c * 1_000 + i) as i64,
                partition: 0,
                key: None,
            });
            let t = Instant::now();
            let scanned = group.scan(records, &mut spare);
            scan_s += t.elapsed().as_secs_f64();
            for (m, (plan, state)) in plans.iter().zip(&mut states).enumerate() {
                let t = Instant::now();
                group.fold(plan, m, state, &scanned, 0..scanned.len()).expect("within budget");
                fold_s[m % 4] += t.elapsed().as_secs_f64();
            }
            scanned.recycle(&mut spare);
        }
        let n = log.records.len() as f64;
        let per_kind = |k: usize| (0..members).filter(|m| m % 4 == k).count().max(1) as f64;
        let kinds = ["terms", "date_histogram", "match+terms", "range+stats"];
        let folds: Vec<String> = kinds
            .iter()
            .enumerate()
            .filter(|(k, _)| *k < members)
            .map(|(k, name)| format!("{name} {:.0}", fold_s[k] * 1e9 / n / per_kind(k)))
            .collect();
        println!(
            "group of {members} desk queries: scan {:.0} ns/record; fold ns/record per member: {}; all folds {:.0} ns/record",
            scan_s * 1e9 / n,
            folds.join(", "),
            fold_s.iter().sum::<f64>() * 1e9 / n
        );
    }
}
