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

/// Whether KAFKA_BROKERS and REDIS_URL are set; says "skipped" when not.
fn services_configured() -> bool {
    let set = ["KAFKA_BROKERS", "REDIS_URL"]
        .iter()
        .all(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    if !set {
        eprintln!("skipped: KAFKA_BROKERS / REDIS_URL not set");
    }
    set
}

/// Run a test script under Node.js; its output, and a failure when it exits non-zero.
fn node(script: &str, configure: impl FnOnce(&mut Command)) -> String {
    let mut node = Command::new("node");
    node.arg(Path::new(ROOT).join(script));
    configure(&mut node);
    let out = node.output().expect("run node (is Node.js 20 installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{stdout}");
    stdout
}

#[test]
fn wasm_actions_answer_like_the_native_ones_against_real_services() {
    let root = Path::new(ROOT);
    if !services_configured() {
        return;
    }
    if !root.join("build/actions/query-wasm.zip").exists() {
        eprintln!("skipped: no build/actions/*-wasm.zip (run scripts/build-actions.sh wasm)");
        return;
    }
    let native = root.join("target/deploy/x86_64-unknown-linux-musl/release/kappa-action");
    let stdout = node("actions/hosts/wasm/test/run.mjs", |node| {
        if native.exists() {
            node.env("KAPPA_NATIVE_EXEC", native);
        }
    });
    assert!(stdout.contains(" passed, 0 failed"), "no closing line:\n{stdout}");
}

/// The log and state conformance suites inside the test module, over the JavaScript clients
/// (`actions/hosts/wasm/test/conformance.mjs`).
#[test]
fn wasm_adapters_pass_the_conformance_suites_against_real_services() {
    let root = Path::new(ROOT);
    if !services_configured() {
        return;
    }
    let built = root.join("build/wasm-conformance/kappa_wasm.js").exists()
        && root.join("build/wasm-deps/io.js").exists();
    if !built {
        // The test command builds both; there a missing module is a failure, not a skip.
        assert!(
            std::env::var_os("KAPPA_REQUIRE_REAL_RUNTIMES").is_none(),
            "no build/wasm-conformance (scripts/build-actions.sh wasm-conformance)"
        );
        eprintln!("skipped: run scripts/build-actions.sh wasm and wasm-conformance");
        return;
    }
    let stdout = node("actions/hosts/wasm/test/conformance.mjs", |_| {});
    assert!(stdout.contains("2 passed, 0 failed"), "not both suites passed:\n{stdout}");
}
