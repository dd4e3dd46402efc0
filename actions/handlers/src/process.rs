//! The process action: fold one batch of one segment, exactly once.
//!
//! Order of effects, which every failure analysis below relies on:
//! 1. load the segment's checkpoint `{next_offset, state}` (absent: the segment start, empty);
//! 2. read and fold records from `next_offset`, bounded by record count, bytes, the segment end,
//!    the head, and the activation deadline;
//! 3. **commit**: replace the checkpoint by compare-and-set on `next_offset` — the partial state
//!    and the offset it covers are written together, atomically;
//! 4. refresh the query's merged result (derived from all checkpoints) and publish the delta;
//! 5. fire the next link of the chain if the segment is not at its end or head.
//!
//! A crash before 3 commits nothing, and a retry redoes the same batch. A duplicate or
//! concurrent invocation of the same batch loses the CAS in 3 and stops without effects. A crash
//! after 3 loses at most the refresh (the next refresh recomputes it from the checkpoints) and
//! the next link (the safety-net tick re-fires it). So every record is counted exactly once.
//!
//! [`process_segments`] runs 1–3 for several segments of one query, each committed alone, then
//! 4 and 5 once: the same analysis holds per segment.

use kappa_core::ports::{Checkpoint, Link, PushEvent, QueryRecord, ReadRequest, Segment};
use kappa_core::{PartialState, Plan, Record};
use serde::{Deserialize, Serialize};

use crate::env::{Context, Env};
use crate::error::ActionError;
use crate::plans;
use crate::result::{self, Refreshed};

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
    let mut outputs =
        process_segments_with_faults(env, ctx, &event.query, &[event.segment], faults).await?;
    Ok(outputs.swap_remove(0))
}

/// Process one batch of each of `segments` of one query, then refresh the result once.
///
/// The same steps as [`process`] for each segment, run concurrently (each checkpoint is still
/// committed alone, by its own compare-and-set), but one refresh covers every segment that committed, and the
/// next links are fired after it. A host that wakes several segments of a query at once (the
/// partitions of a caught-up query after an append) merges, renders and diffs the result once
/// instead of once per segment. Returns one output per segment, in order.
pub async fn process_segments(
    env: &Env<'_>,
    ctx: &Context,
    query: &str,
    segments: &[Segment],
) -> Result<Vec<ProcessOutput>, ActionError> {
    process_segments_with_faults(env, ctx, query, segments, &NoFaults).await
}

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
            .map(|&segment| ProcessOutput {
                query: query.id.clone(),
                segment,
                from: 0,
                next_offset: 0,
                records: 0,
                committed: false,
                at_head: true,
                fired_next: false,
                version: 0,
                stopped: Stop::Failed,
            })
            .collect());
    }

    // 1.–3. for each segment: load, fold, commit. Concurrently, so that a store that commits
    //    the writes waiting together (the embedded one) makes them durable with one sync.
    let advances = segments
        .iter()
        .zip(loaded)
        .map(|(&s, loaded)| advance(env, ctx, &query, plan, s, loaded, faults));
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
    let known = result::Known { current: Some(current), own };
    let Refreshed { version, changed, .. } =
        result::refresh_known(env, &query, plan, known).await?;
    if changed {
        env.chain.fire(Link::Push(PushEvent { query: query.id.clone(), version })).await?;
    }
    faults.at("refreshed")?;

    // 5. Only after the commit: fire the next link unless the segment is done or at the head.
    for output in outputs.iter_mut().filter(|o| o.committed) {
        output.version = version;
        if !output.at_head {
            let event = ProcessEvent { query: query.id.clone(), segment: output.segment };
            env.chain.fire(Link::Process(event)).await?;
            output.fired_next = true;
        }
        tracing::debug!(query = %query.id, segment = %output.segment.key(), from = output.from, next = output.next_offset, records = output.records, stopped = %output.stopped, "batch processed");
    }
    Ok(outputs)
}

/// A checkpoint this invocation committed, with its state still in memory.
type Fresh = (Checkpoint, PartialState);

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
    let expected = loaded.as_ref().map(|c| c.next_offset);
    let (mut state, mut next, mut head, mut lost) = match &loaded {
        Some(cp) => (plan.decode(&cp.state)?, cp.next_offset, cp.head, cp.lost),
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
        at_head: false,
        fired_next: false,
        version: 0,
        // Set when the loop below stops; an error before returns no output.
        stopped: Stop::Head,
    };

    // 2. Read and fold, within the batch bounds and before the deadline.
    let mut bytes = 0usize;
    let mut budget_error = None;
    // Wall time spent folding in this invocation, for the per-record CPU budget.
    let mut fold_ms = 0i64;
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
        let records = batch.records.iter().map(|r| Record {
            value: &r.value,
            timestamp: r.timestamp,
            offset: r.offset,
            partition: segment.partition as i32,
            key: r.key.as_deref(),
        });
        let fold_started = env.clock.now_ms();
        let folded = plan.fold_all(&mut state, records);
        fold_ms += env.clock.now_ms() - fold_started;
        let within_budget =
            folded.and_then(|()| plan.limits().check_fold_cost(fold_ms, output.records + n as u64));
        if let Err(e) = within_budget {
            budget_error = Some(e);
            break Stop::Budget;
        }
        output.records += n as u64;
        // Folding is CPU work inside an async task: give the executor a turn after each read,
        // so that a host running several tasks on one thread (kappa dev pinned to one core, a
        // Node.js action) keeps answering while a long batch replays.
        env.timer.yield_now().await;
        let advanced = batch.next_offset > next;
        next = batch.next_offset.max(next);
        if (n == 0 && !advanced) || (segment.end.is_none() && next >= batch.high_watermark) {
            // At the head this read saw: another read would only confirm it.
            break Stop::Head;
        }
    };
    output.stopped = stopped;
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
    let checkpoint = Checkpoint { next_offset: next, state: plan.encode(&state), head, lost };
    let unchanged =
        loaded.as_ref().is_some_and(|c| c.next_offset == next && c.head == head && c.lost == lost);
    let committed = unchanged
        || env.store.compare_and_set_checkpoint(&query.id, &segment, expected, &checkpoint).await?;
    output.committed = committed;
    output.next_offset = next;
    if !committed {
        tracing::info!(query = %query.id, segment = %segment.key(), from, "duplicate batch: another invocation committed first");
        return Ok((output, None));
    }
    faults.at("committed")?;

    output.at_head = stopped.at_head();
    // Without a write of ours (nothing new) the refresh reads this checkpoint like the others.
    Ok((output, (!unchanged).then_some((checkpoint, state))))
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
