//! Kappa's log port over Apache Kafka: [`KafkaLog`] implements [`LogReader`] + [`LogWriter`]
//! with rdkafka (bundled librdkafka), behaving exactly like
//! [`kappa_core::ports::MemoryLog`] (checked by [`kappa_core::conformance_log`]).
//!
//! # Shape
//! - **Metadata** (`partitions`, `watermarks`): one shared `BaseConsumer` that never joins a
//!   group; `fetch_metadata` of the one topic with `allow.auto.create.topics=false`, an
//!   `UnknownTopicOrPartition` answer meaning "no such topic". Watermarks come from
//!   `fetch_watermarks` (ListOffsets at the consumer's isolation level, `read_committed`: the
//!   high watermark is the last stable offset, so reads never wait on open transactions).
//! - **Reads**: a `BaseConsumer` per `(topic, partition)`, `assign`ed at the offset (no
//!   subscriptions, no commits — `enable.auto.commit=false`, a fixed `group.id`; progress lives
//!   in the state store), polled on a blocking thread (`spawn_blocking`) until the batch is
//!   full (`max_records`, `max_bytes`), reaches `end` or the high watermark seen at the start
//!   of the read. Consumers are cached (at most [`MAX_CACHED_READERS`]) with the position they
//!   stopped at, so the next batch of a replay continues from librdkafka's prefetched queue; a
//!   read from any other offset re-assigns. `fetch.wait.max.ms=10` and a large prefetch queue
//!   make replay fast and the tail prompt. `auto.offset.reset=error`: when retention deleted
//!   the wanted offsets (before or during the read) the read restarts at the low watermark and
//!   reports the skipped records as `lost`. Trailing gaps (transaction markers, compaction) are
//!   skipped using partition-EOF events from a freshly assigned consumer.
//! - **Writes**: `ensure_topic` through the AdminClient (`TopicAlreadyExists` is fine; the
//!   broker's default replication factor), appends through an idempotent `FutureProducer`
//!   (`acks=all`) to an explicit partition; the first record's offset is returned.
//!
//! Errors: broker transport failures, timeouts and leadership changes are
//! [`PortError::transient`]; everything else is permanent.
//!
//! # Doubts
//! An append of several records is not atomic on Kafka (that takes a transactional producer):
//! when the producer fails midway (a broker outage longer than `message.timeout.ms`), a prefix
//! may have been written although the call reports an error. Concurrent appenders to one
//! partition interleave, so a batch's offsets are only consecutive with a single appender.
//!
//! Test with: `scripts/kafka.sh start` then
//! `KAFKA_BROKERS=127.0.0.1:19092 cargo test -p kappa-log-kafka -- --test-threads=1`
//! (without `KAFKA_BROKERS` the integration tests print "skipped" and pass).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kappa_core::Topic;
use kappa_core::ports::{
    Batch, LogReader, LogRecord, LogWriter, NewRecord, PortError, PortResult, ReadRequest,
    ValueArena, Watermarks,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// The backend name in errors.
const BACKEND: &str = "kafka";
/// Idle read consumers kept for later batches.
pub const MAX_CACHED_READERS: usize = 64;
/// Timeout of metadata and watermark requests.
const META_TIMEOUT: Duration = Duration::from_secs(10);
/// A read returns what it has (or a transient error when it has nothing) after this long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll of a read consumer.
const POLL: Duration = Duration::from_millis(100);
/// How long an append may wait for its acknowledgements.
const PRODUCE_TIMEOUT_MS: u64 = 30_000;

/// The monotonic clock of the adapter's own timeouts (not query time).
#[allow(clippy::disallowed_methods, reason = "I/O timeouts of the adapter need a clock")]
fn now() -> Instant {
    Instant::now()
}

/// Connection settings of a [`KafkaLog`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaLogConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:19092`.
    pub brokers: String,
    /// Further librdkafka properties for every client (e.g. `security.protocol`,
    /// `sasl.mechanisms`, `sasl.username`, `sasl.password`); they override Kappa's defaults.
    pub extra: Vec<(String, String)>,
}

/// Whether a librdkafka error code may go away by itself.
fn transient_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::MessageTimedOut
            | C::OperationTimedOut
            | C::TimedOutQueue
            | C::QueueFull
            | C::Retry
            | C::Interrupted
            | C::WaitCache
            | C::NodeUpdate
            | C::WaitingForCoordinator
            | C::UnknownBroker
            | C::DestroyBroker
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::RequestTimedOut
            | C::BrokerNotAvailable
            | C::ReplicaNotAvailable
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::NotController
            | C::KafkaStorageError
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch
            | C::OffsetNotAvailable
            | C::ThrottlingQuotaExceeded
    )
}

fn port_error(what: &str, e: &KafkaError) -> PortError {
    let transient = match e {
        KafkaError::Canceled | KafkaError::NoMessageReceived => true,
        _ => e.rdkafka_error_code().is_some_and(transient_code),
    };
    let message = format!("{what}: {e}");
    if transient {
        PortError::transient(BACKEND, message)
    } else {
        PortError::permanent(BACKEND, message)
    }
}

fn no_partition(topic: &str, partition: u32) -> PortError {
    PortError::permanent(BACKEND, format!("no partition {topic}/{partition}"))
}

/// A cached read consumer and where its next message will come from.
struct Reader {
    consumer: BaseConsumer,
    /// The offset of the next message its queue yields; None when unknown.
    position: Option<i64>,
    /// Where payloads are copied; its chunk is reused once the records of earlier reads are
    /// dropped (fresh pages cost the kernel a zeroing each).
    arena: ValueArena,
}

struct Inner {
    base: ClientConfig,
    meta: BaseConsumer,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Known partition counts (they only grow).
    partitions: Mutex<HashMap<String, u32>>,
    readers: Mutex<HashMap<(String, u32), Reader>>,
}

/// The Kafka log. Cheap to share (`Arc` inside); see the crate docs.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog").finish_non_exhaustive()
    }
}

fn consumer_config(base: &ClientConfig, extra: &[(String, String)]) -> ClientConfig {
    let mut c = base.clone();
    c.set("group.id", "kappa-log-kafka")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "8388608")
        .set("queued.min.messages", "100000")
        .set("queued.max.messages.kbytes", "32768")
        // librdkafka >= 2.4 waits this long before fetching again once the prefetch queue was
        // full (default 1 s): a replaying reader drains the queue in milliseconds, so that wait
        // would stall every few batches.
        .set("fetch.queue.backoff.ms", "1");
    for (k, v) in extra {
        c.set(k, v);
    }
    c
}

impl KafkaLog {
    /// Create the clients (connections are made lazily by librdkafka; a wrong address shows
    /// up as transient errors of the first calls). Permanent error on invalid settings.
    pub fn connect(config: KafkaLogConfig) -> PortResult<Self> {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", &config.brokers).set("client.id", "kappa");
        let mut producer = base.clone();
        producer
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("allow.auto.create.topics", "false")
            .set("message.timeout.ms", PRODUCE_TIMEOUT_MS.to_string());
        let mut admin = base.clone();
        for (k, v) in &config.extra {
            producer.set(k, v);
            admin.set(k, v);
        }
        let meta = consumer_config(&base, &config.extra)
            .create::<BaseConsumer>()
            .map_err(|e| port_error("create consumer", &e))?;
        let producer =
            producer.create::<FutureProducer>().map_err(|e| port_error("create producer", &e))?;
        let admin = admin
            .create::<AdminClient<DefaultClientContext>>()
            .map_err(|e| port_error("create admin client", &e))?;
        let consumer_base = consumer_config(&base, &config.extra);
        Ok(KafkaLog {
            inner: Arc::new(Inner {
                base: consumer_base,
                meta,
                producer,
                admin,
                partitions: Mutex::new(HashMap::new()),
                readers: Mutex::new(HashMap::new()),
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> PortResult<T> + Send + 'static,
    ) -> PortResult<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| PortError::transient(BACKEND, format!("blocking task failed: {e}")))?
    }

    /// The partition count, checking `partition` exists.
    async fn check_partition(&self, topic: &str, partition: u32) -> PortResult<()> {
        let known = self.inner.lock_partitions().get(topic).copied();
        let count = match known {
            Some(n) if partition < n => n,
            _ => self.partitions(topic).await?.unwrap_or(0),
        };
        if partition < count { Ok(()) } else { Err(no_partition(topic, partition)) }
    }
}

impl Inner {
    fn lock_partitions(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_readers(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Reader>> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Partition count from metadata; None when the topic does not exist.
    fn partitions_blocking(&self, topic: &str) -> PortResult<Option<u32>> {
        let md = self
            .meta
            .fetch_metadata(Some(topic), META_TIMEOUT)
            .map_err(|e| port_error("fetch metadata", &e))?;
        // Serve (and drop) events the metadata consumer accumulated (errors, logs).
        let _ = self.meta.poll(Duration::ZERO);
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
        match t.error().map(RDKafkaErrorCode::from) {
            None => {}
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                return Ok(None);
            }
            Some(code) if transient_code(code) => {
                return Err(PortError::transient(BACKEND, format!("metadata of {topic}: {code}")));
            }
            Some(code) => {
                return Err(PortError::permanent(BACKEND, format!("metadata of {topic}: {code}")));
            }
        }
        let n = t.partitions().len() as u32;
        if n == 0 {
            return Err(PortError::transient(BACKEND, format!("{topic} has no partitions yet")));
        }
        let mut known = self.lock_partitions();
        let e = known.entry(topic.to_string()).or_insert(n);
        *e = (*e).max(n);
        Ok(Some(n))
    }

    fn watermarks_blocking(&self, topic: &str, partition: u32) -> PortResult<(i64, i64)> {
        // Callers checked the partition exists (partitions never go away, short of a topic
        // deletion): "unknown partition" here means a broker that is starting or stopping.
        self.meta.fetch_watermarks(topic, partition as i32, META_TIMEOUT).map_err(|e| {
            let mut pe = port_error(&format!("watermarks of {topic}/{partition}"), &e);
            if matches!(
                e.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::UnknownPartition
                        | RDKafkaErrorCode::UnknownTopic
                )
            ) {
                pe.retryable = true;
            }
            pe
        })
    }

    fn new_reader(&self) -> PortResult<Reader> {
        let consumer =
            self.base.create::<BaseConsumer>().map_err(|e| port_error("create consumer", &e))?;
        Ok(Reader { consumer, position: None, arena: ValueArena::new(1 << 20) })
    }

    fn assign(reader: &mut Reader, topic: &str, partition: u32, offset: i64) -> PortResult<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(offset))
            .map_err(|e| port_error("assign", &e))?;
        reader.position = None;
        reader.consumer.assign(&tpl).map_err(|e| port_error("assign", &e))?;
        reader.position = Some(offset);
        Ok(())
    }

    fn read_blocking(
        &self,
        topic: &str,
        partition: u32,
        request: ReadRequest,
    ) -> PortResult<Batch> {
        let (mut low, high) = self.watermarks_blocking(topic, partition)?;
        let mut from = request.from.max(low);
        let end = request.end.map_or(high, |e| e.min(high));
        if from >= end || request.max_records == 0 {
            let lost = (from - request.from).max(0) as u64;
            return Ok(Batch { records: vec![], next_offset: from, high_watermark: high, lost });
        }
        let key = (topic.to_string(), partition);
        let cached = self.lock_readers().remove(&key);
        let mut reader = match cached {
            Some(r) => r,
            None => self.new_reader()?,
        };
        // Whether every event in the queue follows our own assign (so an EOF is current).
        let mut fresh = false;
        if reader.position != Some(from) {
            Self::assign(&mut reader, topic, partition, from)?;
            fresh = true;
        }
        let mut records: Vec<LogRecord> = Vec::new();
        let mut bytes = 0usize;
        let mut next = from;
        let mut last_error: Option<KafkaError> = None;
        let deadline = now() + READ_TIMEOUT;
        let mut polls = 0u32;
        loop {
            if records.len() >= request.max_records
                || (bytes >= request.max_bytes && !records.is_empty())
                || next >= end
            {
                break;
            }
            // The clock is read when a poll came back empty and every 256 messages, not per
            // message (a replay reads hundreds of thousands a second).
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(256) && now() >= deadline {
                break;
            }
            match reader.consumer.poll(POLL) {
                None => {
                    if now() >= deadline {
                        break;
                    }
                }
                Some(Ok(m)) => {
                    let offset = m.offset();
                    if offset < next {
                        continue;
                    }
                    if offset >= end {
                        // Consumed one message too many (a gap before `end`): forget the position.
                        reader.position = None;
                        next = end;
                        break;
                    }
                    let value = reader.arena.copy(m.payload().unwrap_or_default());
                    bytes += value.len();
                    records.push(LogRecord {
                        offset,
                        timestamp: m.timestamp().to_millis().unwrap_or(-1),
                        key: m.key().map(<[u8]>::to_vec),
                        value,
                    });
                    next = offset + 1;
                    reader.position = Some(next);
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    if fresh {
                        // Everything up to the head (>= end) was delivered: the rest are gaps.
                        next = end;
                        break;
                    }
                    // Maybe an EOF from an earlier read: re-assign to get a current one.
                    Self::assign(&mut reader, topic, partition, next)?;
                    fresh = true;
                }
                Some(Err(e))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
                        )
                    ) =>
                {
                    // Retention deleted `next` during the read: continue at the low watermark.
                    low = self.watermarks_blocking(topic, partition)?.0;
                    if low > next {
                        next = low.min(end);
                        if records.is_empty() {
                            from = next;
                        } else {
                            // Keep the batch contiguous; the next read reports the loss.
                            reader.position = None;
                            break;
                        }
                    }
                    if next >= end {
                        break;
                    }
                    Self::assign(&mut reader, topic, partition, next)?;
                    fresh = true;
                    last_error = Some(e);
                }
                Some(Err(e)) => last_error = Some(e),
            }
        }
        if records.is_empty() && next < end {
            // Nothing arrived although the head is ahead: a broker problem.
            reader.position = None;
            let e = last_error.map_or_else(
                || PortError::transient(BACKEND, format!("read {topic}/{partition}: timed out")),
                |e| {
                    let mut pe = port_error(&format!("read {topic}/{partition}"), &e);
                    pe.retryable = true;
                    pe
                },
            );
            self.cache(key, reader);
            return Err(e);
        }
        let lost = (from - request.from).max(0) as u64;
        self.cache(key, reader);
        Ok(Batch { records, next_offset: next, high_watermark: high, lost })
    }

    fn cache(&self, key: (String, u32), reader: Reader) {
        let evicted = {
            let mut readers = self.lock_readers();
            let evicted = if readers.len() >= MAX_CACHED_READERS && !readers.contains_key(&key) {
                let victim = readers.keys().next().cloned();
                victim.and_then(|k| readers.remove(&k))
            } else {
                None
            };
            (readers.insert(key, reader), evicted)
        };
        // Closing consumers may block: outside the lock.
        drop(evicted);
    }
}

#[async_trait]
impl LogReader for KafkaLog {
    async fn partitions(&self, topic: &str) -> PortResult<Option<u32>> {
        let topic = topic.to_string();
        self.blocking(move |i| i.partitions_blocking(&topic)).await
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> PortResult<Watermarks> {
        self.check_partition(topic, partition).await?;
        let topic = topic.to_string();
        let (low, high) = self.blocking(move |i| i.watermarks_blocking(&topic, partition)).await?;
        Ok(Watermarks { low, high })
    }

    async fn read(&self, topic: &str, partition: u32, request: ReadRequest) -> PortResult<Batch> {
        self.check_partition(topic, partition).await?;
        let topic = topic.to_string();
        self.blocking(move |i| i.read_blocking(&topic, partition, request)).await
    }
}

#[async_trait]
impl LogWriter for KafkaLog {
    async fn ensure_topic(&self, topic: &Topic, partitions: u32) -> PortResult<u32> {
        if let Some(n) = self.partitions(topic).await? {
            return Ok(n);
        }
        let new = NewTopic::new(topic, partitions.max(1) as i32, TopicReplication::Fixed(-1));
        let opts = AdminOptions::new().operation_timeout(Some(META_TIMEOUT));
        let results = self
            .inner
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| port_error(&format!("create topic {topic}"), &e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    let message = format!("create topic {topic}: {code}");
                    return Err(if transient_code(code) {
                        PortError::transient(BACKEND, message)
                    } else {
                        PortError::permanent(BACKEND, message)
                    });
                }
            }
        }
        // Wait until the metadata shows the topic with its partitions and leaders.
        let deadline = now() + META_TIMEOUT;
        loop {
            match self.partitions(topic).await {
                Ok(Some(n)) => {
                    let topic2 = topic.to_string();
                    let leaders = self
                        .blocking(move |i| {
                            (0..n).try_for_each(|p| i.watermarks_blocking(&topic2, p).map(|_| ()))
                        })
                        .await;
                    if leaders.is_ok() {
                        return Ok(n);
                    }
                }
                Ok(None) => {}
                Err(e) if e.retryable => {}
                Err(e) => return Err(e),
            }
            if now() >= deadline {
                return Err(PortError::transient(
                    BACKEND,
                    format!("topic {topic} created but not ready"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn append(&self, topic: &str, partition: u32, records: &[NewRecord]) -> PortResult<i64> {
        self.check_partition(topic, partition).await?;
        if records.is_empty() {
            return Ok(self.watermarks(topic, partition).await?.high);
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for r in records {
            let mut rec = FutureRecord::to(topic)
                .partition(partition as i32)
                .payload(r.value.as_slice())
                .timestamp(r.timestamp);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            let deadline = now() + Duration::from_millis(PRODUCE_TIMEOUT_MS);
            loop {
                match self.inner.producer.send_result(rec) {
                    Ok(d) => {
                        deliveries.push(d);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if now() < deadline =>
                    {
                        rec = back;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => return Err(port_error(&format!("append to {topic}"), &e)),
                }
            }
        }
        let mut first = None;
        let mut failure = None;
        for d in deliveries {
            match d.await {
                Ok(Ok(delivery)) => {
                    first = Some(first.map_or(delivery.offset, |f: i64| f.min(delivery.offset)));
                }
                Ok(Err((e, _))) => {
                    failure.get_or_insert_with(|| port_error(&format!("append to {topic}"), &e));
                }
                Err(_) => {
                    failure.get_or_insert_with(|| {
                        PortError::transient(BACKEND, format!("append to {topic}: canceled"))
                    });
                }
            }
        }
        match (failure, first) {
            (Some(e), _) => Err(e),
            (None, Some(f)) => Ok(f),
            (None, None) => Err(PortError::permanent(BACKEND, "append: no delivery")),
        }
    }
}
