//! Pulls meeting pending local changes: documents kept, items relearning
//! what the server holds, merges, items in flight, synced items telling
//! the wrong story, and the merge candidates offered to the resolver.

use serde_json::json;
use sync_core::pull::PreparedMerge;
use sync_core::{SyncOperation, SyncQueueItem, SyncStatus, SyncStore};

use super::super::{T0, T1, T2, T3, attempt_with, change, change_with};
use super::{
    applied, copy, counts, document, item, masked, object, page, planned_item, pull, synced, tasks,
    tombstone, upsert, whole,
};

/// Pending local changes keep their documents under upserts and
/// tombstones; their items learn what the server holds, as `plan_pulled`
/// says: a create meeting an upsert becomes an update, an update meeting a
/// tombstone becomes a create, a delete meeting a tombstone is synced.
pub async fn pending_changes_keep_their_documents_under_pulls(store: &dyn SyncStore) {
    synced(store, "update", json!({"id": "update", "v": 0}), T0).await;
    synced(store, "delete", json!({"id": "delete", "v": 0}), T0).await;
    for (id, operation) in [
        ("update", SyncOperation::Update),
        ("delete", SyncOperation::Delete),
        ("create", SyncOperation::Create),
        ("recreate", SyncOperation::Create),
    ] {
        store.save(change("tasks", id, operation), T1).await.unwrap();
    }
    let changes = [
        upsert("create", json!({"id": "create", "from": "server"}), Some("s1")),
        tombstone("update"),
        tombstone("delete"),
        tombstone("recreate"),
    ];
    let mut before = Vec::new();
    for change in &changes {
        let id = change.id().as_str();
        let pending = item(store, id).await.expect("a pending item");
        before.push((pending, document(store, id).await));
    }
    let counted = pull(store, page(changes.to_vec()), Vec::new(), T2).await.unwrap();
    assert_eq!(counted, counts(0, 0, 4, 0), "every change skipped");
    for (change, (pending, document_before)) in changes.iter().zip(before) {
        let id = change.id().as_str();
        let after = item(store, id).await;
        let planned = masked(after.as_ref(), planned_item(&pending, change, T2), &pending);
        assert_eq!(after, planned, "{id}: the item as plan_pulled says");
        assert_eq!(
            document(store, id).await,
            document_before,
            "{id}: the local document is kept"
        );
    }
    let operation = |item: Option<SyncQueueItem>| item.map(|item| (item.operation, item.status));
    assert_eq!(
        operation(item(store, "create").await),
        Some((SyncOperation::Update, SyncStatus::Pending))
    );
    assert_eq!(
        operation(item(store, "update").await),
        Some((SyncOperation::Create, SyncStatus::Pending))
    );
    assert_eq!(
        operation(item(store, "delete").await).map(|(_, status)| status),
        Some(SyncStatus::Synced)
    );
    assert_eq!(
        operation(item(store, "recreate").await),
        Some((SyncOperation::Create, SyncStatus::Pending))
    );
    assert_eq!(
        copy(store, "create").await,
        None,
        "no merge: the old copy (none) stays"
    );
    assert_eq!(copy(store, "update").await, None, "the server no longer holds it");
    assert_eq!(copy(store, "delete").await, None);
}

/// A record with a pending update over a synced copy, and the merge
/// candidate the store offers for it.
async fn pending_update(store: &dyn SyncStore) -> sync_core::pull::PendingChange {
    synced(store, "m", json!({"id": "m", "a": 1}), T0).await;
    store
        .save(
            change_with(
                "tasks",
                "m",
                SyncOperation::Update,
                json!({"id": "m", "a": 1, "b": "local"}),
            ),
            T1,
        )
        .await
        .unwrap();
    let mut pending = store
        .pending_changes(&tasks(), &["m".parse().unwrap()])
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "one candidate");
    pending.remove(0)
}

/// A merge made from the item's current version replaces the pending
/// document and the item's payload, and the incoming copy becomes the
/// server copy.
pub async fn a_current_merge_replaces_the_pending_document(store: &dyn SyncStore) {
    let pending = pending_update(store).await;
    let before = item(store, "m").await.unwrap();
    let merged = json!({"id": "m", "a": 2, "b": "local"});
    let merge = PreparedMerge {
        id: "m".parse().unwrap(),
        item_version: pending.item_version,
        document: object(merged.clone()),
    };
    let counted = pull(
        store,
        page(vec![upsert("m", json!({"id": "m", "a": 2}), Some("2"))]),
        vec![merge],
        T2,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(0, 0, 0, 1));
    assert_eq!(document(store, "m").await, Some(merged.clone()));
    let after = item(store, "m").await.unwrap();
    assert_eq!(
        (json!(after.payload), after.operation, after.status, after.version),
        (
            merged,
            SyncOperation::Update,
            SyncStatus::Pending,
            before.version + 1
        ),
        "the merge is what the item sends"
    );
    assert_eq!(
        copy(store, "m").await,
        Some((json!({"id": "m", "a": 2}), Some("2".to_owned()))),
        "the incoming copy is the new base"
    );
}

/// A merge made from an older version of the item (a save came in between)
/// is ignored: the pending document, the item and the copy stay.
pub async fn an_outdated_merge_is_ignored(store: &dyn SyncStore) {
    let pending = pending_update(store).await;
    store
        .save(
            change_with(
                "tasks",
                "m",
                SyncOperation::Update,
                json!({"id": "m", "a": 1, "b": "newer"}),
            ),
            T2,
        )
        .await
        .unwrap();
    let before = whole(store, &["m"]).await;
    let merge = PreparedMerge {
        id: "m".parse().unwrap(),
        item_version: pending.item_version,
        document: object(json!({"id": "m", "a": 2, "b": "local"})),
    };
    let counted = pull(
        store,
        page(vec![upsert("m", json!({"id": "m", "a": 2}), Some("2"))]),
        vec![merge],
        T3,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(0, 0, 1, 0));
    let after = whole(store, &["m"]).await;
    assert_eq!(
        (&after.0, &after.3),
        (&before.0, &before.3),
        "document and copy kept"
    );
    let kept = item(store, "m").await.unwrap();
    assert_eq!(
        json!(kept.payload),
        json!({"id": "m", "a": 1, "b": "newer"}),
        "the newer save is what the item sends"
    );
}

/// An item in flight is left exactly as it is, with its document and copy:
/// the attempt's outcome will say what the server holds.
pub async fn an_item_in_flight_is_untouched_by_pulls(store: &dyn SyncStore) {
    synced(store, "g", json!({"id": "g"}), T0).await;
    store
        .save(change("tasks", "g", SyncOperation::Update), T1)
        .await
        .unwrap();
    store
        .save(change("tasks", "f", SyncOperation::Create), T1)
        .await
        .unwrap();
    assert_eq!(store.claim_ready(T1, 10).await.unwrap().len(), 2);
    let before = whole(store, &["f", "g"]).await;
    let counted = pull(
        store,
        page(vec![
            upsert("f", json!({"id": "f", "from": "server"}), Some("9")),
            tombstone("g"),
        ]),
        Vec::new(),
        T2,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(0, 0, 2, 0));
    let after = whole(store, &["f", "g"]).await;
    assert_eq!(
        (&after.0, &after.2, &after.3),
        (&before.0, &before.2, &before.3),
        "documents, items and copies untouched"
    );
}

/// A synced item whose story the server contradicts is removed, so the
/// next save starts from what the server holds: a synced create under a
/// tombstone, a synced delete under an upsert. One telling the right story
/// stays.
pub async fn a_synced_item_telling_the_wrong_story_is_removed(store: &dyn SyncStore) {
    synced(store, "c", json!({"id": "c"}), T0).await;
    synced(store, "d", json!({"id": "d"}), T0).await;
    store
        .save(change("tasks", "d", SyncOperation::Delete), T0)
        .await
        .unwrap();
    attempt_with(store, applied(None), T0).await;
    assert_eq!(
        item(store, "d").await.map(|i| (i.operation, i.status)),
        Some((SyncOperation::Delete, SyncStatus::Synced))
    );
    synced(store, "u", json!({"id": "u"}), T0).await;
    let counted = pull(
        store,
        page(vec![
            tombstone("c"),
            upsert("d", json!({"id": "d", "back": true}), Some("2")),
            upsert("u", json!({"id": "u", "v": 2}), Some("2")),
        ]),
        Vec::new(),
        T1,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(2, 1, 0, 0));
    assert_eq!(item(store, "c").await, None, "a synced create under a tombstone");
    assert_eq!((document(store, "c").await, copy(store, "c").await), (None, None));
    assert_eq!(item(store, "d").await, None, "a synced delete under an upsert");
    assert_eq!(document(store, "d").await, Some(json!({"id": "d", "back": true})));
    assert_eq!(
        copy(store, "d").await,
        Some((json!({"id": "d", "back": true}), Some("2".to_owned())))
    );
    assert_eq!(
        item(store, "u").await.map(|i| (i.operation, i.status)),
        Some((SyncOperation::Create, SyncStatus::Synced)),
        "a synced create under an upsert tells the right story"
    );
    assert_eq!(document(store, "u").await, Some(json!({"id": "u", "v": 2})));
}

/// `pending_changes` returns, in the order asked and once each, the
/// records whose pending change an incoming copy would be merged into
/// (pending or failed, not in flight, not a delete), with their bases.
pub async fn pending_changes_are_the_merge_candidates_with_their_bases(store: &dyn SyncStore) {
    synced(store, "upd", json!({"id": "upd", "v": 1}), T0).await;
    synced(store, "del", json!({"id": "del"}), T0).await;
    synced(store, "done", json!({"id": "done"}), T0).await;
    store
        .save(change("tasks", "fly", SyncOperation::Create), T0)
        .await
        .unwrap();
    assert_eq!(store.claim_ready(T0, 10).await.unwrap().len(), 1);
    store
        .save(
            change_with(
                "tasks",
                "upd",
                SyncOperation::Update,
                json!({"id": "upd", "v": 2}),
            ),
            T1,
        )
        .await
        .unwrap();
    store
        .save(change("tasks", "del", SyncOperation::Delete), T1)
        .await
        .unwrap();
    store
        .save(change("tasks", "new", SyncOperation::Create), T1)
        .await
        .unwrap();
    store
        .save(change("notes", "upd", SyncOperation::Create), T1)
        .await
        .unwrap();

    let ids: Vec<sync_core::RecordId> = ["none", "upd", "del", "fly", "done", "new", "upd"]
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    let found = store.pending_changes(&tasks(), &ids).await.unwrap();
    let upd = item(store, "upd").await.unwrap();
    let new = item(store, "new").await.unwrap();
    let summary: Vec<_> = found
        .iter()
        .map(|change| {
            (
                change.id.to_string(),
                change.item_version,
                json!(change.payload),
                change
                    .base
                    .as_ref()
                    .map(|base| (json!(base.data), base.version.clone())),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "upd".to_owned(),
                upd.version,
                json!({"id": "upd", "v": 2}),
                Some((json!({"id": "upd", "v": 1}), Some("1".to_owned())))
            ),
            ("new".to_owned(), new.version, json!(new.payload), None),
        ]
    );
    assert!(store.pending_changes(&tasks(), &[]).await.unwrap().is_empty());
}
