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

/// Time zones come from the JavaScript engine's `Intl` inside the module and from the compiled-in
/// tz database natively: zoned queries over seven years of records (every transition in between)
/// give the same results, bucket for bucket.
#[test]
fn zoned_queries_answer_in_wasm_as_natively() {
    let root = Path::new(ROOT);
    if !root.join("build/wasm/kappa_wasm.js").exists() {
        assert!(
            std::env::var_os("KAPPA_REQUIRE_REAL_RUNTIMES").is_none(),
            "no build/wasm (scripts/build-actions.sh wasm)"
        );
        eprintln!("skipped: no build/wasm (scripts/build-actions.sh wasm)");
        return;
    }
    // One record every 7 h 13 min 20 s from 2019-01-01: every offset transition of 2019–2026
    // falls between two records, and the hours of day drift through all of them.
    let records: String = (0..9_000i64)
        .map(|i| format!("{{\"ts\":{},\"n\":{i}}}\n", 1_546_300_800_000 + i * 26_000_000))
        .collect();
    let zones = [
        "Europe/London",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "America/Sao_Paulo",
        "Pacific/Chatham",
        "Europe/Paris",
    ];
    let mut queries = Vec::new();
    for zone in zones {
        let histogram = |interval: serde_json::Value| {
            let mut h = serde_json::json!({"field": "ts", "time_zone": zone,
                "format": "yyyy-MM-dd'T'HH:mm:ssXXX", "min_doc_count": 0});
            h.as_object_mut().expect("an object").extend(
                interval
                    .as_object()
                    .expect("an object")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            serde_json::json!({"topic": "t", "size": 0, "aggs": {"h": {"date_histogram": h}}})
        };
        queries.push(histogram(serde_json::json!({"calendar_interval": "day"})));
        queries.push(histogram(serde_json::json!({"calendar_interval": "week"})));
        queries.push(histogram(serde_json::json!({"calendar_interval": "month"})));
        queries.push(histogram(serde_json::json!({"fixed_interval": "3h"})));
        queries.push(histogram(serde_json::json!({"fixed_interval": "90m", "offset": "+17m"})));
        queries.push(serde_json::json!({"topic": "t", "size": 0,
            "query": {"range": {"ts": {"gte": "2024-03-31T00:00:00", "lt": "2024-11-04T00:00:00",
                "time_zone": zone}}},
            "aggs": {"r": {"date_range": {"field": "ts", "time_zone": zone,
                "format": "yyyy-MM-dd HH:mm", "ranges": [{"to": "2021-03-28 02:30"},
                {"from": "2021-03-28 02:30", "to": "2021-10-31 01:30"}, {"from": "2021-10-31 01:30"}]}}}}));
    }
    let native: Vec<serde_json::Value> = queries
        .iter()
        .map(|q| {
            let lines = kappa_wasm::bench::Lines::new(records.clone().into_bytes());
            let (plan, state) = lines.fold(&q.to_string()).expect("a valid query natively");
            let f = kappa_wasm::bench::summary(&plan, &state).expect("renders");
            serde_json::json!({"records": f.records, "matched": f.matched, "result_sha1": f.result_sha1})
        })
        .collect();
    // The zone matters (6 queries per zone): daily buckets differ from one zone to the next.
    let daily: std::collections::HashSet<_> =
        native.iter().step_by(6).map(|s| s["result_sha1"].clone()).collect();
    assert_eq!(daily.len(), zones.len(), "the zones gave the same daily buckets");
    let wasm = wasm_folds(&records, &queries);
    assert_eq!(wasm.len(), queries.len());
    for ((query, native), wasm) in queries.iter().zip(&native).zip(&wasm) {
        assert_eq!(native, wasm, "WASM (Intl) and native (tz database) differ for {query}");
    }
    // Names are case-sensitive on both, as Java's ZoneId: `Intl` alone would take any case.
    let zoned = |zone: &str| {
        serde_json::json!({"topic": "t", "size": 0, "aggs": {"h": {"date_histogram":
            {"field": "ts", "calendar_interval": "month", "time_zone": zone}}}})
    };
    let cased = [zoned("Europe/London"), zoned("europe/london"), zoned("EUROPE/LONDON")];
    let answers = wasm_folds(&records, &cased);
    assert!(answers[0].get("error").is_none(), "{}", answers[0]);
    for (query, answer) in cased.iter().zip(&answers).skip(1) {
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("unknown time_zone"), "WASM accepted {query}: {answer}");
        let natively =
            kappa_wasm::bench::Lines::new(records.clone().into_bytes()).fold(&query.to_string());
        assert!(natively.is_err(), "native accepted {query}");
    }
}

/// Fold `records` with each of `queries` in the shipped module (`test/fold_queries.mjs`): one
/// summary, or `{"error"}`, per query.
fn wasm_folds(records: &str, queries: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let input = serde_json::json!({"records": records, "queries": queries}).to_string();
    let mut child = Command::new("node")
        .arg(Path::new(ROOT).join("actions/hosts/wasm/test/fold_queries.mjs"))
        .arg(Path::new(ROOT).join("build/wasm"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run node");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes())
        .expect("write the input");
    let out = child.wait_with_output().expect("node finishes");
    assert!(out.status.success(), "fold_queries.mjs failed");
    let answers: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(answers.len(), queries.len());
    answers
}
