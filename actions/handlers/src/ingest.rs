//! `POST /v1/topics/{topic}/records`: NDJSON or a JSON array, validated whole before anything
//! is written, then spread over the topic's partitions. `kappa dev` and the deployed `query`
//! web action both ingest with this code (the dev server adds its own topic limit and wakes its
//! scheduler; a deployment's Kafka feed trigger wakes the queries).

use std::collections::BTreeMap;

use kappa_core::Topic;
use kappa_core::ports::{LogWriter, NewRecord, PortResult, partition_for_key};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::env::Env;
use crate::error::ActionError;
use crate::web::WebResponse;

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

/// 400 `parsing_exception` naming the line.
fn invalid_line(line: usize, reason: String) -> WebResponse {
    let mut answer = WebResponse::error(
        400,
        "parsing_exception",
        format!("line {line}: invalid JSON document: {reason}"),
    );
    answer.body["error"]["line"] = line.into();
    answer
}

fn bad_line(line: usize, e: &serde_json::Error) -> WebResponse {
    invalid_line(line, e.to_string())
}

fn invalid_record(line: usize, e: &kappa_core::scan::InvalidJson) -> WebResponse {
    invalid_line(line, format!("{} at byte {}", e.reason, e.offset))
}

fn record(raw: &[u8], key_path: Option<&str>, line: usize) -> Result<Parsed, WebResponse> {
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
pub fn parse(body: &[u8], key_path: Option<&str>) -> Result<Vec<Parsed>, WebResponse> {
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

/// Append `records` to `topic` (of `partitions` partitions, keyless ones round-robin from
/// `next`), each partition's records in one atomic append. Returns the answer's body:
/// `{"topic","count","partitions":{"0":{"first_offset","last_offset"},..}}`.
pub async fn write(
    writer: &dyn LogWriter,
    topic: &Topic,
    records: Vec<Parsed>,
    partitions: u32,
    next: u64,
    now_ms: i64,
) -> PortResult<Value> {
    let count = records.len();
    let mut written = Map::new();
    for (partition, batch) in assign(records, partitions, next, now_ms) {
        let first = writer.append(topic, partition, &batch).await?;
        written.insert(
            partition.to_string(),
            json!({"first_offset": first, "last_offset": first + batch.len() as i64 - 1}),
        );
    }
    Ok(json!({"topic": topic, "count": count, "partitions": written}))
}

/// The deployed ingest route: `body` checked against `max_ingest_bytes` (413) and parsed whole
/// (400 naming the first bad line), the topic created with `topic_partitions` if it is new,
/// then [`write`]. Keyless records start their round-robin at the clock, so concurrent
/// containers spread them too.
pub async fn ingest(
    env: &Env<'_>,
    topic: &str,
    key_path: Option<&str>,
    body: &[u8],
) -> Result<WebResponse, ActionError> {
    let Ok(topic) = Topic::new(topic) else {
        return Ok(WebResponse::error(
            400,
            "invalid_index_name_exception",
            format!("invalid topic name [{topic}]: use 1 to 249 of [A-Za-z0-9._-]"),
        ));
    };
    let limit = env.config.max_ingest_bytes;
    if body.len() > limit {
        return Ok(WebResponse::error(
            413,
            "content_too_long_exception",
            format!("ingest body exceeds the limit of {limit} bytes"),
        ));
    }
    let records = match parse(body, key_path.filter(|k| !k.is_empty())) {
        Ok(records) => records,
        Err(refused) => return Ok(refused),
    };
    let partitions = match env.log.partitions(&topic).await? {
        Some(n) => n,
        None => env.writer.ensure_topic(&topic, env.config.topic_partitions).await?,
    };
    let now = env.clock.now_ms();
    let written = write(env.writer, &topic, records, partitions, now as u64, now).await?;
    Ok(WebResponse::json(200, written))
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
