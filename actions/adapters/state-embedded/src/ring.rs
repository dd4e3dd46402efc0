//! Each query's last messages, stored in commit order.
//!
//! The file keeps every query's messages in one table keyed by a store-wide sequence
//! (`messages`: sequence → `(query id, version, message JSON)`), and memory keeps which
//! sequences belong to which query ([`RingIndex`], rebuilt from the file on open).
//!
//! Why not a table keyed by `(query id, n)`: a live wake-up appends one message to each of
//! its queries, and in a copy-on-write B-tree keyed by query each append dirties that query's
//! own leaf page (and trimming a full ring another one), so 100 queries meant 100–200 page
//! copies per commit. Keyed in commit order, one wake-up's messages fill a few adjacent pages,
//! and trimming removes messages that were written together, so they too share pages. The
//! 100-query wake-up of `live_bench` costs 20–28% less this way (BENCHMARKS.md, #14).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use kappa_core::Message;
use kappa_core::ports::PortResult;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableHandle, WriteTransaction};

use crate::results::Written;
use crate::tables::{MESSAGES, db_error, from_json, table};

/// Which sequences of `messages` hold each query's messages, oldest first, with their
/// versions (so a reader picks the messages after a version without decoding any).
///
/// Changed only by the committer, inside its transactions: writes run in the open transaction
/// change it at once, so each write of a batch sees the ones before it. When a transaction is
/// aborted or its commit fails, the committer marks it [`RingIndex::aborted`], and the next
/// write rebuilds it from its own transaction before changing anything, so it never keeps a
/// change the file does not have (nor reuses a sequence).
///
/// A reader opens its read transaction first, then takes the sequences from here, and skips
/// any its snapshot lacks: they were written after it (newer than the version it read) or
/// are from an aborted batch. A sequence trimmed after its snapshot is simply not asked for;
/// the reader then sees a gap, as if it had read a moment later (`ring_since`).
#[derive(Debug, Default)]
pub(crate) struct RingIndex {
    /// The next sequence to write.
    next: u64,
    of: HashMap<String, VecDeque<Entry>>,
    /// What the committer knows of each query's result (`results.rs`): filled as results are
    /// written or first looked up, and emptied with the rest when stale.
    pub(crate) written: HashMap<String, Written>,
    /// A transaction that changed it did not commit: rebuild before the next change.
    stale: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) sequence: u64,
    pub(crate) version: u64,
}

/// Each query's entries, for comparing indexes in tests.
#[cfg(test)]
pub(crate) type Rings = HashMap<String, Vec<Entry>>;

/// A row of `messages`: query id, message version, message JSON.
pub(crate) type Row = (&'static str, u64, &'static [u8]);

const LOAD: &str = "load the message ring";

pub(crate) type SharedRing = Arc<Mutex<RingIndex>>;

pub(crate) fn lock_ring(ring: &Mutex<RingIndex>) -> MutexGuard<'_, RingIndex> {
    ring.lock().unwrap_or_else(|e| e.into_inner())
}

impl RingIndex {
    /// The index of the messages committed in `db`.
    pub(crate) fn load(db: &Database) -> PortResult<Self> {
        let tx = db.begin_read().map_err(|e| db_error(LOAD, e))?;
        Self::from_table(&table!(tx, MESSAGES, LOAD))
    }

    fn from_table(messages: &impl ReadableTable<u64, Row>) -> PortResult<Self> {
        let mut index = RingIndex::default();
        for row in messages.iter().map_err(|e| db_error(LOAD, e))? {
            let (sequence, value) = row.map_err(|e| db_error(LOAD, e))?;
            let (sequence, (id, version, _)) = (sequence.value(), value.value());
            index.of.entry(id.to_string()).or_default().push_back(Entry { sequence, version });
            index.next = sequence + 1;
        }
        Ok(index)
    }

    /// A transaction that changed the index was aborted or failed to commit.
    pub(crate) fn aborted(&mut self) {
        self.stale = true;
    }

    /// Rebuild from `messages` (in the write transaction about to change it) if stale.
    pub(crate) fn fresh(&mut self, messages: &impl ReadableTable<u64, Row>) -> PortResult<()> {
        if self.stale {
            *self = Self::from_table(messages)?;
        }
        Ok(())
    }

    /// Append `message` (its JSON `encoded`) to `id`'s ring in `messages`, open in the write
    /// transaction, then trim the ring to its last `keep` messages; returns the message's
    /// sequence.
    pub(crate) fn append(
        &mut self,
        messages: &mut redb::Table<'_, u64, Row>,
        id: &str,
        message: &Message,
        encoded: &[u8],
        keep: usize,
    ) -> PortResult<u64> {
        let what = "append to the message ring";
        self.fresh(messages)?;
        let entry = Entry { sequence: self.next, version: message.version() };
        messages
            .insert(entry.sequence, (id, entry.version, encoded))
            .map_err(|e| db_error(what, e))?;
        self.next += 1;
        let ring = match self.of.get_mut(id) {
            Some(ring) => ring,
            None => self.of.entry(id.to_string()).or_default(),
        };
        ring.push_back(entry);
        while ring.len() > keep {
            let Some(oldest) = ring.pop_front() else { break };
            messages.remove(oldest.sequence).map_err(|e| db_error(what, e))?;
        }
        Ok(entry.sequence)
    }

    /// Remove all of `id`'s messages in `tx`.
    pub(crate) fn remove(&mut self, tx: &WriteTransaction, id: &str) -> PortResult<()> {
        let what = "remove from the message ring";
        let mut messages = table!(tx, MESSAGES, what);
        self.fresh(&messages)?;
        self.written.remove(id);
        let Some(ring) = self.of.remove(id) else { return Ok(()) };
        for entry in ring {
            messages.remove(entry.sequence).map_err(|e| db_error(what, e))?;
        }
        Ok(())
    }

    /// The sequences of `id`'s messages after `version`, oldest first.
    pub(crate) fn after(&self, id: &str, version: u64) -> Vec<u64> {
        let Some(ring) = self.of.get(id) else { return Vec::new() };
        // Versions never decrease along a ring: the newest end holds the ones wanted.
        let first = ring.iter().rposition(|e| e.version <= version).map_or(0, |i| i + 1);
        ring.range(first..).map(|e| e.sequence).collect()
    }

    /// `id`'s messages after `sequence`, oldest first.
    pub(crate) fn entries_after(&self, id: &str, sequence: u64) -> Vec<Entry> {
        let Some(ring) = self.of.get(id) else { return Vec::new() };
        let first = ring.partition_point(|e| e.sequence <= sequence);
        ring.range(first..).copied().collect()
    }

    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> (u64, Rings) {
        let of = self.of.iter().map(|(id, ring)| (id.clone(), ring.iter().copied().collect()));
        (self.next, of.collect())
    }
}

/// Read `id`'s messages at `sequences` in `tx`, skipping those its snapshot lacks (see
/// [`RingIndex`]).
pub(crate) fn read_messages(
    tx: &redb::ReadTransaction,
    id: &str,
    sequences: &[u64],
) -> PortResult<Vec<Arc<Message>>> {
    let what = "messages_since";
    let messages = table!(tx, MESSAGES, what);
    let mut out = Vec::with_capacity(sequences.len());
    for &sequence in sequences {
        let Some(row) = messages.get(sequence).map_err(|e| db_error(what, e))? else { continue };
        let (owner, _, raw) = row.value();
        // Never another query's message, whatever the index says (a guard: reading the
        // snapshot before the index already keeps a reused sequence out of it).
        if owner == id {
            out.push(Arc::new(from_json::<Message>("ring message", raw)?));
        }
    }
    Ok(out)
}

/// The rings before #14: messages keyed by `(id, n)`, and each id's `(first, next)`.
const OLD_RING: redb::TableDefinition<'static, (&str, u64), &[u8]> =
    redb::TableDefinition::new("ring");
const OLD_BOUNDS: redb::TableDefinition<'static, &str, (u64, u64)> =
    redb::TableDefinition::new("ring_bounds");

/// Move a file's messages from the layout before #14 (`ring` keyed by `(id, n)`, with
/// `ring_bounds`) into `messages`, in `tx`, and drop the old tables. Each query's messages
/// keep their order; nothing is done when the file has no old tables.
pub(crate) fn migrate_old_layout(tx: &WriteTransaction) -> PortResult<()> {
    let what = "move the message ring to its new layout";
    let has_old = tx
        .list_tables()
        .map_err(|e| db_error(what, e))?
        .any(|t| t.name() == OLD_RING.name() || t.name() == OLD_BOUNDS.name());
    if !has_old {
        return Ok(());
    }
    {
        let old = table!(tx, OLD_RING, what);
        let mut messages = table!(tx, MESSAGES, what);
        let first = match messages.last().map_err(|e| db_error(what, e))? {
            Some((sequence, _)) => sequence.value() + 1,
            None => 0,
        };
        tracing::info!(messages = old.len().map_err(|e| db_error(what, e))?, "{what}");
        for (sequence, row) in (first..).zip(old.iter().map_err(|e| db_error(what, e))?) {
            let (key, raw) = row.map_err(|e| db_error(what, e))?;
            let (id, _) = key.value();
            let version = from_json::<Message>("ring message", raw.value())?.version();
            messages.insert(sequence, (id, version, raw.value())).map_err(|e| db_error(what, e))?;
        }
    }
    tx.delete_table(OLD_RING).map_err(|e| db_error(what, e))?;
    tx.delete_table(OLD_BOUNDS).map_err(|e| db_error(what, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;
    use crate::committer::{Request, Typed, commit};
    use kappa_core::conformance::delta;
    use kappa_core::ports::{PortError, Progress, ResultRecord, StateStore};

    fn scratch(name: &str) -> std::path::PathBuf {
        crate::test_support::scratch("ring", name)
    }

    fn result(version: u64) -> ResultRecord {
        ResultRecord {
            revision: version,
            version,
            caught_up: true,
            progress: Progress::default(),
            result: serde_json::json!({"n": version}).into(),
            error: None,
        }
    }

    /// Write `id`'s result `version` (expecting `version - 1`) with its delta.
    async fn publish(store: &EmbeddedStore, id: &str, version: u64) -> bool {
        let (expected, message) = (version - 1, delta(version, 0));
        store.compare_and_set_result(id, expected, &result(version), message).await.unwrap()
    }

    /// The rings as the file has them and as memory has them, and the file's next sequence.
    fn both(store: &EmbeddedStore) -> (Rings, Rings, u64) {
        let (next, in_file) = RingIndex::load(&store.db).unwrap().snapshot();
        let (_, in_memory) = lock_ring(&store.messages).snapshot();
        (in_file, in_memory, next)
    }

    /// Three queries writing in turn, with a ring of 3: each keeps its own last 3 messages, in
    /// the file and in memory alike, and the sequences follow the commit order.
    #[test]
    fn each_query_keeps_its_last_messages_while_others_write() {
        let path = scratch("interleaved");
        let store = EmbeddedStore::open_with(&path, 3, false).unwrap();
        pollster::block_on(async {
            for version in 1..=5u64 {
                for id in ["a", "b", "c"] {
                    assert!(publish(&store, id, version).await);
                }
            }
            let (in_file, in_memory, next) = both(&store);
            assert_eq!(in_file, in_memory);
            assert_eq!(next, 15, "one sequence per message written");
            for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
                let ring = &in_file[id];
                assert_eq!(ring.iter().map(|e| e.version).collect::<Vec<_>>(), [3, 4, 5]);
                let i = i as u64;
                let expected = [6 + i, 9 + i, 12 + i];
                assert_eq!(ring.iter().map(|e| e.sequence).collect::<Vec<_>>(), expected);
                let since = store.messages_since(id, 2).await.unwrap().unwrap();
                assert_eq!(since, (3..=5).map(|v| delta(v, 0)).collect::<Vec<_>>());
            }
            store.remove("b").await.unwrap();
            let (in_file, in_memory, _) = both(&store);
            assert_eq!(in_file, in_memory);
            assert!(!in_file.contains_key("b"), "a removed query's messages are gone");
            assert_eq!(in_file.len(), 2);
        });
        drop(store);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// A batch whose last write fails is aborted with the ring changes of the writes before
    /// it; the index must not keep them (or reuse their sequences wrongly) afterwards.
    #[test]
    fn an_aborted_batch_leaves_no_trace_in_the_index() {
        let path = scratch("aborted");
        let store = EmbeddedStore::open_with(&path, 2, false).unwrap();
        pollster::block_on(async {
            for version in 1..=2u64 {
                assert!(publish(&store, "a", version).await);
            }
        });
        let before = both(&store);
        // An append that also trims "a" (its ring is full), then a write that fails.
        let messages = store.messages.clone();
        let append = move |tx: &redb::WriteTransaction| {
            let message = delta(3, 9);
            let encoded = serde_json::to_vec(&message).unwrap();
            let mut table = tx.open_table(MESSAGES).unwrap();
            lock_ring(&messages).append(&mut table, "a", &message, &encoded, 2).map(|_| ())
        };
        let (reply, _) = tokio::sync::oneshot::channel();
        let mut batch: Vec<Request> = vec![
            Box::new(Typed::new("append", append, |_: &()| {}, reply)),
            crate::test_support::failing_write(),
        ];
        let failed: PortError =
            commit(&store.db, &store.pending, &store.messages, &mut batch).unwrap_err();
        assert!(failed.to_string().contains("injected"), "{failed}");
        assert_eq!(both(&store).0, before.0, "the file is unchanged");
        // The next write sees the file's ring: v1 and v2, then v3 trims v1.
        pollster::block_on(async {
            assert!(publish(&store, "a", 3).await);
            let (in_file, in_memory, _) = both(&store);
            assert_eq!(in_file, in_memory);
            assert_eq!(in_file["a"].iter().map(|e| e.version).collect::<Vec<_>>(), [2, 3]);
            let since = store.messages_since("a", 1).await.unwrap().unwrap();
            assert_eq!(since, vec![delta(2, 0), delta(3, 0)], "not the aborted batch's message");
        });
        drop(store);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// A file written with the layout before #14 (`ring` by `(id, n)` and `ring_bounds`)
    /// opens with its messages moved to `messages`, and its rings go on from there.
    #[test]
    fn a_file_of_the_old_layout_keeps_its_messages() {
        let path = scratch("old-layout");
        {
            // What the old store wrote for "a" (v1..=3, ring of 3) and "b" (v1, v2).
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut ring = tx.open_table(OLD_RING).unwrap();
                let mut bounds = tx.open_table(OLD_BOUNDS).unwrap();
                let mut results = tx.open_table(crate::tables::RESULTS).unwrap();
                for (id, last) in [("a", 3u64), ("b", 2)] {
                    for v in 1..=last {
                        let raw = serde_json::to_vec(&delta(v, 0)).unwrap();
                        ring.insert((id, v - 1), raw.as_slice()).unwrap();
                    }
                    bounds.insert(id, (0, last)).unwrap();
                    let record = serde_json::to_vec(&result(last)).unwrap();
                    results.insert(id, (last, last, record.as_slice())).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let store = EmbeddedStore::open_with(&path, 3, false).unwrap();
        let names: Vec<String> = {
            let tx = store.db.begin_read().unwrap();
            tx.list_tables().unwrap().map(|t| t.name().to_string()).collect()
        };
        assert!(!names.iter().any(|n| n == "ring" || n == "ring_bounds"), "{names:?}");
        pollster::block_on(async {
            let all = |last: u64| (1..=last).map(|v| delta(v, 0)).collect::<Vec<_>>();
            assert_eq!(store.messages_since("a", 0).await.unwrap(), Some(all(3)));
            assert_eq!(store.messages_since("b", 0).await.unwrap(), Some(all(2)));
            // "a" goes on: v4 trims v1.
            assert!(publish(&store, "a", 4).await);
            assert_eq!(store.messages_since("a", 0).await.unwrap(), None, "v1 was trimmed");
            let since = store.messages_since("a", 1).await.unwrap().unwrap();
            assert_eq!(since, (2..=4).map(|v| delta(v, 0)).collect::<Vec<_>>());
            let (in_file, in_memory, _) = both(&store);
            assert_eq!(in_file, in_memory);
        });
        drop(store);
        // Opened again, nothing is moved twice.
        let store = EmbeddedStore::open_with(&path, 3, false).unwrap();
        pollster::block_on(async {
            let since = store.messages_since("a", 1).await.unwrap().unwrap();
            assert_eq!(since, (2..=4).map(|v| delta(v, 0)).collect::<Vec<_>>());
        });
        drop(store);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
