//! Benchmarks of the execution model against real Kafka and Redis (figures for BENCHMARKS.md).
//!
//! Run with: `eval "$(scripts/services.sh up)" && cargo run --release -p kappa-runtime --example replay_bench`
//! (`KAPPA_BENCH_RECORDS`, default 300,000, records byte-faithful to the Twitter API). Prints:
//! - replay of the log from Kafka through the process handler into Redis for Q1 (`match`
//!   federer on `text`) and Q2 (terms on hashtags + hourly date_histogram of `created_at` in
//!   Twitter's format): records/s per core of CPU time, next to the pure fold of the same records
//!   in the same process;
//! - per-invocation overhead: an invocation that folds one new record (checkpoint load, read,
//!   CAS, result refresh + delta publish, next link), median and p99 over 200 runs;
//! - peak RSS of one `kappa-action` process running one 10,000-record batch.
#![allow(clippy::disallowed_methods, reason = "a benchmark reads its knobs and the wall clock")]

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use kappa_actions::process::{ProcessEvent, process};
use kappa_actions::{ActionConfig, Context, Env, query};
use kappa_core::ports::{Clock, Link, LogWriter, MemoryChain, MemoryHttp, NewRecord, StateStore};
use kappa_core::{Limits, Plan, Record, Topic};
use kappa_log_kafka::{KafkaLog, KafkaLogConfig};
use kappa_runtime::clock::{SystemClock, TokioTimer};
use kappa_state_redis::{RedisStore, RedisStoreConfig};
use serde_json::json;

/// CPU seconds (user + system) of this process, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn q1(topic: &str) -> serde_json::Value {
    json!({"topic": topic, "size": 0, "query": {"match": {"text": "federer"}}})
}

fn q2(topic: &str) -> serde_json::Value {
    json!({"topic": topic, "size": 0, "aggs": {
        "tags": {"terms": {"field": "entities.hashtags.text", "size": 10}},
        "per_hour": {"date_histogram": {"field": "created_at",
            "format": "EEE MMM dd HH:mm:ss Z yyyy", "fixed_interval": "1h"}}}})
}

/// A log that accounts the wall time spent reading.
struct TimedLog<'a> {
    inner: &'a KafkaLog,
    reading: std::sync::Mutex<f64>,
}

#[async_trait::async_trait]
impl kappa_core::ports::LogReader for TimedLog<'_> {
    async fn partitions(&self, topic: &str) -> kappa_core::ports::PortResult<Option<u32>> {
        self.inner.partitions(topic).await
    }
    async fn watermarks(
        &self,
        topic: &str,
        p: u32,
    ) -> kappa_core::ports::PortResult<kappa_core::ports::Watermarks> {
        self.inner.watermarks(topic, p).await
    }
    async fn read(
        &self,
        topic: &str,
        p: u32,
        r: kappa_core::ports::ReadRequest,
    ) -> kappa_core::ports::PortResult<kappa_core::ports::Batch> {
        let t = Instant::now();
        let b = self.inner.read(topic, p, r).await;
        let dt = t.elapsed().as_secs_f64();
        *self.reading.lock().unwrap_or_else(|e| e.into_inner()) += dt;
        if std::env::var("KAPPA_BENCH_VERBOSE").is_ok()
            && let Ok(b) = &b
        {
            eprintln!(
                "read from {} max {}: {} records in {:.1} ms",
                r.from,
                r.max_records,
                b.records.len(),
                dt * 1e3
            );
        }
        b
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let n: u64 =
        std::env::var("KAPPA_BENCH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300_000);
    let brokers = std::env::var("KAFKA_BROKERS")?;
    let redis = std::env::var("REDIS_URL")?;
    let log = KafkaLog::connect(KafkaLogConfig { brokers: brokers.clone(), extra: vec![] })?;
    let store = RedisStore::connect(&redis, RedisStoreConfig::default()).await?;
    let chain = MemoryChain::default();
    let http = MemoryHttp::default();
    let config = ActionConfig {
        batch_records: 10_000,
        read_records: 2_000,
        split_records: i64::MAX,
        ..ActionConfig::default()
    };
    let timed = TimedLog { inner: &log, reading: std::sync::Mutex::new(0.0) };
    let warm = kappa_actions::warm::WarmStates::new(config.warm_state_bytes);
    let env = Env {
        log: &timed,
        writer: &log,
        store: &store,
        chain: &chain,
        http: &http,
        clock: &SystemClock,
        timer: &TokioTimer,
        config: &config,
        warm: &warm,
    };
    let topic = format!("bench-{}", SystemClock.now_ms());
    log.ensure_topic(&Topic::new(&topic).expect("a valid name"), 1).await?;

    let base = kappa_tweetgen::TweetGen::load_default_base()?;
    let generator = kappa_tweetgen::TweetGen::new(
        base,
        kappa_tweetgen::GenConfig { total: n, ..Default::default() },
    );
    let t = Instant::now();
    let mut bytes = 0usize;
    let mut i = 0;
    while i < n {
        let batch: Vec<NewRecord> = generator
            .iter(i..(i + 5_000).min(n))
            .map(|r| NewRecord {
                key: Some(r.key.into_bytes()),
                value: r.value,
                timestamp: r.timestamp_ms,
            })
            .collect();
        bytes += batch.iter().map(|r| r.value.len()).sum::<usize>();
        i += batch.len() as u64;
        log.append(&topic, 0, &batch).await?;
    }
    println!(
        "produced {n} records ({:.0} MB) to {topic} in {:.1}s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // Warm-up: read the topic once, untimed, so that neither query pays for the broker's first
    // read of freshly produced segments (the first replay's reads took 2-3x longer).
    let mut from = 0;
    while from < n as i64 {
        let request = kappa_core::ports::ReadRequest {
            from,
            end: None,
            max_records: 10_000,
            max_bytes: 64 << 20,
        };
        let batch = kappa_core::ports::LogReader::read(&log, &topic, 0, request).await?;
        if batch.next_offset <= from {
            break;
        }
        from = batch.next_offset;
    }
    // The records in memory, for the pure fold the replay is compared with.
    let in_memory: Vec<_> = generator.iter(0..n.min(300_000)).collect();
    let mut id = String::new();
    for (name, body) in [("Q1", q1(&topic)), ("Q2", q2(&topic))] {
        // Replay: one chain, one invocation at a time, as one core would run it.
        let created = query::create(&env, body.to_string().as_bytes()).await?;
        id = created.body["id"].as_str().unwrap_or_default().to_string();
        *timed.reading.lock().unwrap_or_else(|e| e.into_inner()) = 0.0;
        let (cpu0, t) = (cpu_seconds(), Instant::now());
        let mut invocations = 0;
        loop {
            let events: Vec<ProcessEvent> = chain
                .take()
                .into_iter()
                .filter_map(|link| match link {
                    Link::Process(event) => Some(vec![event]),
                    Link::Group(group) => Some(group.members),
                    Link::Push(_) => None,
                })
                .flatten()
                .collect();
            if events.is_empty() {
                break;
            }
            for event in events {
                let ctx = Context {
                    activation_id: "bench".into(),
                    deadline_ms: SystemClock.now_ms() + 60_000,
                };
                let out = process(&env, &ctx, event).await?;
                if std::env::var("KAPPA_BENCH_VERBOSE").is_ok() {
                    eprintln!(
                        "{} -> {} ({} records, {})",
                        out.from, out.next_offset, out.records, out.stopped
                    );
                }
                invocations += 1;
            }
        }
        let (cpu, wall) = (cpu_seconds() - cpu0, t.elapsed().as_secs_f64());
        let result = store.result(&id).await?;
        let processed = result.as_ref().map_or(0, |r| r.progress.processed);
        let hits = result
            .as_ref()
            .map_or(serde_json::Value::Null, |r| r.result["hits"]["total"]["value"].clone());
        println!(
            "{name} replayed: {processed} of {n} records processed, {hits} hits; {:.1} s of {wall:.1} s wall spent in Kafka reads",
            *timed.reading.lock().unwrap_or_else(|e| e.into_inner())
        );
        println!(
            "{name} replay through process into Redis: {invocations} invocations, {:.0} records/s per CPU second ({:.0} records/s wall, {cpu:.2} CPU s)",
            n as f64 / cpu,
            n as f64 / wall
        );

        // The same records folded directly (best of three), for the ratio.
        let plan = Plan::parse(&body, &Limits::default())?;
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let mut state = plan.empty_state();
            plan.fold_all(
                &mut state,
                in_memory.iter().enumerate().map(|(i, r)| Record {
                    value: &r.value,
                    timestamp: r.timestamp_ms,
                    offset: i as i64,
                    partition: 0,
                    key: None,
                }),
            )?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        let fold = in_memory.len() as f64 / best;
        println!(
            "{name} pure fold in this process: {fold:.0} records/s; replay/fold = {:.0}%",
            100.0 * (n as f64 / cpu) / fold
        );
    }

    // Per-invocation overhead: fold one new record per invocation (the query's live tail).
    let mut times = Vec::new();
    let segment = kappa_core::ports::Segment::TAIL;
    for j in 0..200u64 {
        let r = generator.record(n + j);
        log.append(
            &topic,
            0,
            &[NewRecord { key: None, value: r.value, timestamp: r.timestamp_ms }],
        )
        .await?;
        let ctx =
            Context { activation_id: "bench".into(), deadline_ms: SystemClock.now_ms() + 60_000 };
        let t = Instant::now();
        let out = process(&env, &ctx, ProcessEvent { query: id.clone(), segment }).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.committed && out.records == 1, "{out:?}");
        chain.take();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "per-invocation overhead (1 record: load + read + CAS + refresh/publish + link): median {:.2} ms, p99 {:.2} ms",
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );

    // Peak RSS of one native action process running one 10,000-record batch of a fresh query.
    let body2 = json!({"topic": topic, "aggs": {"tags": {"terms": {"field": "entities.hashtags.text", "size": 10}}, "users": {"cardinality": {"field": "user.screen_name"}}}}).to_string();
    let created = query::create(&env, body2.as_bytes()).await?;
    let id2 = created.body["id"].as_str().unwrap_or_default().to_string();
    let segment = store
        .query(&id2)
        .await?
        .map(|q| q.segments[0])
        .ok_or_else(|| anyhow::anyhow!("query missing"))?;
    let exe = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("kappa-action"))
        .ok_or_else(|| anyhow::anyhow!("no exe dir"))?;
    let mut child = Command::new(&exe)
        .env("KAFKA_BROKERS", &brokers)
        .env("REDIS_URL", &redis)
        .env("__OW_API_HOST", "http://127.0.0.1:9")
        .env("KAPPA_CONFIG", json!({"batch_records": 10_000, "read_records": 2_000}).to_string())
        .env("KAPPA_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "run `cargo build --release -p kappa-runtime` first ({}): {e}",
                exe.display()
            )
        })?;
    let line = json!({"value": {"query": id2, "segment": segment}, "action_name": "/guest/kappa/process", "activation_id": "rss", "deadline": (SystemClock.now_ms() + 60_000).to_string()});
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
    writeln!(stdin, "{line}")?;
    stdin.flush()?;
    let mut out = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("stdout"))?)
        .read_line(&mut out)?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let hwm = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?").to_string();
    drop(stdin);
    let _ = child.wait();
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
    let cp = store.checkpoint(&id2, &segment).await?.map(|c| c.next_offset);
    println!(
        "one kappa-action process, one 10,000-record batch: peak RSS {} (checkpoint now at {cp:?}; result {})",
        hwm.trim_start_matches("VmHWM:").trim(),
        if result.get("error").is_some() {
            "committed; the next link needs an OpenWhisk API host"
        } else {
            "ok"
        }
    );
    Ok(())
}
