//! Observing the engine (issue 15): the event stream of attempts (start,
//! outcome with kind, HTTP status and duration), a slow subscriber told
//! what it missed, the stream's end at close; `stats()`; waiting for one
//! saved change to reach the server or fail for good.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sync_core::{ErrorKind, QueueCounts, RecordKey, SyncOperation};
use sync_engine::{
    AttemptResult, ChangeOutcome, OfflineSyncEngine, OfflineSyncOptions, SyncEvent, TokioClock,
};
use sync_testkit::{FakeAdapter, FakeMonitor, Fault, MemoryStore};
use tokio_stream::StreamExt;

async fn engine() -> (OfflineSyncEngine, FakeAdapter) {
    engine_trying(3).await
}

/// An engine whose runs try each item up to `tries` times.
async fn engine_trying(tries: u32) -> (OfflineSyncEngine, FakeAdapter) {
    let server = FakeAdapter::new();
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(
        OfflineSyncOptions::default()
            .sync_after_save(false)
            .connectivity_check_interval(None)
            .retry_base_delay(Duration::from_secs(30))
            .max_retries(tries),
    )
    .clock(Arc::new(TokioClock::new()))
    .build()
    .await
    .unwrap();
    (engine, server)
}

fn key(id: &str) -> RecordKey {
    RecordKey::new("tasks".parse().unwrap(), id.parse().unwrap())
}

async fn save(engine: &OfflineSyncEngine, id: &str) -> sync_core::SavedChange {
    engine
        .save("tasks", id, json!({"id": id}), SyncOperation::Create)
        .await
        .unwrap()
}

/// The attempt outcomes among the next events, until `count` are seen.
async fn outcomes(
    events: &mut sync_core::BoxStream<SyncEvent>,
    count: usize,
) -> (Vec<RecordKey>, Vec<sync_engine::AttemptEvent>) {
    let mut sending = Vec::new();
    let mut attempted = Vec::new();
    while attempted.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("an event")
            .expect("the stream goes on");
        match event {
            SyncEvent::Sending { key, .. } => sending.push(key),
            SyncEvent::Attempted(attempt) => attempted.push(attempt),
            other => panic!("unexpected {other:?}"),
        }
    }
    (sending, attempted)
}

#[tokio::test(start_paused = true)]
async fn each_attempt_is_an_event_with_its_outcome_status_and_duration() {
    let (engine, server) = engine().await;
    let mut events = engine.events();
    server.set_latency(Duration::from_millis(250));
    save(&engine, "ok").await;
    save(&engine, "refused").await;
    save(&engine, "busy").await;
    server.fail_next(Some(key("refused")), Fault::Fail(ErrorKind::Permanent, Some(422)));
    server.fail_next(Some(key("busy")), Fault::Fail(ErrorKind::Transient, Some(503)));
    engine.sync_manager().sync_now().await.unwrap();
    let (sending, attempted) = outcomes(&mut events, 3).await;
    assert_eq!(sending.len(), 3, "each attempt announced as it starts");
    let result = |id: &str| {
        attempted
            .iter()
            .find(|attempt| attempt.key == key(id))
            .unwrap_or_else(|| panic!("no outcome for {id}: {attempted:?}"))
            .clone()
    };
    let ok = result("ok");
    assert_eq!(ok.result, AttemptResult::Applied);
    assert!(ok.current);
    assert_eq!(ok.operation, SyncOperation::Create);
    assert!(ok.duration >= Duration::from_millis(250), "{:?}", ok.duration);
    assert!(matches!(
        result("refused").result,
        AttemptResult::Parked {
            kind: ErrorKind::Permanent,
            http_status: Some(422)
        }
    ));
    assert!(matches!(
        result("busy").result,
        AttemptResult::Failed {
            kind: ErrorKind::Transient,
            http_status: Some(503)
        }
    ));
    engine.close().await;
    let rest = tokio::time::timeout(Duration::from_secs(5), events.collect::<Vec<_>>()).await;
    assert!(rest.is_ok(), "the stream ends when the engine closes");
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_falls_behind_is_told_how_many_events_it_missed() {
    let (engine, _server) = engine().await;
    let mut events = engine.events();
    for n in 0..700 {
        save(&engine, &format!("r{n}")).await;
    }
    engine.sync_manager().sync_now().await.unwrap();
    // 1400 events (a start and an outcome each); 1024 are kept.
    match events.next().await.unwrap() {
        SyncEvent::Lagged { missed } => assert_eq!(missed, 1400 - 1024),
        other => panic!("expected Lagged first, got {other:?}"),
    }
    let mut rest = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), events.next()).await {
        rest += 1;
    }
    assert_eq!(rest, 1024, "then the events it could keep");
    engine.close().await;
}

#[tokio::test(start_paused = true)]
async fn stats_count_the_queue_per_status_and_entity() {
    // One try per run: the transient failure stays failed.
    let (engine, server) = engine_trying(1).await;
    save(&engine, "a").await;
    save(&engine, "b").await;
    engine
        .save("notes", "n", json!({"id": "n"}), SyncOperation::Create)
        .await
        .unwrap();
    server.fail_next(Some(key("b")), Fault::Fail(ErrorKind::Permanent, Some(422)));
    server.fail_next(
        Some(RecordKey::new("notes".parse().unwrap(), "n".parse().unwrap())),
        Fault::Fail(ErrorKind::Transient, Some(503)),
    );
    engine.sync_manager().sync_now().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    save(&engine, "c").await;
    let stats = engine.stats().await.unwrap();
    assert_eq!(stats.parked, 1);
    let counts = |pending, synced, failed| QueueCounts {
        pending,
        syncing: 0,
        synced,
        failed,
    };
    assert_eq!(stats.total, counts(1, 1, 2));
    assert_eq!(stats.per_entity[&"tasks".parse().unwrap()], counts(1, 1, 1));
    assert_eq!(stats.per_entity[&"notes".parse().unwrap()], counts(0, 0, 1));
    let age = stats.oldest_unsent_age.unwrap();
    assert!(
        age >= Duration::from_secs(5),
        "the oldest unsent change is b's or n's: {age:?}"
    );
    assert!(stats.cursors.is_empty(), "no pulled entity");
    engine.close().await;
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_save_ends_when_the_server_confirms_it() {
    let (engine, server) = engine().await;
    server.set_latency(Duration::from_millis(100));
    let saved = save(&engine, "1").await;
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.wait_for_sync(&saved).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "nothing was sent yet");
    engine.sync_manager().sync_now().await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.unwrap(), ChangeOutcome::Synced);
    engine.close().await;
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_refused_save_ends_with_its_parked_error() {
    let (engine, server) = engine().await;
    let first = save(&engine, "1").await;
    // A later edit carries the first save: its fate is the first's.
    let later = engine
        .save("tasks", "1", json!({"id": "1", "v": 2}), SyncOperation::Update)
        .await
        .unwrap();
    server.fail_next(Some(key("1")), Fault::Fail(ErrorKind::Permanent, Some(422)));
    engine.sync_manager().sync_now().await.unwrap();
    for saved in [&first, &later] {
        match engine.wait_for_sync(saved).await.unwrap() {
            ChangeOutcome::Parked { http_status, error } => {
                assert_eq!(http_status, Some(422));
                assert!(error.is_some());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        engine.discard("tasks", "1", false).await.unwrap(),
        sync_core::DiscardOutcome::Dropped
    );
    assert_eq!(
        engine.wait_for_sync(&later).await.unwrap(),
        ChangeOutcome::LeftQueue
    );
    // A create deleted before it was sent leaves nothing to wait for.
    save(&engine, "2").await;
    let deleted = engine
        .save("tasks", "2", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    assert_eq!(
        engine.wait_for_sync(&deleted).await.unwrap(),
        ChangeOutcome::NothingToSend
    );
    engine.close().await;
}

/// Closing waits for the attempts out to record their outcomes: their
/// events reach the subscriber before its stream ends.
#[tokio::test(start_paused = true)]
async fn the_outcomes_close_waits_for_are_events_before_the_stream_ends() {
    let (engine, server) = engine().await;
    let events = engine.events();
    server.set_latency(Duration::from_millis(500));
    save(&engine, "out").await;
    let manager = engine.sync_manager();
    let run = tokio::spawn(async move { manager.sync_now().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine.close().await;
    let all: Vec<SyncEvent> = tokio::time::timeout(Duration::from_secs(30), events.collect())
        .await
        .expect("the stream ends after close");
    assert!(
        all.iter().any(|event| matches!(
            event,
            SyncEvent::Attempted(attempt) if attempt.key == key("out") && attempt.result == AttemptResult::Applied
        )),
        "the outcome close waited for is announced: {all:?}"
    );
    let _ = run.await;
    let late = engine.events();
    assert_eq!(
        late.collect::<Vec<_>>().await,
        Vec::new(),
        "a closed engine's stream is empty"
    );
}

/// The item a save went into is cleared and the record saved again before
/// the wait looks: the new item (its versions start over) is another
/// item, and the wait ends instead of hanging. Closing the engine ends a
/// wait too.
#[tokio::test(start_paused = true)]
async fn a_wait_ends_when_its_item_is_replaced_or_the_engine_closes() {
    let (engine, _server) = engine().await;
    let first = save(&engine, "1").await;
    for n in 2..5 {
        engine
            .save("tasks", "1", json!({"id": "1", "v": n}), SyncOperation::Update)
            .await
            .unwrap();
    }
    engine.sync_manager().sync_now().await.unwrap();
    engine.clear_synced().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    save(&engine, "1").await;
    let waited = tokio::time::timeout(Duration::from_secs(60), engine.wait_for_sync(&first)).await;
    assert_eq!(waited.expect("no hang").unwrap(), ChangeOutcome::LeftQueue);

    let pending = save(&engine, "2").await;
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.wait_for_sync(&pending).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.close().await;
    let ended = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ended, Err(sync_engine::SyncError::Closed)), "{ended:?}");
}
