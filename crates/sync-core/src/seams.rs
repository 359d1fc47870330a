//! The traits between layers: the API adapter (implemented by `sync-net`),
//! the store (implemented by `sync-store-sqlite`) and the connectivity
//! monitor (implemented by `sync-net`). The engine depends only on these,
//! so any layer can be replaced by the app's own implementation or a fake.
//!
//! All three are object-safe: the engine holds them as `Arc<dyn Trait>`.

use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

use crate::attempt::{AttemptOutcome, AttemptTicket};
use crate::clock::Timestamp;
use crate::error::{ApiError, StoreError};
use crate::ids::{EntityName, OperationId, RecordId, RecordKey};
use crate::model::{JsonObject, LocalChange, LocalRecord, ServerCopy, SyncQueueItem};
use crate::pull::{PendingChange, PullAnswer, PullBatch, PullCounts, PullCursor, PullState};
use crate::retry::RetryPolicy;

/// A `Send` stream that owns its state.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

/// What a write asks of the server.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Create the record.
    Create,
    /// Replace (or patch) the record.
    Update,
    /// Delete the record.
    Delete,
}

/// One write, with what the engine knows of the server's copy.
#[derive(Debug, Clone, Copy)]
pub struct WriteRequest<'a> {
    /// What to do.
    pub kind: WriteKind,
    /// The record's entity.
    pub entity: &'a EntityName,
    /// The record's id.
    pub id: &'a RecordId,
    /// The document to write (empty for a delete).
    pub data: &'a JsonObject,
    /// The document this device last knew the server to hold, if known:
    /// the base of a merge patch (only the fields changed since are sent).
    pub base: Option<&'a JsonObject>,
    /// The server's version of the record this write expects: it makes an
    /// update or delete conditional (`If-Match`).
    pub version: Option<&'a str>,
    /// The idempotency key.
    pub operation_id: &'a OperationId,
}

/// The server's answer to a write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteAnswer {
    /// The server's copy of the record, when its answer held it.
    pub record: Option<JsonObject>,
    /// The record's version after the write, when the server gave one.
    pub version: Option<String>,
    /// For the create of a record under a temporary id
    /// ([`RecordId::temporary`]): the id the server gave it, as the server
    /// wrote it, from where the adapter's request shape says the id is;
    /// `None` when the answer holds none. The engine checks it
    /// ([`crate::rename::assigned_id`]) and renames the record.
    pub assigned_id: Option<serde_json::Value>,
}

/// What [`SyncApiAdapter::find_created`] found.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum CreatedLookup {
    /// The server holds the record created under this temporary id.
    Found {
        /// Its id, as the server wrote it.
        id: serde_json::Value,
        /// Its copy.
        copy: ServerCopy,
    },
    /// The server holds no record created under this temporary id.
    Absent,
    /// This adapter cannot look records up by their temporary id: the
    /// engine posts the create again with the same idempotency key, which
    /// the server must answer with the record it created the first time
    /// (see `docs/server-contract.md`).
    Unsupported,
}

/// The app's server, as the engine sees it.
///
/// Each method sends one operation. `operation_id` is stable across
/// retries of one local change, so implementations should pass it as an
/// idempotency key. Errors must be classified ([`crate::ErrorKind`]): the
/// engine retries transient ones, parks permanent ones and resolves
/// conflicts.
///
/// # Cancel safety
///
/// The engine may drop any of these futures (its `attempt_timeout`, a
/// `close`), and counts a dropped write as possibly applied, so it is
/// checked or repeated later. Implementations must tolerate the drop: a
/// request cut off may or may not have reached the server, and nothing
/// else may be left half done. The defaults of [`Self::write`] and
/// [`Self::fetch_copy`] are as cancel-safe as the methods they call.
#[async_trait]
pub trait SyncApiAdapter: Send + Sync {
    /// Creates the record; returns the server's copy if it sent one.
    async fn create(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError>;

    /// Replaces the record; returns the server's copy if it sent one.
    async fn update(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError>;

    /// Deletes the record. A record that is already gone counts as deleted.
    async fn delete(
        &self,
        entity: &EntityName,
        id: &RecordId,
        operation_id: &OperationId,
    ) -> Result<(), ApiError>;

    /// Fetches the server's copy; `None` when the server has no such record.
    async fn fetch_remote(&self, entity: &EntityName, id: &RecordId) -> Result<Option<JsonObject>, ApiError>;

    /// Sends one write knowing the copy the server last confirmed, so it
    /// can be conditional: a server that changed the record since answers
    /// with a [`crate::ErrorKind::Conflict`] error with status 412, not
    /// applied, and the engine fetches, resolves and sends again. The
    /// engine calls this one; the default ignores the base and calls
    /// [`Self::create`], [`Self::update`] or [`Self::delete`].
    async fn write(&self, request: WriteRequest<'_>) -> Result<WriteAnswer, ApiError> {
        let WriteRequest {
            kind,
            entity,
            id,
            data,
            operation_id,
            ..
        } = request;
        let record = match kind {
            WriteKind::Create => self.create(entity, id, data, operation_id).await?,
            WriteKind::Update => self.update(entity, id, data, operation_id).await?,
            WriteKind::Delete => {
                self.delete(entity, id, operation_id).await?;
                None
            }
        };
        let assigned_id = match kind {
            WriteKind::Create if id.is_temporary() => record
                .as_ref()
                .and_then(|record| record.get(crate::answer::ID_FIELD))
                .cloned(),
            _ => None,
        };
        Ok(WriteAnswer {
            record,
            version: None,
            assigned_id,
        })
    }

    /// Finds the record an earlier create of `temporary` made, when the
    /// answer to that create was lost (a timeout, a cut link, a kill
    /// before the rename was stored): by the temporary id, which the
    /// create sent in a field the server keeps. The default cannot:
    /// [`CreatedLookup::Unsupported`].
    async fn find_created(
        &self,
        entity: &EntityName,
        temporary: &RecordId,
        operation_id: &OperationId,
    ) -> Result<CreatedLookup, ApiError> {
        let _ = (entity, temporary, operation_id);
        Ok(CreatedLookup::Unsupported)
    }

    /// Fetches the server's copy with its version; `None` when the server
    /// has no such record. The engine calls this one; the default calls
    /// [`Self::fetch_remote`] and knows no version.
    async fn fetch_copy(&self, entity: &EntityName, id: &RecordId) -> Result<Option<ServerCopy>, ApiError> {
        Ok(self
            .fetch_remote(entity, id)
            .await?
            .map(|data| ServerCopy { data, version: None }))
    }
}

/// One pull request: a page of an entity's changes after a cursor.
#[derive(Debug, Clone, Copy)]
pub struct PullRequest<'a> {
    /// The entity.
    pub entity: &'a EntityName,
    /// Where to start; `None`: from the beginning (everything).
    pub cursor: Option<&'a PullCursor>,
    /// The most changes the page should hold.
    pub limit: usize,
}

/// Where the server's changes come from, as the engine sees it: the seam
/// beside [`SyncApiAdapter`] for pulls.
///
/// `sync_net::HttpSyncApiAdapter` implements it with three strategies (a
/// change feed, a filtered list, a snapshot). An implementation turns the
/// server's answer into a [`PullPage`](crate::pull::PullPage) or refuses it
/// with a typed error: an answer that is not what it should be (not JSON, a
/// change without an id, an id that is not valid, a cursor that goes
/// backwards) is an [`ApiError`] of kind
/// [`Permanent`](crate::ErrorKind::Permanent), and nothing of it is applied.
///
/// # Cancel safety
///
/// A pull only reads, and the engine applies a page only once it has it
/// whole: dropping the future loses nothing.
#[async_trait]
pub trait PullSource: Send + Sync {
    /// One page of the entity's changes after `request.cursor`.
    async fn pull(&self, request: PullRequest<'_>) -> Result<PullAnswer, ApiError>;
}

/// Whether real internet (or the app's API) is reachable.
#[async_trait]
pub trait ConnectivityMonitor: Send + Sync {
    /// Probes now.
    async fn is_connected(&self) -> bool;

    /// Online/offline transitions, without repeats. The stream ends when the
    /// monitor is dropped or closed.
    fn changes(&self) -> BoxStream<bool>;
}

fn no_pulls() -> StoreError {
    StoreError::new(
        crate::StoreErrorKind::Other,
        "this store does not support pulls: implement pull_state, pending_changes and apply_pull, or declare no pulled entities",
    )
}

/// A change inside a store, for watch streams.
///
/// Each event describes one row after the change, so its cost does not grow
/// with the size of the queue or the collection.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    /// A local document was written or removed.
    Record {
        /// Which record.
        key: RecordKey,
        /// The document after the change; `None` when removed.
        record: Option<LocalRecord>,
    },
    /// A queue item was written or removed.
    QueueItem {
        /// Which record.
        key: RecordKey,
        /// The item after the change; `None` when removed.
        item: Option<SyncQueueItem>,
    },
    /// A record created under a temporary id took the id the server gave
    /// it ([`crate::rename`]): its document and queue item moved from
    /// `from` to `to` (the `Record` and `QueueItem` events that follow say
    /// so row by row). Watchers of one record follow it to `to`.
    Renamed {
        /// The record under its temporary id.
        from: RecordKey,
        /// The record under the server's id.
        to: RecordKey,
    },
    /// Every synced item was removed by `clear_synced`.
    SyncedCleared,
    /// This subscriber fell behind and missed events: re-read what it shows.
    Lagged,
}

/// The result of one save.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedChange {
    /// The record's queue item after the save; `None` when nothing is left
    /// to send (a create never sent and then deleted).
    pub item: Option<SyncQueueItem>,
    /// The local document after the save; `None` after a delete.
    pub record: Option<LocalRecord>,
}

/// An attempt's ticket with its outcome, for [`SyncStore::finish_attempts`].
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedAttempt {
    /// The ticket from [`SyncStore::claim_ready`].
    pub ticket: AttemptTicket,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

/// Whether an outcome landed on the version it was started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishResult {
    /// The item was unchanged since the claim: the outcome applied in full.
    Current,
    /// A newer local change (or a recovery) superseded the attempt; the
    /// newer change was kept.
    Stale,
}

/// Counts of queue items by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Items waiting to be sent.
    pub pending: u64,
    /// Items being sent.
    pub syncing: u64,
    /// Items the server accepted.
    pub synced: u64,
    /// Items whose last attempt failed.
    pub failed: u64,
}

/// Durable local documents and the sync queue.
///
/// Every method is atomic: it either applies fully or returns an error and
/// changes nothing. A call whose future is dropped before it completes may
/// or may not have been applied: read back, or save again (saving the same
/// state twice is harmless). Saves apply [`crate::coalesce::plan_save`]; attempt
/// transitions apply [`crate::attempt`]'s compare-and-set rules.
#[async_trait]
pub trait SyncStore: Send + Sync {
    /// Saves one change: local document and queue item in one transaction.
    async fn save(&self, change: LocalChange, now: Timestamp) -> Result<SavedChange, StoreError>;

    /// Saves many changes in one transaction, in order: all or none.
    async fn save_batch(
        &self,
        changes: Vec<LocalChange>,
        now: Timestamp,
    ) -> Result<Vec<SavedChange>, StoreError>;

    /// One local document.
    async fn record(&self, key: &RecordKey) -> Result<Option<LocalRecord>, StoreError>;

    /// All local documents of an entity, most recently updated first.
    async fn records(&self, entity: &EntityName) -> Result<Vec<LocalRecord>, StoreError>;

    /// One record's queue item.
    async fn queue_item(&self, key: &RecordKey) -> Result<Option<SyncQueueItem>, StoreError>;

    /// The copy of the record the server last confirmed, if known (see
    /// [`ServerCopy`]), for inspection. What makes writes conditional is
    /// that a store persists [`crate::attempt::FinishPlan::copy`] with each
    /// outcome, forgets the copies of the items [`Self::recover_interrupted`]
    /// recovers, and fills [`AttemptTicket::base`] in [`Self::claim_ready`];
    /// a store that does none of it gets unconditional writes. The default
    /// knows no copy.
    async fn server_copy(&self, key: &RecordKey) -> Result<Option<ServerCopy>, StoreError> {
        let _ = key;
        Ok(None)
    }

    /// The id a record goes by now: for a temporary id whose record the
    /// server has named, the server's id (the rename keeps an alias);
    /// otherwise `key.id` itself. [`Self::save`], [`Self::save_batch`],
    /// [`Self::record`] and [`Self::queue_item`] accept either id. The
    /// default store knows no renames: it answers the id itself, and
    /// refuses a temporary one.
    ///
    /// # Errors
    /// [`crate::StoreErrorKind::Other`] from the default, for a temporary
    /// id.
    async fn resolve_id(&self, key: &RecordKey) -> Result<RecordId, StoreError> {
        if key.id.is_temporary() {
            return Err(StoreError::new(
                crate::StoreErrorKind::Other,
                "this store does not support server-assigned ids: implement SyncStore::resolve_id and \
                 apply FinishPlan::rename in finish_attempts",
            ));
        }
        Ok(key.id.clone())
    }

    /// The deletes queued (not synced, or in flight) of records of
    /// `entity` whose document names `parent` in `field`
    /// ([`crate::depends::id_in`]): as the server last confirmed it, else
    /// as the delete's payload holds it. A parent's delete waits for them
    /// ([`crate::depends::gate_for_children`]). The default store finds
    /// none, so a parent's delete then waits only for its children's
    /// deletes sent beside it.
    async fn queued_child_deletes(
        &self,
        entity: &EntityName,
        field: &str,
        parent: &RecordId,
    ) -> Result<Vec<SyncQueueItem>, StoreError> {
        let _ = (entity, field, parent);
        Ok(Vec::new())
    }

    /// The whole queue in `created_at` order.
    async fn queue(&self) -> Result<Vec<SyncQueueItem>, StoreError>;

    /// Queue items by status.
    async fn counts(&self) -> Result<QueueCounts, StoreError>;

    /// Claims up to `limit` items ready at `now`, oldest first: each becomes
    /// `syncing` and in flight until its outcome is reported.
    async fn claim_ready(&self, now: Timestamp, limit: usize) -> Result<Vec<AttemptTicket>, StoreError>;

    /// The earliest `next_attempt_at` of the items waiting for a timer (not
    /// in flight, not parked, not waiting for the next pass): when the
    /// engine should look again. `None` when no item waits for a timer.
    async fn next_attempt_time(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Applies outcomes (compare-and-set on each item's version) in one
    /// transaction; one result per attempt, in order.
    async fn finish_attempts(
        &self,
        finished: Vec<FinishedAttempt>,
        now: Timestamp,
    ) -> Result<Vec<FinishResult>, StoreError>;

    /// Recovers items left in flight by a stopped process: they become
    /// eligible and are flagged as possibly applied. Returns how many.
    async fn recover_interrupted(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Brings back timers a wall clock moved back has pushed out of reach,
    /// by [`crate::retry::rebase_timers`] for every item not in flight (the
    /// candidates are the items whose `next_attempt_at` lies after
    /// [`crate::retry::rebase_candidates_after`]). Returns how many items
    /// changed. The engine calls it when it sees the clock move back.
    async fn rebase_timers(&self, now: Timestamp, policy: RetryPolicy) -> Result<u64, StoreError>;

    /// Starts a new pass: failed items waiting out a backoff become eligible
    /// now (`Retry-After` still holds; parked items stay parked).
    async fn rearm_failed(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Makes one failed item (parked or not), or one held for a record it
    /// refers to, eligible now ([`crate::attempt::retry_one`]). Returns
    /// whether there was such an item.
    async fn retry(&self, key: &RecordKey, now: Timestamp) -> Result<bool, StoreError>;

    /// Makes every failed item eligible now. Returns how many.
    async fn retry_failed(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Removes every synced queue item. Returns how many.
    async fn clear_synced(&self) -> Result<u64, StoreError>;

    /// Gives up the record's queued change as [`crate::discard::plan_discard`]
    /// decides (with `revert`, the document goes back to the server's
    /// last confirmed state where it is known), all in one transaction,
    /// publishing the changed rows like a save. The default store cannot
    /// discard.
    ///
    /// Cancel safety: one transaction; a call dropped before it returns
    /// has discarded in full or not at all.
    ///
    /// # Errors
    /// [`crate::StoreErrorKind::InFlight`] while an attempt for the record
    /// is out (nothing changes); [`crate::StoreErrorKind::Other`] from the
    /// default.
    async fn discard(
        &self,
        key: &RecordKey,
        revert: bool,
        now: Timestamp,
    ) -> Result<crate::discard::DiscardOutcome, StoreError> {
        let _ = (key, revert, now);
        Err(StoreError::new(
            crate::StoreErrorKind::Other,
            "this store cannot discard queued changes: implement SyncStore::discard",
        ))
    }

    /// The entity's pull state: its cursor and any full listing in
    /// progress. The default store does not pull.
    ///
    /// # Errors
    /// [`crate::StoreErrorKind::Other`] from the default: the store does
    /// not support pulls.
    async fn pull_state(&self, entity: &EntityName) -> Result<PullState, StoreError> {
        let _ = entity;
        Err(no_pulls())
    }

    /// The pending changes, among `ids` of `entity`, that an incoming copy
    /// would be merged into ([`crate::pull::pending_change`]), with their
    /// bases: what the engine gives the app's resolver before applying a
    /// page.
    async fn pending_changes(
        &self,
        entity: &EntityName,
        ids: &[RecordId],
    ) -> Result<Vec<PendingChange>, StoreError> {
        let _ = (entity, ids);
        Err(no_pulls())
    }

    /// Applies one pulled page in one transaction: every change by
    /// [`crate::pull::plan_pulled`], the records a listing showed marked
    /// with its generation, its sweep (by [`crate::pull::sweeps`]) and the
    /// state after. A crash leaves the page applied with its state, or
    /// neither. Refused, changing nothing, when the stored state is not
    /// `batch.expected`, or when a document is over the store's size
    /// limit ([`crate::StoreErrorKind::Invalid`]).
    async fn apply_pull(&self, batch: PullBatch, now: Timestamp) -> Result<PullCounts, StoreError> {
        let _ = (batch, now);
        Err(no_pulls())
    }

    /// Item-level change events from now on.
    fn subscribe(&self) -> BoxStream<StoreEvent>;

    /// Finishes pending writes and releases the store's resources (files,
    /// locks); later calls fail. The default does nothing.
    async fn close(&self) {}
}
