//! The deployment's settings and the activation, as a Node.js action sees them.
//!
//! A Node.js action gets its package inputs (KAFKA_BROKERS, REDIS_URL, ...) as parameters of
//! every activation, and the activation's context (`__OW_ACTION_NAME`, `__OW_DEADLINE`,
//! `__OW_API_KEY`, `__OW_API_HOST`, ...) in `process.env`. Settings are read from the
//! parameters first, then from the environment (init-time parameters land there), with the same
//! names and meaning as the native `kappa-runtime` deployment, and are removed from the event
//! the handlers see (their events reject unknown fields).

use kappa_actions::{ActionConfig, Context};
use serde_json::{Map, Value};

/// Parameter names that are settings, never part of an event.
pub const SETTINGS: [&str; 5] =
    ["KAFKA_BROKERS", "REDIS_URL", "KAPPA_API_KEYS", "KAPPA_CONFIG", "KAPPA_LINK"];

/// How a chain link is started (as in `kappa-runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// `POST /namespaces/_/actions/{action}?blocking=false`.
    Invoke,
    /// `POST /namespaces/_/triggers/{action with '/' as '-'}`.
    Trigger,
}

/// Settings and context of one activation.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    /// The action's short name (`process` of `/ns/kappa/process`).
    pub action: String,
    /// The event: parameters without settings and without the platform's `__ow_*` fields.
    pub event: Value,
    /// The parameters as received (web actions read `__ow_method`, `__ow_path`, ...).
    pub params: Map<String, Value>,
    /// Kafka bootstrap servers.
    pub kafka_brokers: String,
    /// Redis URL (secret).
    pub redis_url: String,
    /// OpenWhisk API host for chain links.
    pub api_host: String,
    /// The activation's API key (`provide-api-key`).
    pub api_key: String,
    /// How links are fired.
    pub link: LinkKind,
    /// Bearer keys of the web API (empty: open).
    pub api_keys: Vec<String>,
    /// Knobs.
    pub config: ActionConfig,
    /// Id and deadline.
    pub context: Context,
}

/// A missing or malformed setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError(pub String);

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Activation {
    /// Read an activation from its parameters and `process.env` (both JSON objects).
    /// `now_ms` stands in for a missing deadline (a local run): a minute from now.
    pub fn read(params: &Value, env: &Value, now_ms: i64) -> Result<Activation, SettingError> {
        let params = params.as_object().cloned().unwrap_or_default();
        let env_get = |k: &str| env.get(k).and_then(text).filter(|v| !v.is_empty());
        let setting =
            |k: &str| params.get(k).and_then(text).filter(|v| !v.is_empty()).or(env_get(k));
        let required = |k: &str| {
            setting(k).ok_or_else(|| SettingError(format!("deployment setting {k}: is required")))
        };
        let link = match setting("KAPPA_LINK").as_deref() {
            None | Some("invoke") => LinkKind::Invoke,
            Some("trigger") => LinkKind::Trigger,
            Some(other) => {
                return Err(SettingError(format!(
                    "deployment setting KAPPA_LINK: [{other}] is not invoke or trigger"
                )));
            }
        };
        let config = match setting("KAPPA_CONFIG") {
            None => ActionConfig::default(),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| SettingError(format!("deployment setting KAPPA_CONFIG: {e}")))?,
        };
        let action_name = env_get("__OW_ACTION_NAME").unwrap_or_default();
        let mut event = params.clone();
        event.retain(|k, _| !k.starts_with("__ow_") && !SETTINGS.contains(&k.as_str()));
        Ok(Activation {
            action: action_name.rsplit('/').next().unwrap_or_default().to_string(),
            event: Value::Object(event),
            kafka_brokers: required("KAFKA_BROKERS")?,
            redis_url: required("REDIS_URL")?,
            api_host: env_get("__OW_API_HOST").unwrap_or_default(),
            api_key: env_get("__OW_API_KEY").unwrap_or_default(),
            link,
            api_keys: setting("KAPPA_API_KEYS")
                .map(|k| {
                    k.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            config,
            context: Context {
                activation_id: env_get("__OW_ACTIVATION_ID").unwrap_or_default(),
                deadline_ms: env_get("__OW_DEADLINE")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(now_ms + 60_000),
            },
            params,
        })
    }

    /// A web request's HTTP method (lower case).
    pub fn method(&self) -> &str {
        self.params.get("__ow_method").and_then(Value::as_str).unwrap_or("get")
    }

    /// A web request's unmatched path.
    pub fn path(&self) -> &str {
        self.params.get("__ow_path").and_then(Value::as_str).unwrap_or("")
    }

    /// A request header (lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.params.get("__ow_headers").and_then(|h| h.get(name)).and_then(Value::as_str)
    }

    /// The body of a web request: `__ow_body` of a raw-http action (base64 unless it is JSON
    /// text), else the event as JSON.
    pub fn body(&self) -> Vec<u8> {
        use base64::Engine;
        match self.params.get("__ow_body").and_then(Value::as_str) {
            Some(b) if b.trim_start().starts_with(['{', '[']) => b.as_bytes().to_vec(),
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_else(|_| b.as_bytes().to_vec()),
            None => serde_json::to_vec(&self.event).unwrap_or_default(),
        }
    }

    /// Whether the web request carries a configured key (`Authorization: Bearer <key>`).
    pub fn authorized(&self) -> bool {
        self.api_keys.is_empty()
            || self.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).is_some_and(
                |k| {
                    self.api_keys
                        .iter()
                        .any(|key| constant_time_eq(key.as_bytes(), k.trim().as_bytes()))
                },
            )
    }
}

/// Compare secrets without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_come_from_parameters_then_the_environment_and_leave_the_event() {
        let params = json!({"KAFKA_BROKERS": "k:1", "KAPPA_CONFIG": "{\"batch_records\": 7}",
            "KAPPA_API_KEYS": "a, b", "query": "q_1", "__ow_headers": {"authorization": "Bearer b"}});
        let env = json!({"REDIS_URL": "redis://r", "__OW_ACTION_NAME": "/guest/kappa/process",
            "__OW_DEADLINE": "1000", "__OW_API_HOST": "http://ow"});
        let a = Activation::read(&params, &env, 0).expect("valid");
        assert_eq!(a.action, "process");
        assert_eq!(a.event, json!({"query": "q_1"}));
        assert_eq!((a.kafka_brokers.as_str(), a.redis_url.as_str()), ("k:1", "redis://r"));
        assert_eq!(a.config.batch_records, 7);
        assert_eq!(a.context.deadline_ms, 1000);
        assert!(a.authorized());
        let e = Activation::read(&json!({}), &json!({"REDIS_URL": "r"}), 0).expect_err("missing");
        assert!(e.0.contains("KAFKA_BROKERS"), "{e}");
        let e = Activation::read(
            &json!({"KAFKA_BROKERS": "k", "REDIS_URL": "r", "KAPPA_LINK": "x"}),
            &json!({}),
            0,
        )
        .expect_err("bad link");
        assert!(e.0.contains("KAPPA_LINK"), "{e}");
    }

    #[test]
    fn a_raw_body_is_taken_as_text_or_base64() {
        let a = Activation::read(
            &json!({"KAFKA_BROKERS": "k", "REDIS_URL": "r", "__ow_body": "eyJhIjoxfQ=="}),
            &json!({}),
            0,
        )
        .expect("valid");
        assert_eq!(a.body(), br#"{"a":1}"#);
    }
}
