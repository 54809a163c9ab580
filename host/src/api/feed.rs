//! `GET /incidents/stream`: the incidents as they change, as server-sent
//! events, for the dashboard's live list.
//!
//! One watcher task per replica serves every subscriber: it starts with the
//! first one, reads the newest [`WATCH_WINDOW`] incidents (detected in the
//! last week: [`Store::recent`]) every [`POLL_EVERY`] (or at once when `POST /events` records something), and
//! broadcasts each record whose version changed as an `incident` event
//! carrying the whole record. It stops when the last subscriber leaves, and
//! every stream ends when the service stops, so a shutdown never waits on an
//! open dashboard. The store is the source, not this replica's pipeline:
//! changes another replica writes show up too.
//!
//! A subscriber too slow to keep up, or a burst that changed every incident
//! the watcher follows between two reads (so older ones may have changed
//! unseen), gets a `resync` event (reload the list) instead of silently
//! missing records.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::{Notify, broadcast, watch};

use super::{ApiError, ApiState, Caller};
use crate::store::Store;

/// How often the watcher reads the store when nothing woke it.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// How many of the newest incidents the watcher follows.
pub const WATCH_WINDOW: usize = 100;
/// Events a subscriber may fall behind before it is told to resync.
const BACKLOG: usize = 256;
/// Streams one replica serves at once; past it a new one is refused (503).
pub const MAX_STREAMS: usize = 256;

/// What the watcher broadcasts.
#[derive(Debug, Clone)]
enum Change {
    /// A record, as JSON.
    Incident(Arc<str>),
    /// More changed than the window shows: reload.
    Resync,
}

/// The shared watcher's state.
pub struct Feed {
    tx: broadcast::Sender<Change>,
    wake: Notify,
    /// Whether a watcher runs; taken by `subscribe` and by the watcher
    /// deciding to stop, so exactly one watcher runs while anyone listens.
    running: Mutex<bool>,
    /// True once the running watcher has read the store (changes after
    /// that are broadcast); false while none runs.
    primed: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
    /// The sender of a feed made without the service's stop (tests).
    _own_stop: Option<watch::Sender<bool>>,
}

impl Default for Feed {
    fn default() -> Self {
        // A stop that never fires: the service passes its own.
        let (tx, rx) = watch::channel(false);
        Feed {
            _own_stop: Some(tx),
            ..Feed::new(rx)
        }
    }
}

/// How long a new subscriber waits for the watcher's first read.
const PRIME_WAIT: Duration = Duration::from_secs(5);
/// Least time between two reads, however often `POST /events` wakes the watcher.
const MIN_READ_GAP: Duration = Duration::from_millis(100);

impl Feed {
    /// A feed whose streams end when `stop` turns true.
    pub fn new(stop: watch::Receiver<bool>) -> Self {
        Feed {
            tx: broadcast::channel(BACKLOG).0,
            wake: Notify::new(),
            running: Mutex::new(false),
            primed: watch::channel(false).0,
            stop,
            _own_stop: None,
        }
    }

    /// Reads the store now (something was just recorded).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A new subscriber. Starts the watcher if none runs, and returns once
    /// the watcher has read the store, so every change after this call is
    /// sent. A subscriber that goes away while waiting leaves nothing
    /// behind: the watcher runs on its own and stops when no one listens.
    async fn subscribe(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
    ) -> Result<broadcast::Receiver<Change>, ApiError> {
        if *self.stop.borrow() {
            return Err(ApiError::new(
                super::ErrorCode::Unavailable,
                "the service is stopping",
            ));
        }
        let rx = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if self.tx.receiver_count() >= MAX_STREAMS {
                return Err(ApiError::new(
                    super::ErrorCode::Unavailable,
                    format!("this replica already serves {MAX_STREAMS} incident streams"),
                ));
            }
            let rx = self.tx.subscribe();
            if !*running {
                *running = true;
                self.primed.send_replace(false);
                tokio::spawn(watch(self.clone(), store));
            }
            rx
        };
        let mut primed = self.primed.subscribe();
        match tokio::time::timeout(PRIME_WAIT, primed.wait_for(|p| *p)).await {
            Ok(Ok(_)) => Ok(rx),
            _ => Err(ApiError::new(
                super::ErrorCode::Unavailable,
                "the incident stream could not read the store; try again",
            )),
        }
    }

    /// Stops the watcher if no one listens (under the lock `subscribe`
    /// takes, so a subscriber arriving now either sees it running or starts
    /// a new one).
    fn idle(&self) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if self.tx.receiver_count() == 0 {
            *running = false;
            self.primed.send_replace(false);
            return true;
        }
        false
    }
}

/// Resolves when the service stops (never, if its stop sender is gone
/// without having said so).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The newest incidents whose version is not the one in `seen`; `seen`
/// becomes the versions read.
async fn read(
    store: &dyn Store,
    seen: &mut HashMap<String, u64>,
) -> Result<Vec<Change>, crate::store::StoreError> {
    let page = store.recent(WATCH_WINDOW).await?;
    let mut changed = Vec::new();
    let primed = !seen.is_empty();
    let mut now = HashMap::with_capacity(page.len());
    for r in &page {
        let id = r.incident.id.to_string();
        if seen.get(&id) != Some(&r.version) {
            match serde_json::to_string(r) {
                Ok(json) => changed.push(Change::Incident(Arc::from(json))),
                Err(e) => tracing::warn!(incident = %id, error = %e,
                    "Could not serialize an incident for the stream."),
            }
        }
        now.insert(id, r.version);
    }
    *seen = now;
    if primed && page.len() == WATCH_WINDOW && changed.len() == WATCH_WINDOW {
        changed.push(Change::Resync);
    }
    Ok(changed)
}

/// The watcher: reads and broadcasts until no one listens or the service
/// stops. A failed read is retried with backoff (up to 10 s apart).
async fn watch(feed: Arc<Feed>, store: Arc<dyn Store>) {
    let mut stop = feed.stop.clone();
    let mut seen = HashMap::new();
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = feed.wake.notified(), if *feed.primed.borrow() => {
                tokio::time::sleep(MIN_READ_GAP).await;
            }
            _ = stopped(&mut stop) => break,
        }
        if feed.idle() {
            return;
        }
        match read(store.as_ref(), &mut seen).await {
            Ok(changed) => {
                if !*feed.primed.borrow() {
                    // The first read primes: subscribers load the list after it.
                    feed.primed.send_replace(true);
                } else {
                    for change in changed {
                        // No receiver left: the next turn stops.
                        let _ = feed.tx.send(change);
                    }
                }
                wait = POLL_EVERY;
            }
            Err(e) => {
                wait = (wait * 2).clamp(POLL_EVERY, Duration::from_secs(10));
                tracing::warn!(error = %e, retry_in = ?wait,
                    "The incident stream could not read the store.");
            }
        }
    }
    let mut running = feed.running.lock().unwrap_or_else(|e| e.into_inner());
    *running = false;
    feed.primed.send_replace(false);
}

/// `GET /incidents/stream`.
pub(super) async fn stream(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.read(api.token.as_ref())?;
    let store = api.store()?.clone();
    let rx = api.feed.subscribe(store).await?;
    let stop = api.feed.stop.clone();
    let first = Event::default().event("ready").data("{}");
    let events = futures_util::stream::unfold(
        (Some(first), rx, stop),
        |(first, mut rx, mut stop)| async move {
            if let Some(e) = first {
                return Some((Ok(e), (None, rx, stop)));
            }
            let event = tokio::select! {
                r = rx.recv() => match r {
                    Ok(Change::Incident(json)) => Event::default().event("incident").data(json.as_ref()),
                    Ok(Change::Resync) => Event::default().event("resync").data("{\"missed\":null}"),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Event::default().event("resync").data(format!("{{\"missed\":{n}}}"))
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = stopped(&mut stop) => return None,
            };
            Some((Ok(event), (None, rx, stop)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
