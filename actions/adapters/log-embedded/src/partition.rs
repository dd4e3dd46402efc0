//! One partition: a directory of segment files, an append lock, and the published view readers
//! use.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use kappa_core::ports::{Batch, LogRecord, NewRecord, PortError, PortResult, ReadRequest};

use crate::frame::{self, HEADER};
use crate::{BACKEND, EmbeddedLogConfig};

/// A sparse index entry every this many bytes of a segment.
const INDEX_INTERVAL: u64 = 4096;
/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 1 << 20;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> PortError {
    PortError::permanent(BACKEND, format!("{what} {}: {e}", path.display()))
}

/// A segment file, opened on first use and closed again by [`SegmentFile::release_if_idle`]
/// when a sweep finds it unused since the previous one: an idle topic holds no descriptor, so
/// the number of topics is not bounded by the descriptor limit. A reader or writer holds its
/// own `Arc<File>` for the length of one read or append, so closing never cuts an operation
/// short (and a file that retention unlinks stays readable until they finish).
#[derive(Debug)]
struct SegmentFile {
    path: PathBuf,
    handle: Mutex<Option<Arc<File>>>,
    /// Used since the last sweep.
    used: AtomicBool,
}

impl SegmentFile {
    fn new(path: PathBuf, handle: Option<File>) -> Arc<Self> {
        let used = AtomicBool::new(handle.is_some());
        Arc::new(SegmentFile { path, handle: Mutex::new(handle.map(Arc::new)), used })
    }

    /// The open file, opening it again if a sweep closed it.
    fn file(&self) -> std::io::Result<Arc<File>> {
        self.used.store(true, Ordering::Relaxed);
        let mut handle = self.handle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = handle.as_ref() {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(OpenOptions::new().read(true).write(true).open(&self.path)?);
        *handle = Some(Arc::clone(&file));
        Ok(file)
    }

    /// Close the file unless it was used since the last call; true when a descriptor was
    /// given back (it closes once the operations still holding it finish).
    fn release_if_idle(&self) -> bool {
        if self.used.swap(false, Ordering::Relaxed) {
            return false;
        }
        self.handle.lock().unwrap_or_else(|e| e.into_inner()).take().is_some()
    }
}

/// The published state of one segment.
#[derive(Debug, Clone)]
struct Segment {
    base: i64,
    file: Arc<SegmentFile>,
    /// Published bytes: every frame before this is complete, acknowledged and readable.
    size: u64,
    /// Offset after the last record.
    next: i64,
    /// Largest record timestamp (for retention by age); i64::MIN when empty.
    max_ts: i64,
    /// Sparse index: `(offset, position)` of some frames, ascending.
    index: Vec<(i64, u64)>,
}

impl Segment {
    fn note_frame(&mut self, offset: i64, timestamp: i64, pos: u64, len: u64) {
        if self.index.last().is_none_or(|&(_, p)| pos >= p + INDEX_INTERVAL) {
            self.index.push((offset, pos));
        }
        self.max_ts = self.max_ts.max(timestamp);
        self.next = offset + 1;
        self.size = pos + len;
    }

    /// Position of the last indexed frame at or before `offset`.
    fn seek(&self, offset: i64) -> u64 {
        let i = self.index.partition_point(|&(o, _)| o <= offset);
        if i == 0 { 0 } else { self.index[i - 1].1 }
    }
}

#[derive(Debug)]
struct View {
    /// Oldest first; never empty (the last one is the active segment).
    segments: Vec<Segment>,
}

impl View {
    fn low(&self) -> i64 {
        self.segments[0].base
    }

    fn high(&self) -> i64 {
        self.segments.last().map_or(0, |s| s.next)
    }
}

/// One partition of a topic.
#[derive(Debug)]
pub(crate) struct Partition {
    dir: PathBuf,
    /// Serializes appends and retention (the writers of segment files).
    append_lock: Mutex<()>,
    view: RwLock<View>,
}

fn segment_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn sync_dir(dir: &Path) -> PortResult<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("fsync dir", dir, e))
}

fn open_segment(path: &Path, create: bool) -> PortResult<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create)
        .open(path)
        .map_err(|e| io_err("open segment", path, e))
}

/// Frames of a segment read sequentially from a position, through a buffer.
struct FrameReader<'a> {
    file: &'a File,
    path: &'a Path,
    /// File position of `buf[0]`.
    buf_pos: u64,
    /// The bytes read; shared with the records handed out, which are slices of it (no copy
    /// per record), so a refill starts a new buffer instead of reusing this one.
    buf: Bytes,
    /// Next frame, as an index into `buf`.
    at: usize,
    /// Stop here (the published or file size).
    limit: u64,
}

/// What [`FrameReader::next`] found.
enum Next<'b> {
    /// A valid frame: its position, total length, body, and value (a slice of the read buffer).
    Frame(u64, u64, frame::Body<'b>, Bytes),
    /// The end of the readable bytes.
    End,
    /// A torn or corrupt frame at this position.
    Bad(u64),
}

impl<'a> FrameReader<'a> {
    fn new(file: &'a File, path: &'a Path, pos: u64, limit: u64) -> Self {
        FrameReader { file, path, buf_pos: pos, buf: Bytes::new(), at: 0, limit }
    }

    /// Make `need` bytes from `at` available; false when the file ends first.
    fn fill(&mut self, need: usize) -> PortResult<bool> {
        if self.at + need <= self.buf.len() {
            return Ok(true);
        }
        let pos = self.buf_pos + self.at as u64;
        if pos + need as u64 > self.limit {
            return Ok(false);
        }
        let want = (need.max(READ_CHUNK) as u64).min(self.limit - pos) as usize;
        let mut chunk = Vec::with_capacity(want);
        chunk.extend_from_slice(&self.buf[self.at..]);
        let have = chunk.len();
        chunk.resize(want.max(have), 0);
        if want > have {
            self.file
                .read_exact_at(&mut chunk[have..], pos + have as u64)
                .map_err(|e| io_err("read segment", self.path, e))?;
        }
        self.buf = Bytes::from(chunk);
        self.buf_pos = pos;
        self.at = 0;
        Ok(true)
    }

    fn next(&mut self) -> PortResult<Next<'_>> {
        let pos = self.buf_pos + self.at as u64;
        if pos >= self.limit {
            return Ok(Next::End);
        }
        if !self.fill(HEADER)? {
            return Ok(Next::Bad(pos));
        }
        let mut h = [0u8; HEADER];
        h.copy_from_slice(&self.buf[self.at..self.at + HEADER]);
        let Some((len, crc)) = frame::header(&h) else { return Ok(Next::Bad(pos)) };
        if !self.fill(HEADER + len)? {
            return Ok(Next::Bad(pos));
        }
        let start = self.at + HEADER;
        self.at = start + len;
        match frame::decode(&self.buf[start..start + len], crc) {
            Some(body) => {
                // The value is the body's tail.
                let value = self.buf.slice(start + len - body.value.len()..start + len);
                Ok(Next::Frame(pos, (HEADER + len) as u64, body, value))
            }
            None => Ok(Next::Bad(pos)),
        }
    }
}

impl Partition {
    /// Create the directory and the first segment of a new partition.
    pub(crate) fn create(dir: PathBuf, config: &EmbeddedLogConfig) -> PortResult<Self> {
        fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        // A crashed earlier creation may have left the directory behind: open it as it is.
        if fs::read_dir(&dir).map_err(|e| io_err("list", &dir, e))?.next().is_some() {
            return Partition::open(dir, config);
        }
        let path = segment_path(&dir, 0);
        let file = SegmentFile::new(path.clone(), Some(open_segment(&path, true)?));
        if config.fsync {
            sync_dir(&dir)?;
        }
        let seg = Segment { base: 0, file, size: 0, next: 0, max_ts: i64::MIN, index: vec![] };
        Ok(Partition {
            dir,
            append_lock: Mutex::new(()),
            view: RwLock::new(View { segments: vec![seg] }),
        })
    }

    /// Open an existing partition: index its segments, and truncate a torn or corrupt tail of
    /// the last one back to the end of its last complete append.
    pub(crate) fn open(dir: PathBuf, config: &EmbeddedLogConfig) -> PortResult<Self> {
        let mut bases: Vec<i64> = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_err("list", &dir, e))? {
            let entry = entry.map_err(|e| io_err("list", &dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = name.strip_suffix(".log").and_then(|b| b.parse::<i64>().ok()) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        if bases.is_empty() {
            bases.push(0);
            open_segment(&segment_path(&dir, 0), true)?;
        }
        let mut segments = Vec::with_capacity(bases.len());
        let last = bases.len() - 1;
        for (i, &base) in bases.iter().enumerate() {
            let path = segment_path(&dir, base);
            // Opened for the scan only: a log of many topics opens holding no descriptors.
            let file = open_segment(&path, false)?;
            let len = file.metadata().map_err(|e| io_err("stat", &path, e))?.len();
            let mut seg = Segment {
                base,
                file: SegmentFile::new(path.clone(), None),
                size: 0,
                next: base,
                max_ts: i64::MIN,
                index: vec![],
            };
            // The end of the last complete append, and the segment state there.
            let mut committed = seg.clone();
            let mut reader = FrameReader::new(&file, &path, 0, len);
            loop {
                match reader.next()? {
                    Next::Frame(pos, flen, body, _) if body.offset == seg.next => {
                        seg.note_frame(body.offset, body.timestamp, pos, flen);
                        if body.last_of_batch {
                            committed = seg.clone();
                        }
                    }
                    Next::End => break,
                    Next::Frame(pos, ..) | Next::Bad(pos) => {
                        if i != last {
                            return Err(PortError::permanent(
                                BACKEND,
                                format!("corrupt frame in {} at byte {pos}", path.display()),
                            ));
                        }
                        break;
                    }
                }
            }
            if i != last && committed.size != len {
                return Err(PortError::permanent(
                    BACKEND,
                    format!("incomplete append inside sealed segment {}", path.display()),
                ));
            }
            if committed.size != len {
                // Torn or corrupt tail of the active segment: drop it.
                file.set_len(committed.size).map_err(|e| io_err("truncate", &path, e))?;
                if config.fsync {
                    file.sync_all().map_err(|e| io_err("fsync", &path, e))?;
                }
            }
            if let Some(prev) = segments.last().map(|s: &Segment| s.next)
                && prev != base
            {
                return Err(PortError::permanent(
                    BACKEND,
                    format!("segment {} does not follow offset {prev}", path.display()),
                ));
            }
            segments.push(committed);
        }
        Ok(Partition { dir, append_lock: Mutex::new(()), view: RwLock::new(View { segments }) })
    }

    fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn view_mut(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    /// `(low, high)`.
    pub(crate) fn watermarks(&self) -> (i64, i64) {
        let v = self.view();
        (v.low(), v.high())
    }

    /// Append a batch; returns the first offset. `published(new_high)` runs after the batch
    /// became readable, still under the append lock (so notifications come in order).
    pub(crate) fn append(
        &self,
        records: &[NewRecord],
        config: &EmbeddedLogConfig,
        published: impl FnOnce(i64),
    ) -> PortResult<i64> {
        let _guard = self.append_lock.lock().unwrap_or_else(|e| e.into_inner());
        let (first, active) = {
            let v = self.view();
            (v.high(), v.segments.last().cloned().expect("a partition has an active segment"))
        };
        if records.is_empty() {
            return Ok(first);
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.value.len() + 64).sum());
        let mut frames = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let start = buf.len() as u64;
            frame::encode(&mut buf, first + i as i64, r, i + 1 == records.len());
            frames.push((first + i as i64, r.timestamp, start, buf.len() as u64 - start));
        }
        if buf.len() > frame::MAX_BODY {
            return Err(PortError::permanent(BACKEND, "append larger than 256 MiB"));
        }
        // Roll to a new segment when this batch would overflow a non-empty active one.
        let mut seg = if active.size > 0 && active.size + buf.len() as u64 > config.segment_bytes {
            let path = segment_path(&self.dir, first);
            let file = SegmentFile::new(path.clone(), Some(open_segment(&path, true)?));
            if config.fsync {
                sync_dir(&self.dir)?;
            }
            let seg = Segment {
                base: first,
                file,
                size: 0,
                next: first,
                max_ts: i64::MIN,
                index: vec![],
            };
            self.view_mut().segments.push(seg.clone());
            seg
        } else {
            active
        };
        let at = seg.size;
        let file = seg.file.file().map_err(|e| io_err("open segment", &seg.file.path, e))?;
        let written = file
            .write_all_at(&buf, at)
            .and_then(|()| if config.fsync { file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Nothing was published; cut whatever reached the file (best effort: a reopen would
            // drop the incomplete append anyway).
            let _ = file.set_len(at);
            return Err(io_err("append to", &seg.file.path, e));
        }
        for (offset, ts, pos, len) in frames {
            seg.note_frame(offset, ts, at + pos, len);
        }
        let high = seg.next;
        if let Some(last) = self.view_mut().segments.last_mut() {
            *last = seg;
        }
        published(high);
        Ok(first)
    }

    /// One bounded read (the semantics of [`kappa_core::ports::MemoryLog`]).
    pub(crate) fn read(&self, request: ReadRequest) -> PortResult<Batch> {
        // A segment whose descriptor was released can be deleted by retention before this read
        // reopens it; the records are gone then, and a fresh snapshot reports them as `lost`.
        for _ in 0..3 {
            match self.read_snapshot(request)? {
                Some(batch) => return Ok(batch),
                None => continue,
            }
        }
        Err(PortError::transient(BACKEND, "segments deleted by retention during the read"))
    }

    /// [`Partition::read`] over one snapshot of the view; `None` when a segment of the snapshot
    /// was deleted before it could be opened.
    fn read_snapshot(&self, request: ReadRequest) -> PortResult<Option<Batch>> {
        // A consistent snapshot of the published segments from the one holding `from`.
        let (low, high, segments) = {
            let v = self.view();
            let (low, high) = (v.low(), v.high());
            let from = request.from.max(low);
            let i = v.segments.partition_point(|s| s.base <= from).saturating_sub(1);
            let segs: Vec<(Segment, u64)> = v.segments[i..]
                .iter()
                .map(|s| {
                    let start = if s.base <= from { s.seek(from) } else { 0 };
                    (Segment { index: vec![], ..s.clone() }, start)
                })
                .collect();
            (low, high, segs)
        };
        let from = request.from.max(low);
        let lost = (from - request.from).max(0) as u64;
        let end = request.end.map_or(high, |e| e.min(high));
        let mut records: Vec<LogRecord> = Vec::new();
        let mut bytes = 0usize;
        'segments: for (seg, start) in &segments {
            if from >= end || seg.base >= end {
                break;
            }
            let file = match seg.file.file() {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err("open segment", &seg.file.path, e)),
            };
            let mut reader = FrameReader::new(&file, &seg.file.path, *start, seg.size);
            loop {
                if records.len() >= request.max_records
                    || (bytes >= request.max_bytes && !records.is_empty())
                {
                    break 'segments;
                }
                match reader.next()? {
                    Next::End => break,
                    Next::Bad(pos) => {
                        return Err(PortError::permanent(
                            BACKEND,
                            format!("corrupt frame in {} at byte {pos}", seg.file.path.display()),
                        ));
                    }
                    Next::Frame(_, _, body, value) => {
                        if body.offset < from {
                            continue;
                        }
                        if body.offset >= end {
                            break 'segments;
                        }
                        bytes += body.value.len();
                        records.push(LogRecord {
                            offset: body.offset,
                            timestamp: body.timestamp,
                            key: body.key.map(<[u8]>::to_vec),
                            value,
                        });
                    }
                }
            }
        }
        let next_offset = records.last().map_or(from, |r| r.offset + 1);
        Ok(Some(Batch { records, next_offset, high_watermark: high, lost }))
    }

    /// Close the segment files not used since the previous call; returns how many were closed.
    pub(crate) fn release_idle_files(&self) -> usize {
        self.view().segments.iter().filter(|s| s.file.release_if_idle()).count()
    }

    /// Delete whole sealed segments, oldest first, while the partition holds more than
    /// `retention_bytes` without them or their newest record is older than `min_ts`. Returns
    /// the number of records deleted.
    pub(crate) fn apply_retention(
        &self,
        retention_bytes: Option<u64>,
        min_ts: Option<i64>,
        config: &EmbeddedLogConfig,
    ) -> PortResult<u64> {
        let _guard = self.append_lock.lock().unwrap_or_else(|e| e.into_inner());
        let doomed: Vec<Segment> = {
            let mut v = self.view_mut();
            let mut total: u64 = v.segments.iter().map(|s| s.size).sum();
            let mut n = 0;
            while n + 1 < v.segments.len() {
                let s = &v.segments[n];
                let by_size = retention_bytes.is_some_and(|r| total - s.size >= r);
                let by_age = min_ts.is_some_and(|t| s.max_ts < t);
                if !(by_size || by_age) {
                    break;
                }
                total -= s.size;
                n += 1;
            }
            v.segments.drain(..n).collect()
        };
        let mut deleted = 0u64;
        for s in &doomed {
            deleted += (s.next - s.base) as u64;
            fs::remove_file(&s.file.path).map_err(|e| io_err("delete segment", &s.file.path, e))?;
        }
        if config.fsync && !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }
}
