//! In-process wake-ups of subscribers: the scheduler bumps a query's counter after each batch
//! that committed; subscribers wait on it and then read the shared ring of the store. A
//! `watch` coalesces wake-ups, so a notification never blocks and never queues up.
//!
//! The counter is one sequence for all queries, so it never goes back (not even when a query's
//! channel is dropped and made again): a store read that began after a subscriber saw value `n`
//! reflects every notification up to `n`, which lets subscribers share reads
//! ([`crate::stream`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Per-query wake-ups.
#[derive(Debug, Default)]
pub struct Hub {
    queries: Mutex<HashMap<String, watch::Sender<u64>>>,
    sequence: AtomicU64,
}

impl Hub {
    /// Wake every subscriber of `id` (no-op without subscribers).
    pub fn notify(&self, id: &str) {
        let mut queries = self.queries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = queries.get(id) {
            if tx.receiver_count() == 0 {
                queries.remove(id);
            } else {
                // Under the lock, so values reach each channel in increasing order.
                let n = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
                tx.send_replace(n);
            }
        }
    }

    /// Wake every subscriber of every query (after a gap in the wake-up feed, e.g. a lost
    /// pub/sub connection: each subscriber then re-reads the store and catches up).
    pub fn notify_all(&self) {
        let mut queries = self.queries.lock().unwrap_or_else(|e| e.into_inner());
        queries.retain(|_, tx| tx.receiver_count() > 0);
        for tx in queries.values() {
            let n = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
            tx.send_replace(n);
        }
    }

    /// A receiver woken on every [`Hub::notify`] of `id` from now on.
    pub fn watch(&self, id: &str) -> watch::Receiver<u64> {
        let mut queries = self.queries.lock().unwrap_or_else(|e| e.into_inner());
        match queries.get(id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(self.sequence.load(Ordering::Relaxed));
                queries.insert(id.to_string(), tx);
                rx
            }
        }
    }
}
