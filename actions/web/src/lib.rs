//! Kappa's core in the browser: the dashboard validates queries and applies deltas with the
//! very code the server runs (`kappa_core::Plan::parse`, `kappa_core::patch::apply`), so the
//! page and the server never disagree.
//!
//! The functions below are plain Rust over JSON text (tested natively with `cargo test -p
//! kappa-web`); on `wasm32` they are exported with wasm-bindgen. Build for the page with
//! `actions/kappa/dashboard/build.sh` (`cargo build --target wasm32-unknown-unknown --release`,
//! then `wasm-bindgen --target web`).

use std::sync::Arc;

use kappa_core::{Limits, Message, Plan, QueryError, patch};
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
    /// Apply one push message as the server sent it (JSON text, a [`Message`]): a snapshot
    /// replaces the document, a delta patches it; progress and error messages leave it as it
    /// is. Returns whether the document changed; fails, leaving it unchanged, on a text that is
    /// not a message, a version gap or a patch that does not apply (the caller resubscribes).
    pub fn apply_message(&mut self, text: &str) -> Result<bool, String> {
        let message: Message =
            serde_json::from_str(text).map_err(|e| format!("not a Kappa message: {e}"))?;
        match message {
            Message::Snapshot { version, result, .. } => {
                self.doc = Arc::unwrap_or_clone(result);
                self.version = Some(version);
                Ok(true)
            }
            Message::Delta { from, version, patch, .. } => {
                self.apply_patch_value(from, version, &patch)?;
                Ok(true)
            }
            Message::Progress { .. } | Message::Error { .. } => Ok(false),
        }
    }

    fn apply_patch_value(&mut self, from: u64, version: u64, patch: &Value) -> Result<(), String> {
        if self.version != Some(from) {
            return Err(format!(
                "delta from version {from} does not follow version {}",
                self.version.map_or("none".to_string(), |v| v.to_string())
            ));
        }
        patch::apply(&mut self.doc, patch).map_err(|e| e.to_string())?;
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

    #[wasm_bindgen]
    impl ResultDoc {
        /// Apply a push message (its JSON text); returns whether the result changed; throws
        /// on a text that is not a message, a gap or a patch that does not apply.
        #[wasm_bindgen(js_name = applyMessage)]
        pub fn js_apply_message(&mut self, text: &str) -> Result<bool, JsError> {
            self.apply_message(text).map_err(|e| JsError::new(&e))
        }
    }
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

    fn text(m: Message) -> String {
        serde_json::to_string(&m).expect("a message encodes")
    }

    fn delta(from: u64, patch: Value) -> String {
        text(Message::Delta {
            id: "q".into(),
            version: from + 1,
            from,
            caught_up: true,
            progress: Default::default(),
            patch,
        })
    }

    #[test]
    fn messages_apply_in_order_only() {
        let mut d = ResultDoc::new();
        let progress = text(Message::Progress {
            id: "q".into(),
            version: 0,
            caught_up: false,
            progress: Default::default(),
            error: None,
        });
        assert_eq!(d.apply_message(&progress), Ok(false));
        let snapshot = text(Message::Snapshot {
            id: "q".into(),
            version: 3,
            caught_up: false,
            progress: Default::default(),
            result: Arc::new(json!({"hits": {"total": {"value": 1}}})),
            error: None,
        });
        assert_eq!(d.apply_message(&snapshot), Ok(true));
        assert!(d.apply_message(&delta(4, json!([]))).is_err(), "a gap");
        let replace = json!([{"op": "replace", "path": "/hits/total/value", "value": 2}]);
        assert_eq!(d.apply_message(&delta(3, replace)), Ok(true));
        assert_eq!(d.json(), r#"{"hits":{"total":{"value":2}}}"#);
        assert_eq!(d.version(), 4.0);
        let bad = json!([{"op": "remove", "path": "/nope"}]);
        assert!(d.apply_message(&delta(4, bad)).is_err(), "a patch that does not apply");
        assert!(d.apply_message(r#"{"type":"nonsense"}"#).is_err(), "not a message");
        assert_eq!(d.version(), 4.0, "failures leave the document as it was");
    }
}
