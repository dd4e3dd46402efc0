//! Golden tests: hand-checked Elasticsearch 8.x responses for small logs.
//!
//! Every `*.json` file under `tests/data/golden/` (see the README there) is one case: records,
//! a `POST /v1/queries` body, and the full expected `result` (or the expected error). Each case
//! is run three ways — one pass over all records, and one state per record merged left-to-right
//! and right-to-left — and every way must render exactly the expected JSON.
//!
//! `UPDATE_GOLDEN=1` rewrites `expected` from the engine's one-pass output. It exists for
//! reviewed regeneration only: expectations are computed by hand from the spec and Elasticsearch
//! semantics, never taken from the engine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kappa_core::{Limits, Plan, Record};
use serde_json::{Map, Value};

/// Default log timestamp of the record at index `i`.
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/golden")
}

/// A record of a case, with its log metadata resolved.
struct CaseRecord {
    value: Vec<u8>,
    timestamp: i64,
    offset: i64,
    partition: i32,
    key: Option<Vec<u8>>,
    /// Built from `_source` (JSON), not `_raw` bytes.
    is_source: bool,
}

impl CaseRecord {
    fn as_record(&self) -> Record<'_> {
        Record {
            value: &self.value,
            timestamp: self.timestamp,
            offset: self.offset,
            partition: self.partition,
            key: self.key.as_deref(),
        }
    }
}

fn records(case: &Map<String, Value>) -> Result<Vec<CaseRecord>, String> {
    let list = match case.get("records") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("[records] must be an array".into()),
    };
    let mut next_offset: std::collections::HashMap<i32, i64> = Default::default();
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let Value::Object(r) = r else { return Err(format!("record {i} is not an object")) };
        for k in r.keys() {
            if !["_source", "_raw", "@timestamp", "@key", "@partition"].contains(&k.as_str()) {
                return Err(format!("record {i}: unknown key [{k}]"));
            }
        }
        let is_source = r.contains_key("_source");
        let value = match (r.get("_source"), r.get("_raw")) {
            (Some(s), None) => serde_json::to_vec(s).map_err(|e| e.to_string())?,
            (None, Some(Value::String(raw))) => raw.as_bytes().to_vec(),
            _ => {
                return Err(format!(
                    "record {i}: needs exactly one of [_source] or [_raw] (a string)"
                ));
            }
        };
        let timestamp = match r.get("@timestamp") {
            None => BASE_TIMESTAMP + 1000 * i as i64,
            Some(t) => t.as_i64().ok_or(format!("record {i}: [@timestamp] must be an integer"))?,
        };
        let partition = match r.get("@partition") {
            None => 0,
            Some(p) => p
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or(format!("record {i}: [@partition] must be an i32"))?,
        };
        let key = match r.get("@key") {
            None => None,
            Some(Value::String(k)) => Some(k.as_bytes().to_vec()),
            Some(_) => return Err(format!("record {i}: [@key] must be a string")),
        };
        let offset = next_offset.entry(partition).or_insert(0);
        out.push(CaseRecord { value, timestamp, offset: *offset, partition, key, is_source });
        *offset += 1;
    }
    Ok(out)
}

/// Runs one case; `Ok(Some(actual))` when the engine's output differs from `expected`.
fn run_case(case: &Map<String, Value>) -> Result<Option<Value>, String> {
    let request = case.get("request").ok_or("missing [request]")?;
    let parsed = Plan::parse(request, &Limits::default());
    if let Some(expected) = case.get("expected_error") {
        return match parsed {
            Ok(_) => Err(format!("expected error {expected}, but the request was accepted")),
            Err(e) => {
                let actual = serde_json::json!({"type": e.kind.as_str(), "path": e.path});
                let want_type = expected.get("type");
                let want_path = expected.get("path");
                if want_type == actual.get("type") && want_path == actual.get("path") {
                    Ok(None)
                } else {
                    Err(format!("expected error {expected}, got {actual} ({})", e.reason))
                }
            }
        };
    }
    let expected = case.get("expected").ok_or("missing [expected] or [expected_error]")?;
    let plan = parsed.map_err(|e| format!("request rejected: {e}"))?;
    let records = records(case)?;

    let mut one_pass = plan.empty_state();
    for r in &records {
        plan.fold(&mut one_pass, &r.as_record()).map_err(|e| format!("fold: {e}"))?;
    }
    let actual = plan.render(&one_pass).map_err(|e| format!("render: {e}"))?;

    let singles = records
        .iter()
        .map(|r| {
            let mut s = plan.empty_state();
            plan.fold(&mut s, &r.as_record()).map(|()| s)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("fold: {e}"))?;
    let mut left = plan.empty_state();
    for s in &singles {
        plan.merge(&mut left, s).map_err(|e| format!("merge: {e}"))?;
    }
    // Right to left: each state absorbs the merge of everything after it.
    let mut right = plan.empty_state();
    for s in singles.iter().rev() {
        let mut acc = s.clone();
        plan.merge(&mut acc, &right).map_err(|e| format!("merge: {e}"))?;
        right = acc;
    }
    for (how, state) in [("left-to-right merge", &left), ("right-to-left merge", &right)] {
        let merged = plan.render(state).map_err(|e| format!("render: {e}"))?;
        if merged != actual {
            return Err(format!(
                "{how} renders differently from one pass:\n{}",
                diff(&actual, &merged)
            ));
        }
    }
    // The same records as the Twitter API writes JSON (every non-ASCII character as `\uXXXX`,
    // surrogate pairs, `\/`, escaped `<` `>`, in keys and values) must give the same answer.
    let mut api_pass = plan.empty_state();
    for r in &records {
        let mut api = CaseRecord { value: Vec::new(), key: r.key.clone(), ..*r };
        kappa_tweetgen::write_api_escaped(&r.value, &mut api.value);
        if r.is_source {
            plan.fold(&mut api_pass, &api.as_record()).map_err(|e| format!("fold: {e}"))?;
        } else {
            plan.fold(&mut api_pass, &r.as_record()).map_err(|e| format!("fold: {e}"))?;
        }
    }
    let api = plan.render(&api_pass).map_err(|e| format!("render: {e}"))?;
    if api != actual {
        return Err(format!(
            "the records in the API's wire format render differently:\n{}",
            diff(&actual, &api)
        ));
    }
    Ok((actual != *expected).then_some(actual))
}

/// A readable list of differences between `expected` and `actual`, by JSON path.
fn diff(expected: &Value, actual: &Value) -> String {
    let mut out = String::new();
    diff_into(expected, actual, "$", &mut out);
    out
}

fn diff_into(e: &Value, a: &Value, path: &str, out: &mut String) {
    match (e, a) {
        (Value::Object(em), Value::Object(am)) => {
            for (k, ev) in em {
                match am.get(k) {
                    Some(av) => diff_into(ev, av, &format!("{path}.{k}"), out),
                    None => {
                        let _ = writeln!(out, "  {path}.{k}: missing (expected {ev})");
                    }
                }
            }
            for (k, av) in am {
                if !em.contains_key(k) {
                    let _ = writeln!(out, "  {path}.{k}: unexpected {av}");
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) => {
            for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                diff_into(ev, av, &format!("{path}[{i}]"), out);
            }
            for (i, ev) in ea.iter().enumerate().skip(aa.len()) {
                let _ = writeln!(out, "  {path}[{i}]: missing (expected {ev})");
            }
            for (i, av) in aa.iter().enumerate().skip(ea.len()) {
                let _ = writeln!(out, "  {path}[{i}]: unexpected {av}");
            }
        }
        _ if e != a => {
            let kind = |v: &Value| match v {
                Value::Number(n) if n.is_f64() => " (float)",
                Value::Number(_) => " (integer)",
                _ => "",
            };
            let _ = writeln!(out, "  {path}: expected {e}{}, got {a}{}", kind(e), kind(a));
        }
        _ => {}
    }
}

#[test]
fn golden_cases() {
    let dir = golden_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden cases in {}", dir.display());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut case: Map<String, Value> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));
        match run_case(&case) {
            Ok(None) => {}
            Ok(Some(actual)) if update => {
                case.insert("expected".into(), actual);
                let mut text = serde_json::to_string_pretty(&Value::Object(case))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                text.push('\n');
                std::fs::write(file, text).unwrap_or_else(|e| panic!("{name}: {e}"));
                eprintln!("updated {name}");
            }
            Ok(Some(actual)) => {
                let expected = case.get("expected").unwrap_or(&Value::Null);
                failures.push(format!(
                    "{name}: result differs from expected (expected vs actual):\n{}  actual: {}",
                    diff(expected, &actual),
                    actual
                ));
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
    eprintln!("{} golden cases passed", files.len());
}
