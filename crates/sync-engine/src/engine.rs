//! [`OfflineSyncEngine`]: local-first saves, reads, watch streams, and the
//! sync manager that drains the queue.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sync_core::{
    AttemptId, AttemptOutcome, AttemptTicket, BoxStream, Clock, ConflictResolver, ConnectivityMonitor,
    EntityName, ErrorKind, FinishResult, FinishedAttempt, LocalChange, LocalRecord, RecordId, RecordKey,
    RetryPolicy, SavedChange, SyncApiAdapter, SyncOperation, SyncQueueItem, SyncStatus, SyncStore,
};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::error::SyncError;
use crate::options::OfflineSyncOptions;
use crate::send::{Sent, send};
use crate::sends::Sends;
use crate::watch;

/// What one sync run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Items the server accepted.
    pub sent: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Items still waiting afterwards (pending or failed).
    pub still_pending: u64,
    /// Whether the run stopped (or never started) because the network was
    /// unreachable.
    pub offline: bool,
}

/// Builds an [`OfflineSyncEngine`] from any store, adapter and monitor.
#[must_use]
pub struct OfflineSyncEngineBuilder {
    store: Arc<dyn SyncStore>,
    adapter: Arc<dyn SyncApiAdapter>,
    monitor: Arc<dyn ConnectivityMonitor>,
    resolver: Option<Arc<dyn ConflictResolver>>,
    options: OfflineSyncOptions,
    clock: Arc<dyn Clock>,
}

impl OfflineSyncEngineBuilder {
    /// Resolves conflicts before every update. Default: none (local wins).
    pub fn conflict_resolver(mut self, resolver: impl ConflictResolver + 'static) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Like [`Self::conflict_resolver`], for a resolver already shared.
    pub fn conflict_resolver_arc(mut self, resolver: Arc<dyn ConflictResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Sync options. Default [`OfflineSyncOptions::default`].
    pub fn options(mut self, options: OfflineSyncOptions) -> Self {
        self.options = options;
        self
    }

    /// The clock for timestamps and retry times. Default: the system
    /// clock. Tests with paused tokio time pass [`crate::TokioClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the engine and recovers items left in flight by a previous
    /// process. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for options that cannot work (zero retries or
    /// zero concurrency); [`SyncError::Store`] if recovery fails.
    pub async fn build(self) -> Result<OfflineSyncEngine, SyncError> {
        let policy = self.options.retry_policy()?;
        if self.options.concurrency == 0 {
            return Err(SyncError::Invalid(sync_core::ValidationError::ZeroConcurrency));
        }
        // Nothing of this engine is in flight yet: anything marked so was
        // left by a process that stopped mid-attempt, unless another engine
        // of this process drives the same store, which the lease refuses.
        let lease = StoreLease::acquire(&self.store)?;
        let recovered = self.store.recover_interrupted(self.clock.now()).await?;
        if recovered > 0 {
            tracing::info!(recovered, "recovered items interrupted mid-attempt");
        }
        let inner = Arc::new(Inner {
            store: self.store,
            adapter: self.adapter,
            monitor: self.monitor,
            resolver: self.resolver,
            policy,
            options: self.options,
            clock: self.clock,
            run_lock: Mutex::new(()),
            rerun: AtomicBool::new(false),
            wake: Notify::new(),
            work: Notify::new(),
            timers_changed: Notify::new(),
            background_pending: AtomicBool::new(false),
            outstanding: std::sync::Mutex::new(HashMap::new()),
            shutdown: tokio::sync::watch::channel(false).0,
            last_report: std::sync::Mutex::new(SyncReport::default()),
            online_since: std::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
            tasks: std::sync::Mutex::new(JoinSet::new()),
            auto_sync: std::sync::Mutex::new(None),
            lease: std::sync::Mutex::new(Some(lease)),
        });
        Ok(OfflineSyncEngine {
            _lifetime: Arc::new(Lifetime {
                inner: Arc::clone(&inner),
            }),
            inner,
        })
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn SyncStore>,
    adapter: Arc<dyn SyncApiAdapter>,
    pub(crate) monitor: Arc<dyn ConnectivityMonitor>,
    resolver: Option<Arc<dyn ConflictResolver>>,
    policy: RetryPolicy,
    options: OfflineSyncOptions,
    clock: Arc<dyn Clock>,
    /// Held by the one sync run in progress.
    run_lock: Mutex<()>,
    /// Set by a request for a sync; cleared by the run that serves it.
    rerun: AtomicBool,
    /// Ends a pass waiting out a retry timer, so a full pass follows
    /// (`sync_now`, connectivity regained).
    wake: Notify,
    /// New items were saved: a pass waiting out a timer claims again.
    work: Notify,
    /// A pass ended: auto-sync recomputes when to look again.
    timers_changed: Notify,
    /// A background run is requested and not started yet.
    background_pending: AtomicBool,
    /// Tickets claimed and not yet recorded. Only one run is active at a
    /// time, so any left when a pass starts were abandoned (a cancelled or
    /// failed run, a panicked send) and are released.
    outstanding: std::sync::Mutex<HashMap<AttemptId, AttemptTicket>>,
    /// Set once on close or drop; watch streams end on it.
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    last_report: std::sync::Mutex<SyncReport>,
    /// When connectivity was last confirmed, for the probe interval.
    online_since: std::sync::Mutex<Option<tokio::time::Instant>>,
    pub(crate) closed: AtomicBool,
    tasks: std::sync::Mutex<JoinSet<()>>,
    auto_sync: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// This engine's claim on its store, given back on close (once no run
    /// is going) or when nothing of the engine is left, sync managers and
    /// background tasks included.
    lease: std::sync::Mutex<Option<StoreLease>>,
}

/// The smallest and largest pages a pass claims. A pass starts small and
/// doubles its page after each full one (a backlog is draining), because
/// every claim and every recording is a store round trip whose cost a
/// bigger page shares out; the cap bounds the items claimed but not yet
/// sent (each costs a check after a crash, or when saved to meanwhile).
const MIN_PAGE: usize = 4;
const MAX_PAGE: usize = 64;

/// The stores driven by a live engine of this process, by address.
static DRIVEN_STORES: std::sync::Mutex<std::collections::BTreeSet<usize>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// One engine's exclusive claim on a store within this process.
///
/// Building an engine recovers every item left in flight, which is only
/// right when no other engine is sending from the same store: two engines
/// over one store would release each other's attempts and send the same
/// item twice at once. (Across processes the SQLite store's file lock
/// does the same job.)
struct StoreLease {
    address: usize,
}

impl StoreLease {
    fn acquire(store: &Arc<dyn SyncStore>) -> Result<Self, SyncError> {
        // The address identifies the store while the lease lives: the
        // engine holding the lease keeps the store alive.
        let address = Arc::as_ptr(store).cast::<()>() as usize;
        if lock(&DRIVEN_STORES).insert(address) {
            Ok(Self { address })
        } else {
            Err(SyncError::StoreInUse)
        }
    }
}

impl Drop for StoreLease {
    fn drop(&mut self) {
        lock(&DRIVEN_STORES).remove(&self.address);
    }
}

/// The offline-first engine: save locally first, sync when the network
/// allows. Cloning is cheap and shares everything; when the last clone is
/// dropped, auto-sync and background runs stop (call
/// [`OfflineSyncEngine::close`] to also wait for them and close the store).
#[derive(Clone)]
pub struct OfflineSyncEngine {
    inner: Arc<Inner>,
    _lifetime: Arc<Lifetime>,
}

/// Shared by the user's handles only (background tasks hold `Inner`), so
/// its drop marks the last handle gone.
struct Lifetime {
    inner: Arc<Inner>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        if let Some(task) = lock(&self.inner.auto_sync).take() {
            task.abort();
        }
        // Dropping the set aborts the background runs.
        drop(std::mem::take(&mut *lock(&self.inner.tasks)));
        self.inner.shutdown.send_replace(true);
        self.inner.wake.notify_waiters();
        // The lease stays until `Inner` goes: a `SyncManager` clone may
        // still be running a pass with items in flight.
    }
}

impl fmt::Debug for OfflineSyncEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfflineSyncEngine")
            .field("options", &self.inner.options)
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
        OfflineSyncEngineBuilder {
            store,
            adapter,
            monitor,
            resolver: None,
            options: OfflineSyncOptions::default(),
            clock: Arc::new(sync_core::SystemClock),
        }
    }

    fn ensure_open(&self) -> Result<(), SyncError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(SyncError::Closed)
        } else {
            Ok(())
        }
    }

    /// Saves a change locally (document and queue entry in one transaction)
    /// before any network call; with `sync_after_save`, a sync run starts
    /// in the background.
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
        self.ensure_open()?;
        let change = LocalChange::new(entity, id, data, operation)?;
        let saved = self.inner.store.save(change, self.inner.clock.now()).await?;
        if self.inner.options.sync_after_save {
            self.sync_in_background();
        }
        Ok(saved)
    }

    /// Saves a typed value: it must serialise to a JSON object.
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
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`].
    pub async fn get_record(&self, entity: &str, id: &str) -> Result<Option<LocalRecord>, SyncError> {
        let key = RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?);
        Ok(self.inner.store.record(&key).await?)
    }

    /// One local document as `T`.
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
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`].
    pub async fn get_records(&self, entity: &str) -> Result<Vec<LocalRecord>, SyncError> {
        Ok(self.inner.store.records(&EntityName::new(entity)?).await?)
    }

    /// All local documents of an entity as `T`, most recently updated first.
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
    /// # Errors
    /// [`SyncError::Store`].
    pub async fn queue(&self) -> Result<Vec<SyncQueueItem>, SyncError> {
        Ok(self.inner.store.queue().await?)
    }

    /// One record's queue item.
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`].
    pub async fn queue_item(&self, entity: &str, id: &str) -> Result<Option<SyncQueueItem>, SyncError> {
        let key = RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?);
        Ok(self.inner.store.queue_item(&key).await?)
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
        Ok(watch::records(Arc::clone(&self.inner), EntityName::new(entity)?))
    }

    /// The queue, now and after changes: as [`Self::watch_records`],
    /// bursts are coalesced and a long queue gets a value per 1/8 of its
    /// length in changes; a held-back change is delivered once the list
    /// is unchanged for 50 ms, within 1 s at the latest.
    /// [`Self::watch_item_status`] follows one item at every change.
    #[must_use]
    pub fn watch_queue(&self) -> BoxStream<Vec<SyncQueueItem>> {
        watch::queue(Arc::clone(&self.inner))
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
        Ok(watch::item_status(Arc::clone(&self.inner), key))
    }

    /// Connectivity, now and on every change.
    #[must_use]
    pub fn watch_connectivity(&self) -> BoxStream<bool> {
        watch::connectivity(Arc::clone(&self.inner))
    }

    /// Removes synced items from the queue (documents stay).
    ///
    /// # Errors
    /// [`SyncError::Store`].
    pub async fn clear_synced(&self) -> Result<u64, SyncError> {
        Ok(self.inner.store.clear_synced().await?)
    }

    /// Makes one failed item (parked after a permanent error or not)
    /// eligible now, and starts a sync run. Returns whether it was failed.
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`].
    pub async fn retry(&self, entity: &str, id: &str) -> Result<bool, SyncError> {
        let key = RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?);
        let retried = self.inner.store.retry(&key, self.inner.clock.now()).await?;
        if retried {
            self.sync_in_background();
        }
        Ok(retried)
    }

    /// Makes every failed item eligible now and starts a sync run.
    ///
    /// # Errors
    /// [`SyncError::Store`].
    pub async fn retry_failed(&self) -> Result<u64, SyncError> {
        let count = self.inner.store.retry_failed(self.inner.clock.now()).await?;
        if count > 0 {
            self.sync_in_background();
        }
        Ok(count)
    }

    /// Waits until nothing is left to send (no pending, syncing or failed
    /// item) or `timeout` passes; returns whether the queue drained. For
    /// demos, tests and shutdown paths.
    ///
    /// # Errors
    /// [`SyncError::Store`] if a read fails.
    pub async fn wait_until_drained(&self, timeout: Duration) -> Result<bool, SyncError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pending(&self.inner).await? == 0 {
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
        SyncManager {
            inner: Arc::clone(&self.inner),
        }
    }

    fn sync_in_background(&self) {
        self.sync_manager().request_in_background();
    }

    /// Stops auto-sync and background runs, letting an attempt in progress
    /// report its outcome first, then closes the store (releasing its file
    /// and lock). Later calls fail with [`SyncError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.sync_manager().stop_auto_sync();
        self.inner.shutdown.send_replace(true);
        self.inner.wake.notify_waiters();
        let mut tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        while tasks.join_next().await.is_some() {}
        // Wait for a run in progress to finish its current items.
        drop(self.inner.run_lock.lock().await);
        self.inner.store.close().await;
        drop(lock(&self.inner.lease).take());
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay valid if a holder panicked.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs sync passes: on demand, and automatically when connectivity is
/// confirmed.
#[derive(Clone)]
pub struct SyncManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for SyncManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncManager").finish_non_exhaustive()
    }
}

impl SyncManager {
    /// Runs a sync now and returns its report. Calls that overlap share one
    /// run; a call made while a run is in progress makes sure one more pass
    /// follows (and ends that run's retry waits early). Failed items get
    /// another attempt now.
    ///
    /// Cancelling the returned future stops the run; items it had claimed
    /// are released (as possibly applied) when the next run starts.
    ///
    /// # Errors
    /// [`SyncError::Closed`] after close; [`SyncError::Store`] if the store
    /// fails.
    pub async fn sync_now(&self) -> Result<SyncReport, SyncError> {
        self.run(true).await
    }

    /// A run: `full` re-arms failed items and ends retry waits; a run for
    /// newly saved items does neither, so saving often never defeats the
    /// backoff of failing items.
    async fn run(&self, full: bool) -> Result<SyncReport, SyncError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(SyncError::Closed);
        }
        if full {
            inner.rerun.store(true, Ordering::SeqCst);
            inner.wake.notify_waiters();
        } else {
            inner.work.notify_waiters();
        }
        let _running = inner.run_lock.lock().await;
        if full && !inner.rerun.swap(false, Ordering::SeqCst) {
            // The run we waited for served this request.
            return Ok(*lock(&inner.last_report));
        }
        if !full {
            inner.background_pending.store(false, Ordering::SeqCst);
        }
        // The run's report adds up its passes; what is left and whether
        // the network was reachable come from the last one.
        let mut total = SyncReport::default();
        let mut rearm = full;
        loop {
            let report = self.pass(rearm).await;
            inner.timers_changed.notify_waiters();
            let report = report?;
            total.sent += report.sent;
            total.failed += report.failed;
            total.still_pending = report.still_pending;
            total.offline = report.offline;
            *lock(&inner.last_report) = total;
            if inner.closed.load(Ordering::SeqCst) || !inner.rerun.swap(false, Ordering::SeqCst) {
                return Ok(total);
            }
            rearm = true;
        }
    }

    fn request_in_background(&self) {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        // A pass waiting out a timer picks the new items up at once.
        inner.work.notify_waiters();
        if inner.background_pending.swap(true, Ordering::SeqCst) {
            return; // A background run is already on its way.
        }
        let manager = self.clone();
        let mut tasks = lock(&inner.tasks);
        // Finished runs are reaped so the set does not grow.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            if let Err(error) = manager.run(false).await {
                tracing::warn!(%error, "background sync failed");
            }
        });
    }

    /// Starts auto-sync: a full run whenever the monitor reports online and
    /// on every `connectivity_check_interval` poll that finds the network,
    /// and a run when a retry timer falls due. Idempotent.
    pub fn start_auto_sync(&self) {
        let mut slot = lock(&self.inner.auto_sync);
        if slot.as_ref().is_some_and(|task| !task.is_finished()) || self.inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let manager = self.clone();
        *slot = Some(tokio::spawn(async move { manager.auto_sync_loop().await }));
    }

    /// Stops auto-sync. A run it had started stops too; items that run had
    /// claimed are released when the next run starts.
    pub fn stop_auto_sync(&self) {
        if let Some(task) = lock(&self.inner.auto_sync).take() {
            task.abort();
        }
    }

    async fn auto_sync_loop(self) {
        use tokio_stream::StreamExt;
        let mut changes = self.inner.monitor.changes();
        let poll = self.inner.options.connectivity_check_interval;
        // Retry timers matter only while the network is there; offline, a
        // run waits for the monitor or the poll instead of spinning.
        let mut online = false;
        // After a failed run, wait before the next (a full disk would
        // otherwise fail every run at once, forever).
        let mut cooldown: Option<Duration> = None;
        loop {
            let timers_changed = self.inner.timers_changed.notified();
            tokio::pin!(timers_changed);
            timers_changed.as_mut().enable();
            let timer = match self.inner.store.next_attempt_time().await {
                Ok(Some(at)) if online && cooldown.is_none() => {
                    Some(at.saturating_duration_since(self.inner.clock.now()))
                }
                _ => None,
            };
            let wait = [poll, timer, cooldown].into_iter().flatten().min();
            let sleep = async {
                match wait {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending().await,
                }
            };
            // `Some(full)`: run, re-arming failed items when `full`.
            let run = tokio::select! {
                change = changes.next() => match change {
                    Some(true) => {
                        self.mark_online();
                        Some(true)
                    }
                    Some(false) => {
                        online = false;
                        None
                    }
                    // The monitor ended: keep polling only.
                    None => {
                        changes = Box::pin(tokio_stream::pending());
                        None
                    }
                },
                () = &mut timers_changed => None,
                () = sleep => {
                    let due = timer.is_some() && timer == wait;
                    if self.is_online(false).await { Some(!due) } else { None }
                }
            };
            let Some(full) = run else {
                continue;
            };
            online = true;
            match self.run(full).await {
                Ok(report) => {
                    online = !report.offline;
                    cooldown = None;
                }
                Err(SyncError::Closed) => return,
                Err(error) => {
                    tracing::warn!(%error, "auto-sync run failed");
                    let next = cooldown.map_or(Duration::from_secs(1), |previous| previous * 2);
                    cooldown = Some(next.min(Duration::from_secs(60)));
                }
            }
        }
    }

    fn mark_online(&self) {
        *lock(&self.inner.online_since) = Some(tokio::time::Instant::now());
    }

    /// Whether the network is reachable; a confirmation younger than the
    /// minimum probe interval is reused unless `force`.
    async fn is_online(&self, force: bool) -> bool {
        let fresh = lock(&self.inner.online_since)
            .is_some_and(|at| at.elapsed() < self.inner.options.connectivity_probe_min_interval_while_online);
        if fresh && !force {
            return true;
        }
        let online = self.inner.monitor.is_connected().await;
        *lock(&self.inner.online_since) = online.then(tokio::time::Instant::now);
        online
    }

    /// How many items the first claim of a pass takes: the free slots plus
    /// a small lookahead, so claimed-but-unsent items stay few when the app
    /// saves a handful of changes.
    fn first_page_size(&self) -> usize {
        (self.inner.options.concurrency * 4).clamp(MIN_PAGE, MAX_PAGE)
    }

    /// Releases tickets left by an abandoned run: their requests may have
    /// reached the server.
    async fn release_abandoned(&self) -> Result<(), SyncError> {
        let abandoned: Vec<AttemptTicket> = lock(&self.inner.outstanding).drain().map(|(_, t)| t).collect();
        if abandoned.is_empty() {
            return Ok(());
        }
        tracing::warn!(count = abandoned.len(), "releasing items of an interrupted run");
        let finished: Vec<FinishedAttempt> = abandoned
            .into_iter()
            .map(|ticket| release(ticket, true))
            .collect();
        if let Err(error) = self
            .inner
            .store
            .finish_attempts(finished.clone(), self.inner.clock.now())
            .await
        {
            // Kept for the next attempt at releasing them.
            let mut outstanding = lock(&self.inner.outstanding);
            for attempt in finished {
                outstanding.insert(attempt.ticket.attempt, attempt.ticket);
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// One pass over the queue: everything ready is sent; failed items are
    /// retried within the pass as their timers fall due, up to
    /// `max_retries` attempts each.
    async fn pass(&self, rearm: bool) -> Result<SyncReport, SyncError> {
        let span = tracing::info_span!("sync_pass", rearm);
        async {
            let inner = &self.inner;
            let mut report = SyncReport::default();
            self.release_abandoned().await?;
            if rearm {
                inner.store.rearm_failed(inner.clock.now()).await?;
            }
            if !self.is_online(rearm).await {
                tracing::info!("offline: nothing sent");
                report.offline = true;
                report.still_pending = pending(inner).await?;
                return Ok(report);
            }
            let mut attempts: HashMap<RecordKey, u32> = HashMap::new();
            // A pass waits for retry timers only this long; later ones are
            // picked up by auto-sync or the next run.
            let horizon = inner
                .policy
                .base_delay()
                .saturating_mul(inner.policy.max_retries().saturating_add(1));
            // Outcomes of the page last sent, recorded while the next page
            // is on the wire: the store's writes overlap the requests. Until
            // recorded, those items stay in flight, so nothing overtakes them.
            let mut unrecorded: Vec<FinishedAttempt> = Vec::new();
            let mut page = self.first_page_size();
            // The next page, claimed while the current one was on the wire
            // (only after a full page: a backlog is draining).
            let mut prefetched: Option<Vec<AttemptTicket>> = None;
            // The first store failure: the loop stops, and outcomes and a
            // page claimed ahead are still recorded below before it is
            // returned (what cannot be recorded stays outstanding).
            let mut failure: Option<SyncError> = None;
            while !inner.closed.load(Ordering::SeqCst) {
                // Registered before looking, so no wakeup falls in between.
                // (A page claimed ahead was looked at before; when it comes
                // back empty, the outcomes of the page before it are
                // recorded first and the next round looks afresh.)
                let woken = inner.wake.notified();
                let new_work = inner.work.notified();
                tokio::pin!(woken, new_work);
                woken.as_mut().enable();
                new_work.as_mut().enable();
                let tickets = match prefetched.take() {
                    Some(tickets) => tickets,
                    None => match self.claim(page).await {
                        Ok(tickets) => tickets,
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    },
                };
                // A full page means a backlog is draining.
                let backlog = tickets.len() == page;
                page = if backlog {
                    (page * 2).min(MAX_PAGE)
                } else {
                    self.first_page_size()
                };
                if tickets.is_empty() {
                    if !unrecorded.is_empty() {
                        // Failed items get their retry timers once recorded.
                        report.sent += self.record(std::mem::take(&mut unrecorded)).await?;
                        continue;
                    }
                    let Some(at) = inner.store.next_attempt_time().await? else {
                        break;
                    };
                    let delay = at.saturating_duration_since(inner.clock.now());
                    if delay > horizon || inner.rerun.load(Ordering::SeqCst) {
                        break;
                    }
                    let ended = tokio::select! {
                        () = tokio::time::sleep(delay) => false,
                        () = &mut new_work => false,
                        // sync_now or connectivity: the next pass starts
                        // fresh, with retry waits ended.
                        () = &mut woken => true,
                    };
                    if ended {
                        break;
                    }
                    continue;
                }
                let previous = std::mem::take(&mut unrecorded);
                // The store's work (recording the last page, claiming the
                // next) overlaps this page's requests.
                let (sent, recorded, next) = tokio::join!(
                    self.send_page(tickets, &mut attempts),
                    self.record(previous),
                    async {
                        if backlog {
                            self.claim(page).await.map(Some)
                        } else {
                            Ok(None)
                        }
                    }
                );
                let (finished, failed, offline) = sent;
                report.failed += failed;
                unrecorded = finished;
                match recorded {
                    Ok(count) => report.sent += count,
                    Err(error) => failure = Some(error),
                }
                match next {
                    Ok(next) => prefetched = next,
                    Err(error) => {
                        failure.get_or_insert(error);
                    }
                }
                if failure.is_some() {
                    break;
                }
                if offline {
                    report.offline = true;
                    break;
                }
            }
            // A page claimed ahead and not sent goes back as it was.
            if let Some(tickets) = prefetched {
                unrecorded.extend(tickets.into_iter().map(|ticket| release(ticket, false)));
            }
            let recorded = self.record(unrecorded).await;
            if let Some(error) = failure {
                return Err(error);
            }
            report.sent += recorded?;
            report.still_pending = pending(inner).await?;
            tracing::info!(
                sent = report.sent,
                failed = report.failed,
                still_pending = report.still_pending,
                "sync pass done"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Claims up to `page` ready items, tracking their tickets until their
    /// outcomes are recorded.
    async fn claim(&self, page: usize) -> Result<Vec<AttemptTicket>, SyncError> {
        let tickets = self.inner.store.claim_ready(self.inner.clock.now(), page).await?;
        let mut outstanding = lock(&self.inner.outstanding);
        for ticket in &tickets {
            outstanding.insert(ticket.attempt, ticket.clone());
        }
        Ok(tickets)
    }

    /// Records outcomes in one store call; returns how many were applied to
    /// the version they were sent for. On failure the tickets stay
    /// outstanding and the next pass releases them.
    async fn record(&self, finished: Vec<FinishedAttempt>) -> Result<u64, SyncError> {
        if finished.is_empty() {
            return Ok(0);
        }
        let applied: Vec<bool> = finished
            .iter()
            .map(|f| matches!(f.outcome, AttemptOutcome::Applied { .. }))
            .collect();
        let attempts: Vec<AttemptId> = finished.iter().map(|f| f.ticket.attempt).collect();
        let results = self
            .inner
            .store
            .finish_attempts(finished, self.inner.clock.now())
            .await?;
        let mut outstanding = lock(&self.inner.outstanding);
        for attempt in &attempts {
            outstanding.remove(attempt);
        }
        Ok(applied
            .into_iter()
            .zip(results)
            .filter(|(applied, result)| *applied && *result == FinishResult::Current)
            .count() as u64)
    }

    /// Sends a page of tickets with bounded concurrency. Returns every
    /// outcome (to record), how many attempts failed, and whether the link
    /// was lost.
    async fn send_page(
        &self,
        tickets: Vec<AttemptTicket>,
        attempts: &mut HashMap<RecordKey, u32>,
    ) -> (Vec<FinishedAttempt>, u64, bool) {
        let inner = &self.inner;
        let mut running = Sends::for_concurrency(inner.options.concurrency);
        let mut finished = Vec::with_capacity(tickets.len());
        let mut offline = false;
        let mut failed = 0;
        let mut queue = tickets.into_iter();
        loop {
            while running.len() < inner.options.concurrency && !offline {
                let Some(ticket) = queue.next() else { break };
                // Before each remote call: is the link still there?
                if !self.is_online(false).await {
                    offline = true;
                    finished.push(release(ticket, false));
                    break;
                }
                let adapter = Arc::clone(&inner.adapter);
                let resolver = inner.resolver.clone();
                let span = tracing::info_span!(
                    "sync_item",
                    entity = %ticket.key.entity,
                    operation = %ticket.operation,
                    version = ticket.version,
                );
                running.push(
                    async move {
                        let sent = send(adapter.as_ref(), resolver.as_deref(), &ticket).await;
                        (ticket, sent)
                    }
                    .instrument(span),
                );
            }
            let Some(joined) = running.next().await else {
                break;
            };
            let Ok((ticket, sent)) = joined else {
                // A panicked send: its ticket stays outstanding and the
                // next pass releases the item.
                tracing::error!("a send task panicked");
                continue;
            };
            let outcome = match sent {
                Sent::Applied(outcome) => outcome,
                Sent::NotFound => AttemptOutcome::NotFound,
                Sent::Failed(error) => {
                    let may_be_offline = matches!(error.kind(), ErrorKind::Offline | ErrorKind::Transient);
                    if may_be_offline && !self.is_online(true).await {
                        // The link dropped mid-request: no attempt used, no
                        // error recorded.
                        offline = true;
                        AttemptOutcome::Released {
                            possibly_applied: error.possibly_applied(),
                        }
                    } else {
                        // Kind and status only: the message may quote the
                        // server's answer, and with it the payload.
                        tracing::warn!(
                            kind = %error.kind(),
                            status = error.status(),
                            request = error.request(),
                            "attempt failed"
                        );
                        let count = attempts.entry(ticket.key.clone()).or_insert(0);
                        *count += 1;
                        let schedule = inner.policy.after_failure(
                            *count,
                            error.kind(),
                            error.retry_after(),
                            inner.clock.now(),
                            AttemptId::generate().as_u64(),
                        );
                        failed += 1;
                        AttemptOutcome::Failed {
                            kind: error.kind(),
                            message: error.to_string(),
                            possibly_applied: error.possibly_applied(),
                            next_attempt_at: schedule.next_attempt_at,
                            not_before: schedule.not_before,
                        }
                    }
                }
            };
            finished.push(FinishedAttempt { ticket, outcome });
        }
        // Tickets never started because the link dropped go back as they were.
        finished.extend(queue.map(|ticket| release(ticket, false)));
        (finished, failed, offline)
    }
}

fn release(ticket: AttemptTicket, possibly_applied: bool) -> FinishedAttempt {
    FinishedAttempt {
        ticket,
        outcome: AttemptOutcome::Released { possibly_applied },
    }
}

async fn pending(inner: &Inner) -> Result<u64, SyncError> {
    let counts = inner.store.counts().await?;
    Ok(counts.pending + counts.failed + counts.syncing)
}

/// Runs one sync pass for a background job (cron, a systemd timer, a
/// mobile background task) and reports what it did.
#[derive(Debug, Clone)]
pub struct BackgroundSyncScheduler {
    manager: SyncManager,
}

impl BackgroundSyncScheduler {
    /// A scheduler for `engine`'s sync manager.
    #[must_use]
    pub fn new(manager: SyncManager) -> Self {
        Self { manager }
    }

    /// Runs one sync and returns its report.
    ///
    /// # Errors
    /// As [`SyncManager::sync_now`].
    pub async fn execute(&self) -> Result<SyncReport, SyncError> {
        self.manager.sync_now().await
    }
}
