//! What an app observes beyond the watch streams: the event stream of
//! attempts and pulls, the queue's statistics, and waiting for one saved
//! change to reach the server.

use std::collections::BTreeMap;
use std::time::Duration;

use sync_core::{BoxStream, EntityName, PullCursor, QueueCounts, SavedChange, SyncStatus, Timestamp};
use tokio_stream::StreamExt;

use crate::engine::OfflineSyncEngine;
use crate::error::SyncError;
use crate::events::SyncEvent;

/// The queue at a glance, for dashboards and support screens
/// ([`OfflineSyncEngine::stats`]).
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct SyncStats {
    /// Items per status, over every entity.
    pub total: QueueCounts,
    /// Items per status, per entity.
    pub per_entity: BTreeMap<EntityName, QueueCounts>,
    /// Failed items waiting for the app (a permanent error): they are not
    /// retried on their own.
    pub parked: u64,
    /// When the oldest change not yet on the server was queued.
    pub oldest_unsent: Option<Timestamp>,
    /// How long ago that was, by the engine's clock.
    pub oldest_unsent_age: Option<Duration>,
    /// The stored pull cursor of every pulled entity (`None`: never
    /// pulled, or loading from scratch).
    pub cursors: BTreeMap<EntityName, Option<PullCursor>>,
}

/// How a saved change ended ([`OfflineSyncEngine::wait_for_sync`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeOutcome {
    /// The server confirmed the change (or a later change to the same
    /// record that carried it).
    Synced,
    /// The server refused the change for good: the item is parked until
    /// the app retries or discards it.
    Parked {
        /// The server's HTTP status, when it answered.
        http_status: Option<u16>,
        /// The failure's message.
        error: Option<String>,
    },
    /// The save left nothing to send (a create deleted before it was
    /// sent).
    NothingToSend,
    /// The item left the queue without this call seeing it confirmed: it
    /// was discarded, or cleared by `clear_synced` after it synced (and
    /// maybe queued again by a later save).
    LeftQueue,
}

impl OfflineSyncEngine {
    /// Every attempt (its start, then its outcome with the HTTP status and
    /// duration) and every pulled page, from now on, for metrics and UIs.
    /// Events are built only while someone listens. A subscriber more than
    /// 1024 events behind gets [`SyncEvent::Lagged`] with the number it
    /// missed instead of slowing the engine down; [`Self::stats`] and the
    /// watch streams read the state those events add up to. The stream
    /// ends when the engine has closed, after the outcomes its close
    /// waited for (an engine already closed gives an empty stream).
    #[must_use]
    pub fn events(&self) -> BoxStream<SyncEvent> {
        self.shared.events.subscribe()
    }

    /// Counts of the queue per status and entity, parked items, the age of
    /// the oldest change not yet on the server, and the pull cursors. Reads
    /// the whole queue: for a support screen, not for every frame.
    ///
    /// Cancel safety: cancel-safe (it only reads).
    ///
    /// # Errors
    /// [`SyncError::Store`] if a read fails.
    pub async fn stats(&self) -> Result<SyncStats, SyncError> {
        let shared = &self.shared;
        let mut stats = SyncStats::default();
        for item in shared.store.queue().await? {
            let entity = stats.per_entity.entry(item.entity.clone()).or_default();
            for counts in [&mut stats.total, entity] {
                match item.status {
                    SyncStatus::Pending => counts.pending += 1,
                    SyncStatus::Syncing => counts.syncing += 1,
                    SyncStatus::Synced => counts.synced += 1,
                    SyncStatus::Failed => counts.failed += 1,
                }
            }
            if item.is_parked() {
                stats.parked += 1;
            }
            if item.status != SyncStatus::Synced || item.is_in_flight() {
                let oldest = stats.oldest_unsent.get_or_insert(item.created_at);
                *oldest = (*oldest).min(item.created_at);
            }
        }
        stats.oldest_unsent_age = stats
            .oldest_unsent
            .map(|at| shared.clock.now().saturating_duration_since(at));
        for (entity, _) in &shared.pull.sources {
            let state = shared.store.pull_state(entity).await?;
            stats.cursors.insert(entity.clone(), state.cursor);
        }
        Ok(stats)
    }

    /// Waits until the change `saved` (what [`Self::save`] returned) is on
    /// the server, or has failed for good, for flows like "submit, then
    /// show a receipt once it is confirmed". Later saves to the same
    /// record carry this one: their confirmation counts. It does not send
    /// anything itself (auto-sync, `sync_after_save` or `sync_now` do);
    /// put a timeout around it.
    ///
    /// Cancel safety: cancel-safe (it only watches).
    ///
    /// # Errors
    /// [`SyncError::Closed`] if the engine closes first;
    /// [`SyncError::Store`] if a read fails.
    pub async fn wait_for_sync(&self, saved: &SavedChange) -> Result<ChangeOutcome, SyncError> {
        let Some(item) = &saved.item else {
            return Ok(ChangeOutcome::NothingToSend);
        };
        let (version, queued_at) = (item.version, item.created_at);
        let mut updates = self.watch_queue_item(item.entity.as_str(), item.id.as_str())?;
        while let Some(current) = updates.next().await {
            // An item queued at another time is another item (versions
            // start over): the one this save went into left the queue.
            let Some(current) = current.filter(|current| current.created_at == queued_at) else {
                return Ok(ChangeOutcome::LeftQueue);
            };
            if current.version < version || current.is_in_flight() {
                continue;
            }
            if current.status == SyncStatus::Synced {
                return Ok(ChangeOutcome::Synced);
            }
            if current.is_parked() {
                return Ok(ChangeOutcome::Parked {
                    http_status: current.last_error_http_status,
                    error: current.last_error,
                });
            }
        }
        Err(SyncError::Closed)
    }
}
