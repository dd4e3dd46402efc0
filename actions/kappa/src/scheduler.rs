//! OpenWhisk's triggers and rules, in process.
//!
//! - [`DevChain`] is the `Chain` port: a fired process link joins a *group*, and one
//!   [`Job::Group`] advances every waiting member of a group in one invocation
//!   ([`process_group`]: one read of each batch and one scan of each record for all of them,
//!   each member's checkpoint committed alone by its own compare-and-set). Groups are:
//!   - [`GroupKey::Live`]: the caught-up tails (their last run reached the head; a query's
//!     open segments, one member: `Segment::TAIL`) of the queries of a topic, in one group
//!     per core. An append wakes them all, and each group reads and parses the new records
//!     once, however many distinct queries tail the topic;
//!   - [`GroupKey::Replay`]: the segments still replaying, by topic, partition and end.
//!     Queries registered together get the same segments, and a query registered during
//!     another's replay gets a segment starting where that replay is and ending where it ends
//!     (`query::create`), so they replay as one convoy, while the segments of one query
//!     (different ends) still run in parallel on the workers. A tail not yet at its head
//!     (a query's first run, or one far behind) is in the topic's replay group of tails.
//! - Links are deduplicated per `(query, segment)`: a member already waiting is not added
//!   again, and one fired while its group runs joins the group it belongs to then (live or
//!   replay), when that run ends. So a hot query never floods the queue and a segment never
//!   runs twice at once (the CAS would make that harmless, only wasteful).
//! - [`run`] starts a bounded pool of workers for group jobs (each invocation gets a 60 s
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
use kappa_actions::group::process_group;
use kappa_actions::process::{ProcessEvent, ProcessOutput};
use kappa_actions::push::{PushEvent, push};
use kappa_actions::warm::WarmStates;
use kappa_actions::{ActionConfig, ActionError, Context, Env, tick};
use kappa_core::ports::{
    Chain, Clock, Link, PortError, PortResult, Segment, StateStore, partition_for_key,
};
use kappa_runtime::clock::{SystemClock, TokioTimer};
use kappa_runtime::http::ReqwestHttp;
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::backend::Log;
use kappa_push::hub::Hub;

/// Shortest time between two wake-up ticks (appends in between are picked up together).
const WAKE_INTERVAL: Duration = Duration::from_millis(20);

/// Live runs may take at most one part in this many of the time between wake-ups, as long as
/// [`WAKE_LATENCY`] allows.
///
/// While the latency allows, this share is what many live queries cost, whatever one run
/// costs: a cheaper run only brings the next wake-up sooner. At 3, 100 distinct desk queries
/// on one core took a third of it (3.6–4.2× one query's CPU, #14); at 8 they take 2.8–3.5×,
/// and their produce → delta p99 stayed 73–76 ms (BENCHMARKS.md, #14), since with runs of a
/// few ms the latency cap decides first.
const WAKE_DUTY: u32 = 8;

/// What a record may wait for its wake-up and then its live run, before anything else: the
/// push promise is a delta within 100 ms (p99) of the produce, and the push itself needs the rest.
const WAKE_LATENCY: Duration = Duration::from_millis(60);

/// The time between two wake-up ticks after live runs that took `runs` (the shards of a
/// wake-up run at once). Each live query pays a fixed cost per wake-up (its checkpoints'
/// commit, its refresh), so with many of them the wake-ups are spaced out to keep those costs
/// to a share of the time, counted in run time summed over the shards (the CPU they take), and
/// each wake-up carries more records; but only as far as a record's wait plus the longest run
/// stay within [`WAKE_LATENCY`]. Spaced by the duty alone, 100 distinct queries whose results
/// change with every record waited ~90 ms for their wake-up and missed the push promise
/// (p99 212–258 ms). When runs alone take longer than that, they follow each other: the
/// latency is then the runs', and spacing them would only add to it (one wake-up per run: a
/// tick reads every query's positions). With few queries, appends are picked up within
/// [`WAKE_INTERVAL`].
fn wake_interval(runs: LiveRuns) -> Duration {
    let (busy, longest) =
        (Duration::from_micros(runs.busy_us), Duration::from_micros(runs.longest_us));
    (busy * WAKE_DUTY).min(WAKE_LATENCY.saturating_sub(longest)).max(longest).max(WAKE_INTERVAL)
}

/// The live runs that ended since the last wake-up looked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct LiveRuns {
    /// Their run times summed, µs.
    busy_us: u64,
    /// The longest, µs.
    longest_us: u64,
}

/// What [`wake_interval`] is computed from: the live runs since it last looked, or the ones it
/// saw then when none ended since (a run longer than the interval).
#[derive(Debug, Default)]
struct LiveRunTimes {
    since: LiveRuns,
    last: LiveRuns,
}

impl LiveRunTimes {
    fn ended(&mut self, took_us: u64) {
        self.since.busy_us = self.since.busy_us.saturating_add(took_us);
        self.since.longest_us = self.since.longest_us.max(took_us);
    }

    fn take(&mut self) -> LiveRuns {
        if self.since != LiveRuns::default() {
            self.last = std::mem::take(&mut self.since);
        }
        self.last
    }
}

/// The periodic tick may take at most one part in this many of the time.
const TICK_DUTY: u32 = 10;

/// The time between two periodic ticks after one that took `took`: `period`, or longer when
/// ticks are long. A tick looks at every registered query, and with 10,000 of them in Redis
/// one took longer than the period, so ticks ran back to back and idle queries kept a core
/// busy; spaced out, the safety net is slower but idle queries cost at most a tenth of one.
fn tick_interval(period: Duration, took: Duration) -> Duration {
    period.max(took * TICK_DUTY)
}

/// Deadline of one in-process invocation, like an OpenWhisk activation's.
pub const ACTIVATION_MS: i64 = 60_000;

/// Which links run together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupKey {
    /// The caught-up tails of the queries of a topic in one shard (by query), so a query is
    /// refreshed once per run; the shards (one per core) run in parallel, each reading and
    /// scanning the new records once.
    Live {
        /// The topic.
        topic: String,
        /// The query's shard, `0..live_shards` ([`shard_of`]).
        shard: u32,
    },
    /// The segments still replaying of a topic, per partition and end: the segments of
    /// queries registered together, and the part a query registered later replays with the
    /// one ahead of it (see `query::create`).
    Replay {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Where the segments end (`None`: at the head).
        end: Option<i64>,
    },
}

/// A queued link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Advance the waiting members of a group together.
    Group(GroupKey),
    /// Deliver a version to webhooks.
    Push(PushEvent),
}

type Member = (String, Segment);

/// The members of one group.
#[derive(Debug, Default)]
struct Group {
    /// A [`Job::Group`] is in the queue.
    queued: bool,
    /// Waiting for the next run.
    pending: Vec<ProcessEvent>,
    /// In the current run.
    running: Vec<ProcessEvent>,
}

#[derive(Debug, Default)]
struct Links {
    /// Live groups per topic (one per core: [`GroupKey::Live`]).
    live_shards: u32,
    groups: HashMap<GroupKey, Group>,
    /// Every member waiting or running, and its group.
    placed: HashMap<Member, GroupKey>,
    /// Members in a run now (a set: a tick fires thousands of members at once).
    running: HashSet<Member>,
    /// Members fired while their group runs: placed when the run ends.
    requested: HashSet<Member>,
    caught_up: HashSet<Member>,
    /// The topic of each query seen (to key its groups).
    topics: HashMap<String, String>,
}

/// The live shard of `query`, out of `shards`.
fn shard_of(query: &str, shards: u32) -> u32 {
    partition_for_key(query.as_bytes(), shards.max(1))
}

impl Links {
    fn new(live_shards: u32) -> Links {
        Links { live_shards, ..Links::default() }
    }

    fn key_of(&self, event: &ProcessEvent) -> GroupKey {
        let topic = self.topics.get(&event.query).cloned().unwrap_or_default();
        if self.caught_up.contains(&(event.query.clone(), event.segment)) {
            GroupKey::Live { topic, shard: shard_of(&event.query, self.live_shards) }
        } else {
            GroupKey::Replay { topic, partition: event.segment.partition, end: event.segment.end }
        }
    }

    /// Add `event` to its group's next run; returns the group when a job must be queued.
    fn place(&mut self, event: ProcessEvent) -> Option<GroupKey> {
        let key = self.key_of(&event);
        self.placed.insert((event.query.clone(), event.segment), key.clone());
        let group = self.groups.entry(key.clone()).or_default();
        group.pending.push(event);
        let queue = !group.queued && group.running.is_empty();
        group.queued |= queue;
        queue.then_some(key)
    }
}

/// The `Chain` port of `kappa dev`.
pub struct DevChain {
    tx: mpsc::UnboundedSender<Job>,
    links: Mutex<Links>,
    /// Where a query's topic is read the first time one of its links is fired.
    store: Option<Arc<dyn StateStore>>,
}

impl std::fmt::Debug for DevChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevChain").field("links", &self.links).finish_non_exhaustive()
    }
}

impl DevChain {
    /// A chain and the queue its links go to; `store` tells each query's topic; the live
    /// queries of a topic run in `live_shards` groups.
    pub fn new(
        store: Option<Arc<dyn StateStore>>,
        live_shards: u32,
    ) -> (DevChain, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (DevChain { tx, links: Mutex::new(Links::new(live_shards)), store }, rx)
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, job: Job) -> PortResult<()> {
        self.tx.send(job).map_err(|_| PortError::transient("kappa-dev", "scheduler stopped"))
    }

    /// Note the topic of `query` (the groups of its links are keyed by it).
    pub fn learn_topic(&self, query: &str, topic: &str) {
        self.links().topics.insert(query.to_string(), topic.to_string());
    }

    /// Queue a process link in its group unless the same segment is already waiting; one
    /// fired while it runs is placed when the run ends.
    pub fn fire_process(&self, event: ProcessEvent) -> PortResult<()> {
        let member = (event.query.clone(), event.segment);
        let mut links = self.links();
        if links.placed.contains_key(&member) {
            if links.running.contains(&member) {
                links.requested.insert(member);
            }
            return Ok(());
        }
        let queue = links.place(event);
        drop(links);
        match queue {
            Some(key) => self.send(Job::Group(key)),
            None => Ok(()),
        }
    }

    /// The members a run of `key` advances.
    fn started(&self, key: &GroupKey) -> Vec<ProcessEvent> {
        let mut guard = self.links();
        let links = &mut *guard;
        let Some(group) = links.groups.get_mut(key) else { return Vec::new() };
        group.queued = false;
        group.running = std::mem::take(&mut group.pending);
        links.running.extend(group.running.iter().map(|e| (e.query.clone(), e.segment)));
        group.running.clone()
    }

    /// A run of `key` ended; `at_head` per member run. Members fired meanwhile join their
    /// group's next run: the live one if they reached the head, their replay group if not.
    fn finished(&self, key: &GroupKey, at_head: &[(ProcessEvent, bool)]) {
        let mut guard = self.links();
        let links = &mut *guard;
        for (event, head) in at_head {
            let member = (event.query.clone(), event.segment);
            if *head {
                links.caught_up.insert(member);
            } else {
                links.caught_up.remove(&member);
            }
        }
        let ran =
            links.groups.get_mut(key).map(|g| std::mem::take(&mut g.running)).unwrap_or_default();
        let mut queue = Vec::new();
        for event in ran {
            let member = (event.query.clone(), event.segment);
            links.placed.remove(&member);
            links.running.remove(&member);
            if links.requested.remove(&member) {
                queue.extend(links.place(event));
            }
        }
        if let Some(group) = links.groups.get_mut(key) {
            if !group.pending.is_empty() && !group.queued {
                group.queued = true;
                queue.push(key.clone());
            } else if group.pending.is_empty() && !group.queued {
                links.groups.remove(key);
            }
        }
        drop(guard);
        for key in queue {
            let _ = self.send(Job::Group(key));
        }
    }

    async fn fire_member(&self, event: ProcessEvent) -> PortResult<()> {
        let known = self.links().topics.contains_key(&event.query);
        if let (false, Some(store)) = (known, &self.store)
            && let Some(query) = store.query(&event.query).await?
        {
            self.learn_topic(&event.query, query.topic.as_str());
        }
        self.fire_process(event)
    }

    /// Forget a released query.
    fn forget(&self, query: &str) {
        let mut links = self.links();
        links.caught_up.retain(|(q, _)| q != query);
        links.topics.remove(query);
    }

    /// Groups queued or running (for tests and logs).
    pub fn pending(&self) -> usize {
        self.links().groups.len()
    }
}

#[async_trait]
impl Chain for DevChain {
    async fn fire(&self, link: Link) -> PortResult<()> {
        match link {
            Link::Process(event) => self.fire_member(event).await,
            // Members of a group link join the groups of this scheduler, as any link does.
            Link::Group(group) => {
                for event in group.members {
                    self.fire_member(event).await?;
                }
                Ok(())
            }
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
    /// Decoded states kept between invocations.
    pub warm: WarmStates,
    /// Subscriber wake-ups (shared with [`kappa_push::stream::Streams`]).
    pub hub: Arc<Hub>,
    /// How long the live group runs took (spaces the wake-ups: [`wake_interval`]).
    live_runs: Mutex<LiveRunTimes>,
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
        live_shards: u32,
    ) -> (Core, mpsc::UnboundedReceiver<Job>) {
        let (chain, rx) = DevChain::new(Some(store.clone()), live_shards);
        let core = Core {
            log,
            store,
            chain,
            http,
            clock: SystemClock,
            timer: TokioTimer,
            warm: WarmStates::new(config.warm_state_bytes),
            config,
            hub: Arc::new(Hub::default()),
            live_runs: Mutex::new(LiveRunTimes::default()),
            activations: AtomicU64::new(0),
            lanes: Mutex::new(HashMap::new()),
        };
        (core, rx)
    }

    /// The handlers' view of the adapters.
    pub fn env(&self) -> Env<'_> {
        Env {
            log: &*self.log,
            writer: &*self.log,
            store: &*self.store,
            chain: &self.chain,
            http: &self.http,
            clock: &self.clock,
            timer: &self.timer,
            config: &self.config,
            warm: &self.warm,
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

/// Run one group job: its waiting members, in one invocation.
async fn run_group(core: Arc<Core>, key: GroupKey) {
    let members = core.chain.started(&key);
    if members.is_empty() {
        core.chain.finished(&key, &[]);
        return;
    }
    let ctx = core.context();
    let started = tokio::time::Instant::now();
    let result = process_group(&core.env(), &ctx, &members).await;
    let took = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
    if matches!(key, GroupKey::Live { .. }) {
        core.live_runs.lock().unwrap_or_else(|e| e.into_inner()).ended(took);
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let records: u64 = result.iter().flatten().flatten().map(|o| o.records).sum();
        tracing::debug!(?key, members = members.len(), records, took_us = took, "group run");
    }
    let at_head: Vec<(ProcessEvent, bool)> = match &result {
        Ok(outputs) => members
            .iter()
            .zip(outputs)
            .map(|(m, o)| {
                (m.clone(), o.as_ref().is_ok_and(|o: &ProcessOutput| o.committed && o.at_head))
            })
            .collect(),
        Err(_) => members.iter().map(|m| (m.clone(), false)).collect(),
    };
    core.chain.finished(&key, &at_head);
    let outcomes: Vec<(ProcessEvent, Result<bool, ActionError>)> = match result {
        Ok(outputs) => {
            members.into_iter().zip(outputs).map(|(m, o)| (m, o.map(|o| o.committed))).collect()
        }
        Err(e) => members.into_iter().map(|m| (m, Err(e.clone()))).collect(),
    };
    let mut retry = Vec::new();
    let mut notified = HashSet::new();
    for (member, outcome) in outcomes {
        match outcome {
            Ok(committed) => {
                if committed && notified.insert(member.query.clone()) {
                    core.hub.notify(&member.query);
                }
            }
            Err(ActionError::NotFound { .. }) => {
                core.chain.forget(&member.query);
                tracing::debug!(query = %member.query, "link of a released query dropped");
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(query = %member.query, segment = %member.segment.key(), error = %e, "process failed; retrying");
                retry.push(member);
            }
            Err(e) => {
                // A query that failed for good (budget) says so in its result.
                tracing::warn!(query = %member.query, segment = %member.segment.key(), error = %e, "process failed");
                if notified.insert(member.query.clone()) {
                    core.hub.notify(&member.query);
                }
            }
        }
    }
    if !retry.is_empty() {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for member in retry {
                let _ = core.chain.fire_process(member);
            }
        });
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
                Job::Group(key) => {
                    let Ok(permit) = permits.clone().acquire_owned().await else { return };
                    let core = dispatch.clone();
                    tokio::spawn(async move {
                        run_group(core, key).await;
                        drop(permit);
                    });
                }
            }
        }
    });
    // The periodic tick: re-fire dropped links, reclaim idle queries.
    let ticker = core.clone();
    tokio::spawn(async move {
        let period = Duration::from_millis(config.tick_ms.max(10));
        loop {
            let started = tokio::time::Instant::now();
            if let Err(e) = tick::tick(&ticker.env(), None).await {
                tracing::warn!(error = %e, "tick failed");
            }
            tokio::time::sleep_until(started + tick_interval(period, started.elapsed())).await;
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
            // of a steady stream waited up to the whole interval), longer when live runs are
            // long (`wake_interval`).
            let runs = waker.live_runs.lock().unwrap_or_else(|e| e.into_inner()).take();
            tokio::time::sleep_until(started + wake_interval(runs)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_spaced_out_when_they_are_long() {
        let second = Duration::from_secs(1);
        assert_eq!(tick_interval(second, Duration::from_millis(3)), second, "the period");
        assert_eq!(tick_interval(second, Duration::from_millis(100)), second);
        assert_eq!(tick_interval(second, Duration::from_millis(1500)), Duration::from_secs(15));
    }

    #[test]
    fn wake_ups_are_spaced_out_when_live_runs_are_long() {
        let ms = Duration::from_millis;
        let one = |run: u64| LiveRuns { busy_us: run * 1000, longest_us: run * 1000 };
        assert_eq!(wake_interval(LiveRuns::default()), WAKE_INTERVAL, "few queries: at once");
        assert_eq!(wake_interval(one(2)), WAKE_INTERVAL);
        assert_eq!(wake_interval(one(5)), ms(40), "runs take an eighth of the time");
        assert_eq!(wake_interval(one(7)), ms(53), "the latency cap decides first");
        assert_eq!(wake_interval(one(20)), ms(40), "a record's wait and run stay within 60 ms");
        assert_eq!(wake_interval(one(45)), ms(45), "longer runs follow each other");
        assert_eq!(wake_interval(one(2000)), Duration::from_secs(2));
        // Two shards of 2.5 ms at once: an eighth of the CPU, counted over both.
        let shards = LiveRuns { busy_us: 5_000, longest_us: 2_500 };
        assert_eq!(wake_interval(shards), ms(40));
    }

    #[test]
    fn wake_ups_see_the_runs_that_ended_since_they_last_looked() {
        let mut runs = LiveRunTimes::default();
        runs.ended(6_000);
        runs.ended(4_000);
        assert_eq!(runs.take(), LiveRuns { busy_us: 10_000, longest_us: 6_000 });
        // None ended since (a run longer than the interval): the last ones still tell.
        assert_eq!(runs.take(), LiveRuns { busy_us: 10_000, longest_us: 6_000 });
        runs.ended(2_000);
        assert_eq!(runs.take(), LiveRuns { busy_us: 2_000, longest_us: 2_000 });
    }

    fn event(query: &str, start: i64) -> ProcessEvent {
        ProcessEvent { query: query.into(), segment: Segment { partition: 0, start, end: None } }
    }

    fn bounded(query: &str, start: i64, end: i64) -> ProcessEvent {
        ProcessEvent {
            query: query.into(),
            segment: Segment { partition: 0, start, end: Some(end) },
        }
    }

    fn replay(query: &str, start: i64) -> GroupKey {
        let segment = event(query, start).segment;
        GroupKey::Replay { topic: "t".into(), partition: segment.partition, end: segment.end }
    }

    fn chain() -> (DevChain, mpsc::UnboundedReceiver<Job>) {
        let (chain, rx) = DevChain::new(None, 1);
        for q in ["q_1", "q_2", "q_3"] {
            chain.learn_topic(q, "t");
        }
        (chain, rx)
    }

    #[test]
    fn links_of_one_segment_are_deduplicated_and_queries_registered_together_replay_as_one() {
        let (chain, mut rx) = chain();
        for _ in 0..5 {
            chain.fire_process(event("q_1", 0)).expect("queued");
        }
        chain.fire_process(event("q_2", 0)).expect("queued");
        chain.fire_process(bounded("q_1", 0, 10)).expect("queued");
        assert_eq!(rx.try_recv(), Ok(Job::Group(replay("q_1", 0))));
        let key = GroupKey::Replay { topic: "t".into(), partition: 0, end: Some(10) };
        assert_eq!(rx.try_recv(), Ok(Job::Group(key)));
        assert!(rx.try_recv().is_err(), "one job per group");
        // The same segment of two queries: one convoy.
        assert_eq!(chain.started(&replay("q_1", 0)), vec![event("q_1", 0), event("q_2", 0)]);
        // Fired while running: placed once, when the run ends.
        chain.fire_process(event("q_1", 0)).expect("noted");
        chain.fire_process(event("q_1", 0)).expect("noted");
        assert!(rx.try_recv().is_err());
        chain.finished(&replay("q_1", 0), &[(event("q_1", 0), false), (event("q_2", 0), false)]);
        assert_eq!(rx.try_recv(), Ok(Job::Group(replay("q_1", 0))));
        assert!(rx.try_recv().is_err());
        assert_eq!(chain.started(&replay("q_1", 0)), vec![event("q_1", 0)]);
        chain.finished(&replay("q_1", 0), &[(event("q_1", 0), false)]);
        assert!(rx.try_recv().is_err());
        assert_eq!(chain.pending(), 1, "only the other segment is still queued");
    }

    fn live() -> GroupKey {
        GroupKey::Live { topic: "t".into(), shard: 0 }
    }

    #[test]
    fn caught_up_segments_of_every_query_of_a_topic_run_together() {
        let (chain, mut rx) = chain();
        // Each segment replays in its own group until it has reached the head once.
        for q in ["q_1", "q_2", "q_3"] {
            chain.fire_process(event(q, 0)).expect("queued");
        }
        assert_eq!(rx.try_recv(), Ok(Job::Group(replay("q_1", 0))));
        let members = chain.started(&replay("q_1", 0));
        assert_eq!(members.len(), 3);
        chain.finished(
            &replay("q_1", 0),
            &members.iter().map(|m| (m.clone(), true)).collect::<Vec<_>>(),
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(chain.pending(), 0);
        // The next wake-up of all three queries: one live job, once.
        for _ in 0..2 {
            for q in ["q_1", "q_2", "q_3"] {
                chain.fire_process(event(q, 0)).expect("queued");
            }
        }
        assert_eq!(rx.try_recv(), Ok(Job::Group(live())));
        assert!(rx.try_recv().is_err(), "one job per topic");
        assert_eq!(chain.started(&live()).len(), 3);
        // Fired during the run: q_1 fell behind (its replay group), q_2 caught up (the next
        // live run); nothing runs twice at once.
        chain.fire_process(event("q_1", 0)).expect("noted");
        chain.fire_process(event("q_2", 0)).expect("noted");
        assert!(rx.try_recv().is_err());
        chain.finished(
            &live(),
            &[(event("q_1", 0), false), (event("q_2", 0), true), (event("q_3", 0), true)],
        );
        let mut jobs = vec![rx.try_recv().expect("job"), rx.try_recv().expect("job")];
        jobs.sort_by_key(|j| format!("{j:?}"));
        assert_eq!(jobs, vec![Job::Group(live()), Job::Group(replay("q_1", 0))]);
        assert!(rx.try_recv().is_err());
        assert_eq!(chain.started(&live()), vec![event("q_2", 0)]);
        chain.finished(&live(), &[(event("q_2", 0), true)]);
        assert!(rx.try_recv().is_err());
        assert_eq!(chain.pending(), 1, "q_1's replay is still queued");
    }

    #[test]
    fn live_queries_run_in_one_group_per_shard_with_all_their_segments() {
        let (chain, mut rx) = DevChain::new(None, 2);
        let queries: Vec<String> = (0..8).map(|i| format!("q_{i}")).collect();
        let segments = |q: &str| -> Vec<ProcessEvent> {
            (0..4)
                .map(|p| ProcessEvent {
                    query: q.into(),
                    segment: Segment { partition: p, start: 0, end: None },
                })
                .collect()
        };
        for q in &queries {
            chain.learn_topic(q, "t");
            for e in segments(q) {
                chain.fire_process(e).expect("queued");
            }
        }
        // Every segment reached the head in its replay group.
        while let Ok(Job::Group(key)) = rx.try_recv() {
            let members = chain.started(&key);
            chain.finished(&key, &members.iter().map(|m| (m.clone(), true)).collect::<Vec<_>>());
        }
        for q in &queries {
            for e in segments(q) {
                chain.fire_process(e).expect("queued");
            }
        }
        let mut shards = Vec::new();
        while let Ok(Job::Group(key)) = rx.try_recv() {
            let GroupKey::Live { shard, .. } = key else { panic!("a live group: {key:?}") };
            let members = chain.started(&key);
            for q in members.iter().map(|m| &m.query) {
                assert_eq!(shard_of(q, 2), shard, "{q} in its shard");
                let own = members.iter().filter(|m| &m.query == q).count();
                assert_eq!(own, 4, "all of {q}'s segments in one group (one refresh)");
            }
            shards.push((shard, members.len()));
        }
        shards.sort_unstable();
        assert_eq!(shards.len(), 2, "one live group per shard: {shards:?}");
        assert_eq!(shards.iter().map(|(_, n)| n).sum::<usize>(), 32, "every segment once");
    }
}
