//! The deployment's knobs, read once at the edge from the action's environment.
//!
//! OpenWhisk passes parameters marked `init: true` (wskdeploy: package `inputs`) as environment
//! variables of the action process; everything else about an activation comes in its `/run`
//! message. Parsing is a pure function over a map so it is tested without touching the process
//! environment.

use std::collections::HashMap;

use kappa_actions::ActionConfig;

use crate::chain::LinkKind;

/// Where the adapters connect, and the actions' configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// `KAFKA_BROKERS`: bootstrap servers.
    pub kafka_brokers: String,
    /// `REDIS_URL` (secret: may carry a password).
    pub redis_url: String,
    /// `__OW_API_HOST`: the OpenWhisk API the chain calls.
    pub api_host: String,
    /// `KAPPA_LINK`: `invoke` (default) or `trigger`.
    pub link: LinkKind,
    /// `KAPPA_API_KEYS`: comma-separated Bearer keys for the web actions (empty: open).
    pub api_keys: Vec<String>,
    /// `KAPPA_CONFIG`: JSON of [`ActionConfig`] (defaults when absent).
    pub config: ActionConfig,
}

/// A missing or malformed setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deployment setting {name}: {problem}")]
pub struct DeploymentError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// The settings a deployment may pass as package parameters (wskdeploy `inputs`): they arrive in
/// every activation's `value` unless the platform put them in the environment (`init: true`).
pub const SETTINGS: [&str; 6] =
    ["KAFKA_BROKERS", "REDIS_URL", "KAPPA_API_KEYS", "KAPPA_CONFIG", "KAPPA_LINK", "KAPPA_TOPIC"];

/// The environment overlaid with settings found in an activation's parameters (non-string
/// values, e.g. a `KAPPA_CONFIG` object, as JSON text); the environment wins.
pub fn settings_from(
    env: &HashMap<String, String>,
    params: &serde_json::Value,
) -> HashMap<String, String> {
    let mut merged = env.clone();
    for key in SETTINGS {
        if merged.get(key).is_some_and(|v| !v.is_empty()) {
            continue;
        }
        match params.get(key) {
            Some(serde_json::Value::String(s)) => {
                merged.insert(key.to_string(), s.clone());
            }
            Some(serde_json::Value::Null) | None => {}
            Some(other) => {
                merged.insert(key.to_string(), other.to_string());
            }
        }
    }
    merged
}

/// Remove the settings (and the platform's `__ow_*` fields) from an event, leaving its own fields.
pub fn strip_settings(params: &serde_json::Value) -> serde_json::Value {
    let mut v = params.clone();
    if let Some(m) = v.as_object_mut() {
        m.retain(|k, _| !k.starts_with("__ow_") && !SETTINGS.contains(&k.as_str()));
    }
    v
}

impl Deployment {
    /// Read the settings from a map of environment variables.
    pub fn from_map(env: &HashMap<String, String>) -> Result<Deployment, DeploymentError> {
        let required = |name: &'static str| {
            env.get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or(DeploymentError { name, problem: "is required".into() })
        };
        let link = match env.get("KAPPA_LINK").map(String::as_str) {
            None | Some("" | "invoke") => LinkKind::Invoke,
            Some("trigger") => LinkKind::Trigger,
            Some(other) => {
                return Err(DeploymentError {
                    name: "KAPPA_LINK",
                    problem: format!("[{other}] is not invoke or trigger"),
                });
            }
        };
        let config = match env.get("KAPPA_CONFIG").filter(|v| !v.is_empty()) {
            None => ActionConfig::default(),
            Some(json) => serde_json::from_str(json)
                .map_err(|e| DeploymentError { name: "KAPPA_CONFIG", problem: e.to_string() })?,
        };
        Ok(Deployment {
            kafka_brokers: required("KAFKA_BROKERS")?,
            redis_url: required("REDIS_URL")?,
            api_host: env.get("__OW_API_HOST").cloned().unwrap_or_default(),
            link,
            api_keys: env
                .get("KAPPA_API_KEYS")
                .map(|k| {
                    k.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            config,
        })
    }

    /// Whether a web request's `Authorization` header carries a configured key.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        self.api_keys.is_empty()
            || authorization.and_then(|h| h.strip_prefix("Bearer ")).is_some_and(|k| {
                self.api_keys
                    .iter()
                    .any(|key| constant_time_eq(key.as_bytes(), k.trim().as_bytes()))
            })
    }
}

/// Compare secrets without an early exit that leaks their common prefix length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn package_parameters_supply_settings_the_environment_lacks() {
        let params = serde_json::json!({"KAFKA_BROKERS": "k:9092", "REDIS_URL": "redis://r", "KAPPA_CONFIG": {"batch_records": 7}, "query": "q_1", "__ow_headers": {}});
        let merged = settings_from(&env(&[("REDIS_URL", "redis://from-env")]), &params);
        let d = Deployment::from_map(&merged).expect("valid");
        assert_eq!(
            (d.kafka_brokers.as_str(), d.redis_url.as_str(), d.config.batch_records),
            ("k:9092", "redis://from-env", 7)
        );
        assert_eq!(strip_settings(&params), serde_json::json!({"query": "q_1"}));
    }

    #[test]
    fn settings_are_read_strictly() {
        let d = Deployment::from_map(&env(&[
            ("KAFKA_BROKERS", "k:9092"),
            ("REDIS_URL", "redis://r"),
            ("KAPPA_API_KEYS", "a, b"),
            ("KAPPA_CONFIG", r#"{"batch_records": 5}"#),
        ]))
        .expect("valid");
        assert_eq!(d.api_keys, ["a", "b"]);
        assert_eq!(d.config.batch_records, 5);
        assert!(
            d.authorized(Some("Bearer b"))
                && !d.authorized(Some("Bearer c"))
                && !d.authorized(None)
        );
        assert_eq!(
            Deployment::from_map(&env(&[("REDIS_URL", "r")])).expect_err("missing").name,
            "KAFKA_BROKERS"
        );
        assert_eq!(
            Deployment::from_map(&env(&[
                ("KAFKA_BROKERS", "k"),
                ("REDIS_URL", "r"),
                ("KAPPA_CONFIG", r#"{"batch_recordz": 5}"#)
            ]))
            .expect_err("typo")
            .name,
            "KAPPA_CONFIG"
        );
    }
}
