//! A restart of redis-server in the middle of use: the store reconnects by itself and every
//! acknowledged write is still there (the test server runs with AOF, `appendfsync always`).
//! Alone in its own test binary, so no other test sees the server go away.

mod common;

use std::time::Duration;

use kappa_core::Topic;
use kappa_core::conformance::delta;
use kappa_core::ports::{Checkpoint, Progress, QueryRecord, ResultRecord, Segment, StateStore};
use serde_json::json;

use common::{cleanup, redis_url, store};

/// Run `scripts/redis.sh restart` for the server on `url`'s port.
fn restart_redis(url: &str) {
    let port = url.rsplit(':').next().and_then(|p| p.split('/').next()).unwrap_or("16379");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../scripts/redis.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg("restart")
        .env("REDIS_PORT", port)
        .status()
        .expect("run scripts/redis.sh restart");
    assert!(status.success(), "scripts/redis.sh restart failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_restart_and_keeps_the_data() {
    let Some(url) = redis_url() else { return };
    let s = store(&url, "restart", 8).await;
    let q = QueryRecord {
        id: "q_restart".into(),
        body: "{}".into(),
        topic: Topic::new("t").expect("a valid name"),
        segments: vec![Segment { partition: 0, start: 0, end: None }],
        created_ms: 1,
    };
    let seg = q.segments[0];
    let cp = Checkpoint { next_offset: 42, state: vec![0, 255, 7], head: 50, lost: 0 };
    let r = ResultRecord {
        revision: 1,
        version: 1,
        caught_up: true,
        progress: Progress::default(),
        result: json!({"hits": 1}).into(),
        error: None,
    };
    assert!(s.register(&q).await.unwrap());
    assert!(s.compare_and_set_checkpoint(&q.id, &seg, None, &cp).await.unwrap());
    assert!(s.compare_and_set_result(&q.id, 0, &r, delta(1, 0)).await.unwrap());

    restart_redis(&url);

    // The first call may see the dropped connection (a transient error); within a few seconds
    // the connection manager has reconnected.
    let mut attempts = 0;
    let got = loop {
        match s.checkpoint(&q.id, &seg).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(e.is_retryable(), "a restart is a transient failure: {e}");
                attempts += 1;
                assert!(attempts < 200, "no reconnect within 200 attempts 100 ms apart: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(got, Some(cp.clone()), "the checkpoint survived the restart");
    assert_eq!(s.query(&q.id).await.unwrap(), Some(q.clone()));
    assert_eq!(s.result(&q.id).await.unwrap(), Some(r.clone()));
    assert_eq!(s.messages_since(&q.id, 0).await.unwrap(), Some(vec![delta(1, 0)]));
    // The scripts are gone from the restarted server's cache: EVALSHA reloads them.
    let next = Checkpoint { next_offset: 43, ..cp.clone() };
    assert!(!s.compare_and_set_checkpoint(&q.id, &seg, Some(41), &next).await.unwrap());
    assert!(s.compare_and_set_checkpoint(&q.id, &seg, Some(42), &next).await.unwrap());
    let r2 = ResultRecord { revision: 2, version: 2, ..r };
    assert!(s.compare_and_set_result(&q.id, 1, &r2, delta(2, 0)).await.unwrap());
    s.remove(&q.id).await.unwrap();
    cleanup(&url, s.key_prefix()).await;
}
