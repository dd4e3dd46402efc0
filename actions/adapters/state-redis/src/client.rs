//! The native transport: the `redis` crate's self-reconnecting connection manager.

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use kappa_core::ports::{PortError, PortResult};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RetryMethod};
use std::time::Duration;

use crate::store::{BACKEND, RedisStore, RedisStoreConfig};
use crate::transport::{Arg, CallError, RedisCall, Reply};

/// A connection to one Redis server, multiplexing the calls of one process and reconnecting
/// after a restart: the call that saw the connection drop fails with a transient error, the
/// next one goes through.
pub struct Connection {
    client: redis::Client,
    manager: ConnectionManager,
    /// The URL without credentials, for error messages.
    display_url: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("url", &self.display_url).finish_non_exhaustive()
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

/// As the server sends it (`NOSCRIPT No matching script`), or what failed on the way.
fn call_error(e: &RedisError) -> CallError {
    let message = match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    };
    CallError { message, transient: is_transient(e) }
}

fn port_error(what: &str, e: &RedisError) -> PortError {
    let CallError { message, transient } = call_error(e);
    let message = format!("{what}: {message}");
    if transient {
        PortError::transient(BACKEND, message)
    } else {
        PortError::permanent(BACKEND, message)
    }
}

fn reply(value: redis::Value) -> Reply {
    match value {
        redis::Value::Nil => Reply::Nil,
        redis::Value::Int(n) => Reply::Int(n),
        redis::Value::BulkString(b) => Reply::Bytes(b),
        redis::Value::SimpleString(s) => Reply::Bytes(s.into_bytes()),
        redis::Value::Okay => Reply::Bytes(b"OK".to_vec()),
        redis::Value::Array(a) | redis::Value::Set(a) => {
            Reply::Array(a.into_iter().map(reply).collect())
        }
        redis::Value::Map(pairs) => {
            Reply::Array(pairs.into_iter().flat_map(|(k, v)| [reply(k), reply(v)]).collect())
        }
        other => Reply::Bytes(format!("{other:?}").into_bytes()),
    }
}

fn command(args: Vec<Arg>) -> redis::Cmd {
    let mut cmd = redis::Cmd::new();
    for arg in args {
        match arg {
            Arg::Str(s) => cmd.arg(s),
            Arg::Bytes(b) => cmd.arg(b),
        };
    }
    cmd
}

impl Connection {
    /// Connect to the Redis server at `url` (`redis://[user:password@]host:port[/db]`).
    ///
    /// Fails with a transient error when the server cannot be reached, a permanent one when
    /// the URL is invalid. No error message contains the URL's credentials.
    pub async fn open(url: &str) -> PortResult<Self> {
        let display_url = redact_url(url);
        let client = redis::Client::open(url).map_err(|e| {
            PortError::permanent(BACKEND, format!("invalid Redis URL {display_url}: {e}"))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| port_error(&format!("connect to {display_url}"), &e))?;
        Ok(Connection { client, manager, display_url })
    }

    /// The payloads published on `channel` from now on, on a dedicated pub/sub connection.
    /// The stream ends when the connection is lost; whoever needs every message subscribes
    /// again and catches up from the store.
    pub async fn subscribe_channel(
        &self,
        channel: &str,
    ) -> PortResult<impl Stream<Item = Vec<u8>> + Send + 'static + use<>> {
        let mut pubsub = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| port_error(&format!("pub/sub connect to {}", self.display_url), &e))?;
        pubsub.subscribe(channel).await.map_err(|e| port_error("subscribe", &e))?;
        Ok(pubsub.into_on_message().map(|msg| msg.get_payload_bytes().to_vec()))
    }

    /// Publish `payload` on `channel`; returns how many connections received it.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> PortResult<i64> {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.manager.clone())
            .await
            .map_err(|e| port_error("publish", &e))
    }
}

#[async_trait]
impl RedisCall for Connection {
    async fn call(&self, args: Vec<Arg>) -> Result<Reply, CallError> {
        let mut conn = self.manager.clone();
        command(args)
            .query_async::<redis::Value>(&mut conn)
            .await
            .map(reply)
            .map_err(|e| call_error(&e))
    }

    async fn pipeline(&self, commands: Vec<Vec<Arg>>) -> Result<Vec<Reply>, CallError> {
        if commands.is_empty() {
            return Ok(Vec::new()); // Redis refuses an empty pipeline
        }
        let mut pipe = redis::pipe();
        for args in commands {
            pipe.add_command(command(args));
        }
        let mut conn = self.manager.clone();
        let replies: Vec<redis::Value> =
            pipe.query_async(&mut conn).await.map_err(|e| call_error(&e))?;
        Ok(replies.into_iter().map(reply).collect())
    }
}

impl RedisStore<Connection> {
    /// Connect to the Redis server at `url` (see [`Connection::open`]) and use `config`.
    pub async fn connect(url: &str, config: RedisStoreConfig) -> PortResult<Self> {
        // The configuration is checked before anything connects.
        config.check()?;
        RedisStore::new(Connection::open(url).await?, config)
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
