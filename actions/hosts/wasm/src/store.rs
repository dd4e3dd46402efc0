//! [`StateStore`] over any Redis connection that can send one command, for the WASM build
//! (where the connection is the JavaScript `redis` client).
//!
//! The state logic is `kappa-state-redis`'s: the same Lua scripts (`include_str!` of the same
//! `.lua` files, run by `EVALSHA`, falling back to `EVAL` after a restart emptied the script
//! cache) and the same key layout, so native and WASM actions share one Redis and each reads
//! what the other wrote (the WASM test checks it). Only the transport differs.

use async_trait::async_trait;
use kappa_core::Message;
use kappa_core::ports::{
    Checkpoint, PortError, PortResult, QueryRecord, ResultRecord, Segment, StateStore,
    Subscription, ViewDef, ring_since,
};
use sha1::{Digest, Sha1};

const BACKEND: &str = "redis";

/// The scripts of `kappa-state-redis`, byte for byte.
pub const CAS_CHECKPOINT: &str =
    include_str!("../../../adapters/state-redis/src/cas_checkpoint.lua");
/// See [`CAS_CHECKPOINT`].
pub const CAS_RESULT: &str = include_str!("../../../adapters/state-redis/src/cas_result.lua");
/// See [`CAS_CHECKPOINT`].
pub const TOUCH: &str = include_str!("../../../adapters/state-redis/src/touch.lua");
/// See [`CAS_CHECKPOINT`].
pub const ADD_REFS: &str = include_str!("../../../adapters/state-redis/src/add_refs.lua");
/// See [`CAS_CHECKPOINT`].
pub const REMOVE: &str = include_str!("../../../adapters/state-redis/src/remove.lua");
/// See [`CAS_CHECKPOINT`].
pub const UNSUBSCRIBE: &str = include_str!("../../../adapters/state-redis/src/unsubscribe.lua");
/// See [`CAS_CHECKPOINT`].
pub const CAS_VIEW: &str = include_str!("../../../adapters/state-redis/src/cas_view.lua");

/// One argument of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// Text.
    Str(String),
    /// Raw bytes (checkpoint states).
    Bytes(Vec<u8>),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Str(s.to_string())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Str(s)
    }
}

/// A reply, with bulk strings as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Null.
    Nil,
    /// Integer.
    Int(i64),
    /// Bulk or simple string.
    Bytes(Vec<u8>),
    /// Array.
    Array(Vec<Reply>),
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

/// A failed command: the server's error text (`NOSCRIPT ...`) or a connection failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// Message (never contains the URL's credentials).
    pub message: String,
    /// Whether the call may succeed later (connection loss, `LOADING`, `TRYAGAIN`, `BUSY`).
    pub transient: bool,
}

/// Sends one command.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait RedisCall: Send + Sync {
    /// Send `args` (command name first) and return the reply.
    async fn call(&self, args: Vec<Arg>) -> Result<Reply, CallError>;
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> PortError {
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

fn json<T: serde::Serialize + ?Sized>(what: &str, v: &T) -> PortResult<Arg> {
    serde_json::to_string(v)
        .map(Arg::Str)
        .map_err(|e| PortError::permanent(BACKEND, format!("cannot encode {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, raw: &[u8]) -> PortResult<T> {
    serde_json::from_slice(raw).map_err(|e| corrupt(what, e))
}

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

/// Kappa's state in Redis (key layout of `kappa-state-redis`; prefix `kappa`, ring 1024).
pub struct ScriptStore<C> {
    conn: C,
    prefix: String,
    ring: usize,
    cas_checkpoint: Script,
    cas_result: Script,
    touch: Script,
    add_refs: Script,
    unsubscribe: Script,
    remove: Script,
    cas_view: Script,
}

impl<C: RedisCall> ScriptStore<C> {
    /// A store over `conn` with `kappa-state-redis`'s defaults.
    pub fn new(conn: C) -> Self {
        ScriptStore::with_prefix(conn, "kappa")
    }

    /// A store whose keys start with `prefix` (`kappa-state-redis`'s `key_prefix`).
    pub fn with_prefix(conn: C, prefix: &str) -> Self {
        ScriptStore {
            conn,
            prefix: prefix.into(),
            ring: 1024,
            cas_checkpoint: Script::new(CAS_CHECKPOINT),
            cas_result: Script::new(CAS_RESULT),
            touch: Script::new(TOUCH),
            add_refs: Script::new(ADD_REFS),
            unsubscribe: Script::new(UNSUBSCRIBE),
            remove: Script::new(REMOVE),
            cas_view: Script::new(CAS_VIEW),
        }
    }

    fn key(&self, id: &str, suffix: &str) -> String {
        format!("{}:{{{}}}:{}", self.prefix, id, suffix)
    }

    fn registry_key(&self) -> String {
        format!("{}:queries", self.prefix)
    }

    fn views_key(&self) -> String {
        format!("{}:views", self.prefix)
    }

    async fn cmd(&self, what: &str, args: Vec<Arg>) -> PortResult<Reply> {
        self.conn.call(args).await.map_err(|e| port_error(what, e))
    }

    /// `EVALSHA`, then `EVAL` when the server no longer has the script.
    async fn eval(
        &self,
        what: &str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Arg>,
    ) -> PortResult<Reply> {
        let tail = |head: Arg| {
            let mut v = vec![head, Arg::Str(keys.len().to_string())];
            v.extend(keys.iter().cloned().map(Arg::Str));
            v.extend(args.iter().cloned());
            v
        };
        let mut first = tail(Arg::Str(script.sha.clone()));
        first.insert(0, "EVALSHA".into());
        match self.conn.call(first).await {
            Err(e) if e.message.contains("NOSCRIPT") => {
                let mut second = tail(Arg::Str(script.text.to_string()));
                second.insert(0, "EVAL".into());
                self.cmd(what, second).await
            }
            other => other.map_err(|e| port_error(what, e)),
        }
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
impl<C: RedisCall> StateStore for ScriptStore<C> {
    async fn register(&self, query: &QueryRecord) -> PortResult<bool> {
        let record = json("query record", query)?;
        let set = self
            .cmd(
                "register",
                vec!["SET".into(), self.key(&query.id, "query").into(), record, "NX".into()],
            )
            .await?;
        self.cmd(
            "register",
            vec!["SADD".into(), self.registry_key().into(), query.id.clone().into()],
        )
        .await?;
        Ok(set != Reply::Nil)
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
        ids.sort();
        Ok(ids)
    }

    async fn remove(&self, id: &str) -> PortResult<()> {
        let keys = ["cps", "query", "result", "ring", "subs", "meta"]
            .iter()
            .map(|s| self.key(id, s))
            .collect();
        self.eval("remove", &self.remove, keys, vec![]).await?;
        self.cmd("remove", vec!["SREM".into(), self.registry_key().into(), id.into()]).await?;
        Ok(())
    }

    async fn touch(&self, id: &str, now_ms: i64) -> PortResult<i64> {
        self.eval("touch", &self.touch, vec![self.key(id, "meta")], vec![now_ms.to_string().into()])
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
        self.eval(
            "add_refs",
            &self.add_refs,
            vec![self.key(id, "meta")],
            vec![delta.to_string().into()],
        )
        .await?
        .int("refs")
    }

    async fn checkpoint(&self, id: &str, segment: &Segment) -> PortResult<Option<Checkpoint>> {
        let key = self.key(id, &format!("cp:{}", segment.key()));
        let fields = self
            .cmd(
                "checkpoint",
                vec![
                    "HMGET".into(),
                    key.into(),
                    "next_offset".into(),
                    "state".into(),
                    "head".into(),
                    "lost".into(),
                ],
            )
            .await?
            .array("checkpoint")?;
        let [next_offset, state, head, lost] = <[Reply; 4]>::try_from(fields)
            .map_err(|_| corrupt("checkpoint", "HMGET returned the wrong number of fields"))?;
        if next_offset == Reply::Nil {
            return Ok(None);
        }
        Ok(Some(Checkpoint {
            next_offset: next_offset.int("checkpoint next_offset")?,
            state: state.bytes().ok_or_else(|| corrupt("checkpoint", "missing field state"))?,
            head: head.int("checkpoint head")?,
            lost: lost.int("checkpoint lost")? as u64,
        }))
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
                &self.cas_checkpoint,
                vec![self.key(id, &format!("cp:{}", segment.key())), self.key(id, "cps")],
                vec![
                    expected.map_or_else(String::new, |e| e.to_string()).into(),
                    new.next_offset.to_string().into(),
                    Arg::Bytes(new.state.clone()),
                    new.head.to_string().into(),
                    new.lost.to_string().into(),
                ],
            )
            .await?;
        Ok(won.int("compare_and_set_checkpoint")? == 1)
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
        message: &Message,
    ) -> PortResult<bool> {
        let won = self
            .eval(
                "compare_and_set_result",
                &self.cas_result,
                vec![self.key(id, "result"), self.key(id, "ring")],
                vec![
                    expected.to_string().into(),
                    new.revision.to_string().into(),
                    new.version.to_string().into(),
                    json("result record", new)?,
                    json("message", message)?,
                    self.ring.to_string().into(),
                ],
            )
            .await?;
        Ok(won.int("compare_and_set_result")? == 1)
    }

    async fn messages_since(&self, id: &str, version: u64) -> PortResult<Option<Vec<Message>>> {
        // MULTI/EXEC is not needed for consistency here: the ring and the version are written by
        // one script, and a newer ring only adds messages after `current`.
        let current = self
            .cmd(
                "messages_since",
                vec!["HGET".into(), self.key(id, "result").into(), "version".into()],
            )
            .await?;
        let current = if current == Reply::Nil { 0 } else { current.int("result version")? as u64 };
        if version >= current {
            return Ok(Some(Vec::new()));
        }
        let ring = self
            .cmd(
                "messages_since",
                vec!["LRANGE".into(), self.key(id, "ring").into(), "0".into(), "-1".into()],
            )
            .await?
            .array("ring")?;
        let ring: Vec<Message> = ring
            .into_iter()
            .filter_map(Reply::bytes)
            .map(|m| from_json("ring message", &m))
            .collect::<PortResult<_>>()?;
        Ok(ring_since(&ring, version, current))
    }

    async fn subscribe(&self, id: &str, subscription: &Subscription) -> PortResult<()> {
        let raw = json("subscription", subscription)?;
        self.cmd("subscribe", vec!["RPUSH".into(), self.key(id, "subs").into(), raw]).await?;
        Ok(())
    }

    async fn unsubscribe(&self, id: &str, url: &str) -> PortResult<bool> {
        let removed = self
            .eval("unsubscribe", &self.unsubscribe, vec![self.key(id, "subs")], vec![url.into()])
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
            .eval("compare_and_set_view", &self.cas_view, vec![self.views_key()], args)
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
        views.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(views)
    }
}
