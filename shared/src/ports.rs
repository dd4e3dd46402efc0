//! The outside world as the actions see it: the log, the state store and the chain.
//!
//! Actions are written once against these traits; adapters implement them, one per backend
//! (`log-kafka`, `log-embedded`, `state-redis`, `state-embedded`, the OpenWhisk REST chain, and
//! JavaScript-backed ones in the WASM build). Each trait has an in-memory implementation here,
//! for tests and as the reference semantics every adapter must match.
//!
//! # Exactly once
//! The only truth about progress is the checkpoint of each segment (a partition, or an offset
//! range of one): `{next_offset, partial state}`, replaced by compare-and-set on `next_offset`.
//! A batch's records are counted exactly when its checkpoint CAS succeeds, so a duplicated,
//! retried or concurrent invocation of the same batch either wins the CAS once or changes
//! nothing.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::message::Message;
pub use crate::message::{PartitionProgress, Progress, ResultRecord};
use crate::topic::Topic;

/// A failure of an adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct PortError {
    /// Which backend failed (`kafka`, `redis`, `openwhisk`, ...).
    pub backend: &'static str,
    /// What failed; never contains secrets.
    pub message: String,
    /// Whether the same call may succeed later (connection loss, timeout, 429, leader change).
    pub retryable: bool,
}

impl PortError {
    /// A transient failure: retrying (or re-invoking the chain) makes sense.
    pub fn transient(backend: &'static str, message: impl Into<String>) -> Self {
        PortError { backend, message: message.into(), retryable: true }
    }

    /// A permanent failure.
    pub fn permanent(backend: &'static str, message: impl Into<String>) -> Self {
        PortError { backend, message: message.into(), retryable: false }
    }

    /// Whether a retry makes sense.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// Result alias of the ports.
pub type PortResult<T> = Result<T, PortError>;

/// One record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Offset in the partition.
    pub offset: i64,
    /// Log timestamp, epoch ms.
    pub timestamp: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value: a shared slice, so that a log that reads many records into one buffer
    /// hands them out without a copy each.
    pub value: bytes::Bytes,
}

impl LogRecord {
    /// The record as the core folds it, read from `partition`.
    pub fn as_record(&self, partition: u32) -> crate::Record<'_> {
        crate::Record {
            value: &self.value,
            timestamp: self.timestamp,
            offset: self.offset,
            partition: partition as i32,
            key: self.key.as_deref(),
        }
    }
}

/// Copies record values into shared chunks: a log whose client hands out borrowed payloads
/// (librdkafka, JavaScript buffers) pays one allocation per chunk instead of one per record.
#[derive(Debug)]
pub struct ValueArena {
    chunk: bytes::BytesMut,
    chunk_bytes: usize,
}

impl ValueArena {
    /// An arena that allocates chunks of at least `chunk_bytes`.
    pub fn new(chunk_bytes: usize) -> Self {
        ValueArena { chunk: bytes::BytesMut::new(), chunk_bytes }
    }

    /// A shared copy of `value`.
    pub fn copy(&mut self, value: &[u8]) -> bytes::Bytes {
        if self.chunk.capacity() - self.chunk.len() < value.len() {
            // Takes the chunk's allocation back when every copy made from it has been dropped
            // (an arena kept across reads reuses its memory), else allocates a new chunk.
            self.chunk.reserve(self.chunk_bytes.max(value.len()));
        }
        self.chunk.extend_from_slice(value);
        // Splits off what was just written; the rest of the chunk's capacity stays here.
        self.chunk.split().freeze()
    }
}

/// The offsets a partition holds: `[low, high)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    /// First offset still in the log (earlier ones were deleted by retention).
    pub low: i64,
    /// Offset the next appended record will get (the head).
    pub high: i64,
}

/// Bounds of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// First offset wanted.
    pub from: i64,
    /// Stop before this offset (an offset-range segment), or read to the head.
    pub end: Option<i64>,
    /// At most this many records.
    pub max_records: usize,
    /// At most about this many value bytes (at least one record is returned if any exists).
    pub max_bytes: usize,
}

/// The records of one read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Records in offset order, all in `[from, end)`.
    pub records: Vec<LogRecord>,
    /// Where the next read continues: after the last record, or past gaps the log skipped.
    pub next_offset: i64,
    /// The partition's head when read.
    pub high_watermark: i64,
    /// Records wanted but deleted by retention before they were read (`from < low`).
    pub lost: u64,
}

/// Reads a partitioned log (Kafka, the embedded log).
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait LogReader: Send + Sync {
    /// Number of partitions of `topic`; None when the topic does not exist.
    async fn partitions(&self, topic: &str) -> PortResult<Option<u32>>;
    /// Low and high watermarks of one partition.
    async fn watermarks(&self, topic: &str, partition: u32) -> PortResult<Watermarks>;
    /// Read one bounded batch. When `from` is below the low watermark, the batch starts at the
    /// low watermark and reports the skipped offsets in `lost`.
    async fn read(&self, topic: &str, partition: u32, request: ReadRequest) -> PortResult<Batch>;
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Key; records with the same key go to the same partition.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Vec<u8>,
    /// Timestamp, epoch ms.
    pub timestamp: i64,
}

/// Appends to a partitioned log (ingest, tests, the demo).
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait LogWriter: Send + Sync {
    /// Create a topic if it does not exist; returns its partition count. Only a checked name
    /// can become a topic.
    async fn ensure_topic(&self, topic: &Topic, partitions: u32) -> PortResult<u32>;
    /// Append records atomically (all or none) to `partition`; returns the first offset.
    async fn append(&self, topic: &str, partition: u32, records: &[NewRecord]) -> PortResult<i64>;
}

/// The partition a key goes to: FNV-1a of the key (keyless records are spread by the caller).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions.max(1)
}

/// A unit of replay: a partition from `start`, up to `end` (an offset range) or forever (the
/// live tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Segment {
    /// Partition.
    pub partition: u32,
    /// First offset.
    pub start: i64,
    /// Exclusive end; None for the segment that follows the head.
    pub end: Option<i64>,
}

impl Segment {
    /// A query's live tail: every one of its open segments (no end), advanced and committed
    /// as one unit, with one checkpoint ([`crate::tail`]). It names that unit in links and in
    /// the store, never a range of one partition.
    pub const TAIL: Segment = Segment { partition: u32::MAX, start: 0, end: None };

    /// Whether this is [`Segment::TAIL`].
    pub fn is_tail(&self) -> bool {
        *self == Segment::TAIL
    }

    /// A stable name for store keys and logs: `p3@1000`, `p3@1000-2000`, or `tail`.
    pub fn key(&self) -> String {
        if self.is_tail() {
            return "tail".into();
        }
        match self.end {
            Some(e) => format!("p{}@{}-{}", self.partition, self.start, e),
            None => format!("p{}@{}", self.partition, self.start),
        }
    }
}

/// A registered query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRecord {
    /// `q_<hex>`.
    pub id: String,
    /// The request body as posted (re-parsed by every invocation).
    pub body: String,
    /// Topic.
    pub topic: Topic,
    /// The segments that together cover the log from its start.
    pub segments: Vec<Segment>,
    /// Registration time, epoch ms.
    pub created_ms: i64,
}

impl QueryRecord {
    /// The segments that end: offset ranges replayed one by one, each with its checkpoint.
    pub fn closed_segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.end.is_some())
    }

    /// The segments that follow their partition's head, one per partition: the live tail,
    /// committed together as [`Segment::TAIL`].
    pub fn open_segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.end.is_none())
    }

    /// What is committed, each by its own checkpoint: the closed segments, then the tail.
    pub fn units(&self) -> Vec<Segment> {
        let mut units: Vec<Segment> = self.closed_segments().copied().collect();
        if self.open_segments().next().is_some() {
            units.push(Segment::TAIL);
        }
        units
    }

    /// Whether `unit` is one of [`QueryRecord::units`].
    pub fn has_unit(&self, unit: &Segment) -> bool {
        if unit.is_tail() {
            self.open_segments().next().is_some()
        } else {
            unit.end.is_some() && self.segments.contains(unit)
        }
    }
}

/// The committed progress of one segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Next offset to read; everything before it (from the segment start) is in `state`.
    pub next_offset: i64,
    /// The encoded partial state ([`crate::Plan::encode`]).
    #[serde(with = "byte_string")]
    pub state: Vec<u8>,
    /// The partition head seen by the last batch.
    pub head: i64,
    /// Records lost to retention before they were read.
    pub lost: u64,
}

/// [`Checkpoint::state`] as one byte string rather than a sequence of `u8`s: the same bytes in
/// postcard (a length, then the bytes) and in JSON (an array of numbers), written in one copy
/// instead of one serializer call per byte (a live query writes its checkpoints on every
/// wake-up).
mod byte_string {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        // JSON writes bytes as an array of numbers.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

/// Where a segment's checkpoint stands, without its state: what is looked at for every query
/// on every tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// [`Checkpoint::next_offset`].
    pub next_offset: i64,
    /// [`Checkpoint::head`].
    pub head: i64,
    /// [`Checkpoint::lost`].
    pub lost: u64,
}

impl Position {
    /// Whether the segment had reached the head its last batch saw (caught up); a segment
    /// behind it, or never run, is still replaying.
    pub fn at_head(&self) -> bool {
        self.next_offset >= self.head
    }
}

impl From<&Checkpoint> for Position {
    fn from(cp: &Checkpoint) -> Self {
        Position { next_offset: cp.next_offset, head: cp.head, lost: cp.lost }
    }
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Target URL.
    pub url: String,
    /// HMAC secret (never logged).
    pub secret: String,
}

/// A named view: the query its subscribers receive, and the one replacing it once caught up
/// (re-analysis without downtime, api.md "Views").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// The query subscribers receive.
    pub id: String,
    /// The query replacing it once caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

/// Durable state of queries (Redis, the embedded store).
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait StateStore: Send + Sync {
    /// Register a query unless one with the same id exists; true when newly created.
    async fn register(&self, query: &QueryRecord) -> PortResult<bool>;
    /// A registered query.
    async fn query(&self, id: &str) -> PortResult<Option<QueryRecord>>;
    /// Ids of all registered queries.
    async fn queries(&self) -> PortResult<Vec<String>>;
    /// Remove a query and everything stored for it.
    async fn remove(&self, id: &str) -> PortResult<()>;
    /// Record a read or subscription at `now_ms` (for the idle timeout); returns the last touch.
    async fn touch(&self, id: &str, now_ms: i64) -> PortResult<i64>;
    /// The last touch, if any (the idle check reads it without touching).
    async fn last_touch(&self, id: &str) -> PortResult<Option<i64>>;
    /// Add (`delta` > 0) or drop references (subscribers, views); returns the new count.
    async fn add_refs(&self, id: &str, delta: i64) -> PortResult<i64>;

    /// The checkpoint of a segment; None before its first commit.
    async fn checkpoint(&self, id: &str, segment: &Segment) -> PortResult<Option<Checkpoint>>;
    /// Where each of `segments` stands (None before its first commit), in their order, without
    /// the states. The tick reads this for every registered query: a store that can answer in
    /// one round trip (Redis) overrides it.
    async fn positions(&self, id: &str, segments: &[Segment]) -> PortResult<Vec<Option<Position>>> {
        let mut positions = Vec::with_capacity(segments.len());
        for segment in segments {
            positions.push(self.checkpoint(id, segment).await?.as_ref().map(Position::from));
        }
        Ok(positions)
    }
    /// Replace a segment's checkpoint only if its `next_offset` is still `expected` (None: no
    /// checkpoint yet), in one atomic step. False when another invocation got there first.
    async fn compare_and_set_checkpoint(
        &self,
        id: &str,
        segment: &Segment,
        expected: Option<i64>,
        new: &Checkpoint,
    ) -> PortResult<bool>;
    /// Move a segment's checkpoint to `advance`'s `next_offset`, `head` and `lost`, appending
    /// `advance.state` (what the records from `expected` on added, [`crate::Plan::encode`]d)
    /// to its state, only if its `next_offset` is still `expected`, in one atomic step. The
    /// state then decodes to the merge of its pieces ([`crate::Plan::decode`]). False when
    /// another invocation got there first or the segment has no checkpoint.
    ///
    /// A live segment's wake-up then writes the size of its batch, not of its whole state.
    /// This default reads the checkpoint and replaces it whole, compare-and-set; a store that
    /// can append where the state is (Redis, the embedded store) overrides it.
    async fn compare_and_append_checkpoint(
        &self,
        id: &str,
        segment: &Segment,
        expected: i64,
        advance: &Checkpoint,
    ) -> PortResult<bool> {
        let Some(current) = self.checkpoint(id, segment).await? else { return Ok(false) };
        if current.next_offset != expected {
            return Ok(false);
        }
        let mut state = current.state;
        state.extend_from_slice(&advance.state);
        let new = Checkpoint { state, ..advance.clone() };
        self.compare_and_set_checkpoint(id, segment, Some(expected), &new).await
    }

    /// The current result.
    async fn result(&self, id: &str) -> PortResult<Option<ResultRecord>>;
    /// Replace the result only if its `revision` is still `expected` (0: none yet), appending
    /// `message` (the delta or progress message of this change) to the bounded ring of recent
    /// messages and publishing it, in one atomic step. `message` is taken whole: a store that
    /// keeps it (the embedded store's cache, the in-memory ring) keeps it without a copy.
    /// A delta must turn the result at its `from` into `new`'s, and progress leave it as it
    /// was, as subscribers rely on: a store may rebuild `new` from the stored result and the
    /// messages after it (the embedded store writes its result row only every few versions).
    async fn compare_and_set_result(
        &self,
        id: &str,
        expected: u64,
        new: &ResultRecord,
        message: Message,
    ) -> PortResult<bool>;
    /// Messages with versions after `version`, oldest first; None when the ring no longer holds
    /// them all (the subscriber needs a snapshot).
    async fn messages_since(&self, id: &str, version: u64) -> PortResult<Option<Vec<Message>>>;
    /// [`StateStore::messages_since`], as shared values: a store that keeps recent messages
    /// decoded hands every reader the same ones instead of a deep copy each (subscribers of a
    /// busy query read after every batch).
    async fn shared_messages_since(
        &self,
        id: &str,
        version: u64,
    ) -> PortResult<Option<Vec<Arc<Message>>>> {
        Ok(self.messages_since(id, version).await?.map(|m| m.into_iter().map(Arc::new).collect()))
    }

    /// Add a webhook subscription.
    async fn subscribe(&self, id: &str, subscription: &Subscription) -> PortResult<()>;
    /// Webhook subscriptions of a query.
    async fn subscriptions(&self, id: &str) -> PortResult<Vec<Subscription>>;
    /// Remove the webhook subscription of `url` from a query; whether there was one.
    async fn unsubscribe(&self, id: &str, url: &str) -> PortResult<bool>;

    /// A view's definition.
    async fn view(&self, name: &str) -> PortResult<Option<ViewDef>>;
    /// Set a view's definition only if it is still `expected` (None: no such view yet), in one
    /// atomic step. False when another writer got there first (read again and retry).
    async fn compare_and_set_view(
        &self,
        name: &str,
        expected: Option<&ViewDef>,
        new: &ViewDef,
    ) -> PortResult<bool>;
    /// Every view, by name (the switch checks their pending queries).
    async fn views(&self) -> PortResult<Vec<(String, ViewDef)>>;

    /// Leave `event`, a segment of a new query starting where a replay of `topic`'s
    /// `partition` is now, for that replay to take along: the next link fired for a replaying
    /// closed segment of the partition takes it ([`StateStore::take_joiners`]), so both read
    /// together from then on (a replay convoy). A joiner nobody takes is started alone by the
    /// tick, which fires every segment without a checkpoint: nothing depends on this but speed.
    async fn add_joiner(&self, topic: &str, partition: u32, event: &ProcessEvent)
    -> PortResult<()>;
    /// Take the joiners left on `topic`'s `partition`, in the order added, at most
    /// [`MAX_JOINERS_TAKEN`] at once; each is taken once, however many invocations ask at once.
    async fn take_joiners(&self, topic: &str, partition: u32) -> PortResult<Vec<ProcessEvent>>;
}

/// Most joiners one [`StateStore::take_joiners`] returns (the others wait for the next link).
pub const MAX_JOINERS_TAKEN: usize = 256;

/// The event of one process invocation: advance `segment` of `query` by one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessEvent {
    /// Query id.
    pub query: String,
    /// The segment to advance.
    pub segment: Segment,
}

/// The event of one process invocation over several links at once: each member advanced by
/// one batch, the members of one topic partition sharing each read and scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEvent {
    /// The links advanced together.
    pub members: Vec<ProcessEvent>,
}

/// The event of one push invocation: a query whose result reached `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushEvent {
    /// Query id.
    pub query: String,
    /// The version to deliver.
    pub version: u64,
}

/// One link of a chain: the invocation a handler asks for next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Fold the next batch of a segment.
    Process(ProcessEvent),
    /// Fold the next batch of several segments together (the process action too).
    Group(GroupEvent),
    /// Deliver a new result version to webhooks and the gateway.
    Push(PushEvent),
}

impl Link {
    /// The invocation's parameters as OpenWhisk passes them to the action: the event itself.
    pub fn params(&self) -> Value {
        // Plain data with string keys: serialising cannot fail.
        match self {
            Link::Process(event) => serde_json::to_value(event),
            Link::Group(event) => serde_json::to_value(event),
            Link::Push(event) => serde_json::to_value(event),
        }
        .unwrap_or_default()
    }
}

/// The actions links invoke: deployment names such as `kappa/process`, `kappa/push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkActions {
    /// The process action.
    pub process: String,
    /// The push action.
    pub push: String,
}

impl LinkActions {
    /// The action `link` invokes.
    pub fn of(&self, link: &Link) -> &str {
        match link {
            Link::Process(_) | Link::Group(_) => &self.process,
            Link::Push(_) => &self.push,
        }
    }
}

/// Fires the next link of a chain (an OpenWhisk trigger or async action invocation).
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait Chain: Send + Sync {
    /// Ask for one invocation; returns once it is accepted.
    async fn fire(&self, link: Link) -> PortResult<()>;
}

// ------------------------------------------------------------------------------------------
// In-memory implementations: the reference semantics.

/// An in-memory partitioned log.
#[derive(Debug, Default)]
pub struct MemoryLog {
    topics: Mutex<HashMap<String, Vec<MemoryPartition>>>,
}

#[derive(Debug, Default, Clone)]
struct MemoryPartition {
    low: i64,
    records: Vec<LogRecord>,
}

impl MemoryLog {
    /// Delete records before `offset` (as retention would).
    pub fn truncate_before(&self, topic: &str, partition: u32, offset: i64) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = topics.get_mut(topic).and_then(|ps| ps.get_mut(partition as usize)) {
            p.records.retain(|r| r.offset >= offset);
            p.low = p.low.max(offset);
        }
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl LogReader for MemoryLog {
    async fn partitions(&self, topic: &str) -> PortResult<Option<u32>> {
        Ok(self.topics.lock().unwrap_or_else(|e| e.into_inner()).get(topic).map(|p| p.len() as u32))
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> PortResult<Watermarks> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let p = topics.get(topic).and_then(|ps| ps.get(partition as usize)).ok_or_else(|| {
            PortError::permanent("memory-log", format!("no partition {topic}/{partition}"))
        })?;
        Ok(Watermarks { low: p.low, high: p.records.last().map_or(p.low, |r| r.offset + 1) })
    }

    async fn read(&self, topic: &str, partition: u32, request: ReadRequest) -> PortResult<Batch> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let p = topics.get(topic).and_then(|ps| ps.get(partition as usize)).ok_or_else(|| {
            PortError::permanent("memory-log", format!("no partition {topic}/{partition}"))
        })?;
        let high = p.records.last().map_or(p.low, |r| r.offset + 1);
        let from = request.from.max(p.low);
        let lost = (from - request.from).max(0) as u64;
        let end = request.end.map_or(high, |e| e.min(high));
        let mut records = Vec::new();
        let mut bytes = 0;
        let start = p.records.partition_point(|r| r.offset < from);
        for r in &p.records[start..] {
            if r.offset >= end
                || records.len() >= request.max_records
                || (bytes >= request.max_bytes && !records.is_empty())
            {
                break;
            }
            bytes += r.value.len();
            records.push(r.clone());
        }
        let next_offset = records.last().map_or(from.max(end.min(from)), |r| r.offset + 1);
        Ok(Batch { records, next_offset, high_watermark: high, lost })
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl LogWriter for MemoryLog {
    async fn ensure_topic(&self, topic: &Topic, partitions: u32) -> PortResult<u32> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        Ok(topics
            .entry(topic.to_string())
            .or_insert_with(|| vec![MemoryPartition::default(); partitions.max(1) as usize])
            .len() as u32)
    }

    async fn append(&self, topic: &str, partition: u32, records: &[NewRecord]) -> PortResult<i64> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let p = topics.get_mut(topic).and_then(|ps| ps.get_mut(partition as usize)).ok_or_else(
            || PortError::permanent("memory-log", format!("no partition {topic}/{partition}")),
        )?;
        let first = p.records.last().map_or(p.low, |r| r.offset + 1);
        for (i, r) in records.iter().enumerate() {
            p.records.push(LogRecord {
                offset: first + i as i64,
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone().into(),
            });
        }
        Ok(first)
    }
}

/// An in-memory state store.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<MemoryStoreInner>,
    ring: usize,
}

#[derive(Debug, Default)]
struct MemoryStoreInner {
    queries: BTreeMap<String, QueryRecord>,
    touched: HashMap<String, i64>,
    refs: HashMap<String, i64>,
    checkpoints: HashMap<(String, Segment), Checkpoint>,
    results: HashMap<String, ResultRecord>,
    messages: HashMap<String, Vec<Message>>,
    subscriptions: HashMap<String, Vec<Subscription>>,
    views: BTreeMap<String, ViewDef>,
    joiners: Joiners,
}

impl MemoryStore {
    /// A store keeping the last `ring` messages of each query.
    pub fn new(ring: usize) -> Self {
        MemoryStore { inner: Mutex::new(MemoryStoreInner::default()), ring }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryStoreInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(1024)
    }
}

/// Messages after `version` from a ring holding consecutive versions; None when the ring
/// starts after `version + 1` (the gap means a snapshot is needed).
pub fn ring_since<M: Borrow<Message> + Clone>(
    ring: &[M],
    version: u64,
    current: u64,
) -> Option<Vec<M>> {
    if version >= current {
        return Some(Vec::new());
    }
    // From the newest end: a subscriber is usually one message behind a long ring.
    let first = ring.iter().rposition(|m| m.borrow().version() <= version).map_or(0, |i| i + 1);
    if first == ring.len() {
        return None;
    }
    // Only the delta that creates version + 1 (or a snapshot) bridges the gap; if it was trimmed,
    // even when a progress message of that version is still held, the subscriber needs a snapshot.
    let bridges = match ring[first].borrow() {
        Message::Delta { version: v, .. } => *v == version + 1,
        Message::Snapshot { .. } => true,
        _ => false,
    };
    if !bridges {
        return None;
    }
    Some(ring[first..].to_vec())
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl StateStore for MemoryStore {
    async fn register(&self, query: &QueryRecord) -> PortResult<bool> {
        let mut s = self.lock();
        if s.queries.contains_key(&query.id) {
            return Ok(false);
        }
        s.queries.insert(query.id.clone(), query.clone());
        Ok(true)
    }

    async fn query(&self, id: &str) -> PortResult<Option<QueryRecord>> {
        Ok(self.lock().queries.get(id).cloned())
    }

    async fn queries(&self) -> PortResult<Vec<String>> {
        Ok(self.lock().queries.keys().cloned().collect())
    }

    async fn remove(&self, id: &str) -> PortResult<()> {
        let mut s = self.lock();
        s.queries.remove(id);
        s.touched.remove(id);
        s.refs.remove(id);
        s.checkpoints.retain(|(q, _), _| q != id);
        s.results.remove(id);
        s.messages.remove(id);
        s.subscriptions.remove(id);
        Ok(())
    }

    async fn touch(&self, id: &str, now_ms: i64) -> PortResult<i64> {
        let mut s = self.lock();
        let last = s.touched.insert(id.to_string(), now_ms).unwrap_or(now_ms);
        Ok(last)
    }

    async fn last_touch(&self, id: &str) -> PortResult<Option<i64>> {
        Ok(self.lock().touched.get(id).copied())
    }

    async fn add_refs(&self, id: &str, delta: i64) -> PortResult<i64> {
        let mut s = self.lock();
        let n = s.refs.entry(id.to_string()).or_insert(0);
        *n = (*n + delta).max(0);
        Ok(*n)
    }

    async fn checkpoint(&self, id: &str, segment: &Segment) -> PortResult<Option<Checkpoint>> {
        Ok(self.lock().checkpoints.get(&(id.to_string(), *segment)).cloned())
    }

    async fn compare_and_set_checkpoint(
        &self,
        id: &str,
        segment: &Segment,
        expected: Option<i64>,
        new: &Checkpoint,
    ) -> PortResult<bool> {
        let mut s = self.lock();
        let key = (id.to_string(), *segment);
        if s.checkpoints.get(&key).map(|c| c.next_offset) != expected {
            return Ok(false);
        }
        s.checkpoints.insert(key, new.clone());
        Ok(true)
    }

    async fn result(&self, id: &str) -> PortResult<Option<ResultRecord>> {
        Ok(self.lock().results.get(id).cloned())
    }

    async fn compare_and_set_result(
        &self,
        id: &str,
        expected: u64,
        new: &ResultRecord,
        message: Message,
    ) -> PortResult<bool> {
        let mut s = self.lock();
        if s.results.get(id).map_or(0, |r| r.revision) != expected {
            return Ok(false);
        }
        s.results.insert(id.to_string(), new.clone());
        let ring = self.ring;
        let msgs = s.messages.entry(id.to_string()).or_default();
        msgs.push(message);
        if msgs.len() > ring {
            let drop = msgs.len() - ring;
            msgs.drain(..drop);
        }
        Ok(true)
    }

    async fn messages_since(&self, id: &str, version: u64) -> PortResult<Option<Vec<Message>>> {
        let s = self.lock();
        let current = s.results.get(id).map_or(0, |r| r.version);
        Ok(ring_since(s.messages.get(id).map_or(&[][..], Vec::as_slice), version, current))
    }

    async fn subscribe(&self, id: &str, subscription: &Subscription) -> PortResult<()> {
        self.lock().subscriptions.entry(id.to_string()).or_default().push(subscription.clone());
        Ok(())
    }

    async fn subscriptions(&self, id: &str) -> PortResult<Vec<Subscription>> {
        Ok(self.lock().subscriptions.get(id).cloned().unwrap_or_default())
    }

    async fn unsubscribe(&self, id: &str, url: &str) -> PortResult<bool> {
        let mut s = self.lock();
        let Some(subs) = s.subscriptions.get_mut(id) else { return Ok(false) };
        let before = subs.len();
        subs.retain(|sub| sub.url != url);
        Ok(subs.len() < before)
    }

    async fn view(&self, name: &str) -> PortResult<Option<ViewDef>> {
        Ok(self.lock().views.get(name).cloned())
    }

    async fn compare_and_set_view(
        &self,
        name: &str,
        expected: Option<&ViewDef>,
        new: &ViewDef,
    ) -> PortResult<bool> {
        let mut s = self.lock();
        if s.views.get(name) != expected {
            return Ok(false);
        }
        s.views.insert(name.to_string(), new.clone());
        Ok(true)
    }

    async fn views(&self) -> PortResult<Vec<(String, ViewDef)>> {
        Ok(self.lock().views.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    async fn add_joiner(
        &self,
        topic: &str,
        partition: u32,
        event: &ProcessEvent,
    ) -> PortResult<()> {
        self.lock().joiners.add(topic, partition, event);
        Ok(())
    }

    async fn take_joiners(&self, topic: &str, partition: u32) -> PortResult<Vec<ProcessEvent>> {
        Ok(self.lock().joiners.take(topic, partition))
    }
}

/// Replay joiners kept in memory, by topic and partition: [`StateStore::add_joiner`] and
/// [`StateStore::take_joiners`] for the stores that do not keep them elsewhere.
#[derive(Debug, Default)]
pub struct Joiners(HashMap<(String, u32), Vec<ProcessEvent>>);

impl Joiners {
    /// [`StateStore::add_joiner`].
    pub fn add(&mut self, topic: &str, partition: u32, event: &ProcessEvent) {
        self.0.entry((topic.to_string(), partition)).or_default().push(event.clone());
    }

    /// [`StateStore::take_joiners`].
    pub fn take(&mut self, topic: &str, partition: u32) -> Vec<ProcessEvent> {
        let key = (topic.to_string(), partition);
        let Some(waiting) = self.0.get_mut(&key) else { return Vec::new() };
        let taken = waiting.drain(..waiting.len().min(MAX_JOINERS_TAKEN)).collect();
        if waiting.is_empty() {
            self.0.remove(&key);
        }
        taken
    }
}

/// An in-memory chain: fired links queue up for a scheduler (or a test) to run.
#[derive(Debug, Default)]
pub struct MemoryChain {
    fired: Mutex<Vec<Link>>,
}

impl MemoryChain {
    /// Take every link fired so far.
    pub fn take(&self) -> Vec<Link> {
        std::mem::take(&mut *self.fired.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl Chain for MemoryChain {
    async fn fire(&self, link: Link) -> PortResult<()> {
        self.fired.lock().unwrap_or_else(|e| e.into_inner()).push(link);
        Ok(())
    }
}

/// The current time, epoch ms. Handlers take time from here, never from the system, so tests
/// can drive deadlines and idle timeouts.
pub trait Clock: Send + Sync {
    /// Now, epoch ms.
    fn now_ms(&self) -> i64;
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: std::sync::atomic::AtomicI64,
}

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        ManualClock { now: std::sync::atomic::AtomicI64::new(now_ms) }
    }

    /// Move the clock forward.
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Waits, for retry backoff (a timer of the runtime; instant in tests).
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait Timer: Send + Sync {
    /// Wait `ms` milliseconds.
    async fn sleep(&self, ms: u64);

    /// Give the executor's other tasks a turn (between the reads of a long batch). The default
    /// is pending once; an executor whose I/O only advances at its own yield points (tokio)
    /// overrides it.
    async fn yield_now(&self) {
        YieldNow::default().await;
    }
}

/// A future that is pending once (waking itself at once), then ready.
#[derive(Debug, Default)]
pub struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// A timer that returns at once and advances a [`ManualClock`] instead.
#[derive(Debug, Default)]
pub struct InstantTimer {
    /// The clock to advance, if any.
    pub clock: Option<std::sync::Arc<ManualClock>>,
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl Timer for InstantTimer {
    async fn sleep(&self, ms: u64) {
        if let Some(c) = &self.clock {
            c.advance(ms as i64);
        }
    }
}

/// Most bytes of an HTTP answer an adapter reads; the rest is not read (webhooks and the
/// OpenWhisk API answer with a few hundred bytes, and a hostile endpoint must not fill memory).
pub const MAX_RESPONSE_BYTES: usize = 64 << 10;

/// An outgoing HTTP request (webhooks, the push gateway, the OpenWhisk API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Only public addresses may be connected to (a user's webhook): an adapter resolves the
    /// host, keeps the addresses [`is_public_address`] accepts, connects only to those, follows
    /// no redirect and reads a bounded answer. Operator-configured targets (the gateway, the
    /// OpenWhisk API) may be private.
    pub public_only: bool,
    /// `POST`, `GET`, ...
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers (values may be secret: never log them).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Whether a user-given target may be connected to: not loopback, private, link-local,
/// shared (CGNAT), unspecified, broadcast, multicast, documentation, benchmarking or reserved,
/// in IPv4 or in the IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64).
pub fn is_public_address(ip: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr};
    fn public_v4(v4: Ipv4Addr) -> bool {
        let o = v4.octets();
        !(v4.is_loopback()
            || v4.is_private()
            || v4.is_link_local()
            || v4.is_unspecified()
            || v4.is_broadcast()
            || v4.is_multicast()
            || v4.is_documentation()
            || o[0] == 0
            || (o[0] == 100 && (o[1] & 0xc0) == 64)
            || (o[0] == 192 && o[1] == 0 && o[2] == 0)
            || (o[0] == 198 && (o[1] & 0xfe) == 18)
            || o[0] >= 240)
    }
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded_v4 = |hi: usize| {
                Ipv4Addr::new(
                    (seg[hi] >> 8) as u8,
                    seg[hi] as u8,
                    (seg[hi + 1] >> 8) as u8,
                    seg[hi + 1] as u8,
                )
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d).
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (seg[..6] == [0; 6] && seg[6] != 0) {
                return public_v4(embedded_v4(6));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] & 0xffc0) == 0xfec0
                || (seg[0] == 0x2001 && seg[1] == 0xdb8))
        }
    }
}

/// The answer to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Sends HTTP requests.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait HttpClient: Send + Sync {
    /// Send one request; transport failures are transient errors, any status is a response.
    async fn send(&self, request: HttpRequest) -> PortResult<HttpResponse>;
}

/// An in-memory HTTP client: records requests and answers with scripted statuses (200 when the
/// script is empty).
#[derive(Debug, Default)]
pub struct MemoryHttp {
    sent: Mutex<Vec<HttpRequest>>,
    script: Mutex<std::collections::VecDeque<PortResult<u16>>>,
}

impl MemoryHttp {
    /// Queue the outcomes of the next requests.
    pub fn script(&self, outcomes: impl IntoIterator<Item = PortResult<u16>>) {
        self.script.lock().unwrap_or_else(|e| e.into_inner()).extend(outcomes);
    }

    /// Requests sent so far.
    pub fn sent(&self) -> Vec<HttpRequest> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl HttpClient for MemoryHttp {
    async fn send(&self, request: HttpRequest) -> PortResult<HttpResponse> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).push(request);
        let outcome =
            self.script.lock().unwrap_or_else(|e| e.into_inner()).pop_front().unwrap_or(Ok(200));
        outcome.map(|status| HttpResponse { status, body: Vec::new() })
    }
}

#[cfg(test)]
mod value_arena_tests {
    use super::ValueArena;

    #[test]
    fn copies_stay_intact_across_chunks_and_share_them() {
        let mut arena = ValueArena::new(64);
        let values: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i % 20)]).collect();
        let copies: Vec<bytes::Bytes> = values.iter().map(|v| arena.copy(v)).collect();
        for (v, c) in values.iter().zip(&copies) {
            assert_eq!(&c[..], &v[..]);
        }
        // A value larger than a chunk gets a chunk of its own.
        let big = vec![7u8; 1000];
        assert_eq!(&arena.copy(&big)[..], &big[..]);
        // Small values share a chunk: consecutive copies are adjacent in memory.
        let (a, b) = (arena.copy(b"ab"), arena.copy(b"cd"));
        assert_eq!(a.as_ptr().wrapping_add(2), b.as_ptr());
    }

    #[test]
    fn a_chunk_is_reused_once_its_copies_are_dropped() {
        let mut arena = ValueArena::new(64);
        let first = arena.copy(&[1; 40]);
        let kept = arena.copy(&[2; 40]);
        assert_ne!(kept.as_ptr(), first.as_ptr(), "a chunk still referred to is not reused");
        let kept_at = kept.as_ptr();
        drop((first, kept));
        // The current chunk (the second) has 24 bytes left and no copy of it is alive: the next
        // copy takes it back from its start instead of allocating.
        let third = arena.copy(&[3; 40]);
        assert_eq!(third.as_ptr(), kept_at, "the chunk was not taken back");
        assert!(third.iter().all(|&b| b == 3));
    }
}

#[cfg(test)]
mod checkpoint_encoding_tests {
    use super::Checkpoint;

    /// The layout checkpoints had when `state` was a plain sequence of bytes: files and
    /// Redis keys written then must still read, and new ones read by older code.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct AsSequence {
        next_offset: i64,
        state: Vec<u8>,
        head: i64,
        lost: u64,
    }

    #[test]
    fn the_state_as_a_byte_string_is_encoded_as_the_sequence_was() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let state: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let cp = Checkpoint { next_offset: 42, state: state.clone(), head: -1, lost: 3 };
            let old = AsSequence { next_offset: 42, state, head: -1, lost: 3 };
            let encoded = postcard::to_stdvec(&cp).unwrap();
            assert_eq!(encoded, postcard::to_stdvec(&old).unwrap(), "postcard, {len} bytes");
            assert_eq!(postcard::from_bytes::<Checkpoint>(&encoded).unwrap(), cp);
            assert_eq!(postcard::from_bytes::<AsSequence>(&encoded).unwrap(), old);
            let json = serde_json::to_string(&cp).unwrap();
            assert_eq!(json, serde_json::to_string(&old).unwrap(), "JSON, {len} bytes");
            assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), cp);
        }
    }
}
