//! Test harness: a `kappa dev` server on 127.0.0.1:0 with a temp data dir, clients, an oracle.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use futures_util::StreamExt;
use kappa::DevConfig;
use kappa::config::dev_action_config;
use kappa_core::patch;
use kappa_core::ports::{LogReader, ReadRequest};
use kappa_core::{Limits, Plan, Record};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub struct Srv {
    pub running: kappa::Running,
    pub base: String,
    pub key: Option<String>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Which backends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    /// Real Kafka and Redis from `KAFKA_BROKERS` and `REDIS_URL`.
    Real,
}

#[allow(clippy::disallowed_methods, reason = "tests take their backends from the environment")]
pub fn real_backends() -> Option<(String, String)> {
    let k = std::env::var("KAFKA_BROKERS").ok().filter(|s| !s.is_empty())?;
    let r = std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty())?;
    Some((k, r))
}

#[allow(clippy::disallowed_methods, reason = "unique names across runs on a shared Kafka/Redis")]
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{prefix}-{pid}-{t}-{n}")
}

pub async fn start(backend: Backend, tweak: impl FnOnce(&mut DevConfig)) -> Srv {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = DevConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        partitions: 3,
        tick_ms: 200,
        action: dev_action_config(),
        ..DevConfig::default()
    };
    if backend == Backend::Real {
        let (k, r) = real_backends().expect("real backends");
        config.kafka_brokers = Some(k);
        config.redis_url = Some(r);
        config.redis_prefix = unique("kappa-test");
    }
    tweak(&mut config);
    let key = config.api_keys.first().cloned();
    let running = kappa::start(config).await.expect("server starts");
    let base = format!("http://{}", running.addr);
    Srv { running, base, key, http: reqwest::Client::new(), _dir: dir }
}

impl Srv {
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut rb = self.auth(self.http.request(method, self.url(path)));
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(serde_json::to_vec(body).expect("json"))).await
    }

    pub async fn ingest(&self, topic: &str, docs: &[Value]) -> Value {
        let body: Vec<u8> = docs
            .iter()
            .flat_map(|d| {
                let mut l = serde_json::to_vec(d).expect("json");
                l.push(b'\n');
                l
            })
            .collect();
        let (s, v) = self
            .send(reqwest::Method::POST, &format!("/v1/topics/{topic}/records"), Some(body))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn query(&self, body: &Value) -> String {
        let (s, v) = self.post("/v1/queries", body).await;
        assert!(s == 201 || s == 200, "{s} {v}");
        v["id"].as_str().expect("id").to_string()
    }

    /// GET until caught up with `processed` records at least.
    pub async fn caught_up(&self, id: &str, processed: u64) -> Value {
        for _ in 0..600 {
            let (s, v) = self.get(&format!("/v1/queries/{id}")).await;
            assert_eq!(s, 200, "{v}");
            if v["caught_up"] == true && v["progress"]["processed"].as_u64() >= Some(processed) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("query {id} never caught up");
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.running.addr)
    }
}

pub fn tweet(i: u64) -> Value {
    let tags = ["wimbledon", "federer", "ace", "rain", "nadal"];
    json!({
        "text": if i.is_multiple_of(3) { format!("Federer ace number {i}") } else { format!("rain delay {i}") },
        "n": i % 17,
        "user": {"id": i % 11, "screen_name": format!("u{}", i % 7)},
        "entities": {"hashtags": [{"text": tags[(i % 5) as usize]}]},
        "retweet_count": (i * 7919) % 1000,
    })
}

pub fn sample_query(topic: &str) -> Value {
    json!({"topic": topic,
           "query": {"bool": {"must_not": [{"term": {"n": 3}}]}},
           "aggs": {"tags": {"terms": {"field": "entities.hashtags.text", "size": 10}},
                    "users": {"cardinality": {"field": "user.screen_name"}},
                    "avg_n": {"avg": {"field": "n"}},
                    "fed": {"filter": {"match": {"text": "federer"}}}},
           "size": 3, "sort": [{"retweet_count": "desc"}]})
}

/// One clean pass of `body` over everything `log` holds for its topic.
pub async fn oracle(log: &dyn LogReader, body: &Value) -> Value {
    let plan = Plan::parse(body, &Limits::default()).expect("valid");
    let topic = body["topic"].as_str().expect("topic");
    let mut state = plan.empty_state();
    for p in 0..log.partitions(topic).await.expect("ok").expect("topic") {
        let wm = log.watermarks(topic, p).await.expect("ok");
        let mut from = wm.low;
        while from < wm.high {
            let batch = log
                .read(
                    topic,
                    p,
                    ReadRequest {
                        from,
                        end: Some(wm.high),
                        max_records: 10_000,
                        max_bytes: usize::MAX,
                    },
                )
                .await
                .expect("ok");
            let recs = batch.records.iter().map(|r| Record {
                value: &r.value,
                timestamp: r.timestamp,
                offset: r.offset,
                partition: p as i32,
                key: r.key.as_deref(),
            });
            plan.fold_all(&mut state, recs).expect("folds");
            if batch.next_offset <= from {
                break;
            }
            from = batch.next_offset;
        }
    }
    plan.render(&state).expect("renders")
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws_connect(srv: &Srv, path: &str) -> Ws {
    ws_open(&srv.ws_url(path), srv.key.as_deref()).await
}

/// A websocket to `url`, with a bearer key if given.
pub async fn ws_open(url: &str, key: Option<&str>) -> Ws {
    let mut req = url.into_client_request().expect("request");
    if let Some(k) = key {
        req.headers_mut().insert("authorization", format!("Bearer {k}").parse().expect("header"));
    }
    tokio_tungstenite::connect_async(req).await.expect("websocket connects").0
}

pub async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("message in time");
        match m.expect("open").expect("ok") {
            Message::Text(t) => return serde_json::from_str(&t).expect("json"),
            Message::Close(_) => panic!("closed"),
            _ => {}
        }
    }
}

pub struct SseClient {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl SseClient {
    pub async fn open(srv: &Srv, path: &str, last_event_id: Option<u64>) -> SseClient {
        SseClient::open_url(&srv.url(path), srv.key.as_deref(), last_event_id).await
    }

    /// SSE from `url`, with a bearer key and a `Last-Event-ID` if given.
    pub async fn open_url(url: &str, key: Option<&str>, last_event_id: Option<u64>) -> SseClient {
        let mut rb = reqwest::Client::new().get(url);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(v) = last_event_id {
            rb = rb.header("last-event-id", v.to_string());
        }
        let r = rb.send().await.expect("sse");
        assert_eq!(r.status().as_u16(), 200);
        SseClient { stream: Box::pin(r.bytes_stream()), buf: Vec::new() }
    }

    /// (event id, message)
    pub async fn next(&mut self) -> (Option<u64>, Value) {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..i + 2).collect();
                let text = String::from_utf8_lossy(&event).to_string();
                let mut id = None;
                let mut data = None;
                for l in text.lines() {
                    if let Some(v) = l.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    }
                    if let Some(v) = l.strip_prefix("data:") {
                        data = Some(v.trim().to_string());
                    }
                }
                if let Some(d) = data {
                    return (id, serde_json::from_str(&d).expect("json"));
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.stream.next())
                .await
                .expect("event in time")
                .expect("open")
                .expect("ok");
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// Follows a stream: applies snapshots and deltas, checking versions are consecutive.
#[derive(Default)]
pub struct Follower {
    pub id: Option<String>,
    pub version: Option<u64>,
    pub result: Value,
    pub snapshots: usize,
}

impl Follower {
    pub fn apply(&mut self, m: &Value) {
        match m["type"].as_str() {
            Some("snapshot") => {
                self.id = m["id"].as_str().map(str::to_string);
                self.version = m["version"].as_u64();
                self.result = m["result"].clone();
                self.snapshots += 1;
            }
            Some("delta") => {
                let v = self.version.expect("a delta after a snapshot");
                assert_eq!(m["from"].as_u64(), Some(v), "delta applies to the version held: {m}");
                assert_eq!(m["version"].as_u64(), Some(v + 1), "consecutive versions: {m}");
                patch::apply(&mut self.result, &m["patch"]).expect("patch applies");
                self.version = Some(v + 1);
            }
            Some("progress") => {
                assert_eq!(
                    m["version"].as_u64(),
                    self.version,
                    "progress at the version held: {m}"
                );
            }
            other => panic!("unexpected message {other:?}: {m}"),
        }
    }
}
