//! Full listings: the records they show are marked with their
//! generation, and their last page sweeps the records of the entity they
//! did not show (but for pending changes and pushes applied meanwhile).

use serde_json::json;
use sync_core::pull::{PullCursor, PullState};
use sync_core::{SyncOperation, SyncStore};

use super::super::{T0, T1, T2, T3, attempt_with, change, key};
use super::{T4, applied, copy, counts, document, item, listing, page, pull, synced, tasks, upsert};

/// A full listing marks the records it shows; its last page sweeps the
/// records of the entity it did not show, except those with a pending
/// change and those whose queue item changed after it started (a push
/// applied meanwhile). The next listing marks and sweeps anew.
pub async fn a_listing_marks_what_it_shows_and_sweeps_the_rest(store: &dyn SyncStore) {
    let before = vec![
        upsert("shown", json!({"id": "shown"}), Some("1")),
        upsert("shown_late", json!({"id": "shown_late"}), Some("1")),
        upsert("gone", json!({"id": "gone"}), Some("1")),
    ];
    let mut delta = page(before);
    delta.cursor = Some(PullCursor::new("delta-1").unwrap());
    pull(store, delta, Vec::new(), T0).await.unwrap();
    synced(store, "old_synced", json!({"id": "old_synced"}), T0).await;
    store
        .save(change("tasks", "pushed", SyncOperation::Create), T0)
        .await
        .unwrap();
    store
        .save(change("notes", "other", SyncOperation::Create), T0)
        .await
        .unwrap();

    let counted = pull(
        store,
        listing(
            vec![upsert("shown", json!({"id": "shown", "v": 2}), Some("2"))],
            true,
        ),
        Vec::new(),
        T1,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(1, 0, 0, 0));
    let state = store.pull_state(&tasks()).await.unwrap();
    assert_eq!(
        state.listing.map(|l| (l.generation, l.started_at)),
        Some((2, T1)),
        "a listing in progress (the first pull, from no cursor, was listing 1)"
    );
    assert!(
        document(store, "gone").await.is_some(),
        "nothing swept mid-listing"
    );

    // A push applied during the listing, and a change saved after it began.
    let pushed = attempt_with(store, applied(Some("1")), T2).await;
    assert_eq!(pushed.key, key("tasks", "pushed"));
    store
        .save(change("tasks", "pending", SyncOperation::Create), T2)
        .await
        .unwrap();

    let counted = pull(
        store,
        listing(
            vec![upsert("shown_late", json!({"id": "shown_late"}), Some("1"))],
            false,
        ),
        Vec::new(),
        T3,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(1, 2, 0, 0), "two records swept");
    assert_eq!(
        (document(store, "gone").await, copy(store, "gone").await),
        (None, None)
    );
    assert_eq!(
        (
            document(store, "old_synced").await,
            item(store, "old_synced").await
        ),
        (None, None),
        "swept, with its synced item that told the wrong story"
    );
    for id in ["shown", "shown_late", "pending", "pushed"] {
        assert!(document(store, id).await.is_some(), "{id} kept");
    }
    assert!(item(store, "pending").await.is_some());
    assert_eq!(
        store.records(&"notes".parse().unwrap()).await.unwrap().len(),
        1,
        "other entities are never swept"
    );
    assert_eq!(
        store.pull_state(&tasks()).await.unwrap(),
        PullState {
            cursor: None,
            generation: 2,
            listing: None
        },
        "a snapshot's cursor starts over"
    );

    // The next listing: what the first showed counts no more.
    let counted = pull(
        store,
        listing(
            vec![upsert("shown", json!({"id": "shown", "v": 2}), Some("2"))],
            false,
        ),
        Vec::new(),
        T4,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(1, 2, 0, 0), "shown_late and pushed swept");
    let mut left: Vec<String> = store
        .records(&tasks())
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.id.to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["pending", "shown"]);
    assert_eq!(store.pull_state(&tasks()).await.unwrap().generation, 3);
}

/// A record a listing showed while a local change to it was pending (its
/// document kept) is marked too: once the change is pushed and its item
/// cleared, the listing's sweep keeps it.
pub async fn a_listing_marks_the_records_it_showed_under_a_pending_change(store: &dyn SyncStore) {
    pull(
        store,
        page(vec![upsert("k", json!({"id": "k"}), Some("1"))]),
        Vec::new(),
        T0,
    )
    .await
    .unwrap();
    store
        .save(change("tasks", "k", SyncOperation::Update), T0)
        .await
        .unwrap();
    let counted = pull(
        store,
        listing(vec![upsert("k", json!({"id": "k", "v": 2}), Some("2"))], true),
        Vec::new(),
        T1,
    )
    .await
    .unwrap();
    assert_eq!(counted, counts(0, 0, 1, 0));
    attempt_with(store, applied(Some("3")), T2).await;
    assert_eq!(store.clear_synced().await.unwrap(), 1);
    let counted = pull(store, listing(Vec::new(), false), Vec::new(), T3)
        .await
        .unwrap();
    assert_eq!(counted, counts(0, 0, 0, 0), "nothing swept");
    assert!(document(store, "k").await.is_some(), "the listing showed it");
}

/// A first pull (the store holds no cursor) is a full listing: its last
/// page sweeps the local records the server did not list, such as records
/// synced before pulls were set up and deleted on the server since (their
/// tombstones long purged); pending changes stay. Mid-way, nothing goes.
pub async fn a_first_pull_sweeps_what_the_server_no_longer_has(store: &dyn SyncStore) {
    synced(store, "kept", json!({"id": "kept"}), T0).await;
    synced(store, "deleted_meanwhile", json!({"id": "deleted_meanwhile"}), T0).await;
    store
        .save(change("tasks", "pending", SyncOperation::Create), T0)
        .await
        .unwrap();
    let mut first = page(vec![upsert("new", json!({"id": "new"}), Some("1"))]);
    first.cursor = Some(PullCursor::new("1").unwrap());
    first.more = true;
    let counted = pull(store, first, Vec::new(), T1).await.unwrap();
    assert_eq!(counted, counts(1, 0, 0, 0));
    assert!(
        document(store, "deleted_meanwhile").await.is_some(),
        "nothing swept mid-listing"
    );
    let mut last = page(vec![upsert("kept", json!({"id": "kept", "v": 2}), Some("2"))]);
    last.cursor = Some(PullCursor::new("2").unwrap());
    let counted = pull(store, last, Vec::new(), T2).await.unwrap();
    assert_eq!(counted, counts(1, 1, 0, 0), "one record swept");
    assert_eq!(document(store, "deleted_meanwhile").await, None);
    for id in ["kept", "new", "pending"] {
        assert!(document(store, id).await.is_some(), "{id} kept");
    }
    let state = store.pull_state(&tasks()).await.unwrap();
    assert_eq!(
        (state.cursor.as_ref().map(PullCursor::as_str), state.listing),
        (Some("2"), None),
        "deltas go on from the feed's cursor"
    );
    // Deltas after it sweep nothing.
    let mut delta = page(Vec::new());
    delta.cursor = Some(PullCursor::new("3").unwrap());
    let counted = pull(store, delta, Vec::new(), T3).await.unwrap();
    assert_eq!(counted, counts(0, 0, 0, 0));
    assert_eq!(store.records(&tasks()).await.unwrap().len(), 3);
}

/// A record a listing showed, then replaced by the rename of a record
/// created under a temporary id (the same record: the create's answer
/// was lost, the listing brought it), keeps the listing's mark: the
/// listing's end does not sweep it, even with its synced item cleared.
pub async fn a_renamed_record_keeps_the_mark_of_the_listing_that_showed_it(store: &dyn SyncStore) {
    let temporary = sync_core::RecordId::temporary();
    store
        .save(
            super::super::change_with(
                "tasks",
                temporary.as_str(),
                SyncOperation::Create,
                json!({"title": "new"}),
            ),
            T0,
        )
        .await
        .unwrap();
    // The create's answer is lost: possibly applied.
    let lost = sync_core::attempt::AttemptOutcome::Released {
        possibly_applied: true,
    };
    attempt_with(store, lost, T0).await;
    pull(
        store,
        listing(vec![upsert("17", json!({"id": 17, "title": "new"}), None)], true),
        Vec::new(),
        T1,
    )
    .await
    .unwrap();
    let renamed = sync_core::attempt::AttemptOutcome::AppliedAs {
        assigned: sync_core::rename::assigned_id(Some(&json!(17)), Vec::new()).unwrap(),
        replace_local_with: None,
        server_version: None,
    };
    attempt_with(store, renamed, T2).await;
    store.clear_synced().await.unwrap();
    assert_eq!(item(store, "17").await, None);
    pull(store, listing(Vec::new(), false), Vec::new(), T3)
        .await
        .unwrap();
    assert_eq!(document(store, "17").await, Some(json!({"title": "new"})));
    assert_eq!(
        store
            .resolve_id(&key("tasks", temporary.as_str()))
            .await
            .unwrap()
            .as_str(),
        "17"
    );
}
