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
//! at most [`QUIET_DELIVERY`] later, however busy the store is, so the
//! latest value always arrives soon.

use std::sync::Arc;
use std::time::Duration;

use sync_core::snapshot::{Applied, QueueSnapshot, RecordsSnapshot};
use sync_core::{BoxStream, EntityName, RecordKey, StoreEvent, SyncStatus};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::engine::Inner;

/// List values per list length's worth of changes (see the module docs):
/// each change then costs this many item copies at most, little enough
/// for a subscriber to keep up with a drain's events (one that falls
/// behind by the store's event buffer must re-read the whole list).
const VALUES_PER_LENGTH: usize = 8;

/// How long a change may be held back before its value is delivered.
pub(crate) const QUIET_DELIVERY: Duration = Duration::from_millis(50);

/// How far a list stream's copy of events may run ahead of the stream
/// before the stream must re-read its list. Copying a long list takes a
/// while, and a drain produces events meanwhile; the store's own buffer is
/// shared by every subscriber and kept small.
///
/// Events carry whole items, so the buffer is also what a stream that is
/// rarely polled may hold: 16,384 events, 16 MiB at 1 KiB payloads.
const RELAY_BUFFER: usize = 16_384;

/// Moves store events into a buffer of the stream's own as they come, in a
/// task of its own, so a stream busy copying a long list does not fall
/// behind the store's buffer (and into a re-read, which takes longer still,
/// so it would fall behind again). On overflow the stream gets
/// [`StoreEvent::Lagged`] once there is room.
fn relay(events: BoxStream<StoreEvent>) -> BoxStream<StoreEvent> {
    relay_with(events, RELAY_BUFFER)
}

fn relay_with(mut events: BoxStream<StoreEvent>, capacity: usize) -> BoxStream<StoreEvent> {
    let (sender, receiver) = mpsc::channel(capacity);
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = sender.closed() => return,
            };
            let Some(event) = event else { return };
            match sender.try_send(event) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {}
            }
            // Overflowed: events are dropped (the re-read after the marker
            // covers them) until there is room for the marker, which goes
            // out even if the store's events end meanwhile.
            let mut ended = false;
            let permit = loop {
                tokio::select! {
                    biased;
                    permit = sender.reserve() => break permit,
                    event = events.next(), if !ended => ended = event.is_none(),
                }
            };
            let Ok(permit) = permit else { return };
            permit.send(StoreEvent::Lagged);
            if ended {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(receiver))
}

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
    events: &mut BoxStream<StoreEvent>,
    sender: &mpsc::Sender<T>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Vec<StoreEvent>> {
    tokio::select! {
        burst = next_burst(events) => burst,
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
fn follow<S, R, Fut>(inner: Arc<Inner>, read: R) -> BoxStream<Vec<S::Item>>
where
    S: Followed,
    R: Fn(Arc<Inner>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<S>> + Send,
{
    spawn_stream(move |sender| async move {
        // Subscribe before reading, so no change falls between the two.
        let mut events = relay(inner.store.subscribe());
        let mut shutdown = inner.shutdown.subscribe();
        let Some(mut snapshot) = read(Arc::clone(&inner)).await else {
            return;
        };
        if sender.send(snapshot.to_vec()).await.is_err() {
            return;
        }
        // Changes applied since the last value sent, and when the first of
        // them must be delivered at the latest.
        let mut held: usize = 0;
        let mut deliver_by = tokio::time::Instant::now();
        loop {
            let next = next_or_end(&mut events, &sender, &mut shutdown);
            let burst = if held == 0 {
                next.await
            } else {
                match tokio::time::timeout_at(deliver_by, next).await {
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
                        let Some(fresh) = read(Arc::clone(&inner)).await else {
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
            if held_before == 0 && held > 0 {
                deliver_by = tokio::time::Instant::now() + QUIET_DELIVERY;
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

pub(crate) fn queue(inner: Arc<Inner>) -> BoxStream<Vec<sync_core::SyncQueueItem>> {
    follow(inner, |inner| async move {
        inner.store.queue().await.ok().map(QueueSnapshot::new)
    })
}

pub(crate) fn records(inner: Arc<Inner>, entity: EntityName) -> BoxStream<Vec<sync_core::LocalRecord>> {
    follow(inner, move |inner| {
        let entity = entity.clone();
        async move {
            let records = inner.store.records(&entity).await.ok()?;
            Some(RecordsSnapshot::new(entity, records))
        }
    })
}

pub(crate) fn item_status(inner: Arc<Inner>, key: RecordKey) -> BoxStream<Option<SyncStatus>> {
    spawn_stream(move |sender| async move {
        let mut events = inner.store.subscribe();
        let mut shutdown = inner.shutdown.subscribe();
        let Ok(item) = inner.store.queue_item(&key).await else {
            return;
        };
        let mut last = item.map(|item| item.status);
        if sender.send(last).await.is_err() {
            return;
        }
        while let Some(burst) = next_or_end(&mut events, &sender, &mut shutdown).await {
            let mut current = last;
            for event in &burst {
                match event {
                    StoreEvent::QueueItem { key: changed, item } if *changed == key => {
                        current = item.as_ref().map(|item| item.status);
                    }
                    StoreEvent::SyncedCleared if current == Some(SyncStatus::Synced) => current = None,
                    StoreEvent::Lagged => {
                        let Ok(item) = inner.store.queue_item(&key).await else {
                            return;
                        };
                        current = item.map(|item| item.status);
                    }
                    _ => {}
                }
            }
            if current != last {
                last = current;
                if sender.send(current).await.is_err() {
                    return;
                }
            }
        }
    })
}

pub(crate) fn connectivity(inner: Arc<Inner>) -> BoxStream<bool> {
    spawn_stream(move |sender| async move {
        let mut changes = inner.monitor.changes();
        let mut shutdown = inner.shutdown.subscribe();
        let mut last = inner.monitor.is_connected().await;
        if sender.send(last).await.is_err() {
            return;
        }
        loop {
            let online = tokio::select! {
                change = changes.next() => match change {
                    Some(online) => online,
                    None => return,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_overflowing_relay_drops_events_and_then_says_lagged() {
        let (source, events) = mpsc::channel(64);
        let mut relayed = relay_with(Box::pin(ReceiverStream::new(events)), 4);
        for _ in 0..10 {
            source.send(StoreEvent::SyncedCleared).await.unwrap();
        }
        // The store's events end while the relay is still full.
        drop(source);
        tokio::task::yield_now().await;
        let mut received = Vec::new();
        while let Some(event) = relayed.next().await {
            received.push(event);
        }
        assert_eq!(received.len(), 5, "{received:?}");
        assert!(
            received[..4]
                .iter()
                .all(|event| matches!(event, StoreEvent::SyncedCleared))
        );
        assert!(matches!(received[4], StoreEvent::Lagged), "{received:?}");
    }

    #[tokio::test]
    async fn a_relay_forwards_everything_while_there_is_room() {
        let (source, events) = mpsc::channel(64);
        let mut relayed = relay_with(Box::pin(ReceiverStream::new(events)), 16);
        for _ in 0..10 {
            source.send(StoreEvent::SyncedCleared).await.unwrap();
        }
        drop(source);
        let mut count = 0;
        while let Some(event) = relayed.next().await {
            assert!(matches!(event, StoreEvent::SyncedCleared), "{event:?}");
            count += 1;
        }
        assert_eq!(count, 10);
    }
}
