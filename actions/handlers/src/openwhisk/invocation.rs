//! One activation as the handlers see it, whichever host received it: the native ActionLoop
//! runner reads it from the invoker's `/run` line, the Node.js host from `main(params)` and
//! `process.env`.

use serde_json::{Map, Value};

use super::settings::SETTINGS;
use crate::env::Context;

/// One activation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The action's short name (`process` of `/ns/kappa/process`).
    pub action: String,
    /// The parameters as received (web actions: with `__ow_method`, `__ow_path`, ...).
    pub params: Map<String, Value>,
    /// Id and deadline.
    pub context: Context,
    /// The activation's API key (`provide-api-key`): chain links authenticate with it.
    pub api_key: Option<String>,
}

impl Invocation {
    /// An activation of `action_name` (fully qualified or short) with `params`.
    pub fn new(
        action_name: &str,
        params: Value,
        context: Context,
        api_key: Option<String>,
    ) -> Invocation {
        Invocation {
            action: action_name.rsplit('/').next().unwrap_or(action_name).to_string(),
            params: match params {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            context,
            api_key: api_key.filter(|k| !k.is_empty()),
        }
    }

    /// The event: the parameters without the settings and the platform's `__ow_*` fields
    /// (events reject unknown fields, and settings may be secrets).
    pub fn event(&self) -> Value {
        let mut event = self.params.clone();
        event.retain(|k, _| !k.starts_with("__ow_") && !SETTINGS.contains(&k.as_str()));
        Value::Object(event)
    }

    /// A web request's HTTP method (lower case); `get` when the platform gave none.
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

    /// A query parameter of a raw-http web request (`__ow_query`), percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.params.get("__ow_query").and_then(Value::as_str)?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The body of a web request: `__ow_body` of a raw-http action (base64 unless it is JSON
    /// text), else the event as JSON (a plain web action's parameters).
    pub fn body(&self) -> Vec<u8> {
        use base64::Engine;
        match self.params.get("__ow_body").and_then(Value::as_str) {
            Some(b) if b.trim_start().starts_with(['{', '[']) => b.as_bytes().to_vec(),
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_else(|_| b.as_bytes().to_vec()),
            None => serde_json::to_vec(&self.event()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invocation(params: Value) -> Invocation {
        let context = Context { activation_id: "a".into(), deadline_ms: 0 };
        Invocation::new("/guest/kappa/process", params, context, Some(String::new()))
    }

    #[test]
    fn the_event_leaves_out_settings_and_platform_fields() {
        let i = invocation(json!({"KAFKA_BROKERS": "k", "REDIS_URL": "redis://:secret@r",
            "query": "q_1", "__ow_headers": {"authorization": "Bearer b"}}));
        assert_eq!(i.action, "process");
        assert_eq!(i.api_key, None, "an empty key is no key");
        assert_eq!(i.event(), json!({"query": "q_1"}));
        assert_eq!(i.header("authorization"), Some("Bearer b"));
        assert_eq!(i.method(), "get");
    }

    #[test]
    fn a_raw_body_is_taken_as_text_or_base64() {
        assert_eq!(invocation(json!({"__ow_body": "eyJhIjoxfQ=="})).body(), br#"{"a":1}"#);
        assert_eq!(invocation(json!({"__ow_body": "{\"a\":1}"})).body(), br#"{"a":1}"#);
        assert_eq!(invocation(json!({"a": 1, "REDIS_URL": "r"})).body(), br#"{"a":1}"#);
        let i = invocation(json!({"__ow_query": "url=https%3A%2F%2Fx.example%2Fh%3Fa%3D1&b=2"}));
        assert_eq!(i.query_param("url").as_deref(), Some("https://x.example/h?a=1"));
        assert_eq!(i.query_param("c"), None);
    }
}
