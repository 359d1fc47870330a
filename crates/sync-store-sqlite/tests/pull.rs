//! Pulls on the SQLite store beyond the shared conformance checks: a page
//! that fails half-way changes nothing, its cost in statements is fixed,
//! sweeps of thousands of records, and what survives a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::time::Duration;

use serde_json::json;
use sync_core::pull::{PullBatch, PullCounts, PullCursor, PullPage, PullState, PulledChange, plan_page};
use sync_core::{EntityName, LocalRecord, StoreError, StoreErrorKind, StoreEvent, SyncStore, Timestamp};
use sync_store_sqlite::{SqliteStore, SqliteStoreOptions};
use sync_testkit::conformance::key;
use tokio_stream::StreamExt;

const T: Timestamp = Timestamp::from_millis(10_000);

fn tasks() -> EntityName {
    "tasks".parse().unwrap()
}

fn upserts(ids: impl IntoIterator<Item = usize>, data: &serde_json::Value) -> Vec<PulledChange> {
    ids.into_iter()
        .map(|index| PulledChange::Upsert {
            id: index.to_string().parse().unwrap(),
            data: data.as_object().cloned().unwrap(),
            version: Some(format!("v{index}")),
        })
        .collect()
}

/// Applies `page` of `tasks` as the engine does, from the stored state.
async fn pull(store: &dyn SyncStore, page: PullPage, now: Timestamp) -> Result<PullCounts, StoreError> {
    let expected = store.pull_state(&tasks()).await.unwrap();
    let plan = plan_page(&expected, &page, now);
    let batch = PullBatch {
        entity: tasks(),
        expected,
        plan,
        changes: page.changes,
        merges: Vec::new(),
    };
    store.apply_pull(batch, now).await
}

fn delta(changes: Vec<PulledChange>, cursor: &str) -> PullPage {
    PullPage {
        changes,
        cursor: Some(PullCursor::new(cursor).unwrap()),
        more: false,
        listing: false,
    }
}

fn listing(changes: Vec<PulledChange>, more: bool) -> PullPage {
    PullPage {
        changes,
        cursor: None,
        more,
        listing: true,
    }
}

async fn everything(store: &dyn SyncStore) -> (Vec<LocalRecord>, PullState) {
    (
        store.records(&tasks()).await.unwrap(),
        store.pull_state(&tasks()).await.unwrap(),
    )
}

/// A page that fills the database fails as `Full` and changes nothing: no
/// document, no cursor, no event.
#[tokio::test]
async fn a_page_that_fills_the_disk_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStoreOptions::in_dir(dir.path())
        .max_page_count(60)
        .open()
        .await
        .unwrap();
    let mut events = store.subscribe();
    let data = json!({ "blob": "y".repeat(6_000) });
    for page in 0.. {
        let before = everything(&store).await;
        while tokio::time::timeout(Duration::from_millis(1), events.next())
            .await
            .is_ok()
        {}
        let changes = upserts(page * 4..page * 4 + 4, &data);
        match pull(&store, delta(changes, &format!("c{page}")), T).await {
            Ok(_) => assert!(page < 100, "the page limit was never reached"),
            Err(error) => {
                assert_eq!(error.kind(), StoreErrorKind::Full, "{error}");
                assert_eq!(
                    everything(&store).await,
                    before,
                    "a failed page changed the database"
                );
                let event = tokio::time::timeout(Duration::from_millis(50), events.next()).await;
                assert!(event.is_err(), "a rolled-back page published {event:?}");
                break;
            }
        }
    }
}

/// A page costs the same few statements whatever its size: begin, the
/// state, one read of the page's queue items and one of its documents, one
/// upsert per table, the state, commit (the reads and upserts per chunk of
/// 500 rows).
#[tokio::test]
async fn a_page_is_a_fixed_number_of_statements() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let data = json!({ "title": "a task", "notes": "n".repeat(150) });
    // The first pull (from no cursor) is a listing, with its marks and
    // sweep: the deltas after it are measured.
    pull(&store, delta(Vec::new(), "c0"), T).await.unwrap();
    for (round, cursor) in ["c1", "c2"].into_iter().enumerate() {
        let before = store.statement_count();
        let counts = pull(&store, delta(upserts(0..1000, &data), cursor), T)
            .await
            .unwrap();
        assert_eq!(counts.upserted, 1000);
        // pull_state (1) + begin, state, 2 + 2 reads, 2 + 2 upserts, state, commit.
        assert_eq!(
            store.statement_count() - before,
            13,
            "round {round}: new and existing records alike"
        );
    }
}

/// A listing's sweep of thousands of records removes them all, and
/// subscribers, who could not have kept up, are told they lagged.
#[tokio::test]
async fn a_sweep_of_thousands_removes_them_all_and_says_lagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
    let data = json!({ "title": "a task" });
    for page in 0..5 {
        pull(
            &store,
            delta(upserts(page * 1000..page * 1000 + 1000, &data), "c"),
            T,
        )
        .await
        .unwrap();
    }
    let mut events = store.subscribe();
    let counts = pull(&store, listing(upserts(0..10, &data), false), T)
        .await
        .unwrap();
    assert_eq!((counts.upserted, counts.deleted), (10, 4990));
    assert_eq!(store.records(&tasks()).await.unwrap().len(), 10);
    assert_eq!(store.server_copy(&key("tasks", "4999")).await.unwrap(), None);
    let mut seen = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(50), events.next()).await {
        seen.push(event);
    }
    assert!(seen.contains(&StoreEvent::Lagged), "{} events", seen.len());
    assert!(seen.len() <= 11, "{} events", seen.len());
}

/// A listing in progress and its marks survive a reopen: the sweep at its
/// end, after the reopen, keeps what its first page showed.
#[tokio::test]
async fn a_listing_goes_on_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let data = json!({ "title": "a task" });
    let store = SqliteStore::open(&path).await.unwrap();
    pull(&store, delta(upserts(0..3, &data), "c"), T).await.unwrap();
    pull(&store, listing(upserts(0..1, &data), true), T)
        .await
        .unwrap();
    let state = store.pull_state(&tasks()).await.unwrap();
    store.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.pull_state(&tasks()).await.unwrap(), state);
    let counts = pull(&store, listing(upserts(1..2, &data), false), T)
        .await
        .unwrap();
    assert_eq!(counts.deleted, 1, "only the record neither page showed");
    let mut ids: Vec<String> = store
        .records(&tasks())
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.id.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["0", "1"]);
}

/// A database written by the first schema pulls after its upgrade, sweep
/// included: its records, never shown by a listing, go unless a change to
/// them is pending.
#[tokio::test]
async fn a_version_1_database_pulls_after_its_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema_v1.db"),
        &path,
    )
    .unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let before = store.records(&tasks()).await.unwrap().len();
    assert!(before > 0, "the fixture holds tasks");
    let counts = pull(&store, listing(upserts(100..101, &json!({"t": 1})), false), T)
        .await
        .unwrap();
    assert_eq!(counts.upserted, 1);
    for record in store.records(&tasks()).await.unwrap() {
        let item = store.queue_item(&key("tasks", record.id.as_str())).await.unwrap();
        let live = item.is_some_and(|item| item.status != sync_core::SyncStatus::Synced);
        assert!(
            record.id.as_str() == "100" || live,
            "{} was kept without a pending change",
            record.id
        );
    }
}
