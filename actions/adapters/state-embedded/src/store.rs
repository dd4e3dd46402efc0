//! The [`StateStore`] methods: reads on the caller's thread (from the decoded copies, the
//! pending checkpoints or a read transaction), writes through the committer.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use kappa_core::Message;
use kappa_core::ports::{
    Checkpoint, PortError, PortResult, Position, ProcessEvent, QueryRecord, ResultRecord, Segment,
    StateStore, Subscription, ViewDef, ring_since,
};
use redb::ReadableTable;

use crate::EmbeddedStore;
use crate::cache::Recent;
use crate::pending::lock_pending;
use crate::results;
use crate::ring::{lock_ring, read_messages};
use crate::tables::{
    BACKEND, CHECKPOINTS, QUERIES, REFS, RESULT_AT, RESULTS, SUBSCRIPTIONS, TOUCH, VIEWS, corrupt,
    db_error, from_json, position_of, table, to_json,
};

#[async_trait]
impl StateStore for EmbeddedStore {
    async fn register(&self, query: &QueryRecord) -> PortResult<bool> {
        let record = to_json("query record", query)?;
        let query = query.clone();
        self.write("register", move |tx| {
            let mut t = table!(tx, QUERIES, "register");
            if t.get(query.id.as_str()).map_err(|e| db_error("register", e))?.is_some() {
                return Ok(false);
            }
            t.insert(query.id.as_str(), record.as_slice()).map_err(|e| db_error("register", e))?;
            Ok(true)
        })
        .await
    }

    async fn query(&self, id: &str) -> PortResult<Option<QueryRecord>> {
        let mut latest = self.latest.lock();
        if let Some(query) = latest.queries.get(id) {
            return Ok(Some(query.clone()));
        }
        // A miss: filled under the lock (see `Latest`).
        let tx = self.read_tx("query")?;
        let t = table!(tx, QUERIES, "query");
        let raw = t.get(id).map_err(|e| db_error("query", e))?;
        let query: Option<QueryRecord> =
            raw.map(|r| from_json("query record", r.value())).transpose()?;
        if let Some(query) = &query {
            latest.queries.insert(id.to_string(), query.clone());
        }
        Ok(query)
    }

    async fn queries(&self) -> PortResult<Vec<String>> {
        let tx = self.read_tx("queries")?;
        let t = table!(tx, QUERIES, "queries");
        let mut ids = Vec::new();
        for entry in t.iter().map_err(|e| db_error("queries", e))? {
            let (k, _) = entry.map_err(|e| db_error("queries", e))?;
            ids.push(k.value().to_string());
        }
        Ok(ids)
    }

    async fn remove(&self, id: &str) -> PortResult<()> {
        let (latest, pending) = (self.latest.clone(), self.pending.clone());
        let removed = id.to_string();
        let on_commit = move |_: &()| {
            latest.removed(&removed);
            lock_pending(&pending).removed(&removed);
        };
        let (id, messages) = (id.to_string(), self.messages.clone());
        self.write_then("remove", on_commit, move |tx| {
            let id = id.as_str();
            let e = |e: redb::StorageError| db_error("remove", e);
            table!(tx, QUERIES, "remove").remove(id).map_err(e)?;
            table!(tx, TOUCH, "remove").remove(id).map_err(e)?;
            table!(tx, REFS, "remove").remove(id).map_err(e)?;
            table!(tx, RESULTS, "remove").remove(id).map_err(e)?;
            table!(tx, RESULT_AT, "remove").remove(id).map_err(e)?;
            table!(tx, SUBSCRIPTIONS, "remove").remove(id).map_err(e)?;
            let mut cps = table!(tx, CHECKPOINTS, "remove");
            let segments: Vec<String> = {
                let mut keys = Vec::new();
                for entry in cps.range((id, "")..).map_err(e)? {
                    let (k, _) = entry.map_err(e)?;
                    let (kid, seg) = k.value();
                    if kid != id {
                        break;
                    }
                    keys.push(seg.to_string());
                }
                keys
            };
            for seg in &segments {
                cps.remove((id, seg.as_str())).map_err(e)?;
            }
            lock_ring(&messages).remove(tx, id)?;
            Ok(())
        })
        .await
    }

    async fn touch(&self, id: &str, now_ms: i64) -> PortResult<i64> {
        let id = id.to_string();
        self.write("touch", move |tx| {
            let mut t = table!(tx, TOUCH, "touch");
            let last = t.insert(id.as_str(), now_ms).map_err(|e| db_error("touch", e))?;
            Ok(last.map_or(now_ms, |l| l.value()))
        })
        .await
    }

    async fn last_touch(&self, id: &str) -> PortResult<Option<i64>> {
        let tx = self.read_tx("last_touch")?;
        let t = table!(tx, TOUCH, "last_touch");
        Ok(t.get(id).map_err(|e| db_error("last_touch", e))?.map(|v| v.value()))
    }

    async fn add_refs(&self, id: &str, delta: i64) -> PortResult<i64> {
        if delta == 0 {
            // A read (the tick asks every query's count on every wake-up): no durable commit.
            let tx = self.read_tx("add_refs")?;
            let t = table!(tx, REFS, "add_refs");
            return Ok(t.get(id).map_err(|e| db_error("add_refs", e))?.map_or(0, |v| v.value()));
        }
        let id = id.to_string();
        self.write("add_refs", move |tx| {
            let mut t = table!(tx, REFS, "add_refs");
            let cur =
                t.get(id.as_str()).map_err(|e| db_error("add_refs", e))?.map_or(0, |v| v.value());
            let n = cur.saturating_add(delta).max(0);
            t.insert(id.as_str(), n).map_err(|e| db_error("add_refs", e))?;
            Ok(n)
        })
        .await
    }

    async fn checkpoint(&self, id: &str, segment: &Segment) -> PortResult<Option<Checkpoint>> {
        let key = (id.to_string(), segment.key());
        // A miss is filled under the lock (see `Pending::in_file`).
        let mut pending = lock_pending(&self.pending);
        if let Some((_, encoded)) = pending.get(&key) {
            return decode_checkpoint(encoded).map(Some);
        }
        let Some(raw) = self.file_checkpoint(&key.0, &key.1)? else { return Ok(None) };
        let checkpoint = decode_checkpoint(&raw)?;
        pending.filled(key, checkpoint.next_offset, &raw);
        Ok(Some(checkpoint))
    }

    async fn positions(&self, id: &str, segments: &[Segment]) -> PortResult<Vec<Option<Position>>> {
        // Read from the encoded checkpoints in memory without copying their states out (the
        // tick reads this for every query); a checkpoint only in the file goes the usual way.
        let mut positions = Vec::with_capacity(segments.len());
        for segment in segments {
            let key = (id.to_string(), segment.key());
            let in_memory =
                lock_pending(&self.pending).get(&key).map(|(_, encoded)| position_of(encoded));
            positions.push(match in_memory {
                Some(position) => Some(position?),
                None => self.checkpoint(id, segment).await?.as_ref().map(Position::from),
            });
        }
        Ok(positions)
    }

    async fn compare_and_set_checkpoint(
        &self,
        id: &str,
        segment: &Segment,
        expected: Option<i64>,
        new: &Checkpoint,
    ) -> PortResult<bool> {
        let encoded = postcard::to_stdvec(new)
            .map_err(|e| PortError::permanent(BACKEND, format!("cannot encode checkpoint: {e}")))?;
        let key = (id.to_string(), segment.key());
        // Decided under the lock against the pending write or else the file, which only the
        // committer changes, with the same values (see `Pending`) or by a removal.
        let mut pending = lock_pending(&self.pending);
        let current = match pending.get(&key) {
            Some((next_offset, _)) => Some(next_offset),
            None => match self.file_checkpoint(&key.0, &key.1)? {
                Some(raw) => {
                    let next_offset = decode_checkpoint(&raw)?.next_offset;
                    pending.filled(key.clone(), next_offset, &raw);
                    Some(next_offset)
                }
                None => None,
            },
        };
        if current != expected {
            return Ok(false);
        }
        pending.write(key, new.next_offset, encoded);
        Ok(true)
    }

    async fn compare_and_append_checkpoint(
        &self,
        id: &str,
        segment: &Segment,
        expected: i64,
        advance: &Checkpoint,
    ) -> PortResult<bool> {
        let key = (id.to_string(), segment.key());
        // Decided under the lock, as a compare-and-set is: against the pending write or else
        // the file. The state's bytes are copied, not decoded: what grows is one byte string.
        let mut pending = lock_pending(&self.pending);
        let current = match pending.get(&key) {
            Some((_, encoded)) => decode_checkpoint(encoded)?,
            None => match self.file_checkpoint(&key.0, &key.1)? {
                Some(raw) => {
                    let checkpoint = decode_checkpoint(&raw)?;
                    pending.filled(key.clone(), checkpoint.next_offset, &raw);
                    checkpoint
                }
                None => return Ok(false),
            },
        };
        if current.next_offset != expected {
            return Ok(false);
        }
        let mut state = current.state;
        state.extend_from_slice(&advance.state);
        let new = Checkpoint { state, ..advance.clone() };
        let encoded = postcard::to_stdvec(&new)
            .map_err(|e| PortError::permanent(BACKEND, format!("cannot encode checkpoint: {e}")))?;
        pending.write(key, new.next_offset, encoded);
        Ok(true)
    }

    async fn result(&self, id: &str) -> PortResult<Option<ResultRecord>> {
        let mut latest = self.latest.lock();
        if let Some(recent) = latest.results.get(id) {
            return Ok(Some(recent.record.clone()));
        }
        // A miss: filled under the lock (see `Latest`).
        let tx = self.read_tx("result")?;
        let t = table!(tx, RESULTS, "result");
        let raw = t.get(id).map_err(|e| db_error("result", e))?;
        let record: Option<ResultRecord> =
            raw.map(|r| from_json("result record", r.value().2)).transpose()?;
        if let Some(record) = &record {
            latest.results.insert(
                id.to_string(),
                Recent { record: record.clone(), messages: VecDeque::new() },
            );
        }
        Ok(record)
    }

    async fn compare_and_set_result(
        &self,
        id: &str,
        expected: u64,
        new: &ResultRecord,
        message: Message,
    ) -> PortResult<bool> {
        let encoded_message = to_json("message", &message)?;
        let what = "compare_and_set_result";
        let (keep, messages) = (self.ring, self.messages.clone());
        let latest = self.latest.clone();
        // One copy for the write (run again alone if its batch fails), one for the cache.
        let (record, cached_record) = (new.clone(), new.clone());
        let key = id.to_string();
        let message = Arc::new(message);
        let cached = message.clone();
        // Runs right after the commit, so in commit order.
        let on_commit = move |&done: &bool| {
            if done {
                latest.committed(&key, cached_record, cached);
            }
        };
        let id = id.to_string();
        // The result (its row, or only its message: `results.rs`) and its message commit
        // together, or neither does.
        self.write_then(what, on_commit, move |tx| {
            let mut ring = lock_ring(&messages);
            results::publish(
                tx,
                &mut ring,
                &id,
                expected,
                &record,
                &message,
                &encoded_message,
                keep,
            )
        })
        .await
    }

    async fn messages_since(&self, id: &str, version: u64) -> PortResult<Option<Vec<Message>>> {
        let shared = self.shared_messages_since(id, version).await?;
        Ok(shared.map(|m| m.into_iter().map(Arc::unwrap_or_clone).collect()))
    }

    async fn shared_messages_since(
        &self,
        id: &str,
        version: u64,
    ) -> PortResult<Option<Vec<Arc<Message>>>> {
        {
            let mut latest = self.latest.lock();
            if let Some(recent) = latest.results.get_mut(id) {
                let current = recent.record.version;
                if version >= current {
                    return Ok(Some(Vec::new()));
                }
                // The cached suffix holds every message after `version` when it starts at or
                // before it (versions never decrease along the ring).
                let messages = recent.messages.make_contiguous();
                if messages.first().is_some_and(|m| m.version() <= version) {
                    return Ok(ring_since(messages, version, current));
                }
            }
        }
        let what = "messages_since";
        let tx = self.read_tx(what)?;
        let row_version = table!(tx, RESULTS, what)
            .get(id)
            .map_err(|e| db_error(what, e))?
            .map_or(0, |r| r.value().1);
        // Only the messages after `version`, found without decoding any: a subscriber one
        // version behind costs one decode instead of the whole ring's.
        let sequences = lock_ring(&self.messages).after(id, version);
        let ring = read_messages(&tx, id, &sequences)?;
        // The row may be behind its messages (`results.rs`): the snapshot's current version
        // is its newest message's when there is one after the row.
        let current = ring.last().map_or(row_version, |m| m.version().max(row_version));
        Ok(ring_since(&ring, version, current))
    }

    async fn subscribe(&self, id: &str, subscription: &Subscription) -> PortResult<()> {
        let (id, subscription) = (id.to_string(), subscription.clone());
        self.write("subscribe", move |tx| {
            let id = id.as_str();
            let mut t = table!(tx, SUBSCRIPTIONS, "subscribe");
            let mut subs: Vec<Subscription> =
                match t.get(id).map_err(|e| db_error("subscribe", e))? {
                    Some(raw) => from_json("subscriptions", raw.value())?,
                    None => Vec::new(),
                };
            subs.push(subscription.clone());
            let raw = to_json("subscriptions", &subs)?;
            t.insert(id, raw.as_slice()).map_err(|e| db_error("subscribe", e))?;
            Ok(())
        })
        .await
    }

    async fn unsubscribe(&self, id: &str, url: &str) -> PortResult<bool> {
        let (id, url) = (id.to_string(), url.to_string());
        self.write("unsubscribe", move |tx| {
            let id = id.as_str();
            let mut t = table!(tx, SUBSCRIPTIONS, "unsubscribe");
            let mut subs: Vec<Subscription> =
                match t.get(id).map_err(|e| db_error("unsubscribe", e))? {
                    Some(raw) => from_json("subscriptions", raw.value())?,
                    None => return Ok(false),
                };
            let before = subs.len();
            subs.retain(|s| s.url != url);
            if subs.len() == before {
                return Ok(false);
            }
            let raw = to_json("subscriptions", &subs)?;
            t.insert(id, raw.as_slice()).map_err(|e| db_error("unsubscribe", e))?;
            Ok(true)
        })
        .await
    }

    async fn subscriptions(&self, id: &str) -> PortResult<Vec<Subscription>> {
        let tx = self.read_tx("subscriptions")?;
        let t = table!(tx, SUBSCRIPTIONS, "subscriptions");
        let raw = t.get(id).map_err(|e| db_error("subscriptions", e))?;
        Ok(raw.map(|r| from_json("subscriptions", r.value())).transpose()?.unwrap_or_default())
    }

    async fn view(&self, name: &str) -> PortResult<Option<ViewDef>> {
        let tx = self.read_tx("view")?;
        let t = table!(tx, VIEWS, "view");
        let raw = t.get(name).map_err(|e| db_error("view", e))?;
        raw.map(|r| from_json("view", r.value())).transpose()
    }

    async fn compare_and_set_view(
        &self,
        name: &str,
        expected: Option<&ViewDef>,
        new: &ViewDef,
    ) -> PortResult<bool> {
        let (name, expected, new) = (name.to_string(), expected.cloned(), new.clone());
        self.write("compare_and_set_view", move |tx| {
            let mut t = table!(tx, VIEWS, "compare_and_set_view");
            let current: Option<ViewDef> = t
                .get(name.as_str())
                .map_err(|e| db_error("compare_and_set_view", e))?
                .map(|raw| from_json("view", raw.value()))
                .transpose()?;
            if current != expected {
                return Ok(false);
            }
            let raw = to_json("view", &new)?;
            t.insert(name.as_str(), raw.as_slice())
                .map_err(|e| db_error("compare_and_set_view", e))?;
            Ok(true)
        })
        .await
    }

    async fn views(&self) -> PortResult<Vec<(String, ViewDef)>> {
        let tx = self.read_tx("views")?;
        let t = table!(tx, VIEWS, "views");
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| db_error("views", e))? {
            let (name, raw) = entry.map_err(|e| db_error("views", e))?;
            out.push((name.value().to_string(), from_json("view", raw.value())?));
        }
        Ok(out)
    }

    async fn add_joiner(
        &self,
        topic: &str,
        partition: u32,
        event: &ProcessEvent,
    ) -> PortResult<()> {
        self.joiners_lock().add(topic, partition, event);
        Ok(())
    }

    async fn take_joiners(&self, topic: &str, partition: u32) -> PortResult<Vec<ProcessEvent>> {
        Ok(self.joiners_lock().take(topic, partition))
    }
}

/// A checkpoint as the `checkpoints` table and the pending writes hold it.
fn decode_checkpoint(raw: &[u8]) -> PortResult<Checkpoint> {
    postcard::from_bytes::<Checkpoint>(raw).map_err(|e| corrupt("checkpoint", e))
}
