//! The process action: fold one batch of one segment, exactly once.
//!
//! Order of effects, which every failure analysis below relies on:
//! 1. load the segment's checkpoint `{next_offset, state}` (absent: the segment start, empty);
//! 2. read and fold records from `next_offset`, bounded by record count, bytes, the segment end,
//!    the head, and the activation deadline;
//! 3. **commit**: replace the checkpoint by compare-and-set on `next_offset` — the partial state
//!    and the offset it covers are written together, atomically;
//! 4. refresh the query's merged result (derived from all checkpoints) and publish the delta;
//!    then, while another round as long as this one fits in the activation's share
//!    ([`ActionConfig::fill_activation_percent`](crate::config::ActionConfig)), 1–4 again;
//! 5. fire the next link of the chain if the segment is not at its end or head.
//!
//! A crash before 3 commits nothing, and a retry redoes the same batch. A duplicate or
//! concurrent invocation of the same batch loses the CAS in 3 and stops without effects. A crash
//! after 3 loses at most the refresh (the next refresh recomputes it from the checkpoints) and
//! the next link (the safety-net tick re-fires it). So every record is counted exactly once.
//! A later round is a new batch from the checkpoint the previous round committed: the same
//! analysis holds round by round, and only a segment whose last round won its CAS gets a link.
//!
//! [`crate::group`] runs the same steps for several segments of any queries at once, each
//! committed alone: the same analysis holds per segment.

use kappa_core::ports::{Checkpoint, Link, Position, PushEvent, QueryRecord, ReadRequest, Segment};
use kappa_core::tail::{self, TailPosition};
use kappa_core::{PartialState, Plan};
use serde::{Deserialize, Serialize};

use crate::cost;
use crate::env::{Context, Env};
use crate::error::ActionError;
use crate::plans;
use crate::result::{self, Refreshed};
use crate::warm::Stamp;

pub use kappa_core::ports::ProcessEvent;

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessOutput {
    /// Query id.
    pub query: String,
    /// Segment.
    pub segment: Segment,
    /// Offset the batch started at.
    pub from: i64,
    /// Offset after the batch.
    pub next_offset: i64,
    /// Records passed over.
    pub records: u64,
    /// Whether this invocation's checkpoint commit won (false: a duplicate; nothing changed).
    pub committed: bool,
    /// Whether the last round's commit won: the segment's chain is this invocation's to go on.
    #[serde(skip)]
    pub(crate) committed_last: bool,
    /// Rounds of read, fold and commit this invocation ran for the segment.
    pub rounds: u32,
    /// Whether the segment reached its end or the head.
    pub at_head: bool,
    /// Whether the next link was fired.
    pub fired_next: bool,
    /// Result version after the refresh.
    pub version: u64,
    /// Why the batch stopped.
    pub stopped: Stop,
}

/// Why a batch stopped. Serialised (and logged) as the words the action's output always used
/// ([`Stop::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The segment's end offset was reached.
    SegmentEnd,
    /// The batch holds `batch_records` records.
    BatchRecords,
    /// The batch holds `batch_bytes` bytes.
    BatchBytes,
    /// The activation's deadline (minus the margin) was reached.
    Deadline,
    /// Folding went over the query's memory or CPU budget: the query failed.
    Budget,
    /// The read reached the head of the partition.
    Head,
    /// The query had failed earlier: nothing was read.
    Failed,
}

impl Stop {
    const ALL: [Stop; 7] = [
        Stop::SegmentEnd,
        Stop::BatchRecords,
        Stop::BatchBytes,
        Stop::Deadline,
        Stop::Budget,
        Stop::Head,
        Stop::Failed,
    ];

    /// The words of the output and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::SegmentEnd => "segment end",
            Stop::BatchRecords => "batch records",
            Stop::BatchBytes => "batch bytes",
            Stop::Deadline => "deadline",
            Stop::Budget => "budget",
            Stop::Head => "head",
            Stop::Failed => "failed",
        }
    }

    /// Whether the segment has nothing more to read now: the chain stops until new records.
    pub fn at_head(self) -> bool {
        matches!(self, Stop::SegmentEnd | Stop::Head)
    }
}

impl Serialize for Stop {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Stop, D::Error> {
        let words = String::deserialize(deserializer)?;
        Stop::ALL
            .into_iter()
            .find(|s| s.as_str() == words)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown stop reason [{words}]")))
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ProcessOutput {
    /// The output of a segment nothing was read for (yet); a failed query's is at its head.
    pub(crate) fn idle(query: &str, segment: Segment, stopped: Stop) -> ProcessOutput {
        ProcessOutput {
            query: query.to_string(),
            segment,
            from: 0,
            next_offset: 0,
            records: 0,
            committed: false,
            committed_last: false,
            rounds: 0,
            at_head: stopped == Stop::Failed,
            fired_next: false,
            version: 0,
            stopped,
        }
    }

    /// Add a later round of the same segment.
    fn add_round(&mut self, round: ProcessOutput) {
        self.next_offset = round.next_offset;
        self.records += round.records;
        self.committed |= round.committed;
        self.committed_last = round.committed;
        self.rounds += round.rounds;
        self.at_head = round.at_head;
        if round.committed {
            self.version = round.version;
        }
        self.stopped = round.stopped;
    }
}

/// Hooks for fault-injection tests: called between the steps of the loop; returning an error
/// aborts the invocation there, as a crash would.
pub trait Faults: Send + Sync {
    /// Called at `step` (`loaded`, `folded`, `committed`, `refreshed`).
    fn at(&self, step: &'static str) -> Result<(), ActionError>;
}

/// No faults.
pub struct NoFaults;

impl Faults for NoFaults {
    fn at(&self, _step: &'static str) -> Result<(), ActionError> {
        Ok(())
    }
}

/// Process one batch of one segment.
pub async fn process(
    env: &Env<'_>,
    ctx: &Context,
    event: ProcessEvent,
) -> Result<ProcessOutput, ActionError> {
    process_with_faults(env, ctx, event, &NoFaults).await
}

/// [`process`] with fault-injection hooks.
pub async fn process_with_faults(
    env: &Env<'_>,
    ctx: &Context,
    event: ProcessEvent,
    faults: &dyn Faults,
) -> Result<ProcessOutput, ActionError> {
    // A link of an open segment (fired before the tail was one unit) advances the tail.
    let event = match event.segment.end {
        None => ProcessEvent { segment: Segment::TAIL, ..event },
        Some(_) => event,
    };
    if event.segment.is_tail() {
        // A query's tail reads every partition into one state: the group's steps do that.
        let mut outputs =
            crate::group::process_group_with_faults(env, ctx, std::slice::from_ref(&event), faults)
                .await?;
        return outputs.swap_remove(0);
    }
    let mut outputs =
        process_segments_with_faults(env, ctx, &event.query, &[event.segment], faults).await?;
    Ok(outputs.swap_remove(0))
}

/// Steps 1–5 for `segments` of one query, in rounds: each checkpoint committed alone, one
/// refresh per round, the next links after the last. ([`process`] passes one segment;
/// several segments of any queries are advanced together by [`crate::group`].)
async fn process_segments_with_faults(
    env: &Env<'_>,
    ctx: &Context,
    id: &str,
    segments: &[Segment],
    faults: &dyn Faults,
) -> Result<Vec<ProcessOutput>, ActionError> {
    let query = env
        .store
        .query(id)
        .await?
        .ok_or_else(|| ActionError::NotFound { what: "query", name: id.to_string() })?;
    if let Some(segment) = segments.iter().find(|s| !query.segments.contains(s)) {
        return Err(ActionError::BadEvent(format!(
            "segment {} is not one of query {}",
            segment.key(),
            query.id
        )));
    }
    let plan = plans::plan_of(&query, &env.config.limits)?;
    let plan = &*plan;
    // Rounds of steps 1–4 fill the activation: after a round, another one runs when the time
    // it took still fits before `fill_until`, so a replay uses each activation (and OpenWhisk's
    // invocation rate) for most of its time limit, not for a fixed count of records, while
    // every round still commits and publishes its progress.
    let fill_until = env.config.fill_until(env.clock.now_ms(), ctx.deadline_ms);
    let mut outputs: Vec<ProcessOutput> = Vec::new();
    let mut active: Vec<Segment> = segments.to_vec();
    loop {
        let round_started = env.clock.now_ms();
        let round = process_round(env, ctx, &query, plan, &active, faults).await?;
        let go_on = round.iter().any(|o| o.committed && !o.at_head);
        for output in round {
            match outputs.iter_mut().find(|o| o.segment == output.segment) {
                Some(total) => total.add_round(output),
                None => outputs.push(output),
            }
        }
        let now = env.clock.now_ms();
        let another_fits = fill_until.is_some_and(|until| now + (now - round_started) < until);
        if !(go_on && another_fits) {
            break;
        }
        active =
            outputs.iter().filter(|o| o.committed_last && !o.at_head).map(|o| o.segment).collect();
    }

    // 5. Only after the last round's commit: fire the next link of each segment whose last
    //    round committed and is not done nor at the head. (A segment whose later round lost its
    //    compare-and-set is continued by the invocation that won it.)
    //    Replay joiners left on the partitions this replay read go on with it.
    let mut next = Vec::new();
    for output in outputs.iter_mut().filter(|o| o.committed_last && !o.at_head) {
        next.push(ProcessEvent { query: query.id.clone(), segment: output.segment });
        output.fired_next = true;
    }
    let read: Vec<(&str, &ProcessOutput)> =
        outputs.iter().map(|o| (query.topic.as_str(), o)).collect();
    for link in crate::group::next_links(env, next, &read).await? {
        env.chain.fire(link).await?;
    }
    for output in outputs.iter().filter(|o| o.committed) {
        tracing::debug!(query = %query.id, segment = %output.segment.key(), from = output.from, next = output.next_offset, records = output.records, stopped = %output.stopped, "batch processed");
    }
    // In the order asked.
    outputs.sort_by_key(|o| segments.iter().position(|s| *s == o.segment));
    Ok(outputs)
}

/// Steps 1–4 once for each of `segments`: load, fold, commit, then one refresh.
async fn process_round(
    env: &Env<'_>,
    ctx: &Context,
    query: &QueryRecord,
    plan: &Plan,
    segments: &[Segment],
    faults: &dyn Faults,
) -> Result<Vec<ProcessOutput>, ActionError> {
    // The result (for a failed query, and as the refresh's starting point) and every
    // segment's checkpoint, in one round trip, before any commit of ours.
    let (current, loaded) = futures_util::future::try_join(
        env.store.result(&query.id),
        futures_util::future::try_join_all(
            segments.iter().map(|s| env.store.checkpoint(&query.id, s)),
        ),
    )
    .await?;
    if let Some(error) = current.as_ref().and_then(|r| r.error.as_ref()) {
        // The query failed for good: its chains stop here.
        tracing::info!(query = %query.id, %error, "query failed earlier; chain stopped");
        return Ok(segments
            .iter()
            .map(|&segment| ProcessOutput::idle(&query.id, segment, Stop::Failed))
            .collect());
    }

    // 1.–3. for each segment: load, fold, commit. Concurrently, so that a store that commits
    //    the writes waiting together (the embedded one) makes them durable with one sync.
    let advances = segments
        .iter()
        .zip(loaded)
        .map(|(&s, loaded)| advance(env, ctx, query, plan, s, loaded, faults));
    let advanced = futures_util::future::join_all(advances)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let (mut outputs, fresh): (Vec<ProcessOutput>, Vec<Option<Fresh>>) =
        advanced.into_iter().unzip();
    if !outputs.iter().any(|o| o.committed) {
        return Ok(outputs);
    }

    // 4. Refresh the merged result and publish the delta. `current` was read before our
    //    commits, so the states they committed may stand in for their checkpoints (see `Known`).
    let own = outputs
        .iter()
        .zip(&fresh)
        .filter_map(|(o, f)| f.as_ref().map(|(cp, state)| (o.segment, cp, state)))
        .collect();
    let known = result::Known { current: Some(current), own, deltas: Vec::new() };
    let Refreshed { version, changed, .. } = result::refresh_known(env, query, plan, known).await?;
    for (output, fresh) in outputs.iter().zip(fresh) {
        if let Some((checkpoint, state)) = fresh {
            keep_warm(env, query, output.segment, &checkpoint, state);
        }
    }
    if changed {
        env.chain.fire(Link::Push(PushEvent { query: query.id.clone(), version })).await?;
    }
    faults.at("refreshed")?;
    for output in outputs.iter_mut().filter(|o| o.committed) {
        output.version = version;
    }
    Ok(outputs)
}

/// A checkpoint this invocation committed, with its state still in memory.
pub(crate) type Fresh = (Checkpoint, PartialState);

/// Steps 1–3 for one segment: from its loaded checkpoint, fold a batch, commit by
/// compare-and-set. Returns the committed checkpoint and state when this call wrote them.
async fn advance(
    env: &Env<'_>,
    ctx: &Context,
    query: &QueryRecord,
    plan: &Plan,
    segment: Segment,
    loaded: Option<Checkpoint>,
    faults: &dyn Faults,
) -> Result<(ProcessOutput, Option<Fresh>), ActionError> {
    // 1. Load (done by the caller, with the result).
    let (mut state, mut next, mut head, mut lost) = match &loaded {
        Some(cp) => {
            let state = committed_state(env, query, plan, segment, Some(cp))?;
            (state, cp.next_offset, cp.head, cp.lost)
        }
        None => (plan.empty_state(), segment.start, segment.start, 0),
    };
    faults.at("loaded")?;
    let from = next;
    let mut output = ProcessOutput {
        query: query.id.clone(),
        segment,
        from,
        next_offset: next,
        records: 0,
        committed: false,
        committed_last: false,
        rounds: 1,
        at_head: false,
        fired_next: false,
        version: 0,
        // Set when the loop below stops; an error before returns no output.
        stopped: Stop::Head,
    };

    // 2. Read and fold, within the batch bounds and before the deadline: into an empty state,
    //    merged into the loaded one once read, so what the batch added is at hand for the
    //    commit (a live segment's checkpoint appends it).
    let mut delta = plan.empty_delta_of(&state);
    let mut bytes = 0usize;
    let mut budget_error = None;
    let mut chunk = FoldChunk::alone();
    let stopped = loop {
        if segment.end.is_some_and(|e| next >= e) {
            break Stop::SegmentEnd;
        }
        if output.records as usize >= env.config.batch_records {
            break Stop::BatchRecords;
        }
        if bytes >= env.config.batch_bytes {
            break Stop::BatchBytes;
        }
        if env.clock.now_ms() >= ctx.deadline_ms - env.config.deadline_margin_ms {
            break Stop::Deadline;
        }
        let request = ReadRequest {
            from: next,
            end: segment.end,
            max_records: env
                .config
                .read_records
                .min(env.config.batch_records - output.records as usize)
                .max(1),
            max_bytes: env.config.batch_bytes - bytes,
        };
        let batch = env.log.read(&query.topic, segment.partition, request).await?;
        head = head.max(batch.high_watermark);
        lost += batch.lost;
        if batch.lost > 0 {
            tracing::warn!(query = %query.id, segment = %segment.key(), lost = batch.lost, "records deleted by retention before they were read");
        }
        let n = batch.records.len();
        bytes += batch.records.iter().map(|r| r.value.len()).sum::<usize>();
        // Fold the read in chunks timed by the clock: the CPU budget is judged, and the
        // executor gets a turn, after each chunk rather than after a whole read, so a query
        // costing milliseconds a record neither holds a worker for seconds before it is
        // stopped nor keeps a host running several tasks on one thread (kappa dev pinned to
        // one core, a Node.js action) from answering while a long batch replays.
        let mut at = 0;
        while at < n {
            let end = (at + chunk.len).min(n);
            let records = batch.records[at..end].iter().map(|r| r.as_record(segment.partition));
            let fold_started = env.clock.now_ms();
            let folded = plan.fold_all(&mut delta, records);
            let elapsed_ms = env.clock.now_ms() - fold_started;
            chunk.adapt(elapsed_ms);
            // The CPU budget, judged over the query's folding in this process (see `cost`).
            let within_budget =
                folded.and_then(|()| cost::judge(&query.id, plan, elapsed_ms, (end - at) as u64));
            if let Err(e) = within_budget {
                budget_error = Some(e);
                break;
            }
            at = end;
            env.timer.yield_now().await;
        }
        if budget_error.is_some() {
            break Stop::Budget;
        }
        output.records += n as u64;
        let advanced = batch.next_offset > next;
        next = batch.next_offset.max(next);
        if (n == 0 && !advanced) || (segment.end.is_none() && next >= batch.high_watermark) {
            // At the head this read saw: another read would only confirm it.
            break Stop::Head;
        }
    };
    output.stopped = stopped;
    if budget_error.is_none() {
        budget_error = plan.merge(&mut state, &delta).err();
    }
    if let Some(e) = budget_error {
        // The state outgrew its budget, folding costs more CPU a record than allowed (or a
        // record cannot be folded, e.g. a histogram bucket past what can be keyed): the query
        // fails for good, visibly, instead of exhausting the action's memory or a core, or
        // dropping records silently. Nothing is committed.
        tracing::error!(query = %query.id, error = %e, "query stopped: this batch is over its memory or CPU budget");
        result::fail(env, &query.id, e.to_json()).await?;
        return Err(e.into());
    }
    faults.at("folded")?;

    // 3. Commit: the partial state and the offset it covers, together, by compare-and-set.
    //    Only the invocation whose CAS wins may publish and fire the next link.
    let at = loaded.as_ref().map(Position::from);
    let (committed, fresh) = commit(
        env,
        query,
        plan,
        segment,
        at,
        state,
        Some(&delta),
        Advance::Segment(Reached { next, head, lost }),
    )
    .await?;
    output.committed = committed;
    output.committed_last = committed;
    output.next_offset = next;
    if !committed {
        return Ok((output, None));
    }
    faults.at("committed")?;

    output.at_head = stopped.at_head();
    Ok((output, fresh))
}

/// Where a segment's fold got to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reached {
    pub(crate) next: i64,
    pub(crate) head: i64,
    pub(crate) lost: u64,
}

/// A segment's checkpoint is written whole at least once per this many of its offsets. In
/// between, a batch whose delta `commit` is given, on a state of `append_checkpoints_from_bytes`
/// or more, is appended ([`kappa_core::ports::StateStore::compare_and_append_checkpoint`]): a
/// live wake-up writes what its few records added instead of encoding the whole state again (a
/// terms state over an event's users: thousands of keys, for tens of records), and a checkpoint
/// read cold decodes at most this many records' pieces.
pub(crate) const WHOLE_CHECKPOINT_EVERY: i64 = 1_024;

/// Where a unit of commit got to: one segment, or a query's tail ([`kappa_core::tail`]), each
/// of whose partitions got somewhere.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Advance<'a> {
    Segment(Reached),
    Tail(&'a [TailPosition]),
}

impl Advance<'_> {
    /// The checkpoint's offsets: the segment's, or the sums of the tail's.
    fn position(&self) -> Position {
        match self {
            Advance::Segment(Reached { next, head, lost }) => {
                Position { next_offset: *next, head: *head, lost: *lost }
            }
            Advance::Tail(positions) => tail::summed(positions),
        }
    }

    /// The checkpoint's state bytes for `state`.
    fn encode(&self, plan: &Plan, state: &PartialState) -> Vec<u8> {
        match self {
            Advance::Segment(_) => plan.encode(state),
            Advance::Tail(positions) => tail::encode(plan, positions, state),
        }
    }
}

/// Step 3 for one unit (a segment, or the tail): move its checkpoint, loaded as `loaded`, to
/// `state` and the offsets it covers, together, by compare-and-set on the loaded offset (the
/// tail's: the sum of its partitions', exact as `kappa_core::tail` says). `delta`, when given,
/// is what the records since `loaded` added (`state` is the loaded state merged with it):
/// within a stretch of [`WHOLE_CHECKPOINT_EVERY`] offsets, and for a state of at least
/// `append_checkpoints_from_bytes`, it is appended instead of `state` written whole, the same
/// compare-and-set. Returns whether this call's commit stands (false: another
/// invocation committed first, a duplicate) and the checkpoint with its state in memory when
/// this call wrote it (its offsets; its `state`, after an append, only the piece); nothing
/// new: no write, and the refresh reads the checkpoint like the others.
#[allow(clippy::too_many_arguments, reason = "the commit's parts, each named")]
pub(crate) async fn commit(
    env: &Env<'_>,
    query: &QueryRecord,
    plan: &Plan,
    segment: Segment,
    loaded: Option<Position>,
    state: PartialState,
    delta: Option<&PartialState>,
    advance: Advance<'_>,
) -> Result<(bool, Option<Fresh>), ActionError> {
    let Position { next_offset: next, head, lost } = advance.position();
    let unchanged =
        loaded.is_some_and(|c| c.next_offset == next && c.head == head && c.lost == lost);
    if unchanged {
        // Nothing to write: the state is the one committed at `loaded`, kept for next time.
        match advance {
            Advance::Segment(_) => {
                env.warm.put_segment(query, segment, Stamp::at(&segment, loaded), state)
            }
            Advance::Tail(positions) => env.warm.put_tail(query, positions.to_vec(), state),
        }
        return Ok((true, None));
    }
    let expected = loaded.map(|c| c.next_offset);
    // The state and the offset it covers go in one compare-and-set, whole or appended.
    let appends = |from: i64| {
        from.div_euclid(WHOLE_CHECKPOINT_EVERY) == next.div_euclid(WHOLE_CHECKPOINT_EVERY)
            && state.estimated_bytes() >= env.config.append_checkpoints_from_bytes
    };
    let (won, checkpoint) = match (expected, delta) {
        (Some(from), Some(delta)) if appends(from) => {
            let piece =
                Checkpoint { next_offset: next, state: advance.encode(plan, delta), head, lost };
            let won = env.store.compare_and_append_checkpoint(&query.id, &segment, from, &piece);
            (won.await?, piece)
        }
        _ => {
            let whole =
                Checkpoint { next_offset: next, state: advance.encode(plan, &state), head, lost };
            let won = env.store.compare_and_set_checkpoint(&query.id, &segment, expected, &whole);
            (won.await?, whole)
        }
    };
    if won {
        Ok((true, Some((checkpoint, state))))
    } else {
        tracing::info!(query = %query.id, segment = %segment.key(), from = ?expected, "duplicate batch: another invocation committed first");
        Ok((false, None))
    }
}

/// The state committed at `loaded`: kept warm by this process ([`crate::warm`]), or decoded.
pub(crate) fn committed_state(
    env: &Env<'_>,
    query: &QueryRecord,
    plan: &Plan,
    segment: Segment,
    loaded: Option<&Checkpoint>,
) -> Result<PartialState, ActionError> {
    let Some(checkpoint) = loaded else { return Ok(plan.empty_state()) };
    match env.warm.take_segment(query, segment, Stamp::of(&segment, loaded)) {
        Some(state) => Ok(state),
        None => Ok(plan.decode(&checkpoint.state)?),
    }
}

/// Keep a state this invocation committed (and no longer needs) for the next one.
pub(crate) fn keep_warm(
    env: &Env<'_>,
    query: &QueryRecord,
    segment: Segment,
    committed: &Checkpoint,
    state: PartialState,
) {
    env.warm.put_segment(query, segment, Stamp::of(&segment, Some(committed)), state);
}

/// How many records are folded between two readings of the clock: it doubles while chunks
/// take under a quarter of [`FoldChunk::TARGET_MS`] (a cheap query reads the clock once per
/// thousands of records; a group of a thousand members, each of whose folds of a chunk takes
/// tens of microseconds, pays its per-member costs once per tens of records, not per few) and
/// halves when one takes over it (a costly one is judged and yields within tens of
/// milliseconds), up to `most` records.
pub(crate) struct FoldChunk {
    pub(crate) len: usize,
    most: usize,
}

impl FoldChunk {
    const FIRST: usize = 16;
    const TARGET_MS: i64 = 10;

    /// For one query folding alone.
    pub(crate) fn alone() -> FoldChunk {
        FoldChunk { len: Self::FIRST, most: 4_096 }
    }

    /// For a group: every member folds the chunk's scanned values in turn, so the chunk stays
    /// small enough for them to stay in the cache (uncapped, the replay of 100 queries took
    /// 2.54 s against 1.93 s capped; BENCHMARKS.md).
    pub(crate) fn group() -> FoldChunk {
        FoldChunk { len: Self::FIRST, most: 128 }
    }

    pub(crate) fn adapt(&mut self, elapsed_ms: i64) {
        if elapsed_ms > Self::TARGET_MS {
            self.len = (self.len / 2).max(1);
        } else if elapsed_ms <= Self::TARGET_MS / 4 {
            self.len = (self.len * 2).min(self.most);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_keep_their_words_on_the_wire() {
        let words =
            ["segment end", "batch records", "batch bytes", "deadline", "budget", "head", "failed"];
        for (stop, words) in Stop::ALL.into_iter().zip(words) {
            assert_eq!(serde_json::to_value(stop).expect("serialises"), words);
            assert_eq!(serde_json::from_value::<Stop>(words.into()).expect("parses"), stop);
            assert_eq!(stop.to_string(), words);
        }
        assert!(serde_json::from_value::<Stop>("later".into()).is_err());
    }
}
