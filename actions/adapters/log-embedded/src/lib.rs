//! Kappa's file-backed log: the [`LogReader`] + [`LogWriter`] of `kappa dev`, behaving exactly
//! like [`kappa_core::ports::MemoryLog`] (checked by [`kappa_core::conformance_log`]).
//!
//! # Shape
//! ```text
//! <dir>/<topic>/meta                       partition count ("3\n"); the topic exists iff it does
//! <dir>/<topic>/<partition>/<base:020>.log segments, named by the offset of their first record
//! ```
//! A segment is a sequence of frames `len | crc32 | offset | timestamp | flags | key | value`
//! (see `frame.rs`); the last frame of every append carries a flag, so an append is
//! all-or-nothing: its frames are written (and fsynced when [`EmbeddedLogConfig::fsync`]),
//! then the new high watermark is published to readers. On [`EmbeddedLog::open`] the active
//! (last) segment of each partition is scanned and everything after its last complete, valid
//! append — a torn write or a corrupt frame — is truncated. Segments are indexed in memory
//! sparsely (an entry every 4 KiB) for seeks. [`EmbeddedLog::apply_retention`] deletes whole
//! sealed segments, oldest first, by size and age, which raises the low watermark; reads from
//! below it report the skipped records as `lost`.
//!
//! # Concurrency
//! An `EmbeddedLog` is shared by reference (or `Arc`) between tokio tasks: appends to one
//! partition are serialized by a mutex, readers work on a snapshot of the published segments
//! with positional reads (`pread`) and never block appends. The async methods do their file
//! I/O inline, in short bounded bursts (one batch of a read, one append plus an optional
//! `fdatasync`): no `spawn_blocking`, so the log needs no particular runtime. Only one process
//! may open a directory at a time (not enforced). Unix only (positional file I/O).
//!
//! Segment files are opened on first use and closed by [`EmbeddedLog::release_idle_files`]
//! once unused for a sweep period, so idle topics hold no descriptors.
//!
//! [`EmbeddedLog::subscribe`] notifies every append as `(topic, partition, new high)` so idle
//! queries can wake up.
//!
//! Test with: `cargo test -p kappa-log-embedded` (includes a kill -9 crash test).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use kappa_core::Topic as TopicName;
use kappa_core::ports::{
    Batch, LogReader, LogWriter, NewRecord, PortError, PortResult, ReadRequest, Watermarks,
};
use tokio::sync::broadcast;

mod frame;
mod partition;

use partition::Partition;

/// The backend name in errors.
const BACKEND: &str = "embedded-log";

/// Settings of an [`EmbeddedLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedLogConfig {
    /// Roll to a new segment when an append would grow the active one beyond this many bytes
    /// (an append is never split, so one larger append makes one larger segment).
    pub segment_bytes: u64,
    /// Per partition: delete the oldest segments while the rest still hold this many bytes.
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this many ms.
    pub retention_ms: Option<i64>,
    /// fsync each append (and directory changes) before acknowledging it. Without it, appends
    /// survive a crash of the process but not necessarily of the machine.
    pub fsync: bool,
}

impl Default for EmbeddedLogConfig {
    fn default() -> Self {
        EmbeddedLogConfig {
            segment_bytes: 64 << 20,
            retention_bytes: None,
            retention_ms: None,
            fsync: false,
        }
    }
}

#[derive(Debug)]
struct Topic {
    partitions: Vec<Arc<Partition>>,
}

/// A partitioned log in a directory. See the crate docs.
#[derive(Debug)]
pub struct EmbeddedLog {
    dir: PathBuf,
    config: EmbeddedLogConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    notify: broadcast::Sender<(String, u32, i64)>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> PortError {
    PortError::permanent(BACKEND, format!("{what} {}: {e}", path.display()))
}

fn read_meta(path: &Path) -> PortResult<u32> {
    let text = fs::read_to_string(path).map_err(|e| io_err("read", path, e))?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| PortError::permanent(BACKEND, format!("bad meta file {}", path.display())))
}

impl EmbeddedLog {
    /// Open (creating if needed) the log in `dir`, recovering every partition: torn or corrupt
    /// tails of active segments are truncated back to the last complete append.
    pub fn open(dir: &Path, config: EmbeddedLogConfig) -> PortResult<Self> {
        fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
        let mut topics = HashMap::new();
        for entry in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
            let entry = entry.map_err(|e| io_err("list", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.path().join("meta");
            if TopicName::new(name.as_str()).is_err() || !meta.is_file() {
                continue;
            }
            let count = read_meta(&meta)?;
            let partitions = (0..count)
                .map(|p| Partition::open(entry.path().join(p.to_string()), &config).map(Arc::new))
                .collect::<PortResult<Vec<_>>>()?;
            topics.insert(name, Arc::new(Topic { partitions }));
        }
        let (notify, _) = broadcast::channel(1024);
        Ok(EmbeddedLog { dir: dir.to_path_buf(), config, topics: RwLock::new(topics), notify })
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Notifications of appends: `(topic, partition, new high watermark)`. A slow receiver
    /// may miss some (`RecvError::Lagged`) and should then re-check the watermarks.
    pub fn subscribe(&self) -> broadcast::Receiver<(String, u32, i64)> {
        self.notify.subscribe()
    }

    /// Apply the configured retention at `now_ms`: delete whole sealed segments (never the
    /// active one), oldest first, by size and age. Returns the number of records deleted.
    /// Blocking file I/O: call it from a timer, off the hot path.
    pub fn apply_retention(&self, now_ms: i64) -> PortResult<u64> {
        let min_ts = self.config.retention_ms.map(|ms| now_ms.saturating_sub(ms));
        let mut deleted = 0;
        for topic in self.all_topics() {
            for p in &topic.partitions {
                deleted += p.apply_retention(self.config.retention_bytes, min_ts, &self.config)?;
            }
        }
        Ok(deleted)
    }

    /// Close the segment files no read or append used since the previous call, so that idle
    /// topics hold no descriptors (they reopen on their next use). Call it from a timer: a file
    /// is closed after between one and two periods unused. Returns how many were closed.
    pub fn release_idle_files(&self) -> usize {
        self.all_topics()
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.release_idle_files())
            .sum()
    }

    /// How many topics there are.
    pub fn topic_count(&self) -> usize {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    fn topic(&self, topic: &str) -> Option<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).get(topic).cloned()
    }

    fn partition(&self, topic: &str, partition: u32) -> PortResult<Arc<Partition>> {
        self.topic(topic).and_then(|t| t.partitions.get(partition as usize).cloned()).ok_or_else(
            || PortError::permanent(BACKEND, format!("no partition {topic}/{partition}")),
        )
    }
}

#[async_trait]
impl LogReader for EmbeddedLog {
    async fn partitions(&self, topic: &str) -> PortResult<Option<u32>> {
        Ok(self.topic(topic).map(|t| t.partitions.len() as u32))
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> PortResult<Watermarks> {
        let (low, high) = self.partition(topic, partition)?.watermarks();
        Ok(Watermarks { low, high })
    }

    async fn read(&self, topic: &str, partition: u32, request: ReadRequest) -> PortResult<Batch> {
        self.partition(topic, partition)?.read(request)
    }
}

#[async_trait]
impl LogWriter for EmbeddedLog {
    async fn ensure_topic(&self, topic: &TopicName, partitions: u32) -> PortResult<u32> {
        if let Some(t) = self.topic(topic) {
            return Ok(t.partitions.len() as u32);
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = topics.get(topic.as_str()) {
            return Ok(t.partitions.len() as u32);
        }
        let count = partitions.max(1);
        // A checked name is a safe directory name (no `/`, not `.` or `..`).
        let tdir = self.dir.join(topic.as_str());
        fs::create_dir_all(&tdir).map_err(|e| io_err("create", &tdir, e))?;
        let parts = match (0..count)
            .map(|p| Partition::create(tdir.join(p.to_string()), &self.config).map(Arc::new))
            .collect::<PortResult<Vec<_>>>()
        {
            Ok(parts) => parts,
            Err(e) => {
                // Out of descriptors or disk: leave no half-made topic behind (it has no meta
                // file yet, so nothing refers to it).
                let _ = fs::remove_dir_all(&tdir);
                return Err(e);
            }
        };
        // The topic exists once its meta file does (written whole by a rename).
        let tmp = tdir.join("meta.tmp");
        fs::write(&tmp, format!("{count}\n")).map_err(|e| io_err("write", &tmp, e))?;
        if self.config.fsync {
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_err("fsync", &tmp, e))?;
        }
        let meta = tdir.join("meta");
        fs::rename(&tmp, &meta).map_err(|e| io_err("rename", &meta, e))?;
        if self.config.fsync {
            for d in [&tdir, &self.dir] {
                fs::File::open(d).and_then(|f| f.sync_all()).map_err(|e| io_err("fsync", d, e))?;
            }
        }
        topics.insert(topic.to_string(), Arc::new(Topic { partitions: parts }));
        Ok(count)
    }

    async fn append(&self, topic: &str, partition: u32, records: &[NewRecord]) -> PortResult<i64> {
        let p = self.partition(topic, partition)?;
        p.append(records, &self.config, |high| {
            // No receivers is fine.
            let _ = self.notify.send((topic.to_string(), partition, high));
        })
    }
}
