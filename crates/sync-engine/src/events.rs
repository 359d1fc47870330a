//! Sync events: what happened to each attempt and each pulled page, for
//! an app's metrics and UIs ([`crate::OfflineSyncEngine::events`]).
//!
//! Events go through a bounded broadcast channel, built only when someone
//! listens. A subscriber that falls behind by more than the channel holds
//! is told how many events it missed ([`SyncEvent::Lagged`]) instead of
//! holding the engine back or growing without bound; what the events add
//! up to is never lost, since [`crate::OfflineSyncEngine::stats`] and the
//! watch streams read it from the store.

use std::time::Duration;

use sync_core::{AttemptOutcome, BoxStream, EntityName, ErrorKind, PullCounts, RecordKey, SyncOperation};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// Events a subscriber may lag behind before it is told it missed some.
pub(crate) const EVENT_BUFFER: usize = 1024;

/// Something the engine did, as it happened.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// An attempt to send a record's change started.
    Sending {
        /// The record.
        key: RecordKey,
        /// The operation sent.
        operation: SyncOperation,
    },
    /// An attempt ended and its outcome was recorded.
    Attempted(AttemptEvent),
    /// A page of the server's changes was applied.
    Pulled {
        /// The entity pulled.
        entity: EntityName,
        /// What the page did.
        counts: PullCounts,
    },
    /// This subscriber fell behind and missed this many events: read
    /// [`crate::OfflineSyncEngine::stats`] (or a watch stream) to catch up.
    Lagged {
        /// How many events were skipped.
        missed: u64,
    },
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AttemptEvent {
    /// The record.
    pub key: RecordKey,
    /// The operation the attempt sent.
    pub operation: SyncOperation,
    /// What came of it.
    pub result: AttemptResult,
    /// From the first request to the answer (or the timeout).
    pub duration: Duration,
    /// `false` when the record changed while the attempt was out: the
    /// outcome was recorded for the version sent, and the newer change is
    /// still to be sent.
    pub current: bool,
}

/// What came of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptResult {
    /// The server applied the change.
    Applied,
    /// The server did not hold the record. For a delete, that settles
    /// it (the record is gone either way); for an update, the engine
    /// checks the server and re-creates the record in its next attempt.
    NotFound,
    /// The attempt failed; it is retried later.
    Failed {
        /// How the failure was classified.
        kind: ErrorKind,
        /// The server's HTTP status, when it answered.
        http_status: Option<u16>,
    },
    /// The attempt failed for good: the item is parked until the app
    /// retries or discards it.
    Parked {
        /// How the failure was classified.
        kind: ErrorKind,
        /// The server's HTTP status, when it answered.
        http_status: Option<u16>,
    },
    /// The link dropped during the attempt: it is not counted as a
    /// failure and goes out again when the network is back.
    Interrupted,
    /// Nothing was sent: the record waits for a record it refers to (its
    /// item's `last_error` says which); the event's duration is zero.
    Held,
}

impl AttemptResult {
    /// The result an outcome reports.
    pub(crate) fn of(outcome: &AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Applied { .. }
            | AttemptOutcome::AppliedAs { .. }
            | AttemptOutcome::FoundAs { .. } => Self::Applied,
            AttemptOutcome::NotFound => Self::NotFound,
            AttemptOutcome::Failed {
                kind,
                http_status,
                next_attempt_at,
                ..
            } => {
                let (kind, http_status) = (*kind, *http_status);
                if next_attempt_at.is_none() && kind == ErrorKind::Permanent {
                    Self::Parked { kind, http_status }
                } else {
                    Self::Failed { kind, http_status }
                }
            }
            AttemptOutcome::Released { .. } => Self::Interrupted,
            AttemptOutcome::Held { .. } => Self::Held,
        }
    }
}

/// The engine's side of the event channel. Closing it (at the end of the
/// engine's close, once the last outcomes are recorded) ends every
/// subscriber's stream after the events already buffered.
#[derive(Debug)]
pub(crate) struct EventBus {
    sender: std::sync::Mutex<Option<broadcast::Sender<SyncEvent>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: std::sync::Mutex::new(Some(broadcast::channel(EVENT_BUFFER).0)),
        }
    }
}

impl EventBus {
    fn with_sender<T>(&self, use_it: impl FnOnce(&broadcast::Sender<SyncEvent>) -> T) -> Option<T> {
        // A poisoned lock only means a panic elsewhere: the sender is fine.
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sender.as_ref().map(use_it)
    }

    /// Whether anyone listens: events are built only then.
    pub(crate) fn listened(&self) -> bool {
        self.with_sender(|sender| sender.receiver_count() > 0)
            .unwrap_or(false)
    }

    /// Sends `event` to the subscribers there are.
    pub(crate) fn send(&self, event: SyncEvent) {
        // No subscriber is not an error.
        let _ = self.with_sender(|sender| sender.send(event));
    }

    /// The events from now on; an empty stream once the bus is closed.
    pub(crate) fn subscribe(&self) -> BoxStream<SyncEvent> {
        match self.with_sender(broadcast::Sender::subscribe) {
            Some(receiver) => Box::pin(BroadcastStream::new(receiver).map(|event| match event {
                Ok(event) => event,
                Err(BroadcastStreamRecvError::Lagged(missed)) => SyncEvent::Lagged { missed },
            })),
            None => Box::pin(tokio_stream::empty()),
        }
    }

    /// Ends every subscriber's stream once it has read what is buffered.
    pub(crate) fn close(&self) {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(sender.take());
    }
}
