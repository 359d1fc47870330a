//! The writing commands, run as the real binary: they go through the
//! store (its lock, its `SyncStore` methods) and refuse while an app holds
//! the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{fails, fixture, key, ok, parse};
use sync_core::{SyncStatus, SyncStore};
use sync_store_sqlite::SqliteStore;

/// While an app holds the store open, retry refuses with exit code 3 and
/// a message saying to close the app; the parked item stays parked.
#[tokio::test]
async fn retry_refuses_while_an_app_holds_the_file() {
    let (_dir, path) = fixture().await;
    let store = SqliteStore::open(&path).await.unwrap();
    let message = fails(3, "retry", &path, &["notes", "3"]);
    assert!(message.contains("is open in an app"), "{message}");
    assert!(message.contains("close the app first"), "{message}");
    let message = fails(3, "retry", &path, &["--all-failed"]);
    assert!(message.contains("nothing was changed"), "{message}");
    let item = store.queue_item(&key("notes", "3")).await.unwrap().unwrap();
    assert!(item.is_parked(), "{item:?}");
    store.close().await;
}

/// With the app closed, retry makes the parked item eligible now through
/// the store; it is no longer listed as parked.
#[tokio::test]
async fn retry_makes_a_parked_item_eligible_when_the_file_is_free() {
    let (_dir, path) = fixture().await;
    let out = ok("retry", &path, &["notes", "3"]);
    assert!(out.contains("retried notes/3"), "{out}");
    let parked = parse(&ok("queue", &path, &["--parked", "--json"]));
    assert_eq!(parked.as_array().unwrap().len(), 0, "{parked}");
    let store = SqliteStore::open(&path).await.unwrap();
    let item = store.queue_item(&key("notes", "3")).await.unwrap().unwrap();
    assert!(!item.is_parked() && item.next_attempt_at.is_some(), "{item:?}");
    // The lock went with the inspector: the app opened the file at once.
    store.close().await;
}

/// A retry of an item that has not failed changes nothing and says why.
#[tokio::test]
async fn retry_of_an_item_that_has_not_failed_says_why() {
    let (_dir, path) = fixture().await;
    let message = fails(4, "retry", &path, &["notes", "1"]);
    assert!(
        message.contains("notes/1 is pending, not failed: nothing to retry"),
        "{message}"
    );
    let message = fails(4, "retry", &path, &["notes", "nope"]);
    assert!(message.contains("notes/nope has no queue item"), "{message}");
    let store = SqliteStore::open(&path).await.unwrap();
    let item = store.queue_item(&key("notes", "1")).await.unwrap().unwrap();
    assert_eq!(item.status, SyncStatus::Pending);
    store.close().await;
}

/// `retry --all-failed` retries every failed item, parked or waiting.
#[tokio::test]
async fn retry_all_failed_retries_every_failed_item() {
    let (_dir, path) = fixture().await;
    let out = parse(&ok("retry", &path, &["--all-failed", "--json"]));
    assert_eq!(out["retried"], 2, "{out}");
    let store = SqliteStore::open(&path).await.unwrap();
    let now = sync_core::Timestamp::now();
    for id in ["2", "3"] {
        let item = store.queue_item(&key("notes", id)).await.unwrap().unwrap();
        assert!(item.is_ready(now), "{item:?}");
    }
    let pending = store.queue_item(&key("notes", "1")).await.unwrap().unwrap();
    assert_eq!(pending.status, SyncStatus::Pending);
    store.close().await;
}

/// While an app holds the file, discard refuses and changes nothing.
#[tokio::test]
async fn discard_refuses_while_an_app_holds_the_file() {
    let (_dir, path) = fixture().await;
    let store = SqliteStore::open(&path).await.unwrap();
    let message = fails(3, "discard", &path, &["notes", "3"]);
    assert!(message.contains("is open in an app"), "{message}");
    assert!(store.queue_item(&key("notes", "3")).await.unwrap().is_some());
    store.close().await;
}

/// Without --revert the parked change is dropped and the document kept.
#[tokio::test]
async fn discard_drops_a_parked_change_and_keeps_the_document() {
    let (_dir, path) = fixture().await;
    let out = ok("discard", &path, &["notes", "3"]);
    assert!(out.starts_with("discarded notes/3: dropped"), "{out}");
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.queue_item(&key("notes", "3")).await.unwrap(), None);
    let document = store.record(&key("notes", "3")).await.unwrap().unwrap();
    assert_eq!(document.data["title"], "SECRET-parked");
    store.close().await;
    let again = fails(4, "discard", &path, &["notes", "3"]);
    assert!(again.contains("nothing to discard"), "{again}");
}

/// With --revert a local edit of a synced record is dropped and the
/// document goes back to the copy the server confirmed.
#[tokio::test]
async fn discard_with_revert_restores_the_server_copy() {
    let (_dir, path) = fixture().await;
    let store = SqliteStore::open(&path).await.unwrap();
    let edit = sync_core::LocalChange::new(
        "tasks",
        "a",
        serde_json::json!({ "id": "a", "title": "local edit" }),
        sync_core::SyncOperation::Update,
    )
    .unwrap();
    store.save(edit, support::SAVED_AT).await.unwrap();
    store.close().await;
    let out = parse(&ok("discard", &path, &["tasks", "a", "--revert", "--json"]));
    assert_eq!(out["outcome"], "reverted", "{out}");
    let store = SqliteStore::open(&path).await.unwrap();
    let document = store.record(&key("tasks", "a")).await.unwrap().unwrap();
    assert_eq!(document.data["title"], "SECRET-synced");
    let item = store.queue_item(&key("tasks", "a")).await.unwrap();
    assert!(
        item.as_ref().is_none_or(|item| item.status == SyncStatus::Synced),
        "{item:?}"
    );
    store.close().await;
}

/// A file from a device whose app was killed mid-attempt: the item is
/// still marked in flight. Holding the lock proves the attempt is dead, so
/// the writing commands recover it (possibly applied) and act on it.
#[tokio::test]
async fn an_attempt_a_killed_app_left_in_flight_can_be_discarded() {
    let (_dir, path) = fixture().await;
    let store = SqliteStore::open(&path).await.unwrap();
    let create = sync_core::LocalChange::new(
        "jobs",
        "k",
        serde_json::json!({ "id": "k", "title": "mid-attempt" }),
        sync_core::SyncOperation::Create,
    )
    .unwrap();
    store.save(create, sync_core::Timestamp::now()).await.unwrap();
    let claimed = store.claim_ready(sync_core::Timestamp::now(), 100).await.unwrap();
    assert!(claimed.iter().any(|ticket| ticket.key == key("jobs", "k")));
    // The app is killed: nothing records the attempt's outcome.
    store.close().await;
    let out = ok("discard", &path, &["jobs", "k"]);
    assert!(out.starts_with("discarded jobs/k: dropped"), "{out}");
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.queue_item(&key("jobs", "k")).await.unwrap(), None);
    assert!(store.record(&key("jobs", "k")).await.unwrap().is_some());
    store.close().await;
}

/// A record created under a temporary id and renamed since is found by
/// either id: `show` shows it under the server's id, `retry` re-arms it.
#[tokio::test]
async fn a_renamed_temporary_id_is_shown_and_retried_under_the_servers_id() {
    use serde_json::json;
    use sync_core::rename::assigned_id;
    use sync_core::{
        AttemptOutcome, ErrorKind, FinishedAttempt, LocalChange, RecordId, SyncOperation, Timestamp,
    };

    let (_dir, path) = support::temp_db();
    let store = SqliteStore::open(&path).await.unwrap();
    let temporary = RecordId::temporary();
    let now = Timestamp::from_millis(1_000);
    let change = LocalChange::new(
        "projects",
        temporary.as_str(),
        json!({"name": "p"}),
        SyncOperation::Create,
    )
    .unwrap();
    store.save(change, now).await.unwrap();
    let ticket = store.claim_ready(now, 1).await.unwrap().remove(0);
    let renamed = AttemptOutcome::AppliedAs {
        assigned: assigned_id(Some(&json!(17)), Vec::new()).unwrap(),
        replace_local_with: None,
        server_version: None,
    };
    store
        .finish_attempts(
            vec![FinishedAttempt {
                ticket,
                outcome: renamed,
            }],
            now,
        )
        .await
        .unwrap();
    let change = LocalChange::new("projects", "17", json!({"name": "q"}), SyncOperation::Update).unwrap();
    store.save(change, now).await.unwrap();
    let ticket = store.claim_ready(now, 1).await.unwrap().remove(0);
    let parked = AttemptOutcome::Failed {
        kind: ErrorKind::Permanent,
        message: "HTTP 422".into(),
        http_status: Some(422),
        possibly_applied: false,
        next_attempt_at: None,
        not_before: None,
    };
    store
        .finish_attempts(
            vec![FinishedAttempt {
                ticket,
                outcome: parked,
            }],
            now,
        )
        .await
        .unwrap();
    store.close().await;

    let shown = parse(&ok("show", &path, &["projects", temporary.as_str(), "--json"]));
    assert_eq!(shown["document"]["id"], "17", "{shown}");
    assert_eq!(shown["queueItem"]["id"], "17", "{shown}");
    let out = ok("retry", &path, &["projects", temporary.as_str()]);
    assert!(out.contains("retried"), "{out}");
    let store = SqliteStore::open(&path).await.unwrap();
    let item = store.queue_item(&key("projects", "17")).await.unwrap().unwrap();
    assert!(!item.is_parked(), "{item:?}");
    assert_eq!(item.status, SyncStatus::Failed);
    store.close().await;
}
