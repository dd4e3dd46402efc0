//! The native side of the WASM-vs-native fold benchmark (`scripts/bench-wasm-fold.sh`): reads an
//! NDJSON file into memory and, for each query of `test/fold_bench_queries.json`, folds every line
//! with `kappa_wasm::bench::Lines::fold` (`Plan::parse` + one `fold_all`), best of 3 passes on one
//! core — the very code `test/fold_bench.mjs` runs in the module.
//!
//! Run with: `cargo run --release -p kappa-wasm --example fold_bench -- FILE`
//! (`FOLD_BENCH_PASSES=N` passes per query, default 3; `FOLD_BENCH_ONLY=Q1,Q3` a subset).
//! Prints one JSON line per query: records, bytes, best seconds, records/s, matched, and the
//! SHA-1 of the rendered result (the WASM side must print the same).
#![allow(clippy::disallowed_methods, reason = "a benchmark reads the wall clock and its knobs")]

use std::time::Instant;

use kappa_wasm::bench::{Lines, summary};
use serde_json::{Value, json};

const QUERIES: &str = include_str!("../test/fold_bench_queries.json");

fn main() {
    let path = std::env::args().nth(1).expect("usage: fold_bench FILE (NDJSON records)");
    let passes: usize =
        std::env::var("FOLD_BENCH_PASSES").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let only = std::env::var("FOLD_BENCH_ONLY").unwrap_or_default();
    let lines = Lines::new(std::fs::read(&path).expect("read the records file"));
    let queries: Vec<Value> = serde_json::from_str(QUERIES).expect("the queries file is JSON");
    for q in &queries {
        let name = q["name"].as_str().unwrap_or("?");
        if !only.is_empty() && !only.split(',').any(|o| o == name) {
            continue;
        }
        let body = q["body"].to_string();
        let mut best = f64::MAX;
        let mut last = None;
        for _ in 0..passes {
            let t = Instant::now();
            let folded = lines.fold(&body).expect("benchmark queries are valid");
            best = best.min(t.elapsed().as_secs_f64());
            last = Some(folded);
        }
        let (plan, state) = last.expect("at least one pass");
        let s = summary(&plan, &state).expect("renders");
        println!(
            "{}",
            json!({
                "side": "native", "query": name, "records": s.records, "bytes": lines.bytes(),
                "best_s": best, "records_per_s": (lines.len() as f64 / best).round(),
                "matched": s.matched, "result_sha1": s.result_sha1,
            })
        );
    }
}
