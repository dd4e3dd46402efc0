//! `POST /v1/topics/{topic}/records`: NDJSON or a JSON array, validated whole before anything
//! is written.

use std::collections::BTreeMap;

use kappa_core::ports::{NewRecord, partition_for_key};
use serde_json::Value;
use serde_json::value::RawValue;

use kappa_push::error::ApiError;

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Key, from `?key=<field path>`.
    pub key: Option<Vec<u8>>,
    /// The document as sent.
    pub value: Vec<u8>,
}

/// The value at a dotted field path (`user.id`), as key bytes: a string's text, or the JSON of
/// any other value; None when absent or null.
pub fn key_of(doc: &Value, path: &str) -> Option<Vec<u8>> {
    let mut v = doc;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

fn bad_line(line: usize, e: &serde_json::Error) -> ApiError {
    let mut err =
        ApiError::new(400, "parsing_exception", format!("line {line}: invalid JSON document: {e}"));
    err.body["error"]["line"] = line.into();
    err
}

fn invalid_record(line: usize, e: &kappa_core::scan::InvalidJson) -> ApiError {
    let mut err = ApiError::new(
        400,
        "parsing_exception",
        format!("line {line}: invalid JSON document: {} at byte {}", e.reason, e.offset),
    );
    err.body["error"]["line"] = line.into();
    err
}

fn record(raw: &[u8], key_path: Option<&str>, line: usize) -> Result<Parsed, ApiError> {
    // Exactly what a query will read as a document (the fold's own validating scanner): a line
    // every query would skip (invalid UTF-8 in a string, a lone surrogate, nesting past the
    // limit, a number out of range, a top level that is not an object) is refused here, with
    // nothing written, instead of being counted as skipped forever after.
    kappa_core::scan::validate(raw).map_err(|e| invalid_record(line, &e))?;
    let key = match key_path {
        Some(path) => {
            let doc: Value = serde_json::from_slice(raw).map_err(|e| bad_line(line, &e))?;
            key_of(&doc, path)
        }
        None => None,
    };
    Ok(Parsed { key, value: raw.to_vec() })
}

/// Parse an ingest body: a JSON array of documents, or NDJSON (blank lines ignored). The first
/// invalid document fails the whole body with 400 naming its line (the first line is 1).
pub fn parse(body: &[u8], key_path: Option<&str>) -> Result<Vec<Parsed>, ApiError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_some_and(|i| body[i] == b'[') {
        let items: Vec<&RawValue> = match serde_json::from_slice(body) {
            Ok(items) => items,
            Err(e) => {
                let line = e.line().max(1);
                return Err(bad_line(line, &e));
            }
        };
        // Line of each element: count newlines before its position in the body.
        let base = body.as_ptr() as usize;
        return items
            .iter()
            .map(|raw| {
                let offset = (raw.get().as_ptr() as usize).saturating_sub(base).min(body.len());
                let line = 1 + body[..offset].iter().filter(|&&b| b == b'\n').count();
                record(raw.get().as_bytes(), key_path, line)
            })
            .collect();
    }
    let mut out = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        out.push(record(trimmed, key_path, i + 1)?);
    }
    Ok(out)
}

/// Assign partitions: keyed records by `partition_for_key`, keyless ones round-robin from
/// `next`. Returns the records of each partition, in body order.
pub fn assign(
    records: Vec<Parsed>,
    partitions: u32,
    mut next: u64,
    timestamp: i64,
) -> BTreeMap<u32, Vec<NewRecord>> {
    let mut out: BTreeMap<u32, Vec<NewRecord>> = BTreeMap::new();
    for r in records {
        let p = match &r.key {
            Some(k) => partition_for_key(k, partitions),
            None => {
                let p = (next % u64::from(partitions.max(1))) as u32;
                next += 1;
                p
            }
        };
        out.entry(p).or_default().push(NewRecord { key: r.key, value: r.value, timestamp });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_and_arrays_parse_and_bad_lines_are_named() {
        let ok = parse(b"{\"a\":1}\n\n{\"a\":2}\n", None).expect("valid");
        assert_eq!(ok.len(), 2);
        let err = parse(b"{\"a\":1}\n{\"a\":\n{\"a\":3}", None).expect_err("invalid");
        assert_eq!(err.status, 400);
        assert_eq!(err.body["error"]["line"], 2);
        let arr =
            parse(b"[{\"u\":{\"id\":7}},\n {\"u\":{\"id\":\"x\"}}]", Some("u.id")).expect("valid");
        assert_eq!(arr[0].key.as_deref(), Some(&b"7"[..]));
        assert_eq!(arr[1].key.as_deref(), Some(&b"x"[..]));
        assert_eq!(arr[1].value, b"{\"u\":{\"id\":\"x\"}}");
        let err = parse(b"[{\"a\":1},\n{\"a\" 2}]", None).expect_err("invalid");
        assert_eq!(err.body["error"]["line"], 2);
    }

    #[test]
    fn lines_no_query_could_read_are_refused_with_their_line() {
        let deep = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200)).into_bytes();
        let cases: [(&[u8], &str); 6] = [
            (b"{\"a\":\"\xff\"}", "invalid UTF-8"),
            (br#"{"a":"\ud800"}"#, "hex escape"),
            (br#"{"a":"\udc00x"}"#, "surrogate"),
            (&deep, "recursion limit"),
            (br#"{"a":1e400}"#, "out of range"),
            (b"[1,2]\n", "not an object"),
        ];
        for (bad, reason) in cases {
            let mut body = b"{\"ok\":1}\n".to_vec();
            body.extend_from_slice(bad);
            let err = parse(&body, None).expect_err("refused");
            assert_eq!(err.status, 400);
            assert_eq!(err.body["error"]["line"], 2, "{}", String::from_utf8_lossy(bad));
            let text = err.body["error"]["reason"].as_str().unwrap_or_default().to_string();
            assert!(text.contains(reason), "{text}");
        }
    }

    #[test]
    fn keyless_records_are_spread_round_robin() {
        let recs = (0..8).map(|i| Parsed { key: None, value: vec![i] }).collect();
        let parts = assign(recs, 4, 0, 0);
        assert!(parts.values().all(|v| v.len() == 2));
    }
}
