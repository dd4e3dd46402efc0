//! The deployment's settings, read once per activation at the edge, the same way by both hosts.
//!
//! OpenWhisk hands a deployment's settings to an action two ways: parameters marked `init`
//! land in the action's environment (the native binary's process environment, a Node.js
//! action's `process.env`), package inputs arrive in every activation's parameters. Both are
//! read here; the environment wins where both have a value. The settings are then removed from
//! the event the handlers see (their events reject unknown fields).

use serde_json::{Map, Value};

use crate::config::ActionConfig;

/// Parameter names that are settings, never part of an event.
pub const SETTINGS: [&str; 6] =
    ["KAFKA_BROKERS", "REDIS_URL", "KAPPA_API_KEYS", "KAPPA_CONFIG", "KAPPA_LINK", "KAPPA_TOPIC"];

/// How a chain link is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// `POST /namespaces/_/actions/{action}?blocking=false`.
    Invoke,
    /// `POST /namespaces/_/triggers/{action}` (a trigger named like the action, with a rule).
    Trigger,
}

/// Where the adapters connect, and the actions' configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
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

/// A missing or malformed setting: the deployment is wrong, so a retry does not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deployment setting {name}: {problem}")]
pub struct SettingsError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// A parameter's value as text (a `KAPPA_CONFIG` object as JSON text); null is absent.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Settings {
    /// Read the settings from the action's environment (`env`: a variable's value, if set)
    /// and, for those it lacks, the activation's parameters.
    pub fn read(
        env: impl Fn(&str) -> Option<String>,
        params: &Map<String, Value>,
    ) -> Result<Settings, SettingsError> {
        let setting = |name: &str| {
            env(name)
                .filter(|v| !v.is_empty())
                .or_else(|| params.get(name).and_then(text).filter(|v| !v.is_empty()))
        };
        let required = |name: &'static str| {
            setting(name).ok_or(SettingsError { name, problem: "is required".into() })
        };
        let link = match setting("KAPPA_LINK").as_deref() {
            None | Some("invoke") => LinkKind::Invoke,
            Some("trigger") => LinkKind::Trigger,
            Some(other) => {
                return Err(SettingsError {
                    name: "KAPPA_LINK",
                    problem: format!("[{other}] is not invoke or trigger"),
                });
            }
        };
        let config = match setting("KAPPA_CONFIG") {
            None => ActionConfig::default(),
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| SettingsError { name: "KAPPA_CONFIG", problem: e.to_string() })?,
        };
        Ok(Settings {
            kafka_brokers: required("KAFKA_BROKERS")?,
            redis_url: required("REDIS_URL")?,
            api_host: env("__OW_API_HOST").unwrap_or_default(),
            link,
            api_keys: setting("KAPPA_API_KEYS")
                .map(|keys| {
                    keys.split(',')
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
            || authorization.and_then(|h| h.strip_prefix("Bearer ")).is_some_and(|given| {
                // Every key is compared, so the time taken does not tell which one matched.
                self.api_keys.iter().fold(false, |found, key| {
                    found | constant_time_eq(key.as_bytes(), given.trim().as_bytes())
                })
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
    use serde_json::json;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("an object")
    }

    #[test]
    fn parameters_supply_the_settings_the_environment_lacks() {
        let p = params(json!({"KAFKA_BROKERS": "k:9092", "REDIS_URL": "redis://r",
            "KAPPA_CONFIG": {"batch_records": 7}, "query": "q_1"}));
        let s = Settings::read(env(&[("REDIS_URL", "redis://from-env")]), &p).expect("valid");
        assert_eq!(
            (s.kafka_brokers.as_str(), s.redis_url.as_str(), s.config.batch_records),
            ("k:9092", "redis://from-env", 7)
        );
    }

    #[test]
    fn settings_are_read_strictly() {
        let s = Settings::read(
            env(&[
                ("KAFKA_BROKERS", "k:9092"),
                ("REDIS_URL", "redis://r"),
                ("KAPPA_API_KEYS", "a, b"),
                ("KAPPA_CONFIG", r#"{"batch_records": 5}"#),
                ("__OW_API_HOST", "http://ow"),
            ]),
            &Map::new(),
        )
        .expect("valid");
        assert_eq!(s.api_keys, ["a", "b"]);
        assert_eq!(s.config.batch_records, 5);
        assert_eq!(s.api_host, "http://ow");
        assert!(
            s.authorized(Some("Bearer b"))
                && !s.authorized(Some("Bearer c"))
                && !s.authorized(None)
        );
        let missing = Settings::read(env(&[("REDIS_URL", "r")]), &Map::new());
        assert_eq!(missing.expect_err("missing").name, "KAFKA_BROKERS");
        let typo = Settings::read(
            env(&[
                ("KAFKA_BROKERS", "k"),
                ("REDIS_URL", "r"),
                ("KAPPA_CONFIG", r#"{"batch_recordz": 5}"#),
            ]),
            &Map::new(),
        );
        assert_eq!(typo.expect_err("typo").name, "KAPPA_CONFIG");
        let link = Settings::read(
            env(&[("KAFKA_BROKERS", "k"), ("REDIS_URL", "r")]),
            &params(json!({"KAPPA_LINK": "x"})),
        );
        assert_eq!(link.expect_err("bad link").name, "KAPPA_LINK");
    }
}
