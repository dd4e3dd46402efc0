//! Kappa's [`StateStore`] in one embedded database file, for `kappa dev` and single-machine use.
//!
//! Why it is shaped this way:
//! - **redb**, a pure-Rust ACID key-value store: no server to run, no C to build. Every
//!   compare-and-set is one write transaction (read, compare, write, commit), and redb's write
//!   transactions are serialized and committed durably (`fsync` before `commit` returns). So a
//!   CAS is atomic against concurrent callers in the process, and a CAS that returned `true`
//!   survives a `kill -9` or a power cut right after.
//! - **Blocking calls.** A transaction is short and the store is for development, so calls run
//!   on the caller's thread (no runtime needed: it works under tokio, `pollster` or anything);
//!   expect about one `fsync` per successful write.
//! - **Live notifications in-process.** `kappa dev` has no Redis pub/sub, so
//!   [`EmbeddedStore::events`] hands out a [`tokio::sync::broadcast`] receiver fed by every
//!   successful `compare_and_set_result` right after its commit (only tokio's `sync` feature).
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

use std::path::Path;

use async_trait::async_trait;
use kappa_core::ports::{
    Checkpoint, PortError, PortResult, QueryRecord, ResultRecord, Segment, StateStore,
    Subscription, message_version, ring_since,
};
use redb::{Database, ReadableTable, TableDefinition};
use serde_json::Value;
use tokio::sync::broadcast;

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

/// Messages buffered per events receiver before a slow one starts lagging.
const EVENTS_CAPACITY: usize = 1024;

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
    db: Database,
    ring: usize,
    events: broadcast::Sender<(String, Value)>,
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
        let shown = path.display();
        let db = Database::create(path).map_err(|e| db_error(&format!("open {shown}"), e))?;
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
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        Ok(EmbeddedStore { db, ring, events })
    }

    /// The number of messages kept per query.
    pub fn ring(&self) -> usize {
        self.ring
    }

    /// A receiver of `(query id, message)` for every successful `compare_and_set_result` from
    /// now on, in commit order.
    ///
    /// Subscribe first, then catch up with [`StateStore::messages_since`] and drop messages
    /// already seen by version: that order leaves no gap. A receiver that falls more than 1024
    /// messages behind gets `RecvError::Lagged` and should catch up the same way.
    pub fn events(&self) -> broadcast::Receiver<(String, Value)> {
        self.events.subscribe()
    }

    /// Run `f` in one write transaction and commit it when it returns `Ok`; an `Err` aborts.
    fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&redb::WriteTransaction) -> PortResult<T>,
    ) -> PortResult<T> {
        let mut tx = self.db.begin_write().map_err(|e| db_error(what, e))?;
        // The default, made explicit: `commit` returns only once the data is on disk.
        tx.set_durability(redb::Durability::Immediate);
        let out = f(&tx)?;
        tx.commit().map_err(|e| db_error(what, e))?;
        Ok(out)
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
        self.write("register", |tx| {
            let mut t = table!(tx, QUERIES, "register");
            if t.get(query.id.as_str()).map_err(|e| db_error("register", e))?.is_some() {
                return Ok(false);
            }
            t.insert(query.id.as_str(), record.as_slice()).map_err(|e| db_error("register", e))?;
            Ok(true)
        })
    }

    async fn query(&self, id: &str) -> PortResult<Option<QueryRecord>> {
        let tx = self.read_tx("query")?;
        let t = table!(tx, QUERIES, "query");
        let raw = t.get(id).map_err(|e| db_error("query", e))?;
        raw.map(|r| from_json("query record", r.value())).transpose()
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
        self.write("remove", |tx| {
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
    }

    async fn touch(&self, id: &str, now_ms: i64) -> PortResult<i64> {
        self.write("touch", |tx| {
            let mut t = table!(tx, TOUCH, "touch");
            let last = t.insert(id, now_ms).map_err(|e| db_error("touch", e))?;
            Ok(last.map_or(now_ms, |l| l.value()))
        })
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
        self.write("add_refs", |tx| {
            let mut t = table!(tx, REFS, "add_refs");
            let cur = t.get(id).map_err(|e| db_error("add_refs", e))?.map_or(0, |v| v.value());
            let n = cur.saturating_add(delta).max(0);
            t.insert(id, n).map_err(|e| db_error("add_refs", e))?;
            Ok(n)
        })
    }

    async fn checkpoint(&self, id: &str, segment: &Segment) -> PortResult<Option<Checkpoint>> {
        let tx = self.read_tx("checkpoint")?;
        let t = table!(tx, CHECKPOINTS, "checkpoint");
        let key = segment.key();
        let raw = t.get((id, key.as_str())).map_err(|e| db_error("checkpoint", e))?;
        raw.map(|r| postcard::from_bytes(r.value()).map_err(|e| corrupt("checkpoint", e)))
            .transpose()
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
        let key = segment.key();
        let what = "compare_and_set_checkpoint";
        let won = self.write(what, |tx| {
            let mut t = table!(tx, CHECKPOINTS, what);
            let current = match t.get((id, key.as_str())).map_err(|e| db_error(what, e))? {
                Some(raw) => Some(
                    postcard::from_bytes::<Checkpoint>(raw.value())
                        .map_err(|e| corrupt("checkpoint", e))?
                        .next_offset,
                ),
                None => None,
            };
            if current != expected {
                return Ok(false);
            }
            t.insert((id, key.as_str()), encoded.as_slice()).map_err(|e| db_error(what, e))?;
            Ok(true)
        })?;
        Ok(won)
    }

    async fn result(&self, id: &str) -> PortResult<Option<ResultRecord>> {
        let tx = self.read_tx("result")?;
        let t = table!(tx, RESULTS, "result");
        let raw = t.get(id).map_err(|e| db_error("result", e))?;
        raw.map(|r| from_json("result record", r.value().2)).transpose()
    }

    async fn compare_and_set_result(
        &self,
        id: &str,
        expected: u64,
        new: &ResultRecord,
        message: &Value,
    ) -> PortResult<bool> {
        let record = to_json("result record", new)?;
        let encoded_message = to_json("message", message)?;
        let what = "compare_and_set_result";
        let ring = self.ring as u64;
        let won = self.write(what, |tx| {
            let mut results = table!(tx, RESULTS, what);
            let current =
                results.get(id).map_err(|e| db_error(what, e))?.map_or(0, |r| r.value().0);
            if current != expected {
                return Ok(false);
            }
            results
                .insert(id, (new.revision, new.version, record.as_slice()))
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
            Ok(true)
        })?;
        if won {
            // No receiver is not an error: nobody is listening.
            let _ = self.events.send((id.to_string(), message.clone()));
        }
        Ok(won)
    }

    async fn messages_since(&self, id: &str, version: u64) -> PortResult<Option<Vec<Value>>> {
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
            let message = from_json::<Value>("ring message", v.value())?;
            if message_version(&message) <= version {
                break;
            }
            ring.push(message);
        }
        ring.reverse();
        Ok(ring_since(&ring, version, current))
    }

    async fn subscribe(&self, id: &str, subscription: &Subscription) -> PortResult<()> {
        self.write("subscribe", |tx| {
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
    }

    async fn subscriptions(&self, id: &str) -> PortResult<Vec<Subscription>> {
        let tx = self.read_tx("subscriptions")?;
        let t = table!(tx, SUBSCRIPTIONS, "subscriptions");
        let raw = t.get(id).map_err(|e| db_error("subscriptions", e))?;
        Ok(raw.map(|r| from_json("subscriptions", r.value())).transpose()?.unwrap_or_default())
    }
}
