//! The deployment descriptors at the repository root against the build script, the action
//! dispatchers and OpenWhisk's limits; and the checks themselves against broken descriptors,
//! so a green run means something.

use kappa_deploy::{
    ACTIONS, BLACKBOX_IMAGE, EXAMPLE_IMAGE, Flavour, IMAGE_EXEC, blackbox_variant, built_actions,
    check_manifest, check_serverless, image_variant, parse,
};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}"))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn assert_clean(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what} has {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn the_native_manifest_is_deployable() {
    let m = parse(&read("manifest.yaml")).expect("manifest.yaml parses");
    assert_clean("manifest.yaml", &check_manifest(&m, Flavour::Native));
}

#[test]
fn the_wasm_manifest_is_deployable() {
    let m = parse(&read("manifest.wasm.yaml")).expect("manifest.wasm.yaml parses");
    assert_clean("manifest.wasm.yaml", &check_manifest(&m, Flavour::Wasm));
}

#[test]
fn the_image_variant_deploy_writes_is_deployable() {
    let m = parse(&image_variant(&read("manifest.yaml"), EXAMPLE_IMAGE)).expect("YAML");
    assert_clean("manifest.yaml (image)", &check_manifest(&m, Flavour::Image));
    let deploy = read("scripts/deploy.sh");
    assert!(
        deploy.contains("s#runtime: rust:1.34#docker: $KAPPA_IMAGE#")
            && deploy.contains("function: build/actions/launcher.zip"),
        "scripts/deploy.sh image rewrites the runtime and function lines as image_variant does"
    );
    let build = read("scripts/build-actions.sh");
    assert!(
        build.contains(&format!("image_exec={IMAGE_EXEC}")),
        "the launcher and the Dockerfile use the path the tests know"
    );
}

#[test]
fn the_blackbox_variant_deploy_writes_is_deployable() {
    let m = parse(&blackbox_variant(&read("manifest.yaml"))).expect("YAML");
    assert_clean("manifest.yaml (blackbox)", &check_manifest(&m, Flavour::Blackbox));
    let deploy = read("scripts/deploy.sh");
    assert!(
        deploy.contains(&format!("docker: {BLACKBOX_IMAGE}"))
            && deploy.contains("runtime: rust:1.34"),
        "scripts/deploy.sh blackbox rewrites the runtime lines into the same image"
    );
}

#[test]
fn the_serverless_descriptor_is_deployable() {
    let s = parse(&read("serverless.yml")).expect("serverless.yml parses");
    assert_clean("serverless.yml", &check_serverless(&s));
}

#[test]
fn the_build_script_writes_one_artefact_per_manifest_action() {
    let built = built_actions(&read("scripts/build-actions.sh")).expect("build script");
    assert_eq!(built, ACTIONS, "scripts/build-actions.sh ACTIONS and the manifests' actions");
}

// ------------------------------------------------------------------------------------------
// The checks catch what they claim to.

fn broken(edit: impl Fn(&str) -> String) -> Vec<String> {
    let text = edit(&read("manifest.yaml"));
    check_manifest(&parse(&text).expect("still YAML"), Flavour::Native)
}

fn mentions(problems: &[String], needle: &str) -> bool {
    problems.iter().any(|p| p.contains(needle))
}

#[test]
fn a_renamed_artefact_is_caught() {
    let p = broken(|t| t.replace("build/actions/process.zip", "build/actions/proc.zip"));
    assert!(mentions(&p, "action process: function is [build/actions/proc.zip]"), "{p:?}");
}

#[test]
fn a_rule_naming_an_undefined_trigger_or_action_is_caught() {
    let p = broken(|t| t.replace("trigger: kappa-alarm\n", "trigger: kappa-alarms\n"));
    assert!(mentions(&p, "rule kappa-alarm-tick names undefined trigger [kappa-alarms]"), "{p:?}");
    assert!(mentions(&p, "no rule wires /whisk.system/alarms/interval -> tick"), "{p:?}");
    let p = broken(|t| t.replace("action: push\n", "action: pusher\n"));
    assert!(mentions(&p, "rule kappa-push-link names undefined action [pusher]"), "{p:?}");
}

#[test]
fn limits_outside_openwhisk_ranges_are_caught() {
    let p = broken(|t| t.replacen("timeout: 300000", "timeout: 600000", 1));
    assert!(mentions(&p, "action process: limits.timeout Some(600000)"), "{p:?}");
    let p = broken(|t| t.replacen("memorySize: 512", "memorySize: 1024", 1));
    assert!(mentions(&p, "action process: limits.memorySize Some(1024)"), "{p:?}");
}

#[test]
fn a_routed_action_without_web_export_is_caught() {
    let p = broken(|t| t.replace("web: raw\n", "web: false\n").replace("web: true\n", "web: no\n"));
    assert!(mentions(&p, "api route to status, which is not web-export"), "{p:?}");
    assert!(mentions(&p, "action query serves the HTTP API but is not web-export"), "{p:?}");
}

#[test]
fn literal_secrets_are_caught() {
    let p =
        broken(|t| t.replace("REDIS_URL: $REDIS_URL", "REDIS_URL: redis://:hunter2@10.0.0.5:6379"));
    assert!(mentions(&p, "/REDIS_URL: literal value for a secret setting"), "{p:?}");
    assert!(mentions(&p, "URL with a password"), "{p:?}");
    let key = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";
    let p = broken(|t| {
        t.replace("KAPPA_API_KEYS: $KAPPA_API_KEYS", &format!("KAPPA_API_KEYS: \"{key}\""))
    });
    assert!(mentions(&p, "an OpenWhisk API key"), "{p:?}");
}

#[test]
fn a_missing_api_key_annotation_is_caught() {
    let text = read("manifest.yaml");
    let tick = text.find("tick:\n          function").expect("tick action");
    let mut edited = text.clone();
    let at = tick + text[tick..].find("provide-api-key: true").expect("annotation");
    edited.replace_range(at..at + "provide-api-key: true".len(), "provide-api-key: false");
    let p = check_manifest(&parse(&edited).expect("YAML"), Flavour::Native);
    assert!(
        mentions(&p, "action tick fires chain links but lacks annotation provide-api-key"),
        "{p:?}"
    );
}

#[test]
fn the_wrong_flavour_is_caught() {
    let m = parse(&read("manifest.yaml")).expect("YAML");
    let p = check_manifest(&m, Flavour::Wasm);
    assert!(
        mentions(
            &p,
            "action query: function is [build/actions/query.zip], the build writes [build/actions/query-wasm.zip]"
        ),
        "{p:?}"
    );
    assert!(mentions(&p, "runtime is [rust:1.34], expected [nodejs:20]"), "{p:?}");
}

#[test]
fn r13_a_key_outside_wskdeploys_action_schema_is_caught() {
    // Issue #13: `raw-http: true` under an action made the real wskdeploy stop with
    // "field raw-http not found in type parsers.Action".
    let p = broken(|t| t.replace("web: raw\n", "web-export: true\n          raw-http: true\n"));
    assert!(
        mentions(&p, "action query: key [raw-http] is not in wskdeploy's action schema"),
        "{p:?}"
    );
    assert!(mentions(&p, "action query: raw-http should be true"), "{p:?}");
}
