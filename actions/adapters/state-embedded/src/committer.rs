//! Group commit: one thread runs every write waiting at that moment in one transaction and
//! answers each caller after the commit.

use std::sync::{Arc, Mutex, mpsc};

use kappa_core::ports::{PortError, PortResult};
use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use crate::pending::{Pending, SharedPending, lock_pending};
use crate::ring::{RingIndex, SharedRing, lock_ring};
use crate::tables::{BACKEND, CHECKPOINTS, db_error};

/// Most writes committed by one transaction.
const MAX_BATCH: usize = 256;

/// How long the committer leaves checkpoints in memory when no other write comes.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(50);

/// A write waiting for the committer.
pub(crate) type Request = Box<dyn Write>;

/// One write as the committer sees it; its output's type is known only to its caller
/// ([`Typed`]).
pub(crate) trait Write: Send {
    /// What the write is, for errors.
    fn what(&self) -> &'static str;

    /// Run inside a shared transaction (and again alone if its batch fails), keeping the
    /// output for [`Write::answer`]; an `Err` aborts the transaction.
    fn run(&mut self, tx: &WriteTransaction) -> PortResult<()>;

    /// Answer the caller with the outcome of the transaction of the last run: on a commit,
    /// after `on_commit` (so in commit order, and a caller's next read sees its effects).
    fn answer(self: Box<Self>, outcome: PortResult<()>);
}

/// A write returning a `T`: `f` runs in the transaction, `on_commit` in memory once committed.
pub(crate) struct Typed<T, F, C> {
    what: &'static str,
    f: F,
    on_commit: C,
    /// What the last run of `f` returned, answered if its transaction commits.
    out: Option<T>,
    reply: oneshot::Sender<PortResult<T>>,
}

impl<T, F, C> Typed<T, F, C> {
    pub(crate) fn new(
        what: &'static str,
        f: F,
        on_commit: C,
        reply: oneshot::Sender<PortResult<T>>,
    ) -> Self {
        Typed { what, f, on_commit, out: None, reply }
    }
}

impl<T, F, C> Write for Typed<T, F, C>
where
    T: Send,
    F: Fn(&WriteTransaction) -> PortResult<T> + Send,
    C: FnOnce(&T) + Send,
{
    fn what(&self) -> &'static str {
        self.what
    }

    fn run(&mut self, tx: &WriteTransaction) -> PortResult<()> {
        self.out = Some((self.f)(tx)?);
        Ok(())
    }

    fn answer(self: Box<Self>, outcome: PortResult<()>) {
        let Typed { what, on_commit, out, reply, .. } = *self;
        let reply_with = outcome.and_then(|()| {
            // Committed, so this run succeeded and kept its output.
            let out = out.ok_or_else(|| {
                PortError::permanent(BACKEND, format!("{what}: committed without output"))
            })?;
            on_commit(&out);
            Ok(out)
        });
        // A caller that went away no longer needs the answer; its write stands.
        let _ = reply.send(reply_with);
    }
}

/// The committer thread: run the waiting writes in one transaction, answer after the commit.
pub(crate) fn commit_loop(
    db: Arc<Database>,
    requests: mpsc::Receiver<Request>,
    pending: SharedPending,
    ring: SharedRing,
) {
    let commit = |batch: &mut [Request]| commit(&db, &pending, &ring, batch);
    loop {
        let first = match requests.recv_timeout(IDLE_FLUSH) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !lock_pending(&pending).writes.is_empty()
                    && let Err(e) = commit(&mut [])
                {
                    // No caller to answer: the checkpoints stay pending for the next commit.
                    tracing::warn!(error = %e, "flushing checkpoints failed; retried with the next write");
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Closing: the checkpoints still in memory go to the file.
                if let Err(e) = commit(&mut []) {
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
        let outcomes = match commit(&mut batch) {
            Ok(()) => batch.iter().map(|_| Ok(())).collect(),
            Err(e) if batch.len() == 1 => vec![Err(e)],
            // Isolate the failing write: each one again, alone.
            Err(_) => batch.iter_mut().map(|r| commit(std::slice::from_mut(r))).collect::<Vec<_>>(),
        };
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            request.answer(outcome);
        }
    }
}

/// Run the pending checkpoints, then `batch`, in one write transaction; an error
/// aborts all of it (the checkpoints stay pending, and the ring index is read again from the
/// file before the next write, undoing what the batch's writes changed in it).
pub(crate) fn commit(
    db: &Database,
    pending: &Mutex<Pending>,
    ring: &Mutex<RingIndex>,
    batch: &mut [Request],
) -> PortResult<()> {
    let outcome = commit_once(db, pending, batch);
    if outcome.is_err() {
        lock_ring(ring).aborted();
    }
    outcome
}

fn commit_once(db: &Database, pending: &Mutex<Pending>, batch: &mut [Request]) -> PortResult<()> {
    let what = batch.first().map_or("flush checkpoints", |r| r.what());
    let mut tx = db.begin_write().map_err(|e| db_error(what, e))?;
    // The default, made explicit: `commit` returns only once the data is in the file (and on
    // the disk, unless the store was opened without fsync).
    tx.set_durability(redb::Durability::Immediate);
    // Checkpoints first: a removal in the batch then removes them too. Written without the
    // lock (see `Pending`): compare-and-sets and reads go on meanwhile.
    let to_write = lock_pending(pending).to_write();
    {
        let mut t = tx.open_table(CHECKPOINTS).map_err(|e| db_error(what, e))?;
        for ((id, segment), _, encoded) in &to_write {
            t.insert((id.as_str(), segment.as_str()), encoded.as_slice())
                .map_err(|e| db_error(what, e))?;
        }
    }
    let written: Vec<((String, String), u64)> =
        to_write.into_iter().map(|(key, number, _)| (key, number)).collect();
    for request in batch {
        if let Err(e) = request.run(&tx) {
            let _ = tx.abort();
            return Err(e);
        }
    }
    tx.commit().map_err(|e| db_error(what, e))?;
    lock_pending(pending).committed(written);
    Ok(())
}
