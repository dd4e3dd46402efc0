//! The fold benchmark's workload, the same code natively and in the module: newline-separated
//! records held in memory, folded one line at a time by `Plan::fold_all`.
//!
//! `scripts/bench-wasm-fold.sh` runs it natively (`examples/fold_bench.rs`) and in Node.js
//! (`test/fold_bench.mjs` through the module's `FoldBench` export) on the same file, and prints
//! records/s of both. Timing is the caller's: [`Lines::fold`] does no clock reads, so that the
//! module needs no clock import.

use kappa_core::{Limits, PartialState, Plan, QueryError, Record};
use sha1::{Digest, Sha1};

/// Newline-separated records (NDJSON): one buffer, and where each non-empty line is.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

/// What a fold answered, to check that both sides computed the same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// Records folded.
    pub records: u64,
    /// Records that matched the query (`hits.total`).
    pub matched: u64,
    /// SHA-1 (hex) of the rendered Elasticsearch response.
    pub result_sha1: String,
}

impl Lines {
    /// Take the buffer and find its lines (a trailing `\r` is part of the line; empty lines
    /// are not records).
    pub fn new(buf: Vec<u8>) -> Lines {
        let mut spans = Vec::new();
        let mut start = 0;
        for line in buf.split(|&b| b == b'\n') {
            let end = start + line.len();
            if end > start {
                spans.push((start, end));
            }
            start = end + 1;
        }
        Lines { buf, spans }
    }

    /// Number of records (non-empty lines).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes of the records, without the newlines.
    pub fn bytes(&self) -> usize {
        self.spans.iter().map(|(s, e)| e - s).sum()
    }

    /// Fold every record with the query `body` (JSON text): `Plan::parse`, then one `fold_all`
    /// over the records (offset = line number, timestamp 0, partition 0, no key).
    pub fn fold(&self, body: &str) -> Result<(Plan, PartialState), QueryError> {
        let body: serde_json::Value = serde_json::from_str(body)
            .map_err(|e| QueryError::parsing("", format!("invalid JSON: {e}")))?;
        let plan = Plan::parse(&body, &Limits::default())?;
        let mut state = plan.empty_state();
        let records = self.spans.iter().enumerate().map(|(i, &(s, e))| Record {
            value: &self.buf[s..e],
            timestamp: 0,
            offset: i as i64,
            partition: 0,
            key: None,
        });
        plan.fold_all(&mut state, records)?;
        Ok((plan, state))
    }
}

/// The counts and result digest of a fold (rendering is not part of the timed fold).
pub fn summary(plan: &Plan, state: &PartialState) -> Result<Folded, QueryError> {
    let rendered = plan.render(state)?.to_string();
    let digest = Sha1::digest(rendered.as_bytes());
    let result_sha1 = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Folded { records: state.records(), matched: state.matched(), result_sha1 })
}

/// The benchmark in the module: `new FoldBench(buffer)` copies the records in once, then each
/// `fold(query)` folds all of them and answers the matched count (`test/fold_bench.mjs` times
/// it), and `summary()` describes the last fold as JSON text.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
#[derive(Debug, Default)]
pub struct FoldBench {
    lines: Lines,
    last: Option<(Plan, PartialState)>,
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
impl FoldBench {
    /// Take the newline-separated records.
    #[wasm_bindgen(constructor)]
    pub fn new(records: Vec<u8>) -> FoldBench {
        crate::zones::install();
        FoldBench { lines: Lines::new(records), last: None }
    }

    /// Number of records.
    pub fn records(&self) -> f64 {
        self.lines.len() as f64
    }

    /// Bytes of the records.
    pub fn bytes(&self) -> f64 {
        self.lines.bytes() as f64
    }

    /// Fold every record with the query (JSON text); the matched count.
    pub fn fold(&mut self, query: &str) -> Result<f64, String> {
        self.last = None;
        let (plan, state) = self.lines.fold(query).map_err(|e| e.to_string())?;
        let matched = state.matched() as f64;
        self.last = Some((plan, state));
        Ok(matched)
    }

    /// `{"records","matched","result_sha1"}` of the last fold.
    pub fn summary(&self) -> Result<String, String> {
        let (plan, state) = self.last.as_ref().ok_or("no fold yet")?;
        let f = summary(plan, state).map_err(|e| e.to_string())?;
        Ok(serde_json::json!({"records": f.records, "matched": f.matched, "result_sha1": f.result_sha1})
            .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_the_non_empty_lines_and_every_one_is_folded() {
        let lines =
            Lines::new(b"{\"t\":\"a b\"}\n\n{\"t\":\"b\"}\r\nnot a json\n{\"t\":\"a\"}".to_vec());
        assert_eq!(lines.len(), 4);
        assert_eq!(lines.bytes(), 11 + 10 + 10 + 9);
        let (plan, state) = lines
            .fold(r#"{"topic":"t","size":0,"query":{"match":{"t":"a"}}}"#)
            .expect("a valid query");
        let folded = summary(&plan, &state).expect("renders");
        assert_eq!((folded.records, folded.matched, state.skipped()), (4, 2, 1));
        assert_eq!(folded.result_sha1.len(), 40);
        assert!(lines.fold("{").is_err());
        assert!(Lines::new(Vec::new()).is_empty());
    }
}
