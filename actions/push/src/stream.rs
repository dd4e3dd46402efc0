//! Websocket and SSE subscribers: a snapshot, then every delta and progress message in order.
//!
//! One computation per query whatever the number of subscribers: a subscriber only reads the
//! store (the result and the shared ring of messages, `messages_since`), woken by the
//! [`crate::hub::Hub`] after each batch; it never triggers work.
//!
//! **Backpressure.** Each subscriber has a pump task that moves messages from the ring into a
//! bounded buffer drained by its socket. The pump never waits for the socket: when the buffer
//! is full the subscriber is *behind*, the backlog is dropped, and once there is room again it
//! gets a fresh snapshot. A slow subscriber therefore costs one store read per wake-up and
//! never delays the others.
//!
//! **Shared reads.** The subscribers of a query share one store read per wake-up (a [`Feed`]:
//! the result and the ring since the last read): the first one woken reads, the others take its
//! read, so 10,000 subscribers of a query cost one read, not 10,000.
//!
//! **No silent gap.** A delta is forwarded only when it applies to the last version sent
//! (`from == last`); anything else (a ring that lost messages, a resume from a version the ring
//! no longer holds) is answered by a snapshot.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use kappa_core::Message;
use kappa_core::ports::{PortResult, Progress, ResultRecord, StateStore};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use kappa_runtime::clock::SystemClock;

use crate::error::ApiError;
use crate::hub::Hub;
use crate::quota::{Caller, StreamQuota};

/// What subscribers need, shared by `kappa dev` and `kappa-gateway`: the store they read, the
/// hub that wakes them, and the size of each subscriber's buffer.
pub struct Streams {
    /// Results and the shared ring of messages.
    pub store: Arc<dyn StateStore>,
    /// Wake-ups after each committed batch (from the scheduler, or from Redis pub/sub).
    pub hub: Arc<Hub>,
    /// Messages buffered per subscriber before it gets a snapshot instead.
    pub buffer: usize,
    /// Open streams per API key.
    quota: StreamQuota,
    /// The latest shared read of each followed query (held by its subscribers' pumps).
    feeds: Mutex<HashMap<String, Weak<Slot>>>,
}

/// A message for subscribers. Those of a query share one (an `Arc`), so it is serialized, and
/// its progress parsed, once however many subscribers send it.
#[derive(Debug)]
pub struct Outgoing {
    message: Arc<Message>,
    text: OnceLock<String>,
}

/// A shared [`Outgoing`] message.
pub type Shared = Arc<Outgoing>;

impl Outgoing {
    /// Wrap a message.
    pub fn new(message: Message) -> Shared {
        Outgoing::shared(Arc::new(message))
    }

    /// Wrap a message the store shares.
    pub fn shared(message: Arc<Message>) -> Shared {
        Arc::new(Outgoing { message, text: OnceLock::new() })
    }

    /// The message as JSON text.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| self.message.to_json())
    }
}

impl Deref for Outgoing {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

/// One store read of a query, shared by its subscribers.
struct Feed {
    /// The hub value its reader had seen before reading: the read reflects every wake-up up to
    /// it (the hub's values never go back).
    seen: u64,
    /// The number of this read among the query's reads (a poll asks for a newer one).
    read: u64,
    /// The result; `None` once the query is released.
    result: Option<ResultRecord>,
    /// The ring after version `base` (`None`: the ring no longer bridges from `base`).
    base: u64,
    messages: Option<Vec<Shared>>,
    /// The snapshot of `result`, made once for every subscriber that needs one (those that
    /// fell behind together would otherwise each hold a copy of the whole result).
    snapshot: OnceLock<Shared>,
}

impl Feed {
    fn snapshot(&self, id: &str, result: &ResultRecord) -> Shared {
        self.snapshot.get_or_init(|| Outgoing::new(Message::snapshot(id, result))).clone()
    }
}

/// A query's latest [`Feed`]; the lock makes concurrent subscribers wait for one read.
type Slot = tokio::sync::Mutex<Option<Arc<Feed>>>;

impl Streams {
    /// Subscribers over `store`, woken by `hub`, each buffering `buffer` messages, at most
    /// `streams_per_key` open per API key.
    pub fn new(
        store: Arc<dyn StateStore>,
        hub: Arc<Hub>,
        buffer: usize,
        streams_per_key: usize,
    ) -> Self {
        Streams {
            store,
            hub,
            buffer,
            quota: StreamQuota::new(streams_per_key),
            feeds: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, id: &str) -> Arc<Slot> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = feeds.get(id).and_then(Weak::upgrade) {
            return slot;
        }
        // Forget the queries nobody follows any more before adding one.
        feeds.retain(|_, w| w.strong_count() > 0);
        let slot = Arc::new(Slot::default());
        feeds.insert(id.to_string(), Arc::downgrade(&slot));
        slot
    }

    /// A read of `id` made after the subscriber saw hub value `seen` (and newer than read
    /// `after`, for a poll) that holds the messages after `since` when one is given: the
    /// latest shared read if it qualifies, else a new one, shared from then on.
    async fn feed(
        &self,
        slot: &Slot,
        id: &str,
        seen: u64,
        after: Option<u64>,
        since: Option<u64>,
    ) -> PortResult<Arc<Feed>> {
        let mut latest = slot.lock().await;
        if let Some(f) = latest.as_ref() {
            let fresh = f.seen >= seen && after.is_none_or(|a| f.read > a);
            let covers = since.is_none_or(|v| v >= f.base && f.messages.is_some());
            if fresh && covers {
                return Ok(f.clone());
            }
        }
        let result = self.store.result(id).await?;
        // From the older of what this subscriber and the previous read's readers have, so that
        // both can take this read.
        let previous = latest.as_ref().and_then(|f| f.result.as_ref().map(|r| r.version));
        let base = match (since, previous) {
            (Some(a), Some(b)) => a.min(b),
            (Some(v), None) | (None, Some(v)) => v,
            (None, None) => result.as_ref().map_or(0, |r| r.version),
        };
        let messages = match &result {
            Some(r) if r.version > base => self.store.shared_messages_since(id, base).await?,
            _ => Some(Vec::new()),
        }
        .map(|m| m.into_iter().map(Outgoing::shared).collect());
        let read = latest.as_ref().map_or(1, |f| f.read + 1);
        let released = result.is_none();
        let feed = Arc::new(Feed { seen, read, result, base, messages, snapshot: OnceLock::new() });
        // A released query is not shared: an id registered again must not look released.
        *latest = (!released).then(|| feed.clone());
        Ok(feed)
    }
}

/// What a subscriber follows.
#[derive(Debug, Clone)]
pub enum Target {
    /// One query id.
    Query(String),
    /// A view: its current query, switching when the view does.
    View(watch::Receiver<String>),
}

/// Open a subscription of `caller` (within its key's stream quota): validates the query, takes
/// a reference (for a query id; a view holds its own) and starts the pump. Messages arrive on
/// the returned receiver; dropping it ends the subscription, drops the reference and gives the
/// key's stream back.
pub async fn subscribe(
    server: &Arc<Streams>,
    caller: Caller,
    target: Target,
    since: Option<u64>,
) -> Result<mpsc::Receiver<Shared>, ApiError> {
    let permit = server.quota.open_stream(caller)?;
    let (id, holds_ref) = match &target {
        Target::Query(id) => (id.clone(), true),
        Target::View(rx) => (rx.borrow().clone(), false),
    };
    let store = &*server.store;
    if store.query(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("query [{id}] not found")));
    }
    store.touch(&id, now(server)).await?;
    if holds_ref {
        store.add_refs(&id, 1).await?;
    }
    let (tx, rx) = mpsc::channel(server.buffer.max(2));
    let server = server.clone();
    tokio::spawn(async move {
        let view = match target {
            Target::View(rx) => Some(rx),
            Target::Query(_) => None,
        };
        pump(&server, id.clone(), view, since, &tx).await;
        drop(permit);
        if holds_ref {
            let store = &*server.store;
            if let Err(e) = store.add_refs(&id, -1).await {
                tracing::warn!(query = %id, error = %e, "could not drop a subscriber's reference");
            }
            let _ = store.touch(&id, now(&server)).await;
        }
    });
    Ok(rx)
}

fn now(_server: &Streams) -> i64 {
    kappa_core::ports::Clock::now_ms(&SystemClock)
}

/// What the subscriber has been sent.
struct Sent {
    version: u64,
    caught_up: bool,
    progress: Progress,
    error: Option<Value>,
}

enum Outcome {
    /// Keep going.
    Ok,
    /// The buffer is full or the ring has a gap: a snapshot is due.
    Snapshot,
    /// The subscriber is gone.
    Closed,
}

fn offer(tx: &mpsc::Sender<Shared>, m: Shared) -> Outcome {
    match tx.try_send(m) {
        Ok(()) => Outcome::Ok,
        Err(mpsc::error::TrySendError::Full(_)) => Outcome::Snapshot,
        Err(mpsc::error::TrySendError::Closed(_)) => Outcome::Closed,
    }
}

/// Forward the messages after `sent` from the ring (the shared read's when it holds them);
/// Snapshot on a gap or a full buffer.
async fn forward(
    store: &dyn StateStore,
    feed: &Feed,
    id: &str,
    sent: &mut Sent,
    tx: &mpsc::Sender<Shared>,
) -> Outcome {
    let shared = match &feed.messages {
        Some(m) if sent.version >= feed.base => {
            Ok(Some(m.iter().filter(|m| m.version() > sent.version).cloned().collect()))
        }
        // Behind the shared read (a resume from an older version): read alone.
        _ => store
            .shared_messages_since(id, sent.version)
            .await
            .map(|m| m.map(|m| m.into_iter().map(Outgoing::shared).collect::<Vec<_>>())),
    };
    let msgs = match shared {
        Ok(Some(m)) => m,
        Ok(None) => return Outcome::Snapshot,
        Err(e) => {
            tracing::warn!(query = %id, error = %e, "ring read failed");
            return Outcome::Ok;
        }
    };
    for m in msgs {
        let version = m.version();
        let fits = match &**m {
            Message::Delta { from, .. } => version == sent.version + 1 && *from == sent.version,
            _ => version == sent.version,
        };
        if !fits {
            // A message the subscriber cannot apply: the ring lost what came before it.
            return Outcome::Snapshot;
        }
        sent.version = version;
        if let Some(c) = m.caught_up() {
            sent.caught_up = c;
        }
        if let Some(p) = m.progress() {
            sent.progress = p.clone();
        }
        match offer(tx, m) {
            Outcome::Ok => {}
            other => return other,
        }
    }
    Outcome::Ok
}

async fn pump(
    server: &Arc<Streams>,
    mut id: String,
    mut view: Option<watch::Receiver<String>>,
    since: Option<u64>,
    tx: &mpsc::Sender<Shared>,
) {
    let store = &*server.store;
    let mut wake = server.hub.watch(&id);
    let mut slot = server.slot(&id);
    let mut sent: Option<Sent> = since.map(|v| Sent {
        version: v,
        caught_up: false,
        progress: Progress::default(),
        error: None,
    });
    let mut behind = false;
    // The shared read this subscriber last used, and whether it was woken by a poll (which
    // looks for changes nobody was notified of, so it needs a newer read).
    let mut last_read = 0;
    let mut polled = false;
    loop {
        let seen = *wake.borrow_and_update();
        let since = sent.as_ref().filter(|_| !behind).map(|s| s.version);
        let after = (polled && !behind).then_some(last_read);
        polled = false;
        let feed = match server.feed(&slot, &id, seen, after, since).await {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(query = %id, error = %e, "result read failed");
                None
            }
        };
        if let Some(f) = &feed {
            last_read = f.read;
            if f.result.is_none() {
                let _ = tx.try_send(Outgoing::new(Message::Error {
                    id: id.clone(),
                    error: json!({"type": "resource_not_found_exception", "reason": format!("query [{id}] was released")}),
                    status: 404,
                }));
                return;
            }
        }
        if let Some((f, r)) = feed.as_ref().and_then(|f| Some((f, f.result.as_ref()?))) {
            // A resume from the future, or a subscriber that fell behind: snapshot.
            if sent.as_ref().is_some_and(|s| s.version > r.version) {
                sent = None;
            }
            let mut outcome = Outcome::Ok;
            if behind || sent.is_none() {
                if tx.capacity() > 0 {
                    outcome = offer(tx, f.snapshot(&id, r));
                    if matches!(outcome, Outcome::Ok) {
                        behind = false;
                        sent = Some(Sent {
                            version: r.version,
                            caught_up: r.caught_up,
                            progress: r.progress.clone(),
                            error: r.error.clone(),
                        });
                    }
                }
            } else if let Some(s) = sent.as_mut() {
                if r.version > s.version {
                    outcome = forward(store, f, &id, s, tx).await;
                }
                if matches!(outcome, Outcome::Ok)
                    && s.version == r.version
                    && (s.caught_up != r.caught_up
                        || s.progress != r.progress
                        || s.error != r.error)
                {
                    // The result did not change, its progress did.
                    outcome = offer(tx, Outgoing::new(Message::progress_of(&id, r)));
                    if matches!(outcome, Outcome::Ok) {
                        s.caught_up = r.caught_up;
                        s.progress = r.progress.clone();
                        s.error = r.error.clone();
                    }
                }
            }
            match outcome {
                Outcome::Ok => {}
                Outcome::Snapshot => {
                    if !behind {
                        tracing::info!(query = %id, "subscriber behind or ring gap: a snapshot replaces the backlog");
                    }
                    behind = true;
                    if tx.capacity() > 0 {
                        continue;
                    }
                }
                Outcome::Closed => return,
            }
        }
        // Wait for the next batch, a view switch, the subscriber leaving, or a poll.
        let poll = if behind { Duration::from_millis(50) } else { Duration::from_secs(2) };
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    wake = server.hub.watch(&id);
                }
            }
            Some(new_id) = view_changed(&mut view) => {
                if new_id != id {
                    id = new_id;
                    wake = server.hub.watch(&id);
                    slot = server.slot(&id);
                    last_read = 0;
                    sent = None;
                    behind = false;
                }
            }
            () = tx.closed() => return,
            () = tokio::time::sleep(poll) => polled = true,
        }
    }
}

/// The next id of a view; pending forever for a plain query.
async fn view_changed(view: &mut Option<watch::Receiver<String>>) -> Option<String> {
    match view {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The view is gone: keep following the last query.
                *view = None;
                return std::future::pending().await;
            }
            Some(rx.borrow_and_update().clone())
        }
        None => std::future::pending().await,
    }
}
