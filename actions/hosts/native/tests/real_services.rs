//! The execution model against a real Kafka broker and a real Redis, with the harness playing
//! OpenWhisk's controller (it runs every fired link, concurrently): whatever fails — duplicated
//! or concurrent invocations, a crash between any two steps, a Redis restart, a broker restart,
//! retention deleting early segments, malformed and oversize records — the final result equals a
//! clean one-pass computation over the records the log still holds, and loss is reported.
//!
//! Needs `KAFKA_BROKERS` and `REDIS_URL` (`eval "$(scripts/services.sh up)"`); prints
//! "skipped" without them. Restarts services, so run with `--test-threads=1`.
#![allow(clippy::disallowed_methods, reason = "tests read their service addresses and time waits")]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use kappa_actions::group::process_group_with_faults;
use kappa_actions::process::{Faults, NoFaults, process_with_faults};
use kappa_actions::push::push;
use kappa_actions::{ActionConfig, ActionError, Context, Env, query, status, tick};
use kappa_core::ports::{
    Clock, Link, LogReader, LogWriter, MemoryChain, MemoryHttp, NewRecord, ReadRequest,
};
use kappa_core::{Limits, Plan, Record, Topic};
use kappa_log_kafka::{KafkaLog, KafkaLogConfig};
use kappa_runtime::clock::{SystemClock, TokioTimer};
use kappa_state_redis::{Connection, RedisStore, RedisStoreConfig};
use serde_json::{Value, json};

struct Services {
    log: KafkaLog,
    store: RedisStore<Connection>,
    chain: MemoryChain,
    http: MemoryHttp,
    config: ActionConfig,
    warm: kappa_actions::warm::WarmStates,
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("kappa-it-{what}-{}-{nanos:x}", std::process::id())
}

async fn services(config: ActionConfig) -> Option<Services> {
    let (Ok(brokers), Ok(redis)) = (std::env::var("KAFKA_BROKERS"), std::env::var("REDIS_URL"))
    else {
        println!("skipped: KAFKA_BROKERS and REDIS_URL not set");
        return None;
    };
    let log = KafkaLog::connect(KafkaLogConfig { brokers, extra: vec![] }).expect("kafka client");
    let store =
        RedisStore::connect(&redis, RedisStoreConfig { key_prefix: unique("k"), ring: 256 })
            .await
            .expect("redis");
    Some(Services {
        log,
        store,
        chain: MemoryChain::default(),
        http: MemoryHttp::default(),
        warm: kappa_actions::warm::WarmStates::new(config.warm_state_bytes),
        config,
    })
}

impl Services {
    fn env(&self) -> Env<'_> {
        Env {
            log: &self.log,
            writer: &self.log,
            store: &self.store,
            chain: &self.chain,
            http: &self.http,
            clock: &SystemClock,
            timer: &TokioTimer,
            config: &self.config,
            warm: &self.warm,
        }
    }
}

fn ctx() -> Context {
    Context { activation_id: "it".into(), deadline_ms: SystemClock.now_ms() + 60_000 }
}

/// Real tweets from the generator, plus junk: malformed and oversize records.
async fn fill(s: &Services, topic: &str, partitions: u32, per_partition: u64) {
    s.log.ensure_topic(&Topic::new(topic).expect("a valid name"), partitions).await.expect("topic");
    let base = kappa_tweetgen::TweetGen::load_default_base().expect("run scripts/fetch-tweets.sh");
    let generator = kappa_tweetgen::TweetGen::new(
        base,
        kappa_tweetgen::GenConfig {
            total: per_partition * u64::from(partitions),
            ..Default::default()
        },
    );
    for p in 0..partitions {
        let mut records: Vec<NewRecord> = (0..per_partition)
            .map(|i| {
                let r = generator.record(i * u64::from(partitions) + u64::from(p));
                NewRecord {
                    key: Some(r.key.into_bytes()),
                    value: r.value,
                    timestamp: r.timestamp_ms,
                }
            })
            .collect();
        records[3].value = b"{\"text\": truncated".to_vec();
        records[7].value = b"not json at all".to_vec();
        // An oversize record: valid JSON, ~600 KB of text.
        records[11].value =
            serde_json::to_vec(&json!({"text": "federer ".repeat(75_000), "lang": "en"}))
                .expect("json");
        for chunk in records.chunks(500) {
            s.log.append(topic, p, chunk).await.expect("append");
        }
    }
}

fn body(topic: &str) -> Value {
    json!({"topic": topic,
           "aggs": {"tags": {"terms": {"field": "entities.hashtags.text", "size": 10}},
                    "per_hour": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h"}},
                    "langs": {"terms": {"field": "lang"}},
                    "rt": {"stats": {"field": "retweet_count"}},
                    "fed": {"filter": {"match": {"text": "federer"}}}},
           "size": 3, "sort": [{"retweet_count": "desc"}], "_source": ["id_str", "retweet_count"]})
}

async fn oracle(s: &Services, topic: &str, body: &Value) -> Value {
    let plan = Plan::parse(body, &Limits::default()).expect("valid");
    let mut state = plan.empty_state();
    for p in 0..s.log.partitions(topic).await.expect("ok").expect("topic") {
        // A fresh topic's watermarks can lag the appends for a moment: wait for them.
        let mut w = s.log.watermarks(topic, p).await.expect("ok");
        for _ in 0..50 {
            if w.high > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            w = s.log.watermarks(topic, p).await.expect("ok");
        }
        let mut from = w.low;
        while from < w.high {
            let batch = s
                .log
                .read(
                    topic,
                    p,
                    ReadRequest { from, end: None, max_records: 5000, max_bytes: usize::MAX },
                )
                .await
                .expect("read");
            let recs = batch.records.iter().map(|r| Record {
                value: &r.value,
                timestamp: r.timestamp,
                offset: r.offset,
                partition: p as i32,
                key: r.key.as_deref(),
            });
            plan.fold_all(&mut state, recs).expect("folds");
            from = batch.next_offset;
        }
    }
    plan.render(&state).expect("renders")
}

struct CrashAt(&'static str, AtomicUsize);

impl Faults for CrashAt {
    fn at(&self, step: &'static str) -> Result<(), ActionError> {
        if step == self.0
            && self.1.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err(ActionError::BadEvent(format!("injected crash at {step}")));
        }
        Ok(())
    }
}

/// Run fired links until none are left; `between` runs after every round (restarts etc.).
async fn drain(s: &Services, faults: &dyn Faults, duplicate: bool, mut between: impl FnMut(usize)) {
    for round in 0.. {
        let mut links = s.chain.take();
        if links.is_empty() {
            // Dropped links (crashes) are resumed by the safety-net tick.
            let t = tick::tick(&s.env(), None).await.expect("tick");
            if t.fired == 0 {
                return;
            }
            links = s.chain.take();
        }
        assert!(round < 5_000, "the chain does not terminate");
        if duplicate {
            links = links.iter().cloned().chain(links.iter().cloned()).collect();
        }
        let env = s.env();
        let runs = links.into_iter().map(|link| async move {
            match link {
                Link::Process(e) => {
                    let _ = process_with_faults(&env, &ctx(), e, faults).await;
                }
                Link::Group(g) => {
                    let _ = process_group_with_faults(&env, &ctx(), &g.members, faults).await;
                }
                Link::Push(e) => {
                    let _ = push(&env, e).await;
                }
            }
        });
        futures_join(runs).await;
        between(round);
    }
}

/// Run futures concurrently on this task (the harness's invoker: many activations in flight).
async fn futures_join<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let futs: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut futs: Vec<Option<std::pin::Pin<Box<F>>>> = futs.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in futs.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
}

fn config() -> ActionConfig {
    ActionConfig {
        batch_records: 150,
        read_records: 50,
        split_records: 400,
        max_segments_per_partition: 3,
        // One batch per invocation, so that crashes and restarts fall between many links.
        fill_activation_percent: 0,
        ..ActionConfig::default()
    }
}

async fn check(s: &Services, topic: &str, id: &str, expect_lost: u64) {
    let got = status::status(&s.env(), id).await.expect("status").body;
    let want = oracle(s, topic, &body(topic)).await;
    assert_eq!(got["result"], want, "result differs from one clean pass");
    assert_eq!(got["caught_up"], json!(true));
    assert_eq!(got["progress"]["lost"].as_u64().unwrap_or(0), expect_lost);
    assert_eq!(got["progress"]["lag"], json!(0));
    if expect_lost == 0 {
        assert!(
            got["progress"]["skipped"].as_u64().unwrap_or(0) >= 2,
            "malformed records are counted as skipped: {}",
            got["progress"]
        );
    }
}

fn script(name: &str, arg: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../..");
    let ok = Command::new(format!("{root}/scripts/{name}"))
        .arg(arg)
        .status()
        .expect("script runs")
        .success();
    assert!(ok, "scripts/{name} {arg} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_concurrent_invocations_count_every_record_once() {
    // As deployed: each invocation runs rounds until most of its activation is used.
    let Some(s) = services(ActionConfig { fill_activation_percent: 80, ..config() }).await else {
        return;
    };
    let topic = unique("dup");
    fill(&s, &topic, 3, 600).await;
    let id = query::create(&s.env(), body(&topic).to_string().as_bytes())
        .await
        .expect("created")
        .body["id"]
        .as_str()
        .expect("id")
        .to_string();
    drain(&s, &NoFaults, true, |_| {}).await;
    check(&s, &topic, &id, 0).await;
    let got = status::status(&s.env(), &id).await.expect("status").body;
    assert_eq!(got["progress"]["processed"], json!(1800));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_every_two_steps_loses_and_doubles_nothing() {
    let Some(s) = services(config()).await else { return };
    for step in ["loaded", "folded", "committed", "refreshed"] {
        let topic = unique(step);
        fill(&s, &topic, 2, 400).await;
        let id = query::create(&s.env(), body(&topic).to_string().as_bytes())
            .await
            .expect("created")
            .body["id"]
            .as_str()
            .expect("id")
            .to_string();
        drain(&s, &CrashAt(step, AtomicUsize::new(4)), false, |_| {}).await;
        check(&s, &topic, &id, 0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_kafka_restarts_mid_replay_lose_and_double_nothing() {
    let Some(s) = services(config()).await else { return };
    let topic = unique("restart");
    fill(&s, &topic, 2, 800).await;
    let id = query::create(&s.env(), body(&topic).to_string().as_bytes())
        .await
        .expect("created")
        .body["id"]
        .as_str()
        .expect("id")
        .to_string();
    drain(&s, &NoFaults, false, |round| match round {
        1 => script("redis.sh", "restart"),
        3 => script("kafka.sh", "restart"),
        _ => {}
    })
    .await;
    check(&s, &topic, &id, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_segments_deleted_by_retention_are_reported_as_loss() {
    let Some(s) = services(ActionConfig { split_records: 1_000_000, ..config() }).await else {
        return;
    };
    let topic = unique("retention");
    fill(&s, &topic, 1, 500).await;
    let id = query::create(&s.env(), body(&topic).to_string().as_bytes())
        .await
        .expect("created")
        .body["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Retention deletes the first 200 records before the query reads them.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", std::env::var("KAFKA_BROKERS").unwrap_or_default())
            .create()
            .expect("admin");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(200)).expect("tpl");
    admin.delete_records(&tpl, &rdkafka::admin::AdminOptions::new()).await.expect("delete records");
    drain(&s, &NoFaults, false, |_| {}).await;
    check(&s, &topic, &id, 200).await;
}
