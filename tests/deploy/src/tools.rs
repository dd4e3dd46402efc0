//! The real deployment tools on Kappa's descriptors: OpenWhisk's `wskdeploy` and the
//! Serverless Framework v3 with the serverless-openwhisk plugin (both installed by
//! `scripts/openwhisk-tools.sh`).
//!
//! `wskdeploy --preview` prints a plan without the runtime kinds, limits or API routes, so the
//! descriptors also go through a real `wskdeploy` deployment against [`Recorder`], a loopback
//! controller that answers as OpenWhisk's does and keeps every REST call: what the tool would
//! create on a real platform, byte for byte (each action's `exec.kind` and code, annotations,
//! limits, the package's parameters, triggers and their feed calls, rules, API routes).
//!
//! The runtime kinds are checked against the list the controller serves at its root, the one
//! of the OpenWhisk release Kappa targets ([`openwhisk_runtimes`]); without an answer wskdeploy
//! falls back to a years-old built-in list without nodejs:20.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The runtimes of OpenWhisk 2.0.0's `runtimes.json`, as its controller serves them at `/`.
pub fn openwhisk_runtimes() -> Value {
    json!({
        "description": "OpenWhisk (loopback recorder)",
        "api_paths": ["/api/v1"],
        "runtimes": {
            "nodejs": [{"kind": "nodejs:18"}, {"kind": "nodejs:20", "default": true}],
            "python": [{"kind": "python:3.10"}, {"kind": "python:3.11", "default": true}],
            "go": [{"kind": "go:1.20", "default": true}],
            "rust": [{"kind": "rust:1.34", "default": true}],
            "blackbox": [{"kind": "blackbox"}],
        },
        "limits": {"actions_per_minute": 60, "triggers_per_minute": 60, "concurrent_actions": 30},
    })
}

/// One REST call a tool made.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET`, `PUT`, `POST`, `DELETE`.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The JSON body (`null` when none).
    pub body: Value,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

/// A loopback OpenWhisk controller that records calls: `GET /` serves
/// [`openwhisk_runtimes`], entity `GET`s answer 404 (nothing is deployed yet), `PUT`s answer
/// the entity sent (as the controller does), API creation echoes the `apidoc`, other `POST`s
/// (feed actions, rule activation) answer a successful blocking activation.
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn record(
    State(calls): State<Arc<Mutex<Vec<Call>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_json = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    calls.lock().unwrap_or_else(|e| e.into_inner()).push(Call {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_string(),
        body: body_json.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let json = |status: StatusCode, v: Value| {
        (status, [("content-type", "application/json; charset=UTF-8")], v.to_string())
            .into_response()
    };
    match method {
        Method::GET if path == "/" => json(StatusCode::OK, openwhisk_runtimes()),
        Method::GET => json(
            StatusCode::NOT_FOUND,
            json!({"error": "The requested resource does not exist.", "code": "recorder"}),
        ),
        Method::PUT => json(StatusCode::OK, body_json),
        Method::POST if path.ends_with("/apimgmt/createApi.http") => {
            json(StatusCode::OK, body_json)
        }
        Method::POST => json(
            StatusCode::OK,
            json!({"activationId": "0", "response": {"success": true, "status": "success", "result": {}}}),
        ),
        _ => json(StatusCode::OK, json!({})),
    }
}

impl Recorder {
    /// Listen on 127.0.0.1:0.
    pub async fn start() -> std::io::Result<Recorder> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new().fallback(record).with_state(calls.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Recorder { addr, calls, task })
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stop listening.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// A `wskprops` file for `WSK_CONFIG_FILE`: the recorder as API host, a dummy key.
pub fn wskprops(dir: &Path, api_host: &str) -> std::io::Result<PathBuf> {
    let path = dir.join("wskprops");
    std::fs::write(
        &path,
        format!(
            "APIHOST={api_host}\nAUTH=23bc46b1-71f6-4ed5-8c54-816aa4f8c502:dummy-key\nNAMESPACE=guest\nAPIGW_ACCESS_TOKEN=dummy\n"
        ),
    )?;
    Ok(path)
}

/// What a tool printed.
#[derive(Debug)]
pub struct Run {
    /// Exit status success.
    pub ok: bool,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

/// Run `program args` in `dir` with `env` (and PATH, HOME), at most `timeout`.
pub async fn run_tool(
    program: &Path,
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
    timeout: std::time::Duration,
) -> std::io::Result<Run> {
    #[allow(clippy::disallowed_methods, reason = "tools get the host's PATH")]
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| std::io::Error::other(format!("{} timed out", program.display())))??;
    Ok(Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// One entity of `wskdeploy --preview`'s plan: its name and its `- key : value` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanEntry {
    /// The entity's own lines, `key : value` (bindings and annotations alike, in order).
    pub lines: Vec<String>,
}

/// `wskdeploy --preview`'s plan: entries per section (`package`, `action`, `trigger`, `rule`).
pub type Plan = BTreeMap<(String, String), PlanEntry>;

/// Parse the plan `wskdeploy --preview` prints (`Packages:` with `* action: NAME` entries,
/// `Triggers:` with `* trigger: NAME`, `Rules` with `* rule: NAME`, each followed by
/// `- key : value` lines).
pub fn parse_preview(text: &str) -> Plan {
    let mut plan = Plan::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("Name: ") {
            current = Some(("package".into(), name.trim().into()));
        } else if let Some(rest) = t.strip_prefix("* ") {
            if let Some((kind, name)) = rest.split_once(':') {
                current = Some((kind.trim().into(), name.trim().into()));
            }
        } else if let Some(kv) = t.strip_prefix("- ") {
            if let Some(key) = &current {
                plan.entry(key.clone()).or_default().lines.push(kv.trim().to_string());
            }
            continue;
        } else {
            continue;
        }
        if let Some(key) = &current {
            plan.entry(key.clone()).or_default();
        }
    }
    plan
}

/// The resources `serverless package --verbose` compiled with serverless-openwhisk: its
/// `Compiled <Kind> (<name>): <JSON>` lines, as (kind, name) → JSON.
pub fn parse_serverless(text: &str) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("Compiled ") else { continue };
        let Some((head, json)) = rest.split_once("): ") else { continue };
        let Some((kind, name)) = head.split_once(" (") else { continue };
        if let Ok(v) = serde_json::from_str::<Value>(json) {
            out.insert((kind.to_string(), name.to_string()), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_plan_is_parsed_into_entities_and_their_lines() {
        let text = "Packages:\nName: kappa\n    bindings: \n        - REDIS_URL : \"r\"\n\n  * action: query\n    annotation: \n        - web-export : true\n\nTriggers:\n* trigger: kappa-kafka\n    annotation: \n        - feed : /whisk.system/messaging/kafkaFeed\n\nRules\n* rule: kappa-kafka-tick\n    - trigger: kappa-kafka\n    - action: kappa/tick\n";
        let plan = parse_preview(text);
        let lines = |k: &str, n: &str| plan[&(k.to_string(), n.to_string())].lines.clone();
        assert_eq!(lines("package", "kappa"), ["REDIS_URL : \"r\""]);
        assert_eq!(lines("action", "query"), ["web-export : true"]);
        assert_eq!(lines("trigger", "kappa-kafka"), ["feed : /whisk.system/messaging/kafkaFeed"]);
        assert_eq!(
            lines("rule", "kappa-kafka-tick"),
            ["trigger: kappa-kafka", "action: kappa/tick"]
        );
    }

    #[test]
    fn serverless_compiled_lines_are_parsed() {
        let text = "Compiling Functions...\nCompiled Function (query): {\"actionName\":\"kappa/query\"}\nCompiled API Gateway definition (status): [{\"relpath\":\"/v1\"}]\n";
        let c = parse_serverless(text);
        assert_eq!(c[&("Function".into(), "query".into())]["actionName"], "kappa/query");
        assert_eq!(c[&("API Gateway definition".into(), "status".into())][0]["relpath"], "/v1");
    }
}
