//! Decoded copies of the hottest reads, kept exact by the committer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use kappa_core::Message;
use kappa_core::ports::{QueryRecord, ResultRecord};

/// Messages of each query kept decoded in [`Latest`].
const CACHED_MESSAGES: usize = 64;

/// Decoded copies of the hottest reads: each query's record (never rewritten once
/// registered), and its latest committed result record with its last messages.
///
/// Every invocation and every wake-up tick reads query records, every invocation its result,
/// and every subscriber wake-up the result and the newest messages; decoding them from JSON
/// each time was ~12% of `kappa dev`'s CPU under push load. Only this process writes the
/// file, so the committer keeps these copies exact: it applies each result write (and each
/// removal) right after its commit, in commit order, before answering the writer. A miss is
/// filled from the file under the lock, so a fill can never overwrite a newer commit or bring
/// back a removed query.
pub(crate) struct Latest {
    inner: Mutex<Decoded>,
    /// Messages kept per query: never more than the ring holds, so a message the ring has
    /// trimmed is never served from here.
    keep: usize,
}

#[derive(Default)]
pub(crate) struct Decoded {
    pub(crate) queries: HashMap<String, QueryRecord>,
    pub(crate) results: HashMap<String, Recent>,
}

pub(crate) struct Recent {
    pub(crate) record: ResultRecord,
    /// A contiguous suffix of the ring (possibly empty), oldest first; shared with readers.
    pub(crate) messages: VecDeque<Arc<Message>>,
}

impl Latest {
    /// Empty, for a store keeping the last `ring` messages per query.
    pub(crate) fn new(ring: usize) -> Self {
        Latest { inner: Mutex::default(), keep: ring.min(CACHED_MESSAGES) }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Decoded> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a committed result write.
    pub(crate) fn committed(&self, id: &str, record: ResultRecord, message: Arc<Message>) {
        let mut decoded = self.lock();
        let results = &mut decoded.results;
        // A live query's entry exists: found without allocating its key.
        if !results.contains_key(id) {
            let recent = Recent { record: record.clone(), messages: VecDeque::new() };
            results.insert(id.to_string(), recent);
        }
        let Some(recent) = results.get_mut(id) else { return };
        recent.record = record;
        recent.messages.push_back(message);
        while recent.messages.len() > self.keep {
            recent.messages.pop_front();
        }
    }

    /// After a committed removal.
    pub(crate) fn removed(&self, id: &str) {
        let mut decoded = self.lock();
        decoded.queries.remove(id);
        decoded.results.remove(id);
    }
}
