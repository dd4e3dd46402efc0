//! The push protocol: the messages a subscriber receives (api.md, "Push"), and the result
//! record and progress they are made from.
//!
//! One type for every message, from the refresh that makes it through the stores' ring, the
//! push action and the gateway to the websocket, SSE and the browser core, so no host reads a
//! message back by string keys. Serialised exactly as on the wire: internally tagged by
//! `type`, fields in the order subscribers have always seen them. Reading is lenient where
//! the gateway always was: a message without `caught_up` or `progress` reads as not caught up,
//! no progress.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Progress of one partition, as api.md shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// Partition.
    pub partition: u32,
    /// Records processed up to here (the smallest next offset of its segments' unfinished part).
    pub offset: i64,
    /// Head seen at the last batch.
    pub head: i64,
}

/// Progress of a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Progress {
    /// Records passed over.
    pub processed: u64,
    /// Invalid records among them.
    pub skipped: u64,
    /// Records between the processed offsets and the heads.
    pub lag: u64,
    /// Records deleted by retention before the query read them (explicit data loss).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost: u64,
    /// Per partition.
    pub partitions: Vec<PartitionProgress>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The query's current answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// Increases by one on every write (result or progress): the compare-and-set token.
    pub revision: u64,
    /// Increases by one each time the result changes.
    pub version: u64,
    /// Every segment has reached the head it saw.
    pub caught_up: bool,
    /// Progress at this version.
    pub progress: Progress,
    /// The rendered result (Elasticsearch response shape), shared: the stores' decoded copies,
    /// the refresh and every subscriber's read hold the same one instead of a deep copy each.
    pub result: Arc<Value>,
    /// Set when the query failed for good (memory budget, bucket limit): the error body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// A message to subscribers of one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// The whole result at `version`: a subscriber's first message, and the answer to a gap.
    Snapshot {
        /// Query id.
        id: String,
        /// Result version.
        version: u64,
        /// Every segment had reached the head it saw.
        #[serde(default)]
        caught_up: bool,
        /// Progress at this version.
        #[serde(default)]
        progress: Progress,
        /// The result (Elasticsearch response shape).
        result: Arc<Value>,
        /// Set when the query failed for good.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    },
    /// The change from version `from` (= `version - 1`) to `version`.
    Delta {
        /// Query id.
        id: String,
        /// Result version after the patch.
        version: u64,
        /// Result version the patch applies to.
        from: u64,
        /// Every segment had reached the head it saw.
        #[serde(default)]
        caught_up: bool,
        /// Progress at this version.
        #[serde(default)]
        progress: Progress,
        /// RFC 6902 operations.
        patch: Value,
    },
    /// Progress changed, the result did not.
    Progress {
        /// Query id.
        id: String,
        /// Result version (unchanged).
        version: u64,
        /// Every segment had reached the head it saw.
        #[serde(default)]
        caught_up: bool,
        /// Progress now.
        #[serde(default)]
        progress: Progress,
        /// Set when the query failed for good.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    },
    /// The stream ends: the query is gone.
    Error {
        /// Query id.
        id: String,
        /// The Elasticsearch-style error body.
        error: Value,
        /// Its HTTP status.
        status: u16,
    },
}

impl Message {
    /// The snapshot of a stored result.
    pub fn snapshot(id: &str, r: &ResultRecord) -> Message {
        Message::Snapshot {
            id: id.to_string(),
            version: r.version,
            caught_up: r.caught_up,
            progress: r.progress.clone(),
            result: r.result.clone(),
            error: r.error.clone(),
        }
    }

    /// The progress message of a stored result (its version, progress and error).
    pub fn progress_of(id: &str, r: &ResultRecord) -> Message {
        Message::Progress {
            id: id.to_string(),
            version: r.version,
            caught_up: r.caught_up,
            progress: r.progress.clone(),
            error: r.error.clone(),
        }
    }

    /// The query's id.
    pub fn id(&self) -> &str {
        match self {
            Message::Snapshot { id, .. }
            | Message::Delta { id, .. }
            | Message::Progress { id, .. }
            | Message::Error { id, .. } => id,
        }
    }

    /// The result version the subscriber has after this message (0 for an error, which ends
    /// the stream).
    pub fn version(&self) -> u64 {
        match self {
            Message::Snapshot { version, .. }
            | Message::Delta { version, .. }
            | Message::Progress { version, .. } => *version,
            Message::Error { .. } => 0,
        }
    }

    /// Whether every segment had caught up, when the message says.
    pub fn caught_up(&self) -> Option<bool> {
        match self {
            Message::Snapshot { caught_up, .. }
            | Message::Delta { caught_up, .. }
            | Message::Progress { caught_up, .. } => Some(*caught_up),
            Message::Error { .. } => None,
        }
    }

    /// The progress the message carries.
    pub fn progress(&self) -> Option<&Progress> {
        match self {
            Message::Snapshot { progress, .. }
            | Message::Delta { progress, .. }
            | Message::Progress { progress, .. } => Some(progress),
            Message::Error { .. } => None,
        }
    }

    /// The message as JSON text, as subscribers receive it.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> ResultRecord {
        ResultRecord {
            revision: 3,
            version: 2,
            caught_up: true,
            progress: Progress { processed: 5, ..Progress::default() },
            result: Arc::new(json!({"hits": {"total": {"value": 1}}})),
            error: None,
        }
    }

    /// The exact texts of api.md's "Push" section (keys in this order).
    #[test]
    fn messages_are_serialised_exactly_as_on_the_wire() {
        let progress = r#"{"processed":5,"skipped":0,"lag":0,"partitions":[]}"#;
        let snapshot = Message::snapshot("q_1", &record());
        assert_eq!(
            snapshot.to_json(),
            format!(
                r#"{{"type":"snapshot","id":"q_1","version":2,"caught_up":true,"progress":{progress},"result":{{"hits":{{"total":{{"value":1}}}}}}}}"#
            )
        );
        let delta = Message::Delta {
            id: "q_1".into(),
            version: 3,
            from: 2,
            caught_up: false,
            progress: record().progress,
            patch: json!([{"op": "replace", "path": "/hits/total/value", "value": 2}]),
        };
        assert_eq!(
            delta.to_json(),
            format!(
                r#"{{"type":"delta","id":"q_1","version":3,"from":2,"caught_up":false,"progress":{progress},"patch":[{{"op":"replace","path":"/hits/total/value","value":2}}]}}"#
            )
        );
        let mut failed = record();
        failed.error = Some(json!({"type": "circuit_breaking_exception"}));
        assert_eq!(
            Message::progress_of("q_1", &failed).to_json(),
            format!(
                r#"{{"type":"progress","id":"q_1","version":2,"caught_up":true,"progress":{progress},"error":{{"type":"circuit_breaking_exception"}}}}"#
            )
        );
        let gone = Message::Error { id: "q_1".into(), error: json!({"type": "x"}), status: 404 };
        assert_eq!(
            gone.to_json(),
            r#"{"type":"error","id":"q_1","error":{"type":"x"},"status":404}"#
        );
        for m in [snapshot, delta, Message::progress_of("q_1", &failed), gone] {
            assert_eq!(serde_json::from_str::<Message>(&m.to_json()).expect("parses"), m);
        }
    }
}
