//! Discarding queued changes: the item goes, the document stays or goes
//! back to what the server is known to hold, and an attempt in flight is
//! never discarded.

use serde_json::json;
use sync_core::{
    AttemptOutcome, DiscardOutcome, ErrorKind, StoreErrorKind, SyncOperation, SyncStatus, SyncStore,
};

use super::{T0, T1, T2, T3, attempt_with, change, change_with, key};

/// A failure the server gave for good: the item parks.
fn parked() -> AttemptOutcome {
    AttemptOutcome::Failed {
        kind: ErrorKind::Permanent,
        message: "HTTP 422".into(),
        http_status: Some(422),
        possibly_applied: false,
        next_attempt_at: None,
        not_before: None,
    }
}

async fn data(store: &dyn SyncStore, id: &str) -> Option<serde_json::Value> {
    store
        .record(&key("tasks", id))
        .await
        .unwrap()
        .map(|record| json!(record.data))
}

/// A parked update is dropped with the document as saved, or reverted to
/// the copy the server confirmed; with nothing queued, nothing changes.
pub async fn a_parked_update_is_dropped_or_reverted(store: &dyn SyncStore) {
    let one = key("tasks", "1");
    let confirmed = json!({"id": "1", "v": 1});
    store
        .save(
            change_with("tasks", "1", SyncOperation::Create, confirmed.clone()),
            T0,
        )
        .await
        .unwrap();
    let applied = AttemptOutcome::Applied {
        replace_local_with: None,
        server_version: Some("\"1\"".into()),
    };
    attempt_with(store, applied, T0).await;
    store
        .save(
            change_with("tasks", "1", SyncOperation::Update, json!({"id": "1", "v": 2})),
            T1,
        )
        .await
        .unwrap();
    attempt_with(store, parked(), T1).await;

    assert_eq!(
        store.discard(&one, false, T2).await.unwrap(),
        DiscardOutcome::Dropped
    );
    assert_eq!(store.queue_item(&one).await.unwrap(), None, "the change is gone");
    assert_eq!(
        data(store, "1").await,
        Some(json!({"id": "1", "v": 2})),
        "the document as saved"
    );
    assert_eq!(
        store.discard(&one, true, T2).await.unwrap(),
        DiscardOutcome::NothingQueued,
        "nothing left to discard"
    );

    store
        .save(
            change_with("tasks", "1", SyncOperation::Update, json!({"id": "1", "v": 3})),
            T2,
        )
        .await
        .unwrap();
    attempt_with(store, parked(), T2).await;
    assert_eq!(
        store.discard(&one, true, T3).await.unwrap(),
        DiscardOutcome::Reverted
    );
    assert_eq!(store.queue_item(&one).await.unwrap(), None);
    assert_eq!(
        data(store, "1").await,
        Some(confirmed.clone()),
        "back to the server's copy"
    );
    let copy = store.server_copy(&one).await.unwrap().expect("the copy stays");
    assert_eq!(
        (json!(copy.data), copy.version.as_deref()),
        (confirmed, Some("\"1\""))
    );
}

/// A create the server never applied: with revert, its document goes too;
/// without, it stays (a pending change, never attempted, can be dropped).
pub async fn a_create_the_server_never_saw_is_removed_on_revert(store: &dyn SyncStore) {
    store
        .save(change("tasks", "gone", SyncOperation::Create), T0)
        .await
        .unwrap();
    attempt_with(store, parked(), T0).await;
    assert_eq!(
        store.discard(&key("tasks", "gone"), true, T1).await.unwrap(),
        DiscardOutcome::Removed
    );
    assert_eq!(data(store, "gone").await, None);
    assert_eq!(store.queue_item(&key("tasks", "gone")).await.unwrap(), None);

    store
        .save(change("tasks", "kept", SyncOperation::Create), T1)
        .await
        .unwrap();
    assert_eq!(
        store.discard(&key("tasks", "kept"), false, T2).await.unwrap(),
        DiscardOutcome::Dropped
    );
    assert!(data(store, "kept").await.is_some());
    assert_eq!(store.queue().await.unwrap(), Vec::new());
}

/// An attempt in flight may be applied: discarding it is refused
/// (`InFlight`), and nothing changes.
pub async fn an_attempt_in_flight_is_never_discarded(store: &dyn SyncStore) {
    store
        .save(change("tasks", "out", SyncOperation::Create), T0)
        .await
        .unwrap();
    let claimed = store.claim_ready(T0, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let before = (store.queue().await.unwrap(), data(store, "out").await);
    let error = store
        .discard(&key("tasks", "out"), true, T1)
        .await
        .expect_err("in flight");
    assert_eq!(error.kind(), StoreErrorKind::InFlight, "{error}");
    assert!(error.to_string().contains("tasks/out"), "{error}");
    assert_eq!((store.queue().await.unwrap(), data(store, "out").await), before);
    assert_eq!(before.0[0].status, SyncStatus::Syncing);
}
