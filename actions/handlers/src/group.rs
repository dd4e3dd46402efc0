//! Many queries of one topic advanced together: one read of each batch, one scan of each
//! record, each query's fold and commit its own.
//!
//! A group is a list of links ([`ProcessEvent`]s) of any queries. Its members on one
//! partition of one topic share each read (from the lowest `next_offset` among them) and each
//! record's validation, path extraction and pre-filter pass ([`kappa_core::ScanGroup`]); each
//! member then folds only the records of its own range (`next_offset..end`) into its own
//! state. The order of effects is [`crate::process`]'s, member by member:
//! 1. load every member's checkpoint (and each query's result);
//! 2. read and fold, within the batch bounds and before the deadline;
//! 3. **commit** each member's checkpoint alone, by compare-and-set on the offset it loaded:
//!    the partial state and the offset it covers are written together, atomically;
//! 4. refresh each query that committed, and publish its delta;
//! 5. only then fire the next link of each member that committed and is not at the head.
//!
//! So the exactly-once analysis of `process.rs` holds per member: a member's records are
//! counted by the one invocation whose compare-and-set wins for it, whatever the others of
//! its group do. Grouping only changes who reads: records below a member's `next_offset` are
//! read for the others and never folded into it, so members join a group at any offset and
//! leave it (caught up, deleted, failed) without double counting. A member whose query fails
//! (memory or CPU budget) or is deleted gets its own error; the others go on.

use std::sync::Arc;

use kappa_core::ports::{
    Checkpoint, GroupEvent, Link, Position, PushEvent, QueryRecord, ReadRequest, ResultRecord,
    Segment,
};
use kappa_core::tail::{self, TailPosition};
use kappa_core::{PartialState, Plan, QueryError};
use serde_json::{Value, json};

use crate::cost;
use crate::env::{Context, Env};
use crate::error::ActionError;
use crate::plans;
use crate::process::{
    Advance, Faults, FoldChunk, Fresh, NoFaults, ProcessEvent, ProcessOutput, Reached, Stop,
    commit, keep_warm,
};
use crate::result::{self, Refreshed};
use crate::warm::Stamp;

/// The process action's event, either shape: one link ([`ProcessEvent`]) or a group of them
/// ([`GroupEvent`]). The result is [`ProcessOutput`], or `{"members": [...]}` with each
/// member's output or error.
pub async fn process_event(
    env: &Env<'_>,
    ctx: &Context,
    event: Value,
) -> Result<Value, ActionError> {
    if event.get("members").is_some() {
        let group: GroupEvent =
            serde_json::from_value(event).map_err(|e| ActionError::BadEvent(e.to_string()))?;
        let outputs = process_group(env, ctx, &group.members).await?;
        let members: Vec<Value> = outputs
            .into_iter()
            .map(|o| match o {
                Ok(output) => serde_json::to_value(output).unwrap_or_default(),
                Err(e) => e.to_json(),
            })
            .collect();
        return Ok(json!({ "members": members }));
    }
    let one: ProcessEvent =
        serde_json::from_value(event).map_err(|e| ActionError::BadEvent(e.to_string()))?;
    let output = crate::process::process(env, ctx, one).await?;
    Ok(serde_json::to_value(output).unwrap_or_default())
}

/// How long each step of a group run took (ms), for the debug log: where a live group's time
/// goes with thousands of members.
struct StepTimes {
    last: i64,
    marks: Vec<(&'static str, i64)>,
}

impl StepTimes {
    fn start(env: &Env<'_>) -> StepTimes {
        StepTimes { last: env.clock.now_ms(), marks: Vec::new() }
    }

    fn mark(&mut self, env: &Env<'_>, step: &'static str) {
        let now = env.clock.now_ms();
        self.marks.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for StepTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, ms)) in self.marks.iter().enumerate() {
            write!(f, "{}{step} {ms}", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

/// What became of each member of a group, in the order given.
pub type GroupOutputs = Vec<Result<ProcessOutput, ActionError>>;

/// Advance every member of `members` by one batch, members of one topic partition together.
///
/// The outer error is the invocation's (a read that failed, a fault): members committed
/// before it stand, the others are redone by their next link. Each member's own error (its
/// query deleted or over its budget) is its entry's.
pub async fn process_group(
    env: &Env<'_>,
    ctx: &Context,
    members: &[ProcessEvent],
) -> Result<GroupOutputs, ActionError> {
    process_group_with_faults(env, ctx, members, &NoFaults).await
}

/// A query of the group, loaded once however many of its segments are members.
struct Loaded {
    query: QueryRecord,
    plan: Arc<Plan>,
    current: Option<ResultRecord>,
    /// Where the query's segments among the members stood, in the members' order.
    positions: Vec<Option<Position>>,
}

/// One member on its way through the steps.
struct Lane<'q> {
    /// Position in the members given.
    index: usize,
    /// Position of its query in the group's sorted query ids.
    query_at: usize,
    loaded: &'q Loaded,
    segment: Segment,
    /// Where the segment's checkpoint stood when loaded (`None`: none yet).
    at: Option<Position>,
    /// The same, as the warm states' key.
    before: Stamp,
    /// The state committed at `at` (taken by the commit).
    base: Option<PartialState>,
    /// What this invocation folds, from the empty state: merged into `base` to commit, and
    /// into the query's warm merged state by the refresh.
    delta: PartialState,
    reached: Reached,
    output: ProcessOutput,
    /// Set when the member has nothing more to read in this invocation.
    done: Option<Stop>,
    /// The query's budget error: it fails, nothing is committed.
    failed: Option<QueryError>,
    /// Records folded in chunks that took under a millisecond, not yet charged to the
    /// query's meter: charged with the next chunk that took time, or at the end of the read
    /// (one lock of the meter per member and invocation, not per chunk).
    uncharged: u64,
    /// For a partition of a query's tail: the tail's place among the group's tails (it
    /// commits what this lane folded, with its other partitions').
    tail: Option<usize>,
}

impl Lane<'_> {
    fn reading(&self) -> bool {
        self.done.is_none() && self.failed.is_none()
    }
}

/// A query's tail among the members: one unit of commit over its partitions' lanes.
struct TailUnit<'q> {
    /// Position in the members given.
    index: usize,
    /// Position of its query in the group's sorted query ids.
    query_at: usize,
    loaded: &'q Loaded,
    /// Where its checkpoint stood when loaded, summed (`None`: none yet).
    at: Option<Position>,
    /// The same, as the warm states' key.
    before: Stamp,
    /// The state committed at `at` (taken by the commit).
    base: Option<PartialState>,
    /// What its lanes folded, merged ([`TailUnit::gather`]).
    delta: PartialState,
    /// Lanes gathered so far.
    gathered: usize,
    /// Where each partition stood when loaded, then where its lane got to.
    positions: Vec<TailPosition>,
    output: ProcessOutput,
    /// A lane's budget error: the query fails, nothing is committed.
    failed: Option<QueryError>,
}

impl TailUnit<'_> {
    /// Take in what one of its partitions' lanes did.
    fn gather(&mut self, lane: &mut Lane<'_>) {
        self.output.records += lane.output.records;
        if let Some(e) = lane.failed.take() {
            self.failed.get_or_insert(e);
        }
        // The tail is at its head when every partition is; else it stopped as one that is not.
        let stop = lane.done.unwrap_or(Stop::Head);
        if self.output.stopped.at_head() && !stop.at_head() {
            self.output.stopped = stop;
        }
        let partition = lane.segment.partition;
        if let Some(p) = self.positions.iter_mut().find(|p| p.partition == partition) {
            let Reached { next, head, lost } = lane.reached;
            *p = TailPosition { partition, next, head, lost };
        }
        if self.gathered == 0 {
            // Both start as the same empty delta: the first lane's is taken, not merged.
            std::mem::swap(&mut self.delta, &mut lane.delta);
        } else if let Err(e) = self.loaded.plan.merge(&mut self.delta, &lane.delta) {
            self.failed.get_or_insert(e);
        }
        self.gathered += 1;
    }
}

/// What became of one unit's commit: its own error or nothing, and what it wrote.
type Committed = (Result<(), ActionError>, Option<Fresh>);

/// A member's query went over its memory or CPU budget: it fails for good, visibly; nothing
/// is committed, and the others of the group go on.
async fn stop_failed(env: &Env<'_>, id: &str, e: QueryError) -> Result<Committed, ActionError> {
    tracing::error!(query = %id, error = %e, "query stopped: this batch is over its memory or CPU budget");
    result::fail(env, id, e.to_json()).await?;
    Ok((Err(e.into()), None))
}

/// [`process_group`] with fault-injection hooks (called once per step for the whole group).
pub async fn process_group_with_faults(
    env: &Env<'_>,
    ctx: &Context,
    members: &[ProcessEvent],
    faults: &dyn Faults,
) -> Result<GroupOutputs, ActionError> {
    let mut outputs: Vec<Option<Result<ProcessOutput, ActionError>>> =
        members.iter().map(|_| None).collect();
    let mut steps = StepTimes::start(env);

    // 1. Load each query once, then where each member's segment stands: positions only, one
    //    store call per query (against Redis one round trip for all its segments), since
    //    the states are in memory when warm; a member whose state is not reads its checkpoint.
    let mut ids: Vec<&str> = members.iter().map(|m| m.query.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let position_in_ids = |query: &str| ids.binary_search(&query).unwrap_or_default();
    let mut segments_of: Vec<Vec<Segment>> = vec![Vec::new(); ids.len()];
    let mut slot_of = Vec::with_capacity(members.len());
    for member in members {
        let segments = &mut segments_of[position_in_ids(&member.query)];
        slot_of.push(segments.len());
        segments.push(member.segment);
    }
    let queries: Vec<Result<Loaded, ActionError>> = futures_util::future::join_all(
        ids.iter().zip(&segments_of).map(|(id, segments)| load(env, id, segments)),
    )
    .await;
    let mut candidates = Vec::new();
    for (index, member) in members.iter().enumerate() {
        let position = position_in_ids(&member.query);
        let loaded = match &queries[position] {
            Ok(loaded) => loaded,
            Err(e) => {
                outputs[index] = Some(Err(e.clone()));
                continue;
            }
        };
        if !loaded.query.has_unit(&member.segment) {
            outputs[index] = Some(Err(ActionError::BadEvent(format!(
                "segment {} is not one of query {}",
                member.segment.key(),
                loaded.query.id
            ))));
            continue;
        }
        if loaded.current.as_ref().is_some_and(|r| r.error.is_some()) {
            // The query failed for good: its chains stop here.
            outputs[index] = Some(Ok(idle_output(member, Stop::Failed)));
            continue;
        }
        let at = loaded.positions[slot_of[index]];
        candidates.push(Candidate { index, query_at: position, member, loaded, at });
    }
    // The states kept warm at those positions; the others' checkpoints read together.
    let warm: Vec<Option<(PartialState, Vec<TailPosition>)>> = candidates
        .iter()
        .map(|c| match c.at {
            None => Some((c.loaded.plan.empty_state(), tail::starts(&c.loaded.query))),
            Some(_) if c.member.segment.is_tail() => {
                let stamp = Stamp::at(&c.member.segment, c.at);
                env.warm.take_tail(&c.loaded.query, stamp)
            }
            Some(_) => {
                let stamp = Stamp::at(&c.member.segment, c.at);
                let state = env.warm.take_segment(&c.loaded.query, c.member.segment, stamp);
                state.map(|state| (state, Vec::new()))
            }
        })
        .collect();
    let mut missed = futures_util::future::try_join_all(
        candidates
            .iter()
            .zip(&warm)
            .filter(|(_, state)| state.is_none())
            .map(|(c, _)| env.store.checkpoint(&c.member.query, &c.member.segment)),
    )
    .await?
    .into_iter();
    let mut lanes: Vec<Lane<'_>> = Vec::new();
    let mut tails: Vec<TailUnit<'_>> = Vec::new();
    for (Candidate { index, query_at, member, loaded, at }, state) in
        candidates.into_iter().zip(warm)
    {
        // A state read now comes with the position read with it (it may have moved since).
        let (base, positions, at) = match state {
            Some((state, positions)) => (state, positions, at),
            None => {
                let checkpoint = missed.next().flatten();
                let plan = &loaded.plan;
                let decoded = match (&checkpoint, member.segment.is_tail()) {
                    (Some(cp), true) => tail::decode(plan, &cp.state).map(|(p, s)| (s, p)),
                    (Some(cp), false) => plan.decode(&cp.state).map(|s| (s, Vec::new())),
                    (None, _) => Ok((plan.empty_state(), tail::starts(&loaded.query))),
                };
                match decoded {
                    Ok((state, positions)) => {
                        (state, positions, checkpoint.as_ref().map(Position::from))
                    }
                    Err(e) => {
                        outputs[index] = Some(Err(e.into()));
                        continue;
                    }
                }
            }
        };
        let mut output = idle_output(member, Stop::Head);
        output.rounds = 1;
        if member.segment.is_tail() {
            // One lane per partition, each folding into its own delta (the partitions are
            // read at once); the tail commits their merge as one unit (step 3).
            let unit = tails.len();
            for p in &positions {
                let Some(segment) =
                    loaded.query.open_segments().find(|s| s.partition == p.partition)
                else {
                    continue;
                };
                lanes.push(Lane {
                    index,
                    query_at,
                    loaded,
                    segment: *segment,
                    at: Some(p.position()),
                    before: Stamp::at(segment, Some(p.position())),
                    delta: loaded.plan.empty_delta_of(&base),
                    base: None,
                    reached: Reached { next: p.next, head: p.head, lost: p.lost },
                    output: idle_output(member, Stop::Head),
                    done: None,
                    failed: None,
                    uncharged: 0,
                    tail: Some(unit),
                });
            }
            output.from = tail::summed(&positions).next_offset;
            output.next_offset = output.from;
            tails.push(TailUnit {
                index,
                query_at,
                loaded,
                at,
                before: Stamp::at(&member.segment, at),
                delta: loaded.plan.empty_delta_of(&base),
                gathered: 0,
                base: Some(base),
                positions,
                output,
                failed: None,
            });
            continue;
        }
        let reached = match at {
            Some(at) => Reached { next: at.next_offset, head: at.head, lost: at.lost },
            None => Reached { next: member.segment.start, head: member.segment.start, lost: 0 },
        };
        output.from = reached.next;
        output.next_offset = reached.next;
        lanes.push(Lane {
            index,
            query_at,
            loaded,
            segment: member.segment,
            before: Stamp::at(&member.segment, at),
            at,
            delta: loaded.plan.empty_delta_of(&base),
            base: Some(base),
            reached,
            output,
            done: None,
            failed: None,
            uncharged: 0,
            tail: None,
        });
    }
    faults.at("loaded")?;
    steps.mark(env, "loaded");

    // 2. Read and fold: the members of one topic partition together, when they are within a
    //    batch of each other (one far behind reads alone rather than hold the others back).
    // Ordered through a sort of their indices, each lane then moved a few times: a lane is
    // large (its states, its output), and a wake-up of 1,000 queries on four partitions has
    // 4,000 of them, which the standard sort moved about and buffered by the megabyte.
    kappa_core::sort::stable_by(&mut lanes, |a, b| {
        (&a.loaded.query.topic, a.segment.partition, a.reached.next).cmp(&(
            &b.loaded.query.topic,
            b.segment.partition,
            b.reached.next,
        ))
    });
    let mut partitions: Vec<Vec<Lane<'_>>> = Vec::new();
    for lane in lanes {
        let joins = partitions.last().and_then(|p| p.last()).is_some_and(|last| {
            last.loaded.query.topic == lane.loaded.query.topic
                && last.segment.partition == lane.segment.partition
                && lane.reached.next - last.reached.next <= env.config.batch_records as i64
        });
        match partitions.last_mut() {
            Some(cluster) if joins => cluster.push(lane),
            _ => partitions.push(vec![lane]),
        }
    }
    futures_util::future::try_join_all(
        partitions.iter_mut().map(|lanes| read_together(env, ctx, lanes)),
    )
    .await?;
    faults.at("folded")?;
    steps.mark(env, "folded");

    // 3. Commit each member alone, by its own compare-and-set: a segment its checkpoint, a
    //    tail the merge of what its partitions' lanes folded, in one checkpoint.
    let mut lanes: Vec<Lane<'_>> = partitions.into_iter().flatten().collect();
    for lane in lanes.iter_mut() {
        let Some(unit) = lane.tail else { continue };
        tails[unit].gather(lane);
    }
    let commits = lanes.iter_mut().filter(|lane| lane.tail.is_none()).map(|lane| async move {
        if let Some(e) = lane.failed.take() {
            return stop_failed(env, &lane.loaded.query.id, e).await;
        }
        let Some(mut state) = lane.base.take() else {
            return Ok((Err(ActionError::BadEvent("member committed twice".into())), None));
        };
        if let Err(e) = lane.loaded.plan.merge(&mut state, &lane.delta) {
            return stop_failed(env, &lane.loaded.query.id, e).await;
        }
        let (committed, fresh) = commit(
            env,
            &lane.loaded.query,
            &lane.loaded.plan,
            lane.segment,
            lane.at,
            state,
            Some(&lane.delta),
            Advance::Segment(lane.reached),
        )
        .await?;
        lane.output.committed = committed;
        lane.output.committed_last = committed;
        lane.output.next_offset = lane.reached.next;
        lane.output.stopped = lane.done.unwrap_or(Stop::Head);
        lane.output.at_head = committed && lane.output.stopped.at_head();
        Ok((Ok(()), fresh))
    });
    let tail_commits = tails.iter_mut().map(|unit| async move {
        let (query, plan) = (&unit.loaded.query, &unit.loaded.plan);
        if let Some(e) = unit.failed.take() {
            return stop_failed(env, &query.id, e).await;
        }
        let Some(mut state) = unit.base.take() else {
            return Ok((Err(ActionError::BadEvent("tail committed twice".into())), None));
        };
        let delta = &unit.delta;
        if let Err(e) = plan.merge(&mut state, delta) {
            return stop_failed(env, &query.id, e).await;
        }
        // The tail's state and every partition's offset, in one compare-and-set.
        let advance = Advance::Tail(&unit.positions);
        let (committed, fresh) =
            commit(env, query, plan, Segment::TAIL, unit.at, state, Some(delta), advance).await?;
        unit.output.committed = committed;
        unit.output.committed_last = committed;
        unit.output.next_offset = tail::summed(&unit.positions).next_offset;
        unit.output.at_head = committed && unit.output.stopped.at_head();
        Ok((Ok(()), fresh))
    });
    let (committed, tails_committed): (Vec<Committed>, Vec<Committed>) =
        futures_util::future::try_join(
            futures_util::future::try_join_all(commits),
            futures_util::future::try_join_all(tail_commits),
        )
        .await?;
    faults.at("committed")?;
    steps.mark(env, "committed");

    // 4. Refresh each query that committed, from the states in memory.
    let mut lanes: Vec<Lane<'_>> = lanes.into_iter().filter(|l| l.tail.is_none()).collect();
    let mut fresh: Vec<Option<Fresh>> = Vec::with_capacity(lanes.len());
    for (lane, (outcome, committed)) in lanes.iter().zip(committed) {
        if let Err(e) = outcome {
            outputs[lane.index] = Some(Err(e));
        }
        fresh.push(committed);
    }
    let mut tails_fresh: Vec<Option<Fresh>> = Vec::with_capacity(tails.len());
    for (unit, (outcome, committed)) in tails.iter().zip(tails_committed) {
        if let Err(e) = outcome {
            outputs[unit.index] = Some(Err(e));
        }
        tails_fresh.push(committed);
    }
    // Each query's lanes and tail, by its position in `ids` (thousands of queries in a live
    // group).
    let mut lanes_of: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
    for (at, lane) in lanes.iter().enumerate() {
        lanes_of[lane.query_at].push(at);
    }
    let mut tail_of: Vec<Option<usize>> = vec![None; ids.len()];
    for (at, unit) in tails.iter().enumerate() {
        tail_of[unit.query_at] = Some(at);
    }
    let refreshes = ids.iter().enumerate().filter_map(|(position, _)| {
        let loaded = queries[position].as_ref().ok()?;
        // Every unit of the query run here: its segments' lanes, then its tail.
        let units = || {
            let segments = lanes_of[position]
                .iter()
                .map(|&at| (lanes[at].segment, lanes[at].before, &lanes[at].delta, &fresh[at]));
            let tail = tail_of[position].map(|at| {
                let unit = &tails[at];
                (Segment::TAIL, unit.before, &unit.delta, &tails_fresh[at])
            });
            segments.chain(tail)
        };
        let own: Vec<(Segment, &Checkpoint, &PartialState)> = units()
            .filter_map(|(segment, _, _, f)| f.as_ref().map(|(cp, state)| (segment, cp, state)))
            .collect();
        let deltas: Vec<(Segment, Stamp, &PartialState)> = units()
            .filter(|(_, _, _, f)| f.is_some())
            .map(|(segment, before, delta, _)| (segment, before, delta))
            .collect();
        let committed = lanes_of[position].iter().any(|&at| lanes[at].output.committed)
            || tail_of[position].is_some_and(|at| tails[at].output.committed);
        committed.then_some(async move { (position, refresh(env, loaded, own, deltas).await) })
    });
    let mut refreshed: Vec<Option<Result<u64, ActionError>>> = vec![None; ids.len()];
    for (position, outcome) in futures_util::future::join_all(refreshes).await {
        refreshed[position] = Some(outcome);
    }
    for (lane, fresh) in lanes.iter().zip(fresh) {
        if let Some((checkpoint, state)) = fresh {
            keep_warm(env, &lane.loaded.query, lane.segment, &checkpoint, state);
        }
    }
    for (unit, fresh) in tails.iter().zip(tails_fresh) {
        if let Some((_, state)) = fresh {
            env.warm.put_tail(&unit.loaded.query, unit.positions.clone(), state);
        }
    }
    faults.at("refreshed")?;
    steps.mark(env, "refreshed");

    // 5. Only after the commits and refreshes: the next link of the members that committed
    //    and are not at the head, together (they go on as a group).
    let mut next = Vec::new();
    let members_run = lanes
        .iter_mut()
        .map(|l| (l.index, l.query_at, &l.loaded.query.id, l.segment, &mut l.output))
        .chain(
            tails
                .iter_mut()
                .map(|t| (t.index, t.query_at, &t.loaded.query.id, Segment::TAIL, &mut t.output)),
        );
    for (index, query_at, id, segment, output) in members_run {
        if outputs[index].is_some() {
            continue;
        }
        match &refreshed[query_at] {
            Some(Err(e)) => {
                outputs[index] = Some(Err(e.clone()));
                continue;
            }
            Some(Ok(version)) if output.committed => output.version = *version,
            _ => {}
        }
        if output.committed && !output.at_head {
            next.push(ProcessEvent { query: id.clone(), segment });
            output.fired_next = true;
        }
        outputs[index] = Some(Ok(output.clone()));
    }
    let read: Vec<(&str, &ProcessOutput)> =
        lanes.iter().map(|l| (l.loaded.query.topic.as_str(), &l.output)).collect();
    for link in next_links(env, next, &read).await? {
        env.chain.fire(link).await?;
    }
    steps.mark(env, "fired");
    if members.len() > 1 {
        tracing::debug!(members = members.len(), steps = %steps, "group steps (ms)");
    }
    Ok(outputs
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(ActionError::BadEvent("member not processed".into()))))
        .collect())
}

/// The links that go on after an invocation: the members going on (`next`) and the replay
/// joiners left on the topic partitions where a closed segment replayed records in it (`ran`:
/// each segment's output, with its topic; [`kappa_core::ports::StateStore::add_joiner`]). A
/// tail does not ask (one store call less per partition and wake-up): a joiner is cut where
/// a replay is. A joiner goes in the link of the members of its partition, so from the
/// next invocation on it reads with the replay it joins; with none going on there (the replay
/// reached its head), it goes on alone, without waiting for the tick. Taking a joiner only
/// starts its chain: a joiner started twice (also by the tick) is counted once, by the
/// compare-and-set of its checkpoint.
pub(crate) async fn next_links(
    env: &Env<'_>,
    mut next: Vec<ProcessEvent>,
    ran: &[(&str, &ProcessOutput)],
) -> Result<Vec<Link>, ActionError> {
    let mut partitions: Vec<(&str, u32)> = ran
        .iter()
        .filter(|(_, o)| o.segment.end.is_some() && o.committed && o.records > 0)
        .map(|&(topic, o)| (topic, o.segment.partition))
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    for (topic, partition) in partitions {
        for joiner in env.store.take_joiners(topic, partition).await? {
            if next.contains(&joiner) {
                continue;
            }
            tracing::debug!(query = %joiner.query, segment = %joiner.segment.key(), "replay joiner taken along");
            // Beside the members of its partition, so that one link holds them.
            let at = next
                .iter()
                .rposition(|m| m.segment.partition == partition)
                .map_or(next.len(), |i| i + 1);
            next.insert(at, joiner);
        }
    }
    Ok(links_of(next, env.config.group_members))
}

/// Links advancing `members`: groups of at most `most` members, a member alone as a plain
/// process link.
pub fn links_of(members: Vec<ProcessEvent>, most: usize) -> Vec<Link> {
    members
        .chunks(most.max(1))
        .map(|chunk| match chunk {
            [one] => Link::Process(one.clone()),
            many => Link::Group(GroupEvent { members: many.to_vec() }),
        })
        .collect()
}

/// Load a query, its result and where `segments` (its members') stand.
async fn load(env: &Env<'_>, id: &str, segments: &[Segment]) -> Result<Loaded, ActionError> {
    let (query, current, positions) = futures_util::future::try_join3(
        env.store.query(id),
        env.store.result(id),
        env.store.positions(id, segments),
    )
    .await?;
    let query =
        query.ok_or_else(|| ActionError::NotFound { what: "query", name: id.to_string() })?;
    let plan = plans::plan_of(&query, &env.config.limits)?;
    Ok(Loaded { query, plan, current, positions })
}

async fn refresh(
    env: &Env<'_>,
    loaded: &Loaded,
    own: Vec<(Segment, &Checkpoint, &PartialState)>,
    deltas: Vec<(Segment, Stamp, &PartialState)>,
) -> Result<u64, ActionError> {
    // `current` was read before any commit of this invocation, so the states it committed may
    // stand in for their checkpoints (see `result::Known`).
    let known = result::Known { current: Some(loaded.current.clone()), own, deltas };
    let Refreshed { version, changed, .. } =
        result::refresh_known(env, &loaded.query, &loaded.plan, known).await?;
    if changed {
        let event = PushEvent { query: loaded.query.id.clone(), version };
        env.chain.fire(Link::Push(event)).await?;
    }
    Ok(version)
}

/// A member that may run: its query loaded and in good standing.
struct Candidate<'a> {
    /// Its place in the group's members (and outputs).
    index: usize,
    /// Its query's place in the group's distinct queries.
    query_at: usize,
    member: &'a ProcessEvent,
    loaded: &'a Loaded,
    /// Where its segment stood when loaded (`None`: no checkpoint yet).
    at: Option<Position>,
}

fn idle_output(member: &ProcessEvent, stopped: Stop) -> ProcessOutput {
    ProcessOutput::idle(&member.query, member.segment, stopped)
}

/// Step 2 for the members of one topic partition: read from the lowest offset any of them
/// needs, scan each chunk once, and let each member fold its own part of it.
async fn read_together(
    env: &Env<'_>,
    ctx: &Context,
    lanes: &mut [Lane<'_>],
) -> Result<(), ActionError> {
    let read = read_and_fold(env, ctx, lanes).await;
    // The records folded without time charged still count in each query's cost per record.
    for lane in lanes.iter_mut().filter(|l| l.uncharged > 0) {
        cost::charge(&lane.loaded.query.id, 0, std::mem::take(&mut lane.uncharged));
    }
    read
}

async fn read_and_fold(
    env: &Env<'_>,
    ctx: &Context,
    lanes: &mut [Lane<'_>],
) -> Result<(), ActionError> {
    let plans: Vec<&Plan> = lanes.iter().map(|l| &*l.loaded.plan).collect();
    let scan = plans::scan_group_of(&plans);
    let topic = lanes[0].loaded.query.topic.clone();
    let partition = lanes[0].segment.partition;
    let mut spare = Vec::new();
    let mut chunk = FoldChunk::group();
    let (mut records_read, mut bytes) = (0usize, 0usize);
    loop {
        if !lanes.iter().any(Lane::reading) {
            return Ok(());
        }
        let stop = if records_read >= env.config.batch_records {
            Some(Stop::BatchRecords)
        } else if bytes >= env.config.batch_bytes {
            Some(Stop::BatchBytes)
        } else if env.clock.now_ms() >= ctx.deadline_ms - env.config.deadline_margin_ms {
            Some(Stop::Deadline)
        } else {
            None
        };
        if let Some(stop) = stop {
            for lane in lanes.iter_mut().filter(|l| l.reading()) {
                lane.done = Some(stop);
            }
            return Ok(());
        }
        let reading = || lanes.iter().filter(|l| l.reading());
        let from = reading().map(|l| l.reached.next).min().unwrap_or_default();
        let end =
            reading().map(|l| l.segment.end).try_fold(i64::MIN, |e, end| end.map(|x| e.max(x)));
        let request = ReadRequest {
            from,
            end,
            max_records: env
                .config
                .read_records
                .min(env.config.batch_records - records_read)
                .max(1),
            max_bytes: env.config.batch_bytes - bytes,
        };
        let batch = env.log.read(&topic, partition, request).await?;
        let n = batch.records.len();
        records_read += n;
        bytes += batch.records.iter().map(|r| r.value.len()).sum::<usize>();
        let first = batch.records.first().map_or(batch.next_offset, |r| r.offset);
        for lane in lanes.iter_mut().filter(|l| l.reading()) {
            lane.reached.head = lane.reached.head.max(batch.high_watermark);
            if batch.lost > 0 && lane.reached.next < first {
                // Deleted by retention before this member read them.
                let lost = (first - lane.reached.next).min(batch.lost as i64);
                lane.reached.lost += lost as u64;
                tracing::warn!(query = %lane.loaded.query.id, segment = %lane.segment.key(), lost, "records deleted by retention before they were read");
            }
        }
        // Fold in chunks timed by the clock (see `process.rs`): each member's cost is
        // measured on its own, so its CPU budget is judged on what it costs, not the group.
        let mut at = 0;
        while at < n {
            let stop = (at + chunk.len).min(n);
            let records = batch.records[at..stop].iter().map(|r| r.as_record(partition));
            let chunk_started = env.clock.now_ms();
            let scanned = scan.scan(records, &mut spare);
            for (member, lane) in lanes.iter_mut().enumerate().filter(|(_, l)| l.reading()) {
                let range = scanned.positions(lane.reached.next, lane.segment.end);
                if range.is_empty() {
                    continue;
                }
                let count = range.len() as u64;
                let fold_started = env.clock.now_ms();
                let folded = scan.fold(&lane.loaded.plan, member, &mut lane.delta, &scanned, range);
                let elapsed_ms = env.clock.now_ms() - fold_started;
                let within_budget = folded.and_then(|()| {
                    if elapsed_ms == 0 {
                        // No time to charge: a window only closes on time charged.
                        lane.uncharged += count;
                        return Ok(());
                    }
                    let records = count + std::mem::take(&mut lane.uncharged);
                    cost::judge(&lane.loaded.query.id, &lane.loaded.plan, elapsed_ms, records)
                });
                match within_budget {
                    Ok(()) => lane.output.records += count,
                    Err(e) => {
                        lane.failed = Some(e);
                        lane.done = Some(Stop::Budget);
                    }
                }
            }
            chunk.adapt(env.clock.now_ms() - chunk_started);
            scanned.recycle(&mut spare);
            at = stop;
            env.timer.yield_now().await;
        }
        let advanced = batch.next_offset > from;
        for lane in lanes.iter_mut().filter(|l| l.reading()) {
            if batch.next_offset > lane.reached.next {
                lane.reached.next =
                    lane.segment.end.map_or(batch.next_offset, |e| batch.next_offset.min(e));
            }
            if lane.segment.end.is_some_and(|e| lane.reached.next >= e) {
                lane.done = Some(Stop::SegmentEnd);
            } else if lane.segment.end.is_none() && lane.reached.next >= batch.high_watermark {
                lane.done = Some(Stop::Head);
            } else if n == 0 && !advanced {
                // Nothing more where the group reads: at the head this read saw.
                lane.done = Some(Stop::Head);
            }
        }
    }
}
