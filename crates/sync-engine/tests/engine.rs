//! Engine behaviour with fakes (in-memory store, scripted server, switchable
//! monitor) in paused tokio time: deterministic and instant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sync_core::{
    ApiError, EntityName, ErrorKind, JsonObject, OperationId, RecordId, RecordKey, RemoteWins, StoreEvent,
    SyncApiAdapter, SyncOperation, SyncQueueItem, SyncStatus, SyncStore, ValidationError,
};
use sync_engine::{BackgroundSyncScheduler, OfflineSyncEngine, OfflineSyncOptions, SyncError, TokioClock};
use sync_testkit::{FakeAdapter, FakeMonitor, Fault, MemoryStore};
use tokio_stream::StreamExt;

struct Rig {
    engine: OfflineSyncEngine,
    store: Arc<MemoryStore>,
    server: FakeAdapter,
    monitor: FakeMonitor,
}

fn options() -> OfflineSyncOptions {
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options.connectivity_check_interval = None;
    options
}

async fn rig_with(options: OfflineSyncOptions, online: bool) -> Rig {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    let monitor = FakeMonitor::new(online);
    let engine =
        OfflineSyncEngine::builder(store.clone(), Arc::new(server.clone()), Arc::new(monitor.clone()))
            .options(options)
            .clock(Arc::new(TokioClock::new()))
            .build()
            .await
            .unwrap();
    Rig {
        engine,
        store,
        server,
        monitor,
    }
}

/// A second engine over `store`, with its own fake server and monitor.
async fn another_engine_over(store: &Arc<MemoryStore>) -> Result<OfflineSyncEngine, SyncError> {
    OfflineSyncEngine::builder(
        store.clone(),
        Arc::new(FakeAdapter::new()),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(options())
    .clock(Arc::new(TokioClock::new()))
    .build()
    .await
}

async fn rig() -> Rig {
    rig_with(options(), true).await
}

fn key(entity: &str, id: &str) -> RecordKey {
    RecordKey::new(entity.parse().unwrap(), id.parse().unwrap())
}

async fn status(rig: &Rig, entity: &str, id: &str) -> Option<SyncStatus> {
    rig.engine
        .queue_item(entity, id)
        .await
        .unwrap()
        .map(|item| item.status)
}

#[tokio::test(start_paused = true)]
async fn saves_are_local_first_and_offline_sends_nothing() {
    let rig = rig_with(options(), false).await;
    rig.engine
        .save("tasks", "1", json!({"title": "a"}), SyncOperation::Create)
        .await
        .unwrap();
    assert_eq!(
        rig.engine.get_record("tasks", "1").await.unwrap().unwrap().data["title"],
        "a"
    );
    assert_eq!(status(&rig, "tasks", "1").await, Some(SyncStatus::Pending));
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert!(report.offline);
    assert_eq!(report.still_pending, 1);
    assert!(rig.server.requests().is_empty());

    rig.monitor.set_online(true);
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!((report.sent, report.still_pending, report.offline), (1, 0, false));
    assert_eq!(status(&rig, "tasks", "1").await, Some(SyncStatus::Synced));
    assert_eq!(rig.server.records()[&key("tasks", "1")]["title"], "a");
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_a_typed_error_and_saves_nothing() {
    let rig = rig().await;
    let empty = rig
        .engine
        .save("", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(
            empty,
            SyncError::Invalid(ValidationError::Empty { what: "entity name" })
        ),
        "{empty:?}"
    );
    let control = rig
        .engine
        .save("tasks", "a\0b", json!({}), SyncOperation::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(
            control,
            SyncError::Invalid(ValidationError::ControlCharacter {
                what: "record id",
                position: 1,
                code: 0
            })
        ),
        "{control:?}"
    );
    let error = rig
        .engine
        .save("tasks", "1", json!([1]), SyncOperation::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SyncError::Invalid(ValidationError::PayloadNotObject { found: "an array" })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("must be a JSON object"), "{error}");
    assert!(rig.engine.queue().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn sync_after_save_syncs_in_the_background() {
    let mut options = options();
    options.sync_after_save = true;
    let rig = rig_with(options, true).await;
    rig.engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    assert!(
        rig.engine
            .wait_until_drained(Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert_eq!(rig.server.methods_for(&key("tasks", "1")), ["POST"]);
}

#[tokio::test(start_paused = true)]
async fn one_engine_many_entities_one_global_queue_in_order() {
    let rig = rig().await;
    for (entity, id) in [
        ("tasks", "1"),
        ("notes", "1"),
        ("customers", "c9"),
        ("tasks", "2"),
    ] {
        rig.engine
            .save(entity, id, json!({"e": entity}), SyncOperation::Create)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(5)).await;
    }
    rig.engine.sync_manager().sync_now().await.unwrap();
    let order: Vec<String> = rig.server.requests().iter().map(|r| r.key.to_string()).collect();
    assert_eq!(order, ["tasks/1", "notes/1", "customers/c9", "tasks/2"]);
    assert_eq!(
        rig.server.records().len(),
        4,
        "equal ids in different entities do not collide"
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_create_is_one_post_and_a_possibly_applied_one_checks_first() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    rig.engine
        .save("tasks", "2", json!({"v": 2}), SyncOperation::Create)
        .await
        .unwrap();
    // The POST of tasks/2 is applied but its response is lost.
    rig.server.fail_next(Some(key("tasks", "2")), Fault::LoseResponse);
    rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(
        rig.server.methods_for(&key("tasks", "1")),
        ["POST"],
        "no GET before a first create"
    );
    // The retry checks first and updates: no duplicate POST.
    assert_eq!(rig.server.methods_for(&key("tasks", "2")), ["POST", "GET", "PUT"]);
    assert_eq!(status(&rig, "tasks", "2").await, Some(SyncStatus::Synced));
}

#[tokio::test(start_paused = true)]
async fn items_left_syncing_are_recovered_at_start_without_a_duplicate_post() {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    store
        .save(
            sync_testkit::conformance::change("tasks", "1", SyncOperation::Create),
            sync_core::Timestamp::now(),
        )
        .await
        .unwrap();
    let ticket = store
        .claim_ready(sync_core::Timestamp::now(), 1)
        .await
        .unwrap()
        .remove(0);
    // The killed process's POST had reached the server.
    server.insert(ticket.key.clone(), ticket.payload.clone());
    let engine = OfflineSyncEngine::builder(
        store.clone(),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(options())
    .clock(Arc::new(TokioClock::new()))
    .build()
    .await
    .unwrap();
    assert_eq!(
        store
            .queue_item(&key("tasks", "1"))
            .await
            .unwrap()
            .unwrap()
            .status,
        SyncStatus::Pending
    );
    engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(server.methods_for(&key("tasks", "1")), ["GET", "PUT"]);
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_linearly_within_a_pass_and_count_historically() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    for _ in 0..3 {
        rig.server
            .fail_next(None, Fault::Fail(ErrorKind::Transient, Some(503)));
    }
    let started = tokio::time::Instant::now();
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    // Attempts at 0 s, 2 s, 6 s (1 x 2 s, then 2 x 2 s); the third failure ends the pass.
    assert_eq!(started.elapsed(), Duration::from_secs(6));
    assert_eq!((report.failed, report.sent), (3, 0));
    let item = rig.engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!((item.status, item.retry_count), (SyncStatus::Failed, 3));
    assert!(item.last_error.unwrap().contains("scripted"));
    // The next pass restarts the count and succeeds; the history stays.
    rig.engine.sync_manager().sync_now().await.unwrap();
    let item = rig.engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!((item.status, item.retry_count), (SyncStatus::Synced, 3));
}

#[tokio::test(start_paused = true)]
async fn a_failing_item_never_delays_healthy_ones() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "bad", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    for id in ["a", "b", "c"] {
        rig.engine
            .save("tasks", id, json!({}), SyncOperation::Create)
            .await
            .unwrap();
    }
    rig.server.fail_next(
        Some(key("tasks", "bad")),
        Fault::Fail(ErrorKind::Transient, Some(503)),
    );
    rig.engine.sync_manager().sync_now().await.unwrap();
    let order: Vec<String> = rig
        .server
        .requests()
        .iter()
        .map(|r| r.key.id.to_string())
        .collect();
    assert_eq!(
        order,
        ["bad", "a", "b", "c", "bad", "bad"],
        "the retry waited for its own timer only"
    );
    // The 503 may have applied the POST: the retry checks first.
    assert_eq!(
        rig.server.methods_for(&key("tasks", "bad")),
        ["POST", "GET", "POST"]
    );
    assert!(
        rig.engine
            .queue()
            .await
            .unwrap()
            .iter()
            .all(|i| i.status == SyncStatus::Synced)
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_park_until_retried_and_others_still_sync() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "bad", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    rig.engine
        .save("tasks", "good", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    rig.server.fail_next(
        Some(key("tasks", "bad")),
        Fault::Fail(ErrorKind::Permanent, Some(422)),
    );
    rig.engine.sync_manager().sync_now().await.unwrap();
    rig.engine.sync_manager().sync_now().await.unwrap();
    let bad = rig.engine.queue_item("tasks", "bad").await.unwrap().unwrap();
    assert!(bad.is_parked(), "{bad:?}");
    assert_eq!(bad.last_error_kind, Some(ErrorKind::Permanent));
    assert_eq!(
        rig.server.methods_for(&key("tasks", "bad")),
        ["POST"],
        "not retried automatically"
    );
    assert_eq!(status(&rig, "tasks", "good").await, Some(SyncStatus::Synced));

    assert!(rig.engine.retry("tasks", "bad").await.unwrap());
    rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(status(&rig, "tasks", "bad").await, Some(SyncStatus::Synced));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    rig.server
        .fail_next(None, Fault::Throttle(Duration::from_secs(7)));
    let started = tokio::time::Instant::now();
    rig.engine.sync_manager().sync_now().await.unwrap();
    // The server's 7 s, not the 2 s backoff; a 429 applied nothing, so no check.
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    assert_eq!(rig.server.methods_for(&key("tasks", "1")), ["POST", "POST"]);
    assert_eq!(status(&rig, "tasks", "1").await, Some(SyncStatus::Synced));
}

#[tokio::test(start_paused = true)]
async fn link_lost_before_a_call_releases_the_item_without_an_attempt() {
    let mut options = options();
    options.connectivity_probe_min_interval_while_online = Duration::ZERO;
    let rig = rig_with(options, true).await;
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    // Online for the pass's first probe, gone at the check before the call.
    rig.monitor.go_offline_after(1);
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert!(report.offline);
    assert!(rig.server.requests().is_empty(), "nothing was sent");
    let item = rig.engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!(
        (item.status, item.retry_count, item.last_error),
        (SyncStatus::Pending, 0, None)
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_failing_because_the_link_dropped_uses_no_attempt() {
    let mut options = options();
    options.connectivity_probe_min_interval_while_online = Duration::ZERO;
    let rig = rig_with(options, true).await;
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    rig.server
        .fail_next(None, Fault::Fail(ErrorKind::Transient, None));
    // Online at the pass start and before the call; offline when rechecked.
    rig.monitor.go_offline_after(2);
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert!(report.offline);
    assert_eq!(report.failed, 0);
    let item = rig.engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!(
        (item.status, item.retry_count, item.last_error),
        (SyncStatus::Pending, 0, None)
    );
    assert!(item.possibly_applied, "the request may have reached the server");
}

#[tokio::test(start_paused = true)]
async fn overlapping_sync_now_calls_share_a_run() {
    let rig = rig().await;
    rig.server.set_latency(Duration::from_millis(100));
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    let manager = rig.engine.sync_manager();
    let (a, b) = tokio::join!(manager.sync_now(), manager.sync_now());
    assert_eq!(
        (a.unwrap().sent, b.unwrap().sent),
        (1, 1),
        "both report the one shared run"
    );
    assert_eq!(rig.server.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn sync_now_during_a_retry_wait_ends_it_early() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    rig.server
        .fail_next(None, Fault::Fail(ErrorKind::Transient, Some(503)));
    let manager = rig.engine.sync_manager();
    let started = tokio::time::Instant::now();
    let background = tokio::spawn({
        let manager = manager.clone();
        async move { manager.sync_now().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    manager.sync_now().await.unwrap();
    background.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(status(&rig, "tasks", "1").await, Some(SyncStatus::Synced));
}

#[tokio::test(start_paused = true)]
async fn a_conflict_resolver_sees_the_remote_copy_before_each_update() {
    let store = Arc::new(MemoryStore::new());
    let server = FakeAdapter::new();
    let engine =
        OfflineSyncEngine::builder(store, Arc::new(server.clone()), Arc::new(FakeMonitor::new(true)))
            .options(options())
            .conflict_resolver(RemoteWins)
            .clock(Arc::new(TokioClock::new()))
            .build()
            .await
            .unwrap();
    engine
        .save("tasks", "1", json!({"v": "local"}), SyncOperation::Create)
        .await
        .unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    server.insert(
        key("tasks", "1"),
        json!({"v": "remote"}).as_object().cloned().unwrap(),
    );
    engine
        .save("tasks", "1", json!({"v": "local edit"}), SyncOperation::Update)
        .await
        .unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(server.methods_for(&key("tasks", "1")), ["POST", "GET", "PUT"]);
    assert_eq!(server.records()[&key("tasks", "1")]["v"], "remote");
    assert_eq!(
        engine.get_record("tasks", "1").await.unwrap().unwrap().data["v"],
        "remote",
        "both sides agree"
    );
}

#[tokio::test(start_paused = true)]
async fn delete_removes_the_document_at_once_and_sends_delete() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    rig.engine.sync_manager().sync_now().await.unwrap();
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    assert!(rig.engine.get_record("tasks", "1").await.unwrap().is_none());
    rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(rig.server.methods_for(&key("tasks", "1")), ["POST", "DELETE"]);
    assert!(rig.server.records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_update_the_server_lost_recreates_the_record() {
    let rig = rig().await;
    rig.store
        .save(
            sync_testkit::conformance::change("tasks", "1", SyncOperation::Update),
            sync_core::Timestamp::now(),
        )
        .await
        .unwrap();
    rig.engine.sync_manager().sync_now().await.unwrap();
    // The 404 alone proves nothing (a wrong route answers it too): a GET
    // confirms it before the record is re-created, and another that the
    // server finds what it re-created.
    assert_eq!(
        rig.server.methods_for(&key("tasks", "1")),
        ["PUT", "GET", "POST", "GET"]
    );
    assert_eq!(status(&rig, "tasks", "1").await, Some(SyncStatus::Synced));
}

#[tokio::test(start_paused = true)]
async fn synced_items_stay_until_cleared() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(rig.engine.queue().await.unwrap().len(), 1);
    assert_eq!(rig.engine.clear_synced().await.unwrap(), 1);
    assert!(rig.engine.queue().await.unwrap().is_empty());
    assert!(rig.engine.get_record("tasks", "1").await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn auto_sync_runs_when_connectivity_returns() {
    let rig = rig_with(options(), false).await;
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    rig.engine.sync_manager().start_auto_sync();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rig.server.requests().is_empty());
    rig.monitor.set_online(true);
    assert!(
        rig.engine
            .wait_until_drained(Duration::from_secs(5))
            .await
            .unwrap()
    );
    rig.engine.sync_manager().stop_auto_sync();
}

#[tokio::test(start_paused = true)]
async fn auto_sync_polls_and_reuses_a_fresh_online_confirmation() {
    let mut options = options();
    options.connectivity_check_interval = Some(Duration::from_secs(1));
    options.connectivity_probe_min_interval_while_online = Duration::from_secs(60);
    let rig = rig_with(options, true).await;
    rig.engine.sync_manager().start_auto_sync();
    tokio::time::sleep(Duration::from_millis(10)).await;
    for id in 0..5 {
        rig.engine
            .save("tasks", &id.to_string(), json!({}), SyncOperation::Create)
            .await
            .unwrap();
    }
    // A poll finds the items and sends them.
    assert!(
        rig.engine
            .wait_until_drained(Duration::from_secs(3))
            .await
            .unwrap()
    );
    let probes = rig.monitor.probes();
    // Five items, but not a full probe before each one.
    assert!(probes < 5 + 3, "probed {probes} times");
    rig.engine.close().await;
}

#[tokio::test(start_paused = true)]
async fn watch_streams_start_with_the_current_value() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    let mut records = rig.engine.watch_records("tasks").unwrap();
    let mut queue = rig.engine.watch_queue();
    let mut status_stream = rig.engine.watch_item_status("tasks", "1").unwrap();
    let mut online = rig.engine.watch_connectivity();
    assert_eq!(records.next().await.unwrap().len(), 1);
    assert_eq!(queue.next().await.unwrap().len(), 1);
    assert_eq!(status_stream.next().await.unwrap(), Some(SyncStatus::Pending));
    assert_eq!(online.next().await, Some(true));

    rig.engine
        .save("tasks", "2", json!({"v": 2}), SyncOperation::Create)
        .await
        .unwrap();
    assert_eq!(records.next().await.unwrap().len(), 2);
    rig.engine.sync_manager().sync_now().await.unwrap();
    let mut last = None;
    while last != Some(Some(SyncStatus::Synced)) {
        last = Some(status_stream.next().await.unwrap());
    }
    rig.monitor.set_online(false);
    assert_eq!(online.next().await, Some(false));
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Task {
    id: String,
    title: String,
    done: bool,
}

#[tokio::test(start_paused = true)]
async fn typed_helpers_round_trip() {
    let rig = rig().await;
    let task = Task {
        id: "t1".into(),
        title: "Buy milk".into(),
        done: false,
    };
    rig.engine
        .save_as("tasks", &task.id, &task, SyncOperation::Create)
        .await
        .unwrap();
    assert_eq!(
        rig.engine.get_record_as::<Task>("tasks", "t1").await.unwrap(),
        Some(task)
    );
    assert_eq!(rig.engine.get_records_as::<Task>("tasks").await.unwrap().len(), 1);
    let error = rig
        .engine
        .save_as("tasks", "x", &42, SyncOperation::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SyncError::Invalid(ValidationError::PayloadNotObject { found: "a number" })
        ),
        "{error:?}"
    );
}

/// Requests out at once, overall and per record, and the payloads each
/// record's writes carried, in the order they reached the server.
#[derive(Debug, Default)]
struct InFlight {
    now: usize,
    max: usize,
    per_record: HashMap<RecordKey, usize>,
    max_per_record: usize,
    sent: HashMap<RecordKey, Vec<i64>>,
}

/// The fake server behind an adapter that measures [`InFlight`].
#[derive(Clone)]
struct Measured {
    server: FakeAdapter,
    in_flight: Arc<Mutex<InFlight>>,
}

/// One request out; dropping it (answered or cancelled) takes it back.
struct Out {
    in_flight: Arc<Mutex<InFlight>>,
    key: RecordKey,
}

impl Measured {
    fn start(&self, entity: &EntityName, id: &RecordId, data: Option<&JsonObject>) -> Out {
        let key = RecordKey::new(entity.clone(), id.clone());
        let mut in_flight = self.in_flight.lock().unwrap();
        in_flight.now += 1;
        in_flight.max = in_flight.max.max(in_flight.now);
        let of_record = in_flight.per_record.entry(key.clone()).or_insert(0);
        *of_record += 1;
        let of_record = *of_record;
        in_flight.max_per_record = in_flight.max_per_record.max(of_record);
        if let Some(version) = data.and_then(|data| data["v"].as_i64()) {
            in_flight.sent.entry(key.clone()).or_default().push(version);
        }
        Out {
            in_flight: Arc::clone(&self.in_flight),
            key,
        }
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock().unwrap();
        in_flight.now -= 1;
        *in_flight.per_record.get_mut(&self.key).unwrap() -= 1;
    }
}

#[async_trait::async_trait]
impl SyncApiAdapter for Measured {
    async fn create(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        let _out = self.start(entity, id, Some(data));
        self.server.create(entity, id, data, operation_id).await
    }

    async fn update(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        let _out = self.start(entity, id, Some(data));
        self.server.update(entity, id, data, operation_id).await
    }

    async fn delete(
        &self,
        entity: &EntityName,
        id: &RecordId,
        operation_id: &OperationId,
    ) -> Result<(), ApiError> {
        let _out = self.start(entity, id, None);
        self.server.delete(entity, id, operation_id).await
    }

    async fn fetch_remote(&self, entity: &EntityName, id: &RecordId) -> Result<Option<JsonObject>, ApiError> {
        let _out = self.start(entity, id, None);
        self.server.fetch_remote(entity, id).await
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_sends_several_records_and_keeps_each_records_order() {
    const RECORDS: i64 = 20;
    const EDITS: i64 = 4;
    let mut options = options();
    options.concurrency = 4;
    let server = FakeAdapter::new();
    server.set_latency(Duration::from_millis(100));
    let adapter = Measured {
        server: server.clone(),
        in_flight: Arc::default(),
    };
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(adapter.clone()),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(options)
    .clock(Arc::new(TokioClock::new()))
    .build()
    .await
    .unwrap();
    for id in 0..RECORDS {
        engine
            .save("tasks", &id.to_string(), json!({"v": 0}), SyncOperation::Create)
            .await
            .unwrap();
    }
    // Each record is edited while the drain runs, so records have newer
    // versions waiting while older ones are out.
    let run = tokio::spawn({
        let manager = engine.sync_manager();
        async move { manager.sync_now().await }
    });
    for edit in 1..=EDITS {
        tokio::time::sleep(Duration::from_millis(70)).await;
        for id in 0..RECORDS {
            engine
                .save(
                    "tasks",
                    &id.to_string(),
                    json!({"v": edit}),
                    SyncOperation::Update,
                )
                .await
                .unwrap();
        }
    }
    run.await.unwrap().unwrap();
    let mut passes = 0;
    while engine.sync_manager().sync_now().await.unwrap().still_pending > 0 {
        passes += 1;
        assert!(passes < 10, "the queue never drained");
    }

    assert!(
        engine
            .queue()
            .await
            .unwrap()
            .iter()
            .all(|i| i.status == SyncStatus::Synced)
    );
    let in_flight = adapter.in_flight.lock().unwrap();
    assert_eq!(
        in_flight.max, 4,
        "as many requests out at once as the concurrency allows"
    );
    assert_eq!(in_flight.max_per_record, 1, "one request per record at a time");
    for id in 0..RECORDS {
        let key = key("tasks", &id.to_string());
        let sent = &in_flight.sent[&key];
        assert!(
            sent.windows(2).all(|pair| pair[0] <= pair[1]),
            "record {id}: an older version went out after a newer one: {sent:?}"
        );
        assert_eq!(sent.last(), Some(&EDITS), "record {id}: {sent:?}");
        assert_eq!(server.records()[&key]["v"], EDITS, "record {id}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_background_scheduler_runs_one_pass_and_close_stops_everything() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "1", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    let report = BackgroundSyncScheduler::new(rig.engine.sync_manager())
        .execute()
        .await
        .unwrap();
    assert_eq!((report.sent, report.still_pending), (1, 0));
    rig.engine.sync_manager().start_auto_sync();
    rig.engine.close().await;
    let save = rig
        .engine
        .save("tasks", "2", json!({}), SyncOperation::Create)
        .await
        .unwrap_err();
    assert!(matches!(save, SyncError::Closed), "{save:?}");
    let sync = rig.engine.sync_manager().sync_now().await.unwrap_err();
    assert!(matches!(sync, SyncError::Closed), "{sync:?}");
}

#[tokio::test(start_paused = true)]
async fn zero_retries_or_concurrency_are_rejected() {
    let mut bad = options();
    bad.max_retries = 0;
    let store: Arc<dyn SyncStore> = Arc::new(MemoryStore::new());
    let build = |options| {
        OfflineSyncEngine::builder(
            store.clone(),
            Arc::new(FakeAdapter::new()),
            Arc::new(FakeMonitor::new(true)),
        )
        .options(options)
        .clock(Arc::new(TokioClock::new()))
        .build()
    };
    let error = build(bad).await.unwrap_err();
    assert!(
        matches!(error, SyncError::Invalid(ValidationError::ZeroMaxRetries)),
        "{error:?}"
    );
    let mut bad = options();
    bad.concurrency = 0;
    let error = build(bad).await.unwrap_err();
    assert!(
        matches!(error, SyncError::Invalid(ValidationError::ZeroConcurrency)),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_auto_sync() {
    let mut options = options();
    options.connectivity_check_interval = Some(Duration::from_secs(1));
    options.connectivity_probe_min_interval_while_online = Duration::ZERO;
    let rig = rig_with(options, true).await;
    let clone = rig.engine.clone();
    rig.engine.sync_manager().start_auto_sync();
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(clone);
    assert!(rig.monitor.probes() > 0, "auto-sync was polling");
    let Rig { engine, monitor, .. } = rig;
    drop(engine);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let after_drop = monitor.probes();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        monitor.probes(),
        after_drop,
        "probing continued after the engine was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn the_servers_answer_replaces_the_document_unless_a_newer_change_waits() {
    let rig = rig().await;
    rig.server.stamp_records("serverRevision", json!(7));
    rig.engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    rig.engine.sync_manager().sync_now().await.unwrap();
    let record = rig.engine.get_record("tasks", "1").await.unwrap().unwrap();
    assert_eq!(
        (record.data["v"].clone(), record.data["serverRevision"].clone()),
        (json!(1), json!(7))
    );

    // A newer local change saved while the update is in flight survives
    // the server's answer to the older one.
    rig.server.set_latency(Duration::from_millis(100));
    rig.engine
        .save("tasks", "1", json!({"v": 2}), SyncOperation::Update)
        .await
        .unwrap();
    let manager = rig.engine.sync_manager();
    let run = tokio::spawn(async move { manager.sync_now().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    rig.engine
        .save("tasks", "1", json!({"v": 3}), SyncOperation::Update)
        .await
        .unwrap();
    run.await.unwrap().unwrap();
    let record = rig.engine.get_record("tasks", "1").await.unwrap().unwrap();
    assert_eq!(record.data["v"], 3, "the newer change was kept");
    rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(rig.server.records()[&key("tasks", "1")]["v"], 3, "and then sent");
}

#[tokio::test(start_paused = true)]
async fn a_sync_now_whose_caller_stops_waiting_still_finishes_and_records_its_items() {
    let rig = rig().await;
    rig.server.set_latency(Duration::from_secs(10));
    rig.engine
        .save("tasks", "1", json!({"v": 1}), SyncOperation::Create)
        .await
        .unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(1), rig.engine.sync_manager().sync_now()).await;
    assert!(cancelled.is_err(), "the caller stopped waiting");
    let claimed = rig.engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert!(claimed.is_in_flight(), "the run goes on without its caller");

    // The next call shares the run in progress (and one more pass).
    rig.server.set_latency(Duration::ZERO);
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(report.sent, 1);
    assert_eq!(status(&rig, "tasks", "1").await, Some(SyncStatus::Synced));
    // Nothing was abandoned, so nothing needed a check or a second send.
    assert_eq!(rig.server.methods_for(&key("tasks", "1")), ["POST"]);
}

#[tokio::test(start_paused = true)]
async fn saving_often_does_not_defeat_the_backoff_of_a_failing_item() {
    let mut options = options();
    options.sync_after_save = true;
    let rig = rig_with(options, true).await;
    for _ in 0..10 {
        rig.server.fail_next(
            Some(key("tasks", "bad")),
            Fault::Fail(ErrorKind::Transient, Some(503)),
        );
    }
    rig.engine
        .save("tasks", "bad", json!({}), SyncOperation::Create)
        .await
        .unwrap();
    // Save other records every 200 ms, for 1.5 s: less than the 2 s backoff.
    for n in 0..8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rig.engine
            .save("tasks", &n.to_string(), json!({}), SyncOperation::Create)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let attempts = rig.server.methods_for(&key("tasks", "bad")).len();
    assert_eq!(
        attempts, 1,
        "the failing item was retried before its backoff ended"
    );
    assert_eq!(
        rig.server.records().len(),
        8,
        "the healthy saves were sent meanwhile"
    );
}

#[tokio::test(start_paused = true)]
async fn watch_streams_end_when_the_engine_closes() {
    let rig = rig().await;
    let mut queue = rig.engine.watch_queue();
    let mut online = rig.engine.watch_connectivity();
    assert!(queue.next().await.is_some());
    assert!(online.next().await.is_some());
    rig.engine.close().await;
    let guard = Duration::from_secs(5);
    assert_eq!(tokio::time::timeout(guard, queue.next()).await.unwrap(), None);
    assert_eq!(tokio::time::timeout(guard, online.next()).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_second_engine_over_the_same_store_is_refused_while_the_first_lives() {
    let rig = rig().await;
    rig.engine
        .save("tasks", "1", json!({"id": "1"}), SyncOperation::Create)
        .await
        .unwrap();
    // The first engine has the item in flight; a second engine building
    // over the same store would recover (release) it and send it again.
    let ticket = rig
        .store
        .claim_ready(sync_core::Timestamp::now(), 1)
        .await
        .unwrap()
        .remove(0);
    let refused = another_engine_over(&rig.store).await.unwrap_err();
    assert!(matches!(refused, SyncError::StoreInUse), "{refused:?}");
    assert!(refused.to_string().contains("share that engine"), "{refused}");
    let item = rig.store.queue_item(&ticket.key).await.unwrap().unwrap();
    assert_eq!(
        item.status,
        SyncStatus::Syncing,
        "the refused build changed nothing"
    );

    // Once the first engine is gone, the store may be driven again.
    let Rig { engine, store, .. } = rig;
    drop(engine);
    let rebuilt = another_engine_over(&store).await.unwrap();
    assert_eq!(
        store.queue_item(&ticket.key).await.unwrap().unwrap().status,
        SyncStatus::Pending,
        "the new engine recovered the abandoned attempt"
    );
    rebuilt.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_long_queue_is_watched_at_a_cost_per_change_that_does_not_grow_and_ends_current() {
    const ITEMS: usize = 2048;
    let rig = rig().await;
    for id in 0..ITEMS {
        rig.engine
            .save("tasks", &id.to_string(), json!({"v": 0}), SyncOperation::Create)
            .await
            .unwrap();
    }
    let mut queue = rig.engine.watch_queue();
    assert_eq!(queue.next().await.unwrap().len(), ITEMS);
    let watcher = tokio::spawn(async move {
        let mut values = 0;
        loop {
            let value = tokio::time::timeout(Duration::from_secs(5), queue.next())
                .await
                .expect("the latest state must arrive after a pause")
                .unwrap();
            values += 1;
            if value.iter().all(|item| item.payload["v"] == 1) {
                return values;
            }
        }
    });
    // One change at a time, each seen by the watcher on its own.
    for id in 0..ITEMS {
        rig.engine
            .save("tasks", &id.to_string(), json!({"v": 1}), SyncOperation::Update)
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    let values = watcher.await.unwrap();
    // One value per 1/8 of the length in changes: about 8, however long
    // the queue; one value per change would be 2048.
    assert!(values <= 8 + 2, "{values} values for {ITEMS} changes");
}

#[tokio::test(start_paused = true)]
async fn a_held_back_change_arrives_within_50_ms_while_unrelated_events_keep_coming() {
    let rig = rig().await;
    for id in 0..64 {
        rig.engine
            .save("tasks", &id.to_string(), json!({"v": 0}), SyncOperation::Create)
            .await
            .unwrap();
    }
    let mut tasks = rig.engine.watch_records("tasks").unwrap();
    assert_eq!(tasks.next().await.unwrap().len(), 64);
    // One change to a 64-record list is held back (a value per 8 changes)…
    rig.engine
        .save("tasks", "0", json!({"v": 1}), SyncOperation::Update)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let busy = async {
        // …while another entity keeps the store busy, an event every 10 ms.
        for n in 0..100 {
            rig.engine
                .save("notes", &n.to_string(), json!({"n": n}), SyncOperation::Create)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let value = tokio::select! {
        value = tasks.next() => value.unwrap(),
        () = busy => panic!("the held-back change never arrived while the store stayed busy"),
    };
    assert!(
        started.elapsed() <= Duration::from_millis(60),
        "{:?}",
        started.elapsed()
    );
    let first = value.iter().find(|record| record.id.as_str() == "0").unwrap();
    assert_eq!(first.data["v"], 1);
}

#[tokio::test(start_paused = true)]
async fn the_store_stays_leased_while_a_sync_manager_of_the_engine_lives() {
    let rig = rig().await;
    let manager = rig.engine.sync_manager();
    let Rig { engine, store, .. } = rig;
    drop(engine);
    // The manager could still be running a pass with items in flight.
    assert!(matches!(
        another_engine_over(&store).await,
        Err(SyncError::StoreInUse)
    ));
    drop(manager);
    another_engine_over(&store).await.unwrap().close().await;
}

#[tokio::test(start_paused = true)]
async fn a_list_that_keeps_changing_still_gets_a_value_every_second() {
    let rig = rig().await;
    for id in 0..800 {
        rig.engine
            .save("tasks", &id.to_string(), json!({"v": 0}), SyncOperation::Create)
            .await
            .unwrap();
    }
    let mut tasks = rig.engine.watch_records("tasks").unwrap();
    assert_eq!(tasks.next().await.unwrap().len(), 800);
    let started = tokio::time::Instant::now();
    let busy = async {
        // A change every 20 ms: never quiet for 50 ms, and a value per 100
        // changes (2 s) by the length rule alone.
        for n in 0..200 {
            rig.engine
                .save(
                    "tasks",
                    &(n % 800).to_string(),
                    json!({"v": n + 1}),
                    SyncOperation::Update,
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        value = tasks.next() => assert!(value.is_some()),
        () = busy => panic!("no value while the list kept changing"),
    }
    let waited = started.elapsed();
    assert!(waited <= Duration::from_millis(1050), "{waited:?}");
}

/// Keys of the queue items the store reports claimed (`syncing`) from now
/// on, collected in a task of their own until it is aborted.
fn watch_claims(store: &MemoryStore) -> (Arc<Mutex<BTreeSet<RecordKey>>>, tokio::task::JoinHandle<()>) {
    let claimed = Arc::new(Mutex::new(BTreeSet::new()));
    let mut events = store.subscribe();
    let task = tokio::spawn({
        let claimed = Arc::clone(&claimed);
        async move {
            while let Some(event) = events.next().await {
                match event {
                    StoreEvent::QueueItem {
                        key,
                        item: Some(item),
                    } if item.status == SyncStatus::Syncing => {
                        claimed.lock().unwrap().insert(key);
                    }
                    StoreEvent::Lagged => panic!("the claims watcher fell behind"),
                    _ => {}
                }
            }
        }
    });
    (claimed, task)
}

/// Whether an item is back as it was before any attempt: pending, no
/// attempt used, nothing uncertain, nothing out.
fn untouched(item: &SyncQueueItem) -> bool {
    item.status == SyncStatus::Pending
        && item.retry_count == 0
        && !item.possibly_applied
        && item.last_error.is_none()
        && item.in_flight.is_none()
}

/// The link drops mid-drain, with items claimed (the rest of the page on
/// the wire and the page claimed ahead) but not sent: each comes back
/// untouched, and the next pass sends every record exactly once. Nothing
/// here depends on the page sizes: every item is either sent once and
/// synced, or untouched and never sent.
#[tokio::test(start_paused = true)]
async fn a_drain_cut_by_the_link_returns_the_page_claimed_ahead_unsent_and_resumes_exactly_once() {
    const ITEMS: usize = 100;
    let mut options = options();
    options.connectivity_probe_min_interval_while_online = Duration::ZERO;
    let rig = rig_with(options, true).await;
    for id in 0..ITEMS {
        rig.engine
            .save("tasks", &id.to_string(), json!({"id": id}), SyncOperation::Create)
            .await
            .unwrap();
    }
    let (claimed, watcher) = watch_claims(&rig.store);
    // The pass probes once, then before each request: the link is gone at
    // the 30th probe, mid-drain.
    rig.monitor.go_offline_after(30);
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    watcher.abort();
    assert!(report.offline, "{report:?}");
    let sent_before = report.sent as usize;
    assert!(0 < sent_before && sent_before < ITEMS, "{report:?}");
    let queue = rig.engine.queue().await.unwrap();
    let mut returned_unsent = 0;
    for item in &queue {
        let methods = rig.server.methods_for(&item.key());
        if item.status == SyncStatus::Synced {
            assert_eq!(methods, ["POST"], "sent once: {item:#?}");
        } else {
            assert!(
                untouched(item),
                "an unsent item must come back as it was: {item:#?}"
            );
            assert!(methods.is_empty(), "{methods:?}: {item:#?}");
            if claimed.lock().unwrap().contains(&item.key()) {
                returned_unsent += 1;
            }
        }
    }
    let synced = queue
        .iter()
        .filter(|item| item.status == SyncStatus::Synced)
        .count();
    assert_eq!(synced, sent_before, "{report:?}");
    assert!(
        returned_unsent > 0,
        "the cut left no claimed item unsent: nothing was claimed ahead"
    );

    rig.monitor.go_offline_after(1_000_000);
    rig.monitor.set_online(true);
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(
        (report.sent as usize, report.still_pending),
        (ITEMS - sent_before, 0),
        "{report:?}"
    );
    for id in 0..ITEMS {
        assert_eq!(
            rig.server.methods_for(&key("tasks", &id.to_string())),
            ["POST"],
            "record {id}"
        );
    }
}

/// The store fails to record a page's outcomes while the next page is on
/// the wire and a third is claimed ahead: the outcomes that can be
/// recorded are (the page on the wire), the page whose recording failed
/// stays in flight until the next pass reclaims it, and the page claimed
/// ahead comes back untouched. Every item is in exactly one of those
/// states, whatever the page sizes, and the next pass posts nothing twice.
#[tokio::test(start_paused = true)]
async fn a_store_failure_mid_drain_keeps_the_outcomes_it_can_and_loses_or_duplicates_nothing() {
    const ITEMS: usize = 100;
    let rig = rig().await;
    for id in 0..ITEMS {
        rig.engine
            .save("tasks", &id.to_string(), json!({"id": id}), SyncOperation::Create)
            .await
            .unwrap();
    }
    // The first recording of outcomes fails.
    rig.store.fail_next_finishes(1);
    let error = rig.engine.sync_manager().sync_now().await.unwrap_err();
    assert!(matches!(error, SyncError::Store(_)), "{error:?}");
    let queue = rig.engine.queue().await.unwrap();
    let (mut synced, mut in_flight, mut unsent) = (0, 0, 0);
    for item in &queue {
        let methods = rig.server.methods_for(&item.key());
        if item.status == SyncStatus::Synced && item.in_flight.is_none() {
            synced += 1;
            assert_eq!(methods, ["POST"], "recorded after the failure: {item:#?}");
        } else if item.in_flight.is_some() {
            in_flight += 1;
            assert_eq!(methods, ["POST"], "sent, its outcome not recorded: {item:#?}");
        } else {
            unsent += 1;
            assert!(
                untouched(item),
                "an unsent item must come back as it was: {item:#?}"
            );
            assert!(methods.is_empty(), "{methods:?}: {item:#?}");
        }
    }
    assert!(
        synced > 0,
        "the outcomes of the page on the wire were dropped: {queue:#?}"
    );
    assert!(
        in_flight > 0,
        "the failed recording's page must wait for the next pass: {queue:#?}"
    );
    assert!(
        unsent > 0,
        "the page claimed ahead must come back unsent: {queue:#?}"
    );
    assert_eq!(synced + in_flight + unsent, ITEMS);

    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(report.still_pending, 0, "{report:?}");
    for id in 0..ITEMS {
        let methods = rig.server.methods_for(&key("tasks", &id.to_string()));
        assert_eq!(
            methods.iter().filter(|method| **method == "POST").count(),
            1,
            "record {id}: {methods:?}"
        );
    }
}
