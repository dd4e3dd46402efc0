//! `kappa dev`: the whole Kappa system on one machine, and the terminal client.
//!
//! The server runs the **same handlers** as the OpenWhisk deployment (`kappa-actions`), in
//! process, over the embedded log and store (or real Kafka and Redis):
//! - [`scheduler`] plays OpenWhisk's triggers and rules: a [`scheduler::DevChain`] queues the
//!   links the handlers fire (deduplicated per query segment; the caught-up segments of a query
//!   run together, with one result refresh), a bounded pool of workers runs `process`,
//!   per-query lanes run `push` (webhooks), and a periodic tick plus a wake-up on appends run
//!   `tick`;
//! - [`api`] serves api.md over HTTP with axum ([`api::app`] is testable without a network);
//! - [`stream`] feeds websocket/SSE subscribers from the store's shared ring of messages, woken
//!   by [`hub::Hub`] after each batch (the subscribers of a query share one store read per
//!   wake-up and each message); each subscriber has a bounded buffer and one that falls behind
//!   gets a fresh snapshot instead of the backlog;
//! - [`views`] keeps named views that switch to a new definition once it has caught up;
//! - [`client`] is `kappa ingest` and `kappa query`;
//! - [`demo`] streams synthetic event-week tweets (`kappa dev --demo`, `kappa demo`);
//! - [`dashboard`] serves the page at `/` (assets embedded in the binary);
//! - [`gateway`] is `kappa gateway`, the websocket/SSE push gateway of a deployed package
//!   (same subscriber code, fed by the push action, scaled out through Redis pub/sub).
//!
//! Test with: `cargo test -p kappa` (set `KAFKA_BROKERS` and `REDIS_URL` to also run the API
//! suite against real Kafka and Redis).

pub mod api;
pub mod backend;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod hub;
pub mod ingest;
pub mod listen;
pub mod quota;
pub mod scheduler;
pub mod server;
pub mod stream;
pub mod views;

pub use config::DevConfig;
pub use server::{Running, start};
