//! The embedded log: conformance, durability (reopen, torn tails, kill -9), retention,
//! notifications and concurrency.
#![allow(
    clippy::disallowed_methods,
    reason = "tests name temp dirs by time and pass the crash child its dir by env"
)]

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_core::Topic;
use kappa_core::conformance_log::log_conformance;
use kappa_core::ports::{LogReader, LogWriter, NewRecord, ReadRequest, Watermarks};
use kappa_log_embedded::{EmbeddedLog, EmbeddedLogConfig};

/// A fresh directory under the target dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir()
            .join(format!("kappa-log-embedded-{name}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(segment_bytes: u64) -> EmbeddedLogConfig {
    EmbeddedLogConfig { segment_bytes, ..EmbeddedLogConfig::default() }
}

fn rec(i: i64) -> NewRecord {
    NewRecord {
        key: (i % 3 != 0).then(|| format!("k{i}").into_bytes()),
        value: format!("value-{i:08}").into_bytes(),
        timestamp: 1_000 + i,
    }
}

fn recs(range: std::ops::Range<i64>) -> Vec<NewRecord> {
    range.map(rec).collect()
}

fn all(from: i64) -> ReadRequest {
    ReadRequest { from, end: None, max_records: usize::MAX, max_bytes: usize::MAX }
}

/// Check partition `topic/0` holds exactly `rec(low..high)`.
async fn check_contents(log: &EmbeddedLog, topic: &str, low: i64, high: i64) {
    assert_eq!(log.watermarks(topic, 0).await.unwrap(), Watermarks { low, high });
    let b = log.read(topic, 0, all(low)).await.unwrap();
    assert_eq!(b.records.len() as i64, high - low);
    for r in &b.records {
        let want = rec(r.offset);
        assert_eq!(
            (&r.key, &r.value, r.timestamp),
            (&want.key, &bytes::Bytes::from(want.value.clone()), want.timestamp)
        );
    }
    assert_eq!(b.next_offset, high);
}

fn segments(dir: &Path, topic: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join(topic).join("0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn conforms() {
    let dir = TempDir::new("conf");
    let log = EmbeddedLog::open(&dir.0, EmbeddedLogConfig::default()).unwrap();
    log_conformance(&log, "conf").await;
}

#[tokio::test]
async fn conforms_with_tiny_segments_and_fsync() {
    // Segments of ~100 bytes: nearly every append rolls, reads cross many segments.
    let dir = TempDir::new("conf-tiny");
    let cfg = EmbeddedLogConfig { segment_bytes: 100, fsync: true, ..EmbeddedLogConfig::default() };
    let log = EmbeddedLog::open(&dir.0, cfg).unwrap();
    log_conformance(&log, "tiny").await;
    // And the same data reads the same after a reopen.
    let before = log.read("tiny-a", 2, all(0)).await.unwrap();
    drop(log);
    let log = EmbeddedLog::open(&dir.0, cfg).unwrap();
    assert_eq!(log.read("tiny-a", 2, all(0)).await.unwrap(), before);
    assert_eq!(log.partitions("tiny-a").await.unwrap(), Some(3));
}

#[tokio::test]
async fn reopen_keeps_data_and_continues() {
    let dir = TempDir::new("reopen");
    {
        let log = EmbeddedLog::open(&dir.0, config(1000)).unwrap();
        assert_eq!(log.ensure_topic(&Topic::new("t").expect("a valid name"), 2).await.unwrap(), 2);
        for i in 0..50 {
            assert_eq!(log.append("t", 0, &recs(i * 4..i * 4 + 4)).await.unwrap(), i * 4);
        }
    }
    let log = EmbeddedLog::open(&dir.0, config(1000)).unwrap();
    assert_eq!(log.partitions("t").await.unwrap(), Some(2));
    assert_eq!(log.ensure_topic(&Topic::new("t").expect("a valid name"), 9).await.unwrap(), 2);
    check_contents(&log, "t", 0, 200).await;
    assert!(segments(&dir.0, "t").len() > 5, "small segments rolled");
    assert_eq!(log.append("t", 0, &recs(200..210)).await.unwrap(), 200);
    check_contents(&log, "t", 0, 210).await;
    // Seeks land on the right record from anywhere.
    for from in [0, 1, 57, 99, 150, 209] {
        let b = log
            .read("t", 0, ReadRequest { from, end: None, max_records: 3, max_bytes: 1 << 20 })
            .await
            .unwrap();
        assert_eq!(b.records[0].offset, from);
    }
    assert_eq!(log.watermarks("t", 1).await.unwrap(), Watermarks { low: 0, high: 0 });
}

/// Truncate the last segment by `cut` bytes, or flip a byte `flip` bytes before its end.
fn damage(dir: &Path, topic: &str, cut: u64, flip: Option<u64>) {
    let last = segments(dir, topic).pop().unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&last).unwrap();
    let len = f.metadata().unwrap().len();
    if let Some(back) = flip {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, len - back).unwrap();
        b[0] ^= 0x40;
        f.write_all_at(&b, len - back).unwrap();
    }
    f.set_len(len - cut).unwrap();
}

#[tokio::test]
async fn torn_tail_is_dropped_on_reopen() {
    for (name, cut, flip) in [
        ("cut-mid-frame", 5, None),
        ("cut-header", 0, None), // replaced below by a cut inside the last header
        ("flip-value", 0, Some(3)),
        ("flip-length", 0, Some(20)),
    ] {
        let dir = TempDir::new(name);
        {
            let log = EmbeddedLog::open(&dir.0, config(1 << 20)).unwrap();
            log.ensure_topic(&Topic::new("t").expect("a valid name"), 1).await.unwrap();
            log.append("t", 0, &recs(0..10)).await.unwrap();
            log.append("t", 0, &recs(10..13)).await.unwrap();
        }
        if name == "cut-header" {
            // Leave 3 bytes of a new frame header after the last append.
            let last = segments(&dir.0, "t").pop().unwrap();
            let len = fs::metadata(&last).unwrap().len();
            OpenOptions::new().write(true).open(&last).unwrap().set_len(len + 3).unwrap();
            let log = EmbeddedLog::open(&dir.0, config(1 << 20)).unwrap();
            check_contents(&log, "t", 0, 13).await;
            assert_eq!(fs::metadata(&last).unwrap().len(), len, "garbage after the tail is cut");
            continue;
        }
        damage(&dir.0, "t", cut, flip);
        let log = EmbeddedLog::open(&dir.0, config(1 << 20)).unwrap();
        // The whole damaged append (10..13) goes, not just its broken record.
        check_contents(&log, "t", 0, 10).await;
        assert_eq!(log.append("t", 0, &recs(10..15)).await.unwrap(), 10, "{name}");
        check_contents(&log, "t", 0, 15).await;
        drop(log);
        let log = EmbeddedLog::open(&dir.0, config(1 << 20)).unwrap();
        check_contents(&log, "t", 0, 15).await;
    }
}

#[tokio::test]
async fn a_new_empty_segment_after_a_crash_is_fine() {
    let dir = TempDir::new("empty-seg");
    {
        let log = EmbeddedLog::open(&dir.0, config(200)).unwrap();
        log.ensure_topic(&Topic::new("t").expect("a valid name"), 1).await.unwrap();
        for i in 0..10 {
            log.append("t", 0, &recs(i * 3..i * 3 + 3)).await.unwrap();
        }
    }
    // A crash right after rolling: the new segment exists but is empty; or holds a torn frame.
    let n = segments(&dir.0, "t").len();
    fs::write(dir.0.join("t/0").join(format!("{:020}.log", 30)), b"\x10\x00").unwrap();
    let log = EmbeddedLog::open(&dir.0, config(200)).unwrap();
    check_contents(&log, "t", 0, 30).await;
    assert_eq!(log.append("t", 0, &recs(30..33)).await.unwrap(), 30);
    check_contents(&log, "t", 0, 33).await;
    assert!(segments(&dir.0, "t").len() > n);
}

#[tokio::test]
async fn retention_by_size_reports_lost() {
    let dir = TempDir::new("ret-size");
    let cfg = EmbeddedLogConfig {
        segment_bytes: 500,
        retention_bytes: Some(1500),
        ..EmbeddedLogConfig::default()
    };
    let log = EmbeddedLog::open(&dir.0, cfg).unwrap();
    log.ensure_topic(&Topic::new("t").expect("a valid name"), 1).await.unwrap();
    for i in 0..40 {
        log.append("t", 0, &recs(i * 2..i * 2 + 2)).await.unwrap();
    }
    let before = segments(&dir.0, "t").len();
    let deleted = log.apply_retention(0).unwrap();
    let after = segments(&dir.0, "t");
    assert!(deleted > 0 && after.len() < before, "{deleted} {before} {}", after.len());
    let total: u64 = after.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert!(total >= 1500, "keeps at least retention_bytes ({total})");
    let wm = log.watermarks("t", 0).await.unwrap();
    assert_eq!((wm.low, wm.high), (deleted as i64, 80));
    let b = log
        .read("t", 0, ReadRequest { from: 0, end: None, max_records: 5, max_bytes: 1 << 20 })
        .await
        .unwrap();
    assert_eq!(b.lost, wm.low as u64);
    assert_eq!(b.records[0].offset, wm.low);
    assert_eq!(b.records.len(), 5);
    assert_eq!(b.next_offset, wm.low + 5);
    // A range entirely below the low watermark: everything lost, nothing read.
    let b = log
        .read("t", 0, ReadRequest { from: 0, end: Some(2), max_records: 5, max_bytes: 1 << 20 })
        .await
        .unwrap();
    assert_eq!((b.records.len(), b.lost, b.next_offset), (0, wm.low as u64, wm.low));
    // Retention survives a reopen, and appends continue.
    drop(log);
    let log = EmbeddedLog::open(&dir.0, cfg).unwrap();
    assert_eq!(log.watermarks("t", 0).await.unwrap(), wm);
    check_contents(&log, "t", wm.low, 80).await;
    assert_eq!(log.append("t", 0, &recs(80..81)).await.unwrap(), 80);
}

#[tokio::test]
async fn retention_by_age_never_deletes_the_active_segment() {
    let dir = TempDir::new("ret-age");
    let cfg = EmbeddedLogConfig {
        segment_bytes: 300,
        retention_ms: Some(1_000),
        ..EmbeddedLogConfig::default()
    };
    let log = EmbeddedLog::open(&dir.0, cfg).unwrap();
    log.ensure_topic(&Topic::new("t").expect("a valid name"), 1).await.unwrap();
    for i in 0..30 {
        log.append("t", 0, &recs(i..i + 1)).await.unwrap(); // timestamps 1000..1030
    }
    assert_eq!(log.apply_retention(1_500).unwrap(), 0, "nothing older than 500 ms yet");
    let deleted = log.apply_retention(1_000_000).unwrap();
    let wm = log.watermarks("t", 0).await.unwrap();
    assert_eq!(segments(&dir.0, "t").len(), 1, "only the active segment is left");
    assert_eq!(wm.low, deleted as i64);
    assert!(wm.low > 0 && wm.low < 30);
    check_contents(&log, "t", wm.low, 30).await;
    let b = log.read("t", 0, all(3)).await.unwrap();
    assert_eq!(b.lost, (wm.low - 3) as u64);
}

#[tokio::test]
async fn subscribe_notifies_appends() {
    let dir = TempDir::new("notify");
    let log = EmbeddedLog::open(&dir.0, EmbeddedLogConfig::default()).unwrap();
    let mut rx = log.subscribe();
    log.ensure_topic(&Topic::new("t").expect("a valid name"), 2).await.unwrap();
    log.append("t", 1, &recs(0..3)).await.unwrap();
    log.append("t", 1, &[]).await.unwrap();
    log.append("t", 0, &recs(0..1)).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), ("t".to_string(), 1, 3));
    assert_eq!(rx.recv().await.unwrap(), ("t".to_string(), 0, 1));
    assert!(rx.try_recv().is_err(), "empty appends do not notify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_readers() {
    let dir = TempDir::new("concurrent");
    let log = Arc::new(EmbeddedLog::open(&dir.0, config(4096)).unwrap());
    log.ensure_topic(&Topic::new("t").expect("a valid name"), 2).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            for i in 0..100i64 {
                let batch: Vec<NewRecord> = (0..3)
                    .map(|j| NewRecord {
                        key: Some(vec![w as u8]),
                        value: format!("{w}:{i}:{j}").into_bytes(),
                        timestamp: i,
                    })
                    .collect();
                log.append("t", (w % 2) as u32, &batch).await.unwrap();
            }
        }));
    }
    // Readers tail both partitions while the writers run: each read is a consistent prefix.
    for p in 0..2u32 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut next = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            while next < 600 {
                assert!(Instant::now() < deadline, "reader stuck at {next}");
                let req =
                    ReadRequest { from: next, end: None, max_records: 50, max_bytes: 1 << 20 };
                let b = log.read("t", p, req).await.unwrap();
                for r in &b.records {
                    assert_eq!(r.offset, next);
                    next += 1;
                }
                assert!(b.high_watermark >= next);
                // Batches are atomic: a read to the head ends on a batch boundary.
                if b.records.len() < 50 {
                    assert_eq!(next % 3, 0);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for p in 0..2 {
        let b = log.read("t", p, all(0)).await.unwrap();
        assert_eq!(b.records.len(), 600);
        // Each append's three records are adjacent and in order.
        for chunk in b.records.chunks(3) {
            let v: Vec<String> =
                chunk.iter().map(|r| String::from_utf8(r.value.to_vec()).unwrap()).collect();
            let prefix = v[0][..v[0].len() - 1].to_string();
            assert_eq!(v, vec![format!("{prefix}0"), format!("{prefix}1"), format!("{prefix}2")]);
        }
    }
}

// ------------------------------------------------------------------------------------------
// kill -9: a child process (this test binary, re-run with an environment variable) appends in
// a loop and prints each acknowledged append; the parent kills it and checks every one.

const CHILD_ENV: &str = "KAPPA_LOG_EMBEDDED_CRASH_CHILD_DIR";

fn crash_value(offset: i64, first: i64, count: usize) -> Vec<u8> {
    let mut v = format!("{offset}/{first}/{count}/").into_bytes();
    v.resize(50 + (offset as usize * 37) % 400, b'x');
    v
}

/// The child: only does anything when run by `killed_writer_loses_no_acknowledged_append`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let log = EmbeddedLog::open(Path::new(&dir), config(16 << 10)).unwrap();
        log.ensure_topic(&Topic::new("crash").expect("a valid name"), 1).await.unwrap();
        let mut first = log.watermarks("crash", 0).await.unwrap().high;
        let mut i = 0usize;
        loop {
            let count = 1 + (i * 7) % 13;
            let batch: Vec<NewRecord> = (0..count)
                .map(|j| {
                    let offset = first + j as i64;
                    NewRecord {
                        key: Some(offset.to_string().into_bytes()),
                        value: crash_value(offset, first, count),
                        timestamp: offset,
                    }
                })
                .collect();
            let got = log.append("crash", 0, &batch).await.unwrap();
            assert_eq!(got, first);
            println!("ACK {first} {count}");
            first += count as i64;
            i += 1;
        }
    });
}

#[tokio::test]
async fn killed_writer_loses_no_acknowledged_append() {
    let dir = TempDir::new("crash");
    let mut acked: Vec<(i64, usize)> = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let want = 300 + round * 200;
        let mut seen = 0;
        while seen < want {
            let line = lines.next().expect("child stopped").unwrap();
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (f, c) = rest.split_once(' ').unwrap();
                acked.push((f.parse().unwrap(), c.parse().unwrap()));
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines already in the pipe were acknowledged too.
        for line in lines {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (f, c) = rest.split_once(' ').unwrap();
                acked.push((f.parse().unwrap(), c.parse().unwrap()));
            }
        }
        // Reopen: every acknowledged append is there, intact; whatever follows the last
        // acknowledged one consists of complete appends only.
        let log = EmbeddedLog::open(&dir.0, config(16 << 10)).unwrap();
        let wm = log.watermarks("crash", 0).await.unwrap();
        let (last_first, last_count) = *acked.last().unwrap();
        assert!(wm.high >= last_first + last_count as i64, "round {round}: {wm:?}");
        let b = log.read("crash", 0, all(0)).await.unwrap();
        assert_eq!(b.records.len() as i64, wm.high);
        let mut at = 0usize;
        while at < b.records.len() {
            let r = &b.records[at];
            let text = String::from_utf8_lossy(&r.value).into_owned();
            let parts: Vec<&str> = text.splitn(4, '/').collect();
            let (first, count): (i64, usize) =
                (parts[1].parse().unwrap(), parts[2].parse().unwrap());
            assert_eq!(first, r.offset, "round {round}: an append starts at {}", r.offset);
            assert!(at + count <= b.records.len(), "round {round}: torn append at {first}");
            for j in 0..count {
                let r = &b.records[at + j];
                assert_eq!(r.value, crash_value(r.offset, first, count));
                assert_eq!(r.key, Some(r.offset.to_string().into_bytes()));
                assert_eq!(r.timestamp, r.offset);
            }
            at += count;
        }
        for &(f, c) in &acked {
            assert!(f + c as i64 <= wm.high);
        }
        // The next child continues after whatever survived (maybe beyond the last ack):
        // drop acknowledgements bookkeeping beyond what we can verify by offset.
        eprintln!("round {round}: {} acked appends, high {}", acked.len(), wm.high);
    }
}

// --- Descriptors: idle topics hold none. Counted in a child process, whose descriptors no
// other test opens or closes meanwhile.

const FD_CHILD_ENV: &str = "KAPPA_LOG_EMBEDDED_FD_CHILD_DIR";

fn open_descriptors() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The child: only does anything when run by `idle_topics_give_their_descriptors_back`.
#[test]
fn descriptor_child() {
    let Ok(dir) = std::env::var(FD_CHILD_ENV) else { return };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let topics: Vec<String> = (0..400).map(|i| format!("t{i}")).collect();
        let before = open_descriptors();
        let log = EmbeddedLog::open(Path::new(&dir), config(1 << 20)).unwrap();
        for (i, topic) in topics.iter().enumerate() {
            log.ensure_topic(&Topic::new(topic.as_str()).expect("a valid name"), 3).await.unwrap();
            log.append(topic, 0, &recs(i as i64..i as i64 + 1)).await.unwrap();
        }
        // 1,200 partitions were created and written: each holds its file until two sweeps
        // pass without a use.
        let busy = open_descriptors();
        assert!(busy >= before + 1_200, "files are held while in use: {before} -> {busy}");
        assert_eq!(log.release_idle_files(), 0, "everything was just used");
        assert_eq!(log.release_idle_files(), 1_200);
        assert!(open_descriptors() <= before + 1, "{before} -> {}", open_descriptors());
        // A closed topic reopens on its next read and append, with its records intact.
        for (i, topic) in topics.iter().enumerate() {
            let got = log.read(topic, 0, all(0)).await.unwrap();
            assert_eq!(got.records.len(), 1);
            assert_eq!(got.records[0].value, rec(i as i64).value);
            log.append(topic, 0, &recs(1..2)).await.unwrap();
        }
        assert_eq!(log.release_idle_files(), 0);
        assert_eq!(log.release_idle_files(), 400);
        drop(log);
        // Opening a log of many topics holds no descriptor per topic either.
        let log = EmbeddedLog::open(Path::new(&dir), config(1 << 20)).unwrap();
        assert!(open_descriptors() <= before + 1, "open: {before} -> {}", open_descriptors());
        assert_eq!(log.read("t7", 0, all(0)).await.unwrap().records.len(), 2);
        println!("DESCRIPTORS OK");
    });
}

#[test]
fn idle_topics_give_their_descriptors_back() {
    let dir = TempDir::new("descriptors");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "descriptor_child", "--nocapture", "--test-threads=1"])
        .env(FD_CHILD_ENV, &dir.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("DESCRIPTORS OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn retention_after_files_were_released_reports_lost() {
    let dir = TempDir::new("released-retention");
    let log =
        EmbeddedLog::open(&dir.0, EmbeddedLogConfig { retention_bytes: Some(512), ..config(256) })
            .unwrap();
    log.ensure_topic(&Topic::new("r").expect("a valid name"), 1).await.unwrap();
    for i in 0..40 {
        log.append("r", 0, &recs(i..i + 1)).await.unwrap();
    }
    log.release_idle_files();
    assert!(log.release_idle_files() > 1, "the segments were closed");
    let deleted = log.apply_retention(0).unwrap();
    assert!(deleted > 0);
    let wm = log.watermarks("r", 0).await.unwrap();
    assert_eq!((wm.low, wm.high), (deleted as i64, 40));
    let got = log.read("r", 0, all(0)).await.unwrap();
    assert_eq!(got.lost, deleted);
    check_contents(&log, "r", wm.low, wm.high).await;
}
