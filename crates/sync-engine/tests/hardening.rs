//! Regression tests of issue 11: the engine used from outside, as an app
//! uses it (monitors and resolvers of its own, links that drop without an
//! event, a clock that moves back, `close` while a request is out).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sync_core::{
    BoxStream, ConflictResolver, ConnectivityMonitor, ErrorKind, JsonObject, ManualClock, RecordKey,
    ResolveError, StoreEvent, SyncOperation, SyncStatus, SyncStore, Timestamp,
};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions, TokioClock};
use sync_testkit::{FakeAdapter, FakeMonitor, Fault, MemoryStore};
use tokio_stream::StreamExt;

fn key(entity: &str, id: &str) -> RecordKey {
    RecordKey::new(entity.parse().unwrap(), id.parse().unwrap())
}

/// Options of a test that drives syncing itself: no run after saves, no
/// polling.
fn manual() -> OfflineSyncOptions {
    OfflineSyncOptions::default()
        .sync_after_save(false)
        .connectivity_check_interval(None)
}

/// An engine over the seams with tokio's clock (exact under paused time).
async fn engine_over(
    store: Arc<dyn SyncStore>,
    adapter: Arc<dyn sync_core::SyncApiAdapter>,
    monitor: Arc<dyn ConnectivityMonitor>,
    options: OfflineSyncOptions,
) -> OfflineSyncEngine {
    OfflineSyncEngine::builder(store, adapter, monitor)
        .options(options)
        .clock(Arc::new(TokioClock::new()))
        .build()
        .await
        .unwrap()
}

/// A monitor whose change stream misses every transition: only probes
/// see the link, as on platforms that drop connectivity events.
#[derive(Debug, Default)]
struct SilentMonitor {
    offline: AtomicBool,
    probes: AtomicUsize,
}

#[async_trait]
impl ConnectivityMonitor for SilentMonitor {
    async fn is_connected(&self) -> bool {
        self.probes.fetch_add(1, Ordering::SeqCst);
        !self.offline.load(Ordering::SeqCst)
    }

    fn changes(&self) -> BoxStream<bool> {
        Box::pin(tokio_stream::pending())
    }
}

/// Issue 11, item 2: with the link gone and no monitor event, the
/// auto-sync loop probed in a tight loop (788 probes per second measured
/// with a monitor that answers at once). Real time: paused time cannot
/// measure a loop that never sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnoticed_link_drop_does_not_make_auto_sync_spin() {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    let monitor = Arc::new(SilentMonitor::default());
    let mut options = OfflineSyncOptions::default();
    options.connectivity_check_interval = Some(Duration::from_secs(2));
    options.connectivity_probe_min_interval_while_online = Duration::from_millis(10);
    let engine = OfflineSyncEngine::builder(store, Arc::new(server.clone()), monitor.clone())
        .options(options)
        .build()
        .await
        .unwrap();
    engine.sync_manager().start_auto_sync();
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    assert!(engine.wait_until_drained(Duration::from_secs(5)).await.unwrap());
    // A poll finds the link and runs: auto-sync believes it is online.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    monitor.offline.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    engine
        .save("tasks", "2", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    let before = monitor.probes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probes = monitor.probes.load(Ordering::SeqCst) - before;
    assert!(
        probes <= 6,
        "{probes} probes in 3 s offline: probes must back off while offline"
    );
    assert_eq!(
        engine.queue_item("tasks", "2").await.unwrap().unwrap().status,
        SyncStatus::Pending
    );

    // The link comes back, again without an event: a backed-off probe
    // finds it within the poll interval.
    monitor.offline.store(false, Ordering::SeqCst);
    assert!(engine.wait_until_drained(Duration::from_secs(5)).await.unwrap());
    assert_eq!(server.methods_for(&key("tasks", "2")), ["POST"]);
    engine.close().await;
}

/// Issue 11, item 3: connectivity coming back did not end a retry wait of
/// a run auto-sync itself had started; only runs started by a save were
/// woken.
#[tokio::test(start_paused = true)]
async fn connectivity_coming_back_ends_auto_syncs_own_retry_wait() {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    let monitor = FakeMonitor::new(true);
    let mut options = manual();
    options.retry_base_delay = Duration::from_secs(86_400);
    let engine = engine_over(
        store,
        Arc::new(server.clone()),
        Arc::new(monitor.clone()),
        options,
    )
    .await;
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    server.fail_next(
        Some(key("tasks", "1")),
        Fault::Fail(ErrorKind::Transient, Some(503)),
    );
    // The monitor's first value (online) starts auto-sync's run, whose one
    // attempt fails with a one-day backoff: the run waits it out.
    engine.sync_manager().start_auto_sync();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(server.methods_for(&key("tasks", "1")), ["POST"]);

    monitor.set_online(false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    monitor.set_online(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A 503 may have been applied: the second attempt checks first.
    assert_eq!(
        server.methods_for(&key("tasks", "1")),
        ["POST", "GET", "POST"],
        "connectivity came back: the second attempt must not wait a day"
    );
    assert_eq!(
        engine.queue_item("tasks", "1").await.unwrap().unwrap().status,
        SyncStatus::Synced
    );
    engine.close().await;
}

/// A resolver that panics.
#[derive(Debug)]
struct PanickingResolver;

#[async_trait]
impl ConflictResolver for PanickingResolver {
    async fn resolve(&self, _local: &JsonObject, _remote: &JsonObject) -> Result<JsonObject, ResolveError> {
        panic!("a bug in the app's resolver");
    }
}

/// A resolver that never answers.
#[derive(Debug)]
struct HungResolver;

#[async_trait]
impl ConflictResolver for HungResolver {
    async fn resolve(&self, _local: &JsonObject, _remote: &JsonObject) -> Result<JsonObject, ResolveError> {
        std::future::pending().await
    }
}

async fn engine_with_resolver(
    resolver: impl ConflictResolver + 'static,
) -> (OfflineSyncEngine, Arc<MemoryStore>, FakeAdapter) {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    server.insert(key("tasks", "1"), JsonObject::new());
    let options = manual();
    let engine = OfflineSyncEngine::builder(
        store.clone(),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(options)
    .conflict_resolver(resolver)
    .clock(Arc::new(TokioClock::new()))
    .build()
    .await
    .unwrap();
    (engine, store, server)
}

/// Issue 11, item 5: a panicking resolver lost the ticket in the panic;
/// the next pass released the item and panicked again, forever, with the
/// item `pending` and no error.
#[tokio::test(start_paused = true)]
async fn a_panicking_resolver_parks_the_item_with_a_clear_error() {
    let (engine, _store, server) = engine_with_resolver(PanickingResolver).await;
    engine
        .save("tasks", "1", json!({"v": 2}), SyncOperation::Update)
        .await
        .unwrap();
    let report = engine.sync_manager().sync_now().await.unwrap();
    assert_eq!((report.sent, report.failed), (0, 1));
    let item = engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!(item.status, SyncStatus::Failed);
    assert_eq!(item.last_error_kind, Some(ErrorKind::Permanent));
    let error = item.last_error.unwrap();
    assert!(error.contains("panicked"), "{error}");
    // Parked: later passes leave it alone until the app retries it.
    let requests = server.requests().len();
    engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(server.requests().len(), requests);
    engine.close().await;
}

/// Issue 11, item 5: a hook that never answers must not hang `sync_now`
/// or `close`: an attempt has a time limit.
#[tokio::test(start_paused = true)]
async fn a_hung_resolver_fails_the_attempt_instead_of_hanging_sync_now() {
    let (engine, _store, _server) = engine_with_resolver(HungResolver).await;
    engine
        .save("tasks", "1", json!({"v": 2}), SyncOperation::Update)
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(3600), engine.sync_manager().sync_now())
        .await
        .expect("sync_now hung on a resolver that never answers")
        .unwrap();
    assert_eq!(report.sent, 0);
    let item = engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!(item.status, SyncStatus::Failed);
    assert!(item.last_error.unwrap().contains("did not finish"));
    tokio::time::timeout(Duration::from_secs(60), engine.close())
        .await
        .expect("close hung");
}

/// A monitor whose probe never answers.
#[derive(Debug)]
struct HungMonitor;

#[async_trait]
impl ConnectivityMonitor for HungMonitor {
    async fn is_connected(&self) -> bool {
        std::future::pending().await
    }

    fn changes(&self) -> BoxStream<bool> {
        Box::pin(tokio_stream::pending())
    }
}

/// Issue 11, item 5: a custom monitor whose probe hangs must not hang a
/// run or `close`.
#[tokio::test(start_paused = true)]
async fn a_hung_probe_counts_as_offline() {
    let store = Arc::new(MemoryStore::new());
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    let engine = engine_over(
        store,
        Arc::new(FakeAdapter::new()),
        Arc::new(HungMonitor),
        options,
    )
    .await;
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(3600), engine.sync_manager().sync_now())
        .await
        .expect("sync_now hung on a probe that never answers")
        .unwrap();
    assert!(report.offline);
    tokio::time::timeout(Duration::from_secs(60), engine.close())
        .await
        .expect("close hung");
}

/// Issue 11, item 13: `close` is documented to let an attempt in progress
/// report its outcome first, but it aborted auto-sync's pass mid-request,
/// leaving the item in flight.
#[tokio::test(start_paused = true)]
async fn close_lets_the_attempt_in_progress_report_first() {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    server.set_latency(Duration::from_millis(500));
    let options = manual();
    let engine = engine_over(
        store.clone(),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
        options,
    )
    .await;
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    engine.sync_manager().start_auto_sync();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store
            .queue_item(&key("tasks", "1"))
            .await
            .unwrap()
            .unwrap()
            .status,
        SyncStatus::Syncing,
        "the request is out"
    );
    // The store refuses reads once closed: its events tell the last state.
    let mut events = store.subscribe();
    engine.close().await;
    let mut item = None;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(10), events.next()).await {
        if let StoreEvent::QueueItem {
            item: Some(changed), ..
        } = event
        {
            item = Some(changed);
        }
    }
    let item = item.expect("no queue event after close began");
    assert_eq!(
        (item.status, item.in_flight),
        (SyncStatus::Synced, None),
        "the attempt in progress reports before close returns"
    );
}

/// Issue 11, item 1: `stop_auto_sync` aborted auto-sync's pass mid-request
/// and left its item `syncing` for the life of the process.
#[tokio::test(start_paused = true)]
async fn stopping_auto_sync_mid_request_leaves_nothing_in_flight() {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    server.set_latency(Duration::from_millis(500));
    // One request at a time: exactly one is out when auto-sync stops.
    let options = manual().concurrency(1);
    let engine = engine_over(
        store.clone(),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
        options,
    )
    .await;
    for id in ["1", "2", "3"] {
        engine
            .save("tasks", id, json!({"v": 1}), SyncOperation::Create)
            .await
            .unwrap();
    }
    engine.sync_manager().start_auto_sync();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        engine.queue_item("tasks", "1").await.unwrap().unwrap().status,
        SyncStatus::Syncing
    );
    engine.sync_manager().stop_auto_sync();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The request out finished and was recorded; nothing else was claimed.
    let statuses: Vec<SyncStatus> = engine
        .queue()
        .await
        .unwrap()
        .iter()
        .map(|item| item.status)
        .collect();
    assert_eq!(
        statuses,
        [SyncStatus::Synced, SyncStatus::Pending, SyncStatus::Pending]
    );
    assert_eq!(server.requests().len(), 1);
    let report = engine.sync_manager().sync_now().await.unwrap();
    assert_eq!((report.sent, report.still_pending), (2, 0));
    engine.close().await;
}

/// Issue 11, item 10: `next_attempt_at` is wall time, so a clock moved
/// back a day held a saved item for a day.
#[tokio::test(start_paused = true)]
async fn a_clock_moved_back_does_not_hold_saved_items() {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
    let options = manual();
    let engine =
        OfflineSyncEngine::builder(store, Arc::new(server.clone()), Arc::new(FakeMonitor::new(true)))
            .options(options)
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    // Back half an hour: less than the hour a server's Retry-After may
    // ask for, more than any backoff (6 s here).
    clock.set(Timestamp::from_millis(1_800_000_000_000 - 1_800_000));
    let report = engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(report.sent, 1, "the saved item waited for the clock to catch up");
    assert_eq!(server.methods_for(&key("tasks", "1")), ["POST"]);
    // Back a whole day, with a save made before and one after the jump.
    engine
        .save("tasks", "2", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    clock.set(Timestamp::from_millis(1_800_000_000_000 - 86_400_000));
    engine
        .save("tasks", "3", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    let report = engine.sync_manager().sync_now().await.unwrap();
    assert_eq!((report.sent, report.still_pending), (2, 0));
    engine.close().await;
}

/// A store whose reads fail while `failing_reads` is above zero, as a busy
/// pool or a transient I/O error makes them.
struct FlakyReads {
    inner: MemoryStore,
    failing_reads: AtomicUsize,
    /// The next claim panics (a bug in a custom store).
    panic_next_claim: AtomicBool,
}

impl FlakyReads {
    fn read_fails(&self) -> Result<(), sync_core::StoreError> {
        let failing = self
            .failing_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match failing {
            Ok(_) => Err(sync_core::StoreError::new(
                sync_core::StoreErrorKind::Busy,
                "scripted busy read",
            )),
            Err(_) => Ok(()),
        }
    }
}

#[async_trait]
impl SyncStore for FlakyReads {
    async fn save(
        &self,
        change: sync_core::LocalChange,
        now: Timestamp,
    ) -> Result<sync_core::SavedChange, sync_core::StoreError> {
        self.inner.save(change, now).await
    }
    async fn save_batch(
        &self,
        changes: Vec<sync_core::LocalChange>,
        now: Timestamp,
    ) -> Result<Vec<sync_core::SavedChange>, sync_core::StoreError> {
        self.inner.save_batch(changes, now).await
    }
    async fn record(&self, key: &RecordKey) -> Result<Option<sync_core::LocalRecord>, sync_core::StoreError> {
        self.inner.record(key).await
    }
    async fn records(
        &self,
        entity: &sync_core::EntityName,
    ) -> Result<Vec<sync_core::LocalRecord>, sync_core::StoreError> {
        self.read_fails()?;
        self.inner.records(entity).await
    }
    async fn queue_item(
        &self,
        key: &RecordKey,
    ) -> Result<Option<sync_core::SyncQueueItem>, sync_core::StoreError> {
        self.read_fails()?;
        self.inner.queue_item(key).await
    }
    async fn queue(&self) -> Result<Vec<sync_core::SyncQueueItem>, sync_core::StoreError> {
        self.read_fails()?;
        self.inner.queue().await
    }
    async fn counts(&self) -> Result<sync_core::QueueCounts, sync_core::StoreError> {
        self.inner.counts().await
    }
    async fn claim_ready(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<sync_core::AttemptTicket>, sync_core::StoreError> {
        if self.panic_next_claim.swap(false, Ordering::SeqCst) {
            panic!("a bug in the app's store");
        }
        self.inner.claim_ready(now, limit).await
    }
    async fn next_attempt_time(&self) -> Result<Option<Timestamp>, sync_core::StoreError> {
        self.inner.next_attempt_time().await
    }
    async fn finish_attempts(
        &self,
        finished: Vec<sync_core::FinishedAttempt>,
        now: Timestamp,
    ) -> Result<Vec<sync_core::FinishResult>, sync_core::StoreError> {
        self.inner.finish_attempts(finished, now).await
    }
    async fn recover_interrupted(&self, now: Timestamp) -> Result<u64, sync_core::StoreError> {
        self.inner.recover_interrupted(now).await
    }
    async fn rebase_timers(
        &self,
        now: Timestamp,
        policy: sync_core::RetryPolicy,
    ) -> Result<u64, sync_core::StoreError> {
        self.inner.rebase_timers(now, policy).await
    }
    async fn rearm_failed(&self, now: Timestamp) -> Result<u64, sync_core::StoreError> {
        self.inner.rearm_failed(now).await
    }
    async fn retry(&self, key: &RecordKey, now: Timestamp) -> Result<bool, sync_core::StoreError> {
        self.inner.retry(key, now).await
    }
    async fn retry_failed(&self, now: Timestamp) -> Result<u64, sync_core::StoreError> {
        self.inner.retry_failed(now).await
    }
    async fn clear_synced(&self) -> Result<u64, sync_core::StoreError> {
        self.inner.clear_synced().await
    }
    fn subscribe(&self) -> BoxStream<StoreEvent> {
        self.inner.subscribe()
    }
}

/// The next value of a watch stream, within 10 s.
async fn next<T>(stream: &mut BoxStream<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no value within 10 s")
        .expect("the stream ended")
}

/// Issue 11, item 12: a watch stream whose read failed (a busy pool) just
/// ended, and the UI's list stopped updating; and a new `last_error` with
/// an unchanged status was invisible to `watch_item_status`.
#[tokio::test(start_paused = true)]
async fn watch_streams_outlive_failed_reads_and_show_every_change_of_an_item() {
    let store = Arc::new(FlakyReads {
        inner: MemoryStore::new(),
        failing_reads: AtomicUsize::new(0),
        panic_next_claim: AtomicBool::new(false),
    });
    let server = FakeAdapter::new();
    let mut options = manual();
    options.max_retries = 1;
    let engine = engine_over(
        store.clone(),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
        options,
    )
    .await;
    // Every first read of the three streams fails, a few times over.
    store.failing_reads.store(7, Ordering::SeqCst);
    let mut queue = engine.watch_queue();
    let mut records = engine.watch_records("tasks").unwrap();
    let mut item = engine.watch_queue_item("tasks", "1").unwrap();
    assert!(next(&mut queue).await.is_empty());
    assert!(next(&mut records).await.is_empty());
    assert_eq!(next(&mut item).await, None);

    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    assert_eq!(next(&mut queue).await.len(), 1);
    assert_eq!(next(&mut records).await.len(), 1);
    let saved = next(&mut item).await.unwrap();
    assert_eq!(saved.status, SyncStatus::Pending);

    // Two failures in a row: the status stays `failed`, the error changes.
    server.fail_next(
        Some(key("tasks", "1")),
        Fault::Fail(ErrorKind::Transient, Some(503)),
    );
    engine.sync_manager().sync_now().await.unwrap();
    let mut first = next(&mut item).await.unwrap();
    while first.status != SyncStatus::Failed {
        first = next(&mut item).await.unwrap();
    }
    server.fail_next(
        Some(key("tasks", "1")),
        Fault::Fail(ErrorKind::Permanent, Some(422)),
    );
    engine.sync_manager().sync_now().await.unwrap();
    let mut second = next(&mut item).await.unwrap();
    while second.status != SyncStatus::Failed {
        second = next(&mut item).await.unwrap();
    }
    assert_ne!(first.last_error, second.last_error);
    assert_eq!(second.last_error_kind, Some(ErrorKind::Permanent));
    engine.close().await;
}

/// A change stream that counts how often it is polled: how often the
/// auto-sync loop wakes up.
struct CountedPolls {
    inner: BoxStream<bool>,
    polls: Arc<AtomicUsize>,
}

impl tokio_stream::Stream for CountedPolls {
    type Item = bool;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<bool>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll_next(context)
    }
}

/// A [`FakeMonitor`] whose change stream counts its polls.
#[derive(Clone)]
struct PollCountingMonitor {
    inner: FakeMonitor,
    polls: Arc<AtomicUsize>,
}

#[async_trait]
impl ConnectivityMonitor for PollCountingMonitor {
    async fn is_connected(&self) -> bool {
        self.inner.is_connected().await
    }

    fn changes(&self) -> BoxStream<bool> {
        Box::pin(CountedPolls {
            inner: self.inner.changes(),
            polls: Arc::clone(&self.polls),
        })
    }
}

/// Review of issue 11, item 2: with the monitor reporting offline while
/// auto-sync's own run waited out a retry, the loop woke about a thousand
/// times a second (the probe backoff had passed, but nothing probes while
/// a run goes). Real time: paused time cannot measure a loop that never
/// sleeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_sync_sleeps_while_its_own_run_waits_offline() {
    let server = FakeAdapter::new();
    let monitor = PollCountingMonitor {
        inner: FakeMonitor::new(true),
        polls: Arc::default(),
    };
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options.retry_base_delay = Duration::from_secs(10);
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(server.clone()),
        Arc::new(monitor.clone()),
    )
    .options(options)
    .build()
    .await
    .unwrap();
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    server.fail_next(
        Some(key("tasks", "1")),
        Fault::Fail(ErrorKind::Transient, Some(503)),
    );
    engine.sync_manager().start_auto_sync();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.methods_for(&key("tasks", "1")),
        ["POST"],
        "the run waits out its retry"
    );
    monitor.inner.set_online(false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = monitor.polls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let wakeups = monitor.polls.load(Ordering::SeqCst) - before;
    assert!(wakeups <= 10, "auto-sync woke {wakeups} times in 2.5 s");
    engine.close().await;
}

/// Review of issue 11, item 2: with `connectivity_check_interval = None`
/// and a monitor that missed the link coming back, nothing ever probed
/// again after one failed probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_polling_a_missed_reconnection_is_still_found() {
    let server = FakeAdapter::new();
    let monitor = Arc::new(SilentMonitor::default());
    let mut options = OfflineSyncOptions::default();
    options.connectivity_check_interval = None;
    options.connectivity_probe_min_interval_while_online = Duration::from_millis(10);
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(server.clone()),
        monitor.clone(),
    )
    .options(options)
    .build()
    .await
    .unwrap();
    engine.sync_manager().start_auto_sync();
    monitor.offline.store(true, Ordering::SeqCst);
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.requests().is_empty(), "offline: nothing sent");
    monitor.offline.store(false, Ordering::SeqCst);
    assert!(
        engine.wait_until_drained(Duration::from_secs(5)).await.unwrap(),
        "the link came back and nothing probed it"
    );
    engine.close().await;
}

/// Wall time that follows tokio's clock, shifted by a settable offset.
#[derive(Debug, Default)]
struct ShiftedClock {
    base: TokioClock,
    shift_ms: std::sync::atomic::AtomicI64,
}

impl sync_core::Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.base.now().as_millis() + self.shift_ms.load(Ordering::SeqCst))
    }
}

/// Review of issue 11, item 10: with auto-sync only (no `sync_now`), a
/// clock moved back half an hour while a retry waited held the item for
/// the half hour.
#[tokio::test(start_paused = true)]
async fn auto_sync_alone_does_not_wait_for_a_clock_moved_back() {
    let server = FakeAdapter::new();
    let clock = Arc::new(ShiftedClock::default());
    let options = manual();
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(options)
    .clock(clock.clone())
    .build()
    .await
    .unwrap();
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    server.fail_next(
        Some(key("tasks", "1")),
        Fault::Fail(ErrorKind::Transient, Some(503)),
    );
    engine.sync_manager().start_auto_sync();
    // The first attempt fails; the retry is due 2 s later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.methods_for(&key("tasks", "1")).len(), 1);
    clock.shift_ms.store(-1_800_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        engine.queue_item("tasks", "1").await.unwrap().unwrap().status,
        SyncStatus::Synced,
        "the retry waited for the clock to catch up"
    );
    engine.close().await;
}

/// Review of issue 11, item 4: a `sync_now` made while a background run
/// went returned `Ok` with that run's earlier report when the pass that
/// should have served it failed, though its items were not sent.
#[tokio::test(start_paused = true)]
async fn sync_now_is_not_answered_by_a_pass_that_failed() {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    let mut options = OfflineSyncOptions::default();
    options.connectivity_check_interval = None;
    options.retry_base_delay = Duration::from_millis(10);
    let engine = engine_over(
        store.clone(),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
        options,
    )
    .await;
    let status = |id: &'static str| {
        let engine = engine.clone();
        async move { engine.queue_item("tasks", id).await.unwrap().unwrap().status }
    };
    // B fails every attempt of its background run: it waits for the next
    // full pass.
    for _ in 0..3 {
        server.fail_next(
            Some(key("tasks", "b")),
            Fault::Fail(ErrorKind::Transient, Some(503)),
        );
    }
    engine
        .save("tasks", "b", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status("b").await, SyncStatus::Failed);
    // A's background run (not a full pass: B stays waiting) sends A for
    // a second; meanwhile the app asks for a full pass, which that run
    // serves next, and that pass's recording of B fails.
    server.set_latency(Duration::from_secs(1));
    engine
        .save("tasks", "a", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = tokio::spawn({
        let manager = engine.sync_manager();
        async move { manager.sync_now().await }
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(status("b").await, SyncStatus::Syncing, "the full pass sends B");
    store.fail_next_finishes(1);
    let report = asked.await.unwrap().unwrap();
    assert_eq!(
        status("b").await,
        SyncStatus::Synced,
        "sync_now returned Ok ({report:?}) while the pass that was to serve it failed"
    );
    engine.close().await;
}

/// Review of issue 11, item 5: a run task that panicked (a bug in a
/// custom store) ended auto-sync for good, with the engine still open.
#[tokio::test(start_paused = true)]
async fn auto_sync_outlives_a_run_that_panicked() {
    let store = Arc::new(FlakyReads {
        inner: MemoryStore::new(),
        failing_reads: AtomicUsize::new(0),
        panic_next_claim: AtomicBool::new(true),
    });
    let server = FakeAdapter::new();
    let options = manual();
    let engine = engine_over(
        store,
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
        options,
    )
    .await;
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    // The monitor's first value starts a run, whose claim panics.
    engine.sync_manager().start_auto_sync();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        engine.queue_item("tasks", "1").await.unwrap().unwrap().status,
        SyncStatus::Synced,
        "auto-sync stopped after a run panicked"
    );
    assert_eq!(server.methods_for(&key("tasks", "1")), ["POST"]);
    engine.close().await;
}

/// `clear_synced` removes a synced item from its item streams (`None`) and
/// leaves an unsynced one alone.
#[tokio::test(start_paused = true)]
async fn item_streams_follow_clear_synced() {
    let engine = engine_over(
        Arc::new(MemoryStore::new()),
        Arc::new(FakeAdapter::new()),
        Arc::new(FakeMonitor::new(true)),
        manual(),
    )
    .await;
    engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    engine
        .save("tasks", "2", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    let mut synced = engine.watch_queue_item("tasks", "1").unwrap();
    let mut synced_status = engine.watch_item_status("tasks", "1").unwrap();
    let mut pending = engine.watch_item_status("tasks", "2").unwrap();
    assert_eq!(next(&mut synced).await.unwrap().status, SyncStatus::Synced);
    assert_eq!(next(&mut synced_status).await, Some(SyncStatus::Synced));
    assert_eq!(next(&mut pending).await, Some(SyncStatus::Pending));
    assert_eq!(engine.clear_synced().await.unwrap(), 1);
    assert_eq!(next(&mut synced).await, None);
    assert_eq!(next(&mut synced_status).await, None);
    // The pending item's stream has nothing new to say.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), pending.next())
            .await
            .is_err()
    );
    engine.close().await;
}
