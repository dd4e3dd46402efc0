//! Write-back of checkpoints: decided and kept in memory, written with the next commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Checkpoints written but not yet in the file, by `(query id, segment key)`.
///
/// A checkpoint compare-and-set is decided here, on the caller's thread, against this map or
/// else the file, and is visible to every reader at once; the committer writes the map into
/// the file at the start of its next transaction (the next result write, which is synced, or
/// an idle flush) and then forgets the entries it wrote. So a live batch costs one commit
/// (its result) instead of two, and a checkpoint reaches the disk no later than any result
/// derived from it: the same file, the same or an earlier transaction. A crash loses at most
/// checkpoints nothing outside has seen a result of, and those batches are folded again.
///
/// Once written, a checkpoint stays here as a copy of the file's (`in_file`), so the next
/// invocation's load and the wake-up ticks' reads of a live query never go to the file.
///
/// The committer holds the lock only to take the writes (their bytes shared, not copied:
/// [`Pending::to_write`]) and to forget them after the commit, not while it writes them:
/// with thousands of live segments that write took milliseconds of every wake-up, during
/// which every checkpoint read and compare-and-set of the process waited.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) writes: HashMap<CheckpointKey, PendingWrite>,
    /// Checkpoints equal to the file's (`(next_offset, encoded)`), no larger than
    /// [`CACHED_CHECKPOINT_BYTES`]. Changed only under the lock, by the committer after a
    /// commit, by a fill from the file of a key absent from both maps, and by removals.
    in_file: HashMap<CheckpointKey, (i64, Arc<Vec<u8>>)>,
    /// Numbers the writes, so the committer forgets only what it wrote.
    count: u64,
}

pub(crate) struct PendingWrite {
    pub(crate) number: u64,
    next_offset: i64,
    /// Shared with the committer while it writes it.
    encoded: Arc<Vec<u8>>,
}

/// A checkpoint's key: `(query id, segment key)`.
pub(crate) type CheckpointKey = (String, String);

/// A pending write as the committer takes it: its key, its number and its bytes.
pub(crate) type ToWrite = (CheckpointKey, u64, Arc<Vec<u8>>);

/// Largest checkpoint kept in memory once it is in the file (a state near its memory budget
/// is read from the file instead of being held twice).
const CACHED_CHECKPOINT_BYTES: usize = 64 << 10;

pub(crate) type SharedPending = Arc<Mutex<Pending>>;

pub(crate) fn lock_pending(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pending {
    /// The checkpoint of `key` if memory has it: written and not yet in the file, or a copy
    /// of the file's.
    pub(crate) fn get(&self, key: &(String, String)) -> Option<(i64, &[u8])> {
        match self.writes.get(key) {
            Some(w) => Some((w.next_offset, &w.encoded)),
            None => self.in_file.get(key).map(|(next, encoded)| (*next, encoded.as_slice())),
        }
    }

    /// The writes for the committer's next transaction. A key written again meanwhile is a
    /// newer write, which [`Pending::committed`] keeps; a reader finds either in `writes`
    /// until then, and only then the file holds this one.
    pub(crate) fn to_write(&self) -> Vec<ToWrite> {
        self.writes.iter().map(|(k, w)| (k.clone(), w.number, w.encoded.clone())).collect()
    }

    /// Remember `encoded`, just read from the file for `key` (absent from both maps).
    pub(crate) fn filled(&mut self, key: (String, String), next_offset: i64, encoded: &[u8]) {
        if encoded.len() <= CACHED_CHECKPOINT_BYTES {
            self.in_file.insert(key, (next_offset, Arc::new(encoded.to_vec())));
        }
    }

    /// A checkpoint write, decided: for the committer to write into the file.
    pub(crate) fn write(&mut self, key: (String, String), next_offset: i64, encoded: Vec<u8>) {
        self.count += 1;
        let number = self.count;
        self.writes.insert(key, PendingWrite { number, next_offset, encoded: Arc::new(encoded) });
    }

    /// After the commit of the `written` writes (key and number).
    pub(crate) fn committed(&mut self, written: Vec<((String, String), u64)>) {
        // In the file now: keep them as copies of the file's, unless written again meanwhile.
        for (key, number) in written {
            if self.writes.get(&key).is_some_and(|w| w.number == number)
                && let Some(w) = self.writes.remove(&key)
            {
                if w.encoded.len() <= CACHED_CHECKPOINT_BYTES {
                    self.in_file.insert(key, (w.next_offset, w.encoded));
                } else {
                    self.in_file.remove(&key);
                }
            }
        }
    }

    /// After the committed removal of query `id`.
    pub(crate) fn removed(&mut self, id: &str) {
        // Written after the removal was queued: gone with the query too.
        self.writes.retain(|(written, _), _| written != id);
        self.in_file.retain(|(written, _), _| written != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;
    use crate::committer::commit;
    use kappa_core::ports::{Checkpoint, Segment, StateStore};

    fn checkpoint(n: i64, bytes: usize) -> Checkpoint {
        Checkpoint { next_offset: n, state: vec![7; bytes], head: n, lost: 0 }
    }

    /// The committer writes what it took without the lock, so a key may be written again
    /// meanwhile: readers see the newer write, and the commit of the older one does not
    /// replace it (the newer one reaches the file with the next commit).
    #[test]
    fn a_checkpoint_written_again_while_the_committer_writes_it_keeps_the_newer_write() {
        let mut pending = Pending::default();
        let key = ("q".to_string(), "p0@0".to_string());
        let numbers = |taken: Vec<ToWrite>| taken.into_iter().map(|(k, n, _)| (k, n)).collect();
        pending.write(key.clone(), 1, vec![1]);
        let taken = pending.to_write();
        assert_eq!(taken.len(), 1);
        pending.write(key.clone(), 2, vec![2]);
        assert_eq!(pending.get(&key), Some((2, &[2u8][..])), "the newer write is read");
        pending.committed(numbers(taken));
        assert_eq!(pending.get(&key), Some((2, &[2u8][..])), "not replaced by the older");
        assert!(pending.writes.contains_key(&key), "still to be written");
        let taken = pending.to_write();
        assert_eq!(taken[0].2.as_slice(), &[2u8][..]);
        pending.committed(numbers(taken));
        assert!(pending.writes.is_empty(), "written");
        assert_eq!(pending.get(&key), Some((2, &[2u8][..])), "kept as the file's copy");
    }

    /// Only checkpoints up to `CACHED_CHECKPOINT_BYTES` stay in memory once in the file, whether
    /// they got there by a commit or by a read of the file.
    #[test]
    fn only_small_checkpoints_stay_in_memory_once_in_the_file() {
        let dir = std::env::temp_dir().join(format!("kappa-cp-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.redb");
        let (small, big) = (
            Segment { partition: 0, start: 0, end: None },
            Segment { partition: 1, start: 0, end: None },
        );
        let key = |s: &Segment| ("q".to_string(), s.key());
        let in_memory = |store: &EmbeddedStore, s: &Segment| {
            lock_pending(&store.pending).in_file.contains_key(&key(s))
        };
        let store = EmbeddedStore::open_with(&path, 4, false).unwrap();
        pollster::block_on(async {
            let over = CACHED_CHECKPOINT_BYTES + 1;
            assert!(
                store
                    .compare_and_set_checkpoint("q", &small, None, &checkpoint(1, 8))
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .compare_and_set_checkpoint("q", &big, None, &checkpoint(1, over))
                    .await
                    .unwrap()
            );
            // What the committer does with pending checkpoints (here without waiting for it).
            commit(&store.db, &store.pending, &store.messages, &mut []).unwrap();
            assert!(in_memory(&store, &small), "a small checkpoint is kept after its commit");
            assert!(!in_memory(&store, &big), "a large one is not");
            assert_eq!(store.checkpoint("q", &big).await.unwrap(), Some(checkpoint(1, over)));
            assert!(!in_memory(&store, &big), "nor after a read of the file");
        });
        drop(store);
        let store = EmbeddedStore::open_with(&path, 4, false).unwrap();
        pollster::block_on(async {
            assert!(!in_memory(&store, &small), "a reopened store starts empty");
            assert_eq!(store.checkpoint("q", &small).await.unwrap(), Some(checkpoint(1, 8)));
            assert!(in_memory(&store, &small), "a small one read from the file is kept");
        });
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
