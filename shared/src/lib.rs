//! Kappa's core: Elasticsearch queries over JSON records as mergeable partial aggregates.
//!
//! Everything that decides what a query means and what its answer is lives here, and nothing
//! else does: the actions, `kappa dev`, the WASM build and the dashboard all call this crate, so
//! they can never disagree. It is pure — no I/O, clock or environment — so it compiles to
//! `wasm32-unknown-unknown`; time, offsets and limits come in as arguments.
//!
//! The path of a query: [`request::parse_request`] validates a body into a typed
//! [`request::SearchRequest`] whose canonical form hashes to its id ([`identity`]);
//! [`plan::Plan`] compiles it; records ([`eval::Record`]) fold into a [`plan::PartialState`]
//! (parsed lazily by [`scan`], after a byte pre-filter where one applies); states merge
//! associatively ([`agg`] states the laws); a state renders to Elasticsearch's response shape;
//! and [`patch`] turns two rendered results into the RFC 6902 delta subscribers receive.
#![deny(missing_docs)]

mod agg;
pub mod conformance;
pub mod conformance_log;
pub mod date;
pub mod error;
pub mod eval;
pub mod group;
mod hits;
pub mod identity;
pub mod limits;
pub mod message;
pub mod patch;
pub mod plan;
pub mod ports;
mod prefilter;
pub mod request;
pub mod scan;
pub mod sketch;
pub mod sort;
pub mod tail;
pub mod text;
pub mod topic;
pub mod value;
pub mod wildcard;

pub use agg::Algebra;
pub use error::{ErrorKind, QueryError, StateError};
pub use eval::Record;
pub use group::{ScanGroup, Scanned};
pub use identity::{ENGINE_VERSION, QueryId, query_id};
pub use limits::Limits;
pub use message::Message;
pub use plan::{PartialState, Plan, RenderMemo};
pub use topic::{InvalidTopic, Topic};
