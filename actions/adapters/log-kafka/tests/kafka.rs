//! Integration tests against a real broker at `KAFKA_BROKERS` (start one with
//! `scripts/kafka.sh start`); each test prints "skipped: KAFKA_BROKERS not set" without it.
//! Run them one at a time (`--test-threads=1`): one restarts the broker.
#![allow(clippy::disallowed_methods, reason = "tests read KAFKA_BROKERS and time their own waits")]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kappa_core::Topic;
use kappa_core::conformance_log::log_conformance;
use kappa_core::ports::{LogReader, LogWriter, NewRecord, PortResult, ReadRequest, Watermarks};
use kappa_log_kafka::{KafkaLog, KafkaLogConfig};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::{Offset, TopicPartitionList};

fn brokers() -> Option<String> {
    match std::env::var("KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            println!("skipped: KAFKA_BROKERS not set");
            None
        }
    }
}

fn log(brokers: &str) -> KafkaLog {
    KafkaLog::connect(KafkaLogConfig { brokers: brokers.to_string(), extra: vec![] }).unwrap()
}

fn random_name(what: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("kappa-test-{what}-{}-{nanos:x}", std::process::id())
}

fn value(i: i64, size: usize) -> Vec<u8> {
    let mut v = format!("{i:012}:").into_bytes();
    v.resize(size, b'a' + (i % 26) as u8);
    v
}

async fn fill(log: &KafkaLog, topic: &str, n: i64, size: usize, batch: i64) {
    let mut i = 0;
    while i < n {
        let recs: Vec<NewRecord> = (i..(i + batch).min(n))
            .map(|j| NewRecord {
                key: Some(j.to_string().into_bytes()),
                value: value(j, size),
                timestamp: 1_000_000 + j,
            })
            .collect();
        assert_eq!(log.append(topic, 0, &recs).await.unwrap(), i);
        i += recs.len() as i64;
    }
}

/// Retry transient failures for up to `secs`.
async fn retry<T, F: std::future::Future<Output = PortResult<T>>>(
    secs: u64,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                eprintln!("transient: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms() {
    let Some(b) = brokers() else { return };
    let log = log(&b);
    log_conformance(&log, &random_name("conf")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_reports_lost_and_continues_at_the_low_watermark() {
    let Some(b) = brokers() else { return };
    let log = log(&b);
    let topic = random_name("retention");
    assert_eq!(log.ensure_topic(&Topic::new(&topic).expect("a valid name"), 1).await.unwrap(), 1);
    fill(&log, &topic, 100, 100, 25).await;
    // Warm a cached consumer positioned at 10 (with 10.. prefetched).
    let first = log
        .read(&topic, 0, ReadRequest { from: 0, end: None, max_records: 10, max_bytes: 1 << 20 })
        .await
        .unwrap();
    assert_eq!(first.next_offset, 10);

    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &b).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(40)).unwrap();
    let res = admin.delete_records(&tpl, &AdminOptions::new()).await.unwrap();
    assert_eq!(res.elements()[0].offset(), Offset::Offset(40));
    assert_eq!(log.watermarks(&topic, 0).await.unwrap(), Watermarks { low: 40, high: 100 });

    for from in [0, 10] {
        let batch = log
            .read(&topic, 0, ReadRequest { from, end: None, max_records: 7, max_bytes: 1 << 20 })
            .await
            .unwrap();
        assert_eq!(batch.lost, (40 - from) as u64, "from {from}");
        assert_eq!(batch.records.len(), 7);
        assert_eq!(batch.records[0].offset, 40);
        assert_eq!(batch.records[0].value, value(40, 100));
        assert_eq!(batch.next_offset, 47);
        assert_eq!(batch.high_watermark, 100);
    }
    // A range entirely deleted: all lost, next_offset at the low watermark.
    let batch = log
        .read(&topic, 0, ReadRequest { from: 5, end: Some(30), max_records: 7, max_bytes: 1 << 20 })
        .await
        .unwrap();
    assert_eq!((batch.records.len(), batch.lost, batch.next_offset), (0, 35, 40));
    // The rest reads normally.
    let mut next = 47;
    while next < 100 {
        let b = log
            .read(
                &topic,
                0,
                ReadRequest { from: next, end: None, max_records: 20, max_bytes: 1 << 20 },
            )
            .await
            .unwrap();
        assert_eq!(b.lost, 0);
        for r in &b.records {
            assert_eq!((r.offset, &r.value[..]), (next, &value(next, 100)[..]));
            next += 1;
        }
    }
}

fn kafka_sh(arg: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/kafka.sh");
    let status = Command::new(script).arg(arg).status().unwrap();
    assert!(status.success(), "kafka.sh {arg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_read_loses_and_duplicates_nothing() {
    let Some(b) = brokers() else { return };
    if std::env::var("KAPPA_SKIP_RESTART").is_ok() {
        println!("skipped: KAPPA_SKIP_RESTART set");
        return;
    }
    let log = log(&b);
    let topic = random_name("restart");
    log.ensure_topic(&Topic::new(&topic).expect("a valid name"), 1).await.unwrap();
    fill(&log, &topic, 3000, 200, 500).await;

    let mut next = 0i64;
    let mut restart = None;
    let mut transient = 0;
    let mut failures_during_restart = 0;
    let started = Instant::now();
    while next < 4000 {
        if next >= 1000 && restart.is_none() {
            // Restart the broker while this loop keeps reading, then append 1000 more
            // (retried while the broker comes back).
            let log = log.clone();
            let topic = topic.clone();
            restart = Some(tokio::spawn(async move {
                tokio::task::spawn_blocking(|| kafka_sh("restart")).await.unwrap();
                let recs: Vec<NewRecord> = (3000..4000)
                    .map(|j| NewRecord {
                        key: None,
                        value: value(j, 200),
                        timestamp: 1_000_000 + j,
                    })
                    .collect();
                let first = retry(60, || log.append(&topic, 0, &recs)).await;
                assert_eq!(first, 3000, "no duplicate appends");
            }));
        }
        let req = ReadRequest { from: next, end: None, max_records: 50, max_bytes: 1 << 20 };
        match log.read(&topic, 0, req).await {
            Ok(batch) => {
                assert_eq!(batch.lost, 0);
                for r in &batch.records {
                    assert_eq!(r.offset, next, "no loss, no duplicates");
                    assert_eq!(r.value, value(next, 200));
                    next += 1;
                }
                assert_eq!(batch.next_offset, next);
            }
            Err(e) => {
                assert!(e.is_retryable(), "only transient failures: {e}");
                if transient % 20 == 0 {
                    eprintln!("transient read failure at {next}: {e}");
                }
                transient += 1;
                if restart.as_ref().is_some_and(|r| !r.is_finished()) {
                    failures_during_restart += 1;
                }
                assert!(started.elapsed() < Duration::from_secs(120), "broker did not come back");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    restart.unwrap().await.unwrap();
    eprintln!(
        "restart test: {transient} transient failures ({failures_during_restart} during the restart)"
    );
    assert_eq!(log.watermarks(&topic, 0).await.unwrap(), Watermarks { low: 0, high: 4000 });
}

/// Replay speed: 100k records of 4 KB read in batches of 1,000 (run with `--ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn replay_throughput() {
    let Some(b) = brokers() else { return };
    let log = log(&b);
    let topic = random_name("throughput");
    log.ensure_topic(&Topic::new(&topic).expect("a valid name"), 1).await.unwrap();
    let n = 100_000i64;
    let t = Instant::now();
    fill(&log, &topic, n, 4096, 1000).await;
    let produce = t.elapsed();
    // Cold read (new KafkaLog: no cached consumer), then a second pass.
    for pass in 0..2 {
        let log = self::log(&b);
        let t = Instant::now();
        let mut next = 0;
        let mut bytes = 0usize;
        while next < n {
            let req =
                ReadRequest { from: next, end: None, max_records: 1000, max_bytes: usize::MAX };
            let batch = log.read(&topic, 0, req).await.unwrap();
            assert_eq!(batch.records.first().map(|r| r.offset), Some(next));
            bytes += batch.records.iter().map(|r| r.value.len()).sum::<usize>();
            next = batch.next_offset;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "pass {pass}: read {n} records ({} MB) in {secs:.2} s: {:.0} records/s, {:.0} MB/s (produce took {:.1} s)",
            bytes >> 20,
            n as f64 / secs,
            (bytes >> 20) as f64 / secs,
            produce.as_secs_f64()
        );
    }
}
