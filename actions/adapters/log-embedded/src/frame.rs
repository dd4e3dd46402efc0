//! The on-disk frame of one record.
//!
//! ```text
//! len: u32 LE    length of the body
//! crc: u32 LE    CRC32 (IEEE) of the body
//! body:
//!   offset: i64 LE
//!   timestamp: i64 LE
//!   flags: u8      bit 0: last record of its append (batch)
//!   key_len: i32 LE  -1 for no key
//!   key: [u8; key_len]
//!   value: [u8; len - 21 - key_len]
//! ```
//!
//! A segment file is a sequence of frames and nothing else; its name is the offset of its
//! first record (`{base:020}.log`).

#[cfg(test)]
use kappa_core::ports::LogRecord;
use kappa_core::ports::NewRecord;

/// Bytes before the body.
pub(crate) const HEADER: usize = 8;
/// Bytes of the body before the key.
pub(crate) const BODY_FIXED: usize = 8 + 8 + 1 + 4;
/// Frames larger than this are treated as corrupt (a torn length field).
pub(crate) const MAX_BODY: usize = 256 << 20;
/// Flag of the last record of an append.
pub(crate) const LAST_OF_BATCH: u8 = 1;

/// Append the frame of `record` at `offset` to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, offset: i64, record: &NewRecord, last: bool) {
    let key_len = record.key.as_ref().map_or(0, Vec::len);
    let body_len = BODY_FIXED + key_len + record.value.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&record.timestamp.to_le_bytes());
    out.push(if last { LAST_OF_BATCH } else { 0 });
    match &record.key {
        Some(k) => {
            out.extend_from_slice(&(k.len() as i32).to_le_bytes());
            out.extend_from_slice(k);
        }
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
    }
    out.extend_from_slice(&record.value);
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The header of a frame: body length and CRC; None if the length is implausible.
pub(crate) fn header(bytes: &[u8; HEADER]) -> Option<(usize, u32)> {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (BODY_FIXED..=MAX_BODY).contains(&len).then_some((len, crc))
}

/// A decoded body (borrowing the key and value).
pub(crate) struct Body<'a> {
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    pub(crate) last_of_batch: bool,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: &'a [u8],
}

#[cfg(test)]
impl Body<'_> {
    pub(crate) fn to_record(&self) -> LogRecord {
        LogRecord {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.to_vec().into(),
        }
    }
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

/// Decode a body whose CRC is `crc`; None when the CRC or the layout is wrong.
pub(crate) fn decode(body: &[u8], crc: u32) -> Option<Body<'_>> {
    if body.len() < BODY_FIXED || crc32fast::hash(body) != crc {
        return None;
    }
    let offset = i64_at(body, 0);
    let timestamp = i64_at(body, 8);
    let flags = body[16];
    let key_len = i32::from_le_bytes([body[17], body[18], body[19], body[20]]);
    let rest = &body[BODY_FIXED..];
    let (key, value) = if key_len < 0 {
        (None, rest)
    } else {
        let k = key_len as usize;
        if k > rest.len() {
            return None;
        }
        (Some(&rest[..k]), &rest[k..])
    };
    Some(Body { offset, timestamp, last_of_batch: flags & LAST_OF_BATCH != 0, key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        let a = NewRecord { key: Some(b"k".to_vec()), value: b"hello".to_vec(), timestamp: -5 };
        let b = NewRecord { key: None, value: vec![], timestamp: 7 };
        let c = NewRecord { key: Some(vec![]), value: b"x".to_vec(), timestamp: 0 };
        encode(&mut buf, 10, &a, false);
        encode(&mut buf, 11, &b, false);
        encode(&mut buf, 12, &c, true);
        let mut at = 0;
        let mut got = Vec::new();
        while at < buf.len() {
            let h: [u8; HEADER] = buf[at..at + HEADER].try_into().unwrap();
            let (len, crc) = header(&h).unwrap();
            let body = decode(&buf[at + HEADER..at + HEADER + len], crc).unwrap();
            got.push((body.to_record(), body.last_of_batch));
            at += HEADER + len;
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(&got[0].0.value[..], b"hello");
        assert_eq!((got[0].0.offset, got[0].0.timestamp, got[0].1), (10, -5, false));
        assert_eq!((got[1].0.key.clone(), got[1].0.value.clone()), (None, bytes::Bytes::new()));
        assert_eq!(got[2].0.key, Some(vec![]));
        assert!(got[2].1);
        // A flipped bit anywhere in the body fails the CRC.
        let h: [u8; HEADER] = buf[0..HEADER].try_into().unwrap();
        let (len, crc) = header(&h).unwrap();
        for i in 0..len {
            let mut body = buf[HEADER..HEADER + len].to_vec();
            body[i] ^= 0x10;
            assert!(decode(&body, crc).is_none(), "flip at {i}");
        }
    }
}
