//! What the store needs of a Redis connection: send a command, or several in one round trip.
//!
//! Two transports implement it: [`crate::Connection`] over the `redis` crate (native actions,
//! the gateway, `kappa dev --redis-url`) and the WASM host's, over the JavaScript client. The
//! state logic above it ([`crate::RedisStore`]) is one piece of code for both.

use async_trait::async_trait;

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

/// A reply, with bulk and simple strings as bytes.
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

/// A failed command: the server's error, or a connection failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The server's error as it sends it, its code first (`NOSCRIPT No matching script`), or
    /// what failed on the way. Never contains the URL's credentials.
    pub message: String,
    /// Whether the call may succeed later (connection loss, timeout, `LOADING`, `TRYAGAIN`,
    /// `BUSY`, `MASTERDOWN`).
    pub transient: bool,
}

impl CallError {
    /// Whether the server no longer has the script (a restart emptied its cache).
    pub fn is_no_script(&self) -> bool {
        self.message.starts_with("NOSCRIPT")
    }
}

/// Sends commands to one Redis server.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait RedisCall: Send + Sync {
    /// Send `args` (the command's name first) and return the reply.
    async fn call(&self, args: Vec<Arg>) -> Result<Reply, CallError>;

    /// Send `commands` in one round trip (not a transaction) and return their replies in
    /// order; an error of any command fails the whole call. The default sends them one by one.
    async fn pipeline(&self, commands: Vec<Vec<Arg>>) -> Result<Vec<Reply>, CallError> {
        let mut replies = Vec::with_capacity(commands.len());
        for args in commands {
            replies.push(self.call(args).await?);
        }
        Ok(replies)
    }
}
