//! The tick action: the safety net of the chains, fired by the alarm trigger (and the Kafka
//! feed as a hint). Correctness never depends on it — offsets in the store are the only truth —
//! but it re-fires links that were dropped (a crash after a commit, a 429 that ran out of
//! retries), wakes caught-up queries when new records arrive, and reclaims idle queries.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use kappa_core::ports::{Link, ProcessEvent, PushEvent, QueryRecord, Segment};

use crate::group::links_of;
use crate::views;

use crate::env::Env;
use crate::error::ActionError;
use crate::plans;
use crate::result::{self, target};

/// What a tick did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TickOutput {
    /// Queries looked at.
    pub queries: usize,
    /// Links fired for segments behind their head.
    pub fired: usize,
    /// Idle queries reclaimed.
    pub reclaimed: usize,
    /// Results refreshed because they lagged their checkpoints (a crash before a refresh).
    #[serde(default)]
    pub repaired: usize,
    /// Views switched to their caught-up pending query.
    #[serde(default)]
    pub views_switched: usize,
}

/// Check every registered query (or only those on `topic`, for a feed event).
///
/// A feed event only wakes the queries of its topic: it comes with every batch of appends, so
/// it skips reclaiming idle queries, which the periodic tick (`topic: None`) does.
pub async fn tick(env: &Env<'_>, topic: Option<&str>) -> Result<TickOutput, ActionError> {
    let mut out = TickOutput::default();
    let now = env.clock.now_ms();
    // Open segments that were caught up and fell behind (new records), per topic: they are
    // advanced together, each record read and scanned once for all of them.
    let mut live: Vec<(String, Vec<ProcessEvent>)> = Vec::new();
    // Each partition's head, read once per tick however many queries follow it: against
    // Kafka a watermark is a broker round trip, and a tick over 10,000 queries of four
    // partitions made 40,000 of them. A head read a little before another query's check is
    // only an earlier snapshot: a record appended since is picked up by its own wake-up.
    let mut heads_seen: HashMap<(String, u32), i64> = HashMap::new();
    for id in env.store.queries().await? {
        let Some(query) = env.store.query(&id).await? else { continue };
        if topic.is_some_and(|t| t != query.topic.as_str()) {
            continue;
        }
        out.queries += 1;
        if topic.is_none() {
            // The last touch first: a query touched within the timeout (nearly all of them)
            // costs no read of its references.
            let last = env.store.last_touch(&id).await?.unwrap_or(query.created_ms);
            if now - last > env.config.idle_timeout_ms && env.store.add_refs(&id, 0).await? == 0 {
                env.store.remove(&id).await?;
                env.warm.forget(&id);
                out.reclaimed += 1;
                tracing::info!(query = %id, idle_ms = now - last, "idle query reclaimed");
                continue;
            }
        }
        let units = query.units();
        let mut nexts = Vec::with_capacity(units.len());
        let fired_before = out.fired;
        // Positions only: the states are not needed to decide, and against Redis this is one
        // round trip for all the units.
        let positions = env.store.positions(&id, &units).await?;
        for (unit, cp) in units.iter().zip(positions) {
            let next = cp.map_or(unit.start, |c| c.next_offset);
            nexts.push((*unit, next));
            let goal = if unit.is_tail() {
                // The tail's offsets are summed (`kappa_core::tail`): it is behind when the
                // sum of its partitions' heads is past them.
                let mut heads = 0;
                for segment in query.open_segments() {
                    heads += head_of(env, &mut heads_seen, &query.topic, segment.partition).await?;
                }
                heads
            } else {
                target(unit, cp)
            };
            if next < goal || cp.is_none() {
                let event = ProcessEvent { query: id.clone(), segment: *unit };
                let caught_up_before = cp.is_some_and(|c| c.at_head());
                if unit.is_tail() && caught_up_before {
                    let topic = query.topic.as_str();
                    match live.iter_mut().find(|(t, _)| t == topic) {
                        Some((_, members)) => members.push(event),
                        None => live.push((topic.to_string(), vec![event])),
                    }
                } else {
                    env.chain.fire(Link::Process(event)).await?;
                }
                out.fired += 1;
            }
        }
        if topic.is_none() && out.fired == fired_before && result_lags(env, &query, &nexts).await? {
            // Every segment is at its head, but the result does not cover what the checkpoints
            // do: an invocation committed and died before its refresh (kill -9), and no new
            // record will run another. Refresh it from the checkpoints.
            let plan = plans::plan_of(&query, &env.config.limits)?;
            let refreshed = result::refresh(env, &query, &plan).await?;
            if refreshed.changed {
                let event = PushEvent { query: id.clone(), version: refreshed.version };
                env.chain.fire(Link::Push(event)).await?;
            }
            out.repaired += 1;
            tracing::info!(query = %id, "result behind its checkpoints after a crash; refreshed");
        }
    }
    for (_, members) in live {
        for link in links_of(members, env.config.group_members) {
            env.chain.fire(link).await?;
        }
    }
    // A view whose new definition has caught up switches here in a deployment (`kappa dev`'s
    // view loop also checks more often).
    out.views_switched = views::switch_ready(env).await?.len();
    Ok(out)
}

/// The head of a partition, read once per tick (`seen`).
async fn head_of(
    env: &Env<'_>,
    seen: &mut HashMap<(String, u32), i64>,
    topic: &str,
    partition: u32,
) -> Result<i64, ActionError> {
    let key = (topic.to_string(), partition);
    if let Some(&high) = seen.get(&key) {
        return Ok(high);
    }
    let high = env.log.watermarks(topic, partition).await?.high;
    seen.insert(key, high);
    Ok(high)
}

/// Whether the stored result reports other per-partition offsets than the checkpoints hold
/// (`nexts`: each unit with its next offset, the tail's summed), when every unit is at its end
/// or head (nothing fired). A failed query's result stays as it is.
async fn result_lags(
    env: &Env<'_>,
    query: &QueryRecord,
    nexts: &[(Segment, i64)],
) -> Result<bool, ActionError> {
    let Some(current) = env.store.result(&query.id).await? else { return Ok(false) };
    if current.error.is_some() {
        return Ok(false);
    }
    // Every closed segment is at its end, so each partition is processed up to where its part
    // of the tail is, and the result reports those offsets: their sum is the tail's.
    let Some(&(_, tail)) = nexts.iter().find(|(s, _)| s.is_tail()) else { return Ok(false) };
    let reported = |p: u32| current.progress.partitions.iter().find(|x| x.partition == p);
    let mut sum = 0;
    for segment in query.open_segments() {
        match reported(segment.partition) {
            Some(r) => sum += r.offset,
            None => return Ok(true),
        }
    }
    Ok(sum != tail)
}
