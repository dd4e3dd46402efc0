//! Query identity: the content hash of a request's canonical form.
//!
//! Two bodies that mean the same query (key order, whitespace, defaults written out or not,
//! `60m` vs `1h`) canonicalise to the same bytes and so share one id, one computation and one
//! stream. The engine version is hashed in too: a change of evaluation semantics must not reuse
//! partial states computed by the old engine.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::request::SearchRequest;
use crate::sort;

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
            sort::stable(&mut keys);
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

/// The prefix of every query id.
const QUERY_ID_PREFIX: &str = "q_";

/// A query's id: `q_` and the hex of its content hash, made by [`query_id`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(String);

impl QueryId {
    /// An id from outside (a URL's path segment): what the routes have always taken for one, a
    /// name that starts with `q_`. Whether such a query exists is for the store to answer.
    pub fn parse(id: &str) -> Option<QueryId> {
        id.starts_with(QUERY_ID_PREFIX).then(|| QueryId(id.to_string()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex digits after the prefix.
    pub fn hex(&self) -> &str {
        &self.0[QUERY_ID_PREFIX.len()..]
    }
}

impl std::ops::Deref for QueryId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QueryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a request: `q_` + the first 128 bits of SHA-256(engine version, canonical form), hex.
pub fn query_id(request: &SearchRequest) -> QueryId {
    let canonical = canonical_string(&request.canonical());
    let mut h = Sha256::new();
    h.update(ENGINE_VERSION.as_bytes());
    h.update([0u8]);
    h.update(canonical.as_bytes());
    let digest = h.finalize();
    QueryId(format!("{QUERY_ID_PREFIX}{}", hex::encode(&digest[..16])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_outside_are_what_the_routes_always_took() {
        assert_eq!(QueryId::parse("q_00ff").map(|id| id.hex().to_string()), Some("00ff".into()));
        assert_eq!(QueryId::parse("q_").map(|id| id.to_string()), Some("q_".into()));
        assert_eq!(QueryId::parse("queries"), None);
        assert_eq!(QueryId::parse(""), None);
    }
}
