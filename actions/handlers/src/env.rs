//! What a handler runs with: the adapters, the configuration and the activation's context.

use kappa_core::ports::{Chain, Clock, HttpClient, LogReader, LogWriter, StateStore, Timer};

use crate::config::ActionConfig;
use crate::warm::WarmStates;

/// The activation: its id and deadline, as OpenWhisk passes them (`__OW_ACTIVATION_ID`,
/// `__OW_DEADLINE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Activation id (for logs).
    pub activation_id: String,
    /// Deadline, epoch ms: the platform kills the activation at this time.
    pub deadline_ms: i64,
}

/// The adapters a handler uses; built once per container and shared by its activations.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// The log.
    pub log: &'a dyn LogReader,
    /// The log's producer side (the ingest route).
    pub writer: &'a dyn LogWriter,
    /// The state store.
    pub store: &'a dyn StateStore,
    /// Fires chain links.
    pub chain: &'a dyn Chain,
    /// Outgoing HTTP (webhooks, gateway).
    pub http: &'a dyn HttpClient,
    /// Time.
    pub clock: &'a dyn Clock,
    /// Waits between retries.
    pub timer: &'a dyn Timer,
    /// Knobs.
    pub config: &'a ActionConfig,
    /// Decoded states kept between invocations (one per process and store).
    pub warm: &'a WarmStates,
}
