//! Per-key stream quotas: one API key cannot hold every push connection. A key holds at most
//! `max_streams_per_key` open push streams ([`StreamQuota`]); past it, a 429 names the limit.
//! The total is bounded by `--max-connections`. A keyless server has one caller, bounded by the
//! total alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::ApiError;

/// Who sent a request: the position of the API key it carried (`None` on a keyless server).
/// The key itself is never kept here, so it cannot reach a log through a `Debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller(pub Option<usize>);

/// Default of `--max-streams-per-key`: half the default connection cap.
pub const STREAMS_PER_KEY: usize = 2_048;

/// The push streams each key holds open (`kappa dev` and `kappa-gateway`).
#[derive(Debug)]
pub struct StreamQuota {
    per_key: usize,
    streams: Arc<Mutex<HashMap<usize, usize>>>,
}

/// An open stream counted against its key; released when dropped (the stream ended).
#[derive(Debug)]
pub struct StreamPermit {
    key: Option<usize>,
    streams: Arc<Mutex<HashMap<usize, usize>>>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = streams.get_mut(&key) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// 429: a key is over one of its quotas.
pub fn rejected(reason: String) -> ApiError {
    ApiError::new(429, "es_rejected_execution_exception", reason)
}

impl StreamQuota {
    /// At most `per_key` streams per key.
    pub fn new(per_key: usize) -> Self {
        StreamQuota { per_key, streams: Arc::default() }
    }

    /// Count a new push stream of `caller`, or refuse it with a 429.
    pub fn open_stream(&self, caller: Caller) -> Result<StreamPermit, ApiError> {
        if let Some(key) = caller.0 {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            let open = streams.entry(key).or_default();
            if *open >= self.per_key {
                return Err(rejected(format!(
                    "too many push streams: this API key already holds {open} (max_streams_per_key {}); close some first",
                    self.per_key
                )));
            }
            *open += 1;
        }
        Ok(StreamPermit { key: caller.0, streams: self.streams.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_streams_and_gets_them_back_when_they_close() {
        let quotas = StreamQuota::new(2);
        let a = Caller(Some(0));
        let first = quotas.open_stream(a).expect("first");
        let _second = quotas.open_stream(a).expect("second");
        let refused = quotas.open_stream(a).expect_err("third");
        assert_eq!(refused.status, 429);
        assert!(refused.body.to_string().contains("max_streams_per_key 2"), "{}", refused.body);
        // Another key, and a keyless server, are not limited by this key's streams.
        quotas.open_stream(Caller(Some(1))).expect("another key");
        quotas.open_stream(Caller(None)).expect("keyless");
        drop(first);
        quotas.open_stream(a).expect("a closed stream frees its place");
    }
}
