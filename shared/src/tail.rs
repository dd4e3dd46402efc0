//! A query's live tail, committed as one unit: one checkpoint for all of its open segments.
//!
//! Why: a live query's open segments (one per partition) each used to be a unit of commit of
//! their own, and with 100 live queries on four partitions that was 85–90% of what a live
//! segment cost per wake-up (its checkpoint's encode, compare-and-set and store write, its
//! merges into the result; BENCHMARKS.md, #14). As one unit a wake-up writes one checkpoint per
//! query, whatever the partitions.
//!
//! # The checkpoint
//! [`Checkpoint::state`] is a sequence of pieces, each a [`TailPosition`] per open segment and a
//! state ([`Plan::encode`]): a whole write is one piece, and an append adds one
//! ([`crate::ports::StateStore::compare_and_append_checkpoint`], whose store-side concatenation
//! needs no change). The tail stands where its last piece says; its state is the merge of every
//! piece's ([`Plan::decode_pieces`]). [`Checkpoint::next_offset`], `head` and `lost` are the
//! sums of the positions' fields.
//!
//! # Why compare-and-set on the sum is exact
//! A checkpoint is replaced by compare-and-set on its `next_offset` alone. For the tail that is
//! the sum of its partitions' next offsets, and it identifies the whole vector: each
//! partition's next offset only grows (a commit moves it past the records it folded, or past
//! records lost to retention), so the vector stored at any later moment is at least the one an
//! invocation loaded, partition by partition, and equal sums mean equal vectors. A commit that
//! moved no partition folded no record and changes nothing. So a sum never comes back once
//! the vector moved: an invocation that loaded the tail at sum `s` wins its compare-and-set
//! exactly when the tail is still the one it loaded, as with one segment's offset.
//!
//! Likewise a partition never reads past its head (`next <= head` each), so the sums say
//! whether every partition is at its head: `next_offset >= head` exactly when each is.

use serde::{Deserialize, Serialize, Serializer};

use crate::error::StateError;
use crate::plan::{PartialState, Plan};
use crate::ports::{Checkpoint, Position, QueryRecord};

/// Where one open segment of the tail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailPosition {
    /// The partition.
    pub partition: u32,
    /// Next offset to read.
    pub next: i64,
    /// The partition head seen by the last batch.
    pub head: i64,
    /// Records lost to retention before they were read.
    pub lost: u64,
}

impl TailPosition {
    /// The same, as a segment's [`Position`].
    pub fn position(&self) -> Position {
        Position { next_offset: self.next, head: self.head, lost: self.lost }
    }
}

/// Where the tail of `query` stands before its first commit: each open segment at its start.
pub fn starts(query: &QueryRecord) -> Vec<TailPosition> {
    query
        .open_segments()
        .map(|s| TailPosition { partition: s.partition, next: s.start, head: s.start, lost: 0 })
        .collect()
}

/// The tail's summed position ([`Checkpoint::next_offset`], `head`, `lost`) at `positions`.
pub fn summed(positions: &[TailPosition]) -> Position {
    Position {
        next_offset: positions.iter().map(|p| p.next).sum(),
        head: positions.iter().map(|p| p.head).sum(),
        lost: positions.iter().map(|p| p.lost).sum(),
    }
}

/// The tail's checkpoint at `positions`, whose state is `pieces` ([`encode`]d).
pub fn checkpoint(positions: &[TailPosition], pieces: Vec<u8>) -> Checkpoint {
    let at = summed(positions);
    Checkpoint { next_offset: at.next_offset, state: pieces, head: at.head, lost: at.lost }
}

/// One piece: `positions`, then `state` ([`Plan::encode`]d) as one byte string.
pub fn encode(plan: &Plan, positions: &[TailPosition], state: &PartialState) -> Vec<u8> {
    let encoded = plan.encode(state);
    // Serialising plain data into a Vec cannot fail.
    postcard::to_stdvec(&(positions, AsBytes(&encoded))).unwrap_or_default()
}

/// Where the tail stands and its state (the merge of every piece's).
pub fn decode(plan: &Plan, bytes: &[u8]) -> Result<(Vec<TailPosition>, PartialState), StateError> {
    let (positions, states) = pieces(bytes)?;
    Ok((positions, plan.decode_pieces(states)?))
}

/// Where the tail stands, without decoding its state.
pub fn positions(bytes: &[u8]) -> Result<Vec<TailPosition>, StateError> {
    Ok(pieces(bytes)?.0)
}

/// The last piece's positions and every piece's encoded state.
fn pieces(mut bytes: &[u8]) -> Result<(Vec<TailPosition>, Vec<&[u8]>), StateError> {
    let mut last = None;
    let mut states = Vec::new();
    while !bytes.is_empty() {
        let ((positions, state), rest): ((Vec<TailPosition>, &[u8]), &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| StateError::Corrupt(e.to_string()))?;
        last = Some(positions);
        states.push(state);
        bytes = rest;
    }
    let positions = last.ok_or_else(|| StateError::Corrupt("empty tail checkpoint".into()))?;
    Ok((positions, states))
}

/// A byte string written as one (postcard: a length, then the bytes; the same layout as a
/// sequence of `u8`s, which a borrowed `&[u8]` reads back).
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Record;
    use crate::limits::Limits;
    use crate::ports::Segment;

    fn plan() -> Plan {
        let body = serde_json::json!({"topic": "t", "aggs": {"k": {"terms": {"field": "id"}}}});
        Plan::parse(&body, &Limits::default()).expect("valid")
    }

    fn folded(plan: &Plan, keys: std::ops::Range<u32>) -> PartialState {
        let mut state = plan.empty_state();
        for k in keys {
            let value = format!(r#"{{"id":"key-{}"}}"#, k % 7).into_bytes();
            let rec =
                Record { value: &value, timestamp: 0, offset: k as i64, partition: 0, key: None };
            plan.fold(&mut state, &rec).expect("within the budget");
        }
        state
    }

    fn at(partition: u32, next: i64, head: i64, lost: u64) -> TailPosition {
        TailPosition { partition, next, head, lost }
    }

    #[test]
    fn a_whole_tail_decodes_to_its_positions_and_state() {
        let plan = plan();
        let positions = [at(0, 10, 12, 0), at(1, 7, 7, 2)];
        let state = folded(&plan, 0..30);
        let bytes = encode(&plan, &positions, &state);
        let (back, decoded) = decode(&plan, &bytes).expect("decodes");
        assert_eq!(back, positions);
        assert_eq!(decoded, state);
        let cp = checkpoint(&positions, bytes);
        assert_eq!((cp.next_offset, cp.head, cp.lost), (17, 19, 2));
    }

    #[test]
    fn appended_pieces_stand_at_the_last_and_hold_the_merge_of_all() {
        let plan = plan();
        let mut bytes = encode(&plan, &[at(0, 10, 10, 0), at(1, 5, 5, 0)], &folded(&plan, 0..15));
        bytes.extend(encode(&plan, &[at(0, 14, 14, 0), at(1, 5, 9, 0)], &folded(&plan, 15..19)));
        bytes.extend(encode(&plan, &[at(0, 14, 14, 0), at(1, 9, 9, 0)], &folded(&plan, 19..23)));
        let (positions, state) = decode(&plan, &bytes).expect("decodes");
        assert_eq!(positions, [at(0, 14, 14, 0), at(1, 9, 9, 0)]);
        assert_eq!(positions, super::positions(&bytes).expect("reads"));
        // The merge of the pieces is the state of one pass over all their records.
        let one_pass = folded(&plan, 0..23);
        assert_eq!(plan.render(&state).expect("renders"), plan.render(&one_pass).expect("renders"));
        assert_eq!(state.records(), 23);
    }

    #[test]
    fn bytes_that_are_no_tail_are_refused() {
        let plan = plan();
        assert!(decode(&plan, &[]).is_err());
        // A segment's own state is not a tail's.
        assert!(decode(&plan, &plan.encode(&folded(&plan, 0..3))).is_err());
        let mut trailing = encode(&plan, &[at(0, 1, 1, 0)], &folded(&plan, 0..1));
        trailing.push(0x05);
        assert!(decode(&plan, &trailing).is_err());
    }

    #[test]
    fn a_tail_with_no_checkpoint_stands_at_its_open_segments_starts() {
        let query = QueryRecord {
            id: "q_1".into(),
            body: "{}".into(),
            topic: crate::topic::Topic::new("t").expect("valid"),
            segments: vec![
                Segment { partition: 0, start: 0, end: Some(40) },
                Segment { partition: 0, start: 40, end: None },
                Segment { partition: 1, start: 25, end: None },
            ],
            created_ms: 0,
        };
        assert_eq!(starts(&query), [at(0, 40, 40, 0), at(1, 25, 25, 0)]);
        assert_eq!(query.units(), [query.segments[0], Segment::TAIL]);
        assert!(query.has_unit(&Segment::TAIL) && !query.has_unit(&query.segments[1]));
        assert!(summed(&starts(&query)).at_head());
    }
}
