//! The query action (`POST /v1/queries`): validate, canonicalise, register or share, start.

use kappa_core::ports::{Link, ProcessEvent, QueryRecord, ResultRecord, Segment};
use kappa_core::{Message, Plan, Topic, request::parse_request_bytes};
use serde_json::json;

use crate::env::Env;
use crate::error::ActionError;
use crate::web::WebResponse;

/// Handle a query body: 201 for a new query, 200 when an identical one already runs.
pub async fn create(env: &Env<'_>, body: &[u8]) -> Result<WebResponse, ActionError> {
    create_planned(env, plan(env, body)?, body).await
}

/// Parse and plan a query body; [`Plan::id`] is the id it will have.
pub fn plan(env: &Env<'_>, body: &[u8]) -> Result<Plan, ActionError> {
    let request = parse_request_bytes(body, &env.config.limits)?;
    Ok(Plan::new(request, env.config.limits.clone()))
}

/// [`create`] with the body already planned (a caller that checks the id first).
pub async fn create_planned(
    env: &Env<'_>,
    plan: Plan,
    body: &[u8],
) -> Result<WebResponse, ActionError> {
    let id = plan.id().to_string();
    let topic = plan.request().topic.clone();
    let links = json!({"self": format!("/v1/queries/{id}"), "events": format!("/v1/queries/{id}/events"), "ws": format!("/v1/queries/{id}/ws")});
    // Version 0 is the answer over no records, so every later change is a delta from it. It is
    // rendered before anything is registered: a query whose answer cannot be rendered (more
    // buckets than a result may hold) is refused with nothing left behind.
    let empty = plan.render(&plan.empty_state())?;
    let now = env.clock.now_ms();
    if env.store.query(&id).await?.is_some() {
        env.store.touch(&id, now).await?;
        return Ok(WebResponse::json(200, json!({"id": id, "shared": true, "links": links})));
    }
    let registered = env.store.queries().await?.len();
    if registered >= env.config.max_queries {
        return Err(ActionError::TooManyQueries { limit: env.config.max_queries });
    }
    let partitions = env
        .log
        .partitions(&topic)
        .await?
        .ok_or_else(|| ActionError::NotFound { what: "topic", name: topic.to_string() })?;
    let joins = join_points(env, &topic).await?;
    let mut segments = Vec::new();
    // Segments that start where another query's replay is now: left for it to take along.
    let mut joiners = Vec::new();
    for partition in 0..partitions {
        let w = env.log.watermarks(&topic, partition).await?;
        let mut parts = split(
            partition,
            w.low,
            w.high,
            env.config.split_records,
            env.config.max_segments_per_partition,
        );
        // A replay of this partition running ahead: the range it is in is cut where it is
        // now and where it ends, so this query replays the part before alone and the part up
        // to that end together with it (a shared scan; the same end puts both in one group),
        // instead of reading the same records again behind it.
        if let Some(&Join { at, end, .. }) = joins.iter().find(|j| j.partition == partition)
            && let Some(i) =
                parts.iter().position(|s| s.start < at && s.end.is_some_and(|e| at < e && end <= e))
        {
            let range = parts[i];
            let mut cut = vec![
                Segment { end: Some(at), ..range },
                Segment { partition, start: at, end: Some(end) },
            ];
            if range.end > Some(end) {
                cut.push(Segment { partition, start: end, end: range.end });
            }
            joiners.push(cut[1]);
            parts.splice(i..=i, cut);
        }
        segments.extend(parts);
    }
    let record = QueryRecord {
        id: id.clone(),
        body: String::from_utf8_lossy(body).into_owned(),
        topic,
        segments,
        created_ms: now,
    };
    if !env.store.register(&record).await? {
        // Registered concurrently by an identical request: share it.
        env.store.touch(&id, now).await?;
        return Ok(WebResponse::json(200, json!({"id": id, "shared": true, "links": links})));
    }
    env.store.touch(&id, now).await?;
    let initial = ResultRecord {
        revision: 1,
        version: 0,
        caught_up: false,
        progress: Default::default(),
        result: empty.into(),
        error: None,
    };
    let message = Message::Progress {
        id: id.clone(),
        version: 0,
        caught_up: false,
        progress: initial.progress.clone(),
        error: None,
    };
    env.store.compare_and_set_result(&id, 0, &initial, message).await?;
    // Each closed segment replays alone or joins a replay ahead of it; the open segments, one
    // per partition from its head now, are the live tail, advanced as one unit.
    for segment in record.units() {
        let event = ProcessEvent { query: id.clone(), segment };
        if joiners.contains(&segment) {
            // The replay running ahead takes it into its next link (a replay convoy, in a
            // deployment as in `kappa dev`): fired here, it would read alone behind it.
            env.store.add_joiner(record.topic.as_str(), segment.partition, &event).await?;
        } else {
            env.chain.fire(Link::Process(event)).await?;
        }
    }
    tracing::info!(query = %id, "query registered; replay started");
    Ok(WebResponse::json(201, json!({"id": id, "shared": false, "links": links})))
}

/// Most queries of the topic looked at for a replay to join (bounds a registration's reads).
const JOIN_CANDIDATES: usize = 64;

/// Where a replay of one partition is: a closed segment of another query, read up to `at`
/// of the range that ends at `end`.
struct Join {
    partition: u32,
    at: i64,
    end: i64,
}

/// Per partition, the replay of another query of `topic` a new query's replay can join: of
/// the closed segments not yet at their end, the one that ends last (it covers the most of
/// the new query's range), the furthest read among those.
async fn join_points(env: &Env<'_>, topic: &Topic) -> Result<Vec<Join>, ActionError> {
    let mut points: Vec<Join> = Vec::new();
    let mut looked = 0;
    for id in env.store.queries().await? {
        if looked == JOIN_CANDIDATES {
            break;
        }
        let Some(other) = env.store.query(&id).await? else { continue };
        if other.topic != *topic {
            continue;
        }
        looked += 1;
        let closed: Vec<Segment> = other.closed_segments().copied().collect();
        let positions = env.store.positions(&id, &closed).await?;
        for (segment, cp) in closed.iter().zip(positions) {
            let (Some(cp), Some(end)) = (cp, segment.end) else { continue };
            if cp.next_offset >= end {
                continue;
            }
            let join = Join { partition: segment.partition, at: cp.next_offset, end };
            match points.iter_mut().find(|j| j.partition == segment.partition) {
                Some(j) if (j.end, j.at) < (join.end, join.at) => *j = join,
                Some(_) => {}
                None => points.push(join),
            }
        }
    }
    Ok(points)
}

/// Split `[low, high)` of a partition into offset ranges replayed in parallel, then the
/// open segment from `high` on, which follows the head (a part of the live tail).
pub fn split(
    partition: u32,
    low: i64,
    high: i64,
    split_records: i64,
    max_segments: usize,
) -> Vec<Segment> {
    let n = (high - low).max(0);
    let k = if n == 0 {
        0
    } else if split_records <= 0 {
        1
    } else {
        (n / split_records + 1).clamp(1, max_segments.max(1) as i64)
    };
    let mut parts: Vec<Segment> = (0..k)
        .map(|i| Segment { partition, start: low + n * i / k, end: Some(low + n * (i + 1) / k) })
        .collect();
    parts.push(Segment { partition, start: high.max(low), end: None });
    parts
}

/// `DELETE /v1/queries/{id}`: the caller no longer needs it.
pub async fn release(env: &Env<'_>, id: &str) -> Result<WebResponse, ActionError> {
    if env.store.query(id).await?.is_none() {
        return Err(ActionError::NotFound { what: "query", name: id.to_string() });
    }
    // References count live subscribers (streams, webhooks, views); while any remain the
    // query keeps running for them and is reclaimed by the idle timeout after they leave.
    let refs = env.store.add_refs(id, 0).await?;
    if refs == 0 {
        env.store.remove(id).await?;
        env.warm.forget(id);
        tracing::info!(query = %id, "query released and reclaimed");
    }
    Ok(WebResponse::json(200, json!({"id": id, "acknowledged": true})))
}

/// A holder that took a reference (a view, a subscription) gives it back; the query is
/// reclaimed when it was the last one.
pub async fn unreference(env: &Env<'_>, id: &str) -> Result<(), ActionError> {
    if env.store.add_refs(id, -1).await? == 0 {
        env.store.remove(id).await?;
        env.warm.forget(id);
        tracing::info!(query = %id, "last reference dropped; query reclaimed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_partition_without_overlap_and_ends_open_at_the_head() {
        let s = split(2, 100, 1100, 300, 8);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].start, 100);
        for w in s.windows(2) {
            assert_eq!(w[0].end, Some(w[1].start));
        }
        assert_eq!(s.last(), Some(&Segment { partition: 2, start: 1100, end: None }));
        assert_eq!(
            split(0, 0, 10, 300, 8),
            vec![
                Segment { partition: 0, start: 0, end: Some(10) },
                Segment { partition: 0, start: 10, end: None }
            ]
        );
        assert_eq!(split(0, 7, 7, 300, 8), vec![Segment { partition: 0, start: 7, end: None }]);
        assert_eq!(split(0, 0, 1_000_000, 1, 3).len(), 4);
    }
}
