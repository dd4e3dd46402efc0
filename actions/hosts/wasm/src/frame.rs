//! Records cross the JavaScript boundary as one buffer, not one object each: the JS side
//! (`js/io.js`, `fetch`) packs a Kafka fetch response into frames
//! `offset: i64 LE | timestamp: i64 LE | key length: i32 LE (-1: no key) | value length: u32 LE |
//! key | value`, and Rust reads them with one copy of the buffer: the values are slices of it.
//! Records to append go the other way in the same format (`produce`).

use bytes::Bytes;
use kappa_core::ports::{LogRecord, NewRecord};

/// Decode a framed batch; an error names the byte where it is cut.
pub fn decode(frames: Bytes) -> Result<Vec<LogRecord>, String> {
    let buf = &frames[..];
    let mut out = Vec::new();
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).filter(|e| *e <= buf.len());
        let end = end.ok_or_else(|| format!("record frame cut at byte {at}"))?;
        let s = &buf[*at..end];
        *at = end;
        Ok(s)
    };
    while at < buf.len() {
        let offset = i64::from_le_bytes(take(&mut at, 8)?.try_into().unwrap_or_default());
        let timestamp = i64::from_le_bytes(take(&mut at, 8)?.try_into().unwrap_or_default());
        let key_len = i32::from_le_bytes(take(&mut at, 4)?.try_into().unwrap_or_default());
        let value_len = u32::from_le_bytes(take(&mut at, 4)?.try_into().unwrap_or_default());
        let key = if key_len < 0 { None } else { Some(take(&mut at, key_len as usize)?.to_vec()) };
        let start = at;
        take(&mut at, value_len as usize)?;
        let value = frames.slice(start..at);
        out.push(LogRecord { offset, timestamp, key, value });
    }
    Ok(out)
}

/// Append one frame.
fn push_frame(out: &mut Vec<u8>, offset: i64, timestamp: i64, key: Option<&[u8]>, value: &[u8]) {
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp.to_le_bytes());
    out.extend_from_slice(&key.map_or(-1, |k| k.len() as i32).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(key.unwrap_or_default());
    out.extend_from_slice(value);
}

/// Encode records as frames (the JS side's format; used by tests).
pub fn encode(records: &[LogRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        push_frame(&mut out, r.offset, r.timestamp, r.key.as_deref(), &r.value);
    }
    out
}

/// Encode records to append as frames (offset 0), so that keys and values reach the producer
/// byte for byte.
pub fn encode_new(records: &[NewRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        push_frame(&mut out, 0, r.timestamp, r.key.as_deref(), &r.value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_cut_frame_is_an_error() {
        let records = vec![
            LogRecord {
                offset: 5,
                timestamp: 1_700_000_000_000,
                key: None,
                value: bytes::Bytes::from_static(b"{}"),
            },
            LogRecord {
                offset: 9,
                timestamp: -1,
                key: Some(b"k".to_vec()),
                value: bytes::Bytes::new(),
            },
        ];
        let buf = encode(&records);
        assert_eq!(decode(buf.clone().into()).expect("decodes"), records);
        assert!(
            decode(bytes::Bytes::copy_from_slice(&buf[..buf.len() - 1]))
                .expect_err("cut")
                .contains("cut")
        );
    }
}
