//! Kappa's [`StateStore`] in one embedded database file, for `kappa dev` and single-machine use.
//!
//! Why it is shaped this way:
//! - **redb**, a pure-Rust ACID key-value store: no server to run, no C to build. Every
//!   compare-and-set is one write transaction (read, compare, write, commit), and redb's write
//!   transactions are serialized and reach the disk in commit order. So a CAS is atomic
//!   against concurrent callers in the process, and a CAS that returned `true` survives a
//!   `kill -9` (and, opened with fsync, a power cut) right after — at once for every write but
//!   checkpoints, which reach the file with the next result write or an idle flush
//!   (`pending.rs`): a crash can only lose checkpoints nothing outside has seen a result of,
//!   and those batches are folded again.
//! - **Group commit** (`committer.rs`). Writes (but checkpoints) go to one committer thread,
//!   which runs every write waiting at that moment in one transaction (each write's
//!   read-compare-write still sees the ones before it) and answers each caller after the
//!   commit (and its `fsync`): concurrent writers pay for one commit together, and a
//!   caller's thread never blocks on the disk. If any write of a batch fails, the batch is
//!   aborted and each write is run again alone, so one bad write never takes others down.
//!   Reads run on the caller's thread (`store.rs`). No runtime is needed (tokio, `pollster`
//!   or anything).
//! - **Decoded copies** of query records and of each query's latest result and messages
//!   (`cache.rs`), kept exact by the committer, so the hot reads decode no JSON.
//! - **No notifications.** The store wakes nobody: `kappa dev`'s scheduler wakes the
//!   subscribers of the queries a run committed (ARCHITECTURE.md §7), as the push action does
//!   in a deployment.
//! - **Layout** (`tables.rs`). Tables keyed by query id: `queries` (JSON record), `touch` and
//!   `refs` (integers), `checkpoints` keyed by `(id, segment.key())` (postcard: the binary
//!   state is stored as raw bytes), `results` (`(revision, version, JSON record)`, written
//!   every few versions: between, the messages after a row bring it up to date, `results.rs`),
//!   `subscriptions` (JSON array), and `messages`: every query's last messages in one table
//!   keyed by a store-wide sequence in commit order, with memory knowing which are whose
//!   (`ring.rs`), so a wake-up's appends share pages.
//!
//! A file is opened by this build or a later one: an older build (before `result_at`) would
//! read result rows up to 64 versions behind their messages.
//!
//! Only one process may open the file at a time (redb takes a lock); share one
//! [`EmbeddedStore`] (behind an `Arc`) between the tasks of a process.
//!
//! Test with: `cargo test -p kappa-state-embedded` (no service needed; includes a SIGKILL crash
//! test that re-runs the test binary as a child writer).

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use kappa_core::ports::{PortError, PortResult};
use redb::Database;
use tokio::sync::oneshot;

mod cache;
mod committer;
mod pending;
mod results;
mod ring;
mod store;
mod tables;
#[cfg(test)]
mod test_support;

use cache::Latest;
use committer::{Request, Typed, commit_loop};
use pending::SharedPending;
use ring::{RingIndex, SharedRing};
use tables::{BACKEND, CHECKPOINTS, db_error};

/// A [`StateStore`](kappa_core::ports::StateStore) in one redb file (see the crate docs).
pub struct EmbeddedStore {
    db: Arc<Database>,
    ring: usize,
    latest: Arc<Latest>,
    pending: SharedPending,
    /// Which of the file's messages are whose.
    messages: SharedRing,
    /// To the committer thread; `None` only while dropping.
    requests: Option<mpsc::Sender<Request>>,
    committer: Option<JoinHandle<()>>,
    /// Replay joiners ([`StateStore::take_joiners`]): in memory only, since a joiner lost with
    /// the process is started by the tick.
    joiners: std::sync::Mutex<kappa_core::ports::Joiners>,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Stop the committer and wait for it, so the file is closed (and can be opened again)
        // once the store is dropped.
        self.requests.take();
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("ring", &self.ring).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Open (or create) the store file at `path`, keeping the last `ring` messages per query.
    ///
    /// After an unclean shutdown redb checks and repairs the file here; committed transactions
    /// are kept. Fails when another process (or another `EmbeddedStore` in this one) has the
    /// file open.
    pub fn open(path: &Path, ring: usize) -> Result<Self, PortError> {
        Self::open_with(path, ring, true)
    }

    /// [`EmbeddedStore::open`], choosing whether commits wait for `fsync`.
    ///
    /// Without it (`fsync: false`) a commit is written to the file (the kernel's page cache)
    /// in redb's commit order before it returns, so it survives a crash of the process
    /// (`kill -9`) but not necessarily of the machine — the same promise as
    /// the embedded log's without fsync, which is what `kappa dev` runs by default:
    /// a store that outlives a power cut is worth little next to a log that may not.
    pub fn open_with(path: &Path, ring: usize, fsync: bool) -> Result<Self, PortError> {
        let db = Arc::new(tables::open(path, fsync)?);
        let (requests, queue) = mpsc::channel();
        let pending = SharedPending::default();
        let ring_index = RingIndex::load(&db)?;
        results::bring_rows_up_to_date(&db, &ring_index)?;
        let messages: SharedRing = Arc::new(std::sync::Mutex::new(ring_index));
        let committer = {
            let (db, pending, messages) = (db.clone(), pending.clone(), messages.clone());
            std::thread::Builder::new()
                .name("kappa-store-commit".into())
                .spawn(move || commit_loop(db, queue, pending, messages))
                .map_err(|e| {
                    PortError::permanent(BACKEND, format!("cannot start the committer: {e}"))
                })?
        };
        Ok(EmbeddedStore {
            db,
            ring,
            latest: Arc::new(Latest::new(ring)),
            pending,
            messages,
            requests: Some(requests),
            committer: Some(committer),
            joiners: Default::default(),
        })
    }

    fn joiners_lock(&self) -> std::sync::MutexGuard<'_, kappa_core::ports::Joiners> {
        self.joiners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of messages kept per query.
    pub fn ring(&self) -> usize {
        self.ring
    }

    /// Run `f` in a durable write transaction (shared with the writes waiting at the same
    /// time) and return its output once committed; an `Err` commits nothing of `f`.
    async fn write<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl Fn(&redb::WriteTransaction) -> PortResult<T> + Send + 'static,
    ) -> PortResult<T> {
        self.write_then(what, |_: &T| {}, f).await
    }

    /// [`EmbeddedStore::write`], then `on_commit` with its output once committed (before the
    /// caller is answered).
    async fn write_then<T: Send + 'static>(
        &self,
        what: &'static str,
        on_commit: impl FnOnce(&T) + Send + 'static,
        f: impl Fn(&redb::WriteTransaction) -> PortResult<T> + Send + 'static,
    ) -> PortResult<T> {
        let (reply, answer) = oneshot::channel();
        let stopped = || PortError::permanent(BACKEND, format!("{what}: the committer stopped"));
        self.requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(Box::new(Typed::new(what, f, on_commit, reply)))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// A checkpoint as the file has it, encoded.
    fn file_checkpoint(&self, id: &str, segment: &str) -> PortResult<Option<Vec<u8>>> {
        let tx = self.read_tx("checkpoint")?;
        let t = tx.open_table(CHECKPOINTS).map_err(|e| db_error("checkpoint", e))?;
        let raw = t.get((id, segment)).map_err(|e| db_error("checkpoint", e))?;
        Ok(raw.map(|r| r.value().to_vec()))
    }

    fn read_tx(&self, what: &str) -> PortResult<redb::ReadTransaction> {
        self.db.begin_read().map_err(|e| db_error(what, e))
    }
}
