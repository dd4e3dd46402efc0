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
//! The invoker keeps warm containers per action and sends each one activation at a time.
//! Containers are OpenWhisk's real runtimes ([`crate::runtime`]): the ActionLoop proxy for the
//! native zips, the nodejs:20 runtime for the WASM zips, each on its own loopback port. A cold
//! container gets `/init` with the action's zip as base64 and the `__OW_*` context of its first
//! activation; every activation is a `/run` with the invoker's message (`value` = package
//! parameters merged with the call's, `namespace`, `action_name`, `activation_id`, `deadline`
//! as a string, `api_key` only with `provide-api-key`). The answer is read as the invoker reads
//! it: an application error keeps the container warm, a developer error (failed init, crash, a
//! result over the limit, a timeout) destroys it.

#![allow(
    clippy::disallowed_methods,
    reason = "a harness playing the platform reads the clock and passes its PATH on"
)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::runtime::{Outcome, RuntimeContainer, RuntimeKind, init_env, run_message};
use crate::{Flavour, package};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine as _;
use serde_json::{Map, Value, json};

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

/// What the harness runs.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// The descriptor's text.
    pub manifest: String,
    /// The flavour it deploys.
    pub flavour: Flavour,
    /// The real runtime the containers run.
    pub runtime: RuntimeKind,
    /// Where the action zips are (the file names of the descriptor's `function` paths).
    pub zips: PathBuf,
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
    /// Containers started (cold starts).
    pub containers_started: u64,
    /// Containers destroyed after a developer error (failed init, crash, oversize, timeout).
    pub containers_destroyed: u64,
    /// Every result, per action, in completion order.
    pub results: HashMap<String, Vec<Value>>,
}

struct ActionSpec {
    zip: String,
    timeout_ms: i64,
    provide_api_key: bool,
    web: bool,
    raw_http: bool,
}

struct Platform {
    config: PlatformConfig,
    actions: HashMap<String, ActionSpec>,
    rules: HashMap<String, Vec<String>>,
    warm: Mutex<HashMap<String, Vec<RuntimeContainer>>>,
    invokes: Mutex<VecDeque<Instant>>,
    fires: Mutex<VecDeque<Instant>>,
    in_flight: AtomicUsize,
    activations: AtomicU64,
    stats: Mutex<Stats>,
    api_host: String,
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
            let (web, raw_http) = crate::web_mode(spec);
            let annotation = spec
                .get("annotations")
                .and_then(|a| a.get("provide-api-key"))
                .is_some_and(|v| v.as_bool() == Some(true));
            let timeout_ms = spec
                .get("limits")
                .and_then(|l| l.get("timeout"))
                .and_then(serde_yaml::Value::as_i64)
                .unwrap_or(60_000);
            let function = spec.get("function").and_then(|f| f.as_str()).unwrap_or_default();
            let zip = function.rsplit('/').next().unwrap_or_default().to_string();
            actions.insert(
                name,
                ActionSpec { zip, timeout_ms, provide_api_key: annotation, web, raw_http },
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
            api_host: format!("http://{addr}"),
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

    /// A cold container for `action`: a runtime started and initialised with the action's
    /// zip and the context of its first activation (`message`).
    async fn cold_container(
        &self,
        action: &str,
        spec: &ActionSpec,
        message: &Value,
    ) -> Result<RuntimeContainer, Value> {
        self.stats().containers_started += 1;
        let zip = std::fs::read(self.config.zips.join(&spec.zip))
            .map_err(|e| json!({"error": format!("no code for {action}: {e}")}))?;
        let container = RuntimeContainer::start(&self.config.runtime, &self.api_host)
            .await
            .map_err(|e| json!({"error": format!("container failed to start: {e}")}))?;
        let timeout = Duration::from_millis(spec.timeout_ms.max(100) as u64);
        match container.init(action, &zip, &init_env(message), timeout).await {
            Outcome::Success(_) => Ok(container),
            failed => {
                self.retire(container).await;
                Err(failed.result().clone())
            }
        }
    }

    /// Destroy a container after a developer error.
    async fn retire(&self, container: RuntimeContainer) {
        self.stats().containers_destroyed += 1;
        #[allow(clippy::disallowed_methods, reason = "a debugging switch")]
        if std::env::var_os("KAPPA_PLATFORM_LOGS").is_some() {
            let (out, err) = container.logs();
            eprintln!("--- container {} stdout\n{out}--- stderr\n{err}", container.url);
        }
        container.destroy().await;
    }

    /// Run one activation in a warm container (or a new one) and return its result.
    async fn activate(&self, action: &str, params: Map<String, Value>) -> Value {
        let Some(spec) = self.actions.get(action) else {
            return json!({"error": format!("The requested resource does not exist: {action}")});
        };
        let n = self.activations.fetch_add(1, Ordering::Relaxed);
        let mut value = self.config.package_params.clone();
        value.extend(params);
        let message = run_message(
            "guest",
            &format!("/guest/kappa/{action}"),
            &format!("{n:032x}"),
            now_ms() + spec.timeout_ms,
            spec.provide_api_key.then_some(self.config.api_key.as_str()),
            Value::Object(value),
        );
        let warm = self
            .warm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(action.into())
            .or_default()
            .pop();
        let container = match warm {
            Some(c) => Ok(c),
            None => self.cold_container(action, spec, &message).await,
        };
        let timeout = Duration::from_millis(spec.timeout_ms.max(100) as u64);
        let result = match container {
            Err(e) => e,
            Ok(container) => {
                let outcome =
                    container.run(&message, timeout, self.config.limits.result_bytes).await;
                let result = outcome.result().clone();
                if outcome.keeps_container() {
                    self.warm
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(action.into())
                        .or_default()
                        .push(container);
                } else {
                    if result["error"].as_str().is_some_and(|e| {
                        e.starts_with("The action produced a response that exceeded")
                    }) {
                        self.stats().oversize_results += 1;
                    }
                    self.retire(container).await;
                }
                result
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
    RawQuery(raw_query): RawQuery,
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
        // The query string as the client sent it, still percent-encoded (as the controller does).
        params.insert("__ow_query".into(), json!(raw_query.unwrap_or_default()));
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
        let containers: Vec<RuntimeContainer> = self
            .platform
            .warm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .flat_map(|(_, c)| c)
            .collect();
        for c in containers {
            c.destroy().await;
        }
    }
}
