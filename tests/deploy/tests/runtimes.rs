//! Every action zip through OpenWhisk's real runtime, driven as the invoker drives it (issue
//! #13): each native zip (`build/actions/<action>.zip`) under the real ActionLoop proxy, each
//! WASM zip (`<action>-wasm.zip`) under the real nodejs:20 runtime: `/init` with the zip as
//! base64 exactly as the invoker sends it, then `/run` with the invoker's full message (`value`,
//! `namespace`, `action_name`, `activation_id`, `deadline`, `api_key` where annotated), against
//! real Kafka and Redis. And the failure paths of a container under the platform harness: a bad
//! init, a crash mid-run, a result over 1 MB, a time limit passed.
//!
//! Needs the runtimes of `scripts/openwhisk-tools.sh`, the zips of `scripts/build-actions.sh`
//! (native: else the debug `kappa-action` zipped as `exec`), `zip`, and for the action contract
//! KAFKA_BROKERS and REDIS_URL; without them the tests say they skipped (and fail under the
//! test command, which sets KAPPA_REQUIRE_REAL_RUNTIMES=1).
#![allow(clippy::disallowed_methods, reason = "tests read their service addresses")]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kappa_core::ports::{LogWriter, NewRecord};
use kappa_deploy::platform::{Limits, PlatformConfig, RunningPlatform};
use kappa_deploy::runtime::{
    Outcome, RuntimeContainer, RuntimeKind, SENTINEL, init_env, required, run_message,
    timeout_message,
};
use kappa_deploy::tools::Recorder;
use kappa_deploy::{ACTIONS, Flavour, PROVIDE_API_KEY};
use kappa_log_kafka::{KafkaLog, KafkaLogConfig};
use serde_json::{Map, Value, json};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const NAMESPACE_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:runtime-test-key";
const WEB_KEY: &str = "web-key";

/// An init-time environment (`/init`'s `env`).
type Env = Map<String, Value>;

fn missing(what: &str) {
    assert!(!required(), "KAPPA_REQUIRE_REAL_RUNTIMES=1 but missing: {what}");
    eprintln!("skipped: missing {what}");
}

fn services() -> Option<(String, String)> {
    let k = std::env::var("KAFKA_BROKERS").ok().filter(|s| !s.is_empty())?;
    let r = std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty())?;
    Some((k, r))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), now_ms())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

/// `zip -q -X OUT FILES...` in `dir`.
fn zip(dir: &Path, out: &Path, files: &[&str]) {
    let ok = std::process::Command::new("zip")
        .current_dir(dir)
        .args(["-q", "-X"])
        .arg(out)
        .args(files)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "zip (apt-get install zip) writes {}", out.display());
}

/// The native zips: `build/actions/<action>.zip` when the build script wrote them, else the
/// debug `kappa-action` (or KAPPA_NATIVE_EXEC) zipped as `exec`, as the build script does.
fn native_zips(keep: &tempfile::TempDir) -> Option<PathBuf> {
    let built = Path::new(ROOT).join("build/actions");
    if ACTIONS.iter().all(|a| built.join(format!("{a}.zip")).is_file()) {
        return Some(built);
    }
    let exec = std::env::var_os("KAPPA_NATIVE_EXEC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target/debug/kappa-action"));
    if !exec.is_file() {
        return None;
    }
    let stage = keep.path().join("stage");
    std::fs::create_dir_all(&stage).ok()?;
    std::fs::copy(&exec, stage.join("exec")).ok()?;
    for a in ACTIONS {
        zip(&stage, &keep.path().join(format!("{a}.zip")), &["exec"]);
    }
    eprintln!("native zips: {} zipped as exec", exec.display());
    Some(keep.path().to_path_buf())
}

/// (runtime, zips directory) of a flavour, or None (skipped) when missing.
/// (runtime, zips directory, more init-time environment) of a flavour, or None (skipped) when
/// missing.
fn setup(flavour: Flavour, keep: &tempfile::TempDir) -> Option<(RuntimeKind, PathBuf, Env)> {
    match flavour {
        Flavour::Image => {
            let Some(proxy) = RuntimeKind::action_loop() else {
                missing("the ActionLoop proxy (scripts/openwhisk-tools.sh proxy)");
                return None;
            };
            // The image's binary where the test can put it: the launcher runs $KAPPA_EXEC
            // (an init-time parameter) instead of /kappa/kappa-action.
            let built = Path::new(ROOT).join("build");
            let exec = built.join("image/kappa-action");
            if !built.join("actions/launcher.zip").is_file() || !exec.is_file() {
                missing(
                    "build/actions/launcher.zip and build/image (scripts/build-actions.sh native)",
                );
                return None;
            }
            let mut env = Env::new();
            env.insert("KAPPA_EXEC".into(), json!(exec.display().to_string()));
            Some((proxy, built.join("actions"), env))
        }
        Flavour::Native | Flavour::Blackbox => {
            let Some(proxy) = RuntimeKind::action_loop() else {
                missing("the ActionLoop proxy (scripts/openwhisk-tools.sh proxy)");
                return None;
            };
            let Some(zips) = native_zips(keep) else {
                missing(
                    "native zips (scripts/build-actions.sh native) or target/debug/kappa-action",
                );
                return None;
            };
            Some((proxy, zips, Env::new()))
        }
        Flavour::Wasm => {
            let Some(node) = RuntimeKind::nodejs() else {
                missing("the nodejs:20 runtime (scripts/openwhisk-tools.sh nodejs)");
                return None;
            };
            let zips = Path::new(ROOT).join("build/actions");
            if !ACTIONS.iter().all(|a| zips.join(format!("{a}-wasm.zip")).is_file()) {
                missing("build/actions/*-wasm.zip (scripts/build-actions.sh wasm)");
                return None;
            }
            Some((node, zips, Env::new()))
        }
    }
}

fn zip_name(flavour: Flavour, action: &str) -> String {
    flavour.artefact(action).rsplit('/').next().unwrap_or_default().to_string()
}

/// The invoker's `/run` message for `action` of package `kappa`.
fn message(action: &str, deadline_ms: i64, value: Value) -> Value {
    let key = PROVIDE_API_KEY.contains(&action).then_some(NAMESPACE_KEY);
    run_message(
        "guest",
        &format!("/guest/kappa/{action}"),
        &unique(action),
        deadline_ms,
        key,
        value,
    )
}

/// The init-time environment of the first message, and `more_env`.
fn env(first: &Value, more_env: &Env) -> Env {
    let mut env = init_env(first);
    env.extend(more_env.clone());
    env
}

/// A cold container of `action` initialised with its zip and the first message's context.
async fn cold(
    kind: &RuntimeKind,
    api_host: &str,
    zip: &Path,
    first: &Value,
    more_env: &Env,
) -> RuntimeContainer {
    let c = RuntimeContainer::start(kind, api_host).await.expect("the runtime starts");
    let code = std::fs::read(zip).expect("zip");
    let outcome = c.init("kappa", &code, &env(first, more_env), Duration::from_secs(60)).await;
    assert_eq!(outcome, Outcome::Success(json!({"ok": true})), "/init of {}", zip.display());
    c
}

fn with(params: &Map<String, Value>, extra: Value) -> Value {
    let mut v = params.clone();
    v.extend(extra.as_object().cloned().unwrap_or_default());
    Value::Object(v)
}

/// A web action's body (a JSON value, or a string holding one).
fn web_body(result: &Value) -> Value {
    match &result["body"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    }
}

fn success(outcome: Outcome, what: &str) -> Value {
    match outcome {
        Outcome::Success(v) => v,
        other => panic!("{what}: expected a success, got {other:?}"),
    }
}

async fn every_action_runs_in_its_real_runtime(flavour: Flavour) {
    let Some((kafka, redis)) = services() else {
        // The tier without services (KAPPA_SKIP_SERVICES=1) skips this one by design.
        eprintln!("skipped: set KAFKA_BROKERS and REDIS_URL (scripts/services.sh up)");
        return;
    };
    let keep = tempfile::tempdir().expect("tempdir");
    let Some((kind, zips, more_env)) = setup(flavour, &keep) else { return };
    let zip = |a: &str| zips.join(zip_name(flavour, a));

    // 50 records on a fresh one-partition topic.
    let log = KafkaLog::connect(KafkaLogConfig { brokers: kafka.clone(), ..Default::default() })
        .expect("kafka");
    let topic = unique("kappa-runtime");
    log.ensure_topic(&kappa_core::Topic::new(&topic).expect("a valid name"), 1)
        .await
        .expect("topic");
    let records: Vec<NewRecord> = (0..50)
        .map(|i| NewRecord {
            key: None,
            value: serde_json::to_vec(&json!({"n": i % 5, "text": format!("record {i}")}))
                .expect("json"),
            timestamp: 1_750_000_000_000,
        })
        .collect();
    log.append(&topic, 0, &records).await.expect("append");

    // The platform's API host: chain links land here, with the key they authenticate with.
    let api = Recorder::start().await.expect("recorder");
    let api_host = format!("http://{}", api.addr);
    let params: Map<String, Value> = json!({
        "KAFKA_BROKERS": kafka, "REDIS_URL": redis, "KAPPA_API_KEYS": WEB_KEY,
        "KAPPA_CONFIG": "", "KAPPA_LINK": "",
    })
    .as_object()
    .cloned()
    .expect("object");
    let deadline = || now_ms() + 60_000;

    // A bad init: the real zip, cut in half.
    let code = std::fs::read(zip("query")).expect("zip");
    let c = RuntimeContainer::start(&kind, &api_host).await.expect("runtime");
    let first = message("query", deadline(), json!({}));
    let bad = c
        .init("kappa", &code[..code.len() / 2], &env(&first, &more_env), Duration::from_secs(60))
        .await;
    assert!(
        matches!(bad, Outcome::DeveloperError(_)),
        "{flavour:?}: a corrupt zip fails /init: {bad:?}"
    );
    c.destroy().await;

    // query: POST /v1/queries through the raw-http web action.
    let body = json!({"topic": topic, "query": {"match_all": {}},
                      "aggs": {"n": {"terms": {"field": "n", "size": 10}}}});
    let web = |method: &str, path: &str, body: &str| {
        with(
            &params,
            json!({
                "__ow_method": method, "__ow_path": path, "__ow_query": "", "__ow_body": body,
                "__ow_headers": {"authorization": format!("Bearer {WEB_KEY}"), "content-type": "application/json"},
            }),
        )
    };
    let m = message("query", deadline(), web("post", "/v1/queries", &body.to_string()));
    let query = cold(&kind, &api_host, &zip("query"), &m, &more_env).await;
    let created = success(query.run(&m, Duration::from_secs(60), 1 << 20).await, "query");
    assert_eq!(created["statusCode"], 201, "{flavour:?}: {created}");
    let id = web_body(&created)["id"].as_str().expect("id").to_string();
    // A malformed query: a 400 in the web-action shape, and the container stays warm.
    let m = message("query", deadline(), web("post", "/v1/queries", r#"{"topic": 5}"#));
    let refused = success(query.run(&m, Duration::from_secs(60), 1 << 20).await, "bad query");
    assert_eq!(refused["statusCode"], 400, "{flavour:?}: {refused}");
    // The real runtime refuses a second /init, as the invoker expects.
    let again = query
        .post(
            "/init",
            &json!({"value": {"main": "main", "code": "x", "binary": false}}),
            Duration::from_secs(10),
        )
        .await
        .expect("post")
        .expect("answer");
    assert_eq!(again.0, 403, "{flavour:?}: a second /init is refused");
    // One end-of-activation sentinel per run on stdout and stderr.
    let (out, err) = query.logs();
    assert_eq!(
        (out.matches(SENTINEL).count(), err.matches(SENTINEL).count()),
        (2, 2),
        "{flavour:?}"
    );
    query.destroy().await;

    // The chain links the query fired: through __OW_API_HOST, with the activation's api_key.
    // One for the partition's records (a closed range to replay), one for the live tail.
    let links: Vec<_> =
        api.calls().into_iter().filter(|c| c.path.ends_with("/actions/kappa/process")).collect();
    assert_eq!(links.len(), 2, "{flavour:?}: the replay's link and the tail's: {links:?}");
    let basic = base64::engine::general_purpose::STANDARD.encode(NAMESPACE_KEY);
    for link in &links {
        assert_eq!(link.authorization.as_deref(), Some(format!("Basic {basic}").as_str()));
        assert_eq!(link.body["query"], id.as_str(), "{}", link.body);
    }
    let tail = serde_json::to_value(kappa_core::ports::Segment::TAIL).expect("json");
    assert_eq!(links.iter().filter(|l| l.body["segment"] == tail).count(), 1, "{links:?}");
    let event =
        links.iter().find(|l| l.body["segment"] != tail).expect("the replay's").body.clone();
    assert_eq!(event["segment"]["end"], json!(50), "{event}");

    // process with its deadline passed: it stops at once and reads nothing; then, warm, in time.
    let late = message("process", now_ms() - 1_000, with(&params, event.clone()));
    let process = cold(&kind, &api_host, &zip("process"), &late, &more_env).await;
    let stopped =
        success(process.run(&late, Duration::from_secs(60), 1 << 20).await, "late process");
    assert_eq!(
        (&stopped["stopped"], &stopped["records"]),
        (&json!("deadline"), &json!(0)),
        "{flavour:?}: {stopped}"
    );
    let m = message("process", deadline(), with(&params, event.clone()));
    let folded = success(process.run(&m, Duration::from_secs(60), 1 << 20).await, "process");
    assert_eq!(
        (&folded["records"], &folded["next_offset"], &folded["committed"]),
        (&json!(50), &json!(50), &json!(true)),
        "{flavour:?}: {folded}"
    );
    process.destroy().await;

    if matches!(flavour, Flavour::Native) {
        // A crash mid-run of the real exec: its Redis never answers, so the activation hangs
        // until the exec is killed; the proxy answers "command exited" (a developer error).
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let silent_url = format!("redis://{}", silent.local_addr().expect("addr"));
        let held = std::thread::spawn(move || {
            let conns: Vec<_> = silent.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(20));
            drop(conns);
        });
        let mut hung = params.clone();
        hung.insert("REDIS_URL".into(), json!(silent_url));
        let m = message("process", deadline(), with(&hung, event.clone()));
        let c = RuntimeContainer::start(&kind, &api_host).await.expect("runtime");
        let code = std::fs::read(zip("process")).expect("zip");
        let init = c.init("kappa", &code, &init_env(&m), Duration::from_secs(60)).await;
        assert!(matches!(init, Outcome::Success(_)), "{init:?}");
        let run = c.run(&m, Duration::from_secs(60), 1 << 20);
        let kill = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let execs = c.descendants();
            assert_eq!(execs.len(), 1, "the proxy runs one exec: {execs:?}");
            let killed = std::process::Command::new("kill")
                .args(["-s", "KILL", &execs[0].to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(killed, "kill the exec");
        };
        let (outcome, ()) = tokio::join!(run, kill);
        assert_eq!(outcome, Outcome::DeveloperError(json!({"error": "command exited"})));
        c.destroy().await;
        drop(held);
    }

    // status: GET /v1/queries/{id} answers the folded result.
    let m = message("status", deadline(), web("get", &format!("/v1/queries/{id}"), ""));
    assert!(m.get("api_key").is_none(), "status is not annotated provide-api-key");
    let status = cold(&kind, &api_host, &zip("status"), &m, &more_env).await;
    let answer = success(status.run(&m, Duration::from_secs(60), 1 << 20).await, "status");
    assert_eq!(answer["statusCode"], 200, "{flavour:?}: {answer}");
    let answer = web_body(&answer);
    assert_eq!(answer["result"]["hits"]["total"]["value"], 50, "{flavour:?}: {answer}");
    status.destroy().await;

    // push: delivers the version (no webhooks, no gateway configured).
    let m = message(
        "push",
        deadline(),
        with(&params, json!({"query": id, "version": folded["version"]})),
    );
    let push = cold(&kind, &api_host, &zip("push"), &m, &more_env).await;
    let pushed = success(push.run(&m, Duration::from_secs(60), 1 << 20).await, "push");
    assert!(pushed.get("error").is_none(), "{flavour:?}: {pushed}");
    push.destroy().await;

    // tick, as the alarm fires it.
    let m = message("tick", deadline(), with(&params, json!({"tick": true})));
    let tick = cold(&kind, &api_host, &zip("tick"), &m, &more_env).await;
    let ticked = success(tick.run(&m, Duration::from_secs(60), 1 << 20).await, "tick");
    assert!(ticked["queries"].as_u64().is_some_and(|n| n >= 1), "{flavour:?}: {ticked}");
    tick.destroy().await;
    api.stop();
}

#[test]
fn every_native_zip_runs_under_the_real_actionloop_proxy() {
    runtime().block_on(every_action_runs_in_its_real_runtime(Flavour::Native));
}

/// The image flavour: the launcher zip, with the binary where the image would hold it.
#[test]
fn every_action_runs_from_the_launcher_zip_under_the_real_actionloop_proxy() {
    runtime().block_on(every_action_runs_in_its_real_runtime(Flavour::Image));
}

#[test]
fn every_wasm_zip_runs_under_the_real_nodejs_runtime() {
    runtime().block_on(every_action_runs_in_its_real_runtime(Flavour::Wasm));
}

// ------------------------------------------------------------------------------------------
// Failure paths, under the platform harness with the real runtimes as containers: actions
// written to fail, in the place of four of the package's actions.

/// Native stand-ins, bash `exec`s (the proxy gives them no PATH: builtins and absolute paths).
fn native_failing(dir: &Path) {
    let exec = |name: &str, script: &str| {
        let stage = dir.join(format!("stage-{name}"));
        std::fs::create_dir_all(&stage).expect("stage");
        let path = stage.join("exec");
        std::fs::write(&path, format!("#!/bin/bash\n{script}")).expect("exec");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        zip(&stage, &dir.join(format!("{name}.zip")), &["exec"]);
    };
    // push: answers {"n": activations so far}, and exits mid-run when asked to crash.
    exec(
        "push",
        "n=0\nwhile IFS= read -r line; do\n  n=$((n + 1))\n  [[ $line == *'\"crash\":true'* ]] && exit 3\n  printf '{\"n\":%d}\\n' \"$n\" >&3\ndone\n",
    );
    // tick: a result of 1.1 MB.
    exec(
        "tick",
        "while IFS= read -r line; do\n  printf -v pad '%*s' 1100000 ''\n  printf '{\"pad\":\"%s\"}\\n' \"$pad\" >&3\ndone\n",
    );
    // status: outlives its time limit.
    exec("status", "while IFS= read -r line; do\n  /bin/sleep 30\n  echo '{}' >&3\ndone\n");
    exec("query", "while IFS= read -r line; do echo '{}' >&3; done\n");
    // process: a zip cut in half.
    let whole = std::fs::read(dir.join("push.zip")).expect("zip");
    std::fs::write(dir.join("process.zip"), &whole[..whole.len() / 2]).expect("corrupt");
}

/// Node.js stand-ins: `index.js` + `package.json` zips.
fn nodejs_failing(dir: &Path) {
    let action = |name: &str, main: &str| {
        let stage = dir.join(format!("stage-{name}"));
        std::fs::create_dir_all(&stage).expect("stage");
        std::fs::write(stage.join("index.js"), format!("let n = 0;\nexports.main = {main};\n"))
            .expect("index.js");
        std::fs::write(stage.join("package.json"), r#"{"name":"failing","main":"index.js"}"#)
            .expect("package.json");
        zip(&stage, &dir.join(format!("{name}-wasm.zip")), &["index.js", "package.json"]);
    };
    action("push", "(p) => { n += 1; if (p.crash) process.exit(3); return { n }; }");
    action("tick", "() => ({ pad: ' '.repeat(1100000) })");
    action("status", "() => new Promise((r) => setTimeout(() => r({}), 30000))");
    action("query", "() => ({})");
    let whole = std::fs::read(dir.join("push-wasm.zip")).expect("zip");
    std::fs::write(dir.join("process-wasm.zip"), &whole[..whole.len() / 2]).expect("corrupt");
}

async fn failure_paths(flavour: Flavour) {
    let kind = match flavour {
        Flavour::Wasm => RuntimeKind::nodejs(),
        _ => RuntimeKind::action_loop(),
    };
    let Some(kind) = kind else {
        return missing("the real runtimes (scripts/openwhisk-tools.sh)");
    };
    let zips = tempfile::tempdir().expect("tempdir");
    match flavour {
        Flavour::Wasm => nodejs_failing(zips.path()),
        _ => native_failing(zips.path()),
    }
    let file = if flavour == Flavour::Wasm { "manifest.wasm.yaml" } else { "manifest.yaml" };
    // status gets a 1 s time limit, so the test does not wait for the default 30 s.
    let manifest = std::fs::read_to_string(Path::new(ROOT).join(file)).expect("manifest").replacen(
        "timeout: 30000",
        "timeout: 1000",
        1,
    );
    let platform = RunningPlatform::start(PlatformConfig {
        manifest,
        flavour,
        runtime: kind,
        zips: zips.path().to_path_buf(),
        package_params: Map::new(),
        api_key: NAMESPACE_KEY.into(),
        limits: Limits::default(),
    })
    .await
    .expect("platform");
    let http = reqwest::Client::new();
    let (user, key) = NAMESPACE_KEY.split_once(':').expect("uuid:key");
    let invoke = |action: &str, params: Value| {
        let req = http
            .post(format!(
                "{}/api/v1/namespaces/_/actions/kappa/{action}?blocking=true",
                platform.api_host()
            ))
            .basic_auth(user, Some(key))
            .json(&params);
        async move {
            let r = req.send().await.expect("invoke");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("json"))
        }
    };
    let error = |v: &Value| v["error"].as_str().unwrap_or_default().to_string();

    // A bad init: the activation fails, the container is destroyed, the next one starts cold.
    let (status, result) = invoke("process", json!({})).await;
    assert_eq!(status, 502, "{flavour:?}: {result}");
    assert!(!error(&result).is_empty(), "{flavour:?}: {result}");
    let (status, _) = invoke("process", json!({})).await;
    assert_eq!(status, 502);
    let s = platform.stats();
    assert_eq!((s.containers_started, s.containers_destroyed), (2, 2), "{flavour:?}: {s:?}");

    // A crash mid-run: a developer error; the warm container is gone, a new one serves next.
    assert_eq!(invoke("push", json!({})).await, (200, json!({"n": 1})), "{flavour:?}");
    assert_eq!(invoke("push", json!({})).await, (200, json!({"n": 2})), "{flavour:?}: warm");
    let (status, result) = invoke("push", json!({"crash": true})).await;
    assert_eq!(status, 502, "{flavour:?}: {result}");
    let crashed = error(&result);
    let expected = match flavour {
        // The connection drops with the process: the invoker's abnormal-run message.
        Flavour::Wasm => "The action did not produce a valid response and exited unexpectedly.",
        // The proxy's own answer when its exec exits during /run (runHandler.go).
        _ => "command exited",
    };
    assert_eq!(crashed, expected, "{flavour:?}");
    assert_eq!(
        invoke("push", json!({})).await,
        (200, json!({"n": 1})),
        "{flavour:?}: a new container"
    );

    // A result over 1 MB: refused with OpenWhisk's message, the container destroyed.
    let (status, result) = invoke("tick", json!({})).await;
    assert_eq!(status, 502, "{flavour:?}");
    assert!(
        error(&result)
            .starts_with("The action produced a response that exceeded the allowed length: ")
            && error(&result).ends_with(" > 1048576 bytes."),
        "{flavour:?}: {result}"
    );

    // The time limit: the activation fails at the limit, not when the action would finish.
    let start = Instant::now();
    let (status, result) = invoke("status", json!({})).await;
    assert_eq!((status, error(&result)), (502, timeout_message(1000, false)), "{flavour:?}");
    assert!(start.elapsed() < Duration::from_secs(10), "{flavour:?}: {:?}", start.elapsed());

    let s = platform.stats();
    assert_eq!(s.oversize_results, 1, "{flavour:?}: {s:?}");
    // Destroyed: two bad inits, the crash, the oversize result, the timeout.
    assert_eq!(s.containers_destroyed, 5, "{flavour:?}: {s:?}");
    platform.stop().await;
}

#[test]
fn native_container_failures_are_read_as_the_invoker_reads_them() {
    runtime().block_on(failure_paths(Flavour::Native));
}

#[test]
fn nodejs_container_failures_are_read_as_the_invoker_reads_them() {
    runtime().block_on(failure_paths(Flavour::Wasm));
}
