//! End to end under the platform harness (`kappa_deploy::platform`, playing OpenWhisk's
//! controller and invoker from the descriptor): a query posted to the `query` web action
//! replays a real Kafka topic into real Redis through the chain of `process` invocations, the
//! `push` action feeds `kappa-gateway`, and a websocket client of the gateway rebuilds the
//! result from its snapshot and deltas — equal to one clean pass over the records. Then new
//! records arrive, the Kafka feed trigger wakes the query (`tick`), and the client follows.
//! Once with the native zips (`manifest.yaml`) in OpenWhisk's real ActionLoop proxy, once with
//! the WASM zips (`manifest.wasm.yaml`) in the real nodejs:20 runtime, under the limits of a
//! default deployment.
//!
//! Needs KAFKA_BROKERS and REDIS_URL (`eval "$(scripts/services.sh up)"`), the runtimes of
//! `scripts/openwhisk-tools.sh`, and the zips of `scripts/build-actions.sh` (for the native run,
//! without them: the debug `kappa-action`, KAPPA_NATIVE_EXEC, zipped as `exec`); without them
//! it says why it is skipped (and fails under the test command, which sets
//! KAPPA_REQUIRE_REAL_RUNTIMES=1).
#![allow(clippy::disallowed_methods, reason = "tests read their service addresses")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use kappa_core::ports::{LogWriter, NewRecord};
use kappa_core::{Limits as QueryLimits, Plan, Record, Topic, patch};
use kappa_deploy::platform::{Limits, PlatformConfig, RunningPlatform};
use kappa_deploy::runtime::{self as real, RuntimeKind};
use kappa_deploy::{EXAMPLE_IMAGE, Flavour, blackbox_variant, image_variant};
use kappa_gateway::{self as gateway, GatewayConfig};
use kappa_log_kafka::{KafkaLog, KafkaLogConfig};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const NAMESPACE_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:harness-key";
const WEB_KEY: &str = "web-key";
const PUSH_TOKEN: &str = "push-token";
const SUBSCRIBER_KEY: &str = "subscriber-key";
const PARTITIONS: u32 = 3;

fn services() -> Option<(String, String)> {
    let k = std::env::var("KAFKA_BROKERS").ok().filter(|s| !s.is_empty())?;
    let r = std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty())?;
    Some((k, r))
}

/// Skip (or fail under the test command) for want of `what`.
fn missing(what: &str) {
    assert!(!real::required(), "KAPPA_REQUIRE_REAL_RUNTIMES=1 but missing: {what}");
    eprintln!("skipped: missing {what}");
}

/// The directory of the native zips: `build/actions` when `scripts/build-actions.sh native`
/// wrote them, else the debug `kappa-action` (or KAPPA_NATIVE_EXEC) zipped as each action's
/// `exec`, as the build script does.
fn native_zips(keep: &tempfile::TempDir) -> Option<PathBuf> {
    let built = Path::new(ROOT).join("build/actions");
    if kappa_deploy::ACTIONS.iter().all(|a| built.join(format!("{a}.zip")).is_file()) {
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
    for a in kappa_deploy::ACTIONS {
        let ok = std::process::Command::new("zip")
            .current_dir(&stage)
            .args(["-q", "-X"])
            .arg(keep.path().join(format!("{a}.zip")))
            .arg("exec")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "zip (apt-get install zip) packs {a}.zip");
    }
    eprintln!("native zips: {} zipped as exec", exec.display());
    Some(keep.path().to_path_buf())
}

fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{prefix}-{}-{t}", std::process::id())
}

fn tweet(i: u64) -> Value {
    let tags = ["wimbledon", "federer", "ace", "rain", "nadal", "serve"];
    json!({
        "text": if i.is_multiple_of(3) { format!("Federer ace number {i}") } else { format!("rain delay {i}") },
        "n": i % 17,
        "user": {"screen_name": format!("u{}", i % 13)},
        "entities": {"hashtags": [{"text": tags[(i % 6) as usize]}]},
    })
}

fn query_body(topic: &str) -> Value {
    json!({"topic": topic,
           "query": {"bool": {"must_not": [{"term": {"n": 3}}]}},
           "aggs": {"tags": {"terms": {"field": "entities.hashtags.text", "size": 10}},
                    "users": {"cardinality": {"field": "user.screen_name"}},
                    "avg_n": {"avg": {"field": "n"}},
                    "fed": {"filter": {"match": {"text": "federer"}}}}})
}

/// One clean pass over `docs` (the query reads no offsets, timestamps or keys).
fn oracle(body: &Value, docs: &[Vec<u8>]) -> Value {
    let plan = Plan::parse(body, &QueryLimits::default()).expect("valid");
    let mut state = plan.empty_state();
    let records = docs.iter().enumerate().map(|(i, d)| Record {
        value: d,
        timestamp: 0,
        offset: i as i64,
        partition: 0,
        key: None,
    });
    plan.fold_all(&mut state, records).expect("folds");
    plan.render(&state).expect("renders")
}

/// Produce `docs[range]` spread over the partitions; returns (partition, first offset) per
/// partition written, for the feed's trigger payload.
async fn produce(log: &KafkaLog, topic: &str, docs: &[Vec<u8>]) -> Vec<(u32, i64)> {
    let mut written = Vec::new();
    for p in 0..PARTITIONS {
        let batch: Vec<NewRecord> = docs
            .iter()
            .skip(p as usize)
            .step_by(PARTITIONS as usize)
            .map(|d| NewRecord { key: None, value: d.clone(), timestamp: 1_750_000_000_000 })
            .collect();
        if !batch.is_empty() {
            written.push((p, log.append(topic, p, &batch).await.expect("append")));
        }
    }
    written
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Applies the gateway's messages to a local copy of the result.
struct Follower {
    ws: Ws,
    version: u64,
    result: Value,
    processed: u64,
    caught_up: bool,
}

impl Follower {
    async fn open(url: &str) -> Follower {
        let mut req = url.into_client_request().expect("request");
        req.headers_mut()
            .insert("authorization", format!("Bearer {SUBSCRIBER_KEY}").parse().expect("header"));
        let ws = tokio_tungstenite::connect_async(req).await.expect("gateway websocket").0;
        let mut f =
            Follower { ws, version: 0, result: Value::Null, processed: 0, caught_up: false };
        let first = f.next().await;
        assert_eq!(first["type"], "snapshot", "{first}");
        f
    }

    async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("a message from the gateway in time")
                .expect("open")
                .expect("ok");
            let Message::Text(t) = m else { continue };
            let m: Value = serde_json::from_str(&t).expect("json");
            match m["type"].as_str() {
                Some("snapshot") => {
                    self.result = m["result"].clone();
                    self.version = m["version"].as_u64().expect("version");
                }
                Some("delta") => {
                    assert_eq!(m["from"].as_u64(), Some(self.version), "consecutive: {m}");
                    patch::apply(&mut self.result, &m["patch"]).expect("patch applies");
                    self.version += 1;
                }
                Some("progress") => {}
                _ => panic!("unexpected message {m}"),
            }
            self.processed = m["progress"]["processed"].as_u64().unwrap_or(self.processed);
            self.caught_up = m["caught_up"].as_bool().unwrap_or(self.caught_up);
            return m;
        }
    }

    async fn until_processed(&mut self, processed: u64) {
        while !(self.caught_up && self.processed >= processed) {
            self.next().await;
        }
    }
}

async fn end_to_end(
    flavour: Flavour,
    runtime: RuntimeKind,
    zips: PathBuf,
    kafka: String,
    redis: String,
) {
    let log = KafkaLog::connect(KafkaLogConfig { brokers: kafka.clone(), ..Default::default() })
        .expect("kafka");
    let topic = unique("kappa-e2e");
    log.ensure_topic(&Topic::new(&topic).expect("a valid name"), PARTITIONS).await.expect("topic");
    let docs: Vec<Vec<u8>> =
        (0..3000).map(|i| serde_json::to_vec(&tweet(i)).expect("json")).collect();
    produce(&log, &topic, &docs).await;

    let gw = gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        redis_url: redis.clone(),
        push_tokens: vec![PUSH_TOKEN.into()],
        api_keys: vec![SUBSCRIBER_KEY.into()],
        ..GatewayConfig::default()
    })
    .await
    .expect("gateway");

    let native = || std::fs::read_to_string(Path::new(ROOT).join("manifest.yaml"));
    let manifest = match flavour {
        Flavour::Native => native(),
        Flavour::Blackbox => native().map(|m| blackbox_variant(&m)),
        Flavour::Image => native().map(|m| image_variant(&m, EXAMPLE_IMAGE)),
        Flavour::Wasm => std::fs::read_to_string(Path::new(ROOT).join("manifest.wasm.yaml")),
    }
    .expect("manifest");
    let mut params = Map::new();
    params.insert("KAFKA_BROKERS".into(), json!(kafka));
    params.insert("REDIS_URL".into(), json!(redis));
    params.insert("KAPPA_API_KEYS".into(), json!(WEB_KEY));
    // Small batches, so the replay is a real chain of several links per partition.
    params.insert(
        "KAPPA_CONFIG".into(),
        json!(
            json!({"batch_records": 400, "read_records": 200,
                     "gateway_url": format!("http://{}/v1/internal/deltas", gw.addr),
                     "gateway_token": PUSH_TOKEN})
            .to_string()
        ),
    );
    let platform = RunningPlatform::start(PlatformConfig {
        manifest,
        flavour,
        runtime,
        zips,
        package_params: params,
        api_key: NAMESPACE_KEY.into(),
        limits: Limits::default(),
    })
    .await
    .expect("platform");

    // The user's POST through the web action.
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/web/guest/kappa/query/v1/queries", platform.api_host());
    let body = query_body(&topic);
    let r = http.post(&url).json(&body).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 401, "the web action needs a key");
    let r = http.post(&url).bearer_auth(WEB_KEY).json(&body).send().await.expect("post");
    let status = r.status().as_u16();
    let created: Value = r.json().await.expect("json");
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let ws_path = created["links"]["ws"].as_str().expect("ws link");

    // The gateway's subscriber follows the replay to the head.
    let mut follower = Follower::open(&format!("ws://{}{ws_path}", gw.addr)).await;
    follower.until_processed(docs.len() as u64).await;
    assert_eq!(follower.result, oracle(&body, &docs), "replayed result = one clean pass");

    // Live: new records, the Kafka feed fires its trigger, the rule runs tick, the chain runs.
    let more: Vec<Vec<u8>> =
        (3000..3600).map(|i| serde_json::to_vec(&tweet(i)).expect("json")).collect();
    let written = produce(&log, &topic, &more).await;
    let messages: Vec<Value> = written
        .iter()
        .map(|(p, offset)| json!({"topic": topic, "partition": p, "offset": offset, "key": null, "value": "{}"}))
        .collect();
    assert_eq!(platform.fire("kappa-kafka", &json!({"messages": messages})).await, 202);
    let all: Vec<Vec<u8>> = docs.iter().chain(&more).cloned().collect();
    follower.until_processed(all.len() as u64).await;
    assert_eq!(follower.result, oracle(&body, &all), "live result = one clean pass");

    // The same answer through the status web action.
    let status_url =
        format!("{}/api/v1/web/guest/kappa/status/v1/queries/{id}", platform.api_host());
    let r = http.get(&status_url).bearer_auth(WEB_KEY).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["result"], follower.result);

    platform.settle(Duration::from_millis(300), Duration::from_secs(20)).await;
    let stats = platform.stats();
    println!(
        "{flavour:?}: activations {:?}, peak concurrency {}",
        stats.activations, stats.peak_concurrency
    );
    for pushed in &stats.results["push"] {
        assert_eq!(pushed["gateway"], true, "the gateway accepted every push: {pushed}");
    }
    for action in ["query", "process", "push", "tick", "status"] {
        assert!(stats.activations.get(action).is_some_and(|n| *n > 0), "{action} ran: {stats:?}");
    }
    // The replay: a chain of links per partition. The live wake-up after the append: the
    // feed-triggered tick sends the query's live tail (its open segments, one unit), one
    // activation that reads each partition's new records once and commits them together.
    let processed = &stats.results["process"];
    let replayed: Vec<u64> = processed
        .iter()
        .filter(|r| r["segment"]["end"].is_u64())
        .filter_map(|r| r["segment"]["partition"].as_u64())
        .collect();
    assert!(
        (0..u64::from(PARTITIONS)).all(|p| replayed.contains(&p)),
        "a chain of links per partition: {stats:?}"
    );
    let tail = serde_json::to_value(kappa_core::ports::Segment::TAIL).expect("json");
    assert!(
        processed.iter().any(|r| {
            r["segment"] == tail
                && r["records"] == json!(more.len())
                && r["committed"] == true
                && r["at_head"] == true
        }),
        "the live wake-up ran as one activation of the tail over every partition: {stats:?}"
    );
    assert_eq!(
        (stats.rate_limited, stats.too_large, stats.oversize_results, stats.errors),
        (0, 0, 0, 0),
        "within the default limits, no failed activation: {:?}",
        stats.results
    );
    assert!(stats.peak_concurrency <= Limits::default().concurrent);
    platform.stop().await;
    gw.stop().await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn native_actions_replay_kafka_into_redis_and_reach_a_gateway_websocket() {
    let Some((kafka, redis)) = services() else {
        eprintln!("skipped: set KAFKA_BROKERS and REDIS_URL");
        return;
    };
    let Some(proxy) = RuntimeKind::action_loop() else {
        return missing("the ActionLoop proxy (scripts/openwhisk-tools.sh proxy)");
    };
    let keep = tempfile::tempdir().expect("tempdir");
    let Some(zips) = native_zips(&keep) else {
        return missing(
            "native zips (scripts/build-actions.sh native) or target/debug/kappa-action",
        );
    };
    runtime().block_on(async {
        tokio::time::timeout(
            Duration::from_secs(180),
            end_to_end(Flavour::Native, proxy, zips, kafka, redis),
        )
        .await
        .expect("finishes in time");
    });
}

#[test]
fn wasm_actions_replay_kafka_into_redis_and_reach_a_gateway_websocket() {
    let Some((kafka, redis)) = services() else {
        eprintln!("skipped: set KAFKA_BROKERS and REDIS_URL");
        return;
    };
    let Some(node) = RuntimeKind::nodejs() else {
        return missing("the nodejs:20 runtime (scripts/openwhisk-tools.sh nodejs)");
    };
    let zips = Path::new(ROOT).join("build/actions");
    if !zips.join("process-wasm.zip").exists() {
        return missing("build/actions/*-wasm.zip (scripts/build-actions.sh wasm)");
    }
    runtime().block_on(async {
        tokio::time::timeout(
            Duration::from_secs(180),
            end_to_end(Flavour::Wasm, node, zips, kafka, redis),
        )
        .await
        .expect("finishes in time");
    });
}

#[test]
fn the_controller_enforces_auth_payload_and_rate_limits() {
    runtime().block_on(async {
        let platform = RunningPlatform::start(PlatformConfig {
            manifest: std::fs::read_to_string(Path::new(ROOT).join("manifest.yaml"))
                .expect("manifest"),
            flavour: Flavour::Native,
            // No code: activations fail at once; this test is about admission, not the actions.
            runtime: RuntimeKind::ActionLoop { proxy: PathBuf::from("/bin/false") },
            zips: PathBuf::from("/nonexistent"),
            package_params: Map::new(),
            api_key: NAMESPACE_KEY.into(),
            limits: Limits { invokes_per_minute: 3, fires_per_minute: 2, ..Limits::default() },
        })
        .await
        .expect("platform");
        let http = reqwest::Client::new();
        let invoke = format!("{}/api/v1/namespaces/_/actions/kappa/push", platform.api_host());
        let (user, key) = NAMESPACE_KEY.split_once(':').expect("uuid:key");
        let r = http.post(&invoke).json(&json!({})).send().await.expect("post");
        assert_eq!(r.status().as_u16(), 401, "no key");
        let r = http.post(&invoke).basic_auth(user, Some("wrong")).json(&json!({})).send().await;
        assert_eq!(r.expect("post").status().as_u16(), 401, "wrong key");
        let big = json!({"pad": "x".repeat(1 << 20)});
        let r = http.post(&invoke).basic_auth(user, Some(key)).json(&big).send().await;
        assert_eq!(r.expect("post").status().as_u16(), 413, "payload over 1 MB");
        for _ in 0..3 {
            let r = http.post(&invoke).basic_auth(user, Some(key)).json(&json!({})).send().await;
            assert_eq!(r.expect("post").status().as_u16(), 202);
        }
        let r = http.post(&invoke).basic_auth(user, Some(key)).json(&json!({})).send().await;
        let r = r.expect("post");
        assert_eq!(r.status().as_u16(), 429, "the fourth invoke in a minute");
        let body: Value = r.json().await.expect("json");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("Too many requests in the last minute")),
            "{body}"
        );
        let unknown = format!("{}/api/v1/namespaces/_/actions/kappa/nope", platform.api_host());
        let r = http.post(&unknown).basic_auth(user, Some(key)).json(&json!({})).send().await;
        assert_eq!(r.expect("post").status().as_u16(), 404);
        // A trigger without a rule answers 204; fires are limited per minute too.
        assert_eq!(platform.fire("no-such-rule", &json!({})).await, 204);
        assert_eq!(platform.fire("kappa-alarm", &json!({"tick": true})).await, 202);
        assert_eq!(platform.fire("kappa-alarm", &json!({"tick": true})).await, 429);
        let stats = platform.stats();
        // Refused: the fourth invoke, the alarm rule's invoke (dropped silently, as OpenWhisk does), the third fire.
        assert_eq!((stats.too_large, stats.rate_limited), (1, 3), "{stats:?}");
        platform.stop().await;
    });
}
