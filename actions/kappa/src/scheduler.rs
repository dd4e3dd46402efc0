//! OpenWhisk's triggers and rules, in process.
//!
//! - [`DevChain`] is the `Chain` port: a fired link is queued as a [`Job`]. Process links are
//!   deduplicated per `(query, segment)`: a link already queued is not queued again, and one
//!   fired while the same segment runs is queued once, when that run ends. So a hot query never
//!   floods the queue and a segment never runs twice at once (the CAS would make that harmless,
//!   only wasteful).
//! - A segment whose last run ended at the head is *caught up*: its next link joins its query's
//!   group instead, and one [`Job::Group`] advances all the waiting segments of the query in one
//!   invocation ([`process_segments`]: each checkpoint committed alone, one result refresh).
//!   So an append that wakes every partition of a live query costs one merge, render and diff
//!   of its result, not one per partition. Segments still replaying stay separate links, which
//!   the workers run in parallel.
//! - [`run`] starts a bounded pool of workers for process links (each invocation gets a 60 s
//!   deadline, like an activation), a lane per query for push links (webhook deliveries stay in
//!   order and a slow webhook delays only its query's), the periodic tick, and the wake-up on
//!   appends that lets a caught-up query pick up new records at once.
//!
//! Correctness never depends on the scheduler: offsets in the store are the only truth, and the
//! tick re-fires whatever was dropped (a crash, a failed invocation).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kappa_actions::process::{ProcessEvent, ProcessOutput, process, process_segments};
use kappa_actions::push::{PushEvent, push};
use kappa_actions::{ActionConfig, ActionError, Context, Env, tick};
use kappa_core::ports::{Chain, Clock, Link, PortError, PortResult, Segment, StateStore};
use kappa_runtime::clock::{SystemClock, TokioTimer};
use kappa_runtime::http::ReqwestHttp;
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::backend::Log;
use crate::hub::Hub;

/// Shortest time between two wake-up ticks (appends in between are picked up together).
const WAKE_INTERVAL: Duration = Duration::from_millis(20);

/// Deadline of one in-process invocation, like an OpenWhisk activation's.
pub const ACTIVATION_MS: i64 = 60_000;

/// A queued link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Advance one segment.
    Process(ProcessEvent),
    /// Advance the waiting caught-up segments of a query together.
    Group(String),
    /// Deliver a version to webhooks.
    Push(PushEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Queued,
    Running,
    RunningAndRequested,
}

/// The caught-up segments of one query, advanced together.
#[derive(Debug, Default)]
struct Group {
    /// A [`Job::Group`] is in the queue.
    queued: bool,
    /// Waiting for the next run.
    pending: Vec<Segment>,
    /// In the current run.
    running: Vec<Segment>,
    /// Fired while in the current run: placed when it ends (with the group if the run
    /// reached the head, alone otherwise).
    requested: Vec<Segment>,
}

#[derive(Debug, Default)]
struct Links {
    segments: HashMap<(String, Segment), LinkState>,
    groups: HashMap<String, Group>,
    caught_up: HashSet<(String, Segment)>,
}

/// The `Chain` port of `kappa dev`.
#[derive(Debug)]
pub struct DevChain {
    tx: mpsc::UnboundedSender<Job>,
    links: Mutex<Links>,
}

impl DevChain {
    /// A chain and the queue its links go to.
    pub fn new() -> (DevChain, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (DevChain { tx, links: Mutex::new(Links::default()) }, rx)
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, job: Job) -> PortResult<()> {
        self.tx.send(job).map_err(|_| PortError::transient("kappa-dev", "scheduler stopped"))
    }

    /// Queue a process link unless the same segment is already queued (alone or in its
    /// query's group).
    pub fn fire_process(&self, event: ProcessEvent) -> PortResult<()> {
        let key = (event.query.clone(), event.segment);
        let mut guard = self.links();
        let links = &mut *guard;
        match links.segments.get(&key).copied() {
            Some(LinkState::Running) => {
                links.segments.insert(key, LinkState::RunningAndRequested);
                return Ok(());
            }
            Some(LinkState::Queued | LinkState::RunningAndRequested) => return Ok(()),
            None => {}
        }
        let caught_up = links.caught_up.contains(&key);
        if let Some(group) = links.groups.get_mut(&event.query) {
            if group.running.contains(&event.segment) {
                if !group.requested.contains(&event.segment) {
                    group.requested.push(event.segment);
                }
                return Ok(());
            }
            if group.pending.contains(&event.segment) {
                return Ok(());
            }
            if caught_up {
                // Runs with the group's next run (queued now, or when the current run ends).
                group.pending.push(event.segment);
                return Ok(());
            }
        } else if caught_up {
            let group = Group { queued: true, pending: vec![event.segment], ..Group::default() };
            links.groups.insert(event.query.clone(), group);
            drop(guard);
            return self.send(Job::Group(event.query));
        }
        links.segments.insert(key, LinkState::Queued);
        drop(guard);
        self.send(Job::Process(event))
    }

    fn started(&self, key: &(String, Segment)) {
        self.links().segments.insert(key.clone(), LinkState::Running);
    }

    /// The run of `event`'s segment ended (`at_head`: it reached the head): queue it again if
    /// it was requested meanwhile.
    fn finished(&self, event: &ProcessEvent, at_head: bool) {
        let key = (event.query.clone(), event.segment);
        let mut links = self.links();
        if at_head {
            links.caught_up.insert(key.clone());
        } else {
            links.caught_up.remove(&key);
        }
        if links.segments.get(&key) == Some(&LinkState::RunningAndRequested) {
            links.segments.insert(key, LinkState::Queued);
            drop(links);
            let _ = self.send(Job::Process(event.clone()));
        } else {
            links.segments.remove(&key);
        }
    }

    /// The segments a group run of `query` advances.
    fn started_group(&self, query: &str) -> Vec<Segment> {
        let mut links = self.links();
        let Some(group) = links.groups.get_mut(query) else { return Vec::new() };
        group.queued = false;
        group.running = std::mem::take(&mut group.pending);
        group.running.clone()
    }

    /// A group run of `query` ended; `at_head` per segment run. Segments fired meanwhile join
    /// the next group run if they are at the head, else run alone (in parallel with others).
    fn finished_group(&self, query: &str, at_head: &[(Segment, bool)]) {
        let mut guard = self.links();
        let links = &mut *guard;
        for &(segment, head) in at_head {
            let key = (query.to_string(), segment);
            if head {
                links.caught_up.insert(key);
            } else {
                links.caught_up.remove(&key);
            }
        }
        let Some(group) = links.groups.get_mut(query) else { return };
        group.running.clear();
        let mut alone = Vec::new();
        for segment in std::mem::take(&mut group.requested) {
            if links.caught_up.contains(&(query.to_string(), segment)) {
                if !group.pending.contains(&segment) {
                    group.pending.push(segment);
                }
            } else {
                alone.push(segment);
            }
        }
        let requeue = !group.pending.is_empty() && !group.queued;
        if requeue {
            group.queued = true;
        } else if group.pending.is_empty() && !group.queued {
            links.groups.remove(query);
        }
        for segment in &alone {
            links.segments.insert((query.to_string(), *segment), LinkState::Queued);
        }
        drop(guard);
        if requeue {
            let _ = self.send(Job::Group(query.to_string()));
        }
        for segment in alone {
            let _ = self.send(Job::Process(ProcessEvent { query: query.to_string(), segment }));
        }
    }

    /// Forget a released query's caught-up segments.
    fn forget(&self, query: &str) {
        self.links().caught_up.retain(|(q, _)| q != query);
    }

    /// Links queued or running (for tests and logs): segments alone, plus one per group.
    pub fn pending(&self) -> usize {
        let links = self.links();
        links.segments.len() + links.groups.len()
    }
}

#[async_trait]
impl Chain for DevChain {
    async fn fire(&self, link: Link) -> PortResult<()> {
        match link {
            Link::Process(event) => self.fire_process(event),
            Link::Push(event) => self.send(Job::Push(event)),
        }
    }
}

/// The adapters every in-process invocation shares.
pub struct Core {
    /// The log.
    pub log: Arc<dyn Log>,
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// The chain.
    pub chain: DevChain,
    /// Outgoing HTTP (webhooks).
    pub http: ReqwestHttp,
    /// Time.
    pub clock: SystemClock,
    /// Backoff waits.
    pub timer: TokioTimer,
    /// The handlers' knobs.
    pub config: ActionConfig,
    /// Subscriber wake-ups (shared with [`crate::stream::Streams`]).
    pub hub: Arc<Hub>,
    activations: AtomicU64,
    lanes: Mutex<HashMap<String, mpsc::UnboundedSender<PushEvent>>>,
}

impl Core {
    /// Assemble the core; returns the queue the scheduler drains.
    pub fn new(
        log: Arc<dyn Log>,
        store: Arc<dyn StateStore>,
        http: ReqwestHttp,
        config: ActionConfig,
    ) -> (Core, mpsc::UnboundedReceiver<Job>) {
        let (chain, rx) = DevChain::new();
        let core = Core {
            log,
            store,
            chain,
            http,
            clock: SystemClock,
            timer: TokioTimer,
            config,
            hub: Arc::new(Hub::default()),
            activations: AtomicU64::new(0),
            lanes: Mutex::new(HashMap::new()),
        };
        (core, rx)
    }

    /// The handlers' view of the adapters.
    pub fn env(&self) -> Env<'_> {
        Env {
            log: &*self.log,
            store: &*self.store,
            chain: &self.chain,
            http: &self.http,
            clock: &self.clock,
            timer: &self.timer,
            config: &self.config,
        }
    }

    /// A fresh activation context with the standard deadline.
    pub fn context(&self) -> Context {
        let n = self.activations.fetch_add(1, Ordering::Relaxed);
        Context {
            activation_id: format!("dev-{n}"),
            deadline_ms: self.clock.now_ms() + ACTIVATION_MS,
        }
    }
}

/// Run one process link.
async fn run_process(core: Arc<Core>, event: ProcessEvent) {
    let key = (event.query.clone(), event.segment);
    core.chain.started(&key);
    let ctx = core.context();
    let result = process(&core.env(), &ctx, event.clone()).await;
    core.chain.finished(&event, result.as_ref().is_ok_and(|o| o.committed && o.at_head));
    match result {
        Ok(out) => {
            if out.committed {
                core.hub.notify(&event.query);
            }
        }
        Err(ActionError::NotFound { .. }) => {
            core.chain.forget(&event.query);
            tracing::debug!(query = %event.query, "link of a released query dropped");
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(query = %event.query, segment = %event.segment.key(), error = %e, "process failed; retrying");
            let core = core.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = core.chain.fire_process(event);
            });
        }
        Err(e) => {
            // A query that failed for good (budget) says so in its result.
            tracing::warn!(query = %event.query, segment = %event.segment.key(), error = %e, "process failed");
            core.hub.notify(&event.query);
        }
    }
}

/// Run one group link: the waiting caught-up segments of `query`, in one invocation.
async fn run_group(core: Arc<Core>, query: String) {
    let segments = core.chain.started_group(&query);
    if segments.is_empty() {
        core.chain.finished_group(&query, &[]);
        return;
    }
    let ctx = core.context();
    let result = process_segments(&core.env(), &ctx, &query, &segments).await;
    let at_head: Vec<(Segment, bool)> = match &result {
        Ok(outputs) => {
            outputs.iter().map(|o: &ProcessOutput| (o.segment, o.committed && o.at_head)).collect()
        }
        Err(_) => segments.iter().map(|s| (*s, false)).collect(),
    };
    core.chain.finished_group(&query, &at_head);
    match result {
        Ok(outputs) => {
            if outputs.iter().any(|o| o.committed) {
                core.hub.notify(&query);
            }
        }
        Err(ActionError::NotFound { .. }) => {
            core.chain.forget(&query);
            tracing::debug!(query = %query, "links of a released query dropped");
        }
        Err(e) if e.is_retryable() => {
            tracing::warn!(query = %query, segments = segments.len(), error = %e, "process failed; retrying");
            let core = core.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                for segment in segments {
                    let _ = core.chain.fire_process(ProcessEvent { query: query.clone(), segment });
                }
            });
        }
        Err(e) => {
            tracing::warn!(query = %query, segments = segments.len(), error = %e, "process failed");
            core.hub.notify(&query);
        }
    }
}

/// Queue a push on its query's lane (deliveries of one query stay in order).
fn enqueue_push(core: &Arc<Core>, event: PushEvent) {
    let mut lanes = core.lanes.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = lanes.get(&event.query) {
        match tx.send(event) {
            Ok(()) => return,
            Err(mpsc::error::SendError(e)) => return spawn_lane(core, &mut lanes, e),
        }
    }
    spawn_lane(core, &mut lanes, event);
}

fn spawn_lane(
    core: &Arc<Core>,
    lanes: &mut HashMap<String, mpsc::UnboundedSender<PushEvent>>,
    event: PushEvent,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let query = event.query.clone();
    let _ = tx.send(event);
    lanes.insert(query.clone(), tx);
    let core = core.clone();
    tokio::spawn(async move {
        loop {
            let next = match rx.try_recv() {
                Ok(e) => Some(e),
                Err(_) => {
                    // Close the lane under the lock, so no push is queued on a dead lane.
                    let mut lanes = core.lanes.lock().unwrap_or_else(|e| e.into_inner());
                    match rx.try_recv() {
                        Ok(e) => Some(e),
                        Err(_) => {
                            lanes.remove(&query);
                            None
                        }
                    }
                }
            };
            let Some(event) = next else { return };
            match push(&core.env(), event).await {
                Ok(out) if out.failed > 0 => {
                    tracing::warn!(query = %query, failed = out.failed, "webhook deliveries failed")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(query = %query, error = %e, "push failed"),
            }
        }
    });
}

/// Scheduler knobs.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Process invocations at once.
    pub workers: usize,
    /// Tick period, ms.
    pub tick_ms: u64,
}

/// Start the scheduler: workers, push lanes, tick and wake-ups. Runs until the runtime stops.
pub fn run(
    core: Arc<Core>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    config: SchedulerConfig,
    appends: Option<broadcast::Receiver<(String, u32, i64)>>,
    wake_tx: mpsc::UnboundedSender<String>,
    mut wakes: mpsc::UnboundedReceiver<String>,
) {
    // Workers.
    let dispatch = core.clone();
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(config.workers.max(1)));
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Push(event) => enqueue_push(&dispatch, event),
                Job::Process(event) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else { return };
                    let core = dispatch.clone();
                    tokio::spawn(async move {
                        run_process(core, event).await;
                        drop(permit);
                    });
                }
                Job::Group(query) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else { return };
                    let core = dispatch.clone();
                    tokio::spawn(async move {
                        run_group(core, query).await;
                        drop(permit);
                    });
                }
            }
        }
    });
    // The periodic tick: re-fire dropped links, reclaim idle queries.
    let ticker = core.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(config.tick_ms.max(10)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = tick::tick(&ticker.env(), None).await {
                tracing::warn!(error = %e, "tick failed");
            }
        }
    });
    // Wake-ups on appends (the embedded log's notifications, and ingests through the API).
    if let Some(mut appends) = appends {
        let tx = wake_tx;
        tokio::spawn(async move {
            loop {
                match appends.recv().await {
                    Ok((topic, _, _)) => {
                        if tx.send(topic).is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
    let waker = core.clone();
    tokio::spawn(async move {
        while let Some(first) = wakes.recv().await {
            let started = tokio::time::Instant::now();
            let mut topics = HashSet::from([first]);
            while let Ok(t) = wakes.try_recv() {
                topics.insert(t);
            }
            for topic in topics {
                if let Err(e) = tick::tick(&waker.env(), Some(&topic)).await {
                    tracing::warn!(error = %e, %topic, "wake-up tick failed");
                }
            }
            // Coalesce the wake-ups of a burst of appends: at most one tick per
            // `WAKE_INTERVAL`, counted from the start of the last one, so an append arriving
            // after a quiet interval is picked up at once (counted from the end, every append
            // of a steady stream waited up to the whole interval).
            tokio::time::sleep_until(started + WAKE_INTERVAL).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(start: i64) -> ProcessEvent {
        ProcessEvent { query: "q_1".into(), segment: Segment { partition: 0, start, end: None } }
    }

    #[test]
    fn links_of_one_segment_are_deduplicated() {
        let (chain, mut rx) = DevChain::new();
        for _ in 0..5 {
            chain.fire_process(event(0)).expect("queued");
        }
        chain.fire_process(event(10)).expect("queued");
        assert_eq!(rx.try_recv(), Ok(Job::Process(event(0))));
        assert_eq!(rx.try_recv(), Ok(Job::Process(event(10))));
        assert!(rx.try_recv().is_err(), "one job per segment");
        // Fired while running: queued once, when the run ends.
        chain.started(&("q_1".to_string(), event(0).segment));
        chain.fire_process(event(0)).expect("noted");
        chain.fire_process(event(0)).expect("noted");
        assert!(rx.try_recv().is_err());
        chain.finished(&event(0), false);
        assert_eq!(rx.try_recv(), Ok(Job::Process(event(0))));
        assert!(rx.try_recv().is_err());
        chain.started(&("q_1".to_string(), event(0).segment));
        chain.finished(&event(0), false);
        assert!(rx.try_recv().is_err());
        assert_eq!(chain.pending(), 1, "only the other segment is still queued");
    }

    fn live(partition: u32) -> ProcessEvent {
        ProcessEvent { query: "q_1".into(), segment: Segment { partition, start: 0, end: None } }
    }

    #[test]
    fn caught_up_segments_of_a_query_run_together() {
        let (chain, mut rx) = DevChain::new();
        // Every partition runs alone until it has reached the head once.
        for p in 0..3 {
            chain.fire_process(live(p)).expect("queued");
            assert_eq!(rx.try_recv(), Ok(Job::Process(live(p))));
            chain.started(&("q_1".to_string(), live(p).segment));
            chain.finished(&live(p), true);
        }
        assert!(rx.try_recv().is_err());
        assert_eq!(chain.pending(), 0);
        // The next wake-up of all three: one group job, once.
        for _ in 0..2 {
            for p in 0..3 {
                chain.fire_process(live(p)).expect("queued");
            }
        }
        assert_eq!(rx.try_recv(), Ok(Job::Group("q_1".into())));
        assert!(rx.try_recv().is_err(), "one job per query");
        let segments = chain.started_group("q_1");
        assert_eq!(segments, vec![live(0).segment, live(1).segment, live(2).segment]);
        // Fired during the run: partition 0 is behind (it goes alone), partition 1 caught up
        // (next group run); nothing runs twice at once.
        chain.fire_process(live(0)).expect("noted");
        chain.fire_process(live(1)).expect("noted");
        assert!(rx.try_recv().is_err());
        chain.finished_group(
            "q_1",
            &[(live(0).segment, false), (live(1).segment, true), (live(2).segment, true)],
        );
        let mut jobs = vec![rx.try_recv().expect("job"), rx.try_recv().expect("job")];
        jobs.sort_by_key(|j| format!("{j:?}"));
        assert_eq!(jobs, vec![Job::Group("q_1".into()), Job::Process(live(0))]);
        assert!(rx.try_recv().is_err());
        assert_eq!(chain.started_group("q_1"), vec![live(1).segment]);
        chain.finished_group("q_1", &[(live(1).segment, true)]);
        assert!(rx.try_recv().is_err());
        assert_eq!(chain.pending(), 1, "partition 0 is still queued alone");
    }
}
