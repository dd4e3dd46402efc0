//! The demo feed (`kappa dev --demo`, `kappa demo`): records arrive through the ingest path,
//! the rate is roughly respected (counts, not timings), a count-limited run stops exactly, and a
//! missing base-tweets file fails with a clear message. Needs `scripts/fetch-tweets.sh` (the
//! test command runs it first).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Srv, start};
use kappa::demo::{self, DemoConfig, Schedule, Sink};
use kappa_core::Topic;
use serde_json::{Value, json};

fn generator() -> Arc<kappa_tweetgen::TweetGen> {
    Arc::new(
        demo::load_generator(&demo::base_path(), 7).expect("base tweets (scripts/fetch-tweets.sh)"),
    )
}

fn flat(rate: f64) -> Schedule {
    Schedule { rate, peak: 1.0, cycle_secs: 0.0, match_secs: 0.0 }
}

/// Records in `topic`, once the count query has caught up with at least `at_least`.
async fn count(srv: &Srv, topic: &str, at_least: u64) -> (u64, Value) {
    let id =
        srv.query(&json!({"topic": topic, "aggs": {"langs": {"terms": {"field": "lang"}}}})).await;
    let v = srv.caught_up(&id, at_least).await;
    (v["result"]["hits"]["total"]["value"].as_u64().expect("total"), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_limited_run_sends_exactly_that_many_tweets() {
    let srv = start(Backend::Embedded, |_| {}).await;
    let config = DemoConfig {
        topic: Topic::new("tweets").expect("a valid name"),
        schedule: flat(2_000.0),
        max_records: Some(250),
        ..DemoConfig::default()
    };
    let sent = demo::run(generator(), Sink::Server(srv.running.server.clone()), config)
        .await
        .expect("demo runs");
    assert_eq!(sent, 250);
    let (total, v) = count(&srv, "tweets", 250).await;
    assert_eq!(total, 250);
    // Real tweets: several languages.
    let langs = v["result"]["aggregations"]["langs"]["buckets"].as_array().expect("buckets");
    assert!(langs.len() >= 2, "{langs:?}");
    // A second run continues after what the topic holds (new tweets, not repeats).
    let config =
        DemoConfig { schedule: flat(2_000.0), max_records: Some(50), ..DemoConfig::default() };
    demo::run(generator(), Sink::Server(srv.running.server.clone()), config).await.expect("runs");
    let id = srv
        .query(&json!({"topic": "tweets", "aggs": {"ids": {"cardinality": {"field": "id_str"}}}}))
        .await;
    let v = srv.caught_up(&id, 300).await;
    assert_eq!(v["result"]["hits"]["total"]["value"], 300);
    assert_eq!(v["result"]["aggregations"]["ids"]["value"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_is_roughly_respected_with_bursts_during_matches() {
    let srv = start(Backend::Embedded, |_| {}).await;
    // 1 s quiet at 100/s, then 0.5 s of match at 4x: 300 records per 1.5 s cycle.
    let schedule = Schedule { rate: 100.0, peak: 4.0, cycle_secs: 1.5, match_secs: 0.5 };
    let config = DemoConfig {
        topic: Topic::new("live").expect("a valid name"),
        schedule,
        ..DemoConfig::default()
    };
    let feed = demo::spawn(generator(), srv.running.server.clone(), config);
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    feed.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let _ = feed.await;
    let (total, _) = count(&srv, "live", 1).await;
    // Never more than due over the whole run; at least what was due well before the end
    // (the machine may be loaded: allow a second of slack).
    let most = schedule.due(elapsed + 0.2);
    let least = schedule.due(2.0) / 2;
    assert!(total <= most, "{total} > {most}");
    assert!(total >= least, "{total} < {least}");
    // Bursts: a cycle holds more than a flat 100/s would give.
    assert_eq!(schedule.due(3.0), 600);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_up(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("kappa dev did not come up");
}

async fn total_of(base: &str, topic: &str) -> Option<(u64, bool)> {
    let http = reqwest::Client::new();
    let r =
        http.post(format!("{base}/v1/queries")).json(&json!({"topic": topic})).send().await.ok()?;
    let v: Value = r.json().await.ok()?;
    let id = v["id"].as_str()?.to_string();
    let v: Value =
        http.get(format!("{base}/v1/queries/{id}")).send().await.ok()?.json().await.ok()?;
    Some((v["result"]["hits"]["total"]["value"].as_u64()?, v["caught_up"] == true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kappa_dev_demo_and_kappa_demo_feed_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _dev = Child(
        Command::new(env!("CARGO_BIN_EXE_kappa"))
            .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .args(["--demo", "--demo-rate", "200", "--tick-ms", "200"])
            .env("KAPPA_LOG", "warn")
            .env_remove("KAFKA_BROKERS")
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .spawn()
            .expect("kappa dev starts"),
    );
    wait_up(&base).await;
    // `--demo` fills topic `tweets` by itself.
    let mut seen = 0;
    for _ in 0..100 {
        if let Some((n, _)) = total_of(&base, "tweets").await {
            seen = n;
            if n >= 50 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen >= 50, "the demo fed {seen} records");
    // `kappa demo --server` feeds another topic, exactly --count records.
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["demo", "--rate", "500", "--count", "120", "--topic", "side", "--server", &base])
        .env("KAPPA_LOG", "warn")
        .output()
        .expect("kappa demo runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut last = None;
    for _ in 0..100 {
        last = total_of(&base, "side").await;
        if last.is_some_and(|(n, caught)| caught && n >= 120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.map(|l| l.0), Some(120));
}

#[test]
fn a_missing_base_file_fails_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["demo", "--count", "1", "--server", "http://127.0.0.1:9"])
        .env("KAPPA_TWEETS", "/nonexistent/base.ndjson")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/fetch-tweets.sh"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["dev", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("KAPPA_TWEETS", "/nonexistent/base.ndjson")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("scripts/fetch-tweets.sh"));
}
