//! Kappa's [`StateStore`](kappa_core::ports::StateStore) over Redis, for the OpenWhisk
//! deployment: one design for every host.
//!
//! [`RedisStore`] holds the whole state logic (key layout, Lua scripts, decoding) over a
//! [`RedisCall`] transport. The native actions, the gateway and `kappa dev --redis-url` use
//! [`Connection`] (the `redis` crate, feature `client`, on by default); the WASM host supplies
//! its own transport over the JavaScript client and builds this crate without `client`. Both
//! pass the same conformance suite.
//!
//! Why it is shaped this way:
//! - **Atomic compare-and-set in Lua.** Exactly-once rests on the checkpoint CAS, and a
//!   subscriber's view on the result CAS; each is one Lua script (`EVALSHA`, and `EVAL` when a
//!   restart emptied the server's script cache), so the read-compare-write cannot interleave
//!   with another invocation's. The result script also appends the change's message to the
//!   bounded ring (`RPUSH` + `LTRIM`), so a result is never visible without its message, nor a
//!   message without its result. Subscribers are woken by the push action through the gateway
//!   (ARCHITECTURE.md §7), not by the store.
//! - **One hash tag per query.** Every key of a query is `{prefix}:{<id>}:…`, so they share a
//!   Redis Cluster slot and the scripts may touch them together. Only the registry set
//!   `{prefix}:queries` lives elsewhere; `register` always re-adds to it, so a crash between the
//!   two writes heals on the next registration.
//! - **Raw bytes.** Checkpoint states are binary (`postcard`) and stored as such in a hash
//!   (`next_offset`, `state`, `head`, `lost`), never base64; records and messages are JSON.
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

#[cfg(feature = "client")]
mod client;
mod store;
mod transport;

#[cfg(feature = "client")]
pub use client::Connection;
pub use store::{RedisStore, RedisStoreConfig};
pub use transport::{Arg, CallError, RedisCall, Reply};
