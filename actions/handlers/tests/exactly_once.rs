//! The execution model under failure, with the in-memory ports: whatever happens to
//! invocations — duplicates, concurrency, crashes between any two steps, dropped links,
//! retention, deadlines — the final result equals one clean pass over the records the log holds.

use std::sync::Arc;

use futures::executor::block_on;
use futures::future::join_all;
use kappa_actions::group::{links_of, process_event, process_group_with_faults};
use kappa_actions::process::{Faults, NoFaults, ProcessEvent, Stop, process_with_faults};
use kappa_actions::push::{PushEvent, push};
use kappa_actions::{ActionConfig, ActionError, Context, Env, query, status, tick};
use kappa_core::ports::{
    InstantTimer, Link, LogReader, LogWriter, ManualClock, MemoryChain, MemoryHttp, MemoryLog,
    MemoryStore, NewRecord, ReadRequest, StateStore,
};
use kappa_core::{Limits, Message, Plan, Record, Topic};
use serde_json::{Value, json};

const TOPIC: &str = "tweets";
const NOW: i64 = 1_782_000_000_000;

struct World {
    log: MemoryLog,
    store: MemoryStore,
    chain: MemoryChain,
    http: MemoryHttp,
    clock: Arc<ManualClock>,
    timer: InstantTimer,
    config: ActionConfig,
    /// Two warm containers: invocations may run in either (each keeps its own states).
    warm: [kappa_actions::warm::WarmStates; 2],
}

impl World {
    fn new(config: ActionConfig) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        World {
            log: MemoryLog::default(),
            store: MemoryStore::new(64),
            chain: MemoryChain::default(),
            http: MemoryHttp::default(),
            timer: InstantTimer { clock: Some(clock.clone()) },
            clock,
            warm: [(); 2].map(|()| kappa_actions::warm::WarmStates::new(config.warm_state_bytes)),
            config,
        }
    }

    fn env(&self) -> Env<'_> {
        self.env_in(0)
    }

    /// The view of container `c` (0 or 1).
    fn env_in(&self, c: usize) -> Env<'_> {
        Env {
            log: &self.log,
            writer: &self.log,
            store: &self.store,
            chain: &self.chain,
            http: &self.http,
            clock: &*self.clock,
            timer: &self.timer,
            config: &self.config,
            warm: &self.warm[c % 2],
        }
    }

    fn ctx(&self) -> Context {
        Context {
            activation_id: "a1".into(),
            deadline_ms: kappa_core::ports::Clock::now_ms(&*self.clock) + 60_000,
        }
    }
}

fn doc(i: u64) -> Vec<u8> {
    let tags = ["wimbledon", "federer", "ace", "rain"];
    let mut d = json!({"n": i % 17, "tag": tags[(i % 4) as usize], "user": {"name": format!("u{}", i % 13)}, "text": if i.is_multiple_of(5) { "Federer wins" } else { "rain delay" }});
    if i.is_multiple_of(11) {
        d["tag"] = json!([tags[0], tags[0], tags[3]]);
    }
    if i.is_multiple_of(23) {
        return b"{broken".to_vec();
    }
    serde_json::to_vec(&d).expect("serialises")
}

fn fill(w: &World, partitions: u32, per_partition: u64) {
    block_on(async {
        w.log
            .ensure_topic(&Topic::new(TOPIC).expect("a valid name"), partitions)
            .await
            .expect("topic");
        for p in 0..partitions {
            let records: Vec<NewRecord> = (0..per_partition)
                .map(|i| NewRecord {
                    key: Some(format!("k{p}-{i}").into_bytes()),
                    value: doc(i * 7 + u64::from(p)),
                    timestamp: NOW - 3_600_000 + (i as i64) * 1000,
                })
                .collect();
            w.log.append(TOPIC, p, &records).await.expect("append");
        }
    });
}

fn body() -> Value {
    json!({"topic": TOPIC, "query": {"bool": {"must_not": [{"term": {"n": 3}}]}},
           "aggs": {"tags": {"terms": {"field": "tag"}, "aggs": {"avg_n": {"avg": {"field": "n"}}}},
                    "users": {"cardinality": {"field": "user.name"}},
                    "per_min": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"}},
                    "fed": {"filter": {"match": {"text": "federer"}}}},
           "size": 3, "sort": [{"n": "desc"}]})
}

/// The clean one-pass answer over everything the log holds now.
fn oracle(w: &World, body: &Value) -> Value {
    let plan = Plan::parse(body, &Limits::default()).expect("valid");
    let mut state = plan.empty_state();
    block_on(async {
        for p in 0..w.log.partitions(TOPIC).await.expect("ok").expect("topic") {
            let wm = w.log.watermarks(TOPIC, p).await.expect("ok");
            let batch = w
                .log
                .read(
                    TOPIC,
                    p,
                    ReadRequest {
                        from: wm.low,
                        end: None,
                        max_records: usize::MAX,
                        max_bytes: usize::MAX,
                    },
                )
                .await
                .expect("ok");
            let recs = batch.records.iter().map(|r| Record {
                value: &r.value,
                timestamp: r.timestamp,
                offset: r.offset,
                partition: p as i32,
                key: r.key.as_deref(),
            });
            plan.fold_all(&mut state, recs).expect("folds");
        }
    });
    plan.render(&state).expect("renders")
}

struct CrashAt(&'static str, std::sync::atomic::AtomicUsize);

impl Faults for CrashAt {
    fn at(&self, step: &'static str) -> Result<(), ActionError> {
        let left = |n: usize| n.checked_sub(1);
        if step == self.0
            && self
                .1
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    left,
                )
                .is_ok()
        {
            return Err(ActionError::BadEvent(format!("injected crash at {step}")));
        }
        Ok(())
    }
}

/// Run fired links until none are left. `mangle` may drop or duplicate links.
fn drain(
    w: &World,
    faults: &dyn Faults,
    mut mangle: impl FnMut(usize, Vec<Link>) -> Vec<Link>,
) -> usize {
    let mut round = 0;
    let mut runs = 0;
    loop {
        let links = mangle(round, w.chain.take());
        if links.is_empty() {
            return runs;
        }
        round += 1;
        assert!(round < 10_000, "the chain does not terminate");
        let env = w.env();
        let ctx = w.ctx();
        block_on(join_all(links.into_iter().map(|link| {
            let ctx = ctx.clone();
            async move {
                match link {
                    Link::Process(e) => {
                        let _ = process_with_faults(&env, &ctx, e, faults).await;
                    }
                    Link::Group(g) => {
                        let _ = process_group_with_faults(&env, &ctx, &g.members, faults).await;
                    }
                    Link::Push(e) => {
                        let _ = push(&env, e).await;
                    }
                }
            }
        })));
        runs += 1;
    }
}

fn create(w: &World, body: &Value) -> String {
    let r = block_on(query::create(&w.env(), body.to_string().as_bytes())).expect("created");
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().expect("id").to_string()
}

fn result_of(w: &World, id: &str) -> Value {
    block_on(status::status(&w.env(), id)).expect("status").body
}

fn small_batches() -> ActionConfig {
    ActionConfig {
        batch_records: 7,
        read_records: 3,
        split_records: 40,
        max_segments_per_partition: 3,
        // One batch per invocation: many links, so duplicates and crashes fall between them.
        fill_activation_percent: 0,
        // Every batch after a segment's first appends to its checkpoint (within a stretch of
        // offsets), however small the state: the faults fall between appends too.
        append_checkpoints_from_bytes: 0,
        ..ActionConfig::default()
    }
}

/// [`small_batches`] with rounds filling each activation (as deployed).
fn small_batches_in_rounds() -> ActionConfig {
    ActionConfig { fill_activation_percent: 80, ..small_batches() }
}

#[test]
fn a_clean_replay_equals_one_pass_and_is_caught_up() {
    let w = World::new(small_batches());
    fill(&w, 3, 100);
    let id = create(&w, &body());
    drain(&w, &NoFaults, |_, l| l);
    let s = result_of(&w, &id);
    assert_eq!(s["result"], oracle(&w, &body()));
    assert_eq!(s["caught_up"], json!(true));
    assert_eq!(s["progress"]["processed"], json!(300));
    assert_eq!(s["progress"]["skipped"], json!(300 / 23 + 1));
    assert_eq!(s["progress"]["lag"], json!(0));
    // Live: new records wake the query through the tick, and the answer follows.
    block_on(w.log.append(TOPIC, 1, &[NewRecord { key: None, value: doc(1), timestamp: NOW }]))
        .expect("append");
    let t = block_on(tick::tick(&w.env(), None)).expect("tick");
    assert_eq!(t.fired, 1);
    drain(&w, &NoFaults, |_, l| l);
    let s = result_of(&w, &id);
    assert_eq!(s["result"], oracle(&w, &body()));
    assert_eq!(s["progress"]["processed"], json!(301));
}

/// A live wake-up appends to its segment's checkpoint what its records added; the checkpoint
/// is written whole when a batch crosses into the next stretch of offsets. Whatever its pieces,
/// what the store holds decodes to one clean pass.
#[test]
fn a_live_checkpoint_grows_by_what_each_wake_up_added_and_is_rewritten_whole_per_stretch() {
    let w =
        World::new(ActionConfig { append_checkpoints_from_bytes: 0, ..ActionConfig::default() });
    fill(&w, 1, 1_000);
    let id = create(&w, &body());
    drain(&w, &NoFaults, |_, l| l);
    let plan = Plan::parse(&body(), &Limits::default()).expect("valid");
    // The history replays in a closed segment; the live tail starts at the head, 1,000.
    let tail = kappa_core::ports::Segment::TAIL;
    let stored = || block_on(w.store.checkpoint(&id, &tail)).expect("ok").expect("committed");
    let decode = |state: &[u8]| kappa_core::tail::decode(&plan, state).expect("decodes");
    // One piece, or several one after another (longer: each has its own header and keys).
    let whole = |state: &[u8]| {
        let (positions, decoded) = decode(state);
        kappa_core::tail::encode(&plan, &positions, &decoded).len() == state.len()
    };
    assert_eq!(stored().next_offset, 1_000);
    // Five records a wake-up: 1,005 .. 1,020 stay within the first 1,024 offsets, 1,025 crosses.
    for (wake, expect_whole) in [false, false, false, false, true, false].into_iter().enumerate() {
        append_some(&w, 0, 5, 100 + wake as u64);
        block_on(tick::tick(&w.env(), None)).expect("tick");
        drain(&w, &NoFaults, |_, l| l);
        let cp = stored();
        assert_eq!(cp.next_offset, 1_005 + 5 * wake as i64);
        assert_eq!(whole(&cp.state), expect_whole, "wake-up {wake} at {}", cp.next_offset);
        // The tail holds what the wake-ups added; the closed segment the history.
        let (positions, decoded) = decode(&cp.state);
        assert_eq!(positions[0].next, cp.next_offset);
        assert_eq!(decoded.records(), 5 * (wake as u64 + 1), "wake-up {wake}");
        assert_eq!(result_of(&w, &id)["result"], oracle(&w, &body()));
    }
}

#[test]
fn segments_run_together_and_duplicated_equal_one_pass() {
    // As `kappa dev` runs a caught-up query: the links of one query in one invocation (and
    // here every such invocation twice, concurrently).
    let w = World::new(small_batches());
    fill(&w, 3, 100);
    let id = create(&w, &body());
    let run_grouped = |w: &World| loop {
        let links = w.chain.take();
        if links.is_empty() {
            return;
        }
        let mut segments = Vec::new();
        let members = links.into_iter().flat_map(|link| match link {
            Link::Process(e) => vec![e],
            // The tick wakes the caught-up partitions as one group link.
            Link::Group(g) => g.members,
            Link::Push(_) => Vec::new(),
        });
        for e in members {
            assert_eq!(e.query, id);
            if !segments.contains(&e.segment) {
                segments.push(e.segment);
            }
        }
        let members: Vec<ProcessEvent> =
            segments.iter().map(|&segment| ProcessEvent { query: id.clone(), segment }).collect();
        let (env, ctx) = (w.env(), w.ctx());
        let runs = (0..2).map(|_| process_group_with_faults(&env, &ctx, &members, &NoFaults));
        for outputs in block_on(join_all(runs)) {
            let outputs = outputs.expect("ok");
            assert_eq!(outputs.len(), segments.len());
            assert!(outputs.iter().all(Result::is_ok), "{outputs:?}");
        }
    };
    run_grouped(&w);
    let s = result_of(&w, &id);
    assert_eq!(s["result"], oracle(&w, &body()));
    assert_eq!(s["progress"]["processed"], json!(300));
    // Live: an append to every partition, one wake-up, one invocation for all of them.
    for p in 0..3 {
        let r = NewRecord { key: None, value: doc(u64::from(p) + 5), timestamp: NOW };
        block_on(w.log.append(TOPIC, p, &[r])).expect("append");
    }
    // The three partitions' open segments are the query's tail: one unit, one link.
    assert_eq!(block_on(tick::tick(&w.env(), None)).expect("tick").fired, 1);
    run_grouped(&w);
    let s = result_of(&w, &id);
    assert_eq!(s["result"], oracle(&w, &body()));
    assert_eq!(s["progress"]["processed"], json!(303));
    assert_eq!(s["caught_up"], json!(true));
}

#[test]
fn every_link_duplicated_and_run_concurrently_never_double_counts() {
    for config in [small_batches(), small_batches_in_rounds()] {
        let w = World::new(config);
        fill(&w, 2, 120);
        let id = create(&w, &body());
        drain(&w, &NoFaults, |_, links| {
            links
                .iter()
                .cloned()
                .chain(links.iter().cloned())
                .chain(links.iter().cloned())
                .collect()
        });
        let s = result_of(&w, &id);
        assert_eq!(s["result"], oracle(&w, &body()));
        assert_eq!(s["progress"]["processed"], json!(240));
    }
}

#[test]
fn a_crash_between_any_two_steps_loses_and_doubles_nothing() {
    for (step, config) in ["loaded", "folded", "committed", "refreshed"]
        .into_iter()
        .flat_map(|step| [(step, small_batches()), (step, small_batches_in_rounds())])
    {
        let w = World::new(config);
        fill(&w, 2, 80);
        let id = create(&w, &body());
        // Each crash kills a few invocations at this step; their links are lost with them.
        let faults = CrashAt(step, std::sync::atomic::AtomicUsize::new(5));
        drain(&w, &faults, |_, l| l);
        // The safety net re-fires whatever was dropped until everything is at the head.
        for _ in 0..50 {
            let t = block_on(tick::tick(&w.env(), None)).expect("tick");
            if t.fired == 0 {
                break;
            }
            drain(&w, &faults, |_, l| l);
        }
        let s = result_of(&w, &id);
        assert_eq!(s["result"], oracle(&w, &body()), "crash at {step}");
        assert_eq!(s["progress"]["processed"], json!(160), "crash at {step}");
        assert_eq!(s["caught_up"], json!(true), "crash at {step}");
    }
}

#[test]
fn a_crash_between_the_last_commit_and_its_refresh_is_repaired_by_the_tick() {
    let w = World::new(ActionConfig { split_records: 1_000_000, ..small_batches() });
    fill(&w, 1, 30);
    let id = create(&w, &body());
    drain(&w, &NoFaults, |_, l| l);
    // New records; the batch that folds them commits its checkpoint, then the process dies
    // before the refresh (kill -9 in kappa dev). Then nothing else is ever appended.
    block_on(async {
        let more: Vec<NewRecord> =
            (30..35).map(|i| NewRecord { key: None, value: doc(i * 7), timestamp: NOW }).collect();
        w.log.append(TOPIC, 0, &more).await.expect("append");
    });
    block_on(tick::tick(&w.env(), Some(TOPIC))).expect("feed tick");
    let crash = CrashAt("committed", std::sync::atomic::AtomicUsize::new(1));
    drain(&w, &crash, |_, l| l);
    assert_eq!(crash.1.load(std::sync::atomic::Ordering::SeqCst), 0, "the crash happened");
    // The periodic tick notices that the result lags its checkpoints and refreshes it.
    for _ in 0..3 {
        block_on(tick::tick(&w.env(), None)).expect("tick");
        drain(&w, &NoFaults, |_, l| l);
    }
    let s = result_of(&w, &id);
    assert_eq!(s["progress"]["processed"], json!(35), "{}", s["progress"]);
    assert_eq!(s["result"], oracle(&w, &body()));
    assert_eq!(s["caught_up"], json!(true));
}

#[test]
fn dropped_links_are_resumed_by_the_tick() {
    let w = World::new(small_batches());
    fill(&w, 3, 90);
    let id = create(&w, &body());
    let mut dropped = 0;
    drain(&w, &NoFaults, |round, links| {
        if round % 3 == 1 {
            dropped += links.len();
            Vec::new()
        } else {
            links
        }
    });
    assert!(dropped > 0);
    loop {
        let t = block_on(tick::tick(&w.env(), None)).expect("tick");
        if t.fired == 0 {
            break;
        }
        drain(&w, &NoFaults, |_, l| l);
    }
    assert_eq!(result_of(&w, &id)["result"], oracle(&w, &body()));
}

#[test]
fn records_deleted_by_retention_are_reported_as_loss() {
    let w = World::new(ActionConfig { split_records: 1_000_000, ..small_batches() });
    fill(&w, 1, 60);
    let id = create(&w, &body());
    // Retention deletes the first 25 records before the query reads them.
    w.log.truncate_before(TOPIC, 0, 25);
    drain(&w, &NoFaults, |_, l| l);
    let s = result_of(&w, &id);
    assert_eq!(s["progress"]["lost"], json!(25));
    assert_eq!(s["progress"]["processed"], json!(35));
    assert_eq!(s["result"], oracle(&w, &body()));
}

#[test]
fn a_batch_near_its_deadline_stops_early_and_commits_what_it_did() {
    let w = World::new(ActionConfig {
        batch_records: 1000,
        read_records: 10,
        deadline_margin_ms: 1000,
        ..ActionConfig::default()
    });
    fill(&w, 1, 200);
    let id = create(&w, &json!({"topic": TOPIC}));
    let links = w.chain.take();
    let Some(Link::Process(event)) = links.into_iter().next() else { panic!("a process link") };
    // The deadline is already within the margin: the invocation reads nothing and says why.
    let ctx = Context { activation_id: "late".into(), deadline_ms: NOW + 500 };
    let out = block_on(process_with_faults(&w.env(), &ctx, event.clone(), &NoFaults)).expect("ok");
    assert_eq!((out.records, out.stopped, out.fired_next), (0, Stop::Deadline, true));
    // A clock that advances with every read (a slow log) stops mid-batch, and what was read is
    // committed.
    let ctx = Context { activation_id: "slow".into(), deadline_ms: NOW + 1000 + 30 };
    w.chain.take();
    let env = w.env();
    let reader = SlowLog { inner: &w.log, clock: &w.clock, watermark_reads: Default::default() };
    let env = Env { log: &reader, ..env };
    let out = block_on(process_with_faults(&env, &ctx, event, &NoFaults)).expect("ok");
    assert_eq!(out.stopped, Stop::Deadline);
    assert!(out.committed && out.records > 0 && out.records < 200, "{out:?}");
    let s = result_of(&w, &id);
    assert_eq!(s["progress"]["processed"], json!(out.records));
}

#[test]
fn rounds_fill_most_of_the_activation_each_committed_and_published() {
    // 10 records a round in reads of 2, each read 10 ms: a round takes ~50 ms. With 1 s to the
    // deadline, an invocation goes on while one more round ends within 80% of it (800 ms).
    let w = World::new(ActionConfig {
        batch_records: 10,
        read_records: 2,
        deadline_margin_ms: 100,
        split_records: 1_000_000,
        ..ActionConfig::default()
    });
    fill(&w, 1, 400);
    let id = create(&w, &body());
    let Some(Link::Process(event)) = w.chain.take().into_iter().next() else {
        panic!("a process link")
    };
    let started = kappa_core::ports::Clock::now_ms(&*w.clock);
    let ctx = Context { activation_id: "fill".into(), deadline_ms: started + 1_000 };
    let reader = SlowLog { inner: &w.log, clock: &w.clock, watermark_reads: Default::default() };
    let env = Env { log: &reader, ..w.env() };
    let out = block_on(process_with_faults(&env, &ctx, event, &NoFaults)).expect("ok");
    let used = kappa_core::ports::Clock::now_ms(&*w.clock) - started;
    assert!(out.rounds >= 10, "{out:?}");
    assert_eq!(out.records, 10 * u64::from(out.rounds), "{out:?}");
    assert!((out.committed, out.fired_next, out.at_head) == (true, true, false), "{out:?}");
    assert!((700..=800).contains(&used), "most of the 800 ms share, not past it: {used} ms");
    let links = w.chain.take();
    let next: Vec<Link> = links.iter().filter(|l| matches!(l, Link::Process(_))).cloned().collect();
    let pushes = links.iter().filter(|l| matches!(l, Link::Push(_))).count();
    assert_eq!(next.len(), 1, "one next link, after the last round");
    assert_eq!(pushes, out.rounds as usize, "every round published");
    assert_eq!(result_of(&w, &id)["progress"]["processed"], json!(out.records));
    // The rest of the chain, every link delivered three times and run concurrently.
    drain(&w, &NoFaults, |round, links| {
        let links = if round == 0 { next.clone() } else { links };
        links.iter().cloned().chain(links.iter().cloned()).chain(links.iter().cloned()).collect()
    });
    let s = result_of(&w, &id);
    assert_eq!(s["result"], oracle(&w, &body()));
    assert_eq!(s["progress"]["processed"], json!(400));
}

/// A log whose every read takes 10 ms of the activation's time, and which counts the
/// watermark reads.
struct SlowLog<'a> {
    inner: &'a MemoryLog,
    clock: &'a ManualClock,
    watermark_reads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl LogReader for SlowLog<'_> {
    async fn partitions(&self, topic: &str) -> kappa_core::ports::PortResult<Option<u32>> {
        self.inner.partitions(topic).await
    }
    async fn watermarks(
        &self,
        topic: &str,
        p: u32,
    ) -> kappa_core::ports::PortResult<kappa_core::ports::Watermarks> {
        self.watermark_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.watermarks(topic, p).await
    }
    async fn read(
        &self,
        topic: &str,
        p: u32,
        r: ReadRequest,
    ) -> kappa_core::ports::PortResult<kappa_core::ports::Batch> {
        self.clock.advance(10);
        self.inner.read(topic, p, r).await
    }
}

#[test]
fn identical_queries_share_one_computation() {
    let w = World::new(small_batches());
    fill(&w, 1, 10);
    let id = create(&w, &body());
    let fired = w.chain.take().len();
    assert!(fired > 0);
    let mut reordered: serde_json::Map<String, Value> =
        body().as_object().cloned().expect("object").into_iter().rev().collect();
    reordered.insert("from".into(), json!(0));
    let again = block_on(query::create(&w.env(), Value::Object(reordered).to_string().as_bytes()))
        .expect("shared");
    assert_eq!(
        (again.status, again.body["id"].as_str(), again.body["shared"].as_bool()),
        (200, Some(id.as_str()), Some(true))
    );
    assert!(w.chain.take().is_empty(), "a shared query starts no second chain");
}

#[test]
fn a_query_on_a_missing_topic_is_404_and_a_bad_query_400() {
    let w = World::new(ActionConfig::default());
    let e = block_on(query::create(&w.env(), br#"{"topic":"nope"}"#)).expect_err("404");
    assert_eq!(e.status(), 404);
    assert_eq!(e.to_json()["error"]["type"], json!("index_not_found_exception"));
    let e = block_on(query::create(
        &w.env(),
        br#"{"topic":"t","aggs":{"tags":{"terms":{"field":"a","sizee":1}}}}"#,
    ))
    .expect_err("400");
    assert_eq!(e.status(), 400);
    assert_eq!(e.to_json()["error"]["path"], json!("aggs.tags.terms"));
    let e = block_on(status::status(&w.env(), "q_missing")).expect_err("404");
    assert_eq!(e.to_json()["error"]["type"], json!("resource_not_found_exception"));
}

#[test]
fn distinct_queries_are_limited_and_shared_ones_count_once() {
    let w = World::new(ActionConfig { max_queries: 3, ..ActionConfig::default() });
    fill(&w, 1, 5);
    let ids: Vec<String> =
        (0..3).map(|n| create(&w, &json!({"topic": TOPIC, "size": n}))).collect();
    assert_eq!(ids.len(), 3);
    // The same query again is shared, not a fourth.
    let again = block_on(query::create(
        &w.env(),
        json!({"topic": TOPIC, "size": 0}).to_string().as_bytes(),
    ))
    .expect("shared");
    assert_eq!(again.status, 200);
    let e = block_on(query::create(
        &w.env(),
        json!({"topic": TOPIC, "size": 9}).to_string().as_bytes(),
    ))
    .expect_err("refused");
    assert_eq!(e.status(), 429);
    assert_eq!(e.to_json()["error"]["type"], json!("es_rejected_execution_exception"));
    assert!(e.is_retryable());
}

#[test]
fn a_query_refused_at_registration_is_not_registered() {
    let w = World::new(ActionConfig::default());
    fill(&w, 1, 10);
    // Its answer over no records already has more buckets than a result may hold.
    let body = json!({"topic": TOPIC, "aggs": {"per_sec": {"date_histogram": {
        "field": "@timestamp", "fixed_interval": "1s",
        "extended_bounds": {"min": 0, "max": 86_400_000}}}}});
    let e = block_on(query::create(&w.env(), body.to_string().as_bytes())).expect_err("400");
    assert_eq!(e.status(), 400, "{}", e.to_json());
    let id = Plan::parse(&body, &Limits::default()).expect("a valid body").id().to_string();
    assert!(
        block_on(w.store.query(&id)).expect("ok").is_none(),
        "a refused query stays registered"
    );
    assert!(w.chain.take().is_empty(), "a refused query starts no chain");
    // So posting it again is refused again, not "shared".
    let e = block_on(query::create(&w.env(), body.to_string().as_bytes())).expect_err("400");
    assert_eq!(e.status(), 400);
}

#[test]
fn a_state_over_its_memory_budget_fails_the_query_visibly() {
    let config = ActionConfig {
        limits: Limits { max_state_bytes: 20_000, ..Limits::default() },
        ..small_batches()
    };
    let w = World::new(config);
    block_on(async {
        w.log.ensure_topic(&Topic::new(TOPIC).expect("a valid name"), 1).await.expect("topic");
        let recs: Vec<NewRecord> = (0..2000)
            .map(|i| NewRecord {
                key: None,
                value: format!(r#"{{"id":"key-{i}"}}"#).into_bytes(),
                timestamp: NOW,
            })
            .collect();
        w.log.append(TOPIC, 0, &recs).await.expect("append");
    });
    let id = create(&w, &json!({"topic": TOPIC, "aggs": {"k": {"terms": {"field": "id"}}}}));
    drain(&w, &NoFaults, |_, l| l);
    let s = result_of(&w, &id);
    assert_eq!(s["error"]["error"]["type"], json!("circuit_breaking_exception"), "{s}");
}

/// A clock that moves `step_ms` on every reading: each batch then seems to take that long.
struct SlowClock {
    inner: Arc<ManualClock>,
    step_ms: i64,
}

impl kappa_core::ports::Clock for SlowClock {
    fn now_ms(&self) -> i64 {
        self.inner.advance(self.step_ms);
        kappa_core::ports::Clock::now_ms(&*self.inner)
    }
}

/// `body` with an extra aggregation named `tag`: a query of its own, so that the folding time
/// other tests charge to `body`'s query (the meter is the process's) does not dilute its own.
fn metered_alone(body: &Value, tag: &str) -> Value {
    let mut body = body.clone();
    body["aggs"][tag] = json!({"value_count": {"field": "n"}});
    body
}

/// Run the pending process links on a clock that advances `step_ms` at every reading, each
/// expected to fail the query over its CPU budget.
fn run_links_on_a_slow_clock(w: &World, step_ms: i64) {
    let clock = SlowClock { inner: w.clock.clone(), step_ms };
    let env = Env { clock: &clock, ..w.env() };
    let mut failed = 0;
    for link in w.chain.take() {
        let Link::Process(event) = link else { panic!("a process link") };
        let deadline_ms = kappa_core::ports::Clock::now_ms(&*clock.inner) + 60_000;
        let ctx = Context { activation_id: "slow".into(), deadline_ms };
        match block_on(process_with_faults(&env, &ctx, event, &NoFaults)) {
            Err(e) => {
                assert_eq!(e.status(), 429, "{e}");
                failed += 1;
            }
            // The live tail starts at the head the query was registered at: nothing to fold.
            Ok(output) => assert_eq!(output.records, 0, "{output:?}"),
        }
    }
    assert!(failed > 0, "no link went over the CPU budget");
}

#[test]
fn a_query_over_its_cpu_budget_fails_visibly_and_others_go_on() {
    let w = World::new(small_batches());
    fill(&w, 1, 30);
    let slow = create(&w, &metered_alone(&body(), "over_budget"));
    // Every read of the clock takes 2 s: 3 records folded in ~2 s is ~670 ms a record.
    run_links_on_a_slow_clock(&w, 2_000);
    let s = result_of(&w, &slow);
    assert_eq!(s["error"]["error"]["type"], json!("circuit_breaking_exception"), "{s}");
    assert!(
        s["error"]["error"]["reason"].to_string().contains("max_fold_micros_per_record"),
        "{s}"
    );
    // The same records at normal speed are within budget.
    let other = create(&w, &json!({"topic": TOPIC, "size": 0}));
    drain(&w, &NoFaults, |_, l| l);
    let s = result_of(&w, &other);
    assert_eq!((s["error"].is_null(), s["caught_up"].as_bool()), (true, Some(true)), "{s}");
}

#[test]
fn a_costly_query_in_small_batches_is_judged_across_its_invocations() {
    // Each invocation folds at most 7 records in ~300 ms: never long enough to judge alone,
    // as a live query's small batches are not. The meter adds them up.
    let w = World::new(small_batches());
    fill(&w, 1, 200);
    let slow = create(&w, &metered_alone(&body(), "small_batches"));
    let clock = SlowClock { inner: w.clock.clone(), step_ms: 100 };
    let env = Env { clock: &clock, ..w.env() };
    let mut invocations = 0;
    let stopped = loop {
        let Some(event) = w.chain.take().into_iter().find_map(|link| match link {
            Link::Process(event) => Some(event),
            Link::Group(_) | Link::Push(_) => None,
        }) else {
            break None;
        };
        let deadline_ms = kappa_core::ports::Clock::now_ms(&*clock.inner) + 60_000;
        let ctx = Context { activation_id: format!("small-{invocations}"), deadline_ms };
        invocations += 1;
        if let Err(e) = block_on(process_with_faults(&env, &ctx, event, &NoFaults)) {
            break Some(e);
        }
    };
    let e = stopped.expect("stopped by the CPU budget before the end of the topic");
    assert_eq!(e.status(), 429, "{e}");
    assert!(invocations > 1, "judged across invocations, not within one ({invocations})");
    let s = result_of(&w, &slow);
    assert_eq!(s["error"]["error"]["type"], json!("circuit_breaking_exception"), "{s}");
    assert!(s["progress"]["processed"].as_u64().is_some_and(|n| n < 200), "{s}");
}

#[test]
fn the_cpu_budget_is_judged_within_a_read_not_after_it() {
    // One read of 1,000 records, and 1 s a clock reading: folded whole, the read would cost
    // 1 ms a record, just within the budget, after holding a worker for the whole read. Timed
    // in chunks, the first one (a few records in 1 s) is over the budget already.
    let w = World::new(ActionConfig {
        batch_records: 2_000,
        read_records: 2_000,
        ..ActionConfig::default()
    });
    fill(&w, 1, 1_000);
    let slow = create(&w, &metered_alone(&body(), "judged_within_a_read"));
    run_links_on_a_slow_clock(&w, 1_000);
    let s = result_of(&w, &slow);
    let reason = s["error"]["error"]["reason"].as_str().unwrap_or_default().to_string();
    let micros: u64 = reason
        .split_once("costs ")
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("a cost in the reason: {s}"));
    // 1 s over n records: n = 1e6 / micros, a first chunk, far from the read's 1,000.
    assert!(micros >= 30_000, "judged after {} records: {reason}", 1_000_000 / micros.max(1));
}

#[test]
fn deltas_chain_from_version_to_version_and_webhooks_are_signed() {
    let w = World::new(ActionConfig { allow_private_webhooks: false, ..small_batches() });
    fill(&w, 1, 30);
    let id = create(&w, &body());
    block_on(w.store.subscribe(
        &id,
        &kappa_core::ports::Subscription {
            url: "https://hooks.example.com/k".into(),
            secret: "s3cret".into(),
        },
    ))
    .expect("sub");
    block_on(w.store.subscribe(
        &id,
        &kappa_core::ports::Subscription { url: "http://127.0.0.1:9/x".into(), secret: "x".into() },
    ))
    .expect("sub");
    drain(&w, &NoFaults, |_, l| l);
    // Replaying the ring from version 0 rebuilds the final result exactly.
    let messages = block_on(w.store.messages_since(&id, 0)).expect("ok").expect("held");
    let mut doc = oracle_empty();
    let mut version = 0;
    for m in &messages {
        if let Message::Delta { from, version: to, patch, .. } = m {
            assert_eq!(*from, version);
            version = *to;
            kappa_core::patch::apply(&mut doc, patch).expect("applies");
        }
    }
    let s = result_of(&w, &id);
    assert_eq!(s["version"], json!(version));
    assert_eq!(doc, s["result"]);
    let sent = w.http.sent();
    assert!(!sent.is_empty());
    assert!(
        sent.iter().all(|r| r.url.starts_with("https://hooks.example.com")),
        "the loopback webhook is refused"
    );
    for r in &sent {
        let sig = r
            .headers
            .iter()
            .find(|(k, _)| k == "x-kappa-signature")
            .map(|(_, v)| v.clone())
            .expect("signed");
        assert_eq!(sig, kappa_actions::push::signature("s3cret", &r.body));
    }
}

fn oracle_empty() -> Value {
    let plan = Plan::parse(&body(), &Limits::default()).expect("valid");
    plan.render(&plan.empty_state()).expect("renders")
}

#[test]
fn failed_webhook_deliveries_are_retried_with_backoff() {
    let w = World::new(ActionConfig { webhook_attempts: 3, ..small_batches() });
    fill(&w, 1, 5);
    let id = create(&w, &body());
    block_on(w.store.subscribe(
        &id,
        &kappa_core::ports::Subscription {
            url: "https://hooks.example.com/k".into(),
            secret: "s".into(),
        },
    ))
    .expect("sub");
    drain(&w, &NoFaults, |_, links| {
        links.into_iter().filter(|l| !matches!(l, Link::Push(_))).collect()
    });
    w.http.script([
        Ok(503),
        Err(kappa_core::ports::PortError::transient("http", "reset")),
        Ok(200),
    ]);
    let before = kappa_core::ports::Clock::now_ms(&*w.clock);
    let v = result_of(&w, &id)["version"].as_u64().expect("v");
    let out =
        block_on(push(&w.env(), PushEvent { query: id.clone(), version: v })).expect("pushed");
    assert_eq!((out.delivered, out.failed), (1, 0));
    assert_eq!(w.http.sent().len(), 3);
    assert!(
        kappa_core::ports::Clock::now_ms(&*w.clock) - before >= 200 + 800,
        "backoff between attempts"
    );
}

#[test]
fn idle_queries_are_reclaimed_by_the_periodic_tick_only() {
    let w = World::new(small_batches());
    fill(&w, 2, 20);
    let id = create(&w, &body());
    drain(&w, &NoFaults, |_, l| l);
    let exists = || block_on(w.store.query(&id)).expect("read").is_some();
    w.clock.advance(w.config.idle_timeout_ms + 1);
    // A feed event comes with every append burst: it wakes queries, it never reclaims them.
    let t = block_on(tick::tick(&w.env(), Some(TOPIC))).expect("feed tick");
    assert_eq!((t.queries, t.reclaimed), (1, 0));
    assert!(exists());
    // A subscriber's reference keeps an idle query.
    block_on(w.store.add_refs(&id, 1)).expect("ref");
    assert_eq!(block_on(tick::tick(&w.env(), None)).expect("tick").reclaimed, 0);
    assert!(exists());
    block_on(w.store.add_refs(&id, -1)).expect("unref");
    assert_eq!(block_on(tick::tick(&w.env(), None)).expect("tick").reclaimed, 1);
    assert!(!exists(), "reclaimed by the periodic tick");
}

/// Distinct queries a newsroom runs side by side on one topic.
fn desk_queries() -> Vec<Value> {
    vec![
        body(),
        json!({"topic": TOPIC, "size": 0, "aggs": {"tags": {"terms": {"field": "tag"}}}}),
        json!({"topic": TOPIC, "query": {"match": {"text": "federer"}}, "size": 2}),
        json!({"topic": TOPIC, "size": 0, "aggs": {"per_min": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"}}}}),
        json!({"topic": TOPIC, "size": 0, "aggs": {"n": {"stats": {"field": "n"}}}}),
        json!({"topic": TOPIC, "query": {"match": {"text": "rain"}}, "size": 0,
               "aggs": {"users": {"cardinality": {"field": "user.name"}}}}),
        json!({"topic": TOPIC, "runtime_mappings": {"n": {"type": "keyword"}}, "size": 0,
               "aggs": {"ns": {"terms": {"field": "n", "size": 3}}}}),
    ]
}

/// A small deterministic generator for the groupings (the test's inputs seed it).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Run fired links until none are left, the process links of each round cut into random
/// groups (one invocation each, all concurrently), some members duplicated within or across
/// groups.
fn drain_in_groups(w: &World, faults: &dyn Faults, dice: &mut Dice) {
    for _ in 0..10_000 {
        let links = w.chain.take();
        if links.is_empty() {
            return;
        }
        let mut groups: Vec<Vec<ProcessEvent>> = Vec::new();
        let mut pushes = Vec::new();
        for link in links {
            match link {
                Link::Group(g) => {
                    // A group link: sometimes kept whole, sometimes cut up like the others.
                    if dice.roll(2) == 0 {
                        groups.push(g.members);
                        continue;
                    }
                    for e in g.members {
                        let at = dice.roll(groups.len() + 1);
                        match groups.get_mut(at) {
                            Some(group) => group.push(e),
                            None => groups.push(vec![e]),
                        }
                    }
                }
                Link::Process(e) => {
                    let copies = if dice.roll(4) == 0 { 2 } else { 1 };
                    for _ in 0..copies {
                        let at = dice.roll(groups.len() + 1);
                        match groups.get_mut(at) {
                            Some(group) => group.push(e.clone()),
                            None => groups.push(vec![e.clone()]),
                        }
                    }
                }
                Link::Push(e) => pushes.push(e),
            }
        }
        let (env, ctx) = (w.env(), w.ctx());
        // Each group runs in one of two warm containers at random: each keeps the states it
        // committed, and finds them stale when the other moved a segment on since.
        let envs: Vec<Env<'_>> = groups.iter().map(|_| w.env_in(dice.roll(2))).collect();
        block_on(async {
            let runs = groups
                .iter()
                .zip(&envs)
                .map(|(g, env)| process_group_with_faults(env, &ctx, g, faults));
            for outputs in join_all(runs).await.into_iter().flatten() {
                for output in outputs.into_iter().flatten() {
                    // Only a member whose commit stood fires its next link.
                    assert!(!output.fired_next || output.committed, "{output:?}");
                }
            }
            join_all(pushes.into_iter().map(|e| push(&env, e))).await;
        });
    }
    panic!("the chain does not terminate");
}

fn append_some(w: &World, partition: u32, count: u64, seed: u64) {
    let records: Vec<NewRecord> = (0..count)
        .map(|i| NewRecord { key: None, value: doc(seed * 31 + i), timestamp: NOW + i as i64 })
        .collect();
    block_on(w.log.append(TOPIC, partition, &records)).expect("append");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Queries join and leave at random offsets while others replay or tail the log, every
    /// round's links grouped at random (some duplicated), invocations crashing at a random
    /// step: each query still ends with its own one-pass result, and its deltas apply version
    /// to version from the first.
    #[test]
    fn queries_joining_and_leaving_groups_with_duplicates_and_crashes_equal_their_one_pass(
        steps in proptest::collection::vec((0usize..4, 0usize..7, 1u64..40), 1..14),
        crash_step in proptest::sample::select(vec!["none", "loaded", "folded", "committed", "refreshed"]),
        crashes in 0usize..4,
        seed in 1u64..u64::MAX,
        appended in proptest::bool::ANY,
    ) {
        // Checkpoints appended batch by batch, or written whole each time.
        let from_bytes = if appended { 0 } else { usize::MAX };
        let mut w =
            World::new(ActionConfig { append_checkpoints_from_bytes: from_bytes, ..small_batches() });
        w.store = MemoryStore::new(1 << 20);
        fill(&w, 2, 40);
        let faults = CrashAt(crash_step, std::sync::atomic::AtomicUsize::new(crashes));
        let mut dice = Dice(seed);
        let queries = desk_queries();
        let mut live: Vec<(String, usize)> = Vec::new();
        for (i, &(kind, which, count)) in steps.iter().enumerate() {
            match kind {
                0 => {
                    // 201 when new, 200 when the same query is already registered (shared).
                    let r = block_on(query::create(&w.env(), queries[which].to_string().as_bytes()))
                        .expect("registered");
                    let id = r.body["id"].as_str().expect("id").to_string();
                    if !live.iter().any(|(l, _)| *l == id) {
                        live.push((id, which));
                    }
                }
                1 => append_some(&w, (which % 2) as u32, count, i as u64),
                2 if !live.is_empty() => {
                    let (id, _) = live.remove(which % live.len());
                    block_on(query::release(&w.env(), &id)).expect("released");
                }
                _ => {
                    block_on(tick::tick(&w.env(), None)).expect("tick");
                    drain_in_groups(&w, &faults, &mut dice);
                }
            }
        }
        // The safety net picks up whatever the crashes dropped.
        for _ in 0..60 {
            let t = block_on(tick::tick(&w.env(), None)).expect("tick");
            drain_in_groups(&w, &faults, &mut dice);
            if t.fired == 0 && w.chain.take().is_empty() {
                break;
            }
        }
        for (id, which) in &live {
            let s = result_of(&w, id);
            proptest::prop_assert_eq!(&s["result"], &oracle(&w, &queries[*which]), "query {}", which);
            proptest::prop_assert_eq!(&s["caught_up"], &json!(true));
            let messages = block_on(w.store.messages_since(id, 0)).expect("ok").expect("held");
            let plan = Plan::parse(&queries[*which], &Limits::default()).expect("valid");
            let mut doc = plan.render(&plan.empty_state()).expect("renders");
            let mut version = 0;
            for m in &messages {
                if let Message::Delta { from, version: to, patch, .. } = m {
                    proptest::prop_assert_eq!(*from, version);
                    version = *to;
                    kappa_core::patch::apply(&mut doc, patch).expect("applies");
                }
            }
            proptest::prop_assert_eq!(&doc, &s["result"]);
        }
    }
}

#[test]
fn the_tick_wakes_the_live_queries_of_a_topic_as_one_group_link() {
    let w = World::new(small_batches());
    fill(&w, 1, 20);
    let queries = &desk_queries()[..3];
    let ids: Vec<String> = queries.iter().map(|b| create(&w, b)).collect();
    drain(&w, &NoFaults, |_, l| l);
    append_some(&w, 0, 5, 1);
    let t = block_on(tick::tick(&w.env(), Some(TOPIC))).expect("tick");
    assert_eq!(t.fired, 3);
    let links = w.chain.take();
    let [Link::Group(group)] = links.as_slice() else { panic!("one group link: {links:?}") };
    assert_eq!(group.members.len(), 3);
    // The process action's event as OpenWhisk passes it: one read of the 5 new records for
    // the three queries, each committed on its own.
    let out = block_on(process_event(&w.env(), &w.ctx(), links[0].params())).expect("processed");
    let members = out["members"].as_array().expect("an output per member");
    assert_eq!(members.len(), 3);
    for member in members {
        assert_eq!((&member["committed"], &member["records"]), (&json!(true), &json!(5)), "{out}");
    }
    drain(&w, &NoFaults, |_, l| l);
    for (id, body) in ids.iter().zip(queries) {
        assert_eq!(result_of(&w, id)["result"], oracle(&w, body));
    }
    // One watermark read per partition however many queries follow it (each a broker
    // round trip against Kafka).
    append_some(&w, 0, 5, 1);
    let counting = SlowLog { inner: &w.log, clock: &w.clock, watermark_reads: Default::default() };
    let env = Env { log: &counting, ..w.env() };
    let t = block_on(tick::tick(&env, Some(TOPIC))).expect("tick");
    assert_eq!(t.fired, 3);
    let partitions = block_on(w.log.partitions(TOPIC)).expect("ok").expect("a topic");
    assert_eq!(
        counting.watermark_reads.load(std::sync::atomic::Ordering::Relaxed),
        partitions as usize,
        "one read per partition"
    );
    w.chain.take();
    // Group links of at most `group_members`; one member alone is a plain link.
    let member = |p| ProcessEvent {
        query: "q".into(),
        segment: kappa_core::ports::Segment { partition: p, start: 0, end: None },
    };
    let links = links_of((0..5).map(member).collect(), 2);
    assert_eq!(links.len(), 3);
    assert!(matches!(&links[2], Link::Process(e) if e.segment.partition == 4));
}

#[test]
fn a_tick_over_more_live_queries_than_a_group_holds_fires_several_groups() {
    let w = World::new(ActionConfig { group_members: 2, ..small_batches() });
    fill(&w, 1, 20);
    let queries = &desk_queries()[..5];
    let ids: Vec<String> = queries.iter().map(|b| create(&w, b)).collect();
    drain(&w, &NoFaults, |_, l| l);
    append_some(&w, 0, 5, 1);
    let t = block_on(tick::tick(&w.env(), Some(TOPIC))).expect("tick");
    assert_eq!(t.fired, 5);
    let links = w.chain.take();
    let sizes: Vec<usize> = links
        .iter()
        .map(|l| match l {
            Link::Group(g) => g.members.len(),
            Link::Process(_) => 1,
            other => panic!("a process link: {other:?}"),
        })
        .collect();
    assert_eq!(sizes, [2, 2, 1], "groups of at most group_members, the rest alone: {links:?}");
    let mut woken: Vec<String> = links
        .iter()
        .flat_map(|l| match l {
            Link::Group(g) => g.members.iter().map(|m| m.query.to_string()).collect(),
            Link::Process(e) => vec![e.query.to_string()],
            _ => Vec::new(),
        })
        .collect();
    woken.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(woken, expected, "every live query woken exactly once");
    for link in &links {
        let out = block_on(process_event(&w.env(), &w.ctx(), link.params())).expect("processed");
        assert!(out.get("error").is_none(), "{out}");
    }
    drain(&w, &NoFaults, |_, l| l);
    for (id, body) in ids.iter().zip(queries) {
        assert_eq!(result_of(&w, id)["result"], oracle(&w, body));
    }
}

/// Each of `queries` (id, body) is caught up over all `records` and answers its one pass.
fn each_equals_its_one_pass(w: &World, queries: &[(&String, &Value)], records: u64) {
    for (id, body) in queries {
        let s = result_of(w, id);
        assert_eq!(s["result"], oracle(w, body));
        assert_eq!(s["progress"]["processed"], json!(records));
        assert_eq!(s["caught_up"], json!(true));
    }
}

/// Run a link as an invoker would, expecting every member to succeed.
fn run_link(w: &World, link: Link) {
    match link {
        Link::Process(e) => {
            block_on(process_with_faults(&w.env(), &w.ctx(), e, &NoFaults)).expect("ok");
        }
        Link::Group(g) => {
            let outputs =
                block_on(process_group_with_faults(&w.env(), &w.ctx(), &g.members, &NoFaults));
            assert!(outputs.expect("ok").iter().all(Result::is_ok));
        }
        Link::Push(_) => {}
    }
}

#[test]
fn a_query_registered_during_another_replay_joins_it_where_it_is() {
    // One segment per partition, so the only cut is the join point.
    let w = World::new(ActionConfig { split_records: 1_000_000, ..small_batches() });
    fill(&w, 1, 200);
    let queries = desk_queries();
    let first = create(&w, &queries[1]);
    for _ in 0..5 {
        for link in w.chain.take() {
            if let Link::Process(e) = link {
                block_on(process_with_faults(&w.env(), &w.ctx(), e, &NoFaults)).expect("ok");
            }
        }
    }
    // The history replays in one closed segment; the tail follows the head from 200.
    let replay = kappa_core::ports::Segment { partition: 0, start: 0, end: Some(200) };
    let at = block_on(w.store.checkpoint(&first, &replay)).expect("ok").expect("a checkpoint");
    let at = at.next_offset;
    assert!(0 < at && at < 200, "halfway: {at}");
    let second = create(&w, &queries[0]);
    let record = block_on(w.store.query(&second)).expect("ok").expect("registered");
    assert_eq!(
        record.segments,
        vec![
            kappa_core::ports::Segment { partition: 0, start: 0, end: Some(at) },
            kappa_core::ports::Segment { partition: 0, start: at, end: Some(200) },
            kappa_core::ports::Segment { partition: 0, start: 200, end: None },
        ],
        "the part before the first query's offset alone, the rest with it"
    );
    drain_in_groups(&w, &NoFaults, &mut Dice(7));
    each_equals_its_one_pass(&w, &[(&first, &queries[1]), (&second, &queries[0])], 200);
}

/// The one closed segment a query registered over `fill(w, 1, 200)` replays the history in.
const HISTORY: kappa_core::ports::Segment =
    kappa_core::ports::Segment { partition: 0, start: 0, end: Some(200) };

/// Register `body` over the 200 records of `w` and run its links 5 rounds (as deployed, no
/// scheduler): its id and where its replay of [`HISTORY`] stands, halfway.
fn halfway_through_a_replay(w: &World, body: &Value) -> (String, i64) {
    let first = create(w, body);
    for _ in 0..5 {
        w.chain.take().into_iter().for_each(|l| run_link(w, l));
    }
    let at = block_on(w.store.checkpoint(&first, &HISTORY)).expect("ok").expect("committed");
    let at = at.next_offset;
    assert!(0 < at && at < 200, "halfway: {at}");
    (first, at)
}

#[test]
fn a_joiner_of_a_replay_registered_before_later_records_replays_those_alone() {
    // Records appended between the two registrations: the replay ahead ends at the head of its
    // registration, so the new query joins it up to there and replays the rest alone.
    let w = World::new(ActionConfig { split_records: 1_000_000, ..small_batches() });
    fill(&w, 1, 200);
    let queries = desk_queries();
    let (first, at) = halfway_through_a_replay(&w, &queries[1]);
    append_some(&w, 0, 10, 3);
    let second = create(&w, &queries[0]);
    let record = block_on(w.store.query(&second)).expect("ok").expect("registered");
    let range = |start, end| kappa_core::ports::Segment { partition: 0, start, end };
    assert_eq!(
        record.segments,
        vec![range(0, Some(at)), range(at, Some(200)), range(200, Some(210)), range(210, None)],
        "alone before the replay ahead, with it to its end, alone after, then the tail"
    );
    let joiners = block_on(w.store.take_joiners(TOPIC, 0)).expect("ok");
    assert_eq!(
        joiners,
        vec![ProcessEvent { query: second.clone(), segment: range(at, Some(200)) }]
    );
    block_on(w.store.add_joiner(TOPIC, 0, &joiners[0])).expect("left again");
    drain_in_groups(&w, &NoFaults, &mut Dice(11));
    block_on(tick::tick(&w.env(), None)).expect("tick");
    drain(&w, &NoFaults, |_, l| l);
    each_equals_its_one_pass(&w, &[(&first, &queries[1]), (&second, &queries[0])], 210);
}

#[test]
fn a_replay_takes_a_query_registered_behind_it_into_its_next_link() {
    // As deployed: nothing but the links themselves groups the queries (no scheduler).
    let w = World::new(ActionConfig { split_records: 1_000_000, ..small_batches() });
    fill(&w, 1, 200);
    let queries = desk_queries();
    let (first, at) = halfway_through_a_replay(&w, &queries[1]);
    let open = HISTORY;
    let run = |link: Link| run_link(&w, link);
    let second = create(&w, &queries[0]);
    let before = kappa_core::ports::Segment { partition: 0, start: 0, end: Some(at) };
    let rest = kappa_core::ports::Segment { partition: 0, start: at, end: Some(200) };
    let member = |query: &str, segment| ProcessEvent { query: query.to_string(), segment };
    let fired = w.chain.take();
    let advances = |links: &[Link], event: &ProcessEvent| {
        links.iter().any(|l| match l {
            Link::Process(e) => e == event,
            Link::Group(g) => g.members.contains(event),
            Link::Push(_) => false,
        })
    };
    assert!(advances(&fired, &member(&second, before)), "the part before starts alone at once");
    assert!(
        !advances(&fired, &member(&second, rest)),
        "the rest is left for the replay ahead, not started on its own: {fired:?}"
    );
    assert!(advances(&fired, &member(&first, open)), "the first query's replay goes on");

    // The first query's next invocation takes it along: one link for both.
    let (ahead, others): (Vec<Link>, Vec<Link>) =
        fired.into_iter().partition(|l| advances(std::slice::from_ref(l), &member(&first, open)));
    ahead.into_iter().for_each(run);
    let taken = w.chain.take();
    let together = taken.iter().find_map(|l| match l {
        Link::Group(g) => Some(g.members.clone()),
        _ => None,
    });
    assert_eq!(
        together,
        Some(vec![member(&first, open), member(&second, rest)]),
        "the replay's next link carries the joiner: {taken:?}"
    );
    // One invocation of that link reads both from the joiner's offset: they stand together.
    taken.into_iter().for_each(run);
    let next_of = |query: &str, segment| {
        block_on(w.store.checkpoint(query, &segment)).expect("ok").expect("committed").next_offset
    };
    assert_eq!(next_of(&first, open), next_of(&second, rest), "one convoy from here");
    assert!(block_on(w.store.take_joiners(TOPIC, 0)).expect("ok").is_empty(), "taken once");

    for link in others {
        block_on(kappa_core::ports::Chain::fire(&w.chain, link)).expect("fired");
    }
    drain(&w, &NoFaults, |_, l| l);
    each_equals_its_one_pass(&w, &[(&first, &queries[1]), (&second, &queries[0])], 200);
}

#[test]
fn a_joiner_whose_replay_reached_its_head_goes_on_alone() {
    let w = World::new(ActionConfig { split_records: 1_000_000, ..small_batches() });
    fill(&w, 1, 60);
    let queries = desk_queries();
    let first = create(&w, &queries[1]);
    let open = kappa_core::ports::Segment { partition: 0, start: 0, end: Some(60) };
    let run = |link: Link| run_link(&w, link);
    // The first query's replay one batch (7 records) from its head.
    let next = || block_on(w.store.checkpoint(&first, &open)).expect("ok").map(|c| c.next_offset);
    while next().is_none_or(|n| n < 53) {
        w.chain.take().into_iter().for_each(run);
    }
    let at = next().expect("a checkpoint");
    assert!(at < 60, "still replaying: {at}");
    let second = create(&w, &queries[0]);
    let rest = kappa_core::ports::Segment { partition: 0, start: at, end: Some(60) };
    let fired = w.chain.take();
    assert!(!fired.iter().any(|l| matches!(l, Link::Process(e) if e.segment == rest)));
    // Its last batch reaches the head, so it fires no next link of its own: the joiner is
    // started then, alone, not left for the next tick.
    fired.into_iter().filter(|l| matches!(l, Link::Process(e) if e.query == first)).for_each(run);
    assert_eq!(next(), Some(60), "the first query is at its head");
    let taken = w.chain.take();
    let chains: Vec<&Link> = taken.iter().filter(|l| !matches!(l, Link::Push(_))).collect();
    assert_eq!(
        chains,
        vec![&Link::Process(ProcessEvent { query: second.clone(), segment: rest })],
        "the joiner alone"
    );
    for link in taken {
        block_on(kappa_core::ports::Chain::fire(&w.chain, link)).expect("fired");
    }
    // The part of the second query before the cut was taken out of the chain above: the
    // tick starts it, as it starts every segment without a checkpoint.
    block_on(kappa_actions::tick::tick(&w.env(), None)).expect("tick");
    drain(&w, &NoFaults, |_, l| l);
    each_equals_its_one_pass(&w, &[(&first, &queries[1]), (&second, &queries[0])], 60);
}

#[test]
fn a_live_tail_leaves_the_joiners_of_its_partitions_to_a_replay() {
    let w = World::new(ActionConfig { split_records: 1_000_000, ..small_batches() });
    fill(&w, 1, 20);
    let id = create(&w, &desk_queries()[1]);
    drain(&w, &NoFaults, |_, l| l);
    let segment = kappa_core::ports::Segment { partition: 0, start: 5, end: Some(20) };
    let joiner = ProcessEvent { query: "q_waiting".into(), segment };
    block_on(w.store.add_joiner(TOPIC, 0, &joiner)).expect("left");
    // New records wake the caught-up query: it reads them, and does not take the joiner.
    append_some(&w, 0, 5, 1);
    let live = ProcessEvent { query: id.clone(), segment: kappa_core::ports::Segment::TAIL };
    let out = block_on(process_with_faults(&w.env(), &w.ctx(), live, &NoFaults)).expect("ok");
    assert!(out.records > 0 && out.committed, "it read the new records: {out:?}");
    let chains: Vec<Link> =
        w.chain.take().into_iter().filter(|l| !matches!(l, Link::Push(_))).collect();
    assert_eq!(chains, vec![], "at its head, with no joiner taken along");
    let left = block_on(w.store.take_joiners(TOPIC, 0)).expect("ok");
    assert_eq!(left, vec![joiner], "left for a replay (or the tick)");
}

#[test]
fn a_registration_looks_for_a_replay_to_join_among_at_most_64_queries_of_its_topic() {
    // `join_points` reads at most 64 queries of the topic (in the store's order, by id), so a
    // registration's reads stay bounded however many queries a topic has. A replay beyond them
    // is not joined: the new query reads alone, which costs reads, never correctness.
    let w = World::new(ActionConfig { split_records: 1_000_000, ..small_batches() });
    fill(&w, 1, 60);
    let body = |i: usize| json!({"topic": TOPIC, "size": 0, "aggs": {"tags": {"terms": {"field": "tag", "size": i}}}});
    let id_of = |b: &Value| {
        let request = kappa_core::request::parse_request(b, &Limits::default());
        kappa_core::query_id(&request.expect("a valid query")).to_string()
    };
    // 80 queries at their head: none is a join point.
    let mut at_head: Vec<String> = (1..=80).map(|i| create(&w, &body(i))).collect();
    drain(&w, &NoFaults, |_, l| l);
    at_head.sort();
    let cut = &at_head[63];
    // Two replays to join: one among the first 64 ids of the topic, one beyond them.
    let candidates: Vec<Value> = (100..400).map(body).collect();
    let seen = candidates.iter().find(|b| id_of(b) < *cut).expect("an id among the first 64");
    let unseen = candidates.iter().find(|b| id_of(b) > *cut).expect("an id beyond them");
    let open = kappa_core::ports::Segment { partition: 0, start: 0, end: Some(60) };
    let joins = |ahead: &Value, new: &Value| {
        let ahead = create(&w, ahead);
        // Part of the way: 3 invocations of 7 records.
        for _ in 0..3 {
            w.chain.take().into_iter().for_each(|l| run_link(&w, l));
        }
        let at = block_on(w.store.checkpoint(&ahead, &open)).expect("ok").expect("committed");
        assert!(at.next_offset < 60, "still replaying: {at:?}");
        create(&w, new);
        let joiners = block_on(w.store.take_joiners(TOPIC, 0)).expect("ok");
        drain(&w, &NoFaults, |_, l| l);
        !joiners.is_empty()
    };
    assert!(joins(seen, &body(1000)), "a replay among the first 64 queries is joined");
    assert!(!joins(unseen, &body(1001)), "one beyond them is not looked at");
}
