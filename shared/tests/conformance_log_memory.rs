//! The log conformance suite against the reference implementation, [`MemoryLog`]: the suite
//! and the reference must agree before adapters are held to either.

use kappa_core::Topic;
use kappa_core::conformance_log::log_conformance;
use kappa_core::ports::{LogReader, LogWriter, MemoryLog, NewRecord, ReadRequest};

#[test]
fn memory_log_conforms() {
    let log = MemoryLog::default();
    pollster::block_on(log_conformance(&log, "conf"));
}

#[test]
fn memory_log_retention_reports_lost() {
    pollster::block_on(async {
        let log = MemoryLog::default();
        log.ensure_topic(&Topic::new("t").expect("a valid name"), 1).await.unwrap();
        let recs: Vec<NewRecord> =
            (0..10).map(|i| NewRecord { key: None, value: vec![i as u8], timestamp: i }).collect();
        log.append("t", 0, &recs).await.unwrap();
        log.truncate_before("t", 0, 4);
        let b = log
            .read("t", 0, ReadRequest { from: 1, end: None, max_records: 2, max_bytes: 100 })
            .await
            .unwrap();
        assert_eq!(b.lost, 3);
        assert_eq!(b.records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(b.next_offset, 6);
    });
}
