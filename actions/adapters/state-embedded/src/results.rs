//! Result rows written every few versions; between them, a result is its row and the messages
//! after it.
//!
//! A live wake-up writes a result for each of its queries. Writing the whole record each time
//! cost a read and a write of the `results` B-tree per query and wake-up, plus the record's
//! JSON: ~5–8% of a live wake-up's CPU at 100 and 1,000 queries (BENCHMARKS.md, #14). Yet
//! the message written beside it, in the same transaction, already says what changed. So the
//! row is written only every [`ROW_EVERY`] messages, and whenever a message could not
//! rebuild it (the first result, a failed query, anything but a delta or progress that
//! follows the record before it); `result_at` holds the ring sequence of the last message the
//! row includes. The messages after it, which the ring still holds (never more than it
//! keeps), turn the row into the current record: each delta's patch applied in order, each
//! message's version, progress and `caught_up` taken, the revision one up per message. That
//! is the push contract itself: applying every delta in order to a snapshot gives the result
//! of the last version.
//!
//! No reader rebuilds a row: opening the file brings every row up to date first
//! ([`bring_rows_up_to_date`]), and from then on every query written is in `Latest`, which the
//! committer keeps exact and never evicts; a result read from the file is therefore that of a
//! query not written since the file was opened. A subscriber resuming from the file's ring
//! takes the current version from the newest message it read, not from the row (which stays
//! behind them; `messages_since`). The committer keeps each query's revision,
//! version and messages since its row ([`Written`], in `RingIndex`), so a compare-and-set
//! reads nothing; after an aborted commit they are looked up again from the file.

use kappa_core::Message;
use kappa_core::ports::{PortResult, ResultRecord};
use redb::{Database, ReadableTable, WriteTransaction};

use crate::ring::RingIndex;
use crate::tables::{MESSAGES, RESULT_AT, RESULTS, corrupt, db_error, from_json, table, to_json};

/// Most messages after a row: bounds what opening the file re-applies per query, and the
/// row's write is shared by this many result writes.
pub(crate) const ROW_EVERY: usize = 64;

/// What the committer knows of a query's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// The current revision (0: no result).
    revision: u64,
    /// The current version.
    version: u64,
    /// Messages written after the row.
    since_row: usize,
}

/// Where `id`'s result stands, from its row and the ring's messages after it.
fn look_up(tx: &WriteTransaction, ring: &RingIndex, id: &str) -> PortResult<Written> {
    let what = "compare_and_set_result";
    let row = table!(tx, RESULTS, what).get(id).map_err(|e| db_error(what, e))?.map(|r| {
        let (revision, version, _) = r.value();
        (revision, version)
    });
    let Some((revision, version)) = row else {
        return Ok(Written { revision: 0, version: 0, since_row: 0 });
    };
    let at = table!(tx, RESULT_AT, what).get(id).map_err(|e| db_error(what, e))?.map(|a| a.value());
    // A row without `result_at` was written whole with every message (files before it).
    let after = match at {
        Some(at) => ring.entries_after(id, at),
        None => Vec::new(),
    };
    Ok(match after.last() {
        Some(last) => Written {
            revision: revision + after.len() as u64,
            version: last.version,
            since_row: after.len(),
        },
        None => Written { revision, version, since_row: 0 },
    })
}

/// Whether `message` turns the record `before` describes into `record`, so that the row can
/// wait: a delta from its version to the next, or progress at its version, each carrying the
/// record's progress and `caught_up` (an error is only ever in a row).
fn follows(before: &Written, record: &ResultRecord, message: &Message) -> bool {
    let (caught_up, progress) = match message {
        Message::Delta { version, from, caught_up, progress, .. }
            if *from == before.version && *version == from + 1 =>
        {
            (caught_up, progress)
        }
        Message::Progress { version, caught_up, progress, error: None, .. }
            if *version == before.version =>
        {
            (caught_up, progress)
        }
        _ => return false,
    };
    before.revision > 0
        && record.error.is_none()
        && record.revision == before.revision + 1
        && record.version == message.version()
        && record.caught_up == *caught_up
        && record.progress == *progress
}

/// Write `record` as `id`'s result if its revision is still `expected`, appending `message`
/// (its JSON `encoded`) to the ring, which keeps `keep` messages per query: both in `tx`, so
/// they commit together. False (nothing written) when another writer got there first.
#[allow(clippy::too_many_arguments, reason = "one write's parts, all needed")]
pub(crate) fn publish(
    tx: &WriteTransaction,
    ring: &mut RingIndex,
    id: &str,
    expected: u64,
    record: &ResultRecord,
    message: &Message,
    encoded: &[u8],
    keep: usize,
) -> PortResult<bool> {
    let what = "compare_and_set_result";
    let mut messages = table!(tx, MESSAGES, what);
    ring.fresh(&messages)?;
    let before = match ring.written.get(id) {
        Some(known) => *known,
        None => {
            let found = look_up(tx, ring, id)?;
            ring.written.insert(id.to_string(), found);
            found
        }
    };
    if before.revision != expected {
        return Ok(false);
    }
    let sequence = ring.append(&mut messages, id, message, encoded, keep)?;
    // The ring must still hold every message after the row: at most `keep` of them.
    let since_row = if follows(&before, record, message) && before.since_row < ROW_EVERY.min(keep) {
        before.since_row + 1
    } else {
        write_row(
            &mut table!(tx, RESULTS, what),
            &mut table!(tx, RESULT_AT, what),
            id,
            record,
            sequence,
        )?;
        0
    };
    let now = Written { revision: record.revision, version: record.version, since_row };
    if let Some(known) = ring.written.get_mut(id) {
        *known = now;
    }
    Ok(true)
}

/// Write `record` as `id`'s row, including the messages up to the ring's `sequence`.
fn write_row(
    results: &mut redb::Table<'_, &str, (u64, u64, &[u8])>,
    result_at: &mut redb::Table<'_, &str, u64>,
    id: &str,
    record: &ResultRecord,
    sequence: u64,
) -> PortResult<()> {
    let what = "write a result row";
    let json = to_json("result record", record)?;
    results
        .insert(id, (record.revision, record.version, json.as_slice()))
        .map_err(|e| db_error(what, e))?;
    result_at.insert(id, sequence).map_err(|e| db_error(what, e))?;
    Ok(())
}

/// `record` turned by `message`, the next one after it in its query's ring.
fn apply(record: &mut ResultRecord, message: &Message) -> PortResult<()> {
    let what = "bring a result up to date";
    let (version, caught_up, progress) = match message {
        Message::Delta { version, caught_up, progress, patch, .. } => {
            kappa_core::patch::apply(std::sync::Arc::make_mut(&mut record.result), patch)
                .map_err(|e| corrupt(what, format!("a delta does not apply: {e}")))?;
            (version, caught_up, progress)
        }
        Message::Progress { version, caught_up, progress, .. } => (version, caught_up, progress),
        Message::Snapshot { .. } | Message::Error { .. } => {
            return Err(corrupt(what, "a message that only a result row may follow"));
        }
    };
    record.revision += 1;
    record.version = *version;
    record.caught_up = *caught_up;
    record.progress = progress.clone();
    Ok(())
}

/// Rewrite every row that messages came after, as they left it: run when the file is opened,
/// before anything reads or writes it.
pub(crate) fn bring_rows_up_to_date(db: &Database, ring: &RingIndex) -> PortResult<()> {
    let what = "bring the results up to date";
    let tx = db.begin_write().map_err(|e| db_error(what, e))?;
    {
        let mut results = table!(tx, RESULTS, what);
        let mut result_at = table!(tx, RESULT_AT, what);
        let messages = table!(tx, MESSAGES, what);
        let mut behind = Vec::new();
        for row in result_at.iter().map_err(|e| db_error(what, e))? {
            let (id, at) = row.map_err(|e| db_error(what, e))?;
            let (id, at) = (id.value().to_string(), at.value());
            let after = ring.entries_after(&id, at);
            if !after.is_empty() {
                behind.push((id, after));
            }
        }
        for (id, after) in behind {
            let row = results.get(id.as_str()).map_err(|e| db_error(what, e))?;
            let record: Option<ResultRecord> =
                row.map(|raw| from_json("result record", raw.value().2)).transpose()?;
            let Some(mut record) = record else {
                return Err(corrupt(what, format!("messages after no result row for {id}")));
            };
            for entry in &after {
                let Some(row) = messages.get(entry.sequence).map_err(|e| db_error(what, e))? else {
                    return Err(corrupt(what, format!("message {} is gone", entry.sequence)));
                };
                apply(&mut record, &from_json::<Message>("ring message", row.value().2)?)?;
            }
            let last = after.last().map_or(0, |e| e.sequence);
            write_row(&mut results, &mut result_at, &id, &record, last)?;
        }
    }
    tx.commit().map_err(|e| db_error(what, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;
    use crate::committer::commit;
    use crate::ring::lock_ring;
    use kappa_core::ports::{PartitionProgress, PortError, Progress, StateStore};
    use serde_json::json;

    fn scratch(name: &str) -> std::path::PathBuf {
        crate::test_support::scratch("results", name)
    }

    fn progress(processed: u64) -> Progress {
        let partitions =
            vec![PartitionProgress { partition: 0, offset: processed as i64, head: 9 }];
        Progress { processed, partitions, ..Progress::default() }
    }

    /// The record after `n` writes of one query, and the message of the last: a bucket list
    /// that grows and changes (a delta) on two writes of three, progress alone on the third.
    fn written(id: &str, n: u64) -> (ResultRecord, Message) {
        let result_at = |version: u64| {
            let buckets: Vec<_> = (0..version % 7)
                .map(|k| json!({"key": k, "doc_count": version * 10 + k}))
                .collect();
            json!({"hits": {"total": {"value": version}}, "aggregations": {"b": {"buckets": buckets}}})
        };
        let version_after = |n: u64| n - n / 3;
        let version = version_after(n);
        let record = ResultRecord {
            revision: n,
            version,
            caught_up: n.is_multiple_of(2),
            progress: progress(n * 100),
            result: result_at(version).into(),
            error: None,
        };
        let message = if n > 1 && !n.is_multiple_of(3) {
            let patch = kappa_core::patch::diff(&result_at(version - 1), &result_at(version));
            Message::Delta {
                id: id.into(),
                version,
                from: version - 1,
                caught_up: record.caught_up,
                progress: record.progress.clone(),
                patch,
            }
        } else {
            Message::progress_of(id, &record)
        };
        (record, message)
    }

    async fn write_up_to(store: &EmbeddedStore, id: &str, from: u64, to: u64) {
        for n in from..=to {
            let (record, message) = written(id, n);
            assert!(store.compare_and_set_result(id, n - 1, &record, message).await.unwrap());
        }
    }

    /// The row in the file: its revision and the sequence of the last message it includes.
    fn row(store: &EmbeddedStore, id: &str) -> (u64, Option<u64>) {
        let tx = store.db.begin_read().unwrap();
        let revision = tx.open_table(RESULTS).unwrap().get(id).unwrap().unwrap().value().0;
        let at = tx.open_table(RESULT_AT).unwrap().get(id).unwrap().map(|a| a.value());
        (revision, at)
    }

    /// Results written across reopenings, with rows every `ROW_EVERY` messages or, with a
    /// small ring, every time the ring would drop a message after the row: each reopened
    /// store answers the last record written, its messages, and takes the next write.
    #[test]
    fn a_reopened_store_answers_the_last_result_written() {
        for keep in [1024, 5, 1] {
            let path = scratch(&format!("reopen-{keep}"));
            let mut last = 0;
            for stop in [40, 41, 200, 263] {
                let store = EmbeddedStore::open_with(&path, keep, false).unwrap();
                pollster::block_on(async {
                    for id in ["a", "b"] {
                        if last > 0 {
                            assert_eq!(store.result(id).await.unwrap(), Some(written(id, last).0));
                            let (record, message) = written(id, last + 1);
                            let stale =
                                store.compare_and_set_result(id, last - 1, &record, message);
                            assert!(!stale.await.unwrap(), "the revision goes on from {last}");
                        }
                        write_up_to(&store, id, last + 1, stop).await;
                        assert_eq!(store.result(id).await.unwrap(), Some(written(id, stop).0));
                    }
                    let (row_revision, _) = row(&store, "a");
                    let rows_every = ROW_EVERY.min(keep) as u64 + 1;
                    assert!(stop - row_revision < rows_every, "keep {keep}: row {row_revision}");
                });
                drop(store);
                last = stop;
            }
            let store = EmbeddedStore::open_with(&path, keep, false).unwrap();
            pollster::block_on(async {
                assert_eq!(store.result("a").await.unwrap(), Some(written("a", last).0));
                // The messages the ring holds are the ones written, whatever rows were written.
                let held = keep.min(last as usize) as u64;
                let since = written("a", last + 1 - held).0.version;
                let messages = store.messages_since("a", since).await.unwrap().unwrap();
                let wanted: Vec<Message> = (last + 1 - held..=last)
                    .map(|n| written("a", n).1)
                    .filter(|m| m.version() > since)
                    .collect();
                assert_eq!(messages, wanted);
            });
            drop(store);
            std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        }
    }

    /// A subscriber resuming after a restart, from the version the file was opened at, gets
    /// the messages written since: the version it compares with is not the row's, which
    /// stays behind them (the decoded cache holds none from before the restart).
    #[test]
    fn after_reopening_a_subscriber_gets_the_messages_written_since() {
        let path = scratch("resume");
        let store = EmbeddedStore::open_with(&path, 1024, false).unwrap();
        pollster::block_on(write_up_to(&store, "a", 1, 10));
        drop(store);
        let store = EmbeddedStore::open_with(&path, 1024, false).unwrap();
        pollster::block_on(async {
            let at_open = written("a", 10).0;
            assert_eq!(store.result("a").await.unwrap(), Some(at_open.clone()));
            write_up_to(&store, "a", 11, 13).await;
            let since = store.messages_since("a", at_open.version).await.unwrap();
            let wanted: Vec<Message> = (11..=13).map(|n| written("a", n).1).collect();
            assert_eq!(since, Some(wanted));
        });
        drop(store);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// The row waits while messages can rebuild it, and is written for the first result, a
    /// failed query, a revision that does not follow, and every `ROW_EVERY` messages.
    #[test]
    fn rows_are_written_only_when_messages_cannot_stand_for_them() {
        let path = scratch("rows");
        let store = EmbeddedStore::open_with(&path, 1024, false).unwrap();
        pollster::block_on(async {
            write_up_to(&store, "a", 1, 1).await;
            assert_eq!(row(&store, "a").0, 1, "the first result is a row");
            write_up_to(&store, "a", 2, 10).await;
            assert_eq!(row(&store, "a").0, 1, "nine messages stand for nine rows");
            write_up_to(&store, "a", 11, 1 + ROW_EVERY as u64).await;
            assert_eq!(row(&store, "a").0, 1);
            write_up_to(&store, "a", 2 + ROW_EVERY as u64, 2 + ROW_EVERY as u64).await;
            assert_eq!(row(&store, "a").0, 2 + ROW_EVERY as u64, "every ROW_EVERY messages");
            let n = 3 + ROW_EVERY as u64;
            let (mut failed, _) = written("a", n);
            failed.error = Some(json!({"type": "budget"}));
            let message = Message::progress_of("a", &failed);
            assert!(store.compare_and_set_result("a", n - 1, &failed, message).await.unwrap());
            assert_eq!(row(&store, "a").0, n, "a failed query's result is a row");
            let (mut jump, message) = written("a", n + 1);
            jump.revision = n + 5;
            assert!(store.compare_and_set_result("a", n, &jump, message).await.unwrap());
            assert_eq!(row(&store, "a").0, n + 5, "a revision that does not follow");
        });
        drop(store);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// A message stands for the row only when it carries everything that changed: each
    /// mismatch with the record it comes with, or with the record before, needs a row.
    #[test]
    fn a_message_follows_only_the_record_it_describes() {
        let at = |n| {
            let (record, _) = written("a", n);
            Written { revision: record.revision, version: record.version, since_row: 0 }
        };
        for n in [5, 6] {
            let (record, message) = written("a", n);
            assert!(follows(&at(n - 1), &record, &message), "write {n}: {message:?}");
        }
        assert!(matches!(written("a", 6).1, Message::Progress { .. }), "progress follows too");
        let before = at(4);
        let (record, message) = written("a", 5);
        assert!(matches!(message, Message::Delta { .. }));
        let mut other = record.clone();
        other.progress = progress(1);
        assert!(!follows(&before, &other, &message), "progress the message does not carry");
        other = record.clone();
        other.caught_up = !record.caught_up;
        assert!(!follows(&before, &other, &message), "caught_up the message does not carry");
        other = record.clone();
        other.revision += 1;
        assert!(!follows(&before, &other, &message), "a revision skipped");
        let behind = Written { version: before.version - 1, ..before };
        assert!(!follows(&behind, &record, &message), "a delta from another version");
        let none = Written { revision: 0, version: 0, since_row: 0 };
        assert!(!follows(&none, &record, &message), "no result before");
        let snapshot = Message::snapshot("a", &record);
        assert!(!follows(&before, &record, &snapshot), "a snapshot");
        let (mut failed, _) = written("a", 6);
        failed.error = Some(json!({"type": "budget"}));
        let progress_message = Message::progress_of("a", &failed);
        assert!(!follows(&before, &failed, &progress_message), "an error");
    }

    /// A message that cannot bring a row up to date is the file's corruption, said as such,
    /// not a result made up.
    #[test]
    fn a_message_that_cannot_follow_a_row_is_corruption() {
        let (mut record, _) = written("a", 4);
        let snapshot = Message::snapshot("a", &record);
        let e = apply(&mut record, &snapshot).unwrap_err();
        assert!(e.to_string().contains("only a result row may follow"), "{e}");
        let (_, Message::Delta { id, version, from, caught_up, progress, .. }) = written("a", 5)
        else {
            panic!("write 5 is a delta");
        };
        let patch = json!([{"op": "remove", "path": "/nowhere"}]);
        let bad = Message::Delta { id, version, from, caught_up, progress, patch };
        let e = apply(&mut record, &bad).unwrap_err();
        assert!(e.to_string().contains("a delta does not apply"), "{e}");
        assert_eq!(record, written("a", 4).0, "left as it was");
    }

    /// An aborted batch forgets what the committer knew; the next write looks it up from the
    /// file (its row and the messages after it) and compares against the right revision.
    #[test]
    fn after_an_aborted_batch_the_revision_is_looked_up_again() {
        let path = scratch("aborted");
        let store = EmbeddedStore::open_with(&path, 1024, false).unwrap();
        pollster::block_on(write_up_to(&store, "a", 1, 7));
        let mut batch = vec![crate::test_support::failing_write()];
        let failed: PortError =
            commit(&store.db, &store.pending, &store.messages, &mut batch).unwrap_err();
        assert!(failed.to_string().contains("injected"), "{failed}");
        pollster::block_on(async {
            let (record, message) = written("a", 8);
            let stale = store.compare_and_set_result("a", 1, &record, message.clone());
            assert!(!stale.await.unwrap(), "revision 7 stands, not the row's 1");
            assert!(lock_ring(&store.messages).written.contains_key("a"), "looked up");
            assert!(store.compare_and_set_result("a", 7, &record, message).await.unwrap());
            assert_eq!(store.result("a").await.unwrap(), Some(record));
        });
        drop(store);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
