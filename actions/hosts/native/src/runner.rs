//! The ActionLoop protocol: one activation per stdin line, one result line on fd 3.
//!
//! The proxy writes the platform's `/run` message (`{"value", "activation_id", "deadline", ...}`)
//! as one line to stdin and reads one JSON line back from fd 3; it then appends the log
//! sentinels itself. An action must answer every activation with a JSON object — failures as
//! `{"error": ...}` — and never exit or crash: anything else makes the invoker destroy the
//! container. So handlers return values, panics are caught, and stdout/stderr are flushed
//! before the result is written.

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, Write};

use kappa_actions::Context;
use kappa_actions::openwhisk::Invocation;
use serde_json::{Value, json};

/// One activation, as the invoker sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    /// The action's parameters (for web actions, with `__ow_method`, `__ow_path`, ...).
    pub value: Value,
    /// Activation id.
    pub activation_id: String,
    /// Deadline, epoch ms.
    pub deadline_ms: i64,
    /// The API key, when the action has `provide-api-key`.
    pub api_key: Option<String>,
    /// Fully qualified action name.
    pub action_name: String,
    /// Namespace.
    pub namespace: String,
}

impl Activation {
    /// Parse one `/run` line; fields missing from the line fall back to the `__OW_*` init env.
    pub fn parse(line: &str, env: &HashMap<String, String>) -> Result<Activation, String> {
        let msg: Value =
            serde_json::from_str(line).map_err(|e| format!("activation is not JSON: {e}"))?;
        let field = |k: &str| -> Option<String> {
            match msg.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => env.get(&format!("__OW_{}", k.to_ascii_uppercase())).cloned(),
            }
        };
        let deadline_ms = field("deadline")
            .and_then(|d| d.parse::<i64>().ok())
            .ok_or("activation has no deadline")?;
        Ok(Activation {
            value: msg.get("value").cloned().unwrap_or(json!({})),
            activation_id: field("activation_id").unwrap_or_default(),
            deadline_ms,
            api_key: field("api_key"),
            action_name: field("action_name").unwrap_or_default(),
            namespace: field("namespace").unwrap_or_default(),
        })
    }

    /// The handlers' view of it.
    pub fn context(&self) -> Context {
        Context { activation_id: self.activation_id.clone(), deadline_ms: self.deadline_ms }
    }

    /// The host-neutral activation the dispatch takes.
    pub fn invocation(&self) -> Invocation {
        Invocation::new(&self.action_name, self.value.clone(), self.context(), self.api_key.clone())
    }
}

/// Serve activations from stdin until it closes. `handler` turns one activation into its result
/// (a JSON object); a panic in it becomes an `{"error"}` result and the loop goes on.
pub fn serve<F, Fut>(handler: F) -> std::io::Result<()>
where
    F: Fn(Activation) -> Fut,
    Fut: Future<Output = Value> + Send + 'static,
{
    let env: HashMap<String, String> = std::env::vars().collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // fd 3 is the result pipe to the proxy; outside the proxy (manual runs) results go to stdout.
    let mut out: Box<dyn Write> = match std::fs::OpenOptions::new().write(true).open("/dev/fd/3") {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::stdout()),
    };
    if env.get("__OW_WAIT_FOR_ACK").is_some_and(|v| !v.is_empty()) {
        writeln!(out, "{}", json!({"ok": true}))?;
        out.flush()?;
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let result = match Activation::parse(&line, &env) {
            Ok(activation) => {
                let task = runtime.spawn(handler(activation));
                match runtime.block_on(task) {
                    Ok(v) if v.is_object() || v.is_array() => v,
                    Ok(other) => {
                        json!({"error": format!("action returned a non-object result: {other}")})
                    }
                    Err(e) if e.is_panic() => {
                        tracing::error!("action panicked");
                        json!({"error": "internal error: the action panicked"})
                    }
                    Err(_) => json!({"error": "internal error: the action was cancelled"}),
                }
            }
            Err(e) => json!({"error": e}),
        };
        // Logs of this activation must precede its result (the proxy then writes the sentinels).
        std::io::stdout().flush()?;
        std::io::stderr().flush()?;
        let mut text = serde_json::to_string(&result)
            .unwrap_or_else(|_| r#"{"error":"unserialisable result"}"#.into());
        text.retain(|c| c != '\n');
        writeln!(out, "{text}")?;
        out.flush()?;
    }
}

/// Logs to stderr at the level in `KAPPA_LOG` (default `info`); never logs secrets.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAPPA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activation_line_is_parsed_like_the_invoker_sends_it() {
        let line = r#"{"value":{"__ow_method":"post","__ow_body":"{\"topic\":\"t\"}","__ow_headers":{"authorization":"Bearer k"}},"namespace":"guest","action_name":"/guest/kappa/query","action_version":"0.0.1","activation_id":"a1","transaction_id":"t1","deadline":"1893456000000","api_key":"u:k"}"#;
        let a = Activation::parse(line, &HashMap::new()).expect("parses");
        assert_eq!(a.deadline_ms, 1_893_456_000_000);
        assert_eq!(a.api_key.as_deref(), Some("u:k"));
        let invocation = a.invocation();
        assert_eq!(invocation.action, "query");
        assert_eq!(invocation.context.activation_id, "a1");
        assert_eq!(invocation.method(), "post");
        assert_eq!(invocation.header("authorization"), Some("Bearer k"));
        assert_eq!(invocation.body(), br#"{"topic":"t"}"#);
        let env = HashMap::from([("__OW_DEADLINE".to_string(), "5".to_string())]);
        assert_eq!(
            Activation::parse(r#"{"value":{}}"#, &env).expect("env fallback").deadline_ms,
            5
        );
        assert!(Activation::parse(r#"{"value":{}}"#, &HashMap::new()).is_err());
        assert!(Activation::parse("not json", &HashMap::new()).is_err());
    }
}
