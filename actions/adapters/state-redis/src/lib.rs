//! Kappa's [`StateStore`] over Redis, for the OpenWhisk deployment.
//!
//! Why it is shaped this way:
//! - **Atomic compare-and-set in Lua.** Exactly-once rests on the checkpoint CAS, and a
//!   subscriber's view on the result CAS; each is one Lua script (`EVALSHA` through
//!   [`redis::Script`], reloaded transparently after a restart flushed the script cache), so the
//!   read-compare-write cannot interleave with another invocation's. The result script also
//!   appends the change's message to the bounded ring (`RPUSH` + `LTRIM`), so a result is never
//!   visible without its message, nor a message without its result. Subscribers are woken by
//!   the push action through the gateway (ARCHITECTURE.md §7), not by the store.
//! - **One hash tag per query.** Every key of a query is `{prefix}:{<id>}:…`, so they share a
//!   Redis Cluster slot and the scripts may touch them together. Only the registry set
//!   `{prefix}:queries` lives elsewhere; `register` always re-adds to it, so a crash between the
//!   two writes heals on the next registration.
//! - **Raw bytes.** Checkpoint states are binary (`postcard`) and stored as such in a hash
//!   (`next_offset`, `state`, `head`, `lost`), never base64; records and messages are JSON.
//! - **Reconnects.** A [`redis::aio::ConnectionManager`] multiplexes the calls of one action
//!   over one connection and reconnects after a Redis restart; the call that saw the connection
//!   drop fails with a transient [`PortError`], the next one goes through.
//! - **Errors.** Connection losses, timeouts, `LOADING`/`TRYAGAIN` are transient; protocol,
//!   script and decoding errors are permanent. No error message ever contains the URL's
//!   credentials.
//!
//! Keys of query `<id>` (prefix `kappa` by default): `:query` (JSON record), `:cp:<segment>`
//! (checkpoint hash), `:cps` (set of the query's checkpoint keys, so `remove` finds them),
//! `:result` (hash: `revision`, `version`, `record` JSON), `:ring` (list of JSON messages),
//! `:subs` (list of JSON subscriptions), `:meta` (hash: `touch`, `refs`). Views are one hash,
//! `{prefix}:views` (name → JSON definition).
//!
//! Test with: `scripts/redis.sh start && REDIS_URL=redis://127.0.0.1:16379 cargo test -p
//! kappa-state-redis` (without `REDIS_URL` the integration tests print "skipped").

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use kappa_core::Message;
use kappa_core::ports::{
    Checkpoint, PortError, PortResult, Position, QueryRecord, ResultRecord, Segment, StateStore,
    Subscription, ViewDef, ring_since,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RetryMethod, Script};
use std::time::Duration;

const BACKEND: &str = "redis";

/// Replace a checkpoint only if its `next_offset` is still the expected one.
///
/// KEYS: the checkpoint hash, the query's set of checkpoint keys. ARGV: expected `next_offset`
/// (`""` for "no checkpoint yet"), then the new `next_offset`, `state`, `head`, `lost`.
/// Offsets are compared as canonical decimal strings, so no float rounding is involved.
const CAS_CHECKPOINT: &str = include_str!("cas_checkpoint.lua");

/// Replace the result only if its revision is still the expected one, append the message to
/// the ring and trim the ring.
///
/// KEYS: the result hash, the ring list. ARGV: expected revision (`"0"` for none), new
/// revision, new version, record JSON, message JSON, ring size.
const CAS_RESULT: &str = include_str!("cas_result.lua");

/// Set the last touch and return the previous one (or the new one when there was none), as a
/// string so that no epoch value goes through a Lua float.
const TOUCH: &str = include_str!("touch.lua");

/// Add to the reference count, never going below 0.
const ADD_REFS: &str = include_str!("add_refs.lua");

/// Delete every key of a query: the checkpoints listed in KEYS[1], then all of KEYS.
const REMOVE: &str = include_str!("remove.lua");

/// Remove the subscriptions whose `url` is ARGV[1] from the list KEYS[1]; how many there were
/// (one script, so a subscription added meanwhile is never lost).
const UNSUBSCRIBE: &str = include_str!("unsubscribe.lua");

/// Replace a view's definition only if it is still the expected one.
///
/// KEYS: the views hash. ARGV: the view's name, the expected definition's JSON (`""` for no
/// view yet), the new one's JSON. Both sides serialise a `ViewDef` the same way, so comparing
/// the texts compares the definitions.
const CAS_VIEW: &str = include_str!("cas_view.lua");

/// Configuration of a [`RedisStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStoreConfig {
    /// First part of every key (default `kappa`); must not contain `{` or `}`.
    pub key_prefix: String,
    /// Messages kept per query for `messages_since` (default 1024).
    pub ring: usize,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        RedisStoreConfig { key_prefix: "kappa".to_string(), ring: 1024 }
    }
}

/// The Lua scripts, hashed once.
struct Scripts {
    cas_checkpoint: Script,
    cas_result: Script,
    touch: Script,
    add_refs: Script,
    unsubscribe: Script,
    remove: Script,
    cas_view: Script,
}

/// A [`StateStore`] on a Redis server (see the crate docs for the key layout).
///
/// Cheap to share behind an `Arc`; every call goes over one multiplexed, self-reconnecting
/// connection.
pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    ring: usize,
    scripts: Scripts,
    /// The URL without credentials, for error messages.
    display_url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.display_url)
            .field("prefix", &self.prefix)
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

/// `url` without its user info (`user:password@`), query and fragment.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "<redis url>".to_string(),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// Whether a Redis error may go away on retry (connection loss, timeout, server loading).
fn is_transient(e: &RedisError) -> bool {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
    {
        return true;
    }
    match e.kind() {
        redis::ErrorKind::Parse | redis::ErrorKind::AuthenticationFailed => false,
        _ => matches!(
            e.retry_method(),
            RetryMethod::Reconnect
                | RetryMethod::RetryImmediately
                | RetryMethod::WaitAndRetry
                | RetryMethod::ReconnectFromInitialConnections
        ),
    }
}

/// A [`PortError`] for a failed Redis call; `what` names the operation.
fn redis_error(what: &str, e: &RedisError) -> PortError {
    let message = format!("{what}: {e}");
    if is_transient(e) {
        PortError::transient(BACKEND, message)
    } else {
        PortError::permanent(BACKEND, message)
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> PortError {
    PortError::permanent(BACKEND, format!("corrupt {what}: {detail}"))
}

fn parse_num<T: std::str::FromStr>(what: &str, field: &str, raw: Option<&[u8]>) -> PortResult<T> {
    let raw = raw.ok_or_else(|| corrupt(what, format!("missing field {field}")))?;
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt(what, format!("field {field} is not a number")))
}

fn to_json<T: serde::Serialize + ?Sized>(what: &str, value: &T) -> PortResult<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| PortError::permanent(BACKEND, format!("cannot encode {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, raw: &[u8]) -> PortResult<T> {
    serde_json::from_slice(raw).map_err(|e| corrupt(what, e))
}

impl RedisStore {
    /// Connect to the Redis server at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://` for TLS when the `redis` crate is built with it).
    ///
    /// Fails with a transient error when the server cannot be reached, a permanent one when
    /// the URL or the configuration is invalid.
    pub async fn connect(url: &str, config: RedisStoreConfig) -> Result<Self, PortError> {
        let display_url = redact_url(url);
        if config.key_prefix.contains(['{', '}']) {
            return Err(PortError::permanent(
                BACKEND,
                "key_prefix must not contain '{' or '}' (they delimit the hash tag)",
            ));
        }
        let client = redis::Client::open(url).map_err(|e| {
            PortError::permanent(BACKEND, format!("invalid Redis URL {display_url}: {e}"))
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|e| redis_error(&format!("connect to {display_url}"), &e))?;
        Ok(RedisStore {
            client,
            conn,
            prefix: config.key_prefix,
            ring: config.ring,
            scripts: Scripts {
                cas_checkpoint: Script::new(CAS_CHECKPOINT),
                cas_result: Script::new(CAS_RESULT),
                touch: Script::new(TOUCH),
                add_refs: Script::new(ADD_REFS),
                unsubscribe: Script::new(UNSUBSCRIBE),
                remove: Script::new(REMOVE),
                cas_view: Script::new(CAS_VIEW),
            },
            display_url,
        })
    }

    /// The first part of every key.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The number of messages kept per query.
    pub fn ring(&self) -> usize {
        self.ring
    }

    /// Key `{prefix}:{<id>}:<suffix>` of a query.
    fn key(&self, id: &str, suffix: &str) -> String {
        format!("{}:{{{}}}:{}", self.prefix, id, suffix)
    }

    fn registry_key(&self) -> String {
        format!("{}:queries", self.prefix)
    }

    fn views_key(&self) -> String {
        format!("{}:views", self.prefix)
    }

    /// The payloads published on `channel` from now on, on a dedicated pub/sub connection.
    /// The stream ends when the connection is lost; whoever needs every message subscribes
    /// again and catches up from the store.
    pub async fn subscribe_channel(
        &self,
        channel: &str,
    ) -> PortResult<impl Stream<Item = Vec<u8>> + Send + 'static + use<>> {
        let mut pubsub =
            self.client.get_async_pubsub().await.map_err(|e| {
                redis_error(&format!("pub/sub connect to {}", self.display_url), &e)
            })?;
        pubsub.subscribe(channel).await.map_err(|e| redis_error("subscribe", &e))?;
        Ok(pubsub.into_on_message().map(|msg| msg.get_payload_bytes().to_vec()))
    }

    /// Publish `payload` on `channel`; returns how many connections received it.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> PortResult<i64> {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("publish", &e))
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn register(&self, query: &QueryRecord) -> PortResult<bool> {
        let record = to_json("query record", query)?;
        let (created, _): (Option<String>, i64) = redis::pipe()
            .cmd("SET")
            .arg(self.key(&query.id, "query"))
            .arg(record)
            .arg("NX")
            .cmd("SADD")
            .arg(self.registry_key())
            .arg(&query.id)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("register", &e))?;
        Ok(created.is_some())
    }

    async fn query(&self, id: &str) -> PortResult<Option<QueryRecord>> {
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(id, "query"))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("query", &e))?;
        raw.map(|r| from_json("query record", &r)).transpose()
    }

    async fn queries(&self) -> PortResult<Vec<String>> {
        let mut ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.registry_key())
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("queries", &e))?;
        ids.sort();
        Ok(ids)
    }

    async fn remove(&self, id: &str) -> PortResult<()> {
        let _: i64 = self
            .scripts
            .remove
            .key(self.key(id, "cps"))
            .key(self.key(id, "query"))
            .key(self.key(id, "result"))
            .key(self.key(id, "ring"))
            .key(self.key(id, "subs"))
            .key(self.key(id, "meta"))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("remove", &e))?;
        let _: i64 = redis::cmd("SREM")
            .arg(self.registry_key())
            .arg(id)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("remove", &e))?;
        Ok(())
    }

    async fn touch(&self, id: &str, now_ms: i64) -> PortResult<i64> {
        let last: String = self
            .scripts
            .touch
            .key(self.key(id, "meta"))
            .arg(now_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("touch", &e))?;
        last.parse().map_err(|_| corrupt("touch", "not a number"))
    }

    async fn last_touch(&self, id: &str) -> PortResult<Option<i64>> {
        let last: Option<String> = redis::cmd("HGET")
            .arg(self.key(id, "meta"))
            .arg("touch")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("last_touch", &e))?;
        last.map(|l| l.parse().map_err(|_| corrupt("touch", "not a number"))).transpose()
    }

    async fn add_refs(&self, id: &str, delta: i64) -> PortResult<i64> {
        self.scripts
            .add_refs
            .key(self.key(id, "meta"))
            .arg(delta)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("add_refs", &e))
    }

    async fn checkpoint(&self, id: &str, segment: &Segment) -> PortResult<Option<Checkpoint>> {
        let key = self.key(id, &format!("cp:{}", segment.key()));
        let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(&key)
            .arg(&["next_offset", "state", "head", "lost"])
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("checkpoint", &e))?;
        let [next_offset, state, head, lost] = <[Option<Vec<u8>>; 4]>::try_from(fields)
            .map_err(|_| corrupt("checkpoint", "HMGET returned the wrong number of fields"))?;
        let Some(next_offset) = next_offset else { return Ok(None) };
        Ok(Some(Checkpoint {
            next_offset: parse_num("checkpoint", "next_offset", Some(&next_offset))?,
            state: state.ok_or_else(|| corrupt("checkpoint", "missing field state"))?,
            head: parse_num("checkpoint", "head", head.as_deref())?,
            lost: parse_num("checkpoint", "lost", lost.as_deref())?,
        }))
    }

    async fn positions(&self, id: &str, segments: &[Segment]) -> PortResult<Vec<Option<Position>>> {
        // One pipelined round trip for every segment, and the states stay in Redis.
        if segments.is_empty() {
            return Ok(Vec::new()); // Redis refuses an empty pipeline
        }
        let mut pipe = redis::pipe();
        for segment in segments {
            pipe.cmd("HMGET").arg(self.key(id, &format!("cp:{}", segment.key()))).arg(&[
                "next_offset",
                "head",
                "lost",
            ]);
        }
        let replies: Vec<[Option<Vec<u8>>; 3]> =
            pipe.query_async(&mut self.conn()).await.map_err(|e| redis_error("positions", &e))?;
        if replies.len() != segments.len() {
            return Err(corrupt("positions", "a reply per segment"));
        }
        replies
            .into_iter()
            .map(|[next_offset, head, lost]| {
                let Some(next_offset) = next_offset else { return Ok(None) };
                Ok(Some(Position {
                    next_offset: parse_num("checkpoint", "next_offset", Some(&next_offset))?,
                    head: parse_num("checkpoint", "head", head.as_deref())?,
                    lost: parse_num("checkpoint", "lost", lost.as_deref())?,
                }))
            })
            .collect()
    }

    async fn compare_and_set_checkpoint(
        &self,
        id: &str,
        segment: &Segment,
        expected: Option<i64>,
        new: &Checkpoint,
    ) -> PortResult<bool> {
        let won: i64 = self
            .scripts
            .cas_checkpoint
            .key(self.key(id, &format!("cp:{}", segment.key())))
            .key(self.key(id, "cps"))
            .arg(expected.map_or_else(String::new, |e| e.to_string()))
            .arg(new.next_offset.to_string())
            .arg(new.state.as_slice())
            .arg(new.head.to_string())
            .arg(new.lost.to_string())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("compare_and_set_checkpoint", &e))?;
        Ok(won == 1)
    }

    async fn result(&self, id: &str) -> PortResult<Option<ResultRecord>> {
        let raw: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.key(id, "result"))
            .arg("record")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("result", &e))?;
        raw.map(|r| from_json("result record", &r)).transpose()
    }

    async fn compare_and_set_result(
        &self,
        id: &str,
        expected: u64,
        new: &ResultRecord,
        message: &Message,
    ) -> PortResult<bool> {
        let record = to_json("result record", new)?;
        let message = to_json("message", message)?;
        let won: i64 = self
            .scripts
            .cas_result
            .key(self.key(id, "result"))
            .key(self.key(id, "ring"))
            .arg(expected.to_string())
            .arg(new.revision.to_string())
            .arg(new.version.to_string())
            .arg(record)
            .arg(message)
            .arg(self.ring.to_string())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("compare_and_set_result", &e))?;
        Ok(won == 1)
    }

    async fn messages_since(&self, id: &str, version: u64) -> PortResult<Option<Vec<Message>>> {
        // One MULTI/EXEC round trip: the current version and the ring, consistent.
        let (current, ring): (Option<String>, Vec<Vec<u8>>) = redis::pipe()
            .atomic()
            .cmd("HGET")
            .arg(self.key(id, "result"))
            .arg("version")
            .cmd("LRANGE")
            .arg(self.key(id, "ring"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("messages_since", &e))?;
        let current: u64 = match current {
            Some(c) => c.parse().map_err(|_| corrupt("result", "version is not a number"))?,
            None => 0,
        };
        if version >= current {
            return Ok(Some(Vec::new()));
        }
        let ring: Vec<Message> =
            ring.iter().map(|m| from_json("ring message", m)).collect::<PortResult<_>>()?;
        Ok(ring_since(&ring, version, current))
    }

    async fn subscribe(&self, id: &str, subscription: &Subscription) -> PortResult<()> {
        let raw = to_json("subscription", subscription)?;
        let _: i64 = redis::cmd("RPUSH")
            .arg(self.key(id, "subs"))
            .arg(raw)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("subscribe", &e))?;
        Ok(())
    }

    async fn unsubscribe(&self, id: &str, url: &str) -> PortResult<bool> {
        let removed: i64 = self
            .scripts
            .unsubscribe
            .key(self.key(id, "subs"))
            .arg(url)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("unsubscribe", &e))?;
        Ok(removed > 0)
    }

    async fn subscriptions(&self, id: &str) -> PortResult<Vec<Subscription>> {
        let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(self.key(id, "subs"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("subscriptions", &e))?;
        raw.iter().map(|s| from_json("subscription", s)).collect()
    }

    async fn view(&self, name: &str) -> PortResult<Option<ViewDef>> {
        let raw: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.views_key())
            .arg(name)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("view", &e))?;
        raw.map(|r| from_json("view", &r)).transpose()
    }

    async fn compare_and_set_view(
        &self,
        name: &str,
        expected: Option<&ViewDef>,
        new: &ViewDef,
    ) -> PortResult<bool> {
        let expected = match expected {
            Some(def) => to_json("view", def)?,
            None => Vec::new(),
        };
        let won: i64 = self
            .scripts
            .cas_view
            .key(self.views_key())
            .arg(name)
            .arg(expected)
            .arg(to_json("view", new)?)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("compare_and_set_view", &e))?;
        Ok(won == 1)
    }

    async fn views(&self) -> PortResult<Vec<(String, ViewDef)>> {
        let raw: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.views_key())
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("views", &e))?;
        let mut views = raw
            .iter()
            .map(|(name, def)| Ok((name.clone(), from_json("view", def)?)))
            .collect::<PortResult<Vec<_>>>()?;
        views.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_credentials_query_and_fragment() {
        assert_eq!(redact_url("redis://127.0.0.1:16379"), "redis://127.0.0.1:16379");
        assert_eq!(redact_url("redis://:pw@h:1/2"), "redis://h:1/2");
        assert_eq!(redact_url("rediss://user:p@ss@host/0?password=x#f"), "rediss://host/0");
        assert_eq!(redact_url("user:pw@host"), "<redis url>");
    }
}
