//! `discard` through the engine (issue 15): a parked change given up,
//! with and without revert, seen by watch streams; an attempt in flight
//! refused with nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sync_core::{DiscardOutcome, ErrorKind, StoreErrorKind, SyncOperation, SyncStatus};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions, SyncError, TokioClock};
use sync_testkit::{FakeAdapter, FakeMonitor, Fault, MemoryStore};
use tokio_stream::StreamExt;

async fn engine() -> (OfflineSyncEngine, FakeAdapter) {
    let server = FakeAdapter::new();
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(
        OfflineSyncOptions::default()
            .sync_after_save(false)
            .connectivity_check_interval(None),
    )
    .clock(Arc::new(TokioClock::new()))
    .build()
    .await
    .unwrap();
    (engine, server)
}

async fn document(engine: &OfflineSyncEngine, id: &str) -> Option<Value> {
    engine
        .get_record("tasks", id)
        .await
        .unwrap()
        .map(|record| Value::Object(record.data))
}

/// A synced task, then an edit the server refuses for good (422): parked.
async fn parked_edit(engine: &OfflineSyncEngine, server: &FakeAdapter) {
    engine
        .save(
            "tasks",
            "1",
            json!({"id": "1", "title": "first"}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    engine
        .save(
            "tasks",
            "1",
            json!({"id": "1", "title": "refused"}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    server.fail_next(None, Fault::Fail(ErrorKind::Permanent, Some(422)));
    engine.sync_manager().sync_now().await.unwrap();
    let item = engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert!(item.is_parked(), "{item:?}");
}

#[tokio::test(start_paused = true)]
async fn a_parked_edit_discarded_with_revert_shows_the_servers_copy() {
    let (engine, server) = engine().await;
    parked_edit(&engine, &server).await;
    let mut records = engine.watch_records("tasks").unwrap();
    let mut status = engine.watch_item_status("tasks", "1").unwrap();
    assert_eq!(status.next().await, Some(Some(SyncStatus::Failed)));
    let _current = records.next().await;

    let outcome = engine.discard("tasks", "1", true).await.unwrap();
    assert_eq!(outcome, DiscardOutcome::Reverted);
    assert_eq!(
        document(&engine, "1").await,
        Some(json!({"id": "1", "title": "first"}))
    );
    assert!(engine.queue().await.unwrap().is_empty());
    let next = tokio::time::timeout(Duration::from_secs(5), records.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next[0].data["title"], "first", "watchers see the revert");
    let next = tokio::time::timeout(Duration::from_secs(5), status.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next, None, "the item is gone");
    // Nothing is sent for it any more.
    let requests = server.requests().len();
    engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(server.requests().len(), requests);
    engine.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_edit_discarded_without_revert_keeps_the_document() {
    let (engine, server) = engine().await;
    parked_edit(&engine, &server).await;
    assert_eq!(
        engine.discard("tasks", "1", false).await.unwrap(),
        DiscardOutcome::Dropped
    );
    assert_eq!(document(&engine, "1").await.unwrap()["title"], "refused");
    assert_eq!(
        engine.discard("tasks", "1", false).await.unwrap(),
        DiscardOutcome::NothingQueued
    );
    let bad = engine.discard("tasks", "", false).await.unwrap_err();
    assert!(matches!(bad, SyncError::Invalid(_)), "{bad:?}");
    engine.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_attempt_in_flight_is_not_discarded() {
    let (engine, server) = engine().await;
    server.set_latency(Duration::from_secs(10));
    engine
        .save("tasks", "1", json!({"id": "1"}), SyncOperation::Create)
        .await
        .unwrap();
    let manager = engine.sync_manager();
    let run = tokio::spawn(async move { manager.sync_now().await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let error = engine.discard("tasks", "1", true).await.unwrap_err();
    match &error {
        SyncError::Store(store) => assert_eq!(store.kind(), StoreErrorKind::InFlight),
        other => panic!("{other:?}"),
    }
    assert!(document(&engine, "1").await.is_some(), "nothing changed");
    run.await.unwrap().unwrap();
    assert_eq!(
        engine.queue_item("tasks", "1").await.unwrap().unwrap().status,
        SyncStatus::Synced
    );
    engine.close().await;
}
