//! Push benchmarks of `kappa dev` (figures for BENCHMARKS.md), against the real binary in its own
//! process (so client and server sockets each fit in the file-descriptor limit).
//!
//! Run with: `cargo build --release -p kappa && cargo run --release -p kappa --example push_bench`
//! Prints:
//! - produce → delta latency on a websocket, p50/p99, at 5,000 records/s with 100 distinct queries
//!   and 1,000 subscribers;
//! - fan-out: 10,000 websocket subscribers of one query all receive a delta, p99;
//! - sharing: server CPU for 1,000 identical queries vs one, over the same 1,000,000-record ingest;
//! - stuck: RSS and `/healthz` latency with 1,000 websocket and 1,000 SSE clients that never read;
//! - pathological: produce → delta of ordinary queries alone and beside a costly regex query.
//!
//! - distinct: server CPU of 100 distinct queries on tweets at 5,000 records/s vs one of each kind;
//! - latency_distinct: produce → delta with 1,000 distinct queries and 1,000 subscribers
//!   (`PUSH_BENCH_DISTINCT_QUERIES=100`: that many queries, the subscribers spread over them);
//! - replay: 100 distinct queries registered at once over 200,000 tweets vs one, and one
//!   registered halfway through another's replay;
//! - idle: RSS and CPU of `kappa dev` with 10,000 registered idle queries (the desk mix); with
//!   `REDIS_URL` set (`scripts/redis.sh start`), also against Redis and the memory each query's
//!   state takes there (`used_memory` before and after, and `MEMORY USAGE` of its keys).
//!
//! `PUSH_BENCH_ONLY=latency|fanout|sharing|stuck|pathological|distinct|latency_distinct|replay|idle` runs one figure; `PUSH_BENCH_SERVER_ARGS="--workers 8"`
//! passes flags to the server; `PUSH_BENCH_DUMP=FILE` writes min/median/max latency per batch;
//! `PUSH_BENCH_SERVER_CPUS=1` pins the server to CPU 1 (`taskset -c`);
//! `PUSH_BENCH_PARTITIONS=N` gives the server's topics N partitions instead of 4;
//! `PUSH_BENCH_SERVER_LOG=FILE` keeps the server's stderr (`{port}` in it names each server's; `PUSH_BENCH_SERVER_LOG_LEVEL` sets
//! its `KAPPA_LOG`); `PUSH_BENCH_DISTINCT_ONLY=100` runs only the distinct figure's
//! configurations whose label contains it.
#![allow(clippy::disallowed_methods, reason = "a benchmark reads the wall clock and its knobs")]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Per subscriber: (arrival, records processed) of every message received.
type MessageLog = Arc<Mutex<Vec<(Instant, u64)>>>;

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(port: u16) -> Server {
    start_with(port, &[])
}

/// [`start`] with extra server flags (e.g. `--redis-url`).
fn start_with(port: u16, extra: &[String]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("kappa")))
        .expect("exe dir");
    // `PUSH_BENCH_SERVER_CPUS=1` pins the server to those CPUs (`taskset -c`, which execs it:
    // the child's pid, and so its CPU time, stay the server's), as the figures "on one core" ask.
    let mut command = match std::env::var("PUSH_BENCH_SERVER_CPUS") {
        Ok(cpus) => {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", &cpus]).arg(exe);
            taskset
        }
        Err(_) => Command::new(exe),
    };
    let child = command
        .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        // `PUSH_BENCH_PARTITIONS=N`: topics of N partitions instead of 4 (so N live segments
        // per query).
        .args([
            "--partitions",
            &std::env::var("PUSH_BENCH_PARTITIONS").unwrap_or_else(|_| "4".into()),
        ])
        .args(["--subscriber-buffer", "256"])
        .args(extra)
        // The backends are the flags' alone (the server reads these too, e.g. the `REDIS_URL`
        // of the idle figure's Redis run).
        .env_remove("REDIS_URL")
        .env_remove("KAFKA_BROKERS")
        // Extra server flags to compare settings (e.g. `--workers 16`).
        .args(std::env::var("PUSH_BENCH_SERVER_ARGS").unwrap_or_default().split_whitespace())
        // `PUSH_BENCH_SERVER_LOG_LEVEL=kappa=debug` shows each live run's length.
        .env(
            "KAPPA_LOG",
            std::env::var("PUSH_BENCH_SERVER_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(
            std::env::var("PUSH_BENCH_SERVER_LOG")
                .ok()
                .map(|f| f.replace("{port}", &port.to_string()))
                .and_then(|f| std::fs::File::create(f).ok())
                .map_or(Stdio::null(), Stdio::from),
        )
        .spawn()
        .expect("run `cargo build --release -p kappa` first");
    Server { child, base: format!("127.0.0.1:{port}"), _dir: dir }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    (f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0))
        / 100.0
}

fn doc(i: u64) -> Value {
    json!({"text": format!("tweet {i}"), "n": i % 100, "tag": format!("t{}", i % 37)})
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if http.get(format!("http://{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

async fn ingest(http: &reqwest::Client, base: &str, from: u64, n: u64) {
    ingest_docs(http, base, from, n, &json_lines(doc)).await;
}

/// Writes record `i` as one NDJSON line.
type Lines = Arc<dyn Fn(u64, &mut Vec<u8>) + Send + Sync>;

fn json_lines(make: fn(u64) -> Value) -> Lines {
    Arc::new(move |i, out: &mut Vec<u8>| {
        out.extend_from_slice(make(i).to_string().as_bytes());
        out.push(b'\n');
    })
}

/// Tweets byte for byte as the Twitter API sends them (`kappa-tweetgen`'s default format).
fn tweet_lines() -> Lines {
    let base = kappa_tweetgen::TweetGen::load_default_base().expect("the tweets of tests/data");
    let tweets = kappa_tweetgen::TweetGen::new(base, kappa_tweetgen::GenConfig::default());
    Arc::new(move |i, out: &mut Vec<u8>| {
        tweets.write_record(i, out);
        out.push(b'\n');
    })
}

async fn ingest_docs(http: &reqwest::Client, base: &str, from: u64, n: u64, lines: &Lines) {
    let mut body = Vec::new();
    for i in from..from + n {
        lines(i, &mut body);
    }
    let r = http
        .post(format!("http://{base}/v1/topics/bench/records"))
        .body(body)
        .send()
        .await
        .expect("ingest");
    assert!(r.status().is_success(), "ingest: {}", r.status());
}

async fn create(http: &reqwest::Client, base: &str, body: &Value) -> String {
    let r: Value = http
        .post(format!("http://{base}/v1/queries"))
        .json(body)
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    r["id"].as_str().unwrap_or_else(|| panic!("no id: {r}")).to_string()
}

/// Query `i` of the newsroom's desk mix on the bench topic.
fn desk_query(i: usize) -> Value {
    kappa_tweetgen::desk_query("bench", i)
}

/// Wait until every query of `ids` is caught up with `records` processed; returns when the
/// last one was, or `None` after `limit`.
async fn all_caught_up(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    records: u64,
    limit: Duration,
) -> Option<Instant> {
    let started = Instant::now();
    let mut waiting: Vec<&String> = ids.iter().collect();
    while !waiting.is_empty() {
        if started.elapsed() > limit {
            return None;
        }
        let mut still = Vec::new();
        for id in waiting {
            let status: Value =
                match http.get(format!("http://{base}/v1/queries/{id}")).send().await {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => Value::Null,
                };
            let done = status["caught_up"] == json!(true)
                && status["progress"]["processed"].as_u64().unwrap_or(0) >= records;
            if !done {
                still.push(id);
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Some(Instant::now())
}

/// Fresh servers each figure of `distinct` and `replay` is the median of: `PUSH_BENCH_ROUNDS`,
/// 3 by default.
fn rounds() -> usize {
    std::env::var("PUSH_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

/// `progress.processed` of a pushed message, found without parsing the rest: every message
/// type puts `progress` before its `result` or `patch`, and the benchmark's documents have
/// no field of that name.
fn processed(text: &str) -> Option<u64> {
    let at = text.find("\"processed\":")? + "\"processed\":".len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    text[at..at + digits].parse().ok()
}

/// Subscribe and record, for every message, (arrival, processed).
async fn subscribe(base: &str, id: &str, log: MessageLog) -> tokio::task::JoinHandle<()> {
    // An 8 KiB read buffer instead of tungstenite's 128 KiB, which it zeroes before every
    // read: that was a quarter of the clients' CPU, taken from the server on these 2 cores.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 << 10);
    let url = format!("ws://{base}/v1/queries/{id}/ws");
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), false).await.expect("ws");
    tokio::spawn(async move {
        let (_, mut rx) = ws.split();
        while let Some(Ok(m)) = rx.next().await {
            // Only the field the figures need: the clients share the server's 2 cores, and
            // decoding whole messages took a third of what the server had.
            if let Ok(text) = m.to_text() {
                let processed = processed(text).unwrap_or(0);
                log.lock().await.push((Instant::now(), processed));
            }
        }
    })
}

/// Produce → delta latencies (ms) of every batch at every subscriber: `subscribers` websockets
/// spread over `ids`, records of `make` posted in batches of 100 at `rate` records/s for
/// `seconds`. Also returns how many batch×subscriber observations there were.
async fn produce_to_delta(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    subscribers: usize,
    rate: u64,
    seconds: u64,
    lines: &Lines,
) -> (Vec<f64>, usize) {
    let logs: Vec<MessageLog> =
        (0..subscribers).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let mut tasks = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        tasks.push(subscribe(base, &ids[i % ids.len()], log.clone()).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_batch = 100u64;
    let mut posts: Vec<(Instant, u64)> = Vec::new();
    let start_at = Instant::now();
    // Records already in the topic: every query's `processed` counts them too.
    let mut sent = 100u64;
    for k in 0..(rate * seconds / per_batch) {
        let due = start_at + Duration::from_micros(k * per_batch * 1_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let t = Instant::now();
        ingest_docs(http, base, sent, per_batch, lines).await;
        sent += per_batch;
        posts.push((t, sent));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut latencies = Vec::new();
    for log in &logs {
        let log = log.lock().await;
        for (t_post, total) in &posts {
            // The first message whose result covers this batch.
            if let Some((arrival, _)) = log.iter().find(|(_, p)| p >= total) {
                latencies.push(arrival.saturating_duration_since(*t_post).as_secs_f64() * 1e3);
            }
        }
    }
    if let Ok(path) = std::env::var("PUSH_BENCH_DUMP") {
        let mut out = String::new();
        for (k, (t_post, total)) in posts.iter().enumerate() {
            let mut per: Vec<f64> = Vec::new();
            for log in &logs {
                let log = log.lock().await;
                if let Some((arrival, _)) = log.iter().find(|(_, p)| p >= total) {
                    per.push(arrival.saturating_duration_since(*t_post).as_secs_f64() * 1e3);
                }
            }
            let t = t_post.duration_since(start_at).as_secs_f64() * 1e3;
            out += &format!(
                "{k} {t:.0} {:.1} {:.1} {:.1}\n",
                percentile(&mut per, 0.0),
                percentile(&mut per, 0.5),
                percentile(&mut per, 1.0)
            );
        }
        let _ = std::fs::write(path, out);
    }
    tasks.iter().for_each(|t| t.abort());
    (latencies, posts.len() * logs.len())
}

/// Resident memory of `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A record with 1.5 KB of text: five of them make a ~7.5 KB result.
fn wide_doc(i: u64) -> Value {
    let text: String = (0..1500).map(|k| char::from(b'a' + ((i * 7 + k) % 26) as u8)).collect();
    json!({"seq": i, "tag": format!("t{}", i % 37), "n": i % 100, "text": text})
}

/// A record with a 2,000-character field of `a`s and `b`s for the pathological regex.
fn ab_doc(i: u64) -> Value {
    let ab: String = (0..2000u64)
        .map(|k| if (i.wrapping_mul(2_654_435_761) >> (k % 29)) & 1 == 1 { 'a' } else { 'b' })
        .collect();
    json!({"text": format!("tweet {i}"), "n": i % 100, "tag": format!("t{}", i % 37), "ab": ab})
}

/// A client that opens a push stream and never reads it, with a 4 KiB receive window so the
/// server's socket buffer fills after a few messages.
async fn stuck_client(base: &str, request: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(base.parse().expect("addr")).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("request");
    stream
}

/// `GET /healthz` every 10 ms until `stop`; the latencies, ms.
async fn probe_health(base: String, stop: tokio::sync::watch::Receiver<bool>) -> Vec<f64> {
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    while !*stop.borrow() {
        let t = Instant::now();
        let ok = http
            .get(format!("http://{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        latencies.push(if ok { t.elapsed().as_secs_f64() * 1e3 } else { f64::INFINITY });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies
}

#[tokio::main]
async fn main() {
    let http = reqwest::Client::new();

    // `PUSH_BENCH_ONLY=latency|fanout|sharing|stuck|pathological` runs one figure.
    let only = std::env::var("PUSH_BENCH_ONLY").ok();
    let runs = |figure: &str| only.as_deref().is_none_or(|o| o == figure);
    if runs("latency") {
        // 1. Latency at 5,000 records/s, 100 distinct queries, 1,000 subscribers.
        let s = start(18431);
        wait_up(&http, &s.base).await;
        ingest(&http, &s.base, 0, 100).await;
        let mut ids = Vec::new();
        for q in 0..100 {
            ids.push(create(&http, &s.base, &json!({"topic": "bench", "aggs": {"tags": {"terms": {"field": "tag", "size": q + 1}}, "n": {"stats": {"field": "n"}}}})).await);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (mut latencies, observations) =
            produce_to_delta(&http, &s.base, &ids, 1000, 5_000, 10, &json_lines(doc)).await;
        let covered = latencies.len();
        println!(
            "produce→delta at 5,000 records/s, 100 queries, 1,000 ws subscribers: p50 {:.1} ms, p99 {:.1} ms ({covered} batch×subscriber observations of {})",
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
            observations
        );
        drop(s);
    }
    if runs("fanout") {
        // 2. Fan-out: 10,000 subscribers of one query.
        let s = start(18432);
        wait_up(&http, &s.base).await;
        ingest(&http, &s.base, 0, 100).await;
        let id = create(
            &http,
            &s.base,
            &json!({"topic": "bench", "aggs": {"n": {"sum": {"field": "n"}}}}),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let logs: Vec<MessageLog> = (0..10_000).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
        let mut tasks = Vec::new();
        for log in &logs {
            tasks.push(subscribe(&s.base, &id, log.clone()).await);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t = Instant::now();
        ingest(&http, &s.base, 100, 100).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut fan = Vec::new();
        for log in &logs {
            if let Some((arrival, _)) = log.lock().await.iter().find(|(_, p)| *p >= 200) {
                fan.push(arrival.saturating_duration_since(t).as_secs_f64() * 1e3);
            }
        }
        println!(
            "fan-out to {} of 10,000 ws subscribers of one query: p50 {:.0} ms, p99 {:.0} ms",
            fan.len(),
            percentile(&mut fan, 0.5),
            percentile(&mut fan, 0.99)
        );
        tasks.iter().for_each(|t| t.abort());
        drop(s);
    }
    if runs("sharing") {
        // 3. Sharing: CPU of 1,000 identical queries vs one, over the same 1,000,000-record ingest
        //    (large enough that /proc's 10 ms CPU resolution does not decide the ratio). The one
        //    computation's CPU varies by ±20% from run to run (how many batches each invocation
        //    coalesces depends on timing), so each side is the median of three fresh servers,
        //    alternated.
        let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for round in 0..3u16 {
            for (side, copies) in [1u16, 1000].into_iter().enumerate() {
                let s = start(18433 + round * 2 + side as u16);
                wait_up(&http, &s.base).await;
                ingest(&http, &s.base, 0, 100).await;
                let body = json!({"topic": "bench", "aggs": {"tags": {"terms": {"field": "tag"}}}});
                for _ in 0..copies {
                    create(&http, &s.base, &body).await;
                }
                // Measured over the ingest and its computation, after the POSTs themselves.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let c0 = cpu_seconds(s.child.id());
                for k in 0..1_000 {
                    ingest(&http, &s.base, 100 + k * 1000, 1000).await;
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
                cpu[side].push(cpu_seconds(s.child.id()) - c0);
            }
        }
        let one = percentile(&mut cpu[0], 0.5);
        let many = percentile(&mut cpu[1], 0.5);
        let runs = |v: &[f64]| v.iter().map(|c| format!("{c:.2}")).collect::<Vec<_>>().join(", ");
        println!(
            "sharing: server CPU over a 1,000,000-record ingest (median of 3): {one:.2} s with 1 query, {many:.2} s with 1,000 identical ones (ratio {:.3}; runs {} vs {})",
            many / one,
            runs(&cpu[0]),
            runs(&cpu[1])
        );
    }
    if runs("distinct") {
        // 6. Many distinct queries, one pass: server CPU while 100 distinct queries (the desk
        //    mix) tail tweets at 5,000 records/s, against one of each kind alone.
        // One query's CPU varies by ±30% from run to run (how many records each wake-up
        // carries depends on timing), so each figure is the median of `PUSH_BENCH_ROUNDS` (3)
        // fresh servers, the configurations alternated.
        let lines = tweet_lines();
        let seconds = 20u64;
        let rounds = rounds();
        let configurations = [
            ("terms", vec![desk_query(0)]),
            ("date_histogram", vec![desk_query(1)]),
            ("match+terms", vec![desk_query(2)]),
            ("range+stats", vec![desk_query(3)]),
            ("100 distinct", (0..100).map(desk_query).collect::<Vec<_>>()),
        ];
        let only = std::env::var("PUSH_BENCH_DISTINCT_ONLY").unwrap_or_default();
        let configurations: Vec<_> =
            configurations.into_iter().filter(|(label, _)| label.contains(&only)).collect();
        let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); configurations.len()];
        let mut port = 18451u16;
        for _ in 0..rounds {
            for ((label, queries), cpus) in configurations.iter().zip(&mut cpus) {
                let s = start(port);
                port += 1;
                wait_up(&http, &s.base).await;
                ingest_docs(&http, &s.base, 0, 100, &lines).await;
                for q in queries {
                    create(&http, &s.base, q).await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                let c0 = cpu_seconds(s.child.id());
                let start_at = Instant::now();
                for k in 0..(5_000 * seconds / 100) {
                    let due = start_at + Duration::from_micros(k * 100 * 1_000_000 / 5_000);
                    tokio::time::sleep_until(due.into()).await;
                    ingest_docs(&http, &s.base, 100 + k * 100, 100, &lines).await;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                let cpu = cpu_seconds(s.child.id()) - c0;
                println!(
                    "distinct: {label}: server CPU {cpu:.2} s over {seconds} s at 5,000 tweets/s"
                );
                cpus.push(cpu);
            }
        }
        let median = |v: &[f64]| percentile(&mut v.to_vec(), 0.5);
        let many = median(cpus.last().map_or(&[][..], |v| v));
        let ratios = if only.is_empty() { configurations.len() - 1 } else { 0 };
        for ((label, _), cpu) in configurations.iter().zip(&cpus).take(ratios) {
            println!(
                "distinct: 100 distinct queries cost {:.2}x the CPU of one {label} query (medians of {rounds}: {many:.2} s vs {:.2} s)",
                many / median(cpu),
                median(cpu)
            );
        }
    }
    if runs("latency_distinct") {
        // 7. Latency at 5,000 tweets/s with 1,000 distinct queries and 1,000 subscribers (one each;
        //    `PUSH_BENCH_DISTINCT_QUERIES` queries instead, the subscribers spread over them).
        let queries: usize = std::env::var("PUSH_BENCH_DISTINCT_QUERIES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000);
        let lines = tweet_lines();
        let s = start(18461);
        wait_up(&http, &s.base).await;
        ingest_docs(&http, &s.base, 0, 100, &lines).await;
        let mut ids = Vec::new();
        for q in 0..queries {
            ids.push(create(&http, &s.base, &desk_query(q)).await);
        }
        all_caught_up(&http, &s.base, &ids, 100, Duration::from_secs(120)).await;
        let (mut latencies, observations) =
            produce_to_delta(&http, &s.base, &ids, 1000, 5_000, 10, &lines).await;
        let covered = latencies.len();
        println!(
            "produce→delta at 5,000 tweets/s, {queries} distinct queries, 1,000 ws subscribers: p50 {:.1} ms, p99 {:.1} ms ({covered} batch×subscriber observations of {})",
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
            observations
        );
    }
    if runs("replay") {
        // 8. Replay convoys: 100 distinct queries registered at once over 200,000 tweets, against
        //    one alone; and a query registered halfway through another's replay.
        let lines = tweet_lines();
        let total = 200_000u64;
        // Each figure the median of `PUSH_BENCH_ROUNDS` (3) fresh servers: one query's replay
        // is short (~0.6 s) and varied by ±20% between single runs.
        let rounds = rounds();
        let configurations = [("one query alone", 1usize), ("100 distinct queries at once", 100)];
        let mut figures: Vec<Vec<(f64, f64)>> = vec![Vec::new(); configurations.len()];
        let mut port = 18471u16;
        for _ in 0..rounds {
            for ((label, count), figures) in configurations.iter().zip(&mut figures) {
                let s = start(port);
                port += 1;
                wait_up(&http, &s.base).await;
                for k in 0..(total / 1000) {
                    ingest_docs(&http, &s.base, k * 1000, 1000, &lines).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let c0 = cpu_seconds(s.child.id());
                let t = Instant::now();
                let mut ids = Vec::new();
                for q in 0..*count {
                    ids.push(create(&http, &s.base, &desk_query(q)).await);
                }
                let secs = all_caught_up(&http, &s.base, &ids, total, Duration::from_secs(900))
                    .await
                    .map_or(f64::NAN, |done| done.duration_since(t).as_secs_f64());
                let cpu = cpu_seconds(s.child.id()) - c0;
                println!(
                    "replay: {label} over {total} tweets: all caught up in {secs:.2} s (server CPU {cpu:.2} s)"
                );
                figures.push((secs, cpu));
            }
        }
        let median = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
            percentile(&mut v.iter().map(pick).collect::<Vec<_>>(), 0.5)
        };
        let (alone, alone_cpu) = (median(&figures[0], |f| f.0), median(&figures[0], |f| f.1));
        let (many, many_cpu) = (median(&figures[1], |f| f.0), median(&figures[1], |f| f.1));
        println!(
            "replay: 100 distinct queries at once caught up in {:.2}x the time of one alone (medians of {rounds}: {many:.2} s vs {alone:.2} s; server CPU {many_cpu:.2} s vs {alone_cpu:.2} s, {:.2}x)",
            many / alone,
            many_cpu / alone_cpu
        );
        let s = start(port);
        wait_up(&http, &s.base).await;
        for k in 0..(total / 1000) {
            ingest_docs(&http, &s.base, k * 1000, 1000, &lines).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first = create(&http, &s.base, &desk_query(0)).await;
        // Halfway through the first one's replay.
        loop {
            let status: Value = http
                .get(format!("http://{}/v1/queries/{first}", s.base))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            if status["progress"]["processed"].as_u64().unwrap_or(0) >= total / 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t = Instant::now();
        let second = create(&http, &s.base, &desk_query(4)).await;
        let secs = all_caught_up(&http, &s.base, &[second], total, Duration::from_secs(900))
            .await
            .map_or(f64::NAN, |done| done.duration_since(t).as_secs_f64());
        println!(
            "replay: a query registered halfway through another's replay caught up in {secs:.2} s ({:.2}x one alone)",
            secs / alone
        );
    }
    if runs("stuck") {
        // 4. Memory and health under 1,000 websocket and 1,000 SSE clients that never read, while
        //    every batch changes a ~7.5 KB result.
        let s = start(18440);
        wait_up(&http, &s.base).await;
        ingest_docs(&http, &s.base, 0, 100, &json_lines(wide_doc)).await;
        let id = create(
            &http,
            &s.base,
            &json!({"topic": "bench", "size": 5, "sort": [{"seq": "desc"}]}),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pid = s.child.id();
        let idle = rss_mib(pid);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let health = tokio::spawn(probe_health(s.base.clone(), stopped));
        let ws = format!(
            "GET /v1/queries/{id}/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let sse = format!(
            "GET /v1/queries/{id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        );
        let mut clients = Vec::new();
        for k in 0..2000 {
            clients.push(stuck_client(&s.base, if k % 2 == 0 { &ws } else { &sse }).await);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let connected = rss_mib(pid);
        let mut peak = connected;
        // 300 batches at 20 a second: each puts a new record on top of the result.
        let start_at = Instant::now();
        for k in 0..300u64 {
            tokio::time::sleep_until((start_at + Duration::from_millis(k * 50)).into()).await;
            ingest_docs(&http, &s.base, 100 + k * 5, 5, &json_lines(wide_doc)).await;
            peak = peak.max(rss_mib(pid));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        peak = peak.max(rss_mib(pid));
        let _ = stop.send(true);
        let mut probes = health.await.expect("probe");
        let failed = probes.iter().filter(|l| l.is_infinite()).count();
        println!(
            "stuck clients: RSS {idle:.0} MiB idle, {connected:.0} MiB with 1,000 ws + 1,000 SSE clients that never read, peak {peak:.0} MiB over 300 batches of ~7.5 KB deltas; /healthz p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} probes, {failed} failed)",
            percentile(&mut probes, 0.5),
            percentile(&mut probes, 0.99),
            percentile(&mut probes, 1.0),
            probes.len()
        );
        drop(clients);
        drop(s);
    }
    if runs("pathological") {
        // 5. Produce → delta of 10 ordinary queries (100 subscribers) at 1,000 records/s, alone
        //    and beside the costliest regex the limits accept, on a fresh server each.
        for with_pathological in [false, true] {
            let s = start(18441 + u16::from(with_pathological));
            wait_up(&http, &s.base).await;
            ingest_docs(&http, &s.base, 0, 100, &json_lines(ab_doc)).await;
            let mut ids = Vec::new();
            for q in 0..10 {
                ids.push(create(&http, &s.base, &json!({"topic": "bench", "aggs": {"tags": {"terms": {"field": "tag", "size": q + 1}}, "n": {"stats": {"field": "n"}}}})).await);
            }
            let mut accepted = None;
            if with_pathological {
                // An exponential DFA ((a|b)*a(a|b){k}): the largest k the compile limits accept
                // (`PUSH_BENCH_REGEX_K` caps it).
                let most = std::env::var("PUSH_BENCH_REGEX_K").ok().and_then(|k| k.parse().ok());
                for k in [800u32, 400, 200, 100, 40, 20, 10]
                    .into_iter()
                    .filter(|&k| most.is_none_or(|m| k <= m))
                {
                    let include = format!("(?:a|b)*a(?:a|b){{{k}}}c");
                    let body = json!({"topic": "bench", "aggs": {"ab": {"terms": {"field": "ab", "include": include}}}});
                    let r = http
                        .post(format!("http://{}/v1/queries", s.base))
                        .json(&body)
                        .send()
                        .await
                        .expect("query");
                    if r.status().is_success() {
                        let id = r.json::<Value>().await.expect("json")["id"]
                            .as_str()
                            .map(str::to_string);
                        accepted = Some((include, id.unwrap_or_default()));
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let c0 = cpu_seconds(s.child.id());
            let (mut latencies, observations) =
                produce_to_delta(&http, &s.base, &ids, 100, 1_000, 10, &json_lines(ab_doc)).await;
            let cpu = cpu_seconds(s.child.id()) - c0;
            // What became of the costly query: still running, or stopped by its CPU budget.
            let fate = match &accepted {
                Some((_, id)) => {
                    let r: Value = http
                        .get(format!("http://{}/v1/queries/{id}", s.base))
                        .send()
                        .await
                        .expect("get")
                        .json()
                        .await
                        .expect("json");
                    match r["error"]["error"]["type"].as_str() {
                        Some(kind) => format!(
                            "; the regex query stopped with {kind} after {} records",
                            r["progress"]["processed"]
                        ),
                        None => format!(
                            "; the regex query processed {} records",
                            r["progress"]["processed"]
                        ),
                    }
                }
                None => String::new(),
            };
            println!(
                "produce→delta at 1,000 records/s, 10 queries, 100 ws subscribers, {}: p50 {:.1} ms, p99 {:.1} ms ({} of {observations} observations; server CPU {cpu:.1} s{fate})",
                accepted
                    .as_ref()
                    .map_or("alone".to_string(), |(re, _)| format!("beside terms.include {re}")),
                percentile(&mut latencies, 0.5),
                percentile(&mut latencies, 0.99),
                latencies.len()
            );
            drop(s);
        }
    }
    if runs("idle") {
        // 9. Memory of idle queries: RSS (and CPU, which should be nil: nothing runs for an idle
        //    query) of `kappa dev` with 10,000 registered queries caught up over 1,000 tweets,
        //    with the embedded store, and with Redis when `REDIS_URL` is set, where the memory
        //    each query's state takes is read from Redis itself.
        let lines = tweet_lines();
        let count: usize = std::env::var("PUSH_BENCH_IDLE_QUERIES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000);
        let redis = std::env::var("REDIS_URL").ok();
        let prefix = format!("bench-idle-{}", std::process::id());
        // Past the default `--max-queries` (1,000).
        let most = vec!["--max-queries".to_string(), count.to_string()];
        let mut backends = vec![("embedded store", most.clone())];
        if let Some(url) = &redis {
            let at = ["--redis-url", url, "--redis-prefix", &prefix].map(String::from);
            backends.push(("Redis", [most, at.to_vec()].concat()));
        }
        for (port, (label, args)) in (18481u16..).zip(backends) {
            let s = start_with(port, &args);
            wait_up(&http, &s.base).await;
            ingest_docs(&http, &s.base, 0, 1000, &lines).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let used_before = redis.as_deref().filter(|_| label == "Redis").map(redis_used_memory);
            let rss_empty = rss_mib(s.child.id());
            let t = Instant::now();
            let mut ids = Vec::new();
            for q in 0..count {
                ids.push(create(&http, &s.base, &desk_query(q)).await);
            }
            let caught_up = all_caught_up(&http, &s.base, &ids, 1000, Duration::from_secs(900))
                .await
                .map_or(f64::NAN, |done| done.duration_since(t).as_secs_f64());
            tokio::time::sleep(Duration::from_secs(5)).await;
            let c0 = cpu_seconds(s.child.id());
            tokio::time::sleep(Duration::from_secs(10)).await;
            let idle_cpu = cpu_seconds(s.child.id()) - c0;
            let rss = rss_mib(s.child.id());
            println!(
                "idle: {label}: RSS {rss_empty:.0} MiB with no query, {rss:.0} MiB with {count} idle queries ({:.1} KiB each); registered and caught up over 1,000 tweets in {caught_up:.1} s; server CPU over 10 idle s {idle_cpu:.2} s",
                (rss - rss_empty) * 1024.0 / count as f64
            );
            // `PUSH_BENCH_IDLE_HOLD=SECONDS` keeps the server up to profile it.
            if let Some(hold) =
                std::env::var("PUSH_BENCH_IDLE_HOLD").ok().and_then(|h| h.parse().ok())
            {
                println!("idle: holding server pid {} for {hold} s", s.child.id());
                tokio::time::sleep(Duration::from_secs(hold)).await;
            }
            if let (Some(url), Some(before)) = (&redis, used_before) {
                let after = redis_used_memory(url);
                let keys = redis_cli(url, &["--scan", "--pattern", &format!("{prefix}*")]);
                let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
                // One query's keys: those naming the first query's id.
                let own: Vec<&str> =
                    keys.iter().copied().filter(|k| k.contains(ids[0].as_str())).collect();
                let own_bytes: u64 = own
                    .iter()
                    .filter_map(|k| {
                        redis_cli(url, &["MEMORY", "USAGE", k]).trim().parse::<u64>().ok()
                    })
                    .sum();
                println!(
                    "idle: Redis: used_memory +{:.1} MiB for {count} queries ({:.0} B each), {} keys under the prefix; one terms query's {} keys take {own_bytes} B (MEMORY USAGE)",
                    (after - before) as f64 / (1 << 20) as f64,
                    (after - before) as f64 / count as f64,
                    keys.len(),
                    own.len()
                );
                let _ = redis_cli(
                    url,
                    &[
                        "EVAL",
                        "for _,k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end",
                        "0",
                        &format!("{prefix}*"),
                    ],
                );
            }
            drop(s);
        }
    }
}

/// `redis-cli -u URL ARGS...`: its standard output.
fn redis_cli(url: &str, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Redis's `used_memory`, bytes.
fn redis_used_memory(url: &str) -> i64 {
    redis_cli(url, &["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
