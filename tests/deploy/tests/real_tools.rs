//! The descriptors through the real deployment tools (issue #13): `manifest.yaml` and
//! `manifest.wasm.yaml` through OpenWhisk's `wskdeploy` (`--preview`, then a deployment against
//! a recording loopback controller), `serverless.yml` through Serverless Framework v3 with
//! serverless-openwhisk (`serverless package`). Each checks what the tool would create: every
//! action with its kind, code, web export and raw-HTTP flags, `provide-api-key` and limits; the
//! triggers with their feeds; the rules; the API routes.
//!
//! Needs the tools of `scripts/openwhisk-tools.sh` (KAPPA_WSKDEPLOY, KAPPA_SERVERLESS, else
//! `.cache/openwhisk`) and `zip`; without them the tests say they skipped (and fail under the
//! test command, which sets KAPPA_REQUIRE_REAL_RUNTIMES=1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use kappa_deploy::runtime::{required, tool};
use kappa_deploy::tools::{Recorder, parse_preview, parse_serverless, run_tool, wskprops};
use kappa_deploy::{ACTIONS, EXAMPLE_IMAGE, Flavour, blackbox_variant, image_variant};
use serde_json::{Value, json};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Each action's limits (timeout ms, memory MB), the same in every descriptor.
const LIMITS: [(&str, i64, i64); 5] = [
    ("query", 60_000, 256),
    ("status", 30_000, 128),
    ("process", 300_000, 512),
    ("push", 60_000, 128),
    ("tick", 120_000, 256),
];

/// The settings the deployer's environment supplies.
const ENV: [(&str, &str); 6] = [
    ("KAFKA_BROKERS", "kafka-1:9092,kafka-2:9092"),
    ("REDIS_URL", "redis://redis:6379"),
    ("KAPPA_TOPIC", "tweets"),
    ("KAPPA_API_KEYS", "web-key"),
    ("KAPPA_CONFIG", "{}"),
    ("KAPPA_LINK", "invoke"),
];

fn found(var: &str, rel: &str, what: &str) -> Option<PathBuf> {
    let path = tool(var, rel);
    if path.is_file() {
        return Some(path);
    }
    assert!(!required(), "KAPPA_REQUIRE_REAL_RUNTIMES=1 but no {what} at {}", path.display());
    eprintln!("skipped: no {what} at {} (scripts/openwhisk-tools.sh)", path.display());
    None
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

fn placeholder(artefact: &str) -> Vec<u8> {
    format!("kappa {artefact}\n").into_bytes()
}

/// A project directory holding `manifest` and a distinct placeholder artefact per action.
fn project(manifest: &str, flavour: Flavour) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("manifest.yaml"), manifest).expect("manifest");
    std::fs::create_dir_all(dir.path().join("build/actions")).expect("mkdir");
    for a in ACTIONS {
        let artefact = flavour.artefact(a);
        std::fs::write(dir.path().join(&artefact), placeholder(&artefact)).expect("artefact");
    }
    dir
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).expect("descriptor")
}

/// The manifests wskdeploy deploys: native, WASM, and the blackbox and image variants
/// `scripts/deploy.sh blackbox` / `image` write from the native one.
fn manifests() -> Vec<(&'static str, String, Flavour)> {
    vec![
        ("manifest.yaml", read("manifest.yaml"), Flavour::Native),
        ("manifest.wasm.yaml", read("manifest.wasm.yaml"), Flavour::Wasm),
        ("manifest.yaml (blackbox)", blackbox_variant(&read("manifest.yaml")), Flavour::Blackbox),
        (
            "manifest.yaml (image)",
            image_variant(&read("manifest.yaml"), EXAMPLE_IMAGE),
            Flavour::Image,
        ),
    ]
}

async fn wskdeploy(
    bin: &Path,
    manifest: &str,
    flavour: Flavour,
    preview: bool,
) -> (kappa_deploy::tools::Run, Vec<kappa_deploy::tools::Call>) {
    let recorder = Recorder::start().await.expect("recorder");
    let dir = project(manifest, flavour);
    let props = wskprops(dir.path(), &format!("http://{}", recorder.addr)).expect("wskprops");
    let props = props.to_str().expect("utf-8 path");
    let mut env: Vec<(&str, &str)> = ENV.to_vec();
    env.push(("WSK_CONFIG_FILE", props));
    let mut args = vec!["-m", "manifest.yaml"];
    if preview {
        args.insert(0, "--preview");
    }
    let run = run_tool(bin, &args, dir.path(), &env, Duration::from_secs(120)).await.expect("run");
    let calls = recorder.calls();
    recorder.stop();
    (run, calls)
}

#[test]
fn both_manifests_pass_the_real_wskdeploy_preview_with_the_planned_entities() {
    let Some(bin) = found("KAPPA_WSKDEPLOY", "bin/wskdeploy", "wskdeploy") else { return };
    runtime().block_on(async {
        for (file, text, flavour) in manifests() {
            let (run, calls) = wskdeploy(&bin, &text, flavour, true).await;
            assert!(run.ok, "{file}: wskdeploy --preview failed:\n{}\n{}", run.stdout, run.stderr);
            assert!(
                !run.stdout.contains("Error") && !run.stderr.contains("Error"),
                "{file}: {run:?}"
            );
            // The preview asks the controller for its runtimes, and changes nothing.
            let methods: Vec<String> =
                calls.iter().map(|c| format!("{} {}", c.method, c.path)).collect();
            assert_eq!(methods, ["GET /"], "{file}: a preview deploys nothing");

            let plan = parse_preview(&run.stdout);
            let lines = |kind: &str, name: &str| -> BTreeSet<String> {
                plan.get(&(kind.to_string(), name.to_string()))
                    .unwrap_or_else(|| {
                        panic!("{file}: no {kind} {name} in the plan:\n{}", run.stdout)
                    })
                    .lines
                    .iter()
                    .cloned()
                    .collect()
            };
            let pkg = lines("package", "kappa");
            for want in [
                r#"KAFKA_BROKERS : "kafka-1:9092,kafka-2:9092""#,
                r#"REDIS_URL : "redis://redis:6379""#,
                r#"KAPPA_API_KEYS : "web-key""#,
            ] {
                assert!(pkg.contains(want), "{file}: package binding {want}: {pkg:?}");
            }
            let actions: BTreeSet<&str> =
                plan.keys().filter(|(k, _)| k == "action").map(|(_, n)| n.as_str()).collect();
            assert_eq!(actions, ACTIONS.into_iter().collect(), "{file}");
            let web: BTreeSet<&str> = [
                "web-export : true",
                "raw-http : true",
                "final : true",
                "raw-http : false",
                "provide-api-key : true",
            ]
            .into();
            let expect = BTreeMap::from([
                (
                    "query",
                    vec![
                        "web-export : true",
                        "raw-http : true",
                        "final : true",
                        "provide-api-key : true",
                    ],
                ),
                ("status", vec!["web-export : true", "raw-http : false", "final : true"]),
                ("process", vec!["provide-api-key : true"]),
                ("push", vec![]),
                ("tick", vec!["provide-api-key : true"]),
            ]);
            for (action, want) in expect {
                let got: BTreeSet<String> = lines("action", action)
                    .into_iter()
                    .filter(|l| web.contains(l.as_str()))
                    .collect();
                let want: BTreeSet<String> = want.into_iter().map(str::to_string).collect();
                assert_eq!(got, want, "{file}: annotations of {action}");
            }
            let kafka = lines("trigger", "kappa-kafka");
            for want in [
                "feed : /whisk.system/messaging/kafkaFeed",
                r#"brokers : "kafka-1:9092,kafka-2:9092""#,
                r#"topic : "tweets""#,
                "isJSONData : true",
            ] {
                assert!(kafka.contains(want), "{file}: kappa-kafka {want}: {kafka:?}");
            }
            let alarm = lines("trigger", "kappa-alarm");
            for want in ["feed : /whisk.system/alarms/interval", "minutes : 1"] {
                assert!(alarm.contains(want), "{file}: kappa-alarm {want}: {alarm:?}");
            }
            assert!(lines("trigger", "kappa-process").is_empty(), "{file}: a plain trigger");
            assert!(lines("trigger", "kappa-push").is_empty(), "{file}: a plain trigger");
            for (rule, trigger, action) in [
                ("kappa-kafka-tick", "kappa-kafka", "tick"),
                ("kappa-alarm-tick", "kappa-alarm", "tick"),
                ("kappa-process-link", "kappa-process", "process"),
                ("kappa-push-link", "kappa-push", "push"),
            ] {
                let got = lines("rule", rule);
                let want: BTreeSet<String> =
                    [format!("trigger: {trigger}"), format!("action: kappa/{action}")].into();
                assert_eq!(got, want, "{file}: rule {rule}");
            }
        }
    });
}

fn annotations(action: &Value) -> BTreeMap<String, Value> {
    action["annotations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a["key"].as_str()?.to_string(), a["value"].clone())))
        .collect()
}

#[test]
fn both_manifests_deploy_with_the_real_wskdeploy_exactly_as_planned() {
    let Some(bin) = found("KAPPA_WSKDEPLOY", "bin/wskdeploy", "wskdeploy") else { return };
    runtime().block_on(async {
        for (file, text, flavour) in manifests() {
            let (run, calls) = wskdeploy(&bin, &text, flavour, false).await;
            assert!(run.ok, "{file}: wskdeploy failed:\n{}\n{}", run.stdout, run.stderr);
            let put = |path: &str| -> &Value {
                &calls
                    .iter()
                    .find(|c| c.method == "PUT" && c.path == path)
                    .unwrap_or_else(|| panic!("{file}: no PUT {path}: {calls:#?}"))
                    .body
            };
            // The package and its parameters, from the deployer's environment.
            let params: BTreeMap<String, Value> =
                put("/api/v1/namespaces/guest/packages/kappa")["parameters"]
                    .as_array()
                    .expect("parameters")
                    .iter()
                    .map(|p| (p["key"].as_str().expect("key").to_string(), p["value"].clone()))
                    .collect();
            for (k, v) in ENV.iter().filter(|(k, _)| *k != "KAPPA_TOPIC") {
                assert_eq!(params.get(*k), Some(&json!(v)), "{file}: package parameter {k}");
            }
            // Every action: kind, its own artefact, limits, annotations.
            for (action, timeout, memory) in LIMITS {
                let a = put(&format!("/api/v1/namespaces/guest/actions/kappa/{action}"));
                if matches!(flavour, Flavour::Blackbox | Flavour::Image) {
                    // A Docker action: kind blackbox, the image, the zip as its code.
                    assert_eq!(a["exec"]["kind"], "blackbox", "{file}: kind of {action}");
                    assert_eq!(a["exec"]["image"], flavour.docker(), "{file}: image of {action}");
                } else {
                    assert_eq!(a["exec"]["kind"], flavour.runtime(), "{file}: kind of {action}");
                }
                let code = base64::engine::general_purpose::STANDARD
                    .decode(a["exec"]["code"].as_str().expect("code"))
                    .expect("base64 code");
                let artefact = flavour.artefact(action);
                assert_eq!(code, placeholder(&artefact), "{file}: {action} deploys {artefact}");
                assert_eq!(
                    a["limits"],
                    json!({"timeout": timeout, "memory": memory}),
                    "{file}: {action}"
                );
                let got = annotations(a);
                let web = kappa_deploy::WEB_ACTIONS.iter().find(|(n, _)| *n == action);
                let mut want = BTreeMap::new();
                if let Some((_, raw)) = web {
                    want.insert("web-export".to_string(), json!(true));
                    want.insert("raw-http".to_string(), json!(raw));
                    want.insert("final".to_string(), json!(true));
                }
                if kappa_deploy::PROVIDE_API_KEY.contains(&action) {
                    want.insert("provide-api-key".to_string(), json!(true));
                }
                assert_eq!(got, want, "{file}: annotations of {action}");
            }
            // Triggers, and the feed actions called to create them.
            for t in ["kappa-kafka", "kappa-alarm", "kappa-process", "kappa-push"] {
                put(&format!("/api/v1/namespaces/guest/triggers/{t}"));
            }
            let feed = |path: &str| -> &Value {
                &calls
                    .iter()
                    .find(|c| c.method == "POST" && c.path == path)
                    .unwrap_or_else(|| panic!("{file}: no feed call {path}"))
                    .body
            };
            let kafka = feed("/api/v1/namespaces/whisk.system/actions/messaging/kafkaFeed");
            assert_eq!(
                (
                    &kafka["lifecycleEvent"],
                    &kafka["triggerName"],
                    &kafka["brokers"],
                    &kafka["topic"],
                    &kafka["isJSONData"]
                ),
                (
                    &json!("CREATE"),
                    &json!("/guest/kappa-kafka"),
                    &json!("kafka-1:9092,kafka-2:9092"),
                    &json!("tweets"),
                    &json!(true)
                ),
                "{file}: {kafka}"
            );
            let alarm = feed("/api/v1/namespaces/whisk.system/actions/alarms/interval");
            assert_eq!(
                (&alarm["triggerName"], &alarm["minutes"], &alarm["trigger_payload"]),
                (&json!("/guest/kappa-alarm"), &json!(1), &json!({"tick": true})),
                "{file}: {alarm}"
            );
            // Rules, created then activated.
            for (rule, trigger, action) in [
                ("kappa-kafka-tick", "kappa-kafka", "tick"),
                ("kappa-alarm-tick", "kappa-alarm", "tick"),
                ("kappa-process-link", "kappa-process", "process"),
                ("kappa-push-link", "kappa-push", "push"),
            ] {
                let path = format!("/api/v1/namespaces/guest/rules/{rule}");
                let r = put(&path);
                assert_eq!(
                    (&r["trigger"], &r["action"]),
                    (&json!(format!("/guest/{trigger}")), &json!(format!("/guest/kappa/{action}"))),
                    "{file}: rule {rule}"
                );
                assert!(
                    calls.iter().any(|c| c.method == "POST"
                        && c.path == path
                        && c.body["status"] == "active"),
                    "{file}: rule {rule} activated"
                );
            }
            // API routes, through the API gateway's createApi.
            let routes: BTreeSet<(String, String, String, String)> = calls
                .iter()
                .filter(|c| c.path.ends_with("/apimgmt/createApi.http"))
                .map(|c| {
                    let d = &c.body["apidoc"];
                    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                    (
                        s(&d["gatewayMethod"]),
                        format!("{}{}", s(&d["gatewayBasePath"]), s(&d["gatewayPath"])),
                        s(&d["action"]["name"]),
                        c.query
                            .split('&')
                            .find(|q| q.starts_with("responsetype="))
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect();
            let want: BTreeSet<(String, String, String, String)> = [
                ("POST", "/v1/queries", "kappa/query"),
                ("GET", "/v1/queries/{id}", "kappa/status"),
                ("DELETE", "/v1/queries/{id}", "kappa/query"),
                ("POST", "/v1/queries/{id}/subscriptions", "kappa/query"),
                ("POST", "/v1/topics/{topic}/records", "kappa/query"),
                ("PUT", "/v1/views/{name}", "kappa/query"),
                ("GET", "/v1/views/{name}", "kappa/status"),
            ]
            .into_iter()
            .map(|(m, p, a)| (m.into(), p.into(), a.into(), "responsetype=http".into()))
            .collect();
            assert_eq!(routes, want, "{file}: API routes");
        }
    });
}

#[test]
fn r13_a_raw_http_key_under_an_action_stops_the_real_wskdeploy() {
    // Issue #13: the manifests used to say `raw-http: true`, which the real tool refuses.
    let Some(bin) = found("KAPPA_WSKDEPLOY", "bin/wskdeploy", "wskdeploy") else { return };
    let old =
        read("manifest.yaml").replace("web: raw\n", "web-export: true\n          raw-http: true\n");
    runtime().block_on(async {
        let (run, calls) = wskdeploy(&bin, &old, Flavour::Native, true).await;
        assert!(!run.ok, "{run:?}");
        assert!(
            format!("{}{}", run.stdout, run.stderr)
                .contains("field raw-http not found in type parsers.Action"),
            "{run:?}"
        );
        assert!(calls.iter().all(|c| c.method == "GET"), "nothing deployed");
    });
}

/// A nodejs zip `index.js` + `package.json` whose action names itself.
fn node_zip(dir: &Path, out: &Path, action: &str) {
    let stage = dir.join(format!("stage-{action}"));
    std::fs::create_dir_all(&stage).expect("stage");
    std::fs::write(
        stage.join("index.js"),
        format!("exports.main = () => ({{action: '{action}'}});\n"),
    )
    .expect("index.js");
    std::fs::write(stage.join("package.json"), r#"{"main":"index.js"}"#).expect("package.json");
    let ok = std::process::Command::new("zip")
        .current_dir(&stage)
        .args(["-q", "-X"])
        .arg(out)
        .args(["index.js", "package.json"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "zip (apt-get install zip)");
}

#[test]
fn serverless_yml_passes_the_real_serverless_package_with_the_planned_entities() {
    let Some(bin) = found(
        "KAPPA_SERVERLESS",
        "serverless/node_modules/.bin/serverless",
        "Serverless Framework v3",
    ) else {
        return;
    };
    let modules = bin.parent().and_then(Path::parent).expect("node_modules").to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("serverless.yml"), read("serverless.yml")).expect("copy");
    std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).expect("symlink");
    // The plugin checks that the handler file exists where it runs (build/wasm holds it).
    std::fs::write(dir.path().join("index.js"), "exports.main = () => ({});\n").expect("index");
    std::fs::create_dir_all(dir.path().join("build/actions")).expect("mkdir");
    for a in ACTIONS {
        node_zip(dir.path(), &dir.path().join(Flavour::Wasm.artefact(a)), a);
    }
    let mut env: Vec<(&str, &str)> = ENV.to_vec();
    env.extend([("SLS_TELEMETRY_DISABLED", "1"), ("SLS_NOTIFICATIONS_MODE", "off")]);
    let run = runtime()
        .block_on(run_tool(
            &bin,
            &["package", "--verbose"],
            dir.path(),
            &env,
            Duration::from_secs(180),
        ))
        .expect("serverless");
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(run.ok, "serverless package failed:\n{out}");
    let compiled = parse_serverless(&out);
    let get = |kind: &str, name: &str| -> &Value {
        compiled
            .get(&(kind.to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("no compiled {kind} ({name}) in:\n{out}"))
    };
    let functions: BTreeSet<&str> =
        compiled.keys().filter(|(k, _)| k == "Function").map(|(_, n)| n.as_str()).collect();
    assert_eq!(functions, ACTIONS.into_iter().collect());
    for (action, timeout, memory) in LIMITS {
        let f = get("Function", action);
        assert_eq!(f["actionName"], format!("kappa/{action}"));
        assert_eq!(f["action"]["exec"]["kind"], "nodejs:20", "{action}");
        assert_eq!(f["action"]["exec"]["main"], "main", "{action}");
        assert_eq!(f["action"]["limits"]["timeout"], timeout, "{action}");
        assert_eq!(f["action"]["limits"]["memory"], memory, "{action}");
        let got = annotations(&f["action"]);
        let mut want = BTreeMap::new();
        if let Some((_, raw)) = kappa_deploy::WEB_ACTIONS.iter().find(|(n, _)| *n == action) {
            want.insert("web-export".to_string(), json!(true));
            if *raw {
                want.insert("raw-http".to_string(), json!(true));
            }
            want.insert("final".to_string(), json!(true));
            want.insert("require-whisk-auth".to_string(), json!(false));
        }
        if kappa_deploy::PROVIDE_API_KEY.contains(&action) {
            want.insert("provide-api-key".to_string(), json!(true));
        }
        assert_eq!(got, want, "annotations of {action}");
    }
    let pkg = get("Package", "kappa");
    let params: BTreeMap<String, Value> = pkg["package"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| (p["key"].as_str().expect("key").to_string(), p["value"].clone()))
        .collect();
    for (k, v) in ENV.iter().filter(|(k, _)| *k != "KAPPA_TOPIC") {
        assert_eq!(params.get(*k), Some(&json!(v)), "package parameter {k}");
    }
    let kafka = get("Trigger", "kappa-kafka");
    assert_eq!(kafka["feed"]["feedName"], "messaging/kafkaFeed");
    assert_eq!(kafka["feed"]["namespace"], "whisk.system");
    assert_eq!(
        kafka["feed"]["params"],
        json!({"brokers": "kafka-1:9092,kafka-2:9092", "topic": "tweets", "isJSONData": true})
    );
    let alarm = get("Trigger", "kappa-alarm");
    assert_eq!(alarm["feed"]["feedName"], "alarms/alarm");
    assert_eq!(alarm["feed"]["params"]["cron"], "* * * * *", "every minute, as the interval feed");
    assert_eq!(alarm["feed"]["params"]["trigger_payload"], r#"{"tick":true}"#);
    for t in ["kappa-process", "kappa-push"] {
        assert!(get("Trigger", t)["feed"].is_null(), "{t} is a plain trigger");
    }
    let rules: BTreeSet<(String, String, String)> = compiled
        .iter()
        .filter(|((k, _), _)| k == "Rule")
        .flat_map(|(_, v)| v.as_array().cloned().unwrap_or_default())
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("ruleName"), s("trigger"), s("action"))
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("kappa-kafka-tick", "kappa-kafka", "tick"),
        ("kappa-alarm-tick", "kappa-alarm", "tick"),
        ("kappa-process-link", "kappa-process", "process"),
        ("kappa-push-link", "kappa-push", "push"),
    ]
    .into_iter()
    .map(|(r, t, a)| (r.into(), format!("/_/{t}"), format!("/_/kappa/{a}")))
    .collect();
    assert_eq!(rules, want);
    let routes: BTreeSet<(String, String, String, String)> = compiled
        .iter()
        .filter(|((k, _), _)| k == "API Gateway definition")
        .flat_map(|(_, v)| v.as_array().cloned().unwrap_or_default())
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (
                s("operation"),
                s("relpath"),
                format!("{}/{}", s("pkge"), s("action")),
                s("responsetype"),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String, String)> = [
        ("POST", "/v1/queries", "kappa/query"),
        ("GET", "/v1/queries/{id}", "kappa/status"),
        ("DELETE", "/v1/queries/{id}", "kappa/query"),
        ("POST", "/v1/queries/{id}/subscriptions", "kappa/query"),
        ("DELETE", "/v1/queries/{id}/subscriptions", "kappa/query"),
        ("POST", "/v1/topics/{topic}/records", "kappa/query"),
        ("PUT", "/v1/views/{name}", "kappa/query"),
        ("GET", "/v1/views/{name}", "kappa/status"),
    ]
    .into_iter()
    .map(|(m, p, a)| (m.into(), p.into(), a.into(), "http".into()))
    .collect();
    assert_eq!(routes, want);
}
