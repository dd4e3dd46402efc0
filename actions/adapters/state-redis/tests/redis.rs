//! The Redis store against a real Redis at `REDIS_URL`: the conformance suite, atomicity of
//! both compare-and-sets under 20 concurrent tasks, the key layout and errors.

mod common;

use std::sync::Arc;

use kappa_core::Message;
use kappa_core::conformance::{delta, progress, state_store_conformance};
use kappa_core::ports::{Checkpoint, ProcessEvent, Progress, ResultRecord, Segment, StateStore};
use kappa_state_redis::{RedisStore, RedisStoreConfig};
use serde_json::json;

use common::{cleanup, raw, redis_url, store};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_with_a_small_ring() {
    let Some(url) = redis_url() else { return };
    let s = store(&url, "conf", 16).await;
    state_store_conformance(&s, &format!("{}-", s.key_prefix()), 16).await;
    cleanup(&url, s.key_prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_with_the_default_config() {
    let Some(url) = redis_url() else { return };
    let mut config = RedisStoreConfig::default();
    assert_eq!((config.key_prefix.as_str(), config.ring), ("kappa", 1024));
    config.key_prefix = common::random_prefix("default");
    let s = RedisStore::connect(&url, config).await.unwrap();
    state_store_conformance(&s, "q_conf_", 1024).await;
    cleanup(&url, s.key_prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_cas_is_atomic_under_20_tasks() {
    let Some(url) = redis_url() else { return };
    let s = Arc::new(store(&url, "atomic", 16).await);
    let seg = Segment { partition: 0, start: 0, end: None };

    // 20 tasks from the same expected value: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let cp = Checkpoint { next_offset: 1, state: vec![i], head: 1, lost: 0 };
            s.compare_and_set_checkpoint("q_race", &seg, None, &cp).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one of 20 concurrent CAS(None) wins");

    // 20 tasks incrementing a counter by read + CAS: no increment is lost or doubled.
    let counted = Segment { partition: 1, start: 0, end: None };
    let zero = Checkpoint { next_offset: 0, state: 0u64.to_le_bytes().to_vec(), head: 0, lost: 0 };
    assert!(s.compare_and_set_checkpoint("q_race", &counted, None, &zero).await.unwrap());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = 0u64;
            while mine < 10 {
                let cur = s.checkpoint("q_race", &counted).await.unwrap().unwrap();
                let n = u64::from_le_bytes(cur.state.as_slice().try_into().unwrap());
                let next = Checkpoint {
                    next_offset: cur.next_offset + 1,
                    state: (n + 1).to_le_bytes().to_vec(),
                    head: cur.next_offset + 1,
                    lost: 0,
                };
                if s.compare_and_set_checkpoint("q_race", &counted, Some(cur.next_offset), &next)
                    .await
                    .unwrap()
                {
                    mine += 1;
                }
            }
            mine
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let end = s.checkpoint("q_race", &counted).await.unwrap().unwrap();
    assert_eq!(total, 200);
    assert_eq!(end.next_offset, 200, "every won CAS advanced the offset exactly once");
    assert_eq!(end.state, 200u64.to_le_bytes().to_vec(), "the state counts every won CAS once");
    cleanup(&url, s.key_prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_cas_is_atomic_under_20_tasks() {
    let Some(url) = redis_url() else { return };
    let ring = 64;
    let s = Arc::new(store(&url, "atomic-result", ring).await);
    let mut tasks = Vec::new();
    for t in 0..20u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = 0;
            while mine < 5 {
                let cur = s.result("q_res").await.unwrap().map_or(0, |r| r.revision);
                let msg = delta(cur + 1, t);
                if s.compare_and_set_result("q_res", cur, &result(cur + 1), msg).await.unwrap() {
                    mine += 1;
                }
            }
            mine
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 100);
    assert_eq!(s.result("q_res").await.unwrap().unwrap().revision, 100);
    let since = s.messages_since("q_res", 100 - ring as u64).await.unwrap().unwrap();
    let versions: Vec<u64> = since.iter().map(Message::version).collect();
    assert_eq!(
        versions,
        (100 - ring as u64 + 1..=100).collect::<Vec<_>>(),
        "one message per won CAS, in order, none from a lost CAS"
    );
    assert_eq!(s.messages_since("q_res", 100 - ring as u64 - 1).await.unwrap(), None);
    cleanup(&url, s.key_prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_layout_and_raw_binary_state() {
    let Some(url) = redis_url() else { return };
    let s = store(&url, "layout", 4).await;
    let p = s.key_prefix().to_string();
    let seg = Segment { partition: 2, start: 10, end: Some(20) };
    let state: Vec<u8> = (0..=255u8).collect();
    let cp = Checkpoint { next_offset: 15, state: state.clone(), head: 30, lost: 1 };
    assert!(s.compare_and_set_checkpoint("q_k", &seg, None, &cp).await.unwrap());
    assert!(s.compare_and_set_result("q_k", 0, &result(1), progress(1, 0)).await.unwrap());
    s.touch("q_k", 5).await.unwrap();
    let mut conn = raw(&url).await;
    let stored: Vec<u8> = redis::cmd("HGET")
        .arg(format!("{p}:{{q_k}}:cp:p2@10-20"))
        .arg("state")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, state, "the state is stored as raw bytes");
    for (key, ty) in [
        (format!("{p}:{{q_k}}:result"), "hash"),
        (format!("{p}:{{q_k}}:ring"), "list"),
        (format!("{p}:{{q_k}}:meta"), "hash"),
    ] {
        let t: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        assert_eq!(t, ty, "{key}");
    }
    let slot = |k: String| {
        let mut c = conn.clone();
        async move {
            let n: i64 =
                redis::cmd("CLUSTER").arg("KEYSLOT").arg(k).query_async(&mut c).await.unwrap_or(-1);
            n
        }
    };
    // CLUSTER KEYSLOT answers on a standalone server too (Redis >= 7); -1 if it does not.
    let a = slot(format!("{p}:{{q_k}}:query")).await;
    let b = slot(format!("{p}:{{q_k}}:cp:p2@10-20")).await;
    assert_eq!(a, b, "one query's keys share a cluster slot");
    // Replay joiners: a list per topic partition that expires, so one nobody takes (its
    // replay died; the tick started it) does not stay for ever.
    let joiner = ProcessEvent { query: "q_j".into(), segment: seg };
    s.add_joiner("tweets", 2, &joiner).await.unwrap();
    let key = format!("{p}:joiners:tweets:2");
    let t: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
    assert_eq!(t, "list", "{key}");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(0 < ttl && ttl <= 3_600, "joiners expire within the hour: TTL {ttl}");
    assert_eq!(s.take_joiners("tweets", 2).await.unwrap(), vec![joiner]);
    cleanup(&url, &p).await;
}

#[tokio::test]
async fn errors_are_typed_and_never_show_the_password() {
    // Needs no server: nothing listens on port 1.
    let e = RedisStore::connect("redis://user:hunter2@127.0.0.1:1/0", RedisStoreConfig::default())
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "an unreachable server is transient: {e}");
    assert_eq!(e.backend, "redis");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e =
        RedisStore::connect("http://:hunter2@x", RedisStoreConfig::default()).await.unwrap_err();
    assert!(!e.is_retryable(), "a bad URL is permanent: {e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let bad = RedisStoreConfig { key_prefix: "a{b}".into(), ring: 1 };
    let e = RedisStore::connect("redis://127.0.0.1:1", bad).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_errors_are_permanent() {
    let Some(url) = redis_url() else { return };
    let s = store(&url, "wrongtype", 4).await;
    // A key of the wrong type makes the script fail: a permanent error, not a retry loop.
    let mut conn = raw(&url).await;
    let _: () = redis::cmd("SET")
        .arg(format!("{}:{{q_w}}:result", s.key_prefix()))
        .arg("not a hash")
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = s.compare_and_set_result("q_w", 0, &result(1), delta(1, 0)).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    cleanup(&url, s.key_prefix()).await;
}
