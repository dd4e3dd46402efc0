//! Cold start under OpenWhisk's real runtimes, each beside a trivial action on the same runtime
//! in the same run: `/init` and the first `/run` of a fresh container, as the invoker does them.
//!
//! - ActionLoop proxy: `build/actions/query.zip` (the static musl `exec`) against a trivial
//!   `exec` (a bash loop answering `{}`), zipped the same way;
//! - nodejs:20: `build/actions/query-wasm.zip` against a one-line zip action
//!   (`exports.main = () => ({})`);
//! - the image flavour on the ActionLoop proxy: `build/actions/launcher.zip`, running the binary
//!   where the image holds it (`build/image/kappa-action`, given as `KAPPA_EXEC`).
//!
//! The first `/run` is the query action's answer to a malformed query (a 400 in the web-action
//! shape), which sets up the Kafka client and the Redis connection first, as every first
//! activation of a container does. Prints figures; asserts nothing.
//!
//! Run with: `eval "$(scripts/openwhisk-tools.sh env)"; scripts/build-actions.sh;`
//! `KAFKA_BROKERS=127.0.0.1:19092 REDIS_URL=redis://127.0.0.1:16379 cargo run -p kappa-deploy --example runtime_bench`
//! (a debug build is enough: the timed work runs in the runtimes' processes)
//! (`KAPPA_BENCH_RUNS`, default 15, containers per case).
#![allow(clippy::disallowed_methods, reason = "a benchmark reads its settings and the clock")]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use kappa_deploy::runtime::{Outcome, RuntimeContainer, RuntimeKind, init_env, run_message};
use serde_json::{Value, json};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

struct Sample {
    start: f64,
    init: f64,
    run: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn cold_start(
    kind: &RuntimeKind,
    zip: &[u8],
    message: &Value,
    expect_status: Option<u64>,
    exec: Option<&Path>,
) -> Sample {
    let t0 = Instant::now();
    let c = RuntimeContainer::start(kind, "http://127.0.0.1:9").await.expect("runtime starts");
    let t1 = Instant::now();
    let mut env = init_env(message);
    if let Some(exec) = exec {
        // The launcher's init-time parameter: where the image would hold the binary.
        env.insert("KAPPA_EXEC".into(), json!(exec.display().to_string()));
    }
    let init = c.init("bench", zip, &env, Duration::from_secs(60)).await;
    let t2 = Instant::now();
    assert!(matches!(init, Outcome::Success(_)), "init: {init:?}");
    let run = c.run(message, Duration::from_secs(60), 1 << 20).await;
    let t3 = Instant::now();
    let Outcome::Success(result) = run else { panic!("run: {run:?}") };
    if let Some(status) = expect_status {
        assert_eq!(result["statusCode"], status, "{result}");
    }
    c.destroy().await;
    Sample { start: ms(t1 - t0), init: ms(t2 - t1), run: ms(t3 - t2) }
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!("{:7.1} {:7.1} {:7.1}", at(0.0), at(0.5), at(0.9))
}

fn zip(stage: &Path, out: &Path, files: &[&str]) {
    let ok = std::process::Command::new("zip")
        .current_dir(stage)
        .args(["-q", "-X"])
        .arg(out)
        .args(files)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "zip");
}

fn report(name: &str, samples: &[Sample]) {
    let col = |f: fn(&Sample) -> f64| stats(samples.iter().map(f).collect());
    println!(
        "{name:<34} | {} | {} | {} | {}",
        col(|s| s.start),
        col(|s| s.init),
        col(|s| s.run),
        col(|s| s.init + s.run)
    );
}

#[tokio::main]
async fn main() {
    let runs: usize =
        std::env::var("KAPPA_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let kafka = std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS");
    let redis = std::env::var("REDIS_URL").expect("REDIS_URL");
    let proxy = RuntimeKind::action_loop().expect("scripts/openwhisk-tools.sh proxy");
    let node = RuntimeKind::nodejs().expect("scripts/openwhisk-tools.sh nodejs");
    let actions = Path::new(ROOT).join("build/actions");
    let native = std::fs::read(actions.join("query.zip")).expect("scripts/build-actions.sh native");
    let wasm =
        std::fs::read(actions.join("query-wasm.zip")).expect("scripts/build-actions.sh wasm");

    // The trivial actions, zipped as the real ones are.
    let tmp = tempfile::tempdir().expect("tempdir");
    let exec = tmp.path().join("exec");
    std::fs::write(&exec, "#!/bin/bash\nwhile IFS= read -r line; do echo '{}' >&3; done\n")
        .expect("exec");
    std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    zip(tmp.path(), &tmp.path().join("trivial.zip"), &["exec"]);
    std::fs::write(tmp.path().join("index.js"), "exports.main = () => ({});\n").expect("index");
    std::fs::write(tmp.path().join("package.json"), r#"{"main":"index.js"}"#).expect("package");
    zip(tmp.path(), &tmp.path().join("trivial-node.zip"), &["index.js", "package.json"]);
    let trivial = std::fs::read(tmp.path().join("trivial.zip")).expect("zip");
    // The same `exec` stored without compression: how much of /init is inflating it.
    let stored_dir = tmp.path().join("stored");
    std::fs::create_dir_all(&stored_dir).expect("mkdir");
    let ok = std::process::Command::new("unzip")
        .arg("-q")
        .arg(actions.join("query.zip"))
        .arg("-d")
        .arg(&stored_dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "unzip");
    let ok = std::process::Command::new("zip")
        .current_dir(&stored_dir)
        .args(["-q", "-X", "-0", "stored.zip", "exec"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "zip -0");
    let stored = std::fs::read(stored_dir.join("stored.zip")).expect("zip");
    let trivial_node = std::fs::read(tmp.path().join("trivial-node.zip")).expect("zip");
    // The image flavour: the binary baked into the image, the zip only the launcher that execs it.
    let launcher =
        std::fs::read(actions.join("launcher.zip")).expect("scripts/build-actions.sh native");
    let baked = Path::new(ROOT).join("build/image/kappa-action");

    let deadline = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
            + 60_000
    };
    let query = || {
        run_message(
            "guest",
            "/guest/kappa/query",
            "bench",
            deadline(),
            Some("u:k"),
            json!({
                "KAFKA_BROKERS": kafka, "REDIS_URL": redis, "KAPPA_API_KEYS": "",
                "__ow_method": "post", "__ow_path": "/v1/queries", "__ow_query": "",
                "__ow_headers": {"content-type": "application/json"}, "__ow_body": "{\"topic\": 5}",
            }),
        )
    };
    let trivial_run =
        || run_message("guest", "/guest/bench/trivial", "bench", deadline(), None, json!({}));

    let mut cases: Vec<(&str, Vec<Sample>)> = vec![
        ("actionloop: query.zip (native)", Vec::new()),
        ("actionloop: trivial bash exec", Vec::new()),
        ("actionloop: query exec, zip -0", Vec::new()),
        ("nodejs:20: query-wasm.zip", Vec::new()),
        ("nodejs:20: one-line zip", Vec::new()),
        ("actionloop: launcher.zip (image)", Vec::new()),
    ];
    // Interleaved, so a burst of load from other work touches every case alike.
    for _ in 0..runs {
        cases[0].1.push(cold_start(&proxy, &native, &query(), Some(400), None).await);
        cases[1].1.push(cold_start(&proxy, &trivial, &trivial_run(), None, None).await);
        cases[2].1.push(cold_start(&proxy, &stored, &query(), Some(400), None).await);
        cases[3].1.push(cold_start(&node, &wasm, &query(), Some(400), None).await);
        cases[4].1.push(cold_start(&node, &trivial_node, &trivial_run(), None, None).await);
        cases[5].1.push(cold_start(&proxy, &launcher, &query(), Some(400), Some(&baked)).await);
    }
    println!(
        "zips: query.zip {} bytes (stored: {}), query-wasm.zip {} bytes; {runs} fresh containers per case",
        native.len(),
        stored.len(),
        wasm.len()
    );
    println!("ms: min / median / p90");
    println!(
        "{:<34} | {:^23} | {:^23} | {:^23} | {:^23}",
        "case", "runtime up", "/init", "first /run", "/init + first /run"
    );
    for (name, samples) in &cases {
        report(name, samples);
    }
}
