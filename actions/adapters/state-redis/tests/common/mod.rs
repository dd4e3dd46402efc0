//! Helpers of the Redis integration tests.
#![allow(dead_code, unreachable_pub)]

use std::hash::{BuildHasher, Hasher};

use kappa_state_redis::{Connection, RedisStore, RedisStoreConfig};

/// `REDIS_URL`, or None after printing "skipped: REDIS_URL not set".
pub fn redis_url() -> Option<String> {
    match std::env::var_os("REDIS_URL").and_then(|u| u.into_string().ok()) {
        Some(u) if !u.is_empty() => Some(u),
        _ => {
            println!("skipped: REDIS_URL not set");
            None
        }
    }
}

/// A random key prefix, so tests sharing a server never see each other's keys.
pub fn random_prefix(tag: &str) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("kappa-test-{tag}-{:016x}", h.finish())
}

/// A store on `url` with a fresh random key prefix.
pub async fn store(url: &str, tag: &str, ring: usize) -> RedisStore<Connection> {
    let config = RedisStoreConfig { key_prefix: random_prefix(tag), ring };
    RedisStore::connect(url, config).await.expect("connect to REDIS_URL")
}

/// A plain connection for inspecting keys.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("REDIS_URL parses")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

/// Delete every key under `prefix` (the tests' own keys only).
pub async fn cleanup(url: &str, prefix: &str) {
    let mut conn = raw(url).await;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    }
}
