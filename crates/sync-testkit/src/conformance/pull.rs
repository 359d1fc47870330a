//! Pulls: what every store must do with a page of the server's changes
//! (`SyncStore::pull_state`, `pending_changes`, `apply_pull`). Pages are
//! applied as the engine applies them: planned by
//! [`sync_core::pull::plan_page`] from the stored state. The checks of
//! pending local changes are in [`pending`], those of full listings in
//! [`listing`].

use serde_json::json;
use sync_core::attempt::AttemptOutcome;
use sync_core::pull::{
    PreparedMerge, PullBatch, PullCounts, PullCursor, PullPage, PullState, PulledChange, plan_page,
    plan_pulled,
};
use sync_core::snapshot::{Applied, QueueSnapshot, RecordsSnapshot};
use sync_core::{
    EntityName, JsonObject, LocalRecord, ServerCopy, StoreError, StoreErrorKind, StoreEvent, SyncOperation,
    SyncQueueItem, SyncStore, Timestamp, ValidationError,
};
use tokio_stream::StreamExt;

use super::{T0, T1, T2, T3, attempt_with, change, change_with, key};

pub mod listing;
pub mod pending;

const T4: Timestamp = Timestamp::from_millis(5_000);

fn tasks() -> EntityName {
    "tasks".parse().expect("valid entity")
}

fn object(value: serde_json::Value) -> JsonObject {
    value.as_object().cloned().expect("a JSON object")
}

/// An upsert of `tasks/id` with `data` at `version`.
fn upsert(id: &str, data: serde_json::Value, version: Option<&str>) -> PulledChange {
    PulledChange::Upsert {
        id: id.parse().expect("valid id"),
        data: object(data),
        version: version.map(str::to_owned),
    }
}

fn tombstone(id: &str) -> PulledChange {
    PulledChange::Tombstone {
        id: id.parse().expect("valid id"),
    }
}

/// A last page of changes (no cursor, not a listing).
/// A page of deltas with a cursor (the first one pulled is still a full
/// listing: the store had no cursor).
fn page(changes: Vec<PulledChange>) -> PullPage {
    PullPage {
        changes,
        cursor: PullCursor::new("delta").ok(),
        ..PullPage::default()
    }
}

/// A page of a full listing.
fn listing(changes: Vec<PulledChange>, more: bool) -> PullPage {
    PullPage {
        changes,
        more,
        listing: true,
        cursor: None,
    }
}

/// The batch the engine would apply for `page` of `tasks` at `now`, from
/// the stored state.
async fn batch(
    store: &dyn SyncStore,
    page: PullPage,
    merges: Vec<PreparedMerge>,
    now: Timestamp,
) -> PullBatch {
    let expected = store.pull_state(&tasks()).await.unwrap();
    let plan = plan_page(&expected, &page, now);
    PullBatch {
        entity: tasks(),
        expected,
        plan,
        changes: page.changes,
        merges,
    }
}

/// Applies `page` of `tasks` as the engine does.
async fn pull(
    store: &dyn SyncStore,
    page: PullPage,
    merges: Vec<PreparedMerge>,
    now: Timestamp,
) -> Result<PullCounts, StoreError> {
    let batch = batch(store, page, merges, now).await;
    store.apply_pull(batch, now).await
}

fn counts(upserted: u64, deleted: u64, skipped: u64, merged: u64) -> PullCounts {
    PullCounts {
        upserted,
        deleted,
        skipped,
        merged,
    }
}

fn applied(version: Option<&str>) -> AttemptOutcome {
    AttemptOutcome::Applied {
        replace_local_with: None,
        server_version: version.map(str::to_owned),
    }
}

/// Saves `tasks/id` as a create with `data` and syncs it (version `"1"`).
async fn synced(store: &dyn SyncStore, id: &str, data: serde_json::Value, now: Timestamp) {
    store
        .save(change_with("tasks", id, SyncOperation::Create, data), now)
        .await
        .unwrap();
    let ticket = attempt_with(store, applied(Some("1")), now).await;
    assert_eq!(ticket.key, key("tasks", id), "only {id} was ready");
}

async fn document(store: &dyn SyncStore, id: &str) -> Option<serde_json::Value> {
    store
        .record(&key("tasks", id))
        .await
        .unwrap()
        .map(|record| json!(record.data))
}

async fn item(store: &dyn SyncStore, id: &str) -> Option<SyncQueueItem> {
    store.queue_item(&key("tasks", id)).await.unwrap()
}

async fn copy(store: &dyn SyncStore, id: &str) -> Option<(serde_json::Value, Option<String>)> {
    store
        .server_copy(&key("tasks", id))
        .await
        .unwrap()
        .map(|copy| (json!(copy.data), copy.version))
}

/// Everything the store holds that a pull of `tasks` may touch: the
/// documents of `tasks` and `notes`, the whole queue, the server copies of
/// `ids`, and the pull state.
type Whole = (
    Vec<LocalRecord>,
    Vec<LocalRecord>,
    Vec<SyncQueueItem>,
    Vec<Option<ServerCopy>>,
    PullState,
);

async fn whole(store: &dyn SyncStore, ids: &[&str]) -> Whole {
    let mut copies = Vec::new();
    for id in ids {
        copies.push(store.server_copy(&key("tasks", id)).await.unwrap());
    }
    (
        store.records(&tasks()).await.unwrap(),
        store.records(&"notes".parse().unwrap()).await.unwrap(),
        store.queue().await.unwrap(),
        copies,
        store.pull_state(&tasks()).await.unwrap(),
    )
}

/// A page applied to an empty store writes the documents (created and
/// updated now), the server copies with their versions, and the state
/// with the page's cursor; a later page keeps `created_at`, and a page
/// without a cursor keeps the stored one.
pub async fn a_pulled_page_fills_an_empty_store(store: &dyn SyncStore) {
    assert_eq!(
        store.pull_state(&tasks()).await.unwrap(),
        PullState::default(),
        "no state before the first pull"
    );
    let mut first = page(vec![
        upsert("1", json!({"id": "1", "t": "one"}), Some("v1")),
        upsert("2", json!({"id": "2", "t": "two"}), None),
    ]);
    first.cursor = Some(PullCursor::new("cursor-1").unwrap());
    let counted = pull(store, first, Vec::new(), T0).await.unwrap();
    assert_eq!(counted, counts(2, 0, 0, 0));
    let record = store.record(&key("tasks", "1")).await.unwrap().expect("pulled");
    assert_eq!(
        (json!(record.data), record.created_at, record.updated_at),
        (json!({"id": "1", "t": "one"}), T0, T0)
    );
    assert_eq!(
        copy(store, "1").await,
        Some((json!({"id": "1", "t": "one"}), Some("v1".to_owned()))),
        "the server's copy with its version"
    );
    assert_eq!(
        copy(store, "2").await,
        Some((json!({"id": "2", "t": "two"}), None))
    );
    assert!(
        store.queue().await.unwrap().is_empty(),
        "a pulled record has nothing to send"
    );
    let state = store.pull_state(&tasks()).await.unwrap();
    assert_eq!(
        (
            state.cursor.as_ref().map(PullCursor::as_str),
            state.generation,
            state.listing
        ),
        (Some("cursor-1"), 1, None),
        "a first pull (from no cursor) is a full listing, ended by its last page"
    );

    let without_cursor = PullPage {
        changes: vec![upsert("1", json!({"id": "1", "t": "uno"}), Some("v2"))],
        ..PullPage::default()
    };
    let counted = pull(store, without_cursor, Vec::new(), T1).await.unwrap();
    assert_eq!(counted, counts(1, 0, 0, 0));
    let record = store.record(&key("tasks", "1")).await.unwrap().unwrap();
    assert_eq!(
        (json!(record.data), record.created_at, record.updated_at),
        (json!({"id": "1", "t": "uno"}), T0, T1),
        "an update keeps created_at"
    );
    assert_eq!(copy(store, "1").await.unwrap().1.as_deref(), Some("v2"));
    assert_eq!(
        store.pull_state(&tasks()).await.unwrap().cursor,
        Some(PullCursor::new("cursor-1").unwrap()),
        "a page without a cursor keeps the stored one"
    );
    assert!(
        store.records(&"notes".parse().unwrap()).await.unwrap().is_empty(),
        "other entities untouched"
    );
    assert_eq!(
        store.pull_state(&"notes".parse().unwrap()).await.unwrap(),
        PullState::default(),
        "states are per entity"
    );
}

/// A tombstone removes the document and the server copy; a tombstone of a
/// record this device never had changes nothing.
pub async fn a_pulled_tombstone_removes_the_document_and_its_copy(store: &dyn SyncStore) {
    let both = vec![
        upsert("1", json!({"id": "1"}), Some("v1")),
        upsert("2", json!({"id": "2"}), Some("v1")),
    ];
    pull(store, page(both), Vec::new(), T0).await.unwrap();
    let counted = pull(
        store,
        page(vec![tombstone("1"), tombstone("never")]),
        Vec::new(),
        T1,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(0, 1, 0, 0));
    assert_eq!(document(store, "1").await, None);
    assert_eq!(copy(store, "1").await, None, "the copy goes with it");
    assert_eq!(document(store, "2").await, Some(json!({"id": "2"})));
    assert!(copy(store, "2").await.is_some());
    assert_eq!(document(store, "never").await, None);
    assert!(store.queue().await.unwrap().is_empty());
}
/// What `plan_pulled` says `change` does to the item, for the checks.
fn planned_item(item: &SyncQueueItem, change: &PulledChange, now: Timestamp) -> Option<SyncQueueItem> {
    match plan_pulled(Some(item), true, change, None, now).queue {
        sync_core::coalesce::QueueWrite::Put(after) => Some(after),
        sync_core::coalesce::QueueWrite::Remove => None,
        sync_core::coalesce::QueueWrite::Keep => Some(item.clone()),
    }
}

/// `planned` with the operation id of `actual` when both drew a new one
/// (a plan draws it at random): items compare on everything else, and on
/// whether the key changed.
fn masked(
    actual: Option<&SyncQueueItem>,
    mut planned: Option<SyncQueueItem>,
    before: &SyncQueueItem,
) -> Option<SyncQueueItem> {
    if let (Some(actual), Some(planned)) = (actual, planned.as_mut())
        && planned.operation_id != before.operation_id
        && actual.operation_id != before.operation_id
    {
        planned.operation_id = actual.operation_id.clone();
    }
    planned
}

/// Two changes for one record in one page apply in order, the second
/// seeing the first's effect.
pub async fn two_changes_for_one_record_apply_in_order(store: &dyn SyncStore) {
    pull(
        store,
        page(vec![upsert("b", json!({"v": 1}), Some("1"))]),
        Vec::new(),
        T0,
    )
    .await
    .unwrap();
    store
        .save(change("tasks", "p", SyncOperation::Create), T0)
        .await
        .unwrap();
    let pending = item(store, "p").await.unwrap();
    let first = upsert("p", json!({"id": "p", "from": "server"}), Some("1"));
    let second = tombstone("p");
    let expected = planned_item(&planned_item(&pending, &first, T1).unwrap(), &second, T1);
    let counted = pull(
        store,
        page(vec![
            upsert("a", json!({"v": 1}), Some("1")),
            tombstone("a"),
            tombstone("b"),
            upsert("b", json!({"v": 2}), Some("2")),
            upsert("c", json!({"v": 1}), Some("1")),
            upsert("c", json!({"v": 2}), Some("2")),
            first,
            second,
        ]),
        Vec::new(),
        T1,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(4, 2, 2, 0));
    assert_eq!((document(store, "a").await, copy(store, "a").await), (None, None));
    let b = store.record(&key("tasks", "b")).await.unwrap().unwrap();
    assert_eq!(
        (json!(b.data), b.created_at),
        (json!({"v": 2}), T1),
        "removed, then created again"
    );
    assert_eq!(
        copy(store, "b").await,
        Some((json!({"v": 2}), Some("2".to_owned())))
    );
    assert_eq!(document(store, "c").await, Some(json!({"v": 2})));
    assert_eq!(copy(store, "c").await.unwrap().1.as_deref(), Some("2"));
    let after = item(store, "p").await;
    assert_eq!(
        after,
        masked(after.as_ref(), expected, &pending),
        "the tombstone saw the upsert's item"
    );
    assert_eq!(
        after.map(|i| (i.operation, i.version)),
        Some((SyncOperation::Create, pending.version + 2))
    );
}
/// A page is refused whole, changing nothing at all, when the stored state
/// is not the one it was pulled from (another pull applied a page first),
/// and when a document is over the store's payload limit.
pub async fn a_refused_page_changes_nothing(store: &dyn SyncStore) {
    let mut delta = page(vec![
        upsert("a", json!({"id": "a"}), Some("1")),
        upsert("b", json!({"id": "b"}), Some("1")),
    ]);
    delta.cursor = Some(PullCursor::new("c-1").unwrap());
    pull(store, delta, Vec::new(), T0).await.unwrap();
    store
        .save(change("tasks", "c", SyncOperation::Create), T0)
        .await
        .unwrap();
    pull(store, listing(Vec::new(), true), Vec::new(), T1)
        .await
        .unwrap();
    let ids = ["a", "b", "c", "new", "big"];
    let before = whole(store, &ids).await;
    // The last page of the listing: it would sweep "a" and "b".
    let changes = vec![
        upsert("c", json!({"id": "c", "from": "server"}), Some("1")),
        upsert("new", json!({"id": "new"}), Some("1")),
    ];

    let mut stale = batch(store, listing(changes.clone(), false), Vec::new(), T2).await;
    stale.expected = PullState {
        cursor: Some(PullCursor::new("c-1").unwrap()),
        generation: 0,
        listing: None,
    };
    let error = store.apply_pull(stale, T2).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Other, "{error}");
    assert!(error.to_string().contains("pull again"), "{error}");
    assert_eq!(whole(store, &ids).await, before, "a stale page changes nothing");

    let mut oversized = changes;
    oversized.push(upsert(
        "big",
        json!({ "blob": "x".repeat(2 * 1024 * 1024) }),
        Some("1"),
    ));
    let error = pull(store, listing(oversized, false), Vec::new(), T2)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Invalid, "{error}");
    assert!(
        error.to_string().contains("tasks/big"),
        "names the record: {error}"
    );
    assert!(
        matches!(
            error.into_validation_error(),
            Ok(ValidationError::PayloadTooLarge { .. })
        ),
        "carries the validation error"
    );
    assert_eq!(
        whole(store, &ids).await,
        before,
        "an oversized page changes nothing"
    );
}
/// Pulled changes are published as store events, one per changed row (the
/// sweep's removals included), so snapshots follow pulls as they follow
/// saves.
pub async fn pulled_changes_are_published(store: &dyn SyncStore) {
    pull(
        store,
        page(vec![
            upsert("y", json!({"id": "y"}), Some("1")),
            upsert("z", json!({"id": "z"}), Some("1")),
        ]),
        Vec::new(),
        T0,
    )
    .await
    .unwrap();
    store
        .save(change("tasks", "p", SyncOperation::Create), T0)
        .await
        .unwrap();
    let mut events = store.subscribe();
    let mut queue = QueueSnapshot::new(store.queue().await.unwrap());
    let mut records = RecordsSnapshot::new(tasks(), store.records(&tasks()).await.unwrap());

    pull(
        store,
        page(vec![
            upsert("x", json!({"id": "x"}), Some("1")),
            upsert("p", json!({"id": "p", "from": "server"}), Some("1")),
            tombstone("y"),
        ]),
        Vec::new(),
        T1,
    )
    .await
    .unwrap();
    // A one-page listing that shows x and sweeps z.
    pull(
        store,
        listing(vec![upsert("x", json!({"id": "x", "v": 2}), Some("2"))], false),
        Vec::new(),
        T2,
    )
    .await
    .unwrap();
    store
        .save(change("markers", "end", SyncOperation::Create), T3)
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let event = events.next().await.expect("stream open");
        assert_ne!(
            queue.apply(&event),
            Applied::Resync,
            "no event may be missed here"
        );
        records.apply(&event);
        match &event {
            StoreEvent::Record { key: k, .. } if *k == key("markers", "end") => break,
            StoreEvent::Record { key: k, record } => seen.push((k.id.to_string(), record.is_some())),
            _ => {}
        }
    }
    for expected in [("x", true), ("y", false), ("z", false)] {
        assert!(
            seen.contains(&(expected.0.to_owned(), expected.1)),
            "an event for {expected:?} among {seen:?}"
        );
    }
    assert_eq!(
        records.to_vec(),
        store.records(&tasks()).await.unwrap(),
        "records snapshot drifted"
    );
    assert_eq!(
        queue.to_vec(),
        store.queue().await.unwrap(),
        "queue snapshot drifted"
    );
    assert_eq!(
        queue.get(&key("tasks", "p")).map(|item| item.operation),
        Some(SyncOperation::Update),
        "the pending create learned the server holds it"
    );
}

/// Runs every pull check, each on a fresh store from `new_store`.
pub(super) async fn run_all<S, F, Fut>(new_store: &F)
where
    S: SyncStore,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    a_pulled_page_fills_an_empty_store(&new_store().await).await;
    a_pulled_tombstone_removes_the_document_and_its_copy(&new_store().await).await;
    pending::pending_changes_keep_their_documents_under_pulls(&new_store().await).await;
    pending::a_current_merge_replaces_the_pending_document(&new_store().await).await;
    pending::an_outdated_merge_is_ignored(&new_store().await).await;
    pending::an_item_in_flight_is_untouched_by_pulls(&new_store().await).await;
    pending::a_synced_item_telling_the_wrong_story_is_removed(&new_store().await).await;
    pending::pending_changes_are_the_merge_candidates_with_their_bases(&new_store().await).await;
    two_changes_for_one_record_apply_in_order(&new_store().await).await;
    listing::a_listing_marks_what_it_shows_and_sweeps_the_rest(&new_store().await).await;
    listing::a_listing_marks_the_records_it_showed_under_a_pending_change(&new_store().await).await;
    listing::a_first_pull_sweeps_what_the_server_no_longer_has(&new_store().await).await;
    listing::a_renamed_record_keeps_the_mark_of_the_listing_that_showed_it(&new_store().await).await;
    a_refused_page_changes_nothing(&new_store().await).await;
    pulled_changes_are_published(&new_store().await).await;
}
