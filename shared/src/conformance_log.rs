//! The conformance suite of the log ports: every [`LogReader`] + [`LogWriter`] adapter must
//! behave exactly like [`crate::ports::MemoryLog`], and this module says how, as one async
//! function the adapters' tests call with a fresh log.
//!
//! It is pure (no runtime, clock or I/O of its own): the caller drives the future with
//! whatever executor its adapter needs (`pollster` for the in-memory log, tokio for Kafka and
//! the embedded log). Failures panic with a message naming the broken property.
//!
//! Retention (`lost` records, a raised low watermark) cannot be triggered through the traits,
//! so each adapter tests it on its own.

use crate::ports::{Batch, LogReader, LogRecord, LogWriter, NewRecord, ReadRequest, Watermarks};
use crate::topic::Topic;

/// A read request with generous limits.
fn req(from: i64, end: Option<i64>, max_records: usize, max_bytes: usize) -> ReadRequest {
    ReadRequest { from, end, max_records, max_bytes }
}

/// Records `i` in `range` with 10-byte values, alternating keyed/keyless, distinct timestamps.
fn records(tag: &str, range: std::ops::Range<usize>) -> Vec<NewRecord> {
    range
        .map(|i| NewRecord {
            key: if i % 2 == 0 { Some(format!("key-{i}").into_bytes()) } else { None },
            value: format!("{tag}{i:09}").into_bytes(),
            timestamp: 1_700_000_000_000 + (i as i64) * 1_001,
        })
        .collect()
}

fn offsets(batch: &Batch) -> Vec<i64> {
    batch.records.iter().map(|r| r.offset).collect()
}

async fn read_ok<L: LogReader + ?Sized>(
    log: &L,
    topic: &str,
    partition: u32,
    request: ReadRequest,
) -> Batch {
    match log.read(topic, partition, request).await {
        Ok(b) => b,
        Err(e) => panic!("read {topic}/{partition} {request:?} failed: {e}"),
    }
}

/// Every record `[from, to)` of a partition, read in batches of `step` records, checking the
/// offsets are consecutive and in order.
async fn read_all<L: LogReader + ?Sized>(
    log: &L,
    topic: &str,
    partition: u32,
    from: i64,
    to: i64,
    step: usize,
) -> Vec<LogRecord> {
    let mut out: Vec<LogRecord> = Vec::new();
    let mut next = from;
    while next < to {
        let b = read_ok(log, topic, partition, req(next, None, step, usize::MAX)).await;
        assert_eq!(b.lost, 0, "{topic}/{partition}: nothing is lost without retention");
        assert!(
            !b.records.is_empty(),
            "{topic}/{partition}: read at {next} below head {to} is empty"
        );
        assert!(b.records.len() <= step, "{topic}/{partition}: more than max_records");
        for r in &b.records {
            assert_eq!(
                r.offset, next,
                "{topic}/{partition}: offsets must be consecutive, in order"
            );
            next += 1;
        }
        assert_eq!(b.next_offset, next, "{topic}/{partition}: next_offset after the last record");
        out.extend(b.records);
    }
    out
}

/// Check the adapter against the reference semantics of the log ports.
///
/// `log` must be fresh enough that topics named `{topic_prefix}-…` do not exist yet; the
/// suite creates `{topic_prefix}-a` (3 partitions) and `{topic_prefix}-b` (1 partition) and
/// checks `{topic_prefix}-missing` does not exist. Use a random prefix against shared brokers.
pub async fn log_conformance(log: &(impl LogReader + LogWriter), topic_prefix: &str) {
    let a = Topic::new(format!("{topic_prefix}-a")).expect("a valid prefix");
    let b = Topic::new(format!("{topic_prefix}-b")).expect("a valid prefix");
    let missing = format!("{topic_prefix}-missing");

    // Unknown topics.
    assert_eq!(log.partitions(&missing).await.expect("partitions of a missing topic"), None);
    assert_eq!(
        log.partitions(&missing).await.expect("partitions of a missing topic, again"),
        None,
        "asking about a topic must not create it"
    );

    // ensure_topic creates, and is idempotent (keeps the first partition count).
    assert_eq!(log.ensure_topic(&a, 3).await.expect("ensure_topic a"), 3);
    assert_eq!(log.ensure_topic(&a, 3).await.expect("ensure_topic a again"), 3);
    assert_eq!(log.ensure_topic(&a, 5).await.expect("ensure_topic a, other count"), 3);
    assert_eq!(log.partitions(&a).await.expect("partitions a"), Some(3));
    assert_eq!(log.ensure_topic(&b, 1).await.expect("ensure_topic b"), 1);
    assert_eq!(log.partitions(&b).await.expect("partitions b"), Some(1));
    assert_eq!(log.partitions(&missing).await.expect("partitions missing"), None);

    // Fresh partitions are empty; out-of-range partitions are errors.
    for p in 0..3 {
        assert_eq!(
            log.watermarks(&a, p).await.expect("watermarks of a fresh partition"),
            Watermarks { low: 0, high: 0 }
        );
    }
    assert!(log.watermarks(&a, 7).await.is_err(), "watermarks of a partition out of range");
    assert!(log.read(&a, 7, req(0, None, 10, 1000)).await.is_err(), "read out of range");
    assert!(log.append(&a, 7, &records("x", 0..1)).await.is_err(), "append out of range");
    let empty = read_ok(log, &a, 0, req(0, None, 10, 1000)).await;
    assert_eq!(empty, Batch { records: vec![], next_offset: 0, high_watermark: 0, lost: 0 });

    // Appends return consecutive first offsets, per partition.
    let p0 = records("p0-", 0..30);
    assert_eq!(log.append(&a, 0, &p0[0..1]).await.expect("append 1"), 0);
    assert_eq!(log.append(&a, 0, &p0[1..4]).await.expect("append 3"), 1);
    assert_eq!(log.append(&a, 0, &p0[4..30]).await.expect("append 26"), 4);
    let p1 = records("p1-", 0..5);
    assert_eq!(log.append(&a, 1, &p1).await.expect("append p1"), 0, "offsets are per partition");
    assert_eq!(log.append(&a, 1, &p1[0..2]).await.expect("append p1 again"), 5);
    let pb = records("b-", 0..3);
    assert_eq!(log.append(&b, 0, &pb).await.expect("append b"), 0, "offsets are per topic");
    assert_eq!(
        log.append(&a, 0, &[]).await.expect("empty append"),
        30,
        "an empty append returns the head"
    );

    // Watermarks.
    assert_eq!(log.watermarks(&a, 0).await.expect("wm a0"), Watermarks { low: 0, high: 30 });
    assert_eq!(log.watermarks(&a, 1).await.expect("wm a1"), Watermarks { low: 0, high: 7 });
    assert_eq!(log.watermarks(&a, 2).await.expect("wm a2"), Watermarks { low: 0, high: 0 });
    assert_eq!(log.watermarks(&b, 0).await.expect("wm b0"), Watermarks { low: 0, high: 3 });

    // Keys, values and timestamps round-trip, in offset order.
    let all = read_all(log, &a, 0, 0, 30, 1000).await;
    let want: Vec<LogRecord> = p0
        .iter()
        .enumerate()
        .map(|(i, r)| LogRecord {
            offset: i as i64,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone().into(),
        })
        .collect();
    assert_eq!(all, want, "records round-trip (offset, timestamp, key, value)");
    assert_eq!(read_all(log, &a, 0, 0, 30, 7).await, want, "batches of 7 read the same records");
    assert_eq!(read_all(log, &a, 0, 0, 30, 1).await, want, "batches of 1 read the same records");
    let a1 = read_all(log, &a, 1, 0, 7, 3).await;
    let a1_values: Vec<&[u8]> = a1.iter().map(|r| &r.value[..]).collect();
    let p1_values: Vec<&[u8]> = p1.iter().chain(&p1[0..2]).map(|r| r.value.as_slice()).collect();
    assert_eq!(a1_values, p1_values, "partition 1 holds its own records");
    let bb = read_all(log, &b, 0, 0, 3, 100).await;
    assert_eq!(
        bb.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
        vec![pb[0].value.clone(), pb[1].value.clone(), pb[2].value.clone()]
    );

    // Bounded by max_records.
    let r = read_ok(log, &a, 0, req(0, None, 4, usize::MAX)).await;
    assert_eq!(offsets(&r), vec![0, 1, 2, 3], "max_records");
    assert_eq!((r.next_offset, r.high_watermark, r.lost), (4, 30, 0));
    let r = read_ok(log, &a, 0, req(10, None, 5, usize::MAX)).await;
    assert_eq!(offsets(&r), vec![10, 11, 12, 13, 14], "max_records from the middle");
    assert_eq!(r.next_offset, 15);

    // Bounded by max_bytes (values are 12 bytes): records are added while fewer than
    // max_bytes value bytes have been taken, and at least one record is returned.
    let vlen = p0[0].value.len();
    assert_eq!(vlen, 12);
    let r = read_ok(log, &a, 0, req(0, None, 1000, 2 * vlen)).await;
    assert_eq!(offsets(&r), vec![0, 1], "max_bytes at a record boundary");
    let r = read_ok(log, &a, 0, req(0, None, 1000, 2 * vlen + 1)).await;
    assert_eq!(offsets(&r), vec![0, 1, 2], "max_bytes inside a record takes that record");
    let r = read_ok(log, &a, 0, req(5, None, 1000, 1)).await;
    assert_eq!(offsets(&r), vec![5], "max_bytes below one record still returns one");
    assert_eq!(r.next_offset, 6);
    let r = read_ok(log, &a, 0, req(5, None, 1000, 0)).await;
    assert_eq!(offsets(&r), vec![5], "max_bytes 0 still returns one record");

    // Bounded by end (an offset-range segment).
    let r = read_ok(log, &a, 0, req(3, Some(6), 1000, usize::MAX)).await;
    assert_eq!(offsets(&r), vec![3, 4, 5], "end is exclusive");
    assert_eq!((r.next_offset, r.high_watermark), (6, 30));
    let r = read_ok(log, &a, 0, req(3, Some(6), 2, usize::MAX)).await;
    assert_eq!(offsets(&r), vec![3, 4], "max_records within a range");
    assert_eq!(r.next_offset, 5);
    let r = read_ok(log, &a, 0, req(6, Some(6), 1000, usize::MAX)).await;
    assert_eq!(offsets(&r), Vec::<i64>::new(), "a finished range reads nothing");
    assert_eq!(r.next_offset, 6);
    let r = read_ok(log, &a, 0, req(25, Some(100), 1000, usize::MAX)).await;
    assert_eq!(offsets(&r), vec![25, 26, 27, 28, 29], "end beyond the head stops at the head");
    assert_eq!((r.next_offset, r.high_watermark), (30, 30));

    // From the head (and beyond it): nothing, and next_offset stays where it was.
    let r = read_ok(log, &a, 0, req(30, None, 1000, usize::MAX)).await;
    assert_eq!(r, Batch { records: vec![], next_offset: 30, high_watermark: 30, lost: 0 });
    let r = read_ok(log, &a, 0, req(35, None, 1000, usize::MAX)).await;
    assert_eq!(r, Batch { records: vec![], next_offset: 35, high_watermark: 30, lost: 0 });
    let r = read_ok(log, &a, 2, req(0, None, 1000, usize::MAX)).await;
    assert_eq!(r, Batch { records: vec![], next_offset: 0, high_watermark: 0, lost: 0 });

    // A read after more appends sees them, and the head moves.
    let more = records("p0-", 30..40);
    assert_eq!(log.append(&a, 0, &more).await.expect("append more"), 30);
    let r = read_ok(log, &a, 0, req(30, None, 1000, usize::MAX)).await;
    assert_eq!(offsets(&r), (30..40).collect::<Vec<_>>(), "reads see later appends");
    assert_eq!((r.next_offset, r.high_watermark), (40, 40));
    assert_eq!(r.records[0].value, more[0].value);

    // Larger values and a larger batch.
    let big: Vec<NewRecord> = (0..200)
        .map(|i| NewRecord {
            key: Some(vec![i as u8; 3]),
            value: vec![(i % 251) as u8; 1000 + i],
            timestamp: 1_600_000_000_000 + i as i64,
        })
        .collect();
    assert_eq!(log.append(&a, 2, &big).await.expect("append big"), 0);
    let got = read_all(log, &a, 2, 0, 200, 64).await;
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.value, big[i].value, "big value {i}");
        assert_eq!(r.key, big[i].key, "big key {i}");
        assert_eq!(r.timestamp, big[i].timestamp, "big timestamp {i}");
    }
    let r = read_ok(log, &a, 2, req(0, None, 1000, 10_000)).await;
    // 1000 + 1001 + ... : 9 records reach 9036 < 10000, the 10th brings 10045 >= 10000.
    assert_eq!(r.records.len(), 10, "max_bytes over larger values");
    assert_eq!(r.next_offset, 10);
}
