//! A test harness that plays OpenWhisk's controller and invoker for Kappa's package.
//!
//! OpenWhisk itself cannot run on this machine, so the end-to-end tests run the deployed
//! actions under this harness instead. It follows the descriptor (`manifest.yaml` or
//! `manifest.wasm.yaml`): its actions with their time limits and `provide-api-key`
//! annotations, its web exports, and its rules from triggers to actions. It serves the parts of
//! the REST API the actions and their users call, on loopback:
//! - `POST /api/v1/namespaces/{ns}/actions/{pkg}/{action}` — invoke (`blocking=false`: 202
//!   with an activation id; `blocking=true`: the result);
//! - `POST /api/v1/namespaces/{ns}/triggers/{trigger}` — fire: 202 and one non-blocking invoke
//!   per rule (a refused invoke is dropped silently, as OpenWhisk does), 204 without a rule;
//! - `/api/v1/web/{ns}/{pkg}/{action}/{path}` — web actions (`__ow_method`, `__ow_headers`,
//!   `__ow_path`, `__ow_query`, `__ow_body` for raw-http), answering with the result's
//!   `statusCode`, `headers` and `body`.
//!
//! Calls need the namespace's API key (HTTP Basic `uuid:key`), and the limits of a default
//! deployment are enforced and counted: payload 1 MB (413), result 1 MB, 60 invocations and 60
//! trigger fires per minute, 30 concurrent activations (429 with OpenWhisk's message).
//!
//! The invoker keeps warm containers per action and sends each one activation at a time, as
//! the ActionLoop proxy does: the invoker's `/run` message (`value` = package parameters merged
//! with the call's, `action_name`, `activation_id`, `deadline` as a string, `api_key` only with
//! `provide-api-key`) as one line on stdin, one result line back on fd 3. A native container
//! runs the action's `exec` with a bare environment (`__OW_API_HOST` only); a Node.js container
//! runs `harness/nodejs-runner.js`, which `require`s the unzipped action and awaits `main`.
//! The real ActionLoop proxy (Go module github.com/apache/openwhisk-runtime-go) cannot be
//! fetched here (the Go module proxy answers 403), so this is the same protocol, wired by hand.

#![allow(
    clippy::disallowed_methods,
    reason = "a harness playing the platform reads the clock and passes its PATH on"
)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{Flavour, package};

/// The limits of a default deployment (ansible/standalone/helm defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Invocations per minute per namespace.
    pub invokes_per_minute: usize,
    /// Trigger fires per minute per namespace.
    pub fires_per_minute: usize,
    /// Activations in flight per namespace.
    pub concurrent: usize,
    /// Largest request payload, bytes.
    pub payload_bytes: usize,
    /// Largest result, bytes.
    pub result_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            invokes_per_minute: 60,
            fires_per_minute: 60,
            concurrent: 30,
            payload_bytes: 1 << 20,
            result_bytes: 1 << 20,
        }
    }
}

/// How containers run an action.
#[derive(Debug, Clone)]
pub enum Runtime {
    /// ActionLoop: this `exec` (the zip's content) for every action.
    Native {
        /// The action executable.
        exec: PathBuf,
    },
    /// nodejs:20: `<dir>/<action>-wasm.zip`, unzipped per action.
    Node {
        /// Where the zips are.
        zips: PathBuf,
    },
}

/// What the harness runs.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// The descriptor's text.
    pub manifest: String,
    /// The flavour it deploys.
    pub flavour: Flavour,
    /// How actions run.
    pub runtime: Runtime,
    /// The package's parameters (wskdeploy `inputs`), merged into every activation.
    pub package_params: Map<String, Value>,
    /// The namespace's API key, `uuid:key`.
    pub api_key: String,
    /// Enforced limits.
    pub limits: Limits,
}

/// What happened, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Activations per action.
    pub activations: HashMap<String, u64>,
    /// Fires per trigger.
    pub fires: HashMap<String, u64>,
    /// Calls refused with 429.
    pub rate_limited: u64,
    /// Calls refused with 413.
    pub too_large: u64,
    /// Activations whose result was `{"error": ...}` (application errors).
    pub errors: u64,
    /// Results over the result limit.
    pub oversize_results: u64,
    /// Most activations in flight at once.
    pub peak_concurrency: usize,
    /// Every result, per action, in completion order.
    pub results: HashMap<String, Vec<Value>>,
}

struct ActionSpec {
    timeout_ms: i64,
    provide_api_key: bool,
    web: bool,
    raw_http: bool,
}

struct Container {
    child: Child,
    stdin: ChildStdin,
    results: BufReader<ChildStdout>,
}

struct Platform {
    config: PlatformConfig,
    actions: HashMap<String, ActionSpec>,
    rules: HashMap<String, Vec<String>>,
    warm: Mutex<HashMap<String, Vec<Container>>>,
    invokes: Mutex<VecDeque<Instant>>,
    fires: Mutex<VecDeque<Instant>>,
    in_flight: AtomicUsize,
    activations: AtomicU64,
    stats: Mutex<Stats>,
    containers: AtomicU64,
    api_host: String,
    work: tempfile::TempDir,
}

/// A running harness.
pub struct RunningPlatform {
    /// Where the API listens (`__OW_API_HOST`).
    pub addr: SocketAddr,
    platform: Arc<Platform>,
    task: tokio::task::JoinHandle<()>,
}

/// Why the harness cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The descriptor is not usable.
    #[error("manifest: {0}")]
    Manifest(String),
    /// I/O (listening, unzipping).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A refused call: the status and OpenWhisk's `{"error", "code"}` body.
struct Refusal(u16, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(json!({"error": self.1, "code": "harness"}))).into_response()
    }
}

fn refusal(status: u16, message: String) -> Response {
    Refusal(status, message).into_response()
}

/// Admit one call in a sliding one-minute window of at most `limit`.
fn admit(window: &Mutex<VecDeque<Instant>>, limit: usize) -> Result<(), usize> {
    let mut w = window.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    while w.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
        w.pop_front();
    }
    if w.len() >= limit {
        return Err(w.len());
    }
    w.push_back(now);
    Ok(())
}

impl Platform {
    fn from_config(config: PlatformConfig, addr: SocketAddr) -> Result<Platform, PlatformError> {
        let doc = crate::parse(&config.manifest).map_err(PlatformError::Manifest)?;
        let problems = crate::check_manifest(&doc, config.flavour);
        if !problems.is_empty() {
            return Err(PlatformError::Manifest(problems.join("; ")));
        }
        let pkg = package(&doc).ok_or_else(|| PlatformError::Manifest("no package".into()))?;
        let mut actions = HashMap::new();
        for (name, spec) in pkg.get("actions").and_then(|a| a.as_mapping()).into_iter().flatten() {
            let name = name.as_str().unwrap_or_default().to_string();
            let flag = |key: &str| {
                spec.get(key)
                    .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
            };
            let annotation = spec
                .get("annotations")
                .and_then(|a| a.get("provide-api-key"))
                .is_some_and(|v| v.as_bool() == Some(true));
            let timeout_ms = spec
                .get("limits")
                .and_then(|l| l.get("timeout"))
                .and_then(serde_yaml::Value::as_i64)
                .unwrap_or(60_000);
            actions.insert(
                name,
                ActionSpec {
                    timeout_ms,
                    provide_api_key: annotation,
                    web: flag("web-export"),
                    raw_http: flag("raw-http"),
                },
            );
        }
        let mut rules: HashMap<String, Vec<String>> = HashMap::new();
        for (_, rule) in pkg.get("rules").and_then(|r| r.as_mapping()).into_iter().flatten() {
            let trigger = rule.get("trigger").and_then(|t| t.as_str()).unwrap_or_default();
            let action = rule.get("action").and_then(|t| t.as_str()).unwrap_or_default();
            rules.entry(trigger.to_string()).or_default().push(action.to_string());
        }
        Ok(Platform {
            config,
            actions,
            rules,
            warm: Mutex::new(HashMap::new()),
            invokes: Mutex::new(VecDeque::new()),
            fires: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            activations: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
            containers: AtomicU64::new(0),
            api_host: format!("http://{addr}"),
            work: tempfile::tempdir()?,
        })
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&self.config.api_key)
        );
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
    }

    /// Admission of an invocation: payload, per-minute and concurrency limits.
    fn admit_invoke(&self, payload_bytes: usize) -> Result<(), Refusal> {
        let limits = &self.config.limits;
        if payload_bytes > limits.payload_bytes {
            self.stats().too_large += 1;
            return Err(Refusal(
                413,
                format!(
                    "The request content was malformed: payload of {payload_bytes} bytes exceeds the allowed {} bytes.",
                    limits.payload_bytes
                ),
            ));
        }
        if let Err(count) = admit(&self.invokes, limits.invokes_per_minute) {
            self.stats().rate_limited += 1;
            return Err(Refusal(
                429,
                format!(
                    "Too many requests in the last minute (count: {count}, allowed: {}).",
                    limits.invokes_per_minute
                ),
            ));
        }
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        if in_flight >= limits.concurrent {
            self.stats().rate_limited += 1;
            return Err(Refusal(
                429,
                format!(
                    "Too many concurrent requests in flight (count: {in_flight}, allowed: {}).",
                    limits.concurrent
                ),
            ));
        }
        Ok(())
    }

    async fn spawn_container(&self, action: &str) -> std::io::Result<Container> {
        let mut command = match &self.config.runtime {
            Runtime::Native { exec } => {
                let mut c = Command::new("bash");
                // fd 3 is the result channel; the action's stdout joins its logs, as under the proxy.
                c.arg("-c").arg(format!("exec '{}' 3>&1 1>&2", exec.display()));
                c
            }
            Runtime::Node { zips } => {
                let n = self.containers.fetch_add(1, Ordering::Relaxed);
                let dir = self.work.path().join(format!("{action}-{n}"));
                if !dir.exists() {
                    let zip = zips.join(format!("{action}-wasm.zip"));
                    let status = std::process::Command::new("unzip")
                        .arg("-q")
                        .arg(&zip)
                        .arg("-d")
                        .arg(&dir)
                        .status()?;
                    if !status.success() {
                        return Err(std::io::Error::other(format!("unzip {}", zip.display())));
                    }
                }
                let runner = concat!(env!("CARGO_MANIFEST_DIR"), "/harness/nodejs-runner.js");
                let mut c = Command::new("bash");
                c.arg("-c").arg(format!("exec node '{runner}' '{}' 3>&1 1>&2", dir.display()));
                c
            }
        };
        command
            .env_clear()
            .env("__OW_API_HOST", &self.api_host)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("KAPPA_PLATFORM_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
        let results =
            BufReader::new(child.stdout.take().ok_or_else(|| std::io::Error::other("no fd 3"))?);
        Ok(Container { child, stdin, results })
    }

    /// Run one activation in a warm container (or a new one) and return its result.
    async fn activate(&self, action: &str, params: Map<String, Value>) -> Value {
        let Some(spec) = self.actions.get(action) else {
            return json!({"error": format!("The requested resource does not exist: {action}")});
        };
        let n = self.activations.fetch_add(1, Ordering::Relaxed);
        let mut value = self.config.package_params.clone();
        value.extend(params);
        let deadline = now_ms() + spec.timeout_ms;
        let mut message = json!({
            "value": value,
            "namespace": "guest",
            "action_name": format!("/guest/kappa/{action}"),
            "action_version": "0.1.0",
            "activation_id": format!("{n:032x}"),
            "transaction_id": format!("tid{n}"),
            "deadline": deadline.to_string(),
        });
        if spec.provide_api_key {
            message["api_key"] = json!(self.config.api_key);
        }
        let warm = self
            .warm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(action.into())
            .or_default()
            .pop();
        let mut container = match warm {
            Some(c) => c,
            None => match self.spawn_container(action).await {
                Ok(c) => c,
                Err(e) => return json!({"error": format!("container failed to start: {e}")}),
            },
        };
        let mut line = message.to_string();
        line.push('\n');
        let mut out = String::new();
        let run = async {
            container.stdin.write_all(line.as_bytes()).await?;
            container.stdin.flush().await?;
            container.results.read_line(&mut out).await
        };
        let timeout = Duration::from_millis(spec.timeout_ms.max(100) as u64);
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(n)) if n > 0 => match serde_json::from_str::<Value>(out.trim()) {
                Ok(v @ Value::Object(_)) => {
                    if out.len() > self.config.limits.result_bytes {
                        self.stats().oversize_results += 1;
                        json!({"error": "The action produced a response that exceeded the allowed length."})
                    } else {
                        self.warm
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(action.into())
                            .or_default()
                            .push(container);
                        v
                    }
                }
                _ => json!({"error": "The action did not produce a valid JSON response."}),
            },
            Ok(_) => {
                json!({"error": "The action did not produce a valid response and exited unexpectedly."})
            }
            Err(_) => {
                let _ = container.child.start_kill();
                json!({"error": format!("The action exceeded its time limits of {} milliseconds.", spec.timeout_ms)})
            }
        };
        let mut stats = self.stats();
        *stats.activations.entry(action.into()).or_default() += 1;
        if result.get("error").is_some() {
            stats.errors += 1;
        }
        stats.results.entry(action.into()).or_default().push(result.clone());
        result
    }

    /// Admit and start an activation without waiting for it.
    fn start(self: &Arc<Self>, action: String, params: Map<String, Value>) {
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut stats = self.stats();
            stats.peak_concurrency = stats.peak_concurrency.max(in_flight);
        }
        let platform = self.clone();
        tokio::spawn(async move {
            platform.activate(&action, params).await;
            platform.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

type S = State<Arc<Platform>>;

fn params_of(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Refusal(400, "The request content was malformed: not a JSON object.".into())),
    }
}

async fn invoke(
    State(platform): S,
    Path((_ns, pkg, action)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !platform.authorized(&headers) {
        return refusal(401, "The supplied authentication is invalid".into());
    }
    if pkg != "kappa" || !platform.actions.contains_key(&action) {
        return refusal(404, "The requested resource does not exist.".into());
    }
    if let Err(refused) = platform.admit_invoke(body.len()) {
        return refused.into_response();
    }
    let params = match params_of(&body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    if query.get("blocking").map(String::as_str) == Some("true") {
        platform.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = platform.activate(&action, params).await;
        platform.in_flight.fetch_sub(1, Ordering::SeqCst);
        let status = if result.get("error").is_some() { 502 } else { 200 };
        return (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(result))
            .into_response();
    }
    platform.start(action, params);
    let id = format!("{:032x}", platform.activations.load(Ordering::Relaxed));
    (StatusCode::ACCEPTED, axum::Json(json!({"activationId": id}))).into_response()
}

async fn fire(
    State(platform): S,
    Path((_ns, trigger)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !platform.authorized(&headers) {
        return refusal(401, "The supplied authentication is invalid".into());
    }
    if body.len() > platform.config.limits.payload_bytes {
        platform.stats().too_large += 1;
        return refusal(413, "The request content was malformed: payload too large.".into());
    }
    if let Err(count) = admit(&platform.fires, platform.config.limits.fires_per_minute) {
        platform.stats().rate_limited += 1;
        return refusal(
            429,
            format!(
                "Too many requests in the last minute (count: {count}, allowed: {}).",
                platform.config.limits.fires_per_minute
            ),
        );
    }
    let params = match params_of(&body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    *platform.stats().fires.entry(trigger.clone()).or_default() += 1;
    let Some(actions) = platform.rules.get(&trigger).cloned() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    for action in actions {
        // The controller invokes each rule's action on its own; a refusal is only logged.
        if platform.admit_invoke(body.len()).is_ok() {
            platform.start(action, params.clone());
        }
    }
    let id = format!("{:032x}", platform.activations.load(Ordering::Relaxed));
    (StatusCode::ACCEPTED, axum::Json(json!({"activationId": id}))).into_response()
}

async fn web(
    State(platform): S,
    Path((_ns, pkg, rest)): Path<(String, String, String)>,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (action, path) = match rest.split_once('/') {
        Some((a, p)) => (a.to_string(), format!("/{p}")),
        None => (rest.clone(), String::new()),
    };
    let action = action.trim_end_matches(".http").to_string();
    let Some(spec) = platform.actions.get(&action).filter(|s| s.web && pkg == "kappa") else {
        return refusal(404, "The requested resource does not exist.".into());
    };
    if let Err(refused) = platform.admit_invoke(body.len()) {
        return refused.into_response();
    }
    let header_map: Map<String, Value> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_lowercase(), json!(v.to_str().ok()?))))
        .collect();
    let mut params = Map::new();
    params.insert("__ow_method".into(), json!(method.as_str().to_lowercase()));
    params.insert("__ow_headers".into(), Value::Object(header_map));
    params.insert("__ow_path".into(), json!(path));
    if spec.raw_http {
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        params.insert("__ow_query".into(), json!(q.join("&")));
        params.insert("__ow_body".into(), json!(String::from_utf8_lossy(&body)));
    } else if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) {
        params.extend(fields);
    }
    platform.in_flight.fetch_add(1, Ordering::SeqCst);
    let result = platform.activate(&action, params).await;
    platform.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(e) = result.get("error").filter(|_| result.get("statusCode").is_none()) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response();
    }
    let status = result
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = match result.get("body") {
        Some(Value::String(s)) => (status, s.clone()).into_response(),
        Some(b) => (status, axum::Json(b.clone())).into_response(),
        None => status.into_response(),
    };
    if let Some(Value::Object(h)) = result.get("headers") {
        for (k, v) in h {
            if let (Ok(name), Some(Ok(value))) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(axum::http::HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

impl RunningPlatform {
    /// Start the harness on 127.0.0.1:0.
    pub async fn start(config: PlatformConfig) -> Result<RunningPlatform, PlatformError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // Containers learn the API host from their environment, as `__OW_API_HOST`.
        let platform = Arc::new(Platform::from_config(config, addr)?);
        let router = Router::new()
            .route("/api/v1/namespaces/{ns}/actions/{pkg}/{action}", post(invoke))
            .route("/api/v1/namespaces/{ns}/triggers/{trigger}", post(fire))
            .route("/api/v1/web/{ns}/{pkg}/{*rest}", any(web))
            .with_state(platform.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(RunningPlatform { addr, platform, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn api_host(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Fire `trigger` as its feed would (the Kafka feed, the alarm), with the namespace's key.
    pub async fn fire(&self, trigger: &str, payload: &Value) -> u16 {
        let auth = base64::engine::general_purpose::STANDARD.encode(&self.platform.config.api_key);
        reqwest::Client::new()
            .post(format!("{}/api/v1/namespaces/_/triggers/{trigger}", self.api_host()))
            .header("authorization", format!("Basic {auth}"))
            .json(payload)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// Activations running or queued.
    pub fn in_flight(&self) -> usize {
        self.platform.in_flight.load(Ordering::SeqCst)
    }

    /// Wait until no activation has run for `quiet` (or `max` passed).
    pub async fn settle(&self, quiet: Duration, max: Duration) {
        let start = Instant::now();
        let mut idle_since: Option<Instant> = None;
        let mut seen = self.platform.activations.load(Ordering::SeqCst);
        while start.elapsed() < max {
            let now = self.platform.activations.load(Ordering::SeqCst);
            if self.in_flight() == 0 && now == seen {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= quiet {
                    return;
                }
            } else {
                idle_since = None;
                seen = now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What happened so far.
    pub fn stats(&self) -> Stats {
        self.platform.stats().clone()
    }

    /// Stop serving and kill the containers.
    pub async fn stop(self) {
        self.task.abort();
        let containers: Vec<Container> = self
            .platform
            .warm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .flat_map(|(_, c)| c)
            .collect();
        for mut c in containers {
            let _ = c.child.kill().await;
        }
    }
}
