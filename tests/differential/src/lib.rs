//! Differential testing of Kappa against a real search engine.
//!
//! The same documents go into Kappa (as log records, through `kappa-core`'s one-pass fold and
//! render, the path every deployment uses) and into an OpenSearch index whose mapping states
//! what Kappa infers; the same request goes to both; the answers must be equal apart from the
//! intended differences listed, all in one place, in [`differences`].
//!
//! Run with: `eval "$(scripts/opensearch.sh start)"; cargo test -p kappa-differential`.
//! Without `OPENSEARCH_URL` the tests say loudly that they skipped.

pub mod corpus;
pub mod differences;
pub mod generate;
pub mod opensearch;

use anyhow::{Result, anyhow};
use kappa_core::{Limits, Plan};
use serde_json::Value;

use crate::corpus::Corpus;
use crate::opensearch::OpenSearch;

/// Kappa's answer: `Ok(result)` or `Err(error type)` for a rejected request.
pub fn kappa_answer(request: &Value, corpus: &Corpus) -> Result<Result<Value, String>> {
    let plan = match Plan::parse(request, &Limits::default()) {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("{}: {} at [{}]", e.kind.as_str(), e.reason, e.path))),
    };
    let mut state = plan.empty_state();
    for r in corpus.records() {
        plan.fold(&mut state, &r).map_err(|e| anyhow!("fold: {e}"))?;
    }
    Ok(Ok(plan.render(&state).map_err(|e| anyhow!("render: {e}"))?))
}

/// The outcome of one request over one corpus.
#[derive(Debug)]
pub struct Outcome {
    /// Differences by JSON path (empty: agreement).
    pub differences: Vec<String>,
    /// Kappa's answer (or its error).
    pub kappa: Value,
    /// OpenSearch's answer (or its error).
    pub opensearch: Value,
}

impl Outcome {
    /// Whether both engines gave the same answer (up to the listed intended differences).
    pub fn agrees(&self) -> bool {
        self.differences.is_empty()
    }

    /// A report of a disagreement: the request, the documents and both answers.
    pub fn report(&self, request: &Value, corpus: &Corpus) -> String {
        let docs: Vec<String> = corpus
            .docs
            .iter()
            .map(|d| format!("  {} @timestamp={} {}", d.id(), d.timestamp, d.source))
            .collect();
        format!(
            "request: {request}\ndifferences:\n  {}\ndocuments ({}):\n{}\nKappa: {}\nOpenSearch: {}\n",
            self.differences.join("\n  "),
            corpus.docs.len(),
            docs.join("\n"),
            self.kappa,
            self.opensearch
        )
    }
}

/// Run `request` in both engines over `corpus` (whose index must exist) and compare.
pub fn compare(os: &mut OpenSearch, corpus: &Corpus, request: &Value) -> Result<Outcome> {
    let kappa = kappa_answer(request, corpus)?;
    let body = differences::opensearch_request(request).to_string();
    let (status, answer) =
        os.request("POST", &format!("/{}/_search", corpus.index), Some(&body))?;
    let ctx = differences::Context::new(request, corpus);
    let differences = match (&kappa, status) {
        (Ok(k), 200) => differences::compare(k, &answer, &ctx),
        // Both reject (OpenSearch answers some invalid requests with a 500).
        (Err(_), 400..) => Vec::new(),
        (Ok(_), s) => vec![format!("OpenSearch rejected the request (HTTP {s}), Kappa answered")],
        (Err(e), s) => vec![format!("Kappa rejected the request ({e}), OpenSearch answered {s}")],
    };
    let kappa = match kappa {
        Ok(v) => v,
        Err(e) => Value::String(e),
    };
    Ok(Outcome { differences, kappa, opensearch: answer })
}
