//! The query's merged result: recomputed from the segments' committed checkpoints.
//!
//! The result is derived data: merge every segment's partial state, render, and compare with
//! the stored result. Because it is recomputed from the checkpoints (the only truth), any
//! invocation may refresh it, a crash between a checkpoint commit and the refresh loses nothing
//! (the next refresh catches up), and concurrent refreshes are serialised by compare-and-set on
//! the result's revision so versions stay consecutive and each delta applies to its predecessor.

use std::sync::Arc;

use kappa_core::ports::{
    Checkpoint, PartitionProgress, Position, Progress, QueryRecord, ResultRecord, Segment,
};
use kappa_core::tail::{self, TailPosition};
use kappa_core::{Message, PartialState, Plan, RenderMemo, patch};
use serde_json::Value;

use crate::env::Env;
use crate::error::ActionError;
use crate::warm::{Kept, Stamp};

/// Attempts at the result CAS before giving up (another refresh then holds the latest data).
const REFRESH_ATTEMPTS: usize = 32;

/// What a refresh did.
#[derive(Debug, Clone, PartialEq)]
pub struct Refreshed {
    /// The result version after the refresh.
    pub version: u64,
    /// Whether the result (not just progress) changed, so a delta was published.
    pub changed: bool,
    /// Whether every segment has reached its head.
    pub caught_up: bool,
}

/// The merged state of every segment, with progress.
pub struct Merged {
    /// Merge of the segments' states.
    pub state: PartialState,
    /// Progress across segments.
    pub progress: Progress,
    /// Every segment at its head.
    pub caught_up: bool,
    /// Where each segment (in the query's order) stood: the key `state` is kept warm under.
    pub stamps: Vec<Stamp>,
    /// A result revision whose result is `state`'s render: the one the warm merged state
    /// rendered to, when the deltas merged into it cannot change a result.
    pub renders_as: Option<u64>,
    /// What the render of the warm merged state remembered, when `state` is that state with
    /// the caller's deltas merged in (`None`: rendered whole).
    pub memo: Option<RenderMemo>,
}

/// What a refresh's caller already holds, to save store round trips and decoding on the first
/// attempt (every retry reads everything afresh).
#[derive(Default)]
pub struct Known<'a> {
    /// The result as read before the caller's commit (`None`: not read).
    pub current: Option<Option<ResultRecord>>,
    /// Segments the caller has just committed, with their checkpoints and states in memory.
    /// Sound only for commits made *after* `current` was read: a result built from a newer
    /// checkpoint of such a segment was written after that commit, so it changed the revision
    /// and the first attempt's compare-and-set fails.
    pub own: Vec<(Segment, &'a Checkpoint, &'a PartialState)>,
    /// For each of `own`: where its segment stood before the commit and what the commit
    /// added (the records folded into an empty state), so that a merged state kept warm at
    /// the earlier stamps is brought up to date by merging these alone ([`crate::warm`]).
    /// Empty: the merged state is computed from every segment's state.
    pub deltas: Vec<(Segment, Stamp, &'a PartialState)>,
}

/// Where a segment stands: its checkpoint or its start.
pub(crate) fn target(segment: &Segment, at: Option<Position>) -> i64 {
    segment.end.unwrap_or_else(|| at.map_or(segment.start, |c| c.head.max(c.next_offset)))
}

/// Where one partition's records are processed up to, as [`Progress`] reports it: the next
/// offset of its first unfinished segment. `segments`: the partition's segments in offset
/// order, each with its next offset.
pub(crate) fn processed_offset(segments: impl IntoIterator<Item = (Segment, i64)>) -> i64 {
    let mut offset = 0;
    for (s, next) in segments {
        offset = next;
        if s.end.is_none_or(|e| next < e) {
            break;
        }
    }
    offset
}

/// Load and merge every unit's committed state (its closed segments' and its tail's; `own`:
/// units the caller holds in memory; the others are read concurrently). With `deltas` for
/// every one of `own`, a merged state kept warm at the stamps before those commits is brought
/// up to date instead.
pub async fn merge_segments(
    env: &Env<'_>,
    query: &QueryRecord,
    plan: &Plan,
    own: &[(Segment, &Checkpoint, &PartialState)],
    deltas: &[(Segment, Stamp, &PartialState)],
) -> Result<Merged, ActionError> {
    let mut progress = Progress::default();
    let mut caught_up = true;
    let mut per_partition: std::collections::BTreeMap<u32, Vec<(Segment, Option<Position>)>> =
        Default::default();
    let units = query.units();
    let own_of = |s: &Segment| own.iter().find(|(o, _, _)| o == s);
    // The units the caller does not hold: the closed ones only by where they stand (a warm
    // merged state needs their stamps, not their states: a live query refreshes on every
    // wake-up, and a finished replay range holds its whole encoded state), the tail whole (its
    // partitions' positions are in its state); both read concurrently.
    let closed_others: Vec<Segment> =
        units.iter().filter(|s| !s.is_tail() && own_of(s).is_none()).copied().collect();
    let tail_other = units.iter().find(|s| s.is_tail() && own_of(s).is_none());
    let (closed_at, tail_checkpoint) =
        futures_util::future::try_join(env.store.positions(&query.id, &closed_others), async {
            match tail_other {
                Some(tail) => env.store.checkpoint(&query.id, tail).await,
                None => Ok(None),
            }
        })
        .await?;
    let mut at_of_closed = closed_at.into_iter();
    // The caller's own checkpoints are borrowed, not copied.
    let tail_state: Option<&[u8]> =
        units.iter().find(|s| s.is_tail()).and_then(|tail| match own_of(tail) {
            Some((_, cp, _)) => Some(cp.state.as_slice()),
            None => tail_checkpoint.as_ref().map(|cp| cp.state.as_slice()),
        });
    let mut at: Vec<Option<Position>> = units
        .iter()
        .map(|segment| match own_of(segment) {
            Some((_, cp, _)) => Some(Position::from(*cp)),
            None if segment.is_tail() => tail_checkpoint.as_ref().map(Position::from),
            None => at_of_closed.next().flatten(),
        })
        .collect();
    let mut stamps: Vec<Stamp> = units.iter().zip(&at).map(|(s, &at)| Stamp::at(s, at)).collect();
    // The merged state kept warm where the units stood before the caller's commits.
    let delta_of = |s: &Segment| deltas.iter().find(|(d, _, _)| d == s);
    let warm = (own.iter().all(|(s, _, _)| delta_of(s).is_some()))
        .then(|| {
            let before: Vec<Stamp> = units
                .iter()
                .zip(&stamps)
                .map(|(s, &after)| delta_of(s).map_or(after, |&(_, before, _)| before))
                .collect();
            env.warm.take_merged(query, &before)
        })
        .flatten();
    let mut renders_as = None;
    let mut memo = None;
    let state = match warm {
        Some(Kept { mut state, rendered, memo: remembered }) => {
            for (_, _, delta) in deltas {
                plan.merge(&mut state, delta)?;
            }
            if deltas.iter().all(|(_, _, delta)| !plan.may_change_result(delta)) {
                renders_as = rendered;
            }
            memo = remembered;
            state
        }
        None => {
            // Merged from every unit's state: the closed ones read whole now, and their stamps
            // and positions taken from what was read (they may have moved since).
            let closed = futures_util::future::try_join_all(
                closed_others.iter().map(|s| env.store.checkpoint(&query.id, s)),
            )
            .await?;
            let mut closed = closed.into_iter();
            let mut state = plan.empty_state();
            for ((segment, at), stamp) in units.iter().zip(&mut at).zip(&mut stamps) {
                match own_of(segment) {
                    Some((_, _, part)) => plan.merge(&mut state, part)?,
                    None if segment.is_tail() => {
                        if let Some(cp) = &tail_checkpoint {
                            plan.merge(&mut state, &tail::decode(plan, &cp.state)?.1)?
                        }
                    }
                    None => {
                        let cp = closed.next().flatten();
                        *at = cp.as_ref().map(Position::from);
                        *stamp = Stamp::at(segment, *at);
                        if let Some(cp) = cp {
                            plan.merge(&mut state, &plan.decode(&cp.state)?)?
                        }
                    }
                }
            }
            state
        }
    };
    // Where each segment stands: a closed one by its checkpoint, an open one by the tail's.
    let mut positions: Vec<(Segment, Option<Position>)> = Vec::new();
    for (unit, &at) in units.iter().zip(&at) {
        if !unit.is_tail() {
            positions.push((*unit, at));
            continue;
        }
        let tail = match tail_state {
            Some(state) => tail::positions(state)?,
            None => Vec::new(),
        };
        for segment in query.open_segments() {
            let at = tail.iter().find(|p| p.partition == segment.partition);
            positions.push((*segment, at.map(TailPosition::position)));
        }
    }
    for (segment, at) in positions {
        if let Some(at) = at {
            progress.lost += at.lost;
        }
        let next = at.map_or(segment.start, |c| c.next_offset);
        let goal = target(&segment, at);
        progress.lag += (goal - next).max(0) as u64;
        // A live segment that never ran has not seen its head yet.
        if next < goal || (segment.end.is_none() && at.is_none()) {
            caught_up = false;
        }
        per_partition.entry(segment.partition).or_default().push((segment, at));
    }
    for (partition, mut segs) in per_partition {
        segs.sort_by_key(|(s, _)| s.start);
        let mut head = segs.first().map_or(0, |(s, _)| s.start);
        for (s, at) in &segs {
            head = head.max(target(s, *at));
        }
        let offset = processed_offset(
            segs.iter().map(|(s, at)| (*s, at.map_or(s.start, |c| c.next_offset))),
        );
        progress.partitions.push(PartitionProgress { partition, offset, head });
    }
    progress.processed = state.records();
    progress.skipped = state.skipped();
    Ok(Merged { state, progress, caught_up, stamps, renders_as, memo })
}

/// Recompute the result from the checkpoints and publish it if it changed.
pub async fn refresh(
    env: &Env<'_>,
    query: &QueryRecord,
    plan: &Plan,
) -> Result<Refreshed, ActionError> {
    refresh_known(env, query, plan, Known::default()).await
}

/// [`refresh`], starting from what the caller already holds.
pub async fn refresh_known(
    env: &Env<'_>,
    query: &QueryRecord,
    plan: &Plan,
    mut known: Known<'_>,
) -> Result<Refreshed, ActionError> {
    let mut last = None;
    for _ in 0..REFRESH_ATTEMPTS {
        let current = match known.current.take() {
            Some(current) => current,
            None => env.store.result(&query.id).await?,
        };
        let own = std::mem::take(&mut known.own);
        let deltas = std::mem::take(&mut known.deltas);
        let merged = match merge_segments(env, query, plan, &own, &deltas).await {
            Ok(m) => m,
            Err(ActionError::Query(e)) => {
                // The merged state outgrew the budget: the query fails for good, visibly.
                fail(env, &query.id, e.to_json()).await?;
                return Err(e.into());
            }
            Err(e) => return Err(e),
        };
        let Merged { state, progress, caught_up, stamps, renders_as, memo } = merged;
        // A query that failed for good (memory budget) stays failed.
        let failed = current.as_ref().and_then(|c| c.error.clone());
        // The stored result is still the state's render when the store holds the revision
        // the warm state rendered to and nothing merged since could change it (no record
        // matched): kept as it is, neither rendered nor compared again.
        let kept = current
            .as_ref()
            .filter(|c| c.error.is_none() && renders_as == Some(c.revision))
            .map(|c| c.result.clone());
        let is_kept = kept.is_some();
        // A render from the warm state's memo ranks only what the deltas touched.
        let merged_since: Vec<&PartialState> = match &memo {
            Some(_) => deltas.iter().map(|&(_, _, delta)| delta).collect(),
            None => Vec::new(),
        };
        let (result, error, rendered, memo) = match kept {
            // Nothing merged could change the result: what its render remembered still holds.
            Some(result) => (result, failed, true, memo),
            None => match plan.render_after(&state, memo.as_ref(), &merged_since) {
                Ok((r, memo)) => (Arc::new(r), failed, true, Some(memo)),
                // A result over the bucket limit fails the query for good; say so in the result.
                Err(e) => (
                    current.as_ref().map_or_else(Default::default, |c| c.result.clone()),
                    Some(e.to_json()),
                    false,
                    None,
                ),
            },
        };
        let (revision, version) = current.as_ref().map_or((0, 0), |c| (c.revision, c.version));
        // One walk of both results tells whether they differ and how (no ops: equal).
        let patch = match &current {
            Some(c) if !is_kept => Some(patch::diff(&c.result, &result)),
            _ => None,
        };
        // No stored result yet: the first one is a change.
        let changed = !is_kept
            && patch.as_ref().is_none_or(|p| p.as_array().is_some_and(|ops| !ops.is_empty()));
        // Kept for the next refresh, which then merges only what its commits added, with the
        // revision whose result is this state's render once that revision is in the store.
        let keep = |renders_as: Option<u64>| {
            let rendered = renders_as.filter(|_| rendered);
            env.warm.put_merged(query, stamps, Kept { state, rendered, memo })
        };
        let same = current.as_ref().is_some_and(|c| {
            !changed && c.progress == progress && c.caught_up == caught_up && c.error == error
        });
        if same {
            keep(Some(revision));
            return Ok(Refreshed { version, changed: false, caught_up });
        }
        let new_version = if changed && current.is_some() { version + 1 } else { version };
        let message = match patch.filter(|_| changed) {
            Some(patch) => Message::Delta {
                id: query.id.clone(),
                version: new_version,
                from: version,
                caught_up,
                progress: progress.clone(),
                patch,
            },
            None => Message::Progress {
                id: query.id.clone(),
                version: new_version,
                caught_up,
                progress: progress.clone(),
                error: None,
            },
        };
        let record = ResultRecord {
            revision: revision + 1,
            version: new_version,
            caught_up,
            progress,
            result,
            error,
        };
        if env.store.compare_and_set_result(&query.id, revision, &record, message).await? {
            keep(Some(record.revision));
            return Ok(Refreshed {
                version: new_version,
                changed: changed && current.is_some(),
                caught_up,
            });
        }
        keep(None);
        last = Some(new_version);
    }
    // Others kept winning: each of them published a result at least as new as ours.
    Ok(Refreshed { version: last.unwrap_or(0), changed: false, caught_up: false })
}

/// Mark a query failed for good (its result carries the error; its chains stop), retrying the
/// compare-and-set against concurrent refreshes.
pub async fn fail(env: &Env<'_>, id: &str, error: Value) -> Result<(), ActionError> {
    for _ in 0..REFRESH_ATTEMPTS {
        let current = env.store.result(id).await?;
        let revision = current.as_ref().map_or(0, |c| c.revision);
        let mut r = current.unwrap_or(ResultRecord {
            revision: 0,
            version: 0,
            caught_up: false,
            progress: Progress::default(),
            result: Default::default(),
            error: None,
        });
        r.revision = revision + 1;
        r.error = Some(error.clone());
        let message = Message::progress_of(id, &r);
        if env.store.compare_and_set_result(id, revision, &r, message).await? {
            return Ok(());
        }
    }
    Ok(())
}
