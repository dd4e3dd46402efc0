//! Runs the end-to-end test of the WASM action zips (`actions/hosts/wasm/test/run.mjs`) against real
//! Kafka and Redis: query → process until no link is left → status, the answer checked against
//! counts computed from the records and against the native actions on the same records.
//!
//! Needs the zips (`scripts/build-actions.sh wasm`), `node`, and KAFKA_BROKERS / REDIS_URL
//! (`eval "$(scripts/services.sh up)"`); without them it prints why it is skipped. The native
//! comparison uses the static `exec` when `scripts/build-actions.sh native` has built it.

use std::path::Path;
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../..");

#[test]
fn wasm_actions_answer_like_the_native_ones_against_real_services() {
    let root = Path::new(ROOT);
    let services = ["KAFKA_BROKERS", "REDIS_URL"]
        .iter()
        .all(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    if !services {
        eprintln!("skipped: KAFKA_BROKERS / REDIS_URL not set");
        return;
    }
    if !root.join("build/actions/query-wasm.zip").exists() {
        eprintln!("skipped: no build/actions/*-wasm.zip (run scripts/build-actions.sh wasm)");
        return;
    }
    let mut node = Command::new("node");
    node.arg(root.join("actions/hosts/wasm/test/run.mjs"));
    let native = root.join("target/deploy/x86_64-unknown-linux-musl/release/kappa-action");
    if native.exists() {
        node.env("KAPPA_NATIVE_EXEC", native);
    }
    let out = node.output().expect("run node (is Node.js 20 installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "actions/hosts/wasm/test/run.mjs failed:\n{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "no closing line:\n{stdout}");
}
