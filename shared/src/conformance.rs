//! The conformance suite of the [`StateStore`] port: every adapter (Redis, the embedded store,
//! JavaScript-backed ones) must behave exactly like [`crate::ports::MemoryStore`], and this
//! module says how, as one async function the adapters' tests call.
//!
//! It is pure (no runtime, clock or I/O of its own): the caller drives the future with whatever
//! executor its adapter needs (`pollster` for the in-memory store, tokio for Redis). Concurrent
//! compare-and-set attempts are joined by a tiny hand-written `join_all`, so against a real
//! backend they really are in flight together. Every id the suite uses starts with the given
//! prefix, so runs against a shared server do not collide; the suite removes what it created.
//! Failures panic with a message naming the broken property.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use crate::message::Message;
use crate::topic::Topic;
use serde_json::json;

use crate::ports::{
    Checkpoint, MAX_JOINERS_TAKEN, PartitionProgress, PortResult, Position, ProcessEvent, Progress,
    QueryRecord, ResultRecord, Segment, StateStore, Subscription, ViewDef,
};

/// Poll every future until all are ready, in one task: the futures are in flight together.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future completed")).collect()
}

/// Unwrap a port result, panicking with the step that failed.
fn ok<T>(what: &str, r: PortResult<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("state store conformance: {what} failed: {e}"),
    }
}

fn query_record(id: &str, body: &str) -> QueryRecord {
    QueryRecord {
        id: id.to_string(),
        body: body.to_string(),
        topic: Topic::new("tweets").expect("a valid name"),
        segments: vec![
            Segment { partition: 0, start: 0, end: Some(1000) },
            Segment { partition: 0, start: 1000, end: None },
            Segment { partition: 1, start: 0, end: None },
        ],
        created_ms: 1_700_000_000_123,
    }
}

fn checkpoint(next_offset: i64, state: Vec<u8>) -> Checkpoint {
    Checkpoint { next_offset, state, head: next_offset + 17, lost: (next_offset % 3) as u64 }
}

fn result_record(revision: u64, version: u64) -> ResultRecord {
    ResultRecord {
        revision,
        version,
        caught_up: revision & 1 == 0,
        progress: Progress {
            processed: revision * 100,
            skipped: revision,
            lag: 7,
            lost: revision % 2,
            partitions: vec![PartitionProgress {
                partition: 0,
                offset: (revision * 100) as i64,
                head: 1000,
            }],
        },
        result: json!({
            "took": 1,
            "hits": {"total": {"value": revision, "relation": "eq"}, "hits": []},
            "aggregations": {"avg": {"value": 0.1 + revision as f64}, "text": "é \"q\" \u{1F600}"}
        })
        .into(),
        error: if revision == 3 {
            Some(json!({"error": {"type": "x", "reason": "budget"}, "status": 500}))
        } else {
            None
        },
    }
}

/// A delta to `version`, told apart from other messages by `tag` (for adapter tests too).
pub fn delta(version: u64, tag: u64) -> Message {
    Message::Delta {
        id: "q".to_string(),
        version,
        from: version.saturating_sub(1),
        caught_up: false,
        progress: Progress { processed: tag, ..Progress::default() },
        patch: json!([{"op": "add", "path": "/x", "value": tag}]),
    }
}

/// A progress message at `version`, told apart from other messages by `tag`.
pub fn progress(version: u64, tag: u64) -> Message {
    Message::Progress {
        id: "q".to_string(),
        version,
        caught_up: false,
        progress: Progress { processed: tag, ..Progress::default() },
        error: None,
    }
}

fn versions(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(Message::version).collect()
}

/// Check a [`StateStore`] adapter against the reference semantics of [`crate::ports::MemoryStore`].
///
/// `prefix` starts every query id the suite uses (use a random one against shared servers);
/// `ring` is the number of recent messages the store keeps per query (at least 4). The suite
/// leaves no query behind: every query it creates is removed at the end (views are never
/// deleted, so its two views, named with `prefix`, stay).
pub async fn state_store_conformance(store: &dyn StateStore, prefix: &str, ring: usize) {
    assert!(ring >= 4, "state store conformance needs a ring of at least 4 messages");
    registry(store, prefix).await;
    touch_and_refs(store, prefix).await;
    checkpoints(store, prefix).await;
    concurrent_checkpoints(store, prefix).await;
    results(store, prefix).await;
    concurrent_results(store, prefix).await;
    bounded_ring(store, prefix, ring).await;
    subscriptions(store, prefix).await;
    views(store, prefix).await;
    joiners(store, prefix).await;
    removal(store, prefix).await;
    for suffix in ["q1", "q2", "refs", "cp", "cpx", "res", "resx", "ring", "ringp", "subs", "rm"] {
        ok("cleanup remove", store.remove(&format!("{prefix}{suffix}")).await);
    }
    let left: Vec<String> = ok("queries after cleanup", store.queries().await)
        .into_iter()
        .filter(|q| q.starts_with(prefix))
        .collect();
    assert!(left.is_empty(), "state store conformance: queries left after remove: {left:?}");
}

async fn registry(store: &dyn StateStore, prefix: &str) {
    let q1 = query_record(&format!("{prefix}q1"), r#"{"query":{"match_all":{}}}"#);
    let q2 = query_record(&format!("{prefix}q2"), r#"{"size":0}"#);
    assert_eq!(
        ok("query of an unknown id", store.query(&q1.id).await),
        None,
        "query(): an unregistered id has no record"
    );
    assert!(ok("register q1", store.register(&q1).await), "register(): a new id returns true");
    let mut other = q1.clone();
    other.body = "{}".to_string();
    assert!(
        !ok("register q1 again", store.register(&other).await),
        "register(): an existing id returns false"
    );
    assert_eq!(
        ok("query q1", store.query(&q1.id).await).as_ref(),
        Some(&q1),
        "register(): a second registration must not replace the first record"
    );
    assert!(ok("register q2", store.register(&q2).await), "register(): a new id returns true");
    let mut mine: Vec<String> = ok("queries", store.queries().await)
        .into_iter()
        .filter(|q| q.starts_with(prefix))
        .collect();
    mine.sort();
    assert_eq!(mine, vec![q1.id.clone(), q2.id.clone()], "queries(): every registered id, once");
    assert_eq!(ok("query q2", store.query(&q2.id).await), Some(q2), "query(): round trip");
}

async fn touch_and_refs(store: &dyn StateStore, prefix: &str) {
    let id = format!("{prefix}refs");
    assert_eq!(ok("last_touch", store.last_touch(&id).await), None, "last_touch(): None at first");
    assert_eq!(ok("first touch", store.touch(&id, 100).await), 100, "touch(): first returns now");
    assert_eq!(ok("touch", store.touch(&id, 250).await), 100, "touch(): returns the last touch");
    assert_eq!(
        ok("touch back in time", store.touch(&id, 200).await),
        250,
        "touch(): returns the last touch"
    );
    assert_eq!(ok("touch", store.touch(&id, 300).await), 200, "touch(): stores every touch");
    assert_eq!(
        ok("last_touch", store.last_touch(&id).await),
        Some(300),
        "last_touch(): the last touch, without touching"
    );
    assert_eq!(ok("last_touch", store.last_touch(&id).await), Some(300), "last_touch() reads only");
    let other = format!("{prefix}q1");
    assert_eq!(ok("touch q1", store.touch(&other, 5).await), 5, "touch(): ids are independent");

    assert_eq!(ok("add_refs 0", store.add_refs(&id, 0).await), 0, "add_refs(): starts at 0");
    assert_eq!(ok("add_refs +2", store.add_refs(&id, 2).await), 2, "add_refs(): adds");
    assert_eq!(ok("add_refs -1", store.add_refs(&id, -1).await), 1, "add_refs(): drops");
    assert_eq!(ok("add_refs -5", store.add_refs(&id, -5).await), 0, "add_refs(): never below 0");
    assert_eq!(ok("add_refs 0", store.add_refs(&id, 0).await), 0, "add_refs(): stays at 0");
    assert_eq!(ok("add_refs +3", store.add_refs(&id, 3).await), 3, "add_refs(): counts from 0");
    assert_eq!(ok("add_refs q1", store.add_refs(&other, 1).await), 1, "add_refs(): per id");
}

async fn checkpoints(store: &dyn StateStore, prefix: &str) {
    let id = format!("{prefix}cp");
    let tail = Segment { partition: 0, start: 1000, end: None };
    let range = Segment { partition: 0, start: 0, end: Some(1000) };
    let p1 = Segment { partition: 1, start: 0, end: None };
    assert_eq!(
        ok("checkpoint before commit", store.checkpoint(&id, &tail).await),
        None,
        "checkpoint(): None before the first commit"
    );
    let first = checkpoint(1010, vec![0, 1, 2, 255, 0, 0x80, b'\n', b'{']);
    assert!(
        !ok(
            "cas Some on missing",
            store.compare_and_set_checkpoint(&id, &tail, Some(1000), &first).await
        ),
        "compare_and_set_checkpoint(): expecting Some(_) fails when there is no checkpoint"
    );
    assert_eq!(ok("checkpoint", store.checkpoint(&id, &tail).await), None, "failed CAS wrote");
    assert!(
        ok("cas None", store.compare_and_set_checkpoint(&id, &tail, None, &first).await),
        "compare_and_set_checkpoint(): expecting None succeeds when there is no checkpoint"
    );
    assert!(
        !ok(
            "cas None again",
            store.compare_and_set_checkpoint(&id, &tail, None, &checkpoint(1, vec![])).await
        ),
        "compare_and_set_checkpoint(): expecting None succeeds only once"
    );
    assert_eq!(
        ok("checkpoint", store.checkpoint(&id, &tail).await).as_ref(),
        Some(&first),
        "checkpoint(): returns the committed checkpoint, bytes intact"
    );
    // Every byte value, and a large state: binary state is stored as is.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 ^ (i >> 8) as u8).collect();
    let second = checkpoint(2000, big);
    assert!(
        !ok("stale cas", store.compare_and_set_checkpoint(&id, &tail, Some(1000), &second).await),
        "compare_and_set_checkpoint(): a stale expected offset fails"
    );
    assert_eq!(
        ok("checkpoint", store.checkpoint(&id, &tail).await).as_ref(),
        Some(&first),
        "compare_and_set_checkpoint(): a failed CAS changes nothing"
    );
    assert!(
        ok("cas", store.compare_and_set_checkpoint(&id, &tail, Some(1010), &second).await),
        "compare_and_set_checkpoint(): the current expected offset succeeds"
    );
    assert_eq!(ok("checkpoint", store.checkpoint(&id, &tail).await).as_ref(), Some(&second));
    // The same offset again (a batch that only moved the head) is still a CAS on the offset.
    let third = Checkpoint { head: 5000, lost: 9, ..checkpoint(2000, Vec::new()) };
    assert!(
        ok(
            "cas same offset",
            store.compare_and_set_checkpoint(&id, &tail, Some(2000), &third).await
        ),
        "compare_and_set_checkpoint(): the new offset may equal the expected one"
    );
    assert_eq!(
        ok("checkpoint", store.checkpoint(&id, &tail).await).as_ref(),
        Some(&third),
        "checkpoint(): an empty state round-trips"
    );
    // Segments, and queries, are independent.
    assert_eq!(ok("range", store.checkpoint(&id, &range).await), None, "segments are independent");
    assert_eq!(ok("p1", store.checkpoint(&id, &p1).await), None, "segments are independent");
    let r = checkpoint(500, vec![7; 10]);
    assert!(ok("cas range", store.compare_and_set_checkpoint(&id, &range, None, &r).await));
    assert_eq!(ok("range", store.checkpoint(&id, &range).await).as_ref(), Some(&r));
    assert_eq!(
        ok("tail", store.checkpoint(&id, &tail).await).as_ref(),
        Some(&third),
        "a CAS on one segment leaves the others alone"
    );
    let other = format!("{prefix}cpx");
    assert_eq!(
        ok("other query", store.checkpoint(&other, &tail).await),
        None,
        "checkpoints of different queries are independent"
    );
    // Appends: a CAS on the offset that adds to the state's bytes, never replaces them.
    let grown = Segment { partition: 2, start: 0, end: None };
    let piece = |next_offset, bytes: &[u8]| Checkpoint {
        head: next_offset + 7,
        lost: 1,
        ..checkpoint(next_offset, bytes.to_vec())
    };
    assert!(
        !ok(
            "append on missing",
            store.compare_and_append_checkpoint(&id, &grown, 0, &piece(10, b"ab")).await
        ),
        "compare_and_append_checkpoint(): fails when there is no checkpoint"
    );
    assert_eq!(ok("grown", store.checkpoint(&id, &grown).await), None, "failed append wrote");
    let base = checkpoint(10, vec![0, 255, b'\n']);
    assert!(ok("cas grown", store.compare_and_set_checkpoint(&id, &grown, None, &base).await));
    assert!(
        !ok(
            "stale append",
            store.compare_and_append_checkpoint(&id, &grown, 9, &piece(20, b"ab")).await
        ),
        "compare_and_append_checkpoint(): a stale expected offset fails"
    );
    assert_eq!(ok("grown", store.checkpoint(&id, &grown).await).as_ref(), Some(&base));
    for (expected, next, bytes) in [(10, 20, &[1u8, 0, 2][..]), (20, 20, &[][..]), (20, 31, b"x")] {
        assert!(
            ok(
                "append",
                store
                    .compare_and_append_checkpoint(&id, &grown, expected, &piece(next, bytes))
                    .await
            ),
            "compare_and_append_checkpoint(): the current expected offset succeeds"
        );
    }
    assert_eq!(
        ok("grown", store.checkpoint(&id, &grown).await),
        Some(Checkpoint {
            next_offset: 31,
            state: vec![0, 255, b'\n', 1, 0, 2, b'x'],
            head: 38,
            lost: 1
        }),
        "compare_and_append_checkpoint(): the pieces follow the state, the offsets are the last's"
    );
    assert!(
        ok("cas after appends", store.compare_and_set_checkpoint(&id, &grown, Some(31), &r).await),
        "compare_and_set_checkpoint(): replaces an appended state whole"
    );
    assert_eq!(ok("grown", store.checkpoint(&id, &grown).await).as_ref(), Some(&r));
    // Positions: each segment's offsets in the order asked, None where nothing is committed.
    let at = |next_offset, head, lost| Some(Position { next_offset, head, lost });
    assert_eq!(
        ok("positions", store.positions(&id, &[p1, tail, range]).await),
        vec![None, at(2000, 5000, 9), at(500, 517, 2)],
        "positions(): what checkpoint() holds, without the states, in the order asked"
    );
    assert_eq!(ok("no positions", store.positions(&id, &[]).await), vec![]);
    assert_eq!(
        ok("other positions", store.positions(&other, &[tail]).await),
        vec![None],
        "positions(): per query"
    );
}

async fn joiners(store: &dyn StateStore, prefix: &str) {
    let topic = format!("{prefix}topic");
    let joiner = |q: &str, start: i64| ProcessEvent {
        query: format!("{prefix}{q}"),
        segment: Segment { partition: 1, start, end: None },
    };
    let none = ok("take_joiners of nothing", store.take_joiners(&topic, 1).await);
    assert_eq!(none, vec![], "take_joiners(): none at first");
    let (a, b) = (joiner("ja", 40), joiner("jb", 70));
    ok("add_joiner", store.add_joiner(&topic, 1, &a).await);
    ok("add_joiner", store.add_joiner(&topic, 1, &b).await);
    ok("add_joiner elsewhere", store.add_joiner(&topic, 2, &b).await);
    assert_eq!(
        ok("take_joiners", store.take_joiners(&topic, 1).await),
        vec![a.clone(), b.clone()],
        "take_joiners(): every joiner of the partition, in the order added"
    );
    assert_eq!(ok("take again", store.take_joiners(&topic, 1).await), vec![], "taken once");
    assert_eq!(
        ok("take the other partition", store.take_joiners(&topic, 2).await),
        vec![b],
        "partitions are apart"
    );
    // Taken by invocations at once: each joiner goes to exactly one of them.
    for i in 0..6 {
        ok("add_joiner", store.add_joiner(&topic, 1, &joiner("jc", i)).await);
    }
    let takes = (0..4).map(|_| store.take_joiners(&topic, 1)).collect();
    let mut taken: Vec<i64> = join_all(takes)
        .await
        .into_iter()
        .flat_map(|r| ok("concurrent take_joiners", r))
        .map(|j| j.segment.start)
        .collect();
    taken.sort_unstable();
    assert_eq!(taken, (0..6).collect::<Vec<_>>(), "concurrent takes: each joiner exactly once");
    // At most MAX_JOINERS_TAKEN at once; the rest on the next take.
    for i in 0..=MAX_JOINERS_TAKEN as i64 {
        ok("add_joiner", store.add_joiner(&topic, 1, &joiner("jd", i)).await);
    }
    let first = ok("take_joiners", store.take_joiners(&topic, 1).await);
    assert_eq!(first.len(), MAX_JOINERS_TAKEN, "take_joiners(): at most MAX_JOINERS_TAKEN");
    assert_eq!(first[0], joiner("jd", 0), "the oldest first");
    let rest = ok("take_joiners", store.take_joiners(&topic, 1).await);
    assert_eq!(rest, vec![joiner("jd", MAX_JOINERS_TAKEN as i64)], "the rest next time");
}

async fn concurrent_checkpoints(store: &dyn StateStore, prefix: &str) {
    let id = format!("{prefix}cpx");
    let seg = Segment { partition: 3, start: 0, end: None };
    for (round, expected) in [(0u8, None), (1, Some(0))] {
        let news: Vec<Checkpoint> = (0..8)
            .map(|i| checkpoint(100 * (i64::from(round) + 1) + i, vec![round, i as u8]))
            .collect();
        let attempts = news
            .iter()
            .map(|new| store.compare_and_set_checkpoint(&id, &seg, expected, new))
            .collect();
        let outcomes: Vec<bool> =
            join_all(attempts).await.into_iter().map(|r| ok("concurrent cas", r)).collect();
        let winners: Vec<usize> = (0..outcomes.len()).filter(|&i| outcomes[i]).collect();
        assert_eq!(
            winners.len(),
            1,
            "compare_and_set_checkpoint(): exactly one of concurrent CASes from {expected:?} wins, \
             got {outcomes:?}"
        );
        assert_eq!(
            ok("checkpoint", store.checkpoint(&id, &seg).await).as_ref(),
            Some(&news[winners[0]]),
            "the stored checkpoint is the winner's"
        );
        if round == 0 {
            // Reset to a known offset for the next round.
            let winner = news[winners[0]].next_offset;
            assert!(ok(
                "cas to 0",
                store
                    .compare_and_set_checkpoint(&id, &seg, Some(winner), &checkpoint(0, vec![]))
                    .await
            ));
        }
    }
}

async fn results(store: &dyn StateStore, prefix: &str) {
    let id = format!("{prefix}res");
    assert_eq!(ok("result", store.result(&id).await), None, "result(): None before the first");
    assert_eq!(
        ok("messages_since 0", store.messages_since(&id, 0).await),
        Some(vec![]),
        "messages_since(): nothing yet is an empty list, not a gap"
    );
    let r1 = result_record(1, 1);
    let m1 = delta(1, 1);
    assert!(
        !ok("cas 1 on none", store.compare_and_set_result(&id, 1, &r1, m1.clone()).await),
        "compare_and_set_result(): expecting revision 1 fails when there is no result"
    );
    assert_eq!(ok("result", store.result(&id).await), None, "a failed result CAS wrote");
    assert_eq!(
        ok("messages_since", store.messages_since(&id, 0).await),
        Some(vec![]),
        "a failed result CAS appended a message"
    );
    assert!(
        ok("cas 0->1", store.compare_and_set_result(&id, 0, &r1, m1.clone()).await),
        "compare_and_set_result(): expecting 0 succeeds when there is no result"
    );
    assert_eq!(ok("result", store.result(&id).await).as_ref(), Some(&r1), "result(): round trip");
    let r2 = result_record(2, 2);
    let m2 = delta(2, 2);
    assert!(
        !ok("stale cas 0", store.compare_and_set_result(&id, 0, &r2, m2.clone()).await),
        "compare_and_set_result(): a stale revision fails"
    );
    assert!(ok("cas 1->2", store.compare_and_set_result(&id, 1, &r2, m2.clone()).await));
    // A progress-only change: the revision moves, the version does not.
    let r3 = result_record(3, 2);
    let m3 = progress(2, 3);
    assert!(ok("cas 2->3", store.compare_and_set_result(&id, 2, &r3, m3.clone()).await));
    let r4 = result_record(4, 3);
    let m4 = delta(3, 4);
    assert!(
        !ok("cas on the version", store.compare_and_set_result(&id, 2, &r4, m4.clone()).await),
        "compare_and_set_result(): the CAS is on the revision, not the version"
    );
    assert!(
        !ok("cas 1 again", store.compare_and_set_result(&id, 1, &r4, m4.clone()).await),
        "compare_and_set_result(): a stale revision fails"
    );
    assert_eq!(
        ok("result", store.result(&id).await).as_ref(),
        Some(&r3),
        "compare_and_set_result(): a failed CAS changes nothing"
    );
    assert!(ok("cas 3->4", store.compare_and_set_result(&id, 3, &r4, m4.clone()).await));
    assert_eq!(ok("result", store.result(&id).await).as_ref(), Some(&r4));

    let all = vec![m1.clone(), m2.clone(), m3.clone(), m4.clone()];
    assert_eq!(
        ok("messages_since 0", store.messages_since(&id, 0).await),
        Some(all.clone()),
        "messages_since(0): every message, oldest first, exactly as appended"
    );
    assert_eq!(
        ok("messages_since 1", store.messages_since(&id, 1).await),
        Some(all[1..].to_vec()),
        "messages_since(v): the messages with versions after v"
    );
    assert_eq!(
        ok("messages_since 2", store.messages_since(&id, 2).await),
        Some(vec![m4.clone()]),
        "messages_since(v): the messages with versions after v"
    );
    assert_eq!(
        ok("messages_since 3", store.messages_since(&id, 3).await),
        Some(vec![]),
        "messages_since(current): an empty list"
    );
    assert_eq!(
        ok("messages_since 9", store.messages_since(&id, 9).await),
        Some(vec![]),
        "messages_since(ahead of current): an empty list"
    );
    for v in 0..=4 {
        let shared = ok("shared_messages_since", store.shared_messages_since(&id, v).await);
        assert_eq!(
            shared.map(|m| m.iter().map(|m| (**m).clone()).collect::<Vec<_>>()),
            ok("messages_since", store.messages_since(&id, v).await),
            "shared_messages_since({v}): the same messages as messages_since"
        );
    }
}

async fn concurrent_results(store: &dyn StateStore, prefix: &str) {
    let id = format!("{prefix}resx");
    for expected in [0u64, 1] {
        let news: Vec<(ResultRecord, Message)> = (0..8)
            .map(|i| {
                let mut r = result_record(expected + 1, expected + 1);
                r.result = json!({"writer": i}).into();
                (r, delta(expected + 1, i))
            })
            .collect();
        let attempts = news
            .iter()
            .map(|(r, m)| store.compare_and_set_result(&id, expected, r, m.clone()))
            .collect();
        let outcomes: Vec<bool> =
            join_all(attempts).await.into_iter().map(|r| ok("concurrent result cas", r)).collect();
        let winners: Vec<usize> = (0..outcomes.len()).filter(|&i| outcomes[i]).collect();
        assert_eq!(
            winners.len(),
            1,
            "compare_and_set_result(): exactly one of concurrent CASes from {expected} wins, \
             got {outcomes:?}"
        );
        let (r, m) = &news[winners[0]];
        assert_eq!(ok("result", store.result(&id).await).as_ref(), Some(r), "the winner's result");
        let since = ok("messages_since", store.messages_since(&id, expected).await);
        assert_eq!(
            since,
            Some(vec![m.clone()]),
            "compare_and_set_result(): only the winner's message is appended"
        );
    }
}

async fn bounded_ring(store: &dyn StateStore, prefix: &str, ring: usize) {
    let id = format!("{prefix}ring");
    let n = ring as u64 + 3;
    for v in 1..=n {
        let r = result_record(v, v);
        assert!(
            ok("ring cas", store.compare_and_set_result(&id, v - 1, &r, delta(v, v)).await),
            "compare_and_set_result(): sequential CAS {} -> {v} succeeds",
            v - 1
        );
    }
    let tail: Vec<u64> = (4..=n).collect();
    let since3 = ok("messages_since", store.messages_since(&id, 3).await)
        .unwrap_or_else(|| panic!("messages_since(3): the ring of {ring} holds versions 4..={n}"));
    assert_eq!(since3.len(), ring, "the ring keeps exactly the last {ring} messages");
    assert_eq!(versions(&since3), tail, "messages_since(3): consecutive, oldest first");
    assert_eq!(since3[0], delta(4, 4), "ring messages are stored as appended");
    assert_eq!(
        ok("messages_since 0", store.messages_since(&id, 0).await),
        None,
        "messages_since(v): None when the ring no longer holds v + 1"
    );
    assert!(
        ok("shared_messages_since 0", store.shared_messages_since(&id, 0).await).is_none(),
        "shared_messages_since(v): None when the ring no longer holds v + 1"
    );
    assert_eq!(
        ok("messages_since 2", store.messages_since(&id, 2).await),
        None,
        "messages_since(v): None when the ring no longer holds v + 1"
    );
    assert_eq!(
        ok("messages_since n-1", store.messages_since(&id, n - 1).await).map(|m| versions(&m)),
        Some(vec![n]),
        "messages_since(current - 1): the last message"
    );
    assert_eq!(
        ok("messages_since n", store.messages_since(&id, n).await),
        Some(vec![]),
        "messages_since(current): an empty list"
    );

    // A gap before a message that is not a delta (here a snapshot) needs no other snapshot.
    let id = format!("{prefix}ringp");
    for v in 1..=ring as u64 + 1 {
        let record = result_record(v, v);
        let message = if v == 2 { Message::snapshot("q", &record) } else { delta(v, v) };
        assert!(ok("ring cas", store.compare_and_set_result(&id, v - 1, &record, message).await));
    }
    assert_eq!(
        ok("messages_since 0", store.messages_since(&id, 0).await).map(|m| versions(&m)),
        Some((2..=ring as u64 + 1).collect()),
        "messages_since(v): a gap before a non-delta message is not a gap"
    );
}

async fn subscriptions(store: &dyn StateStore, prefix: &str) {
    let id = format!("{prefix}subs");
    assert_eq!(ok("subscriptions", store.subscriptions(&id).await), vec![], "none at first");
    let s1 =
        Subscription { url: "https://example.com/hook?a=1&b=é".into(), secret: "s3cr3t".into() };
    let s2 = Subscription { url: "http://127.0.0.1:9/x".into(), secret: String::new() };
    ok("subscribe s1", store.subscribe(&id, &s1).await);
    ok("subscribe s2", store.subscribe(&id, &s2).await);
    assert_eq!(
        ok("subscriptions", store.subscriptions(&id).await),
        vec![s1.clone(), s2.clone()],
        "subscriptions(): every subscription, in the order added"
    );
    assert_eq!(
        ok("subscriptions q1", store.subscriptions(&format!("{prefix}q1")).await),
        vec![],
        "subscriptions of different queries are independent"
    );
    assert!(
        !ok("unsubscribe elsewhere", store.unsubscribe(&format!("{prefix}q1"), &s1.url).await),
        "unsubscribe(): another query's subscription is not removed"
    );
    assert!(ok("unsubscribe s1", store.unsubscribe(&id, &s1.url).await), "unsubscribe(): removes");
    assert!(!ok("unsubscribe s1 again", store.unsubscribe(&id, &s1.url).await), "once");
    assert_eq!(
        ok("subscriptions", store.subscriptions(&id).await),
        vec![s2.clone()],
        "unsubscribe(): the others stay"
    );
    assert!(ok("unsubscribe s2", store.unsubscribe(&id, &s2.url).await), "the last one");
    assert_eq!(ok("subscriptions", store.subscriptions(&id).await), vec![], "none left");
}

async fn views(store: &dyn StateStore, prefix: &str) {
    let (a, b) = (format!("{prefix}view-a"), format!("{prefix}view-b"));
    let mine = |all: Vec<(String, ViewDef)>| -> Vec<(String, ViewDef)> {
        all.into_iter().filter(|(name, _)| name.starts_with(prefix)).collect()
    };
    assert_eq!(ok("view", store.view(&a).await), None, "no view at first");
    let v1 = ViewDef { id: "q_1".into(), pending: None };
    let v2 = ViewDef { id: "q_1".into(), pending: Some("q_2".into()) };
    let wrong = ViewDef { id: "q_9".into(), pending: None };
    assert!(
        !ok("cas view over a missing one", store.compare_and_set_view(&a, Some(&v1), &v2).await),
        "compare_and_set_view(): expecting a view that does not exist fails"
    );
    assert!(ok("create view", store.compare_and_set_view(&a, None, &v1).await), "created");
    assert!(
        !ok("create again", store.compare_and_set_view(&a, None, &v2).await),
        "compare_and_set_view(None): only when there is no view"
    );
    assert!(
        !ok("stale cas", store.compare_and_set_view(&a, Some(&wrong), &v2).await),
        "compare_and_set_view(): a stale expectation fails"
    );
    assert_eq!(ok("view", store.view(&a).await), Some(v1.clone()), "unchanged by failures");
    assert!(ok("cas view", store.compare_and_set_view(&a, Some(&v1), &v2).await), "replaced");
    assert_eq!(ok("view", store.view(&a).await), Some(v2.clone()), "pending kept");
    assert!(ok("create b", store.compare_and_set_view(&b, None, &wrong).await));
    assert_eq!(
        mine(ok("views", store.views().await)),
        vec![(a.clone(), v2), (b, wrong)],
        "views(): every view, by name"
    );
    // Two writers racing from the same expectation: exactly one wins.
    let current = ok("view", store.view(&a).await).expect("a view");
    let (x, y) =
        (ViewDef { id: "q_x".into(), pending: None }, ViewDef { id: "q_y".into(), pending: None });
    let won: Vec<bool> = join_all(vec![
        store.compare_and_set_view(&a, Some(&current), &x),
        store.compare_and_set_view(&a, Some(&current), &y),
    ])
    .await
    .into_iter()
    .map(|r| ok("racing view cas", r))
    .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "compare_and_set_view(): one racer wins");
}

async fn removal(store: &dyn StateStore, prefix: &str) {
    let id = format!("{prefix}rm");
    let q = query_record(&id, "{}");
    let keep = format!("{prefix}q2");
    let seg =
        |p: u32| Segment { partition: p, start: 0, end: if p == 0 { Some(10) } else { None } };
    assert!(ok("register rm", store.register(&q).await));
    ok("touch", store.touch(&id, 1).await);
    ok("add_refs", store.add_refs(&id, 4).await);
    for p in 0..3 {
        assert!(ok(
            "cas",
            store.compare_and_set_checkpoint(&id, &seg(p), None, &checkpoint(5, vec![1])).await
        ));
    }
    // A checkpoint of a segment the query record does not list is removed too.
    let extra = Segment { partition: 9, start: 42, end: Some(43) };
    assert!(ok(
        "cas extra",
        store.compare_and_set_checkpoint(&id, &extra, None, &checkpoint(1, vec![])).await
    ));
    assert!(ok(
        "cas result",
        store.compare_and_set_result(&id, 0, &result_record(1, 1), delta(1, 1)).await
    ));
    ok(
        "subscribe",
        store.subscribe(&id, &Subscription { url: "u".into(), secret: "s".into() }).await,
    );
    assert!(ok(
        "cas keep",
        store.compare_and_set_checkpoint(&keep, &seg(0), None, &checkpoint(3, vec![3])).await
    ));

    ok("remove", store.remove(&id).await);
    assert_eq!(ok("query", store.query(&id).await), None, "remove(): the query record is gone");
    assert!(
        !ok("queries", store.queries().await).contains(&id),
        "remove(): the id is no longer listed"
    );
    for s in [seg(0), seg(1), seg(2), extra] {
        assert_eq!(
            ok("checkpoint", store.checkpoint(&id, &s).await),
            None,
            "remove(): checkpoint {} is gone",
            s.key()
        );
    }
    assert_eq!(ok("result", store.result(&id).await), None, "remove(): the result is gone");
    assert_eq!(
        ok("messages_since", store.messages_since(&id, 0).await),
        Some(vec![]),
        "remove(): the ring is gone"
    );
    assert_eq!(ok("subscriptions", store.subscriptions(&id).await), vec![], "remove(): subs gone");
    assert_eq!(ok("last_touch", store.last_touch(&id).await), None, "remove(): last touch gone");
    assert_eq!(ok("touch", store.touch(&id, 77).await), 77, "remove(): the last touch is gone");
    assert_eq!(ok("add_refs", store.add_refs(&id, 0).await), 0, "remove(): the refs are gone");
    assert_eq!(
        ok("kept", store.checkpoint(&keep, &seg(0)).await),
        Some(checkpoint(3, vec![3])),
        "remove(): other queries are untouched"
    );
    assert!(ok("query q2", store.query(&keep).await).is_some(), "remove(): other queries kept");
    ok("remove again", store.remove(&id).await);
    ok("remove unknown", store.remove(&format!("{prefix}never-registered")).await);
    assert!(ok("register again", store.register(&q).await), "register() after remove() is new");
    assert!(
        ok(
            "cas None after remove",
            store.compare_and_set_checkpoint(&id, &seg(0), None, &checkpoint(1, vec![])).await
        ),
        "compare_and_set_checkpoint(None) succeeds again after remove()"
    );
    assert!(
        ok(
            "result cas 0 after remove",
            store.compare_and_set_result(&id, 0, &result_record(1, 1), delta(1, 1)).await
        ),
        "compare_and_set_result(0) succeeds again after remove()"
    );
}
