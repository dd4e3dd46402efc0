//! Runtime knobs of the actions (deployment shape lives in manifest.yaml).

use kappa_core::Limits;
use kappa_core::ports::LinkActions;
use serde::{Deserialize, Serialize};

/// Configuration shared by every action, loaded once at the edge (a binary's `main`, the
/// package parameters of the deployment, or `kappa dev`'s flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionConfig {
    /// Query limits (body size, depth, sizes, buckets, state memory budget).
    pub limits: Limits,
    /// Most records one process invocation folds.
    pub batch_records: usize,
    /// Most value bytes one process invocation reads.
    pub batch_bytes: usize,
    /// Records per read call inside one invocation.
    pub read_records: usize,
    /// Stop reading this long before the activation deadline, to commit in time.
    pub deadline_margin_ms: i64,
    /// A process invocation runs further rounds (each up to `batch_records`, committed and
    /// published) while another round as long as the last one ends within this share of its
    /// time to the deadline: a replay fills most of each activation instead of spending one
    /// per batch (OpenWhisk counts invocations per minute). 0: one round per invocation (a
    /// host that schedules batches itself, as `kappa dev` does).
    pub fill_activation_percent: u8,
    /// A partition with more than this many records to replay is split into offset ranges
    /// replayed in parallel.
    pub split_records: i64,
    /// Most segments one partition is split into.
    pub max_segments_per_partition: usize,
    /// Name of the process action (what a chain link invokes).
    pub process_action: String,
    /// Name of the push action.
    pub push_action: String,
    /// A query with no subscriber and no read for this long is stopped and reclaimed.
    pub idle_timeout_ms: i64,
    /// Deliver webhooks to loopback and private addresses (off: refused, against SSRF).
    pub allow_private_webhooks: bool,
    /// Webhook delivery attempts before the subscriber is left to catch up by snapshot.
    pub webhook_attempts: u32,
    /// Most webhooks of one query (each URL once): one ingest costs at most this many POSTs.
    pub max_webhooks_per_query: usize,
    /// Most members of one group link: the caught-up segments of a topic's queries are
    /// advanced together in links of at most this many (each member's state is in memory
    /// during the invocation, so this bounds an action's memory).
    pub group_members: usize,
    /// Most bytes of decoded states a warm process keeps between invocations (`warm.rs`):
    /// a live query then folds a wake-up's few records without decoding and re-merging its
    /// whole state. 0: keep none.
    pub warm_state_bytes: usize,
    /// A segment whose state is estimated at this many bytes or more appends what each batch
    /// added to its checkpoint instead of writing its whole state again (it is still written
    /// whole once per 1,024 offsets): a live wake-up then writes the size of its records, not
    /// of the state. A smaller state is cheaper written whole than its pieces carried along.
    /// `0`: every batch within a stretch appends.
    pub append_checkpoints_from_bytes: usize,
    /// Most queries registered at once (distinct ones: a shared query counts once); past it a
    /// new query is refused with a 429 until others are deleted or reclaimed.
    pub max_queries: usize,
    /// Largest body of `POST /v1/topics/{topic}/records` (past it: 413). The platform's own
    /// payload limit (OpenWhisk: 1 MB by default) may come first.
    pub max_ingest_bytes: usize,
    /// Partitions of a topic created by its first ingest.
    pub topic_partitions: u32,
    /// The push gateway's delta endpoint, if any (`https://gw/v1/internal/deltas`).
    pub gateway_url: Option<String>,
    /// Bearer token for the gateway (secret).
    pub gateway_token: Option<String>,
}

impl ActionConfig {
    /// Until when an invocation started at `now_ms` may start further rounds: the configured
    /// share of its time to `deadline_ms`, and never past the deadline's margin. `None`: one
    /// round only.
    pub fn fill_until(&self, now_ms: i64, deadline_ms: i64) -> Option<i64> {
        if self.fill_activation_percent == 0 {
            return None;
        }
        let share =
            (deadline_ms - now_ms).max(0) * i64::from(self.fill_activation_percent.min(100)) / 100;
        Some((now_ms + share).min(deadline_ms - self.deadline_margin_ms))
    }
}

impl Default for ActionConfig {
    fn default() -> Self {
        ActionConfig {
            limits: Limits::default(),
            batch_records: 20_000,
            batch_bytes: 64 * 1024 * 1024,
            read_records: 2_000,
            deadline_margin_ms: 2_000,
            fill_activation_percent: 80,
            split_records: 500_000,
            max_segments_per_partition: 8,
            group_members: 100,
            warm_state_bytes: 32 * 1024 * 1024,
            append_checkpoints_from_bytes: 64 << 10,
            process_action: "kappa/process".into(),
            push_action: "kappa/push".into(),
            idle_timeout_ms: 24 * 3600 * 1000,
            allow_private_webhooks: false,
            webhook_attempts: 3,
            max_webhooks_per_query: 16,
            max_queries: 1_000,
            max_ingest_bytes: 16 << 20,
            topic_partitions: 4,
            gateway_url: None,
            gateway_token: None,
        }
    }
}

impl ActionConfig {
    /// The actions a chain's links invoke.
    pub fn link_actions(&self) -> LinkActions {
        LinkActions { process: self.process_action.clone(), push: self.push_action.clone() }
    }
}
