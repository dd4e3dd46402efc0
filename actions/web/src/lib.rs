//! Kappa's core in the browser: the dashboard validates queries and applies deltas with the
//! very code the server runs (`kappa_core::Plan::parse`, `kappa_core::patch::apply`), so the
//! page and the server never disagree.
//!
//! The functions below are plain Rust over JSON text (tested natively with `cargo test -p
//! kappa-web`); on `wasm32` they are exported with wasm-bindgen. Build for the page with
//! `actions/kappa/dashboard/build.sh` (`cargo build --target wasm32-unknown-unknown --release`,
//! then `wasm-bindgen --target web`).

use kappa_core::{Limits, Plan, QueryError, patch};
use serde_json::{Value, json};

// Built with WASM SIMD (`-C target-feature=+simd128`, the repository's .cargo/config.toml), as
// the Node.js actions are: RUSTFLAGS in the environment replaces the config's flags, so a build
// without it fails here (KAPPA_WASM_NO_SIMD=1 allows one).
#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
const _: () = assert!(
    option_env!("KAPPA_WASM_NO_SIMD").is_some(),
    "kappa-web is built with -C target-feature=+simd128 (.cargo/config.toml); is RUSTFLAGS set?"
);

/// Validate a query body (JSON text) as the server does. Returns JSON text: on success
/// `{"ok":true,"id":"q_..","topic":..,"canonical":{..}}`, otherwise the Elasticsearch-style
/// error the server would answer, `{"ok":false,"error":{"type","reason","path"},"status":400}`
/// (a JSON syntax error is a `parsing_exception` with `line` and `col`).
pub fn validate_query(body: &str) -> String {
    validate_value(body).to_string()
}

fn validate_value(body: &str) -> Value {
    let limits = Limits::default();
    if body.len() > limits.max_body_bytes {
        let e = QueryError {
            kind: kappa_core::ErrorKind::TooLarge,
            reason: format!("query body is larger than {} bytes", limits.max_body_bytes),
            path: String::new(),
        };
        return failed(&e);
    }
    let parsed: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            let mut out = failed(&QueryError::parsing("", format!("invalid JSON: {e}")));
            out["error"]["line"] = e.line().into();
            out["error"]["col"] = e.column().into();
            return out;
        }
    };
    match Plan::parse(&parsed, &limits) {
        Ok(plan) => json!({
            "ok": true,
            "id": plan.id(),
            "topic": plan.request().topic,
            "canonical": plan.request().canonical(),
        }),
        Err(e) => failed(&e),
    }
}

fn failed(e: &QueryError) -> Value {
    let mut v = e.to_json();
    v["ok"] = false.into();
    v
}

/// A result held by the page: a snapshot, then every delta applied in order.
#[derive(Debug, Default)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen::prelude::wasm_bindgen)]
pub struct ResultDoc {
    doc: Value,
    version: Option<u64>,
}

impl ResultDoc {
    /// Apply a delta's patch (JSON text) at `from` → `version`. Fails, leaving the document
    /// unchanged, on a version gap or a patch that does not apply: the caller resubscribes
    /// for a snapshot.
    pub fn apply_delta(&mut self, from: u64, version: u64, patch_json: &str) -> Result<(), String> {
        if self.version != Some(from) {
            return Err(format!(
                "delta from version {from} does not follow version {}",
                self.version.map_or("none".to_string(), |v| v.to_string())
            ));
        }
        let p: Value = serde_json::from_str(patch_json).map_err(|e| format!("patch: {e}"))?;
        patch::apply(&mut self.doc, &p).map_err(|e| e.to_string())?;
        self.version = Some(version);
        Ok(())
    }

    /// Replace the document with a snapshot's result (JSON text).
    pub fn set_snapshot(&mut self, version: u64, result_json: &str) -> Result<(), String> {
        self.doc = serde_json::from_str(result_json).map_err(|e| format!("snapshot: {e}"))?;
        self.version = Some(version);
        Ok(())
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen::prelude::wasm_bindgen)]
impl ResultDoc {
    /// An empty document (no version yet).
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen::prelude::wasm_bindgen(constructor))]
    pub fn new() -> ResultDoc {
        ResultDoc::default()
    }

    /// The version held, or -1 before the first snapshot.
    pub fn version(&self) -> f64 {
        self.version.map_or(-1.0, |v| v as f64)
    }

    /// The result as JSON text.
    pub fn json(&self) -> String {
        self.doc.to_string()
    }
}

#[cfg(target_arch = "wasm32")]
/// The wasm-bindgen exports.
pub mod bindings {
    use super::ResultDoc;
    use wasm_bindgen::prelude::*;

    /// See [`super::validate_query`].
    #[wasm_bindgen(js_name = validateQuery)]
    pub fn validate_query(body: &str) -> String {
        super::validate_query(body)
    }

    /// Apply an RFC 6902 patch (JSON text) to a document (JSON text); returns the new
    /// document, or throws the patch error.
    #[wasm_bindgen(js_name = applyPatch)]
    pub fn apply_patch(doc: &str, patch: &str) -> Result<String, JsError> {
        super::apply_patch(doc, patch).map_err(|e| JsError::new(&e))
    }

    #[wasm_bindgen]
    impl ResultDoc {
        /// Load a snapshot: `result` is JSON text.
        #[wasm_bindgen(js_name = setSnapshot)]
        pub fn js_set_snapshot(&mut self, version: f64, result: &str) -> Result<(), JsError> {
            self.set_snapshot(version as u64, result).map_err(|e| JsError::new(&e))
        }

        /// Apply a delta `from` → `version` (patch as JSON text); throws on a gap or a patch
        /// that does not apply, leaving the document unchanged.
        #[wasm_bindgen(js_name = applyDelta)]
        pub fn js_apply_delta(
            &mut self,
            from: f64,
            version: f64,
            patch: &str,
        ) -> Result<(), JsError> {
            self.apply_delta(from as u64, version as u64, patch).map_err(|e| JsError::new(&e))
        }
    }
}

/// Apply an RFC 6902 patch (JSON text) to a document (JSON text); returns the new document.
pub fn apply_patch(doc: &str, patch_json: &str) -> Result<String, String> {
    let mut d: Value = serde_json::from_str(doc).map_err(|e| format!("document: {e}"))?;
    let p: Value = serde_json::from_str(patch_json).map_err(|e| format!("patch: {e}"))?;
    patch::apply(&mut d, &p).map_err(|e| e.to_string())?;
    Ok(d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_answers_like_the_server() {
        let ok: Value = serde_json::from_str(&validate_query(
            r#"{"topic":"tweets","aggs":{"t":{"terms":{"field":"lang"}}}}"#,
        ))
        .expect("json");
        assert_eq!(ok["ok"], true);
        assert!(ok["id"].as_str().is_some_and(|s| s.starts_with("q_")));
        let bad: Value = serde_json::from_str(&validate_query(
            r#"{"topic":"tweets","aggs":{"tags":{"terms":{"field":"x","sizee":3}}}}"#,
        ))
        .expect("json");
        assert_eq!(bad["ok"], false);
        assert_eq!(bad["status"], 400);
        assert_eq!(bad["error"]["path"], "aggs.tags.terms");
        let syntax: Value = serde_json::from_str(&validate_query("{\"topic\":\n")).expect("json");
        assert_eq!(syntax["error"]["type"], "parsing_exception");
        assert_eq!(syntax["error"]["line"], 2);
    }

    #[test]
    fn deltas_apply_in_order_only() {
        let mut d = ResultDoc::new();
        d.set_snapshot(3, r#"{"hits":{"total":{"value":1}}}"#).expect("snapshot");
        assert!(d.apply_delta(4, 5, "[]").is_err());
        d.apply_delta(3, 4, r#"[{"op":"replace","path":"/hits/total/value","value":2}]"#)
            .expect("applies");
        assert_eq!(d.json(), r#"{"hits":{"total":{"value":2}}}"#);
        assert_eq!(d.version(), 4.0);
        assert!(d.apply_delta(4, 5, r#"[{"op":"remove","path":"/nope"}]"#).is_err());
        assert_eq!(d.version(), 4.0);
        assert_eq!(
            apply_patch("{}", r#"[{"op":"add","path":"/a","value":1}]"#).as_deref(),
            Ok(r#"{"a":1}"#)
        );
    }
}
