//! Query identity: the content hash of a request's canonical form.
//!
//! Two bodies that mean the same query (key order, whitespace, defaults written out or not,
//! `60m` vs `1h`) canonicalise to the same bytes and so share one id, one computation and one
//! stream. The engine version is hashed in too: a change of evaluation semantics must not reuse
//! partial states computed by the old engine.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::request::SearchRequest;

/// Bumped whenever a change would make an old partial state or result wrong for the same query
/// (2: date formats, date rounding, minimum_should_match and sort order of issue #15).
pub const ENGINE_VERSION: &str = "kappa-engine/2";

/// Serialise JSON with object keys sorted at every level (RFC 8785 style, without its number
/// rules: numbers are already normalised by the canonical form).
pub fn canonical_string(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The id of a request: `q_` + the first 128 bits of SHA-256(engine version, canonical form), hex.
pub fn query_id(request: &SearchRequest) -> String {
    let canonical = canonical_string(&request.canonical());
    let mut h = Sha256::new();
    h.update(ENGINE_VERSION.as_bytes());
    h.update([0u8]);
    h.update(canonical.as_bytes());
    let digest = h.finalize();
    format!("q_{}", hex::encode(&digest[..16]))
}
