//! Per-key quotas: one API key cannot take the whole server. A key holds at most
//! `max_queries_per_key` registered queries ([`QueryQuota`]) and `max_streams_per_key` open push
//! streams ([`StreamQuota`]); past either, a 429 names the limit. The totals are bounded elsewhere (`max_queries`,
//! `--max-connections`). A keyless server has one caller, bounded by the totals alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kappa_core::ports::StateStore;

use crate::error::ApiError;

/// Who sent a request: the position of the API key it carried (`None` on a keyless server).
/// The key itself is never kept here, so it cannot reach a log through a `Debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller(pub Option<usize>);

/// Default of `--max-queries-per-key`.
pub const QUERIES_PER_KEY: usize = 200;
/// Default of `--max-streams-per-key`: half the default connection cap.
pub const STREAMS_PER_KEY: usize = 2_048;

/// The push streams each key holds open (`kappa dev` and `kappa gateway`).
#[derive(Debug)]
pub struct StreamQuota {
    per_key: usize,
    streams: Arc<Mutex<HashMap<usize, usize>>>,
}

/// The queries each key holds (`kappa dev`).
#[derive(Debug)]
pub struct QueryQuota {
    per_key: usize,
    queries: Mutex<HashMap<usize, HashSet<String>>>,
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

fn rejected(reason: String) -> ApiError {
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

impl QueryQuota {
    /// At most `per_key` queries per key.
    pub fn new(per_key: usize) -> Self {
        QueryQuota { per_key, queries: Mutex::default() }
    }

    /// Whether `caller` may register (or share) query `id`: a key at its limit must first
    /// delete one, or wait until one is reclaimed. Queries released since are forgotten here.
    pub async fn admit_query(
        &self,
        caller: Caller,
        id: &str,
        store: &dyn StateStore,
    ) -> Result<(), ApiError> {
        let Some(key) = caller.0 else { return Ok(()) };
        let held: Vec<String> = {
            let queries = self.queries.lock().unwrap_or_else(|e| e.into_inner());
            let held = queries.get(&key);
            if held.is_none_or(|h| h.contains(id) || h.len() < self.per_key) {
                return Ok(());
            }
            held.into_iter().flatten().cloned().collect()
        };
        let mut released = Vec::new();
        for q in held {
            if store.query(&q).await?.is_none() {
                released.push(q);
            }
        }
        let mut queries = self.queries.lock().unwrap_or_else(|e| e.into_inner());
        let held = queries.entry(key).or_default();
        for q in &released {
            held.remove(q);
        }
        if held.len() >= self.per_key {
            return Err(rejected(format!(
                "too many queries: this API key holds {} (max_queries_per_key {}); delete unused ones",
                held.len(),
                self.per_key
            )));
        }
        Ok(())
    }

    /// `caller` now holds query `id`.
    pub fn hold_query(&self, caller: Caller, id: &str) {
        if let Some(key) = caller.0 {
            let mut queries = self.queries.lock().unwrap_or_else(|e| e.into_inner());
            queries.entry(key).or_default().insert(id.to_string());
        }
    }

    /// `caller` no longer needs query `id` (`DELETE`).
    pub fn drop_query(&self, caller: Caller, id: &str) {
        if let Some(key) = caller.0 {
            let mut queries = self.queries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(held) = queries.get_mut(&key) {
                held.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::Topic;
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

    #[tokio::test]
    async fn a_key_holds_at_most_its_queries_until_one_is_deleted_or_released() {
        use kappa_core::ports::{MemoryStore, QueryRecord};
        let store = MemoryStore::new(8);
        let quotas = QueryQuota::new(2);
        let a = Caller(Some(0));
        for id in ["q1", "q2"] {
            quotas.admit_query(a, id, &store).await.expect("within the limit");
            let record = QueryRecord {
                id: id.into(),
                body: "{}".into(),
                topic: Topic::new("t").expect("a valid name"),
                segments: vec![],
                created_ms: 0,
            };
            assert!(store.register(&record).await.expect("register"));
            quotas.hold_query(a, id);
        }
        let refused = quotas.admit_query(a, "q3", &store).await.expect_err("over the limit");
        assert_eq!(refused.status, 429);
        assert!(refused.body.to_string().contains("max_queries_per_key 2"), "{}", refused.body);
        quotas.admit_query(a, "q1", &store).await.expect("one it holds: shared again");
        quotas.admit_query(Caller(Some(1)), "q3", &store).await.expect("another key");
        quotas.admit_query(Caller(None), "q3", &store).await.expect("keyless");
        quotas.drop_query(a, "q1");
        quotas.admit_query(a, "q3", &store).await.expect("after a DELETE");
        quotas.hold_query(a, "q3");
        // q3 was never registered: it counts as released.
        assert!(store.remove("q2").await.is_ok());
        quotas.admit_query(a, "q4", &store).await.expect("after a release");
    }
}
