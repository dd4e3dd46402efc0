//! The file: its tables, opening it, the row codecs and the errors.
//!
//! Tables keyed by query id: `queries` (JSON record), `touch` and `refs` (integers),
//! `checkpoints` keyed by `(id, segment.key())` (postcard: the binary state is stored as raw
//! bytes), `results` (`(revision, version, JSON record)`, written every few versions, with
//! `result_at` the sequence of the last message the row includes, see `results.rs`),
//! `subscriptions` (JSON array); and `messages`, every query's last messages keyed by a
//! store-wide sequence in commit order (`(id, version, JSON message)`, see `ring.rs`).

use std::path::Path;

use kappa_core::ports::{PortError, PortResult, Position};
use redb::{Database, TableDefinition};

/// The backend name in errors.
pub(crate) const BACKEND: &str = "embedded-state";

pub(crate) const QUERIES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("queries");
pub(crate) const TOUCH: TableDefinition<'static, &str, i64> = TableDefinition::new("touch");
pub(crate) const REFS: TableDefinition<'static, &str, i64> = TableDefinition::new("refs");
pub(crate) const CHECKPOINTS: TableDefinition<'static, (&str, &str), &[u8]> =
    TableDefinition::new("checkpoints");
pub(crate) const RESULTS: TableDefinition<'static, &str, (u64, u64, &[u8])> =
    TableDefinition::new("results");
/// The ring sequence of the last message a `results` row includes (see `results.rs`).
pub(crate) const RESULT_AT: TableDefinition<'static, &str, u64> = TableDefinition::new("result_at");
/// Every query's last messages, by a store-wide sequence in commit order (see `ring.rs`).
pub(crate) const MESSAGES: TableDefinition<'static, u64, (&str, u64, &[u8])> =
    TableDefinition::new("messages");
pub(crate) const SUBSCRIPTIONS: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("subscriptions");
/// View definitions by name (JSON).
pub(crate) const VIEWS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("views");

/// Open (or create) the file at `path` with every table in it (see
/// [`crate::EmbeddedStore::open_with`] for `fsync`).
pub(crate) fn open(path: &Path, fsync: bool) -> PortResult<Database> {
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
        tx.open_table(RESULT_AT).map_err(|e| db_error("open", e))?;
        tx.open_table(MESSAGES).map_err(|e| db_error("open", e))?;
        tx.open_table(SUBSCRIPTIONS).map_err(|e| db_error("open", e))?;
        tx.open_table(VIEWS).map_err(|e| db_error("open", e))?;
    }
    // Files written before #14 keep their messages.
    crate::ring::migrate_old_layout(&tx)?;
    tx.commit().map_err(|e| db_error("open", e))?;
    Ok(db)
}

/// redb's file backend, with `fsync` left out (see [`crate::EmbeddedStore::open_with`]).
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

/// Open a table in a transaction, mapping the error.
macro_rules! table {
    ($tx:expr, $def:expr, $what:expr) => {
        $tx.open_table($def).map_err(|e| $crate::tables::db_error($what, e))?
    };
}
pub(crate) use table;

/// A [`PortError`] for a failed database operation: I/O errors are transient (the transaction
/// was aborted and nothing changed), everything else (corruption, a file locked by another
/// process, a schema mismatch) is permanent.
pub(crate) fn db_error(what: &str, e: impl Into<redb::Error>) -> PortError {
    let e: redb::Error = e.into();
    let message = format!("{what}: {e}");
    match e {
        redb::Error::Io(_) => PortError::transient(BACKEND, message),
        _ => PortError::permanent(BACKEND, message),
    }
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> PortError {
    PortError::permanent(BACKEND, format!("corrupt {what}: {detail}"))
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(what: &str, value: &T) -> PortResult<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| PortError::permanent(BACKEND, format!("cannot encode {what}: {e}")))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, raw: &[u8]) -> PortResult<T> {
    serde_json::from_slice(raw).map_err(|e| corrupt(what, e))
}

/// The position of an encoded [`Checkpoint`](kappa_core::ports::Checkpoint), its state
/// borrowed rather than copied (postcard writes a `Vec<u8>` as a length and the bytes, which
/// `&[u8]` reads in place).
pub(crate) fn position_of(encoded: &[u8]) -> PortResult<Position> {
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
