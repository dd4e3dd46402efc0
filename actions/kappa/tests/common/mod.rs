//! Test harness: a `kappa dev` server on 127.0.0.1:0 with a temp data dir, clients, an oracle.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use kappa::DevConfig;
use kappa::config::dev_action_config;
use kappa_core::ports::{LogReader, ReadRequest};
use kappa_core::{Limits, Plan, Record};
use serde_json::{Value, json};

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
