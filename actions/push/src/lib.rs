//! Kappa's push edge, used by `kappa dev` and by the gateway of a deployed package
//! (`kappa-gateway`): the same subscriber code whatever computes the queries.
//!
//! - [`stream`] feeds websocket/SSE subscribers from the store's shared ring of messages
//!   (snapshot, then consecutive deltas; a subscriber that falls behind gets a fresh snapshot);
//! - [`hub::Hub`] wakes them: `kappa dev`'s scheduler after each committed batch, the gateway
//!   on each wake-up the push action posts (ARCHITECTURE.md §7);
//! - [`edge`] is the HTTP around them: authentication, JSON errors, bounded bodies, SSE and
//!   websocket responses;
//! - [`quota`] bounds the streams one API key holds, [`listen`] the connections and the time a
//!   request head may take.
//!
//! Test with: `cargo test -p kappa-push` (the subscriber paths end to end: `cargo test -p kappa`).

pub mod edge;
pub mod error;
pub mod hub;
pub mod listen;
pub mod quota;
pub mod stream;
