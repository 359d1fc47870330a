//! End to end through the facade's types and the in-memory store: changes
//! saved offline are queued, coalesced, claimed, and reconciled.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use serde_json::json;
use sync_facade::implement::{AttemptOutcome, FinishedAttempt, LocalChange, SendPlan, StoreEvent, SyncStore};
use sync_facade::prelude::*;
use sync_facade::{RecordKey, Timestamp};
use sync_testkit::MemoryStore;
use tokio_stream::StreamExt;

fn key(entity: &str, id: &str) -> RecordKey {
    RecordKey::new(entity.parse().unwrap(), id.parse().unwrap())
}

#[tokio::test]
async fn offline_changes_drain_to_the_last_local_state() {
    let store = MemoryStore::new();
    let mut events = store.subscribe();
    let t = |ms| Timestamp::from_millis(ms);

    // Offline: three entities, an edit and a delete before anything is sent.
    let changes = vec![
        LocalChange::new("tasks", "1", json!({"title": "buy milk"}), SyncOperation::Create).unwrap(),
        LocalChange::new(
            "notes",
            "1",
            json!({"text": "same id, other entity"}),
            SyncOperation::Create,
        )
        .unwrap(),
        LocalChange::new("customers", "c9", json!({"name": "Ada"}), SyncOperation::Create).unwrap(),
        LocalChange::new(
            "tasks",
            "1",
            json!({"title": "buy oat milk"}),
            SyncOperation::Update,
        )
        .unwrap(),
        LocalChange::new("customers", "c9", json!({}), SyncOperation::Delete).unwrap(),
    ];
    store.save_batch(changes, t(1)).await.unwrap();
    let queue = store.queue().await.unwrap();
    assert_eq!(queue.len(), 2, "the create+delete pair vanished: {queue:#?}");
    assert!(queue.iter().all(|item| item.status == SyncStatus::Pending));
    assert!(matches!(events.next().await, Some(StoreEvent::QueueItem { .. })));

    // Online: claim everything and let the server accept it.
    let tickets = store.claim_ready(t(2), 100).await.unwrap();
    assert!(tickets.iter().all(|ticket| ticket.plan == SendPlan::Create));
    let task = tickets
        .iter()
        .find(|ticket| ticket.key == key("tasks", "1"))
        .unwrap();
    assert_eq!(task.payload["title"], "buy oat milk");
    let finished = tickets
        .into_iter()
        .map(|ticket| FinishedAttempt {
            ticket,
            outcome: AttemptOutcome::Applied {
                replace_local_with: None,
                server_version: None,
            },
        })
        .collect();
    store.finish_attempts(finished, t(3)).await.unwrap();

    let counts = store.counts().await.unwrap();
    assert_eq!((counts.synced, counts.pending, counts.failed), (2, 0, 0));
    let tasks = store.records(&"tasks".parse().unwrap()).await.unwrap();
    assert_eq!(tasks[0].data["title"], "buy oat milk");
    assert!(store.record(&key("customers", "c9")).await.unwrap().is_none());
    assert_eq!(store.clear_synced().await.unwrap(), 2);
}
