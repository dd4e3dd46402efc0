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
///
/// Objects are compared key by key and arrays index by index (removals from the end, additions
/// appended): a result's shape rarely changes, only its numbers. The operations are built as
/// JSON directly — every live batch of every query is diffed, and building typed operations to
/// convert them afterwards took half the time.
pub fn diff(from: &Value, to: &Value) -> Value {
    let mut ops = Vec::new();
    let mut path = String::new();
    diff_into(from, to, &mut path, &mut ops);
    Value::Array(ops)
}

fn diff_into(from: &Value, to: &Value, path: &mut String, ops: &mut Vec<Value>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            // Two renders of one query keep their keys in one order: the key at the same place
            // is found without hashing, and when every key was, none was removed.
            let mut in_order = a.iter();
            let mut all_in_order = a.len() == b.len();
            for (key, new) in b {
                let len = path.len();
                push_token(path, key);
                let old = match in_order.next() {
                    Some((k, v)) if k == key => Some(v),
                    _ => {
                        all_in_order = false;
                        a.get(key)
                    }
                };
                match old {
                    Some(old) => diff_into(old, new, path, ops),
                    None => ops.push(op("add", path, Some(new))),
                }
                path.truncate(len);
            }
            if all_in_order {
                return;
            }
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                let len = path.len();
                push_token(path, key);
                ops.push(op("remove", path, None));
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            let len = path.len();
            for (i, (old, new)) in a.iter().zip(b).enumerate() {
                push_index(path, i);
                diff_into(old, new, path, ops);
                path.truncate(len);
            }
            // Removed from the end first, so every index is valid when applied.
            for i in (b.len()..a.len()).rev() {
                push_index(path, i);
                ops.push(op("remove", path, None));
                path.truncate(len);
            }
            for new in b.iter().skip(a.len()) {
                path.push_str("/-");
                ops.push(op("add", path, Some(new)));
                path.truncate(len);
            }
        }
        _ if from == to => {}
        _ => ops.push(op("replace", path, Some(to))),
    }
}

/// Append `/token` to a JSON Pointer (RFC 6901: `~` is `~0`, `/` is `~1`).
fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// Append `/index` (digits need no escaping, and no string is allocated for them).
fn push_index(path: &mut String, index: usize) {
    use std::fmt::Write;
    let _ = write!(path, "/{index}");
}

fn op(name: &str, path: &str, value: Option<&Value>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("op".into(), Value::String(name.into()));
    m.insert("path".into(), Value::String(path.into()));
    if let Some(v) = value {
        m.insert("value".into(), v.clone());
    }
    Value::Object(m)
}

/// Apply an RFC 6902 patch in place; on error `doc` is left unchanged.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError(e.to_string()))?;
    json_patch::patch(doc, &patch).map_err(|e| PatchError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Keys matched by their place must not hide a key removed or moved: objects of one
    /// length with another key set, and the same keys in another order.
    #[test]
    fn objects_of_one_length_with_other_keys_or_order_diff_exactly() {
        for (from, to) in [
            (json!({"x": 1, "y": 2}), json!({"x": 1, "z": 2})),
            (json!({"x": 1, "y": 2}), json!({"y": 3, "x": 1})),
            (json!({"x": {"a": 1}, "y": 2}), json!({"z": 2, "x": {"b": 1}})),
        ] {
            let mut doc = from.clone();
            apply(&mut doc, &diff(&from, &to)).expect("applies");
            assert_eq!(doc, to, "from {from} to {to}");
        }
        assert_eq!(
            diff(&json!({"x": 1, "y": 2}), &json!({"x": 1, "z": 2})),
            json!([{"op": "add", "path": "/z", "value": 2}, {"op": "remove", "path": "/y"}])
        );
    }
}
