//! Cold start of the native action (figures for BENCHMARKS.md): from starting the `exec` to its
//! first result on fd 3, as a fresh ActionLoop container sees it, for the status action (connects
//! to Redis and reads) and the query action (a 400 before any connection), then one warm run.
//!
//! Run with: `cargo build --release -p kappa-runtime --bins --examples &&
//! eval "$(scripts/services.sh up)" && ./target/release/examples/cold_start [EXEC]`
//! (EXEC defaults to the static musl build of `scripts/build-actions.sh native` when it exists,
//! else target/release/kappa-action). Prints min/median/p90 over 30 cold starts each.
#![allow(clippy::disallowed_methods, reason = "a benchmark reads the wall clock and its knobs")]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

fn activation(action: &str, value: Value) -> String {
    json!({"value": value, "namespace": "guest", "action_name": format!("/guest/kappa/{action}"),
           "action_version": "0.0.1", "activation_id": "a1", "transaction_id": "t1",
           "deadline": "4102444800000", "api_key": "u:k"})
    .to_string()
}

/// Milliseconds from spawning `exe` to the first result line, and to the second (warm) one.
fn cold_start(exe: &str, kafka: &str, redis: &str, line: &str) -> (f64, f64) {
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("exec '{exe}' 3>&1 1>/dev/null"))
        .env_clear()
        .env("KAFKA_BROKERS", kafka)
        .env("REDIS_URL", redis)
        .env("__OW_API_HOST", "http://127.0.0.1:9")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("exec runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut results = BufReader::new(child.stdout.take().expect("fd 3"));
    let mut out = String::new();
    writeln!(stdin, "{line}").expect("write");
    results.read_line(&mut out).expect("result");
    let cold = started.elapsed().as_secs_f64() * 1e3;
    let warm_start = Instant::now();
    writeln!(stdin, "{line}").expect("write");
    out.clear();
    results.read_line(&mut out).expect("result");
    let warm = warm_start.elapsed().as_secs_f64() * 1e3;
    drop(stdin);
    let _ = child.wait();
    (cold, warm)
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!("min {:.1} ms, median {:.1} ms, p90 {:.1} ms", at(0.0), at(0.5), at(0.9))
}

fn main() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.."));
    let musl = root.join("target/deploy/x86_64-unknown-linux-musl/release/kappa-action");
    let exe = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        if musl.exists() { musl } else { root.join("target/release/kappa-action") }
    });
    let kafka = std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS (scripts/services.sh up)");
    let redis = std::env::var("REDIS_URL").expect("REDIS_URL (scripts/services.sh up)");
    let exe = exe.to_string_lossy().to_string();
    println!("exec: {exe}");
    let cases = [
        (
            "status (connects to Redis, reads)",
            activation(
                "status",
                json!({"__ow_method": "get", "__ow_path": "/v1/queries/q_00", "__ow_headers": {}}),
            ),
        ),
        (
            "query (invalid body: 400)",
            activation(
                "query",
                json!({"__ow_method": "post", "__ow_path": "", "__ow_headers": {},
                       "__ow_body": r#"{"topic":"t","aggs":{"x":{"terms":{"field":"a","sizee":1}}}}"#}),
            ),
        ),
    ];
    for (name, line) in cases {
        let runs: Vec<(f64, f64)> =
            (0..30).map(|_| cold_start(&exe, &kafka, &redis, &line)).collect();
        println!(
            "{name}: cold (start + first result) {}",
            summary(runs.iter().map(|r| r.0).collect())
        );
        println!(
            "{name}: warm (second activation)   {}",
            summary(runs.iter().map(|r| r.1).collect())
        );
    }
}
