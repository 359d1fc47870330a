//! [`OfflineSyncEngine`]: the handle apps hold, with the local-first API
//! (saves, reads, watch streams, retries) and `close`.
//!
//! Cancel safety of the async methods, as tokio states it for its own:
//! every method here may be dropped at any await point without losing or
//! duplicating a change. A store call whose future is dropped either
//! applied in full or not at all (read back, or repeat it: saving the same
//! state twice is harmless); whatever it applied is synced like any other
//! change. `close` and the sync manager's runs are owned by tasks of the
//! engine, so dropping the caller's future only stops the waiting.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sync_core::{
    BoxStream, ConnectivityMonitor, DiscardOutcome, EntityName, LocalChange, LocalRecord, RecordId,
    RecordKey, SavedChange, SyncApiAdapter, SyncOperation, SyncQueueItem, SyncStatus, SyncStore,
};

use crate::builder::OfflineSyncEngineBuilder;
use crate::error::SyncError;
use crate::manager::SyncManager;
use crate::shared::{Shared, lock};
use crate::watch::{self, WatchContext};

/// The offline-first engine: save locally first, sync when the network
/// allows. Cloning is cheap and shares everything; when the last clone is
/// dropped, auto-sync and background runs stop (call
/// [`OfflineSyncEngine::close`] to also let them record what they sent and
/// close the store).
#[derive(Clone)]
pub struct OfflineSyncEngine {
    pub(crate) shared: Arc<Shared>,
    _lifetime: Arc<Lifetime>,
}

/// Shared by the user's handles only (tasks hold `Shared`), so its drop
/// marks the last handle gone.
struct Lifetime {
    shared: Arc<Shared>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        if let Some(auto_sync) = lock(&self.shared.auto_sync).take() {
            auto_sync.stop();
        }
        // Dropping the set aborts the runs: nothing can wait for them in a
        // drop. Items they had claimed stay in flight in the store and are
        // recovered, as possibly applied, by the next engine over it.
        drop(std::mem::take(&mut *lock(&self.shared.tasks)));
        self.shared.shutdown.send_replace(true);
        self.shared.wake.notify_waiters();
        // The lease stays until `Shared` goes: a `SyncManager` clone may
        // still be running a pass with items in flight.
    }
}

impl fmt::Debug for OfflineSyncEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfflineSyncEngine")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl OfflineSyncEngine {
    /// A builder over injected dependencies: any store, adapter and
    /// connectivity monitor implementing the sync-core traits.
    pub fn builder(
        store: Arc<dyn SyncStore>,
        adapter: Arc<dyn SyncApiAdapter>,
        monitor: Arc<dyn ConnectivityMonitor>,
    ) -> OfflineSyncEngineBuilder {
        OfflineSyncEngineBuilder::new(store, adapter, monitor)
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self {
            _lifetime: Arc::new(Lifetime {
                shared: Arc::clone(&shared),
            }),
            shared,
        }
    }

    fn watch_context(&self) -> WatchContext {
        WatchContext::new(&self.shared)
    }

    /// Saves a change locally (document and queue entry in one transaction)
    /// before any network call; with `sync_after_save`, a sync run starts
    /// in the background.
    ///
    /// Cancel safety: cancel-safe. Dropped before it returns, the change is
    /// either saved in full (document and queue item) or not at all; read
    /// it back, or save it again (saving the same state twice is
    /// harmless). A change saved this way is synced like any other, at the
    /// next run (auto-sync's timers pick it up).
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad entity name, id or payload (nothing
    /// is saved); [`SyncError::Store`] if the store fails.
    pub async fn save(
        &self,
        entity: &str,
        id: &str,
        data: Value,
        operation: SyncOperation,
    ) -> Result<SavedChange, SyncError> {
        self.save_change(LocalChange::new(entity, id, data, operation)?)
            .await
    }

    /// Saves one checked change (see [`Self::save`]).
    pub(crate) async fn save_change(&self, change: LocalChange) -> Result<SavedChange, SyncError> {
        self.shared.ensure_open()?;
        let (now, _) = self.shared.observe_clock();
        let saved = self.shared.store.save(change, now).await?;
        if self.shared.options.sync_after_save {
            self.sync_in_background();
        }
        Ok(saved)
    }

    /// Saves a typed value: it must serialise to a JSON object.
    ///
    /// Cancel safety: as [`OfflineSyncEngine::save`].
    ///
    /// # Errors
    /// As [`OfflineSyncEngine::save`], plus [`SyncError::Json`].
    pub async fn save_as<T: Serialize>(
        &self,
        entity: &str,
        id: &str,
        value: &T,
        operation: SyncOperation,
    ) -> Result<SavedChange, SyncError> {
        self.save(entity, id, serde_json::to_value(value)?, operation)
            .await
    }

    /// One local document.
    ///
    /// Cancel safety: cancel-safe (a read, or one atomic store call).
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`].
    pub async fn get_record(&self, entity: &str, id: &str) -> Result<Option<LocalRecord>, SyncError> {
        let key = RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?);
        Ok(self.shared.store.record(&key).await?)
    }

    /// One local document as `T`.
    ///
    /// Cancel safety: cancel-safe (a read, or one atomic store call).
    ///
    /// # Errors
    /// As [`OfflineSyncEngine::get_record`], plus [`SyncError::Json`].
    pub async fn get_record_as<T: DeserializeOwned>(
        &self,
        entity: &str,
        id: &str,
    ) -> Result<Option<T>, SyncError> {
        match self.get_record(entity, id).await? {
            Some(record) => Ok(Some(serde_json::from_value(Value::Object(record.data))?)),
            None => Ok(None),
        }
    }

    /// All local documents of an entity, most recently updated first.
    ///
    /// Cancel safety: cancel-safe (a read, or one atomic store call).
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`].
    pub async fn get_records(&self, entity: &str) -> Result<Vec<LocalRecord>, SyncError> {
        Ok(self.shared.store.records(&EntityName::new(entity)?).await?)
    }

    /// All local documents of an entity as `T`, most recently updated first.
    ///
    /// Cancel safety: cancel-safe (a read, or one atomic store call).
    ///
    /// # Errors
    /// As [`OfflineSyncEngine::get_records`], plus [`SyncError::Json`].
    pub async fn get_records_as<T: DeserializeOwned>(&self, entity: &str) -> Result<Vec<T>, SyncError> {
        self.get_records(entity)
            .await?
            .into_iter()
            .map(|record| serde_json::from_value(Value::Object(record.data)).map_err(SyncError::from))
            .collect()
    }

    /// The whole queue, in send order.
    ///
    /// Cancel safety: cancel-safe (a read, or one atomic store call).
    ///
    /// # Errors
    /// [`SyncError::Store`].
    pub async fn queue(&self) -> Result<Vec<SyncQueueItem>, SyncError> {
        Ok(self.shared.store.queue().await?)
    }

    /// One record's queue item.
    ///
    /// Cancel safety: cancel-safe (a read, or one atomic store call).
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`].
    pub async fn queue_item(&self, entity: &str, id: &str) -> Result<Option<SyncQueueItem>, SyncError> {
        let key = RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?);
        Ok(self.shared.store.queue_item(&key).await?)
    }

    /// An entity's documents, now and after changes, newest first. Bursts
    /// are coalesced, and long lists get a value per 1/8 of their length
    /// in changes (copying the list then costs the same per change at any
    /// length); a held-back change is delivered once the list
    /// is unchanged for 50 ms, within 1 s at the latest.
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad entity name.
    pub fn watch_records(&self, entity: &str) -> Result<BoxStream<Vec<LocalRecord>>, SyncError> {
        Ok(watch::records(self.watch_context(), EntityName::new(entity)?))
    }

    /// The queue, now and after changes: as [`Self::watch_records`],
    /// bursts are coalesced and a long queue gets a value per 1/8 of its
    /// length in changes; a held-back change is delivered once the list
    /// is unchanged for 50 ms, within 1 s at the latest.
    /// [`Self::watch_item_status`] follows one item at every change.
    #[must_use]
    pub fn watch_queue(&self) -> BoxStream<Vec<SyncQueueItem>> {
        watch::queue(self.watch_context())
    }

    /// One record's status, now and on every change (`None`: no queue
    /// item, so nothing waits to be sent).
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad entity name or id.
    pub fn watch_item_status(
        &self,
        entity: &str,
        id: &str,
    ) -> Result<BoxStream<Option<SyncStatus>>, SyncError> {
        let key = RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?);
        Ok(watch::item_status(self.watch_context(), key))
    }

    /// One record's whole queue item (status, `retry_count`, `last_error`,
    /// HTTP status, ...), now and on every change to it (`None`: no queue
    /// item). Consecutive identical values are sent once.
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad entity name or id.
    pub fn watch_queue_item(
        &self,
        entity: &str,
        id: &str,
    ) -> Result<BoxStream<Option<SyncQueueItem>>, SyncError> {
        let key = RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?);
        Ok(watch::queue_item(self.watch_context(), key))
    }

    /// Where pulls stand, now and on every page applied: the entity, its
    /// pages and changes so far, and whether a pull is going (for the
    /// progress of a long initial load). A slow reader sees the latest
    /// value, not every one. The stream ends when the engine closes.
    #[must_use]
    pub fn watch_pull_progress(&self) -> BoxStream<crate::PullProgress> {
        watch::pull_progress(self.watch_context())
    }

    /// Connectivity, now and on every change.
    #[must_use]
    pub fn watch_connectivity(&self) -> BoxStream<bool> {
        watch::connectivity(self.watch_context())
    }

    /// Removes synced items from the queue (documents stay).
    ///
    /// Cancel safety: cancel-safe (a read, or one atomic store call).
    ///
    /// # Errors
    /// [`SyncError::Store`].
    pub async fn clear_synced(&self) -> Result<u64, SyncError> {
        Ok(self.shared.store.clear_synced().await?)
    }

    /// Makes one failed item (parked after a permanent error or not), or
    /// one held for a record it refers to, eligible now, and starts a sync
    /// run. Returns whether it was failed or held. The items held for this
    /// record (its children, with declared references) are woken too, each
    /// in a store call of its own. `id` may be a temporary id the server
    /// has renamed.
    ///
    /// Cancel safety: cancel-safe; the item is re-armed in full or not at
    /// all, and so is each held item woken after it (dropped half-way, some
    /// are woken and the others follow at their hold's end); a re-armed
    /// item is sent at the next run if the background run was not
    /// requested yet.
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`].
    pub async fn retry(&self, entity: &str, id: &str) -> Result<bool, SyncError> {
        let key = self.current_key(entity, id).await?;
        let retried = self.shared.store.retry(&key, self.shared.clock.now()).await?;
        if retried {
            // Records held for this one follow it now, not at their timer.
            self.wake_held(Some(&key)).await?;
            self.sync_in_background();
        }
        Ok(retried)
    }

    /// Makes every failed item eligible now and starts a sync run.
    ///
    /// Cancel safety: as [`OfflineSyncEngine::retry`].
    ///
    /// # Errors
    /// [`SyncError::Store`].
    pub async fn retry_failed(&self) -> Result<u64, SyncError> {
        let count = self.shared.store.retry_failed(self.shared.clock.now()).await?;
        if count > 0 {
            self.wake_held(None).await?;
            self.sync_in_background();
        }
        Ok(count)
    }

    /// Gives up the record's queued change, for apps whose user abandons a
    /// change the server refused (parked) or one not sent yet. The queue
    /// item goes; the document stays as last saved, or, with `revert`,
    /// goes back to what the server is known to hold: the copy it last
    /// confirmed, or no document for a create it never applied. The
    /// outcome says which happened ([`DiscardOutcome::Dropped`] when a
    /// revert was asked but the server's state is not known). Watch
    /// streams see the change like a save.
    ///
    /// Cancel safety: cancel-safe; one store transaction, applied in full
    /// or not at all.
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`] with
    /// [`sync_core::StoreErrorKind::InFlight`] while an attempt to send the
    /// change is out (it may be applied: discard once it reports back),
    /// nothing changed.
    pub async fn discard(&self, entity: &str, id: &str, revert: bool) -> Result<DiscardOutcome, SyncError> {
        let key = self.current_key(entity, id).await?;
        Ok(self
            .shared
            .store
            .discard(&key, revert, self.shared.clock.now())
            .await?)
    }

    /// Waits until nothing is left to send (no pending, syncing or failed
    /// item) or `timeout` passes; returns whether the queue drained. For
    /// demos, tests and shutdown paths.
    ///
    /// Cancel safety: cancel-safe (it only reads).
    ///
    /// # Errors
    /// [`SyncError::Store`] if a read fails.
    pub async fn wait_until_drained(&self, timeout: Duration) -> Result<bool, SyncError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.shared.pending().await? == 0 {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The sync manager: [`SyncManager::sync_now`] and auto-sync.
    #[must_use]
    pub fn sync_manager(&self) -> SyncManager {
        SyncManager::new(Arc::clone(&self.shared))
    }

    fn sync_in_background(&self) {
        self.sync_manager().request_in_background();
    }

    /// Stops auto-sync and background runs, then closes the store
    /// (releasing its file and lock). A run in progress stops claiming,
    /// and the requests it has out finish and have their outcomes recorded
    /// first, for up to `close_timeout` (then the run is stopped and its
    /// items are recovered, as possibly applied, by the next engine over
    /// the store). Later calls fail with [`SyncError::Closed`]; closing
    /// twice is harmless.
    ///
    /// Cancel safety: cancel-safe. The closing runs in a task of its own:
    /// dropping this future stops the waiting, not the closing.
    pub async fn close(&self) {
        let shared = Arc::clone(&self.shared);
        let closing = tokio::spawn(async move {
            let shared = &shared;
            shared.closing.get_or_init(|| close_now(shared)).await;
        });
        // A panic in the store's close is the store's bug; the engine is
        // closed either way.
        let _ = closing.await;
    }
}

/// The work of [`OfflineSyncEngine::close`].
async fn close_now(shared: &Shared) {
    shared.closed.store(true, Ordering::SeqCst);
    if let Some(auto_sync) = lock(&shared.auto_sync).take() {
        auto_sync.stop();
    }
    shared.shutdown.send_replace(true);
    // Passes check `closed` between requests; one waiting out a retry
    // timer is woken.
    shared.wake.notify_waiters();
    let mut tasks = std::mem::take(&mut *lock(&shared.tasks));
    let grace = shared.options.close_timeout;
    let finished = tokio::time::timeout(grace, async {
        while tasks.join_next().await.is_some() {}
        drop(shared.run_lock.lock().await);
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            ?grace,
            "close: a sync run did not finish its requests in time and was stopped; its items are \
             recovered (as possibly applied) by the next engine over this store"
        );
        tasks.shutdown().await;
    }
    // Every outcome the close waited for is recorded and announced: the
    // event streams end after them.
    shared.events.close();
    shared.store.close().await;
    drop(lock(&shared.lease).take());
}
