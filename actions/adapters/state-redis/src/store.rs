//! Kappa's state in Redis: the key layout, the Lua scripts and the decoding, over any
//! [`RedisCall`] transport.

use async_trait::async_trait;
use kappa_core::Message;
use kappa_core::ports::{
    Checkpoint, MAX_JOINERS_TAKEN, PortError, PortResult, Position, ProcessEvent, QueryRecord,
    ResultRecord, Segment, StateStore, Subscription, ViewDef, ring_since,
};
use sha1::{Digest, Sha1};

use crate::transport::{Arg, CallError, RedisCall, Reply};

pub(crate) const BACKEND: &str = "redis";

/// Replace a checkpoint only if its `next_offset` is still the expected one.
///
/// KEYS: the checkpoint hash, the query's set of checkpoint keys. ARGV: expected `next_offset`
/// (`""` for "no checkpoint yet"), then the new `next_offset`, `state`, `head`, `lost`.
/// Offsets are compared as canonical decimal strings, so no float rounding is involved.
const CAS_CHECKPOINT: &str = include_str!("cas_checkpoint.lua");

/// Append to a checkpoint's state and move its offsets, only if its `next_offset` is still the
/// expected one (a missing checkpoint never is). The state is concatenated inside Redis: only
/// the piece crosses the network.
///
/// KEYS: the checkpoint hash. ARGV: expected `next_offset`, then the new `next_offset`, the
/// piece, `head`, `lost`.
const APPEND_CHECKPOINT: &str = include_str!("append_checkpoint.lua");

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

impl RedisStoreConfig {
    /// Fails (permanently) when the key prefix holds `{` or `}`: they delimit the hash tag.
    pub(crate) fn check(&self) -> PortResult<()> {
        if self.key_prefix.contains(['{', '}']) {
            return Err(PortError::permanent(
                BACKEND,
                "key_prefix must not contain '{' or '}' (they delimit the hash tag)",
            ));
        }
        Ok(())
    }
}

/// A Lua script and its SHA-1, for `EVALSHA`.
struct Script {
    text: &'static str,
    sha: String,
}

impl Script {
    fn new(text: &'static str) -> Self {
        let sha = Sha1::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        Script { text, sha }
    }
}

/// The Lua scripts, hashed once.
struct Scripts {
    cas_checkpoint: Script,
    append_checkpoint: Script,
    cas_result: Script,
    touch: Script,
    add_refs: Script,
    unsubscribe: Script,
    remove: Script,
    cas_view: Script,
}

/// A [`StateStore`] on a Redis server, over the transport `C` (see the crate docs for the key
/// layout).
pub struct RedisStore<C> {
    pub(crate) conn: C,
    prefix: String,
    ring: usize,
    scripts: Scripts,
}

impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> PortError {
    PortError::permanent(BACKEND, format!("corrupt {what}: {detail}"))
}

fn port_error(what: &str, e: CallError) -> PortError {
    let message = format!("{what}: {}", e.message);
    if e.transient {
        PortError::transient(BACKEND, message)
    } else {
        PortError::permanent(BACKEND, message)
    }
}

/// How long joiners are kept in Redis ([`StateStore::add_joiner`]), seconds.
const JOINERS_TTL_S: u64 = 3_600;

fn json<T: serde::Serialize + ?Sized>(what: &str, value: &T) -> PortResult<Arg> {
    serde_json::to_string(value)
        .map(Arg::Str)
        .map_err(|e| PortError::permanent(BACKEND, format!("cannot encode {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, raw: &[u8]) -> PortResult<T> {
    serde_json::from_slice(raw).map_err(|e| corrupt(what, e))
}

impl Reply {
    fn int(&self, what: &str) -> PortResult<i64> {
        match self {
            Reply::Int(n) => Ok(*n),
            Reply::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| corrupt(what, "not a number")),
            other => Err(corrupt(what, format!("unexpected reply {other:?}"))),
        }
    }

    fn bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bytes(b) => Some(b),
            Reply::Int(n) => Some(n.to_string().into_bytes()),
            _ => None,
        }
    }

    fn array(self, what: &str) -> PortResult<Vec<Reply>> {
        match self {
            Reply::Array(a) => Ok(a),
            Reply::Nil => Ok(Vec::new()),
            other => Err(corrupt(what, format!("unexpected reply {other:?}"))),
        }
    }
}

/// `HMGET` of a checkpoint's position fields, decoded; None when the field `next_offset` is.
fn position(fields: [Reply; 3]) -> PortResult<Option<Position>> {
    let [next_offset, head, lost] = fields;
    if next_offset == Reply::Nil {
        return Ok(None);
    }
    Ok(Some(Position {
        next_offset: next_offset.int("checkpoint next_offset")?,
        head: head.int("checkpoint head")?,
        lost: lost_count(&lost)?,
    }))
}

fn lost_count(lost: &Reply) -> PortResult<u64> {
    u64::try_from(lost.int("checkpoint lost")?).map_err(|_| corrupt("checkpoint", "lost < 0"))
}

impl<C: RedisCall> RedisStore<C> {
    /// A store over `conn`. Fails (permanently) when the key prefix holds `{` or `}`.
    pub fn new(conn: C, config: RedisStoreConfig) -> PortResult<Self> {
        config.check()?;
        Ok(RedisStore {
            conn,
            prefix: config.key_prefix,
            ring: config.ring,
            scripts: Scripts {
                cas_checkpoint: Script::new(CAS_CHECKPOINT),
                append_checkpoint: Script::new(APPEND_CHECKPOINT),
                cas_result: Script::new(CAS_RESULT),
                touch: Script::new(TOUCH),
                add_refs: Script::new(ADD_REFS),
                unsubscribe: Script::new(UNSUBSCRIBE),
                remove: Script::new(REMOVE),
                cas_view: Script::new(CAS_VIEW),
            },
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

    /// The transport.
    pub fn transport(&self) -> &C {
        &self.conn
    }

    /// Key `{prefix}:{<id>}:<suffix>` of a query.
    fn key(&self, id: &str, suffix: &str) -> String {
        format!("{}:{{{}}}:{}", self.prefix, id, suffix)
    }

    fn checkpoint_key(&self, id: &str, segment: &Segment) -> String {
        self.key(id, &format!("cp:{}", segment.key()))
    }

    fn registry_key(&self) -> String {
        format!("{}:queries", self.prefix)
    }

    fn views_key(&self) -> String {
        format!("{}:views", self.prefix)
    }

    /// The list of replay joiners of a topic partition ([`StateStore::add_joiner`]).
    fn joiners_key(&self, topic: &str, partition: u32) -> String {
        format!("{}:joiners:{}:{}", self.prefix, topic, partition)
    }

    async fn cmd(&self, what: &str, args: Vec<Arg>) -> PortResult<Reply> {
        self.conn.call(args).await.map_err(|e| port_error(what, e))
    }

    async fn pipe(&self, what: &str, commands: Vec<Vec<Arg>>) -> PortResult<Vec<Reply>> {
        let n = commands.len();
        let replies = self.conn.pipeline(commands).await.map_err(|e| port_error(what, e))?;
        if replies.len() != n {
            return Err(corrupt(what, "not one reply per command"));
        }
        Ok(replies)
    }

    /// `EVALSHA`, then `EVAL` when the server no longer has the script (a restart emptied its
    /// cache); either way the script runs atomically on the server.
    async fn eval(
        &self,
        what: &str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Arg>,
    ) -> PortResult<Reply> {
        let command = |name: &str, body: &str| {
            let mut v = Vec::with_capacity(3 + keys.len() + args.len());
            v.extend([name.into(), body.into(), Arg::Str(keys.len().to_string())]);
            v.extend(keys.iter().cloned().map(Arg::Str));
            v.extend(args.iter().cloned());
            v
        };
        match self.conn.call(command("EVALSHA", &script.sha)).await {
            Err(e) if e.is_no_script() => self.cmd(what, command("EVAL", script.text)).await,
            other => other.map_err(|e| port_error(what, e)),
        }
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl<C: RedisCall> StateStore for RedisStore<C> {
    async fn register(&self, query: &QueryRecord) -> PortResult<bool> {
        // `SADD` always runs, so a crash between the two writes heals on the next registration.
        let record = json("query record", query)?;
        let replies = self
            .pipe(
                "register",
                vec![
                    vec!["SET".into(), self.key(&query.id, "query").into(), record, "NX".into()],
                    vec!["SADD".into(), self.registry_key().into(), query.id.clone().into()],
                ],
            )
            .await?;
        Ok(replies[0] != Reply::Nil)
    }

    async fn query(&self, id: &str) -> PortResult<Option<QueryRecord>> {
        let raw = self.cmd("query", vec!["GET".into(), self.key(id, "query").into()]).await?;
        raw.bytes().map(|r| from_json("query record", &r)).transpose()
    }

    async fn queries(&self) -> PortResult<Vec<String>> {
        let ids = self.cmd("queries", vec!["SMEMBERS".into(), self.registry_key().into()]).await?;
        let mut ids: Vec<String> = ids
            .array("queries")?
            .into_iter()
            .filter_map(Reply::bytes)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        kappa_core::sort::stable(&mut ids);
        Ok(ids)
    }

    async fn remove(&self, id: &str) -> PortResult<()> {
        let keys = ["cps", "query", "result", "ring", "subs", "meta"]
            .iter()
            .map(|s| self.key(id, s))
            .collect();
        self.eval("remove", &self.scripts.remove, keys, vec![]).await?;
        self.cmd("remove", vec!["SREM".into(), self.registry_key().into(), id.into()]).await?;
        Ok(())
    }

    async fn touch(&self, id: &str, now_ms: i64) -> PortResult<i64> {
        let args = vec![now_ms.to_string().into()];
        self.eval("touch", &self.scripts.touch, vec![self.key(id, "meta")], args)
            .await?
            .int("touch")
    }

    async fn last_touch(&self, id: &str) -> PortResult<Option<i64>> {
        let r = self
            .cmd("last_touch", vec!["HGET".into(), self.key(id, "meta").into(), "touch".into()])
            .await?;
        if r == Reply::Nil { Ok(None) } else { r.int("touch").map(Some) }
    }

    async fn add_refs(&self, id: &str, delta: i64) -> PortResult<i64> {
        let args = vec![delta.to_string().into()];
        self.eval("add_refs", &self.scripts.add_refs, vec![self.key(id, "meta")], args)
            .await?
            .int("refs")
    }

    async fn checkpoint(&self, id: &str, segment: &Segment) -> PortResult<Option<Checkpoint>> {
        let fields = ["next_offset", "state", "head", "lost"];
        let mut args = vec!["HMGET".into(), self.checkpoint_key(id, segment).into()];
        args.extend(fields.map(Arg::from));
        let fields = self.cmd("checkpoint", args).await?.array("checkpoint")?;
        let [next_offset, state, head, lost] = <[Reply; 4]>::try_from(fields)
            .map_err(|_| corrupt("checkpoint", "HMGET returned the wrong number of fields"))?;
        let Some(position) = position([next_offset, head, lost])? else { return Ok(None) };
        Ok(Some(Checkpoint {
            next_offset: position.next_offset,
            state: state.bytes().ok_or_else(|| corrupt("checkpoint", "missing field state"))?,
            head: position.head,
            lost: position.lost,
        }))
    }

    async fn positions(&self, id: &str, segments: &[Segment]) -> PortResult<Vec<Option<Position>>> {
        // One pipelined round trip for every segment, and the states stay in Redis.
        if segments.is_empty() {
            return Ok(Vec::new());
        }
        let commands = segments
            .iter()
            .map(|segment| {
                let mut args = vec!["HMGET".into(), self.checkpoint_key(id, segment).into()];
                args.extend(["next_offset", "head", "lost"].map(Arg::from));
                args
            })
            .collect();
        self.pipe("positions", commands)
            .await?
            .into_iter()
            .map(|reply| {
                let fields = <[Reply; 3]>::try_from(reply.array("positions")?).map_err(|_| {
                    corrupt("positions", "HMGET returned the wrong number of fields")
                })?;
                position(fields)
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
        let won = self
            .eval(
                "compare_and_set_checkpoint",
                &self.scripts.cas_checkpoint,
                vec![self.checkpoint_key(id, segment), self.key(id, "cps")],
                checkpoint_args(expected.map_or_else(String::new, |e| e.to_string()), new),
            )
            .await?;
        Ok(won.int("compare_and_set_checkpoint")? == 1)
    }

    async fn compare_and_append_checkpoint(
        &self,
        id: &str,
        segment: &Segment,
        expected: i64,
        advance: &Checkpoint,
    ) -> PortResult<bool> {
        let won = self
            .eval(
                "compare_and_append_checkpoint",
                &self.scripts.append_checkpoint,
                vec![self.checkpoint_key(id, segment)],
                checkpoint_args(expected.to_string(), advance),
            )
            .await?;
        Ok(won.int("compare_and_append_checkpoint")? == 1)
    }

    async fn result(&self, id: &str) -> PortResult<Option<ResultRecord>> {
        let raw = self
            .cmd("result", vec!["HGET".into(), self.key(id, "result").into(), "record".into()])
            .await?;
        raw.bytes().map(|r| from_json("result record", &r)).transpose()
    }

    async fn compare_and_set_result(
        &self,
        id: &str,
        expected: u64,
        new: &ResultRecord,
        message: Message,
    ) -> PortResult<bool> {
        let won = self
            .eval(
                "compare_and_set_result",
                &self.scripts.cas_result,
                vec![self.key(id, "result"), self.key(id, "ring")],
                vec![
                    expected.to_string().into(),
                    new.revision.to_string().into(),
                    new.version.to_string().into(),
                    json("result record", new)?,
                    json("message", &message)?,
                    self.ring.to_string().into(),
                ],
            )
            .await?;
        Ok(won.int("compare_and_set_result")? == 1)
    }

    async fn messages_since(&self, id: &str, version: u64) -> PortResult<Option<Vec<Message>>> {
        // One round trip, not a transaction: the version and the ring are written together by
        // one script, so a result committed between the two reads only adds messages after
        // `current`, which `ring_since` leaves out, or trims the ring, which it detects.
        let mut replies = self
            .pipe(
                "messages_since",
                vec![
                    vec!["HGET".into(), self.key(id, "result").into(), "version".into()],
                    vec!["LRANGE".into(), self.key(id, "ring").into(), "0".into(), "-1".into()],
                ],
            )
            .await?;
        let ring = replies.pop().unwrap_or(Reply::Nil);
        let current = replies.pop().unwrap_or(Reply::Nil);
        let current = match current {
            Reply::Nil => 0,
            c => u64::try_from(c.int("result version")?)
                .map_err(|_| corrupt("result", "version < 0"))?,
        };
        if version >= current {
            return Ok(Some(Vec::new()));
        }
        let ring: Vec<Message> = ring
            .array("ring")?
            .into_iter()
            .filter_map(Reply::bytes)
            .map(|m| from_json("ring message", &m))
            .collect::<PortResult<_>>()?;
        Ok(ring_since(&ring, version, current))
    }

    async fn add_joiner(
        &self,
        topic: &str,
        partition: u32,
        event: &ProcessEvent,
    ) -> PortResult<()> {
        let key = self.joiners_key(topic, partition);
        let raw = json("joiner", event)?;
        // A joiner not taken within the hour was started by the tick long ago.
        let expire = vec!["EXPIRE".into(), key.clone().into(), JOINERS_TTL_S.to_string().into()];
        self.pipe("add_joiner", vec![vec!["RPUSH".into(), key.into(), raw], expire]).await?;
        Ok(())
    }

    async fn take_joiners(&self, topic: &str, partition: u32) -> PortResult<Vec<ProcessEvent>> {
        // `LPOP` with a count (Redis 6.2) pops atomically: each joiner is taken once.
        let count = MAX_JOINERS_TAKEN.to_string();
        let raw = self
            .cmd(
                "take_joiners",
                vec!["LPOP".into(), self.joiners_key(topic, partition).into(), count.into()],
            )
            .await?
            .array("take_joiners")?;
        raw.into_iter().filter_map(Reply::bytes).map(|s| from_json("joiner", &s)).collect()
    }

    async fn subscribe(&self, id: &str, subscription: &Subscription) -> PortResult<()> {
        let raw = json("subscription", subscription)?;
        self.cmd("subscribe", vec!["RPUSH".into(), self.key(id, "subs").into(), raw]).await?;
        Ok(())
    }

    async fn unsubscribe(&self, id: &str, url: &str) -> PortResult<bool> {
        let removed = self
            .eval(
                "unsubscribe",
                &self.scripts.unsubscribe,
                vec![self.key(id, "subs")],
                vec![url.into()],
            )
            .await?
            .int("removed")?;
        Ok(removed > 0)
    }

    async fn subscriptions(&self, id: &str) -> PortResult<Vec<Subscription>> {
        let raw = self
            .cmd(
                "subscriptions",
                vec!["LRANGE".into(), self.key(id, "subs").into(), "0".into(), "-1".into()],
            )
            .await?
            .array("subscriptions")?;
        raw.into_iter().filter_map(Reply::bytes).map(|s| from_json("subscription", &s)).collect()
    }

    async fn view(&self, name: &str) -> PortResult<Option<ViewDef>> {
        let raw =
            self.cmd("view", vec!["HGET".into(), self.views_key().into(), name.into()]).await?;
        raw.bytes().map(|r| from_json("view", &r)).transpose()
    }

    async fn compare_and_set_view(
        &self,
        name: &str,
        expected: Option<&ViewDef>,
        new: &ViewDef,
    ) -> PortResult<bool> {
        let expected = match expected {
            Some(def) => json("view", def)?,
            None => Arg::Str(String::new()),
        };
        let args = vec![name.into(), expected, json("view", new)?];
        let won = self
            .eval("compare_and_set_view", &self.scripts.cas_view, vec![self.views_key()], args)
            .await?
            .int("compare_and_set_view")?;
        Ok(won == 1)
    }

    async fn views(&self) -> PortResult<Vec<(String, ViewDef)>> {
        let raw = self
            .cmd("views", vec!["HGETALL".into(), self.views_key().into()])
            .await?
            .array("views")?;
        let mut views = Vec::with_capacity(raw.len() / 2);
        let mut fields = raw.into_iter();
        while let (Some(name), Some(def)) = (fields.next(), fields.next()) {
            let name = name.bytes().ok_or_else(|| corrupt("views", "a name that is not text"))?;
            let def =
                def.bytes().ok_or_else(|| corrupt("views", "a definition that is not text"))?;
            views.push((String::from_utf8_lossy(&name).into_owned(), from_json("view", &def)?));
        }
        kappa_core::sort::stable_by(&mut views, |a, b| a.0.cmp(&b.0));
        Ok(views)
    }
}

/// The ARGV of both checkpoint scripts: the expected offset, then the new `next_offset`, the
/// state's bytes (whole or the piece appended), `head`, `lost`.
fn checkpoint_args(expected: String, checkpoint: &Checkpoint) -> Vec<Arg> {
    vec![
        expected.into(),
        checkpoint.next_offset.to_string().into(),
        Arg::Bytes(checkpoint.state.clone()),
        checkpoint.head.to_string().into(),
        checkpoint.lost.to_string().into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_hashes_are_redis_sha1s() {
        // `redis-cli SCRIPT LOAD "return 1"` answers this SHA-1.
        assert_eq!(Script::new("return 1").sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    #[test]
    fn a_key_prefix_with_braces_is_refused() {
        struct Nothing;
        #[async_trait]
        impl RedisCall for Nothing {
            async fn call(&self, _: Vec<Arg>) -> Result<Reply, CallError> {
                Ok(Reply::Nil)
            }
        }
        let config = RedisStoreConfig { key_prefix: "a{b".into(), ring: 1 };
        let err = RedisStore::new(Nothing, config).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
    }
}
