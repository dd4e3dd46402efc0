//! The demo feed: synthetic event-week tweets (`kappa-tweetgen`) streamed into a topic at a
//! steady background rate with bursts during "matches".
//!
//! `kappa dev --demo` feeds its own server through the ingest path of
//! `POST /v1/topics/{topic}/records` ([`crate::api::append_records`]); `kappa demo` feeds a
//! running server over HTTP, or a real Kafka topic directly.
//!
//! The schedule is a pure function of elapsed time ([`Schedule::due`]): each cycle starts
//! with a quiet stretch at `rate` records/s and ends with a match at `rate * peak`. The feeder
//! wakes every `tick` and sends what is due, so it catches up after a slow send instead of
//! drifting, and record `i` of the generator is always the `i`-th record sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kappa_core::Topic;
use kappa_core::ports::{LogReader, LogWriter, NewRecord, partition_for_key};
use kappa_log_kafka::{KafkaLog, KafkaLogConfig};
use kappa_tweetgen::{GenConfig, TweetGen};
use tokio::time::Instant;

use crate::client::Remote;
use crate::state::Server;
use kappa_actions::ingest::Parsed;

/// When records are due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Background rate, records per second.
    pub rate: f64,
    /// Rate multiplier during a match.
    pub peak: f64,
    /// Length of one cycle (quiet, then a match), seconds.
    pub cycle_secs: f64,
    /// Length of the match at the end of each cycle, seconds.
    pub match_secs: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { rate: 50.0, peak: 4.0, cycle_secs: 60.0, match_secs: 15.0 }
    }
}

impl Schedule {
    fn quiet_secs(&self) -> f64 {
        (self.cycle_secs - self.match_secs.clamp(0.0, self.cycle_secs)).max(0.0)
    }

    fn match_secs(&self) -> f64 {
        self.match_secs.clamp(0.0, self.cycle_secs.max(0.0))
    }

    /// The rate at `t` seconds from the start.
    pub fn rate_at(&self, t: f64) -> f64 {
        if self.cycle_secs <= 0.0 || self.match_secs() <= 0.0 {
            return self.rate;
        }
        let within = t.rem_euclid(self.cycle_secs);
        if within < self.quiet_secs() { self.rate } else { self.rate * self.peak }
    }

    /// Whether a match is on at `t`.
    pub fn in_match(&self, t: f64) -> bool {
        self.peak != 1.0 && self.rate_at(t) != self.rate
    }

    /// Records due from the start to `t` seconds: the integral of the rate, rounded down.
    pub fn due(&self, t: f64) -> u64 {
        let t = t.max(0.0);
        let total = if self.cycle_secs <= 0.0 || self.match_secs() <= 0.0 {
            self.rate * t
        } else {
            let per_cycle =
                self.rate * self.quiet_secs() + self.rate * self.peak * self.match_secs();
            let cycles = (t / self.cycle_secs).floor();
            let within = t - cycles * self.cycle_secs;
            let quiet = within.min(self.quiet_secs());
            let peak = (within - self.quiet_secs()).max(0.0);
            cycles * per_cycle + self.rate * quiet + self.rate * self.peak * peak
        };
        total.max(0.0).floor() as u64
    }
}

/// A demo run.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Topic written to.
    pub topic: Topic,
    /// When records are due.
    pub schedule: Schedule,
    /// Generator seed.
    pub seed: u64,
    /// Index of the first generated record.
    pub start_index: u64,
    /// Stop after this many records (None: run until stopped).
    pub max_records: Option<u64>,
    /// How often the feeder wakes.
    pub tick: Duration,
    /// Most records in one send.
    pub max_batch: usize,
    /// Partitions of a topic the demo creates (Kafka).
    pub partitions: u32,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            topic: Topic::new("tweets").expect("a valid name"),
            schedule: Schedule::default(),
            seed: GenConfig::default().seed,
            start_index: 0,
            max_records: None,
            tick: Duration::from_millis(100),
            max_batch: 2_000,
            partitions: 4,
        }
    }
}

/// Where the demo writes.
pub enum Sink {
    /// This process's server, through the ingest path.
    Server(Arc<Server>),
    /// A running server, through `POST /v1/topics/{topic}/records`.
    Http {
        /// The server.
        remote: Remote,
        /// Its client.
        client: reqwest::Client,
    },
    /// A Kafka topic, directly.
    Kafka(Box<KafkaLog>),
}

impl Sink {
    /// A running server.
    pub fn http(remote: Remote) -> Sink {
        Sink::Http { remote, client: reqwest::Client::new() }
    }

    /// A Kafka cluster.
    pub fn kafka(brokers: &str) -> anyhow::Result<Sink> {
        let log = KafkaLog::connect(KafkaLogConfig { brokers: brokers.to_string(), extra: vec![] })
            .map_err(|e| anyhow::anyhow!("kafka {brokers}: {e}"))?;
        Ok(Sink::Kafka(Box::new(log)))
    }

    async fn prepare(&self, config: &DemoConfig) -> anyhow::Result<()> {
        if let Sink::Kafka(log) = self {
            log.ensure_topic(&config.topic, config.partitions)
                .await
                .map_err(|e| anyhow::anyhow!("create topic {}: {e}", config.topic))?;
        }
        Ok(())
    }

    /// Records already in the topic (the server's own log only; 0 elsewhere).
    async fn existing(&self, topic: &str) -> u64 {
        let Sink::Server(server) = self else { return 0 };
        let log = &server.core.log;
        let Ok(Some(n)) = log.partitions(topic).await else { return 0 };
        let mut total = 0u64;
        for p in 0..n {
            if let Ok(w) = log.watermarks(topic, p).await {
                total += u64::try_from(w.high).unwrap_or(0);
            }
        }
        total
    }

    async fn send(&self, topic: &Topic, records: Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
        match self {
            Sink::Server(server) => {
                let parsed = records
                    .into_iter()
                    .map(|(k, v)| Parsed { key: Some(k.into_bytes()), value: v })
                    .collect();
                crate::api::append_records(server, topic, parsed)
                    .await
                    .map_err(|e| anyhow::anyhow!("ingest: {}", e.body))?;
            }
            Sink::Http { remote, client } => {
                let mut body = Vec::with_capacity(records.iter().map(|r| r.1.len() + 1).sum());
                for (_, v) in records {
                    body.extend_from_slice(&v);
                    body.push(b'\n');
                }
                let url =
                    format!("{}/v1/topics/{topic}/records", remote.server.trim_end_matches('/'));
                let mut rb = client.post(url).query(&[("key", "id_str")]).body(body);
                if let Some(k) = &remote.api_key {
                    rb = rb.bearer_auth(k);
                }
                let r = rb.send().await?;
                if !r.status().is_success() {
                    let status = r.status();
                    anyhow::bail!(
                        "server answered {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
            }
            Sink::Kafka(log) => {
                let partitions =
                    log.partitions(topic).await.map_err(|e| anyhow::anyhow!("{e}"))?.unwrap_or(1);
                let now = now_ms();
                let mut by_partition: std::collections::BTreeMap<u32, Vec<NewRecord>> =
                    std::collections::BTreeMap::new();
                for (k, v) in records {
                    let p = partition_for_key(k.as_bytes(), partitions);
                    by_partition.entry(p).or_default().push(NewRecord {
                        key: Some(k.into_bytes()),
                        value: v,
                        timestamp: now,
                    });
                }
                for (p, batch) in by_partition {
                    log.append(topic, p, &batch).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
        }
        Ok(())
    }
}

#[allow(clippy::disallowed_methods, reason = "the demo stamps Kafka records with wall time")]
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The base tweets' path: `$KAPPA_TWEETS` or `<repo>/.cache/tweets/base.ndjson`.
pub fn base_path() -> PathBuf {
    TweetGen::default_base_path()
}

/// Load the generator from the base tweets at `path`; a clear error when they are missing.
pub fn load_generator(path: &Path, seed: u64) -> anyhow::Result<TweetGen> {
    if !path.is_file() {
        anyhow::bail!(
            "the demo needs real base tweets at {}: run scripts/fetch-tweets.sh first \
             (or point KAPPA_TWEETS at a base.ndjson)",
            path.display()
        );
    }
    let base = TweetGen::load_base(path)?;
    if base.is_empty() {
        anyhow::bail!(
            "no base tweets in {}: run scripts/fetch-tweets.sh (KAPPA_TWEETS_REFRESH=1 to rebuild)",
            path.display()
        );
    }
    Ok(TweetGen::new(base, GenConfig { seed, ..GenConfig::default() }))
}

/// Feed `sink` until `max_records` are sent (or forever); returns the number sent.
/// A failed send is logged and retried at the next tick (the records stay due).
pub async fn run(tweets: Arc<TweetGen>, sink: Sink, config: DemoConfig) -> anyhow::Result<u64> {
    sink.prepare(&config).await?;
    let first = config.start_index + sink.existing(&config.topic).await;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut interval = tokio::time::interval(config.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        interval.tick().await;
        let mut due = config.schedule.due(started.elapsed().as_secs_f64());
        if let Some(max) = config.max_records {
            due = due.min(max);
        }
        while sent < due {
            let n = (due - sent).min(config.max_batch as u64);
            let g = tweets.clone();
            let from = first + sent;
            let batch = tokio::task::spawn_blocking(move || {
                g.iter(from..from + n).map(|r| (r.key, r.value)).collect::<Vec<_>>()
            })
            .await?;
            match sink.send(&config.topic, batch).await {
                Ok(()) => {
                    sent += n;
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(error = %e, failures, "demo: send failed, retrying");
                    }
                    break;
                }
            }
        }
        if config.max_records.is_some_and(|max| sent >= max) {
            return Ok(sent);
        }
    }
}

/// Start feeding this process's server in the background (`kappa dev --demo`).
pub fn spawn(
    tweets: Arc<TweetGen>,
    server: Arc<Server>,
    config: DemoConfig,
) -> tokio::task::JoinHandle<anyhow::Result<u64>> {
    tokio::spawn(run(tweets, Sink::Server(server), config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_integrates_the_rate() {
        let s = Schedule { rate: 10.0, peak: 3.0, cycle_secs: 10.0, match_secs: 2.0 };
        assert_eq!(s.due(0.0), 0);
        assert_eq!(s.due(8.0), 80);
        assert_eq!(s.due(9.0), 110);
        assert_eq!(s.due(10.0), 140);
        assert_eq!(s.due(18.0), 220);
        assert!(!s.in_match(7.9));
        assert!(s.in_match(8.5));
        assert_eq!(s.rate_at(15.0), 10.0);
        let flat = Schedule { rate: 7.5, peak: 1.0, cycle_secs: 0.0, match_secs: 0.0 };
        assert_eq!(flat.due(2.0), 15);
        assert!(!flat.in_match(1.0));
        // Non-decreasing.
        let mut last = 0;
        for i in 0..400 {
            let d = s.due(f64::from(i) * 0.1);
            assert!(d >= last);
            last = d;
        }
    }

    #[test]
    fn a_missing_base_file_says_what_to_run() {
        let e = load_generator(Path::new("/nonexistent/base.ndjson"), 1).err().expect("fails");
        assert!(e.to_string().contains("scripts/fetch-tweets.sh"), "{e}");
    }
}
