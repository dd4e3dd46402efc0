//! A long batch does not hold the executor: the process handler gives other tasks a turn after
//! each read, so a host that runs everything on one thread (kappa dev pinned to one core, a
//! Node.js action) keeps answering reads and pushes while a query replays.

use std::cell::Cell;
use std::sync::Arc;

use futures::executor::block_on;
use kappa_actions::process::process;
use kappa_actions::{ActionConfig, Context, Env, query};
use kappa_core::Topic;
use kappa_core::ports::{
    InstantTimer, Link, LogWriter, ManualClock, MemoryChain, MemoryHttp, MemoryLog, MemoryStore,
    NewRecord, YieldNow,
};
use serde_json::json;

const NOW: i64 = 1_782_000_000_000;

#[test]
fn other_tasks_run_between_the_reads_of_a_batch() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (log, store, chain, http) =
        (MemoryLog::default(), MemoryStore::new(64), MemoryChain::default(), MemoryHttp::default());
    let timer = InstantTimer { clock: Some(clock.clone()) };
    let config =
        ActionConfig { batch_records: 10_000, read_records: 1_000, ..ActionConfig::default() };
    let warm = kappa_actions::warm::WarmStates::new(config.warm_state_bytes);
    let env = Env {
        log: &log,
        writer: &log,
        store: &store,
        chain: &chain,
        http: &http,
        clock: &*clock,
        timer: &timer,
        config: &config,
        warm: &warm,
    };
    block_on(async {
        log.ensure_topic(&Topic::new("t").expect("a valid name"), 1).await.expect("topic");
        let records: Vec<NewRecord> = (0..10_000)
            .map(|i| NewRecord {
                key: None,
                value: format!(r#"{{"n":{i},"text":"rain delay"}}"#).into_bytes(),
                timestamp: NOW,
            })
            .collect();
        log.append("t", 0, &records).await.expect("append");
        let body = json!({"topic": "t", "aggs": {"n": {"stats": {"field": "n"}}}}).to_string();
        query::create(&env, body.as_bytes()).await.expect("created");
    });
    let Some(Link::Process(event)) = chain.take().into_iter().next() else {
        panic!("the chain's first link is a process link")
    };

    // The batch and another task, polled by one thread.
    let done = Cell::new(false);
    let turns = Cell::new(0u32);
    let other = async {
        while !done.get() {
            turns.set(turns.get() + 1);
            YieldNow::default().await;
        }
    };
    let batch = async {
        let ctx = Context { activation_id: "a".into(), deadline_ms: NOW + 60_000 };
        let out = process(&env, &ctx, event).await.expect("processed");
        done.set(true);
        out
    };
    let (out, ()) = block_on(futures::future::join(batch, other));
    assert_eq!(out.records, 10_000);
    // Ten reads of 1,000 records: the other task ran between them, not only before and after.
    assert!(turns.get() >= 10, "the other task ran {} times during a 10-read batch", turns.get());
}
