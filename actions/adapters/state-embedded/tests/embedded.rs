//! The embedded store: the conformance suite, everything survives a reopen, live events, and
//! one process-wide opener per file.

mod common;

use common::scratch;
use kappa_core::Topic;
use kappa_core::conformance::{delta, state_store_conformance};
use kappa_core::ports::{
    Checkpoint, Progress, QueryRecord, ResultRecord, Segment, StateStore, Subscription,
};
use kappa_state_embedded::EmbeddedStore;
use serde_json::json;

fn result(revision: u64) -> ResultRecord {
    ResultRecord {
        revision,
        version: revision,
        caught_up: true,
        progress: Progress::default(),
        result: json!({"n": revision}).into(),
        error: None,
    }
}

#[test]
fn conforms() {
    let path = scratch("conform");
    let store = EmbeddedStore::open(&path, 8).unwrap();
    pollster::block_on(state_store_conformance(&store, "conf-", 8));
    drop(store);
    std::fs::remove_file(path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_under_tokio() {
    let path = scratch("conform-tokio");
    let store = EmbeddedStore::open(&path, 4).unwrap();
    state_store_conformance(&store, "tokio-", 4).await;
    drop(store);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let path = scratch("reopen");
    let q = QueryRecord {
        id: "q_1".into(),
        body: r#"{"size":0}"#.into(),
        topic: Topic::new("t").expect("a valid name"),
        segments: vec![Segment { partition: 0, start: 0, end: None }],
        created_ms: 9,
    };
    let seg = q.segments[0];
    let cp = Checkpoint { next_offset: 77, state: (0..=255u8).collect(), head: 80, lost: 2 };
    let sub = Subscription { url: "http://h/x".into(), secret: "k".into() };
    pollster::block_on(async {
        let s = EmbeddedStore::open(&path, 2).unwrap();
        assert!(s.register(&q).await.unwrap());
        s.touch(&q.id, 1234).await.unwrap();
        s.add_refs(&q.id, 3).await.unwrap();
        assert!(s.compare_and_set_checkpoint(&q.id, &seg, None, &cp).await.unwrap());
        for v in 1..=3 {
            assert!(s.compare_and_set_result(&q.id, v - 1, &result(v), delta(v, 0)).await.unwrap());
        }
        s.subscribe(&q.id, &sub).await.unwrap();
    });
    pollster::block_on(async {
        let s = EmbeddedStore::open(&path, 2).unwrap();
        assert!(!s.register(&q).await.unwrap(), "the registration survived");
        assert_eq!(s.queries().await.unwrap(), vec!["q_1".to_string()]);
        assert_eq!(s.query(&q.id).await.unwrap(), Some(q.clone()));
        assert_eq!(s.last_touch(&q.id).await.unwrap(), Some(1234));
        assert_eq!(s.add_refs(&q.id, 0).await.unwrap(), 3);
        assert_eq!(s.checkpoint(&q.id, &seg).await.unwrap(), Some(cp.clone()));
        assert_eq!(s.result(&q.id).await.unwrap(), Some(result(3)));
        assert_eq!(s.messages_since(&q.id, 1).await.unwrap(), Some(vec![delta(2, 0), delta(3, 0)]));
        assert_eq!(s.messages_since(&q.id, 0).await.unwrap(), None, "the ring of 2 dropped v1");
        assert_eq!(s.subscriptions(&q.id).await.unwrap(), vec![sub.clone()]);
        // And it keeps working: the ring continues where it was.
        let m4 = delta(4, 0);
        assert!(s.compare_and_set_result(&q.id, 3, &result(4), m4.clone()).await.unwrap());
        assert_eq!(s.messages_since(&q.id, 3).await.unwrap(), Some(vec![m4]));
    });
    std::fs::remove_file(path).unwrap();
}

/// The decoded copies the store serves reads from stay exact: across a removal and a new
/// registration of the same id, with a ring longer than the copy, and after a reopen.
#[test]
fn decoded_copies_follow_removals_and_the_file() {
    let path = scratch("decoded");
    let ring = 200;
    let query = |topic: &str| QueryRecord {
        id: "q_d".into(),
        body: format!(r#"{{"topic":"{topic}"}}"#),
        topic: Topic::new(topic).expect("a valid name"),
        segments: vec![Segment { partition: 0, start: 0, end: None }],
        created_ms: 1,
    };
    let s = EmbeddedStore::open(&path, ring).unwrap();
    pollster::block_on(async {
        assert!(s.register(&query("a")).await.unwrap());
        assert_eq!(s.query("q_d").await.unwrap(), Some(query("a")));
        for v in 1..=150 {
            assert!(s.compare_and_set_result("q_d", v - 1, &result(v), delta(v, 0)).await.unwrap());
        }
        assert_eq!(s.result("q_d").await.unwrap(), Some(result(150)));
        // Older than the in-memory copy holds: read from the file, still consecutive.
        let since = s.messages_since("q_d", 10).await.unwrap().expect("the ring holds 11..");
        assert_eq!(since.len(), 140);
        assert_eq!(since[0], delta(11, 0));
        assert_eq!(s.messages_since("q_d", 149).await.unwrap(), Some(vec![delta(150, 0)]));

        let seg = Segment { partition: 0, start: 0, end: None };
        let cp = Checkpoint { next_offset: 5, state: vec![1, 2], head: 5, lost: 0 };
        assert!(s.compare_and_set_checkpoint("q_d", &seg, None, &cp).await.unwrap());
        assert_eq!(s.checkpoint("q_d", &seg).await.unwrap(), Some(cp.clone()), "visible at once");
        assert!(!s.compare_and_set_checkpoint("q_d", &seg, None, &cp).await.unwrap());
        s.remove("q_d").await.unwrap();
        assert_eq!(s.checkpoint("q_d", &seg).await.unwrap(), None, "removed with its query");
        assert_eq!(s.query("q_d").await.unwrap(), None, "a removed query is not served");
        assert_eq!(s.result("q_d").await.unwrap(), None);
        assert_eq!(s.messages_since("q_d", 149).await.unwrap(), Some(vec![]));
        assert!(s.register(&query("b")).await.unwrap());
        assert_eq!(s.query("q_d").await.unwrap(), Some(query("b")), "the new record, not the old");
        assert!(s.compare_and_set_result("q_d", 0, &result(1), delta(1, 0)).await.unwrap());
        assert_eq!(s.messages_since("q_d", 0).await.unwrap(), Some(vec![delta(1, 0)]));
    });
    drop(s);
    let s = EmbeddedStore::open(&path, ring).unwrap();
    pollster::block_on(async {
        assert_eq!(s.query("q_d").await.unwrap(), Some(query("b")));
        assert_eq!(s.result("q_d").await.unwrap(), Some(result(1)));
        assert!(s.compare_and_set_result("q_d", 1, &result(2), delta(2, 0)).await.unwrap());
        assert_eq!(
            s.messages_since("q_d", 0).await.unwrap(),
            Some(vec![delta(1, 0), delta(2, 0)]),
            "a copy filled after a reopen starts empty and falls back to the file"
        );
    });
    drop(s);
    std::fs::remove_file(path).unwrap();
}

/// Checkpoints stay in memory once in the file (small ones): reads and compare-and-sets after
/// the flush, a write after it, a removal, a re-registration, a state too large to keep, and a
/// reopen all see exactly what the file has.
#[test]
fn checkpoints_kept_in_memory_after_their_flush_stay_exact() {
    let path = scratch("cp-copies");
    let seg = Segment { partition: 0, start: 0, end: None };
    let big = Segment { partition: 1, start: 0, end: None };
    let query = QueryRecord {
        id: "q_c".into(),
        body: r#"{"topic":"t"}"#.into(),
        topic: Topic::new("t").expect("a valid name"),
        segments: vec![seg, big],
        created_ms: 1,
    };
    let cp = |n: i64, bytes: usize| Checkpoint {
        next_offset: n,
        state: vec![n as u8; bytes],
        head: n,
        lost: 0,
    };
    let s = EmbeddedStore::open(&path, 8).unwrap();
    pollster::block_on(async {
        assert!(s.register(&query).await.unwrap());
        assert!(s.compare_and_set_checkpoint("q_c", &seg, None, &cp(5, 8)).await.unwrap());
        assert!(s.compare_and_set_checkpoint("q_c", &big, None, &cp(6, 100_000)).await.unwrap());
        // The result write commits the pending checkpoints with it.
        assert!(s.compare_and_set_result("q_c", 0, &result(1), delta(1, 0)).await.unwrap());
        assert_eq!(s.checkpoint("q_c", &seg).await.unwrap(), Some(cp(5, 8)));
        assert_eq!(s.checkpoint("q_c", &big).await.unwrap(), Some(cp(6, 100_000)), "from the file");
        assert!(!s.compare_and_set_checkpoint("q_c", &seg, None, &cp(9, 8)).await.unwrap());
        assert!(!s.compare_and_set_checkpoint("q_c", &big, Some(5), &cp(9, 8)).await.unwrap());
        assert!(s.compare_and_set_checkpoint("q_c", &seg, Some(5), &cp(10, 8)).await.unwrap());
        assert!(s.compare_and_set_checkpoint("q_c", &big, Some(6), &cp(7, 8)).await.unwrap());
        assert_eq!(s.checkpoint("q_c", &seg).await.unwrap(), Some(cp(10, 8)));
        assert!(s.compare_and_set_result("q_c", 1, &result(2), delta(2, 0)).await.unwrap());
        assert_eq!(s.checkpoint("q_c", &seg).await.unwrap(), Some(cp(10, 8)), "after its flush");
        assert_eq!(s.checkpoint("q_c", &big).await.unwrap(), Some(cp(7, 8)), "small now: kept");
        s.remove("q_c").await.unwrap();
        assert_eq!(s.checkpoint("q_c", &seg).await.unwrap(), None, "removed with its query");
        assert!(s.register(&query).await.unwrap());
        assert_eq!(s.checkpoint("q_c", &seg).await.unwrap(), None, "not brought back");
        assert!(!s.compare_and_set_checkpoint("q_c", &seg, Some(10), &cp(11, 8)).await.unwrap());
        assert!(s.compare_and_set_checkpoint("q_c", &seg, None, &cp(3, 8)).await.unwrap());
    });
    drop(s);
    let s = EmbeddedStore::open(&path, 8).unwrap();
    pollster::block_on(async {
        assert_eq!(s.checkpoint("q_c", &seg).await.unwrap(), Some(cp(3, 8)), "flushed on close");
        assert!(!s.compare_and_set_checkpoint("q_c", &seg, None, &cp(4, 8)).await.unwrap());
        assert!(s.compare_and_set_checkpoint("q_c", &seg, Some(3), &cp(4, 8)).await.unwrap());
        assert_eq!(s.checkpoint("q_c", &seg).await.unwrap(), Some(cp(4, 8)));
    });
    drop(s);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_second_opener_gets_an_error_not_a_corrupt_file() {
    let path = scratch("twice");
    let s = EmbeddedStore::open(&path, 4).unwrap();
    let e = EmbeddedStore::open(&path, 4).unwrap_err();
    assert_eq!(e.backend, "embedded-state");
    drop(s);
    EmbeddedStore::open(&path, 4).expect("reopens once the first is dropped");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn concurrent_threads_cas_exactly_once() {
    let path = scratch("threads");
    let s = std::sync::Arc::new(EmbeddedStore::open(&path, 4).unwrap());
    let seg = Segment { partition: 0, start: 0, end: None };
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut mine = 0;
                while mine < 10 {
                    let cur = pollster::block_on(s.checkpoint("q", &seg)).unwrap();
                    let expected = cur.as_ref().map(|c| c.next_offset);
                    let next = Checkpoint {
                        next_offset: expected.unwrap_or(0) + 1,
                        state: vec![t],
                        head: 0,
                        lost: 0,
                    };
                    if pollster::block_on(s.compare_and_set_checkpoint("q", &seg, expected, &next))
                        .unwrap()
                    {
                        mine += 1;
                    }
                }
                mine
            })
        })
        .collect();
    let total: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let end = pollster::block_on(s.checkpoint("q", &seg)).unwrap().unwrap();
    assert_eq!((total, end.next_offset), (80, 80), "every won CAS advanced exactly once");
    drop(s);
    std::fs::remove_file(path).unwrap();
}
