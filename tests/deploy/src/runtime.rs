//! OpenWhisk's real action runtimes as containers, driven as the invoker drives them.
//!
//! A container here is one process of a real runtime on a loopback port: the ActionLoop proxy
//! (openwhisk-runtime-go, the server of the `rust:1.34` and blackbox images) or the `nodejs:20`
//! runtime (openwhisk-runtime-nodejs, `node --expose-gc app.js`), both built from the vendored
//! sources by `scripts/openwhisk-tools.sh` with one change: the port comes from `PORT`. Each
//! container gets its own working directory (the proxy unzips into `./action/`).
//!
//! The invoker's side of the protocol (OpenWhisk's `ContainerProxy` and `Container.scala`):
//! `POST /init` once with the action's code exactly as stored (a zip as base64, `binary: true`)
//! and the `__OW_*` environment of the first activation, then one `POST /run` at a time with
//! the full activation message ([`run_message`]). How the invoker reads the answer
//! ([`Outcome`]) decides whether the container stays warm.
//!
//! Why not a hand-written runner: the real proxy strips raw newlines, hands the exec no `PATH`,
//! reads fd 3 without a size limit and answers 400 / 502 on its own terms; the nodejs runtime
//! unzips with `unzip`, `require`s the package and sets `__OW_*` only for string fields. A
//! harness that re-implements them tests the harness.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::process::{Child, Command};

/// The line both runtimes write to stdout and stderr after each activation.
pub const SENTINEL: &str = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX";

/// A real runtime's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeKind {
    /// The ActionLoop proxy binary (`rust:1.34`, blackbox `actionloop-base`).
    ActionLoop {
        /// `$KAPPA_CACHE/openwhisk/bin/actionloop-proxy`.
        proxy: PathBuf,
    },
    /// The nodejs:20 runtime's installed directory (holds `app.js`).
    Nodejs {
        /// `$KAPPA_CACHE/openwhisk/nodejs-runtime`.
        dir: PathBuf,
    },
}

impl RuntimeKind {
    /// The runtimes `scripts/openwhisk-tools.sh` installs: `KAPPA_ACTIONLOOP_PROXY` /
    /// `KAPPA_NODEJS_RUNTIME`, else their place under `<repo>/.cache/openwhisk`. `None` when
    /// not installed.
    pub fn action_loop() -> Option<RuntimeKind> {
        let proxy = tool("KAPPA_ACTIONLOOP_PROXY", "bin/actionloop-proxy");
        proxy.is_file().then_some(RuntimeKind::ActionLoop { proxy })
    }

    /// See [`RuntimeKind::action_loop`].
    pub fn nodejs() -> Option<RuntimeKind> {
        let dir = tool("KAPPA_NODEJS_RUNTIME", "nodejs-runtime");
        dir.join("app.js").is_file().then_some(RuntimeKind::Nodejs { dir })
    }
}

/// A tool of `scripts/openwhisk-tools.sh`: the path in `var`, else `<repo>/.cache/openwhisk/<rel>`.
#[allow(clippy::disallowed_methods, reason = "the harness finds its tools in the environment")]
pub fn tool(var: &str, rel: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/openwhisk").join(rel)
    })
}

/// Whether the test command requires the real tools (`KAPPA_REQUIRE_REAL_RUNTIMES=1`, set by
/// `scripts/test.sh`): then a missing tool fails a test instead of skipping it.
#[allow(clippy::disallowed_methods, reason = "the harness reads its switches")]
pub fn required() -> bool {
    std::env::var("KAPPA_REQUIRE_REAL_RUNTIMES").is_ok_and(|v| v == "1")
}

/// The `/init` body the invoker sends (`WhiskAction.containerInitializer`): the zip as
/// base64, `binary: true`, `main`, and the `__OW_*` context of the first activation plus any
/// init parameters as strings in `env`.
pub fn init_message(name: &str, zip: &[u8], env: &Map<String, Value>) -> Value {
    json!({"value": {
        "name": name,
        "main": "main",
        "code": base64::engine::general_purpose::STANDARD.encode(zip),
        "binary": true,
        "env": env,
    }})
}

/// The `/run` body the invoker sends (`ContainerProxy.initializeAndRun`): `value`, the fully
/// qualified `action_name`, `activation_id`, `transaction_id`, `deadline` as a string of epoch
/// milliseconds, and `api_key` only for actions annotated `provide-api-key`.
pub fn run_message(
    namespace: &str,
    action_name: &str,
    activation_id: &str,
    deadline_ms: i64,
    api_key: Option<&str>,
    value: Value,
) -> Value {
    let mut m = json!({
        "value": value,
        "namespace": namespace,
        "action_name": action_name,
        "action_version": "0.1.0",
        "activation_id": activation_id,
        "transaction_id": format!("tid-{activation_id}"),
        "deadline": deadline_ms.to_string(),
    });
    if let Some(key) = api_key {
        m["api_key"] = json!(key);
    }
    m
}

/// The `__OW_*` environment the invoker puts in `/init` for the first activation.
pub fn init_env(run: &Value) -> Map<String, Value> {
    let mut env = Map::new();
    for (k, v) in run.as_object().into_iter().flatten() {
        if k != "value"
            && let Some(s) = v.as_str()
        {
            env.insert(format!("__OW_{}", k.to_ascii_uppercase()), json!(s));
        }
    }
    env
}

/// How the invoker reads a `/run` (or `/init`) answer (`ActivationResult` and `ContainerProxy`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 200 and a JSON object without `error`: success; the container stays warm.
    Success(Value),
    /// 200 and an object with `error`: an application error; the container stays warm.
    ApplicationError(Value),
    /// Anything else: a developer error (`{"error": ...}` as the activation's result); the
    /// invoker destroys the container.
    DeveloperError(Value),
}

impl Outcome {
    /// The activation's result.
    pub fn result(&self) -> &Value {
        match self {
            Outcome::Success(v) | Outcome::ApplicationError(v) | Outcome::DeveloperError(v) => v,
        }
    }

    /// Whether the container may serve the next activation.
    pub fn keeps_container(&self) -> bool {
        !matches!(self, Outcome::DeveloperError(_))
    }
}

/// OpenWhisk's message for a result over the limit (`Messages.truncatedResponse`).
pub fn truncated_message(length: usize, max: usize) -> String {
    format!(
        "The action produced a response that exceeded the allowed length: {length} > {max} bytes."
    )
}

/// OpenWhisk's message for a timed-out activation (`Messages.timedoutActivation`).
pub fn timeout_message(timeout_ms: u64, init: bool) -> String {
    let during = if init { " during initialization." } else { "." };
    format!("The action exceeded its time limits of {timeout_ms} milliseconds{during}")
}

/// Classify a runtime's answer as the invoker does, with the result limit `max_bytes`.
pub fn classify(status: u16, body: &[u8], max_bytes: usize) -> Outcome {
    if body.len() > max_bytes {
        return Outcome::DeveloperError(json!({"error": truncated_message(body.len(), max_bytes)}));
    }
    let parsed = serde_json::from_slice::<Value>(body);
    match (status, parsed) {
        (200, Ok(v @ Value::Object(_))) if v.get("error").is_some() => Outcome::ApplicationError(v),
        (200, Ok(v @ (Value::Object(_) | Value::Array(_)))) => Outcome::Success(v),
        (_, Ok(Value::Object(m))) if m.contains_key("error") => {
            Outcome::DeveloperError(json!({"error": m["error"]}))
        }
        (200, _) => Outcome::DeveloperError(json!({
            "error": format!(
                "The action did not produce a valid JSON response: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )
        })),
        _ => Outcome::DeveloperError(json!({
            "error": "The action did not produce a valid response and exited unexpectedly."
        })),
    }
}

/// One running container of a real runtime.
pub struct RuntimeContainer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether process `pid` holds the socket listening on `port` (the kernel's socket tables, then
/// the process's descriptors).
fn listens_on(pid: u32, port: u16) -> bool {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    descriptors
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|socket| target.as_os_str() == socket.as_str()))
}

/// The inodes of the sockets listening on `port` in a `/proc/net/tcp{,6}` table (columns:
/// `sl local_address rem_address st ... inode`, the port in hex, `0A` = LISTEN).
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let local_port = columns.get(1)?.rsplit(':').next()?;
            let listening = *columns.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| columns.get(9).map(|inode| inode.to_string()))?
        })
        .collect()
}

impl RuntimeContainer {
    /// Start a container of `kind` with `__OW_API_HOST` = `api_host` (as `docker run` sets it)
    /// and wait until it accepts connections.
    pub async fn start(kind: &RuntimeKind, api_host: &str) -> std::io::Result<RuntimeContainer> {
        let mut last = None;
        // A port picked free may be taken before the server binds it: retry on a new one.
        for _ in 0..3 {
            match Self::try_start(kind, api_host).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no container")))
    }

    #[allow(clippy::disallowed_methods, reason = "the container's PATH is the host's")]
    async fn try_start(kind: &RuntimeKind, api_host: &str) -> std::io::Result<RuntimeContainer> {
        let dir = tempfile::Builder::new().prefix("kappa-container-").tempdir()?;
        let port = free_port()?;
        let mut command = match kind {
            RuntimeKind::ActionLoop { proxy } => Command::new(proxy),
            RuntimeKind::Nodejs { dir: runtime } => {
                let mut c = Command::new("node");
                c.arg("--expose-gc").arg(runtime.join("app.js"));
                c
            }
        };
        let stdout = std::fs::File::create(dir.path().join("stdout.log"))?;
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PORT", port.to_string())
            .env("__OW_API_HOST", api_host)
            // The image's PATH: node needs it for `unzip`; the proxy hands its exec none.
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let pid = child.id().ok_or_else(|| std::io::Error::other("the runtime has no pid"))?;
        loop {
            // Another container started at the same moment may have picked the same free port
            // and bound it first: a connect then reaches that one, and ours exits on
            // EADDRINUSE. Only our own child's listener counts.
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
                && listens_on(pid, port)
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "the runtime exited ({status}): {}",
                    std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
                )));
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill().await;
                return Err(std::io::Error::other("the runtime did not listen within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let http = reqwest::Client::builder().no_proxy().build().map_err(std::io::Error::other)?;
        Ok(RuntimeContainer { child, url, dir, http })
    }

    /// POST `body` to `path`; the status and the raw answer, or `None` after `timeout`.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Option<(u16, Vec<u8>)>, reqwest::Error> {
        let send = async {
            let r = self.http.post(format!("{}{path}", self.url)).json(body).send().await?;
            let status = r.status().as_u16();
            Ok::<_, reqwest::Error>((status, r.bytes().await?.to_vec()))
        };
        match tokio::time::timeout(timeout, send).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// `/init` with `zip`; a [`Outcome::DeveloperError`] when the runtime refuses it.
    pub async fn init(
        &self,
        name: &str,
        zip: &[u8],
        env: &Map<String, Value>,
        timeout: Duration,
    ) -> Outcome {
        let message = init_message(name, zip, env);
        match self.post("/init", &message, timeout).await {
            Ok(Some((200, _))) => Outcome::Success(json!({"ok": true})),
            Ok(Some((status, body))) => match classify(status, &body, usize::MAX) {
                Outcome::DeveloperError(e) => Outcome::DeveloperError(e),
                other => Outcome::DeveloperError(
                    json!({"error": format!("init answered {status}: {}", other.result())}),
                ),
            },
            Ok(None) => Outcome::DeveloperError(
                json!({"error": timeout_message(timeout.as_millis() as u64, true)}),
            ),
            Err(e) => Outcome::DeveloperError(json!({"error": format!("init: {e}")})),
        }
    }

    /// `/run` with the activation `message`, the action's time limit and the result limit.
    pub async fn run(&self, message: &Value, timeout: Duration, max_bytes: usize) -> Outcome {
        match self.post("/run", message, timeout).await {
            Ok(Some((status, body))) => classify(status, &body, max_bytes),
            Ok(None) => Outcome::DeveloperError(
                json!({"error": timeout_message(timeout.as_millis() as u64, false)}),
            ),
            Err(_) => Outcome::DeveloperError(json!({
                "error": "The action did not produce a valid response and exited unexpectedly."
            })),
        }
    }

    /// What the runtime (and the action under it) wrote to stdout and stderr so far.
    pub fn logs(&self) -> (String, String) {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        (read("stdout.log"), read("stderr.log"))
    }

    /// The container's working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The runtime server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Destroy the container (the runtime and what it started), as removing a Docker
    /// container does: every process it started first (the proxy's `exec`), then the runtime.
    pub async fn destroy(mut self) {
        self.kill_descendants();
        let _ = self.child.kill().await;
    }

    /// The processes the runtime started (the proxy's `exec`, and what that started), found
    /// through `/proc/<pid>/stat`'s parent field.
    pub fn descendants(&self) -> Vec<u32> {
        let Some(root) = self.child.id() else { return Vec::new() };
        let table: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                // `pid (comm) state ppid ...`: comm may hold spaces, so split after the `)`.
                let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
                Some((pid, ppid))
            })
            .collect();
        let mut parents = vec![root];
        let mut found = Vec::new();
        while let Some(parent) = parents.pop() {
            for &(pid, ppid) in &table {
                if ppid == parent && pid > 1 && !found.contains(&pid) {
                    found.push(pid);
                    parents.push(pid);
                }
            }
        }
        found
    }

    /// SIGKILL each descendant of the runtime process, one pid at a time; never a process
    /// group.
    fn kill_descendants(&self) {
        for pid in self.descendants() {
            let _ = std::process::Command::new("kill")
                .arg("-s")
                .arg("KILL")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for RuntimeContainer {
    fn drop(&mut self) {
        self.kill_descendants();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_counts_only_for_the_process_that_holds_it() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(listens_on(std::process::id(), port), "this process listens on {port}");
        let mut other = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        let other_pid = other.id();
        assert!(!listens_on(other_pid, port), "another process does not");
        let _ = other.kill();
        let _ = other.wait();
        drop(listener);
        assert!(!listens_on(std::process::id(), port), "nor this one once it closed");
    }

    #[test]
    fn answers_are_read_as_the_invoker_reads_them() {
        let ok = classify(200, br#"{"n":1}"#, 1 << 20);
        assert_eq!(ok, Outcome::Success(json!({"n": 1})));
        assert!(ok.keeps_container());
        let app = classify(200, br#"{"error":"bad"}"#, 1 << 20);
        assert_eq!(app, Outcome::ApplicationError(json!({"error": "bad"})));
        assert!(app.keeps_container(), "an application error keeps the container warm");
        let crashed = classify(400, b"{\"error\":\"command exited\"}\n", 1 << 20);
        assert_eq!(crashed, Outcome::DeveloperError(json!({"error": "command exited"})));
        assert!(!crashed.keeps_container());
        let scalar = classify(200, b"42", 1 << 20);
        assert!(matches!(scalar, Outcome::DeveloperError(_)), "{scalar:?}");
        let big = classify(200, br#"{"pad":"xxxxxxxxxx"}"#, 10);
        assert_eq!(big.result()["error"], truncated_message(20, 10));
    }

    #[test]
    fn the_invokers_messages_carry_the_activation_context() {
        let run = run_message(
            "guest",
            "/guest/kappa/tick",
            "a1",
            1_893_456_000_000,
            Some("u:k"),
            json!({"x": 1}),
        );
        assert_eq!(run["deadline"], "1893456000000", "a string of epoch ms");
        assert_eq!(run["api_key"], "u:k");
        let env = init_env(&run);
        assert_eq!(env["__OW_ACTION_NAME"], "/guest/kappa/tick");
        assert_eq!(env["__OW_DEADLINE"], "1893456000000");
        assert!(!env.contains_key("__OW_VALUE"));
        let without = run_message("guest", "/guest/kappa/push", "a2", 1, None, json!({}));
        assert!(without.get("api_key").is_none(), "only with provide-api-key");
        let init = init_message("push", b"PK", &env);
        assert_eq!(init["value"]["code"], "UEs=");
        assert_eq!(init["value"]["binary"], true);
    }
}
