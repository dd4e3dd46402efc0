//! The `kappa-action` binary driven exactly as the ActionLoop proxy drives an `exec`: one
//! activation per stdin line (the invoker's full `/run` message), one JSON result line on fd 3,
//! several activations in one warm process, `{"error"}` results instead of crashes.
//!
//! This is the exec's own contract, so the harness is bash wiring fd 3 to a pipe, as the proxy's
//! `ExtraFiles` does; the zips under the real proxy (built from `../shared/vendor` by
//! `scripts/openwhisk-tools.sh`) are `tests/deploy/tests/runtimes.rs` and `platform.rs`. Needs
//! `KAFKA_BROKERS` and `REDIS_URL` (the adapters connect at the first activation).
#![allow(clippy::disallowed_methods, reason = "tests read their service addresses")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn activation(action: &str, value: Value) -> String {
    json!({"value": value, "namespace": "guest", "action_name": format!("/guest/kappa/{action}"), "action_version": "0.0.1",
           "activation_id": "a1", "transaction_id": "t1", "deadline": "4102444800000", "api_key": "u:k"})
    .to_string()
}

#[test]
fn activations_in_one_warm_container_each_get_one_result_line_on_fd3() {
    let (Ok(kafka), Ok(redis)) = (std::env::var("KAFKA_BROKERS"), std::env::var("REDIS_URL"))
    else {
        println!("skipped: KAFKA_BROKERS and REDIS_URL not set");
        return;
    };
    let exe = env!("CARGO_BIN_EXE_kappa-action");
    // fd 3 → our pipe, stdout (logs) → /dev/null, as the proxy separates them.
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
        .expect("runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut results = BufReader::new(child.stdout.take().expect("fd 3"));
    let mut call = |line: String| -> Value {
        writeln!(stdin, "{line}").expect("write");
        stdin.flush().expect("flush");
        let mut out = String::new();
        results.read_line(&mut out).expect("one result line");
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("result is not JSON ({e}): {out}"))
    };

    let bad_query = call(activation(
        "query",
        json!({"__ow_method": "post", "__ow_path": "", "__ow_headers": {}, "__ow_body": r#"{"topic":"t","aggs":{"x":{"terms":{"field":"a","sizee":1}}}}"#}),
    ));
    assert_eq!(bad_query["statusCode"], json!(400), "{bad_query}");
    assert_eq!(bad_query["body"]["error"]["path"], json!("aggs.x.terms"));

    let missing = call(activation(
        "status",
        json!({"__ow_method": "get", "__ow_path": "/v1/queries/q_00", "__ow_headers": {}}),
    ));
    assert_eq!(missing["statusCode"], json!(404));
    assert_eq!(missing["body"]["error"]["type"], json!("resource_not_found_exception"));

    let no_topic = call(activation(
        "query",
        json!({"__ow_method": "post", "__ow_path": "", "__ow_headers": {}, "__ow_body": r#"{"topic":"kappa-no-such-topic-xyz"}"#}),
    ));
    assert_eq!(no_topic["statusCode"], json!(404), "{no_topic}");
    assert_eq!(no_topic["body"]["error"]["type"], json!("index_not_found_exception"));

    let unknown = call(activation(
        "process",
        json!({"query": "q_missing", "segment": {"partition": 0, "start": 0, "end": null}}),
    ));
    assert_eq!(unknown["error"]["retryable"], json!(false), "{unknown}");

    let malformed = call(activation("process", json!({"nope": 1})));
    assert!(
        malformed["error"]["message"].as_str().is_some_and(|m| m.contains("bad event")),
        "{malformed}"
    );

    let not_json = call("this is not an activation".to_string());
    assert!(not_json["error"].is_string(), "{not_json}");

    let no_deadline = call(json!({"value": {}}).to_string());
    assert!(no_deadline["error"].as_str().is_some_and(|m| m.contains("deadline")), "{no_deadline}");

    // Still warm after all that: it answers again, then exits cleanly when stdin closes.
    let again = call(activation(
        "status",
        json!({"__ow_method": "get", "__ow_path": "/v1/queries/q_01", "__ow_headers": {}}),
    ));
    assert_eq!(again["statusCode"], json!(404));
    drop(stdin);
    assert!(child.wait().expect("exits").success());
}
