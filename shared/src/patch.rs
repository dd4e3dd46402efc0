//! Deltas between two rendered results, as RFC 6902 JSON Patch.
//!
//! A subscriber holds the result at version V; the delta to V+1 is `diff(result_V,
//! result_V+1)`, and `apply` turns the one into the other exactly.

use serde_json::Value;

/// A patch that can't be applied (to the document it was not made for).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON patch does not apply: {0}")]
pub struct PatchError(pub String);

impl PatchError {
    /// Applying the same patch again fails the same way; the subscriber needs a snapshot.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The RFC 6902 patch (a JSON array of operations) turning `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Value {
    serde_json::to_value(json_patch::diff(from, to)).unwrap_or(Value::Array(Vec::new()))
}

/// Apply an RFC 6902 patch in place; on error `doc` is left unchanged.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError(e.to_string()))?;
    json_patch::patch(doc, &patch).map_err(|e| PatchError(e.to_string()))
}
