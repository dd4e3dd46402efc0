//! Crash safety: a child process commits compare-and-sets and reports each acknowledged one,
//! then is killed with SIGKILL; reopening the file must show every acknowledged CAS (a
//! checkpoint is written with the result write after it, or by the idle flush, so at least up
//! to the last result acknowledged).
//!
//! The child is this test binary run again with `KAPPA_STATE_CRASH_CHILD` set to the file: the
//! `crash_child_writer` test then writes until killed (without the variable it returns at once).

mod common;

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use common::scratch;
use kappa_core::Message;
use kappa_core::ports::{Checkpoint, Progress, ResultRecord, Segment, StateStore};
use kappa_state_embedded::EmbeddedStore;
use serde_json::json;

const CHILD_ENV: &str = "KAPPA_STATE_CRASH_CHILD";
const IDLE_ENV: &str = "KAPPA_STATE_CRASH_IDLE";
/// Set: the child opens the store without fsync (`EmbeddedStore::open_with`).
const NO_FSYNC_ENV: &str = "KAPPA_STATE_CRASH_NO_FSYNC";
const RING: usize = 16;
const SEG: Segment = Segment { partition: 0, start: 0, end: None };

fn result(revision: u64) -> ResultRecord {
    ResultRecord {
        revision,
        version: revision,
        caught_up: false,
        progress: Progress::default(),
        result: json!({"n": revision}).into(),
        error: None,
    }
}

/// The delta from `result(revision - 1)` to `result(revision)`: a store may rebuild a result
/// from its messages (the embedded one does, `results.rs`).
fn delta_to(revision: u64) -> Message {
    let patch = json!([{"op": "replace", "path": "/n", "value": revision}]);
    let progress = Progress::default();
    let from = revision - 1;
    Message::Delta { id: "q".into(), version: revision, from, caught_up: false, progress, patch }
}

fn checkpoint(n: i64) -> Checkpoint {
    Checkpoint { next_offset: n, state: n.to_le_bytes().repeat(64), head: n, lost: 0 }
}

/// This test binary again, as the child writer on `path` (`idle`: one checkpoint, then wait;
/// `fsync`: how it opens the store), and the lines it prints.
fn spawn_child(path: &Path, idle: bool, fsync: bool) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["crash_child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if idle {
        command.env(IDLE_ENV, "1");
    }
    if !fsync {
        command.env(NO_FSYNC_ENV, "1");
    }
    let mut child = command.spawn().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The child: commit CAS pairs forever, printing `acked N` after both of the N-th succeeded.
#[test]
fn crash_child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else { return };
    let fsync = std::env::var_os(NO_FSYNC_ENV).is_none();
    let store = EmbeddedStore::open_with(std::path::Path::new(&path), RING, fsync).unwrap();
    pollster::block_on(async {
        if std::env::var_os(IDLE_ENV).is_some() {
            // A checkpoint and no write after it: only the idle flush puts it in the file.
            let cp = checkpoint(7);
            assert!(store.compare_and_set_checkpoint("idle", &SEG, None, &cp).await.unwrap());
            std::thread::sleep(std::time::Duration::from_millis(500));
            println!("idle");
            std::thread::sleep(std::time::Duration::from_secs(60));
            return;
        }
        for n in 1..=1_000_000i64 {
            let expected = if n == 1 { None } else { Some(n - 1) };
            assert!(
                store
                    .compare_and_set_checkpoint("q", &SEG, expected, &checkpoint(n))
                    .await
                    .unwrap()
            );
            let v = n as u64;
            assert!(
                store.compare_and_set_result("q", v - 1, &result(v), delta_to(v)).await.unwrap()
            );
            println!("acked {n}");
        }
    });
}

#[test]
fn every_acknowledged_cas_survives_sigkill() {
    if std::env::var_os(CHILD_ENV).is_none() {
        acknowledged_cas_survive_sigkill(true);
    }
}

/// Without fsync a commit is still written to the file before it is acknowledged: a crash of
/// the process (not of the machine) loses nothing acknowledged.
#[test]
fn every_acknowledged_cas_survives_sigkill_without_fsync() {
    if std::env::var_os(CHILD_ENV).is_none() {
        acknowledged_cas_survive_sigkill(false);
    }
}

fn acknowledged_cas_survive_sigkill(fsync: bool) {
    let path = scratch(if fsync { "crash" } else { "crash-nofsync" });
    let (mut child, mut lines) = spawn_child(&path, false, fsync);
    let mut acked = 0i64;
    while acked < 40 {
        let line = lines.next().expect("the child stopped before 40 acks").unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            acked = n.trim().parse().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // Acks printed after the last one we read, before the kill, are acknowledged too.
    for line in lines {
        if let Some(n) = line.unwrap().strip_prefix("acked ") {
            acked = n.trim().parse().unwrap();
        }
    }

    let store = EmbeddedStore::open(&path, RING).expect("reopen after SIGKILL");
    pollster::block_on(async {
        let cp = store.checkpoint("q", &SEG).await.unwrap().expect("a checkpoint");
        assert!(
            cp.next_offset == acked || cp.next_offset == acked + 1,
            "acknowledged {acked}, found checkpoint {} (at most one unacknowledged commit more)",
            cp.next_offset
        );
        assert_eq!(cp, checkpoint(cp.next_offset), "the checkpoint is whole");
        let r = store.result("q").await.unwrap().expect("a result");
        assert!(
            r.revision as i64 >= acked && r.revision as i64 <= cp.next_offset,
            "acknowledged {acked}, found result revision {}",
            r.revision
        );
        assert_eq!(r, result(r.revision), "the result is whole");
        let since = store.messages_since("q", r.revision - RING as u64).await.unwrap().unwrap();
        let versions: Vec<u64> = since.iter().map(Message::version).collect();
        assert_eq!(
            versions,
            (r.revision - RING as u64 + 1..=r.revision).collect::<Vec<_>>(),
            "the ring matches the result: committed in the same transaction"
        );
        // The store goes on from where it was.
        let next = cp.next_offset + 1;
        assert!(
            store
                .compare_and_set_checkpoint("q", &SEG, Some(cp.next_offset), &checkpoint(next))
                .await
                .unwrap()
        );
    });
    drop(store);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_checkpoint_alone_reaches_the_file_when_the_store_is_idle() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let path = scratch("idle");
    let (mut child, mut lines) = spawn_child(&path, true, true);
    while !lines.next().expect("the child stopped early").unwrap().trim_end().ends_with("idle") {}
    child.kill().unwrap(); // SIGKILL, with no write after the checkpoint
    child.wait().unwrap();
    let store = EmbeddedStore::open(&path, RING).expect("reopen after SIGKILL");
    assert_eq!(pollster::block_on(store.checkpoint("idle", &SEG)).unwrap(), Some(checkpoint(7)));
    drop(store);
    std::fs::remove_file(path).unwrap();
}
