//! Kappa against a real OpenSearch node: every golden query, and generated ones.
//!
//! Needs `OPENSEARCH_URL` (`eval "$(scripts/opensearch.sh start)"`); `scripts/test.sh` sets it
//! in its full tier. Without it each test prints that it skipped and passes.
//! `DIFF_CASES` (default 10000) and `DIFF_SEED` (default 15, the same requests every CI run)
//! change what the generated suite compares.
#![allow(clippy::disallowed_methods, reason = "tests read their knobs and time themselves")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use kappa_differential::corpus::{BASE_TIMESTAMP, Corpus, Doc, string_roles};
use kappa_differential::opensearch::{OpenSearch, URL_VAR};
use kappa_differential::{compare, generate};
use proptest::strategy::{Strategy, ValueTree};
use serde_json::{Map, Value};

/// Print past the test harness's output capture: skips and figures must show in a passing run.
fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn opensearch_or_skip(test: &str) -> Option<OpenSearch> {
    match OpenSearch::from_env() {
        Ok(Some(os)) => Some(os),
        Ok(None) => {
            say(&format!(
                "\n*** SKIPPED {test}: {URL_VAR} is not set, so there is no OpenSearch to compare \
                 with (eval \"$(scripts/opensearch.sh start)\" or run scripts/test.sh) ***\n"
            ));
            None
        }
        Err(e) => panic!("{URL_VAR} is set but OpenSearch is not usable: {e:#}"),
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/golden")
}

/// The JSON records of a golden case as documents (offsets as the golden runner assigns them,
/// records that are not JSON left out: Kappa skips them).
fn golden_docs(case: &Map<String, Value>) -> Result<Vec<Doc>> {
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let mut docs = Vec::new();
    let records = case.get("records").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, r) in records.iter().enumerate() {
        let partition = r.get("@partition").and_then(Value::as_i64).unwrap_or(0) as i32;
        let offset = next_offset.entry(partition).or_insert(0);
        let this = *offset;
        *offset += 1;
        let Some(source) = r.get("_source") else { continue };
        docs.push(Doc {
            source: source.clone(),
            timestamp: r
                .get("@timestamp")
                .and_then(Value::as_i64)
                .unwrap_or(BASE_TIMESTAMP + 1000 * i as i64),
            partition,
            offset: this,
            key: r.get("@key").and_then(Value::as_str).map(str::to_string),
        });
    }
    Ok(docs)
}

#[test]
fn every_golden_query_agrees_with_opensearch() -> Result<()> {
    let Some(mut os) = opensearch_or_skip("every_golden_query_agrees_with_opensearch") else {
        return Ok(());
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut agreed, mut not_comparable, mut failures) = (0, Vec::new(), Vec::new());
    for file in &files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let case: Map<String, Value> = serde_json::from_str(&std::fs::read_to_string(file)?)
            .with_context(|| format!("{name}: invalid JSON"))?;
        let request = case.get("request").ok_or_else(|| anyhow!("{name}: no request"))?;
        if case.contains_key("expected_error")
            && kappa_differential::kappa_answer(
                request,
                &Corpus::new(vec![], &Default::default())?,
            )?
            .is_err()
        {
            not_comparable.push(format!("{name}: rejected by Kappa as the spec says (15)"));
            continue;
        }
        let roles = match string_roles(request) {
            Ok(r) => r,
            Err(why) => {
                not_comparable.push(format!("{name}: {why}"));
                continue;
            }
        };
        let corpus = match Corpus::new(golden_docs(&case)?, &roles) {
            Ok(c) => c,
            Err(why) => {
                not_comparable.push(format!("{name}: {why}"));
                continue;
            }
        };
        corpus.ensure_index(&mut os)?;
        let outcome = compare(&mut os, &corpus, request)?;
        if outcome.agrees() {
            agreed += 1;
        } else {
            failures.push(format!("{name}\n{}", outcome.report(request, &corpus)));
        }
    }
    say(&format!(
        "golden queries against OpenSearch: {agreed} agree, {} differ, {} not comparable \
         (differences 13-15 of kappa_differential::differences):\n  {}",
        failures.len(),
        not_comparable.len(),
        not_comparable.join("\n  ")
    ));
    assert!(
        failures.is_empty(),
        "{} golden queries differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

/// Generated requests compared per run (`DIFF_CASES` overrides), spread over the corpora.
const DEFAULT_CASES: usize = 10_000;
/// Corpora per run, each indexed once and reused by every request over it.
const CORPORA: u64 = 6;
/// Documents per corpus.
const DOCS_PER_CORPUS: usize = 40;
/// Shrinking steps allowed per disagreement (each costs a search).
const MAX_SHRINK_STEPS: usize = 300;

/// Shrink a disagreeing request to a smaller one that still disagrees.
fn shrink(
    os: &mut OpenSearch,
    corpus: &Corpus,
    tree: &mut impl ValueTree<Value = Value>,
    first: kappa_differential::Outcome,
) -> Result<(Value, kappa_differential::Outcome)> {
    let mut best = (tree.current(), first);
    let mut steps = 0;
    let mut simplified = tree.simplify();
    while simplified && steps < MAX_SHRINK_STEPS {
        steps += 1;
        let candidate = tree.current();
        let outcome = compare(os, corpus, &candidate)?;
        if outcome.agrees() {
            simplified = tree.complicate();
        } else {
            best = (candidate, outcome);
            simplified = tree.simplify();
        }
    }
    Ok(best)
}

#[test]
fn generated_queries_agree_with_opensearch() -> Result<()> {
    let Some(mut os) = opensearch_or_skip("generated_queries_agree_with_opensearch") else {
        return Ok(());
    };
    let cases: usize = match std::env::var("DIFF_CASES") {
        Ok(v) => v.parse().with_context(|| format!("DIFF_CASES={v}"))?,
        Err(_) => DEFAULT_CASES,
    };
    // A fixed seed by default, so CI compares the same requests every run; DIFF_SEED explores.
    let seed: u64 = std::env::var("DIFF_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let started = std::time::Instant::now();
    let (mut compared, mut failures) = (0usize, Vec::new());
    let mut disagreeing = 0usize;
    for c in 0..CORPORA {
        let corpus = generate::corpus(seed.wrapping_mul(1000).wrapping_add(c), DOCS_PER_CORPUS)?;
        corpus.ensure_index(&mut os)?;
        let mut runner = generate::runner(seed.wrapping_mul(7919).wrapping_add(c));
        let strategy = generate::request();
        for _ in 0..cases.div_ceil(CORPORA as usize) {
            let mut tree = strategy.new_tree(&mut runner).map_err(|e| anyhow!("{e}"))?;
            let request = tree.current();
            let outcome = compare(&mut os, &corpus, &request)?;
            compared += 1;
            if outcome.agrees() {
                continue;
            }
            disagreeing += 1;
            // Shrink and report the first few in full; count the rest.
            if failures.len() < 8 {
                let (small, outcome) = shrink(&mut os, &corpus, &mut tree, outcome)?;
                failures.push(format!(
                    "corpus {c} ({}), shrunk from {request}\n{}",
                    corpus.index,
                    outcome.report(&small, &corpus)
                ));
            }
        }
    }
    let agreeing = compared - disagreeing;
    say(&format!(
        "generated queries against OpenSearch: {compared} compared over {CORPORA} corpora of \
         {DOCS_PER_CORPUS} documents, {agreeing} agree ({:.1}%), {disagreeing} differ, seed {seed}, \
         {:.1} s",
        100.0 * agreeing as f64 / compared.max(1) as f64,
        started.elapsed().as_secs_f64()
    ));
    assert!(
        failures.is_empty(),
        "{disagreeing} of {compared} generated queries differ from OpenSearch; the first {}, shrunk:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}
