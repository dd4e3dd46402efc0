//! Kappa's [`StateStore`] in one embedded database file, for `kappa dev` and single-machine use.
//!
//! Why it is shaped this way:
//! - **redb**, a pure-Rust ACID key-value store: no server to run, no C to build. Every
//!   compare-and-set is one write transaction (read, compare, write, commit), and redb's write
//!   transactions are serialized and reach the disk in commit order. So a CAS is atomic
//!   against concurrent callers in the process, and a CAS that returned `true` survives a
//!   `kill -9` (and, opened with fsync, a power cut) right after — at once for every write but
//!   checkpoints, which reach the file with the next result write or an idle flush
//!   (`Pending`): a crash can only lose checkpoints nothing outside has seen a result of, and
//!   those batches are folded again.
//! - **Group commit.** Writes (but checkpoints, see `Pending`) go to one committer thread,
//!   which runs every write waiting at that moment in one transaction (each write's
//!   read-compare-write still sees the ones before it) and answers each caller after the
//!   commit (and its `fsync`): concurrent writers pay for one commit together, and a
//!   caller's thread never blocks on the disk. If any write of a batch fails, the batch is
//!   aborted and each write is run again alone, so one bad write never takes others down.
//!   Reads run on the caller's thread. No runtime is needed (tokio, `pollster` or anything).
//! - **Decoded copies** of query records and of each query's latest result and messages
//!   (`Latest`), kept exact by the committer, so the hot reads decode no JSON.
//! - **No notifications.** The store wakes nobody: `kappa dev`'s scheduler wakes the
//!   subscribers of the queries a run committed (ARCHITECTURE.md §7), as the push action does
//!   in a deployment.
//! - **Layout.** Tables keyed by query id: `queries` (JSON record), `touch` and `refs`
//!   (integers), `checkpoints` keyed by `(id, segment.key())` (postcard: the binary state is
//!   stored as raw bytes), `results` (`(revision, version, JSON record)`, so the CAS compares
//!   without decoding), `ring` keyed by `(id, sequence)` with `ring_bounds` `(first, next)` per
//!   id, and `subscriptions` (JSON array).
//!
//! Only one process may open the file at a time (redb takes a lock); share one
//! [`EmbeddedStore`] (behind an `Arc`) between the tasks of a process.
//!
//! Test with: `cargo test -p kappa-state-embedded` (no service needed; includes a SIGKILL crash
//! test that re-runs the test binary as a child writer).

use std::any::Any;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use kappa_core::Message;
use kappa_core::ports::{
    Checkpoint, PortError, PortResult, Position, QueryRecord, ResultRecord, Segment, StateStore,
    Subscription, ring_since,
};
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

const BACKEND: &str = "embedded-state";

const QUERIES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("queries");
const TOUCH: TableDefinition<'static, &str, i64> = TableDefinition::new("touch");
const REFS: TableDefinition<'static, &str, i64> = TableDefinition::new("refs");
const CHECKPOINTS: TableDefinition<'static, (&str, &str), &[u8]> =
    TableDefinition::new("checkpoints");
const RESULTS: TableDefinition<'static, &str, (u64, u64, &[u8])> = TableDefinition::new("results");
const RING: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("ring");
const RING_BOUNDS: TableDefinition<'static, &str, (u64, u64)> = TableDefinition::new("ring_bounds");
const SUBSCRIPTIONS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("subscriptions");

/// Most writes committed by one transaction.
const MAX_BATCH: usize = 256;

/// What a write returns to its caller (see [`EmbeddedStore::write`]), and whether its
/// `on_commit` is to run.
type Output = (Box<dyn Any + Send>, bool);
/// One write: runs inside a shared transaction, and again alone if its batch fails.
type Op = Box<dyn Fn(&redb::WriteTransaction) -> PortResult<Output> + Send>;

/// What a write does in memory once committed.
type OnCommit = Box<dyn FnOnce() + Send>;

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
struct Latest {
    inner: Mutex<Decoded>,
    /// Messages kept per query: never more than the ring holds, so a message the ring has
    /// trimmed is never served from here.
    keep: usize,
}

#[derive(Default)]
struct Decoded {
    queries: HashMap<String, QueryRecord>,
    results: HashMap<String, Recent>,
}

struct Recent {
    record: ResultRecord,
    /// A contiguous suffix of the ring (possibly empty), oldest first; shared with readers.
    messages: VecDeque<Arc<Message>>,
}

impl Latest {
    fn lock(&self) -> MutexGuard<'_, Decoded> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a committed result write.
    fn committed(&self, id: &str, record: ResultRecord, message: Arc<Message>) {
        let mut decoded = self.lock();
        let recent = match decoded.results.entry(id.to_string()) {
            Entry::Occupied(e) => {
                let recent = e.into_mut();
                recent.record = record;
                recent
            }
            Entry::Vacant(e) => e.insert(Recent { record, messages: VecDeque::new() }),
        };
        recent.messages.push_back(message);
        while recent.messages.len() > self.keep {
            recent.messages.pop_front();
        }
    }

    /// After a committed removal.
    fn removed(&self, id: &str) {
        let mut decoded = self.lock();
        decoded.queries.remove(id);
        decoded.results.remove(id);
    }
}

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
#[derive(Default)]
struct Pending {
    writes: HashMap<(String, String), PendingWrite>,
    /// Checkpoints equal to the file's (`(next_offset, encoded)`), no larger than
    /// [`CACHED_CHECKPOINT_BYTES`]. Changed only under the lock, by the committer after a
    /// commit, by a fill from the file of a key absent from both maps, and by removals.
    in_file: HashMap<(String, String), (i64, Vec<u8>)>,
    /// Numbers the writes, so the committer forgets only what it wrote.
    count: u64,
}

/// The position of an encoded [`Checkpoint`], its state borrowed rather than copied (postcard
/// writes a `Vec<u8>` as a length and the bytes, which `&[u8]` reads in place).
fn position_of(encoded: &[u8]) -> PortResult<Position> {
    #[derive(serde::Deserialize)]
    struct Borrowed<'a> {
        next_offset: i64,
        #[serde(borrow)]
        _state: &'a [u8],
        head: i64,
        lost: u64,
    }
    let c: Borrowed<'_> = postcard::from_bytes(encoded).map_err(|e| corrupt("checkpoint", e))?;
    Ok(Position { next_offset: c.next_offset, head: c.head, lost: c.lost })
}

/// Largest checkpoint kept in memory once it is in the file (a state near its memory budget
/// is read from the file instead of being held twice).
const CACHED_CHECKPOINT_BYTES: usize = 64 << 10;

impl Pending {
    /// The checkpoint of `key` if memory has it: written and not yet in the file, or a copy
    /// of the file's.
    fn get(&self, key: &(String, String)) -> Option<(i64, &[u8])> {
        match self.writes.get(key) {
            Some(w) => Some((w.next_offset, &w.encoded)),
            None => self.in_file.get(key).map(|(next, encoded)| (*next, encoded.as_slice())),
        }
    }

    /// Remember `encoded`, just read from the file for `key` (absent from both maps).
    fn filled(&mut self, key: (String, String), next_offset: i64, encoded: &[u8]) {
        if encoded.len() <= CACHED_CHECKPOINT_BYTES {
            self.in_file.insert(key, (next_offset, encoded.to_vec()));
        }
    }
}

struct PendingWrite {
    number: u64,
    next_offset: i64,
    encoded: Vec<u8>,
}

/// How long the committer leaves checkpoints in memory when no other write comes.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(50);

type SharedPending = Arc<Mutex<Pending>>;

fn lock_pending(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// A write waiting for the committer.
struct Request {
    what: &'static str,
    op: Op,
    /// Run right after the commit if the write says so, before the caller is answered (so in
    /// commit order, and a caller's next read sees its effects).
    on_commit: Option<OnCommit>,
    reply: oneshot::Sender<PortResult<Box<dyn Any + Send>>>,
}

/// A [`PortError`] for a failed database operation: I/O errors are transient (the transaction
/// was aborted and nothing changed), everything else (corruption, a file locked by another
/// process, a schema mismatch) is permanent.
fn db_error(what: &str, e: impl Into<redb::Error>) -> PortError {
    let e: redb::Error = e.into();
    let message = format!("{what}: {e}");
    match e {
        redb::Error::Io(_) => PortError::transient(BACKEND, message),
        _ => PortError::permanent(BACKEND, message),
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> PortError {
    PortError::permanent(BACKEND, format!("corrupt {what}: {detail}"))
}

fn to_json<T: serde::Serialize + ?Sized>(what: &str, value: &T) -> PortResult<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| PortError::permanent(BACKEND, format!("cannot encode {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, raw: &[u8]) -> PortResult<T> {
    serde_json::from_slice(raw).map_err(|e| corrupt(what, e))
}

/// A [`StateStore`] in one redb file (see the crate docs).
pub struct EmbeddedStore {
    db: Arc<Database>,
    ring: usize,
    latest: Arc<Latest>,
    pending: SharedPending,
    /// To the committer thread; `None` only while dropping.
    requests: Option<mpsc::Sender<Request>>,
    committer: Option<JoinHandle<()>>,
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

/// The committer thread: run the waiting writes in one transaction, answer after the commit.
fn commit_loop(db: Arc<Database>, requests: mpsc::Receiver<Request>, pending: SharedPending) {
    loop {
        let first = match requests.recv_timeout(IDLE_FLUSH) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !lock_pending(&pending).writes.is_empty()
                    && let Err(e) = commit(&db, &pending, &[])
                {
                    // No caller to answer: the checkpoints stay pending for the next commit.
                    tracing::warn!(error = %e, "flushing checkpoints failed; retried with the next write");
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Closing: the checkpoints still in memory go to the file.
                if let Err(e) = commit(&db, &pending, &[]) {
                    // Lost like a crash would lose them: their batches are folded again.
                    tracing::warn!(error = %e, "flushing checkpoints on close failed");
                }
                return;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let outcomes = match commit(&db, &pending, &batch) {
            Ok(outs) => outs.into_iter().map(Ok).collect(),
            Err(e) if batch.len() == 1 => vec![Err(e)],
            // Isolate the failing write: each one again, alone.
            Err(_) => batch
                .iter()
                .map(|r| commit(&db, &pending, std::slice::from_ref(r)).map(|mut o| o.remove(0)))
                .collect::<Vec<_>>(),
        };
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            let reply = outcome.map(|(out, applies)| {
                if let Some(on_commit) = request.on_commit.filter(|_| applies) {
                    on_commit();
                }
                out
            });
            // A caller that went away no longer needs the answer; its write stands.
            let _ = request.reply.send(reply);
        }
    }
}

/// Run the pending checkpoints, then `batch`, in one write transaction; an error
/// aborts all of it (the checkpoints stay pending).
fn commit(db: &Database, pending: &Mutex<Pending>, batch: &[Request]) -> PortResult<Vec<Output>> {
    let what = batch.first().map_or("flush checkpoints", |r| r.what);
    let mut tx = db.begin_write().map_err(|e| db_error(what, e))?;
    // The default, made explicit: `commit` returns only once the data is in the file (and on
    // the disk, unless the store was opened without fsync).
    tx.set_durability(redb::Durability::Immediate);
    // Checkpoints first: a removal in the batch then removes them too.
    let written: Vec<((String, String), u64)> = {
        let pending = lock_pending(pending);
        let mut t = tx.open_table(CHECKPOINTS).map_err(|e| db_error(what, e))?;
        for ((id, segment), w) in &pending.writes {
            t.insert((id.as_str(), segment.as_str()), w.encoded.as_slice())
                .map_err(|e| db_error(what, e))?;
        }
        pending.writes.iter().map(|(k, w)| (k.clone(), w.number)).collect()
    };
    let mut outs = Vec::with_capacity(batch.len());
    for request in batch {
        match (request.op)(&tx) {
            Ok(out) => outs.push(out),
            Err(e) => {
                let _ = tx.abort();
                return Err(e);
            }
        }
    }
    tx.commit().map_err(|e| db_error(what, e))?;
    // In the file now: keep them as copies of the file's, unless written again meanwhile.
    let mut pending = lock_pending(pending);
    for (key, number) in written {
        if pending.writes.get(&key).is_some_and(|w| w.number == number)
            && let Some(w) = pending.writes.remove(&key)
        {
            if w.encoded.len() <= CACHED_CHECKPOINT_BYTES {
                pending.in_file.insert(key, (w.next_offset, w.encoded));
            } else {
                pending.in_file.remove(&key);
            }
        }
    }
    Ok(outs)
}

/// redb's file backend, with `fsync` left out (see [`EmbeddedStore::open_with`]).
#[derive(Debug)]
struct WithoutFsync(redb::backends::FileBackend);

impl redb::StorageBackend for WithoutFsync {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.0.read(offset, len)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        // Every write already went to the file (`write`), in order; only the wait for the
        // disk is skipped.
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
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
        let shown = path.display();
        let open_error = |e: redb::DatabaseError| db_error(&format!("open {shown}"), e);
        let db = if fsync {
            Database::create(path).map_err(open_error)?
        } else {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| PortError::permanent(BACKEND, format!("open {shown}: {e}")))?;
            let backend = redb::backends::FileBackend::new(file).map_err(open_error)?;
            redb::Builder::new().create_with_backend(WithoutFsync(backend)).map_err(open_error)?
        };
        // Create every table up front, so read transactions never meet a missing one.
        let tx = db.begin_write().map_err(|e| db_error("open", e))?;
        {
            tx.open_table(QUERIES).map_err(|e| db_error("open", e))?;
            tx.open_table(TOUCH).map_err(|e| db_error("open", e))?;
            tx.open_table(REFS).map_err(|e| db_error("open", e))?;
            tx.open_table(CHECKPOINTS).map_err(|e| db_error("open", e))?;
            tx.open_table(RESULTS).map_err(|e| db_error("open", e))?;
            tx.open_table(RING).map_err(|e| db_error("open", e))?;
            tx.open_table(RING_BOUNDS).map_err(|e| db_error("open", e))?;
            tx.open_table(SUBSCRIPTIONS).map_err(|e| db_error("open", e))?;
        }
        tx.commit().map_err(|e| db_error("open", e))?;
        let db = Arc::new(db);
        let (requests, queue) = mpsc::channel();
        let pending = SharedPending::default();
        let committer = {
            let (db, pending) = (db.clone(), pending.clone());
            std::thread::Builder::new()
                .name("kappa-store-commit".into())
                .spawn(move || commit_loop(db, queue, pending))
                .map_err(|e| {
                    PortError::permanent(BACKEND, format!("cannot start the committer: {e}"))
                })?
        };
        Ok(EmbeddedStore {
            db,
            ring,
            latest: Arc::new(Latest { inner: Mutex::default(), keep: ring.min(CACHED_MESSAGES) }),
            pending,
            requests: Some(requests),
            committer: Some(committer),
        })
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
        let op: Op =
            Box::new(move |tx| f(tx).map(|out| (Box::new(out) as Box<dyn Any + Send>, false)));
        self.submit(what, op, None).await
    }

    /// [`EmbeddedStore::write`], then `on_commit` once committed.
    async fn write_then<T: Send + 'static>(
        &self,
        what: &'static str,
        on_commit: OnCommit,
        f: impl Fn(&redb::WriteTransaction) -> PortResult<T> + Send + 'static,
    ) -> PortResult<T> {
        let op: Op =
            Box::new(move |tx| f(tx).map(|out| (Box::new(out) as Box<dyn Any + Send>, true)));
        self.submit(what, op, Some(on_commit)).await
    }

    /// Queue `op` for the committer and wait for its commit.
    async fn submit<T: 'static>(
        &self,
        what: &'static str,
        op: Op,
        on_commit: Option<OnCommit>,
    ) -> PortResult<T> {
        let (reply, answer) = oneshot::channel();
        let stopped = || PortError::permanent(BACKEND, format!("{what}: the committer stopped"));
        self.requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(Request { what, op, on_commit, reply })
            .map_err(|_| stopped())?;
        let out = answer.await.map_err(|_| stopped())??;
        out.downcast::<T>()
            .map(|t| *t)
            .map_err(|_| PortError::permanent(BACKEND, format!("{what}: unexpected output")))
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

/// Open a table in a transaction, mapping the error.
macro_rules! table {
    ($tx:expr, $def:expr, $what:expr) => {
        $tx.open_table($def).map_err(|e| db_error($what, e))?
    };
}

#[async_trait]
impl StateStore for EmbeddedStore {
    async fn register(&self, query: &QueryRecord) -> PortResult<bool> {
        let record = to_json("query record", query)?;
        let query = query.clone();
        self.write("register", move |tx| {
            let mut t = table!(tx, QUERIES, "register");
            if t.get(query.id.as_str()).map_err(|e| db_error("register", e))?.is_some() {
                return Ok(false);
            }
            t.insert(query.id.as_str(), record.as_slice()).map_err(|e| db_error("register", e))?;
            Ok(true)
        })
        .await
    }

    async fn query(&self, id: &str) -> PortResult<Option<QueryRecord>> {
        let mut latest = self.latest.lock();
        if let Some(query) = latest.queries.get(id) {
            return Ok(Some(query.clone()));
        }
        // A miss: filled under the lock (see `Latest`).
        let tx = self.read_tx("query")?;
        let t = table!(tx, QUERIES, "query");
        let raw = t.get(id).map_err(|e| db_error("query", e))?;
        let query: Option<QueryRecord> =
            raw.map(|r| from_json("query record", r.value())).transpose()?;
        if let Some(query) = &query {
            latest.queries.insert(id.to_string(), query.clone());
        }
        Ok(query)
    }

    async fn queries(&self) -> PortResult<Vec<String>> {
        let tx = self.read_tx("queries")?;
        let t = table!(tx, QUERIES, "queries");
        let mut ids = Vec::new();
        for entry in t.iter().map_err(|e| db_error("queries", e))? {
            let (k, _) = entry.map_err(|e| db_error("queries", e))?;
            ids.push(k.value().to_string());
        }
        Ok(ids)
    }

    async fn remove(&self, id: &str) -> PortResult<()> {
        let (latest, pending) = (self.latest.clone(), self.pending.clone());
        let removed = id.to_string();
        let on_commit: OnCommit = Box::new(move || {
            latest.removed(&removed);
            // Written after the removal was queued: gone with the query too.
            let mut pending = lock_pending(&pending);
            pending.writes.retain(|(id, _), _| *id != removed);
            pending.in_file.retain(|(id, _), _| *id != removed);
        });
        let id = id.to_string();
        self.write_then("remove", on_commit, move |tx| {
            let id = id.as_str();
            let e = |e: redb::StorageError| db_error("remove", e);
            table!(tx, QUERIES, "remove").remove(id).map_err(e)?;
            table!(tx, TOUCH, "remove").remove(id).map_err(e)?;
            table!(tx, REFS, "remove").remove(id).map_err(e)?;
            table!(tx, RESULTS, "remove").remove(id).map_err(e)?;
            table!(tx, RING_BOUNDS, "remove").remove(id).map_err(e)?;
            table!(tx, SUBSCRIPTIONS, "remove").remove(id).map_err(e)?;
            let mut cps = table!(tx, CHECKPOINTS, "remove");
            let segments: Vec<String> = {
                let mut keys = Vec::new();
                for entry in cps.range((id, "")..).map_err(e)? {
                    let (k, _) = entry.map_err(e)?;
                    let (kid, seg) = k.value();
                    if kid != id {
                        break;
                    }
                    keys.push(seg.to_string());
                }
                keys
            };
            for seg in &segments {
                cps.remove((id, seg.as_str())).map_err(e)?;
            }
            let mut ring = table!(tx, RING, "remove");
            let seqs: Vec<u64> = {
                let mut keys = Vec::new();
                for entry in ring.range((id, 0u64)..).map_err(e)? {
                    let (k, _) = entry.map_err(e)?;
                    let (kid, seq) = k.value();
                    if kid != id {
                        break;
                    }
                    keys.push(seq);
                }
                keys
            };
            for seq in seqs {
                ring.remove((id, seq)).map_err(e)?;
            }
            Ok(())
        })
        .await
    }

    async fn touch(&self, id: &str, now_ms: i64) -> PortResult<i64> {
        let id = id.to_string();
        self.write("touch", move |tx| {
            let mut t = table!(tx, TOUCH, "touch");
            let last = t.insert(id.as_str(), now_ms).map_err(|e| db_error("touch", e))?;
            Ok(last.map_or(now_ms, |l| l.value()))
        })
        .await
    }

    async fn last_touch(&self, id: &str) -> PortResult<Option<i64>> {
        let tx = self.read_tx("last_touch")?;
        let t = table!(tx, TOUCH, "last_touch");
        Ok(t.get(id).map_err(|e| db_error("last_touch", e))?.map(|v| v.value()))
    }

    async fn add_refs(&self, id: &str, delta: i64) -> PortResult<i64> {
        if delta == 0 {
            // A read (the tick asks every query's count on every wake-up): no durable commit.
            let tx = self.read_tx("add_refs")?;
            let t = table!(tx, REFS, "add_refs");
            return Ok(t.get(id).map_err(|e| db_error("add_refs", e))?.map_or(0, |v| v.value()));
        }
        let id = id.to_string();
        self.write("add_refs", move |tx| {
            let mut t = table!(tx, REFS, "add_refs");
            let cur =
                t.get(id.as_str()).map_err(|e| db_error("add_refs", e))?.map_or(0, |v| v.value());
            let n = cur.saturating_add(delta).max(0);
            t.insert(id.as_str(), n).map_err(|e| db_error("add_refs", e))?;
            Ok(n)
        })
        .await
    }

    async fn checkpoint(&self, id: &str, segment: &Segment) -> PortResult<Option<Checkpoint>> {
        let key = (id.to_string(), segment.key());
        let decode = |raw: &[u8]| {
            postcard::from_bytes::<Checkpoint>(raw).map_err(|e| corrupt("checkpoint", e))
        };
        // A miss is filled under the lock (see `Pending::in_file`).
        let mut pending = lock_pending(&self.pending);
        if let Some((_, encoded)) = pending.get(&key) {
            return decode(encoded).map(Some);
        }
        let Some(raw) = self.file_checkpoint(&key.0, &key.1)? else { return Ok(None) };
        let checkpoint = decode(&raw)?;
        pending.filled(key, checkpoint.next_offset, &raw);
        Ok(Some(checkpoint))
    }

    async fn positions(&self, id: &str, segments: &[Segment]) -> PortResult<Vec<Option<Position>>> {
        // Read from the encoded checkpoints in memory without copying their states out (the
        // tick reads this for every query); a checkpoint only in the file goes the usual way.
        let mut positions = Vec::with_capacity(segments.len());
        for segment in segments {
            let key = (id.to_string(), segment.key());
            let in_memory =
                lock_pending(&self.pending).get(&key).map(|(_, encoded)| position_of(encoded));
            positions.push(match in_memory {
                Some(position) => Some(position?),
                None => self.checkpoint(id, segment).await?.as_ref().map(Position::from),
            });
        }
        Ok(positions)
    }

    async fn compare_and_set_checkpoint(
        &self,
        id: &str,
        segment: &Segment,
        expected: Option<i64>,
        new: &Checkpoint,
    ) -> PortResult<bool> {
        let encoded = postcard::to_stdvec(new)
            .map_err(|e| PortError::permanent(BACKEND, format!("cannot encode checkpoint: {e}")))?;
        let key = (id.to_string(), segment.key());
        // Decided under the lock against the pending write or else the file, which only the
        // committer changes, with the same values (see `Pending`) or by a removal.
        let mut pending = lock_pending(&self.pending);
        let current = match pending.get(&key) {
            Some((next_offset, _)) => Some(next_offset),
            None => match self.file_checkpoint(&key.0, &key.1)? {
                Some(raw) => {
                    let next_offset = postcard::from_bytes::<Checkpoint>(&raw)
                        .map_err(|e| corrupt("checkpoint", e))?
                        .next_offset;
                    pending.filled(key.clone(), next_offset, &raw);
                    Some(next_offset)
                }
                None => None,
            },
        };
        if current != expected {
            return Ok(false);
        }
        pending.count += 1;
        let number = pending.count;
        pending.writes.insert(key, PendingWrite { number, next_offset: new.next_offset, encoded });
        Ok(true)
    }

    async fn result(&self, id: &str) -> PortResult<Option<ResultRecord>> {
        let mut latest = self.latest.lock();
        if let Some(recent) = latest.results.get(id) {
            return Ok(Some(recent.record.clone()));
        }
        // A miss: filled under the lock (see `Latest`).
        let tx = self.read_tx("result")?;
        let t = table!(tx, RESULTS, "result");
        let raw = t.get(id).map_err(|e| db_error("result", e))?;
        let record: Option<ResultRecord> =
            raw.map(|r| from_json("result record", r.value().2)).transpose()?;
        if let Some(record) = &record {
            latest.results.insert(
                id.to_string(),
                Recent { record: record.clone(), messages: VecDeque::new() },
            );
        }
        Ok(record)
    }

    async fn compare_and_set_result(
        &self,
        id: &str,
        expected: u64,
        new: &ResultRecord,
        message: &Message,
    ) -> PortResult<bool> {
        let record = to_json("result record", new)?;
        let encoded_message = to_json("message", message)?;
        let what = "compare_and_set_result";
        let ring = self.ring as u64;
        let (revision, version) = (new.revision, new.version);
        let key = id.to_string();
        let op: Op = Box::new(move |tx| {
            let id = key.as_str();
            let mut results = table!(tx, RESULTS, what);
            let current =
                results.get(id).map_err(|e| db_error(what, e))?.map_or(0, |r| r.value().0);
            if current != expected {
                return Ok((Box::new(false), false));
            }
            results
                .insert(id, (revision, version, record.as_slice()))
                .map_err(|e| db_error(what, e))?;
            let mut bounds = table!(tx, RING_BOUNDS, what);
            let (mut first, mut next) =
                bounds.get(id).map_err(|e| db_error(what, e))?.map_or((0, 0), |b| b.value());
            let mut messages = table!(tx, RING, what);
            messages
                .insert((id, next), encoded_message.as_slice())
                .map_err(|e| db_error(what, e))?;
            next += 1;
            while next - first > ring {
                messages.remove((id, first)).map_err(|e| db_error(what, e))?;
                first += 1;
            }
            bounds.insert(id, (first, next)).map_err(|e| db_error(what, e))?;
            // `on_commit` runs right after the commit, so in commit order.
            Ok((Box::new(true), true))
        });
        let latest = self.latest.clone();
        let (id, new, message) = (id.to_string(), new.clone(), message.clone());
        let on_commit: OnCommit = Box::new(move || latest.committed(&id, new, Arc::new(message)));
        self.submit(what, op, Some(on_commit)).await
    }

    async fn messages_since(&self, id: &str, version: u64) -> PortResult<Option<Vec<Message>>> {
        let shared = self.shared_messages_since(id, version).await?;
        Ok(shared.map(|m| m.into_iter().map(Arc::unwrap_or_clone).collect()))
    }

    async fn shared_messages_since(
        &self,
        id: &str,
        version: u64,
    ) -> PortResult<Option<Vec<Arc<Message>>>> {
        {
            let mut latest = self.latest.lock();
            if let Some(recent) = latest.results.get_mut(id) {
                let current = recent.record.version;
                if version >= current {
                    return Ok(Some(Vec::new()));
                }
                // The cached suffix holds every message after `version` when it starts at or
                // before it (versions never decrease along the ring).
                let messages = recent.messages.make_contiguous();
                if messages.first().is_some_and(|m| m.version() <= version) {
                    return Ok(ring_since(messages, version, current));
                }
            }
        }
        let what = "messages_since";
        let tx = self.read_tx(what)?;
        let current = table!(tx, RESULTS, what)
            .get(id)
            .map_err(|e| db_error(what, e))?
            .map_or(0, |r| r.value().1);
        if version >= current {
            return Ok(Some(Vec::new()));
        }
        // Newest first, decoding only the messages after `version`: versions never decrease
        // along the ring, so the rest cannot be returned, and a subscriber one version behind
        // costs one decode instead of the whole ring's.
        let mut ring = Vec::new();
        let messages = table!(tx, RING, what);
        for entry in
            messages.range((id, 0u64)..=(id, u64::MAX)).map_err(|e| db_error(what, e))?.rev()
        {
            let (_, v) = entry.map_err(|e| db_error(what, e))?;
            let message = from_json::<Message>("ring message", v.value())?;
            if message.version() <= version {
                break;
            }
            ring.push(Arc::new(message));
        }
        ring.reverse();
        Ok(ring_since(&ring, version, current))
    }

    async fn subscribe(&self, id: &str, subscription: &Subscription) -> PortResult<()> {
        let (id, subscription) = (id.to_string(), subscription.clone());
        self.write("subscribe", move |tx| {
            let id = id.as_str();
            let mut t = table!(tx, SUBSCRIPTIONS, "subscribe");
            let mut subs: Vec<Subscription> =
                match t.get(id).map_err(|e| db_error("subscribe", e))? {
                    Some(raw) => from_json("subscriptions", raw.value())?,
                    None => Vec::new(),
                };
            subs.push(subscription.clone());
            let raw = to_json("subscriptions", &subs)?;
            t.insert(id, raw.as_slice()).map_err(|e| db_error("subscribe", e))?;
            Ok(())
        })
        .await
    }

    async fn unsubscribe(&self, id: &str, url: &str) -> PortResult<bool> {
        let (id, url) = (id.to_string(), url.to_string());
        self.write("unsubscribe", move |tx| {
            let id = id.as_str();
            let mut t = table!(tx, SUBSCRIPTIONS, "unsubscribe");
            let mut subs: Vec<Subscription> =
                match t.get(id).map_err(|e| db_error("unsubscribe", e))? {
                    Some(raw) => from_json("subscriptions", raw.value())?,
                    None => return Ok(false),
                };
            let before = subs.len();
            subs.retain(|s| s.url != url);
            if subs.len() == before {
                return Ok(false);
            }
            let raw = to_json("subscriptions", &subs)?;
            t.insert(id, raw.as_slice()).map_err(|e| db_error("unsubscribe", e))?;
            Ok(true)
        })
        .await
    }

    async fn subscriptions(&self, id: &str) -> PortResult<Vec<Subscription>> {
        let tx = self.read_tx("subscriptions")?;
        let t = table!(tx, SUBSCRIPTIONS, "subscriptions");
        let raw = t.get(id).map_err(|e| db_error("subscriptions", e))?;
        Ok(raw.map(|r| from_json("subscriptions", r.value())).transpose()?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(n: i64, bytes: usize) -> Checkpoint {
        Checkpoint { next_offset: n, state: vec![7; bytes], head: n, lost: 0 }
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
            commit(&store.db, &store.pending, &[]).unwrap();
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
