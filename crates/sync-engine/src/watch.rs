//! Watch streams: the current value first, then one value per change.
//!
//! Each stream subscribes to store events before its one initial read, then
//! keeps a snapshot current from events (O(log n) each) instead of
//! re-reading, and coalesces a burst of events into one value.
//!
//! A list value costs a copy of the whole list, so list streams also hold
//! values back in proportion to the list's length: at most one value per
//! `len / VALUES_PER_LENGTH` changes, which keeps the copying per change
//! constant however long the list grows. A change held back is delivered
//! once the list has not changed for [`QUIET_DELIVERY`] (other lists'
//! changes do not count), and never later than [`MAX_HOLD`] after it was
//! made, however busy the store is.
//!
//! A read that fails (a busy pool, a transient I/O error) is retried with
//! a growing pause; a stream ends only when its consumer drops it, the
//! engine closes, or the store's events end (the store was closed).
//!
//! Streams see the engine through a [`WatchContext`] (the store, the
//! monitor, the shutdown signal), not through its state: a stream left
//! open keeps neither runs nor the store lease alive.

use std::sync::Arc;
use std::time::Duration;

use sync_core::snapshot::{Applied, QueueSnapshot, RecordsSnapshot};
use sync_core::{
    BoxStream, ConnectivityMonitor, EntityName, RecordKey, StoreError, StoreErrorKind, StoreEvent,
    SyncQueueItem, SyncStatus, SyncStore,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::relay::Relay;
use crate::sends::CatchPanic;
use crate::shared::Shared;

/// What watch streams need of an engine.
#[derive(Clone)]
pub(crate) struct WatchContext {
    store: Arc<dyn SyncStore>,
    monitor: Arc<dyn ConnectivityMonitor>,
    probe_timeout: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
    pull_progress: tokio::sync::watch::Receiver<crate::PullProgress>,
}

impl WatchContext {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            store: Arc::clone(&shared.store),
            monitor: Arc::clone(&shared.monitor),
            probe_timeout: shared.options.connectivity_probe_timeout,
            shutdown: shared.shutdown.subscribe(),
            pull_progress: shared.pull_progress.subscribe(),
        }
    }
}

/// The first pause before a failed read is retried; it doubles up to
/// [`MAX_READ_RETRY_PAUSE`].
const FIRST_READ_RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_READ_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Reads until a read succeeds; `None` when the stream should end first
/// (its consumer dropped it, or the engine shut down).
async fn read_until_ok<T, V, R, Fut>(context: &WatchContext, sender: &mpsc::Sender<T>, read: R) -> Option<V>
where
    R: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<V, StoreError>>,
{
    let mut shutdown = context.shutdown.clone();
    let mut pause = FIRST_READ_RETRY_PAUSE;
    loop {
        match read().await {
            Ok(value) => return Some(value),
            Err(error) if error.kind() == StoreErrorKind::Closed => return None,
            Err(error) => {
                tracing::warn!(%error, ?pause, "a watch stream's read failed: retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = sender.closed() => return None,
            _ = shutdown.wait_for(|closed| *closed) => return None,
        }
        pause = (pause * 2).min(MAX_READ_RETRY_PAUSE);
    }
}

/// List values per list length's worth of changes (see the module docs):
/// each change then costs this many item copies at most, little enough
/// for a subscriber to keep up with a drain's events (one that falls
/// behind by the store's event buffer must re-read the whole list).
const VALUES_PER_LENGTH: usize = 8;

/// How long the list must stay unchanged before a held-back change is
/// delivered.
const QUIET_DELIVERY: Duration = Duration::from_millis(50);

/// The longest a change is held back while the list keeps changing: a
/// value per second at most from this rule, whatever the list's length.
const MAX_HOLD: Duration = Duration::from_secs(1);

/// Runs `body` in a task feeding a stream; the task ends when the stream is
/// dropped (the send fails) or the engine closes.
fn spawn_stream<T, F, Fut>(body: F) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(body(sender));
    Box::pin(ReceiverStream::new(receiver))
}

/// Waits for the next event, then takes every event already waiting, so a
/// burst costs one snapshot. `None` when the event stream ended.
async fn next_burst(events: &mut BoxStream<StoreEvent>) -> Option<Vec<StoreEvent>> {
    let first = events.next().await?;
    let mut burst = vec![first];
    while let Some(Some(event)) = events.next().now_or_never_like() {
        burst.push(event);
    }
    Some(burst)
}

/// The next burst, or `None` when the stream should end: its consumer
/// dropped it, the engine shut down, or the store's events ended.
async fn next_or_end<T>(
    burst: impl std::future::Future<Output = Option<Vec<StoreEvent>>>,
    sender: &mpsc::Sender<T>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Vec<StoreEvent>> {
    tokio::select! {
        burst = burst => burst,
        () = sender.closed() => None,
        _ = shutdown.wait_for(|closed| *closed) => None,
    }
}

/// Polls a future once without waiting.
trait NowOrNever: std::future::Future + Sized {
    fn now_or_never_like(self) -> Option<Self::Output> {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(self);
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(value) => Some(value),
            std::task::Poll::Pending => None,
        }
    }
}

impl<F: std::future::Future> NowOrNever for F {}

/// A snapshot that events keep current.
trait Followed: Send + 'static {
    type Item: Send + 'static;
    fn apply(&mut self, event: &StoreEvent) -> Applied;
    fn to_vec(&self) -> Vec<Self::Item>;
    fn len(&self) -> usize;
}

impl Followed for QueueSnapshot {
    type Item = sync_core::SyncQueueItem;
    fn apply(&mut self, event: &StoreEvent) -> Applied {
        QueueSnapshot::apply(self, event)
    }
    fn to_vec(&self) -> Vec<Self::Item> {
        QueueSnapshot::to_vec(self)
    }
    fn len(&self) -> usize {
        QueueSnapshot::len(self)
    }
}

impl Followed for RecordsSnapshot {
    type Item = sync_core::LocalRecord;
    fn apply(&mut self, event: &StoreEvent) -> Applied {
        RecordsSnapshot::apply(self, event)
    }
    fn to_vec(&self) -> Vec<Self::Item> {
        RecordsSnapshot::to_vec(self)
    }
    fn len(&self) -> usize {
        RecordsSnapshot::len(self)
    }
}

/// Streams a snapshot built by `read` (one read at the start, another only
/// after missed events) and kept current from store events; one value per
/// burst of changes.
fn follow<S, R, Fut>(context: WatchContext, read: R) -> BoxStream<Vec<S::Item>>
where
    S: Followed,
    R: Fn(Arc<dyn SyncStore>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<S, StoreError>> + Send,
{
    spawn_stream(move |sender| async move {
        // Subscribe before reading, so no change falls between the two.
        let events = Relay::spawn(context.store.subscribe());
        let mut shutdown = context.shutdown.clone();
        let read = || read(Arc::clone(&context.store));
        let Some(mut snapshot) = read_until_ok(&context, &sender, &read).await else {
            return;
        };
        if sender.send(snapshot.to_vec()).await.is_err() {
            return;
        }
        // Changes applied since the last value sent, and when the first of
        // them must be delivered at the latest.
        let mut held: usize = 0;
        let mut first_held = tokio::time::Instant::now();
        let mut last_change = first_held;
        loop {
            let next = next_or_end(events.next_burst(), &sender, &mut shutdown);
            let burst = if held == 0 {
                next.await
            } else {
                let due = (last_change + QUIET_DELIVERY).min(first_held + MAX_HOLD);
                match tokio::time::timeout_at(due, next).await {
                    Ok(burst) => burst,
                    // Held back long enough: deliver it.
                    Err(_) => {
                        held = 0;
                        if sender.send(snapshot.to_vec()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            };
            let Some(burst) = burst else { return };
            let held_before = held;
            for event in &burst {
                match snapshot.apply(event) {
                    Applied::Changed => held = held.saturating_add(1),
                    Applied::Unchanged => {}
                    Applied::Resync => {
                        let Some(fresh) = read_until_ok(&context, &sender, &read).await else {
                            return;
                        };
                        snapshot = fresh;
                        // The read is newer than every event of this burst:
                        // the rest need not be applied. Re-read at a full
                        // list's cost, it is delivered now.
                        held = usize::MAX;
                        break;
                    }
                }
            }
            if held > held_before {
                last_change = tokio::time::Instant::now();
                if held_before == 0 {
                    first_held = last_change;
                }
            }
            if held > 0 && held >= snapshot.len() / VALUES_PER_LENGTH {
                held = 0;
                if sender.send(snapshot.to_vec()).await.is_err() {
                    return;
                }
            }
        }
    })
}

pub(crate) fn queue(context: WatchContext) -> BoxStream<Vec<SyncQueueItem>> {
    follow(context, |store| async move {
        store.queue().await.map(QueueSnapshot::new)
    })
}

pub(crate) fn records(context: WatchContext, entity: EntityName) -> BoxStream<Vec<sync_core::LocalRecord>> {
    follow(context, move |store| {
        let entity = entity.clone();
        async move {
            let records = store.records(&entity).await?;
            Ok(RecordsSnapshot::new(entity, records))
        }
    })
}

/// One record's queue item, now and at every change to it.
pub(crate) fn queue_item(context: WatchContext, key: RecordKey) -> BoxStream<Option<SyncQueueItem>> {
    follow_item(context, key, |item| item)
}

/// One record's status, now and at every change of it.
pub(crate) fn item_status(context: WatchContext, key: RecordKey) -> BoxStream<Option<SyncStatus>> {
    follow_item(context, key, |item| item.map(|item| item.status))
}

/// Streams `view` of one record's queue item: the current value, then one
/// value per burst of events that changes it.
///
/// A record created under a temporary id is followed to the server's id
/// when it is renamed ([`StoreEvent::Renamed`]), or already was.
fn follow_item<T>(
    context: WatchContext,
    mut key: RecordKey,
    view: impl Fn(Option<SyncQueueItem>) -> T + Send + 'static,
) -> BoxStream<T>
where
    T: Clone + PartialEq + Send + 'static,
{
    spawn_stream(move |sender| async move {
        let mut events = context.store.subscribe();
        let mut shutdown = context.shutdown.clone();
        let store = Arc::clone(&context.store);
        let read = |key: RecordKey| {
            let store = Arc::clone(&store);
            move || {
                let (store, key) = (Arc::clone(&store), key.clone());
                async move { store.queue_item(&key).await }
            }
        };
        // A temporary id renamed already: follow the server's id, even with
        // no item left to find it by (cleared since).
        if key.id.is_temporary()
            && let Some(id) = read_until_ok(&context, &sender, || {
                let (store, key) = (Arc::clone(&store), key.clone());
                async move { store.resolve_id(&key).await }
            })
            .await
        {
            key = RecordKey::new(key.entity.clone(), id);
        }
        // The item as last seen: a `clear_synced` removes it exactly when
        // it is synced, with no read.
        let Some(mut item) = read_until_ok(&context, &sender, read(key.clone())).await else {
            return;
        };
        if let Some(found) = &item {
            // Read through the alias of a renamed temporary id.
            key = found.key();
        }
        let mut last = view(item.clone());
        if sender.send(last.clone()).await.is_err() {
            return;
        }
        while let Some(burst) = next_or_end(next_burst(&mut events), &sender, &mut shutdown).await {
            for event in &burst {
                match event {
                    StoreEvent::QueueItem {
                        key: changed,
                        item: now,
                    } if *changed == key => {
                        item = now.clone();
                    }
                    StoreEvent::Renamed { from, to } if *from == key => {
                        key = to.clone();
                    }
                    StoreEvent::SyncedCleared
                        if item
                            .as_ref()
                            .is_some_and(|item| item.status == SyncStatus::Synced) =>
                    {
                        item = None;
                    }
                    StoreEvent::Lagged => {
                        let Some(fresh) = read_until_ok(&context, &sender, read(key.clone())).await else {
                            return;
                        };
                        if let Some(found) = &fresh {
                            key = found.key();
                        }
                        item = fresh;
                    }
                    _ => {}
                }
            }
            let current = view(item.clone());
            if current != last {
                last = current.clone();
                if sender.send(current).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// Pull progress: the latest value now and after every change.
pub(crate) fn pull_progress(context: WatchContext) -> BoxStream<crate::PullProgress> {
    spawn_stream(move |sender| async move {
        let mut progress = context.pull_progress;
        let mut shutdown = context.shutdown.clone();
        loop {
            let now = progress.borrow_and_update().clone();
            if sender.send(now).await.is_err() {
                return;
            }
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { return },
                () = sender.closed() => return,
                _ = shutdown.wait_for(|closed| *closed) => return,
            }
        }
    })
}

pub(crate) fn connectivity(context: WatchContext) -> BoxStream<bool> {
    spawn_stream(move |sender| async move {
        let mut changes = context.monitor.changes();
        let mut shutdown = context.shutdown.clone();
        // A probe that hangs or panics counts as offline, as in sync runs.
        let probe = CatchPanic::new(context.monitor.is_connected());
        let mut last = matches!(
            tokio::time::timeout(context.probe_timeout, probe).await,
            Ok(Ok(true))
        );
        if sender.send(last).await.is_err() {
            return;
        }
        loop {
            let online = tokio::select! {
                // A change stream that panics ends the watch, as one that
                // ends does.
                change = CatchPanic::new(changes.next()) => match change {
                    Ok(Some(online)) => online,
                    Ok(None) | Err(_) => return,
                },
                () = sender.closed() => return,
                _ = shutdown.wait_for(|closed| *closed) => return,
            };
            if online != last {
                last = online;
                if sender.send(online).await.is_err() {
                    return;
                }
            }
        }
    })
}
