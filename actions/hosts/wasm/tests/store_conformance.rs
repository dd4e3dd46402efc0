//! The WASM host's state store (`ScriptStore`: `kappa-state-redis`'s scripts and key layout,
//! sent one command at a time) against a real Redis at `REDIS_URL`, through the same
//! conformance suite as every other store. Natively: only the transport differs from the
//! module, which sends the same commands through the JavaScript `redis` client.

#![cfg(not(target_arch = "wasm32"))]

use async_trait::async_trait;
use kappa_core::conformance::state_store_conformance;
use kappa_wasm::store::{Arg, CallError, RedisCall, Reply, ScriptStore};

struct Native(redis::aio::MultiplexedConnection);

fn reply(v: redis::Value) -> Reply {
    match v {
        redis::Value::Nil => Reply::Nil,
        redis::Value::Int(n) => Reply::Int(n),
        redis::Value::BulkString(b) => Reply::Bytes(b),
        redis::Value::SimpleString(s) => Reply::Bytes(s.into_bytes()),
        redis::Value::Okay => Reply::Bytes(b"OK".to_vec()),
        redis::Value::Array(a) | redis::Value::Set(a) => {
            Reply::Array(a.into_iter().map(reply).collect())
        }
        other => Reply::Bytes(format!("{other:?}").into_bytes()),
    }
}

#[async_trait]
impl RedisCall for Native {
    async fn call(&self, args: Vec<Arg>) -> Result<Reply, CallError> {
        let mut cmd = redis::Cmd::new();
        for arg in args {
            match arg {
                Arg::Str(s) => cmd.arg(s),
                Arg::Bytes(b) => cmd.arg(b),
            };
        }
        let mut conn = self.0.clone();
        cmd.query_async::<redis::Value>(&mut conn).await.map(reply).map_err(|e| CallError {
            // As the JavaScript client reports it: the server's code first (`NOSCRIPT ...`).
            message: format!("{} {e}", e.code().unwrap_or_default()),
            transient: e.is_io_error() || e.is_timeout() || e.is_connection_dropped(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_hosts_store_conforms() {
    let Some(url) = std::env::var_os("REDIS_URL").and_then(|u| u.into_string().ok()) else {
        println!("skipped: REDIS_URL not set (scripts/redis.sh start)");
        return;
    };
    let client = redis::Client::open(url).expect("a Redis URL");
    let conn = client.get_multiplexed_async_connection().await.expect("Redis");
    let prefix = format!("wasmconf{}", std::process::id());
    let store = ScriptStore::with_prefix(Native(conn.clone()), &prefix);
    state_store_conformance(&store, "c-", 1024).await;
    // The suite removes its queries; the views hash is the one key it leaves.
    let mut conn = conn;
    let _: () =
        redis::cmd("DEL").arg(format!("{prefix}:views")).query_async(&mut conn).await.expect("DEL");
}
