//! Kappa against a real OpenSearch node: every golden query, and generated ones.
//!
//! Needs `OPENSEARCH_URL` (`eval "$(scripts/opensearch.sh start)"`); `scripts/test.sh` sets it
//! in its full tier. Without it each test prints that it skipped and passes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use kappa_differential::compare;
use kappa_differential::corpus::{BASE_TIMESTAMP, Corpus, Doc, string_roles};
use kappa_differential::opensearch::{OpenSearch, URL_VAR};
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
            not_comparable.push(format!("{name}: rejected by Kappa as the spec says (11)"));
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
         (differences 9-11 of kappa_differential::differences):\n  {}",
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
