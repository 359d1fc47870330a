//! [`Relay`]: a list stream's own buffer of store events, coalesced per
//! row.
//!
//! The store's event buffer is shared by every subscriber and small, and a
//! list stream busy copying a long list falls behind it, then must re-read
//! the whole list, which takes longer still, so it falls behind again. The
//! relay takes events off the store as they come, in a task of its own, and
//! keeps only the latest event of each row until the stream takes them:
//! every event says what its row is now, so the latest is all a snapshot
//! needs. The buffer is bounded by the rows that changed, never by how many
//! times they changed (times the rare `SyncedCleared` events between two
//! takes), and nothing is dropped. An event about everything keeps its
//! place: rows changed after it are coalesced apart from rows changed
//! before it; a `Lagged` makes everything before it moot (the stream
//! re-reads), so it replaces what is pending.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sync_core::{BoxStream, RecordKey, StoreEvent};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

/// Which row an event describes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Row {
    Document(RecordKey),
    QueueItem(RecordKey),
}

/// Events in arrival order, coalesced per row between events about
/// everything.
#[derive(Debug)]
enum Segment {
    Rows {
        order: Vec<Row>,
        latest: HashMap<Row, StoreEvent>,
    },
    Everything(StoreEvent),
}

#[derive(Debug, Default)]
struct Pending {
    segments: VecDeque<Segment>,
    ended: bool,
}

impl Pending {
    fn push(&mut self, event: StoreEvent) {
        let row = match &event {
            StoreEvent::Record { key, .. } => Row::Document(key.clone()),
            StoreEvent::QueueItem { key, .. } => Row::QueueItem(key.clone()),
            StoreEvent::Lagged => {
                // The stream re-reads everything on it: what is pending
                // before it no longer matters.
                self.segments.clear();
                self.segments.push_back(Segment::Everything(event));
                return;
            }
            _ => {
                // The same event about everything twice in a row is once.
                if !matches!(self.segments.back(), Some(Segment::Everything(last)) if *last == event) {
                    self.segments.push_back(Segment::Everything(event));
                }
                return;
            }
        };
        if !matches!(self.segments.back(), Some(Segment::Rows { .. })) {
            self.segments.push_back(Segment::Rows {
                order: Vec::new(),
                latest: HashMap::new(),
            });
        }
        if let Some(Segment::Rows { order, latest }) = self.segments.back_mut()
            && latest.insert(row.clone(), event).is_none()
        {
            order.push(row);
        }
    }

    fn take(&mut self) -> Vec<StoreEvent> {
        let mut events = Vec::new();
        for segment in self.segments.drain(..) {
            match segment {
                Segment::Rows { order, mut latest } => {
                    events.extend(order.iter().filter_map(|row| latest.remove(row)));
                }
                Segment::Everything(event) => events.push(event),
            }
        }
        events
    }
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    ready: Notify,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // The pending events stay valid if a holder panicked.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Store events taken off the store as they come and handed over in
/// coalesced bursts. Dropping it stops its task.
#[derive(Debug)]
pub(crate) struct Relay {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts relaying `events` (subscribe before reading the list, as
    /// without a relay).
    pub(crate) fn spawn(mut events: BoxStream<StoreEvent>) -> Self {
        let shared = Arc::new(Shared::default());
        let feeding = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                feeding.pending().push(event);
                feeding.ready.notify_one();
            }
            feeding.pending().ended = true;
            feeding.ready.notify_one();
        });
        Self { shared, task }
    }

    /// Every event pending, once there is at least one; `None` once the
    /// store's events ended and all were taken.
    pub(crate) async fn next_burst(&self) -> Option<Vec<StoreEvent>> {
        loop {
            // A notification sent before this wait starts is kept, so none
            // is missed between the look and the wait.
            let ready = self.shared.ready.notified();
            {
                let mut pending = self.shared.pending();
                if !pending.segments.is_empty() {
                    return Some(pending.take());
                }
                if pending.ended {
                    return None;
                }
            }
            ready.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sync_core::coalesce::{QueueWrite, SaveContext, plan_save};
    use sync_core::{LocalChange, SyncOperation, Timestamp};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;

    fn item(id: &str, version: u64) -> StoreEvent {
        let change = LocalChange::new("tasks", id, json!({"v": version}), SyncOperation::Create)
            .unwrap_or_else(|error| unreachable!("a valid change: {error}"));
        let QueueWrite::Put(mut item) =
            plan_save(None, false, change, SaveContext::at(Timestamp::from_millis(0))).queue
        else {
            unreachable!("a first save queues its change")
        };
        item.version = version;
        StoreEvent::QueueItem {
            key: item.key(),
            item: Some(item),
        }
    }

    fn version(event: &StoreEvent) -> Option<(String, u64)> {
        match event {
            StoreEvent::QueueItem {
                key,
                item: Some(item),
            } => Some((key.id.as_str().to_owned(), item.version)),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_burst_keeps_the_latest_event_per_row_and_events_about_everything_in_place() {
        let (source, events) = mpsc::channel(64);
        let relay = Relay::spawn(Box::pin(ReceiverStream::new(events)));
        for event in [
            item("a", 1),
            item("b", 1),
            item("a", 2),
            StoreEvent::SyncedCleared,
            item("a", 3),
            item("a", 4),
        ] {
            source
                .send(event)
                .await
                .unwrap_or_else(|_| unreachable!("the relay listens"));
        }
        drop(source);
        let mut all = Vec::new();
        while let Some(burst) = relay.next_burst().await {
            all.extend(burst);
        }
        let seen: Vec<_> = all.iter().map(version).collect();
        assert_eq!(
            seen,
            [
                Some(("a".to_owned(), 2)),
                Some(("b".to_owned(), 1)),
                None,
                Some(("a".to_owned(), 4)),
            ]
        );
        assert!(matches!(all[2], StoreEvent::SyncedCleared));
    }

    #[tokio::test]
    async fn a_lag_replaces_what_is_pending_and_repeats_are_kept_once() {
        let (source, events) = mpsc::channel(64);
        let relay = Relay::spawn(Box::pin(ReceiverStream::new(events)));
        for event in [
            item("a", 1),
            StoreEvent::SyncedCleared,
            StoreEvent::SyncedCleared,
            item("b", 1),
            StoreEvent::Lagged,
            item("c", 1),
            StoreEvent::SyncedCleared,
            StoreEvent::SyncedCleared,
        ] {
            source
                .send(event)
                .await
                .unwrap_or_else(|_| unreachable!("the relay listens"));
        }
        drop(source);
        let mut all = Vec::new();
        while let Some(burst) = relay.next_burst().await {
            all.extend(burst);
        }
        assert!(matches!(all[0], StoreEvent::Lagged), "{all:?}");
        assert_eq!(version(&all[1]), Some(("c".to_owned(), 1)));
        assert!(matches!(all[2], StoreEvent::SyncedCleared), "{all:?}");
        assert_eq!(all.len(), 3, "{all:?}");
    }

    #[tokio::test]
    async fn thousands_of_changes_to_a_few_rows_hold_a_few_events() {
        let (source, events) = mpsc::channel(16);
        let relay = Relay::spawn(Box::pin(ReceiverStream::new(events)));
        for n in 0..10_000 {
            source
                .send(item(&(n % 3).to_string(), n))
                .await
                .unwrap_or_else(|_| unreachable!("the relay listens"));
        }
        drop(source);
        let mut all = Vec::new();
        while let Some(burst) = relay.next_burst().await {
            all.extend(burst);
        }
        // 10,000 changes to 3 rows: the relay held at most the latest of
        // each, plus those still in the channel when the first burst was
        // taken.
        assert!(all.len() <= 6, "{} events relayed", all.len());
        let last: HashMap<String, u64> = all.iter().filter_map(version).collect();
        assert_eq!(last["0"], 9_999);
        assert_eq!(last["1"], 9_997);
        assert_eq!(last["2"], 9_998);
        assert!(relay.shared.pending().segments.is_empty());
    }
}
