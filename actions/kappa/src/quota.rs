//! Per-key query quotas of `kappa dev`: a key holds at most `max_queries_per_key` registered
//! queries ([`QueryQuota`]); past it, a 429 names the limit (the total is bounded by
//! `max_queries`). Streams are counted by [`kappa_push::quota::StreamQuota`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kappa_core::ports::StateStore;
use kappa_push::error::ApiError;
use kappa_push::quota::{Caller, rejected};

/// Default of `--max-queries-per-key`.
pub const QUERIES_PER_KEY: usize = 200;
/// The queries each key holds (`kappa dev`).
#[derive(Debug)]
pub struct QueryQuota {
    per_key: usize,
    queries: Mutex<HashMap<usize, HashSet<String>>>,
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
