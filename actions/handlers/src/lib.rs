//! Kappa's actions, as plain async handler functions over the ports of `kappa-core`.
//!
//! Each handler takes a typed event and an [`Env`] (the adapters and the activation's
//! [`Context`]) and returns a typed output or an [`ActionError`] that says whether a retry makes
//! sense. The same handlers run as native OpenWhisk actions (ActionLoop binaries), inside the
//! WASM build for Node.js-only platforms, and in-process in `kappa dev`; they are tested by
//! calling them directly with the in-memory ports.
//!
//! | action | event | does |
//! |---|---|---|
//! | [`query::create`] | `POST /v1/queries` body | validate, canonicalise, register or share, start the chains |
//! | [`process::process`] | `{query, segment}` | fold one batch, commit the checkpoint by CAS, refresh the result, fire the next link |
//! | [`push::push`] | `{query, version}` | deliver new messages to webhooks and the push gateway |
//! | [`status::status`] | query id | the current result and progress |
//! | [`tick::tick`] | alarm or feed event | re-fire dropped links, wake idle queries, reclaim idle ones |
//!
//! Test with: `cargo test -p kappa-actions`.

pub mod config;
pub mod cost;
pub mod env;
pub mod error;
pub mod group;
pub mod ingest;
pub mod openwhisk;
pub mod plans;
pub mod process;
pub mod push;
pub mod query;
pub mod result;
pub mod status;
pub mod subscriptions;
pub mod tick;
pub mod views;
pub mod warm;
pub mod web;

pub use config::ActionConfig;
pub use env::{Context, Env};
pub use error::ActionError;
