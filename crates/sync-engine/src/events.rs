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
    /// The server did not hold the record, and that settled the change
    /// (a delete of a record already gone).
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
}

impl AttemptResult {
    /// The result an outcome reports.
    pub(crate) fn of(outcome: &AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Applied { .. } => Self::Applied,
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
            _ => Self::Interrupted,
        }
    }
}

/// The engine's side of the event channel.
#[derive(Debug)]
pub(crate) struct EventBus {
    sender: broadcast::Sender<SyncEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(EVENT_BUFFER).0,
        }
    }
}

impl EventBus {
    /// Whether anyone listens: events are built only then.
    pub(crate) fn listened(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Sends `event` to the subscribers there are.
    pub(crate) fn send(&self, event: SyncEvent) {
        // No subscriber is not an error.
        let _ = self.sender.send(event);
    }

    /// The events from now on.
    pub(crate) fn subscribe(&self) -> BoxStream<SyncEvent> {
        Box::pin(
            BroadcastStream::new(self.sender.subscribe()).map(|event| match event {
                Ok(event) => event,
                Err(BroadcastStreamRecvError::Lagged(missed)) => SyncEvent::Lagged { missed },
            }),
        )
    }
}
