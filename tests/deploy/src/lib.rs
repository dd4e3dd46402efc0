//! Checks of Kappa's OpenWhisk deployment descriptors.
//!
//! `manifest.yaml` (native, wskdeploy), `manifest.wasm.yaml` (WASM in Node.js, wskdeploy) and
//! `serverless.yml` (serverless-openwhisk) describe one package. A descriptor that names an
//! artefact the build does not produce, a rule without its trigger, a limit OpenWhisk refuses
//! or a secret written into the file only fails at deploy time, on someone else's machine; these
//! checks fail at `cargo test` instead, each problem named.
//!
//! Every check returns the list of problems it found (empty: fine), so a test shows all of them
//! at once.
//!
//! Test with: `cargo test -p kappa-deploy`.

pub mod platform;
pub mod runtime;
pub mod tools;

use std::collections::BTreeSet;

use serde_yaml::{Mapping, Value};

/// The actions of the package: the names the one dispatch of both hosts answers.
pub use kappa_actions::openwhisk::ACTIONS;

/// The web actions and whether they must be raw-http.
pub const WEB_ACTIONS: [(&str, bool); 2] = [("query", true), ("status", false)];

/// Actions that fire chain links, so they need the activation's API key.
pub const PROVIDE_API_KEY: [&str; 3] = ["query", "process", "tick"];

/// OpenWhisk's action time limit range, ms (`time-limit`: 100 ms to 5 min).
pub const TIMEOUT_MS: std::ops::RangeInclusive<i64> = 100..=300_000;

/// OpenWhisk's memory limit range, MB.
pub const MEMORY_MB: std::ops::RangeInclusive<i64> = 128..=512;

/// Which build of the actions a descriptor deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Static `exec` zips, kind `rust:1.34`.
    Native,
    /// wasm-bindgen module in a Node.js zip, kind `nodejs:20`.
    Wasm,
    /// The native zips on the blackbox ActionLoop image ([`BLACKBOX_IMAGE`]; the blackbox
    /// invoker pool), for platforms without the `rust:1.34` kind.
    Blackbox,
    /// The binary baked into the deployer's image (`build/image/Dockerfile`), every action's
    /// zip the launcher `build/actions/launcher.zip`: the fastest cold start.
    Image,
}

/// The image name the tests give the image flavour (the deployer's `KAPPA_IMAGE`).
pub const EXAMPLE_IMAGE: &str = "registry.example.com/kappa-actions:0.1.0";

/// Where `build/image/Dockerfile` puts the binary and the launcher runs it from.
pub const IMAGE_EXEC: &str = "/kappa/kappa-action";

/// The image variant of the native manifest, as `scripts/deploy.sh image` writes it with
/// `KAPPA_IMAGE=image`: each `runtime: rust:1.34` becomes `docker: <image>` and each native zip
/// the launcher.
pub fn image_variant(native_manifest: &str, image: &str) -> String {
    let docker = native_manifest.replace("runtime: rust:1.34", &format!("docker: {image}"));
    ACTIONS.iter().fold(docker, |m, action| {
        m.replace(
            &format!("function: build/actions/{action}.zip"),
            "function: build/actions/launcher.zip",
        )
    })
}

/// The ActionLoop image the blackbox flavour runs the native `exec` on (the proxy alone, no
/// compiler: the zip's `exec` runs as is).
pub const BLACKBOX_IMAGE: &str = "openwhisk/actionloop-base:nightly";

/// The blackbox variant of the native manifest, as `scripts/deploy.sh blackbox` writes it: each
/// `runtime: rust:1.34` becomes `docker: <BLACKBOX_IMAGE>`.
pub fn blackbox_variant(native_manifest: &str) -> String {
    native_manifest.replace("runtime: rust:1.34", &format!("docker: {BLACKBOX_IMAGE}"))
}

impl Flavour {
    /// The artefact the build script writes for `action`.
    pub fn artefact(self, action: &str) -> String {
        match self {
            Flavour::Native | Flavour::Blackbox => format!("build/actions/{action}.zip"),
            Flavour::Image => "build/actions/launcher.zip".to_string(),
            Flavour::Wasm => format!("build/actions/{action}-wasm.zip"),
        }
    }

    /// The OpenWhisk kind (`docker` for a blackbox image).
    pub fn runtime(self) -> &'static str {
        match self {
            Flavour::Native => "rust:1.34",
            Flavour::Wasm => "nodejs:20",
            Flavour::Blackbox | Flavour::Image => "",
        }
    }

    /// The image of a blackbox flavour.
    pub fn docker(self) -> &'static str {
        match self {
            Flavour::Blackbox => BLACKBOX_IMAGE,
            Flavour::Image => EXAMPLE_IMAGE,
            Flavour::Native | Flavour::Wasm => "",
        }
    }
}

/// Parse YAML text.
pub fn parse(text: &str) -> Result<Value, String> {
    serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn map(v: Option<&Value>) -> Mapping {
    v.and_then(Value::as_mapping).cloned().unwrap_or_default()
}

fn keys(m: &Mapping) -> BTreeSet<String> {
    m.keys().filter_map(Value::as_str).map(str::to_string).collect()
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "yes" | "raw"),
        _ => false,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    }
}

/// The `kappa` package of a wskdeploy manifest (`project.packages.kappa` or `packages.kappa`).
pub fn package(manifest: &Value) -> Option<&Value> {
    get(manifest, "project")
        .and_then(|p| get(p, "packages"))
        .or_else(|| get(manifest, "packages"))
        .and_then(|p| get(p, "kappa"))
}

/// Every problem of a wskdeploy manifest of the given flavour.
pub fn check_manifest(manifest: &Value, flavour: Flavour) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(pkg) = package(manifest) else {
        return vec!["no package `kappa` under project.packages".into()];
    };
    let actions = map(get(pkg, "actions"));
    let triggers = map(get(pkg, "triggers"));
    let rules = map(get(pkg, "rules"));

    let names = keys(&actions);
    let wanted: BTreeSet<String> = ACTIONS.iter().map(|s| s.to_string()).collect();
    if names != wanted {
        problems.push(format!("actions are {names:?}, expected {wanted:?}"));
    }
    for (name, action) in &actions {
        let name = name.as_str().unwrap_or_default();
        let function = get(action, "function").and_then(Value::as_str).unwrap_or("");
        if function != flavour.artefact(name) {
            problems.push(format!(
                "action {name}: function is [{function}], the build writes [{}]",
                flavour.artefact(name)
            ));
        }
        let runtime = get(action, "runtime").and_then(Value::as_str).unwrap_or("");
        if runtime != flavour.runtime() {
            problems.push(format!(
                "action {name}: runtime is [{runtime}], expected [{}]",
                flavour.runtime()
            ));
        }
        let docker = get(action, "docker").and_then(Value::as_str).unwrap_or("");
        if docker != flavour.docker() {
            problems.push(format!(
                "action {name}: docker image is [{docker}], expected [{}]",
                flavour.docker()
            ));
        }
        let limits = get(action, "limits");
        match int(limits.and_then(|l| get(l, "timeout"))) {
            Some(t) if TIMEOUT_MS.contains(&t) => {}
            other => problems.push(format!(
                "action {name}: limits.timeout {other:?} ms is not within {TIMEOUT_MS:?}"
            )),
        }
        match int(limits.and_then(|l| get(l, "memorySize"))) {
            Some(m) if MEMORY_MB.contains(&m) => {}
            other => problems.push(format!(
                "action {name}: limits.memorySize {other:?} MB is not within {MEMORY_MB:?}"
            )),
        }
        let annotations = get(action, "annotations");
        let wants_key = PROVIDE_API_KEY.contains(&name);
        let has_key = truthy(annotations.and_then(|a| get(a, "provide-api-key")));
        if wants_key && !has_key {
            problems.push(format!(
                "action {name} fires chain links but lacks annotation provide-api-key: true"
            ));
        }
    }
    for (name, action) in &actions {
        let name = name.as_str().unwrap_or_default();
        for key in keys(&map(Some(action))) {
            if !WSKDEPLOY_ACTION_KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "action {name}: key [{key}] is not in wskdeploy's action schema (it stops the whole deployment)"
                ));
            }
        }
    }
    for (name, raw) in WEB_ACTIONS {
        let Some(action) = actions.get(name) else { continue };
        let (web, is_raw) = web_mode(action);
        if !web {
            problems.push(format!("action {name} serves the HTTP API but is not web-export"));
        }
        if raw != is_raw {
            problems.push(format!("action {name}: raw-http should be {raw} (`web: raw`)"));
        }
    }

    // Triggers: the chain triggers, the Kafka feed and the alarm safety net.
    for chain in ["kappa-process", "kappa-push"] {
        if !triggers.contains_key(chain) {
            problems.push(format!("no chain trigger {chain} (KAPPA_LINK=trigger fires it)"));
        }
    }
    let feeds: Vec<(String, String, Mapping)> = triggers
        .iter()
        .filter_map(|(k, t)| {
            let feed = get(t, "feed")?.as_str()?.to_string();
            Some((k.as_str()?.to_string(), feed, map(get(t, "inputs"))))
        })
        .collect();
    match feeds.iter().find(|(_, f, _)| f == "/whisk.system/messaging/kafkaFeed") {
        None => problems.push("no trigger on the feed /whisk.system/messaging/kafkaFeed".into()),
        Some((name, _, inputs)) => {
            for key in ["brokers", "topic", "isJSONData"] {
                if !inputs.contains_key(key) {
                    problems.push(format!("Kafka feed trigger {name} lacks input {key}"));
                }
            }
        }
    }
    match feeds.iter().find(|(_, f, _)| f == "/whisk.system/alarms/interval") {
        None => problems.push("no safety-net trigger on /whisk.system/alarms/interval".into()),
        Some((name, _, inputs)) => {
            if int(inputs.get("minutes")) != Some(1) {
                problems.push(format!("alarm trigger {name}: minutes should be 1"));
            }
        }
    }

    // Rules name a defined trigger and a defined action; the wiring the actions rely on.
    let mut wiring = BTreeSet::new();
    for (rule, r) in &rules {
        let rule = rule.as_str().unwrap_or_default();
        let trigger = get(r, "trigger").and_then(Value::as_str).unwrap_or("");
        let action = get(r, "action").and_then(Value::as_str).unwrap_or("");
        if !triggers.contains_key(trigger) {
            problems.push(format!("rule {rule} names undefined trigger [{trigger}]"));
        }
        if !actions.contains_key(action) {
            problems.push(format!("rule {rule} names undefined action [{action}]"));
        }
        let feed = feeds.iter().find(|(n, _, _)| n == trigger).map_or(trigger, |(_, f, _)| f);
        wiring.insert(format!("{feed} -> {action}"));
    }
    for expected in [
        "/whisk.system/messaging/kafkaFeed -> tick",
        "/whisk.system/alarms/interval -> tick",
        "kappa-process -> process",
        "kappa-push -> push",
    ] {
        if !wiring.contains(expected) {
            problems.push(format!("no rule wires {expected}"));
        }
    }

    // API routes only reach web actions.
    let mut routed = BTreeSet::new();
    for (_, api) in map(get(pkg, "apis")) {
        for (_, base) in map(Some(&api)) {
            for (path, route) in map(Some(&base)) {
                for (action, op) in map(Some(&route)) {
                    let action = action.as_str().unwrap_or_default().to_string();
                    let method = get(&op, "method").and_then(Value::as_str).unwrap_or("");
                    routed.insert(format!("{method} {}", path.as_str().unwrap_or_default()));
                    match actions.get(action.as_str()) {
                        None => problems.push(format!("api route names undefined action {action}")),
                        Some(a) if !is_web(a) => {
                            problems.push(format!("api route to {action}, which is not web-export"))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    for route in [
        "POST queries",
        "GET queries/{id}",
        "DELETE queries/{id}",
        "POST queries/{id}/subscriptions",
        "POST topics/{topic}/records",
        "PUT views/{name}",
        "GET views/{name}",
    ] {
        if !routed.contains(route) {
            problems.push(format!("no api route {route}"));
        }
    }

    // Settings come from the environment.
    let inputs = map(get(pkg, "inputs"));
    for setting in ["KAFKA_BROKERS", "REDIS_URL", "KAPPA_API_KEYS", "KAPPA_CONFIG"] {
        match inputs.get(setting).and_then(Value::as_str) {
            Some(v) if is_env_reference(v) => {}
            other => problems.push(format!(
                "package input {setting} should be ${setting} from the environment, is {other:?}"
            )),
        }
    }
    problems.extend(literal_secrets(manifest));
    problems
}

fn is_web(action: &Value) -> bool {
    web_mode(action).0
}

/// The keys wskdeploy's `parsers.Action` accepts (YAML tags of the struct in
/// `openwhisk-wskdeploy/parsers/yamlparser.go`); any other key is an unmarshal error that stops
/// the whole deployment.
pub const WSKDEPLOY_ACTION_KEYS: [&str; 21] = [
    "location",
    "version",
    "function",
    "code",
    "runtime",
    "namespace",
    "credential",
    "exposedUrl",
    "web-export",
    "web",
    "main",
    "docker",
    "native",
    "conductor",
    "limits",
    "inputs",
    "outputs",
    "description",
    "annotations",
    "include",
    "exclude",
];

/// Whether a wskdeploy action is a web action, and a raw-HTTP one: `web` (or its older
/// spelling `web-export`) set to `true`/`yes`, or `raw` for raw HTTP, as wskdeploy's
/// `webaction.SetWebActionAnnotations` reads it (it then writes the annotations `web-export`,
/// `raw-http` and `final`).
pub fn web_mode(action: &Value) -> (bool, bool) {
    let mode = get(action, "web").or_else(|| get(action, "web-export"));
    let raw = matches!(mode, Some(Value::String(s)) if s.eq_ignore_ascii_case("raw"));
    (truthy(mode), raw)
}

/// Whether a value is exactly one `$VAR` / `${VAR}` reference (wskdeploy interpolation).
pub fn is_env_reference(v: &str) -> bool {
    let name = if let Some(rest) = v.strip_prefix("${env:") {
        // serverless: `${env:NAME}` or `${env:NAME, 'default'}`.
        rest.strip_suffix('}').and_then(|r| r.split(',').next()).map(str::trim)
    } else if let Some(rest) = v.strip_prefix("${") {
        rest.strip_suffix('}')
    } else {
        v.strip_prefix('$')
    };
    name.is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// Values anywhere in a descriptor that look like secrets written literally: a value under a
/// secret-sounding key that is not an environment reference, a URL with a password, an
/// OpenWhisk API key (`uuid:key`).
pub fn literal_secrets(doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(doc, "", &mut found);
    found
}

fn walk(v: &Value, path: &str, found: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let key = k.as_str().unwrap_or_default();
                let p = format!("{path}/{key}");
                let lower = key.to_ascii_lowercase();
                let secret_key = ["password", "secret", "token", "api_key", "apikey", "auth"]
                    .iter()
                    .any(|s| lower.contains(s))
                    || matches!(key, "REDIS_URL" | "KAPPA_API_KEYS" | "KAFKA_BROKERS");
                if secret_key
                    && let Value::String(s) = child
                    && !s.is_empty()
                    && !is_env_reference(s)
                {
                    found.push(format!("{p}: literal value for a secret setting"));
                }
                walk(child, &p, found);
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}/{i}"), found);
            }
        }
        Value::String(s) => {
            if let Some((_, rest)) = s.split_once("://")
                && let Some((userinfo, _)) = rest.split_once('@')
                && userinfo.contains(':')
            {
                found.push(format!("{path}: URL with a password"));
            }
            if looks_like_openwhisk_key(s) {
                found.push(format!("{path}: an OpenWhisk API key"));
            }
        }
        _ => {}
    }
}

fn looks_like_openwhisk_key(s: &str) -> bool {
    let Some((uuid, key)) = s.split_once(':') else { return false };
    uuid.len() == 36
        && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && key.len() >= 32
        && key.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The action names a build script writes artefacts for: the words of its `ACTIONS="..."`
/// line, checked against the artefact paths it writes.
pub fn built_actions(script: &str) -> Result<Vec<String>, String> {
    let line = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("ACTIONS="))
        .ok_or("the build script has no ACTIONS=\"...\" line")?;
    let names: Vec<String> =
        line.trim_matches(['"', '\'']).split_whitespace().map(str::to_string).collect();
    for pattern in ["build/actions/${action}.zip", "build/actions/${action}-wasm.zip"] {
        if !script.contains(pattern) {
            return Err(format!("the build script does not write {pattern}"));
        }
    }
    Ok(names)
}

/// Every problem of the serverless-openwhisk descriptor (WASM actions; timeouts in seconds).
pub fn check_serverless(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let functions = map(get(doc, "functions"));
    let names = keys(&functions);
    let wanted: BTreeSet<String> = ACTIONS.iter().map(|s| s.to_string()).collect();
    if names != wanted {
        problems.push(format!("functions are {names:?}, expected {wanted:?}"));
    }
    for (name, f) in &functions {
        let name = name.as_str().unwrap_or_default();
        let artefact = get(f, "package").and_then(|p| get(p, "artifact")).and_then(Value::as_str);
        if artefact != Some(Flavour::Wasm.artefact(name).as_str()) {
            problems.push(format!("function {name}: package.artifact is {artefact:?}"));
        }
        if get(f, "name").and_then(Value::as_str) != Some(format!("kappa/{name}").as_str()) {
            problems.push(format!("function {name}: name should be kappa/{name}"));
        }
        match int(get(f, "timeout")) {
            Some(t) if TIMEOUT_MS.contains(&(t * 1000)) => {}
            other => problems.push(format!("function {name}: timeout {other:?} s out of range")),
        }
        match int(get(f, "memory")) {
            Some(m) if MEMORY_MB.contains(&m) => {}
            other => problems.push(format!("function {name}: memory {other:?} MB out of range")),
        }
        let annotations = get(f, "annotations");
        if PROVIDE_API_KEY.contains(&name)
            && !truthy(annotations.and_then(|a| get(a, "provide-api-key")))
        {
            problems.push(format!("function {name} lacks provide-api-key"));
        }
        let has_http = get(f, "events")
            .and_then(Value::as_sequence)
            .is_some_and(|e| e.iter().any(|ev| get(ev, "http").is_some()));
        if has_http && !truthy(annotations.and_then(|a| get(a, "web-export"))) {
            problems.push(format!("function {name} has an http event but is not web-export"));
        }
    }
    problems.extend(literal_secrets(doc));
    problems
}
