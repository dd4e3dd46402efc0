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
//! - push streams are `kappa-push`'s ([`kappa_push::stream`], woken by the scheduler through
//!   [`kappa_push::hub::Hub`] after each committed batch), the same code as the gateway's;
//! - [`views`] keeps named views that switch to a new definition once it has caught up;
//! - [`client`] is `kappa ingest` and `kappa query`;
//! - [`demo`] streams synthetic event-week tweets (`kappa dev --demo`, `kappa demo`);
//! - [`dashboard`] serves the page at `/` (assets embedded in the binary).
//!
//! Test with: `cargo test -p kappa` (set `KAFKA_BROKERS` and `REDIS_URL` to also run the API
//! suite against real Kafka and Redis).

pub mod api;
pub mod backend;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod quota;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod views;

pub use config::DevConfig;
pub use server::{Running, start};
