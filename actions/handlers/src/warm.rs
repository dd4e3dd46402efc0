//! Decoded states a warm process keeps between invocations.
//!
//! A live query is woken every few milliseconds with a handful of new records, and each wake-up
//! used to decode every segment's checkpoint, fold, encode it again, then decode and merge every
//! segment once more for the result: work in the size of the state, for a batch in the size of
//! a few records. A warm container (and `kappa dev`, where every invocation runs in one process)
//! keeps instead, after each commit, the decoded state of each segment and the merged state of
//! the query, and the next invocation folds its records into an empty *delta* that it merges
//! into both: work in the size of the batch.
//!
//! Why this cannot change an answer: an entry is a memo of a pure function. The state a
//! segment's committed checkpoint holds is fixed by where it stands, its [`Stamp`] (the next
//! offset and the records lost to retention: the records folded are those of the segment
//! below the next offset, minus the lost prefix), because a checkpoint only moves by
//! compare-and-set, so one state is ever committed at one stamp. An entry is therefore used
//! only when its stamp equals the stamp of the checkpoint just loaded from the store (the
//! truth), and only states that were committed are put here. A crash, a lost compare-and-set or
//! a store that lost its last writes leave a stamp the memo does not have, and the state is
//! decoded as before. The merged state is the merge of the segments' states at a list of
//! stamps, kept with that list.
//!
//! Memory is bounded (`warm_state_bytes`): past it the least recently used entries go, and are
//! decoded again when needed.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use kappa_core::ports::{Checkpoint, Position, QueryRecord, Segment};
use kappa_core::tail::TailPosition;
use kappa_core::{PartialState, RenderMemo};

/// Where a segment's committed state stands: its next offset and the records lost before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// The checkpoint's next offset.
    pub next: i64,
    /// Records lost to retention.
    pub lost: u64,
}

impl Stamp {
    /// The stamp of `segment` at `checkpoint` (no checkpoint: at its start, the empty state).
    pub fn of(segment: &Segment, checkpoint: Option<&Checkpoint>) -> Stamp {
        Stamp::at(segment, checkpoint.map(Position::from))
    }

    /// The stamp of `segment` where its checkpoint stands (`None`: at its start).
    pub fn at(segment: &Segment, at: Option<Position>) -> Stamp {
        at.map_or(Stamp { next: segment.start, lost: 0 }, |c| Stamp {
            next: c.next_offset,
            lost: c.lost,
        })
    }
}

/// A query as registered (a query deleted and registered again is another one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct QueryKey {
    id: String,
    created_ms: i64,
}

impl QueryKey {
    fn of(query: &QueryRecord) -> QueryKey {
        QueryKey { id: query.id.clone(), created_ms: query.created_ms }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Segment(QueryKey, Segment),
    Merged(QueryKey),
}

struct Entry {
    /// Per segment of the key (one for a segment's state, every segment of the query in its
    /// order for the merged state).
    stamps: Vec<Stamp>,
    kept: Kept,
    /// For a query's tail: where each of its partitions stands (the stamp is their sum).
    tail: Vec<TailPosition>,
    bytes: usize,
    used: u64,
}

/// A state kept warm, with what is known of its render (a merged state's only).
pub struct Kept {
    /// The state.
    pub state: PartialState,
    /// For a merged state: the result revision whose result is this state's render, when
    /// the refresh that kept it wrote or confirmed that revision.
    pub rendered: Option<u64>,
    /// For a merged state: what its render remembered for the next
    /// ([`kappa_core::Plan::render_after`]).
    pub memo: Option<RenderMemo>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
    clock: u64,
}

/// The decoded states kept by one process, for one state store.
pub struct WarmStates {
    inner: Mutex<Inner>,
    budget: usize,
}

impl std::fmt::Debug for WarmStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("WarmStates")
            .field("entries", &inner.entries.len())
            .field("bytes", &inner.bytes)
            .field("budget", &self.budget)
            .finish()
    }
}

/// Bytes counted for an entry besides its state's estimate.
const ENTRY_OVERHEAD: usize = 256;

impl WarmStates {
    /// Keep at most about `budget` bytes of states (0: keep nothing).
    pub fn new(budget: usize) -> WarmStates {
        WarmStates { inner: Mutex::default(), budget }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Take the committed state of `segment` at `stamp`, if kept (taken: an invocation running
    /// beside this one on the same segment decodes its own).
    pub fn take_segment(
        &self,
        query: &QueryRecord,
        segment: Segment,
        stamp: Stamp,
    ) -> Option<PartialState> {
        self.take(Key::Segment(QueryKey::of(query), segment), &[stamp]).map(|kept| kept.state)
    }

    /// Keep `state`, committed for `segment` at `stamp`.
    pub fn put_segment(
        &self,
        query: &QueryRecord,
        segment: Segment,
        stamp: Stamp,
        state: PartialState,
    ) {
        let kept = Kept { state, rendered: None, memo: None };
        self.put(Key::Segment(QueryKey::of(query), segment), vec![stamp], kept, Vec::new());
    }

    /// Take the committed state of `query`'s tail at `stamp` (its summed position), if kept,
    /// with where each of its partitions stands.
    pub fn take_tail(
        &self,
        query: &QueryRecord,
        stamp: Stamp,
    ) -> Option<(PartialState, Vec<TailPosition>)> {
        let entry = self.take_entry(Key::Segment(QueryKey::of(query), Segment::TAIL), &[stamp])?;
        Some((entry.kept.state, entry.tail))
    }

    /// Keep `state`, committed for `query`'s tail at `positions` (stamped with their sum).
    pub fn put_tail(&self, query: &QueryRecord, positions: Vec<TailPosition>, state: PartialState) {
        let at = kappa_core::tail::summed(&positions);
        let stamp = Stamp { next: at.next_offset, lost: at.lost };
        let kept = Kept { state, rendered: None, memo: None };
        self.put(Key::Segment(QueryKey::of(query), Segment::TAIL), vec![stamp], kept, positions);
    }

    /// Take the merged state of `query`'s segments at `stamps` (one per segment, in the
    /// query's order), if kept, with the result revision it renders to, if known, and what
    /// its render remembered.
    pub fn take_merged(&self, query: &QueryRecord, stamps: &[Stamp]) -> Option<Kept> {
        self.take(Key::Merged(QueryKey::of(query)), stamps)
    }

    /// Keep `kept.state`, the merge of `query`'s segments at `stamps`; `kept.rendered`: the
    /// result revision whose result is the state's render (written or confirmed by the
    /// caller). A revision is written once, so while the store still holds it, its result
    /// needs no new render to be known. `kept.memo`: what the state's render remembered.
    pub fn put_merged(&self, query: &QueryRecord, stamps: Vec<Stamp>, kept: Kept) {
        self.put(Key::Merged(QueryKey::of(query)), stamps, kept, Vec::new());
    }

    /// Forget everything kept of `query` (deleted).
    pub fn forget(&self, id: &str) {
        let mut inner = self.lock();
        let mut freed = 0;
        inner.entries.retain(|key, entry| {
            let of = match key {
                Key::Segment(q, _) | Key::Merged(q) => &q.id,
            };
            let keep = of != id;
            if !keep {
                freed += entry.bytes;
            }
            keep
        });
        inner.bytes -= freed;
    }

    fn take(&self, key: Key, stamps: &[Stamp]) -> Option<Kept> {
        self.take_entry(key, stamps).map(|entry| entry.kept)
    }

    fn take_entry(&self, key: Key, stamps: &[Stamp]) -> Option<Entry> {
        let mut inner = self.lock();
        let entry = inner.entries.remove(&key)?;
        inner.bytes -= entry.bytes;
        // Another stamp: the entry is stale (the store moved on without this process, or
        // went back after losing writes); dropped either way.
        (entry.stamps == stamps).then_some(entry)
    }

    fn put(&self, key: Key, stamps: Vec<Stamp>, kept: Kept, tail: Vec<TailPosition>) {
        let memo_bytes = kept.memo.as_ref().map_or(0, RenderMemo::estimated_bytes);
        let bytes = kept.state.estimated_bytes() + memo_bytes + ENTRY_OVERHEAD;
        if bytes > self.budget / 4 {
            // One state that large would push everything else out; it is decoded each time.
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        let entry = Entry { stamps, kept, tail, bytes, used };
        if let Some(old) = inner.entries.insert(key, entry) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        if inner.bytes > self.budget {
            // Evict the least recently kept down to three quarters of the budget, so that
            // eviction runs once per many puts.
            let mut ages: Vec<(u64, Key)> =
                inner.entries.iter().map(|(k, e)| (e.used, k.clone())).collect();
            ages.sort_unstable_by_key(|(used, _)| *used);
            for (_, key) in ages {
                if inner.bytes <= self.budget / 4 * 3 {
                    break;
                }
                if let Some(gone) = inner.entries.remove(&key) {
                    inner.bytes -= gone.bytes;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_core::{Limits, Plan, Topic};

    fn query(created_ms: i64) -> QueryRecord {
        QueryRecord {
            id: "q_warm".into(),
            body: "{}".into(),
            topic: Topic::new("t").expect("a valid name"),
            segments: vec![Segment { partition: 0, start: 0, end: None }],
            created_ms,
        }
    }

    fn state() -> PartialState {
        let body = serde_json::json!({"topic": "t", "aggs": {"n": {"terms": {"field": "k"}}}});
        Plan::parse(&body, &Limits::default()).expect("valid").empty_state()
    }

    const SEGMENT: Segment = Segment { partition: 0, start: 0, end: None };

    #[test]
    fn a_state_is_given_back_only_at_its_stamp_and_only_once() {
        let warm = WarmStates::new(1 << 20);
        let at = |next| Stamp { next, lost: 0 };
        warm.put_segment(&query(1), SEGMENT, at(10), state());
        assert!(warm.take_segment(&query(1), SEGMENT, at(11)).is_none(), "another stamp");
        assert!(
            warm.take_segment(&query(1), SEGMENT, at(10)).is_none(),
            "a stale entry is dropped when asked at another stamp"
        );
        warm.put_segment(&query(1), SEGMENT, at(10), state());
        assert!(
            warm.take_segment(&query(2), SEGMENT, at(10)).is_none(),
            "the same id registered again is another query"
        );
        warm.put_segment(&query(1), SEGMENT, at(10), state());
        let lost = Stamp { next: 10, lost: 3 };
        assert!(warm.take_segment(&query(1), SEGMENT, lost).is_none(), "other records lost");
        warm.put_segment(&query(1), SEGMENT, at(10), state());
        assert!(warm.take_segment(&query(1), SEGMENT, at(10)).is_some());
        assert!(warm.take_segment(&query(1), SEGMENT, at(10)).is_none(), "taken once");
        assert_eq!(warm.bytes(), 0);
    }

    #[test]
    fn memory_stays_within_the_budget_and_the_latest_stay() {
        let one = state().estimated_bytes() + ENTRY_OVERHEAD;
        let warm = WarmStates::new(one * 40);
        for next in 0..1_000 {
            let segment = Segment { partition: 0, start: next, end: Some(next + 1) };
            warm.put_segment(&query(1), segment, Stamp { next, lost: 0 }, state());
            assert!(warm.bytes() <= one * 40);
        }
        let latest = Segment { partition: 0, start: 999, end: Some(1_000) };
        assert!(warm.take_segment(&query(1), latest, Stamp { next: 999, lost: 0 }).is_some());
        let first = Segment { partition: 0, start: 0, end: Some(1) };
        assert!(warm.take_segment(&query(1), first, Stamp { next: 0, lost: 0 }).is_none());
        let none = WarmStates::new(0);
        none.put_segment(&query(1), SEGMENT, Stamp { next: 1, lost: 0 }, state());
        assert_eq!(none.bytes(), 0, "a zero budget keeps nothing");
    }

    #[test]
    fn a_merged_state_comes_back_with_its_render_revision_and_memo() {
        let warm = WarmStates::new(1 << 20);
        let stamps = vec![Stamp { next: 7, lost: 0 }];
        let body =
            serde_json::json!({"topic": "t", "size": 0, "aggs": {"n": {"terms": {"field": "k"}}}});
        // A terms of any size remembers what it showed: a memo that is not the empty one.
        let limits = Limits { terms_memo_from_keys: 0, ..Limits::default() };
        let plan = Plan::parse(&body, &limits).expect("valid");
        let (_, memo) = plan.render_after(&plan.empty_state(), None, &[]).expect("renders");
        assert_ne!(memo, RenderMemo::default(), "the terms remembered");
        warm.put_merged(
            &query(1),
            stamps.clone(),
            Kept { state: state(), rendered: Some(5), memo: Some(memo.clone()) },
        );
        assert!(
            warm.take_merged(&query(1), &[Stamp { next: 8, lost: 0 }]).is_none(),
            "another stamp"
        );
        warm.put_merged(
            &query(1),
            stamps.clone(),
            Kept { state: state(), rendered: Some(5), memo: Some(memo.clone()) },
        );
        let kept = warm.take_merged(&query(1), &stamps).expect("kept at its stamps");
        assert_eq!(kept.rendered, Some(5));
        assert_eq!(kept.memo, Some(memo));
        assert_eq!(warm.bytes(), 0, "taken");
    }

    #[test]
    fn a_deleted_query_is_forgotten() {
        let warm = WarmStates::new(1 << 20);
        warm.put_segment(&query(1), SEGMENT, Stamp { next: 1, lost: 0 }, state());
        let kept = Kept { state: state(), rendered: Some(3), memo: Some(RenderMemo::default()) };
        warm.put_merged(&query(1), vec![Stamp { next: 1, lost: 0 }], kept);
        warm.forget("q_warm");
        assert_eq!(warm.bytes(), 0);
        assert!(warm.take_merged(&query(1), &[Stamp { next: 1, lost: 0 }]).is_none());
    }
}
