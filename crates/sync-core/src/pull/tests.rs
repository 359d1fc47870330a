use serde_json::json;

use super::*;
use crate::ids::{AttemptId, OperationId};

fn doc(value: serde_json::Value) -> JsonObject {
    match value {
        serde_json::Value::Object(object) => object,
        _ => unreachable!("test documents are objects"),
    }
}

fn id() -> RecordId {
    RecordId::from(1u64)
}

fn item(
    operation: SyncOperation,
    status: SyncStatus,
    possibly_applied: bool,
    in_flight: bool,
) -> SyncQueueItem {
    SyncQueueItem {
        entity: EntityName::new("tasks").unwrap(),
        id: id(),
        operation,
        payload: doc(json!({"title": "mine", "done": false})),
        status,
        retry_count: 1,
        created_at: Timestamp::from_millis(10),
        updated_at: Timestamp::from_millis(10),
        last_error: None,
        last_error_kind: None,
        last_error_http_status: None,
        version: 3,
        operation_id: OperationId::generate(),
        possibly_applied,
        in_flight: in_flight.then(|| AttemptId::from_u64(7)),
        next_attempt_at: (status != SyncStatus::Synced).then_some(Timestamp::from_millis(10)),
        not_before: None,
    }
}

fn upsert() -> PulledChange {
    PulledChange::Upsert {
        id: id(),
        data: doc(json!({"title": "theirs", "done": true})),
        version: Some("\"v9\"".into()),
    }
}

fn tombstone() -> PulledChange {
    PulledChange::Tombstone { id: id() }
}

fn servers_copy() -> CopyWrite {
    CopyWrite::Put(ServerCopy {
        data: doc(json!({"title": "theirs", "done": true})),
        version: Some("\"v9\"".into()),
    })
}

const NOW: Timestamp = Timestamp::from_millis(100);

fn put(plan: &PulledPlan) -> &SyncQueueItem {
    match &plan.queue {
        QueueWrite::Put(item) => item,
        other => panic!("expected a rewritten item, got {other:?}"),
    }
}

#[test]
fn without_an_item_the_servers_copy_is_taken() {
    let plan = plan_pulled(None, false, &upsert(), None, NOW);
    assert_eq!(
        plan.document,
        Some(DocumentWrite::Upsert(doc(
            json!({"title": "theirs", "done": true})
        )))
    );
    assert_eq!(plan.copy, servers_copy());
    assert_eq!(plan.queue, QueueWrite::Keep);
    assert_eq!(plan.effect, PullEffect::Upserted);

    let plan = plan_pulled(None, true, &tombstone(), None, NOW);
    assert_eq!(plan.document, Some(DocumentWrite::Remove));
    assert_eq!(plan.copy, CopyWrite::Remove);
    assert_eq!(plan.effect, PullEffect::Deleted);

    let plan = plan_pulled(None, false, &tombstone(), None, NOW);
    assert_eq!(plan.document, None);
    assert_eq!(plan.effect, PullEffect::Unchanged);
}

#[test]
fn a_synced_item_keeps_its_entry_only_while_it_tells_the_truth() {
    let created = item(SyncOperation::Create, SyncStatus::Synced, false, false);
    let plan = plan_pulled(Some(&created), true, &upsert(), None, NOW);
    assert_eq!(plan.queue, QueueWrite::Keep);
    assert_eq!(plan.effect, PullEffect::Upserted);
    let plan = plan_pulled(Some(&created), true, &tombstone(), None, NOW);
    assert_eq!(
        plan.queue,
        QueueWrite::Remove,
        "a synced create under a tombstone lies"
    );
    assert_eq!(plan.document, Some(DocumentWrite::Remove));

    let deleted = item(SyncOperation::Delete, SyncStatus::Synced, false, false);
    let plan = plan_pulled(Some(&deleted), false, &upsert(), None, NOW);
    assert_eq!(
        plan.queue,
        QueueWrite::Remove,
        "a synced delete under an upsert lies"
    );
    assert!(matches!(plan.document, Some(DocumentWrite::Upsert(_))));
    let plan = plan_pulled(Some(&deleted), false, &tombstone(), None, NOW);
    assert_eq!(plan.queue, QueueWrite::Keep);
}

#[test]
fn an_item_in_flight_is_left_to_its_attempt() {
    for operation in [
        SyncOperation::Create,
        SyncOperation::Update,
        SyncOperation::Delete,
    ] {
        let flying = item(operation, SyncStatus::Syncing, false, true);
        for change in [upsert(), tombstone()] {
            let plan = plan_pulled(Some(&flying), true, &change, None, NOW);
            assert_eq!(plan.document, None);
            assert_eq!(plan.queue, QueueWrite::Keep);
            assert_eq!(plan.copy, CopyWrite::Keep);
            assert_eq!(plan.effect, PullEffect::Skipped);
        }
    }
}

#[test]
fn a_pending_create_meeting_an_upsert_becomes_an_update_and_keeps_its_document() {
    for (status, possibly_applied) in [(SyncStatus::Pending, false), (SyncStatus::Failed, true)] {
        let pending = item(SyncOperation::Create, status, possibly_applied, false);
        let plan = plan_pulled(Some(&pending), true, &upsert(), None, NOW);
        assert_eq!(plan.document, None, "the pending document stays");
        assert_eq!(plan.copy, CopyWrite::Keep, "no merge: the old base stays");
        assert_eq!(plan.effect, PullEffect::Skipped);
        let after = put(&plan);
        assert_eq!(after.operation, SyncOperation::Update);
        assert!(!after.possibly_applied);
        assert_eq!(after.payload, pending.payload);
        assert_eq!(after.version, pending.version + 1);
        assert_eq!(after.status, status, "a failed item keeps its failure");
        assert_ne!(
            after.operation_id, pending.operation_id,
            "a new request, a new key"
        );
    }
}

#[test]
fn a_pending_update_meeting_a_tombstone_becomes_a_create() {
    let pending = item(SyncOperation::Update, SyncStatus::Pending, false, false);
    let plan = plan_pulled(Some(&pending), true, &tombstone(), None, NOW);
    assert_eq!(plan.document, None);
    assert_eq!(plan.copy, CopyWrite::Remove);
    let after = put(&plan);
    assert_eq!(after.operation, SyncOperation::Create);
    assert!(!after.possibly_applied);
}

#[test]
fn a_pending_update_meeting_an_upsert_without_a_merge_changes_nothing() {
    let pending = item(SyncOperation::Update, SyncStatus::Pending, false, false);
    let plan = plan_pulled(Some(&pending), true, &upsert(), None, NOW);
    assert_eq!(plan.queue, QueueWrite::Keep);
    assert_eq!(plan.copy, CopyWrite::Keep);
    assert_eq!(plan.document, None);
}

#[test]
fn a_pending_delete_meeting_a_tombstone_is_done_and_one_meeting_an_upsert_stays() {
    let pending = item(SyncOperation::Delete, SyncStatus::Failed, true, false);
    let plan = plan_pulled(Some(&pending), false, &tombstone(), None, NOW);
    let after = put(&plan);
    assert_eq!(after.status, SyncStatus::Synced);
    assert_eq!(after.next_attempt_at, None);
    let plan = plan_pulled(Some(&pending), false, &upsert(), None, NOW);
    let after = put(&plan);
    assert_eq!(after.operation, SyncOperation::Delete);
    assert!(!after.possibly_applied, "the server holds it: a plain delete");
    assert_eq!(plan.document, None, "the deleted record does not come back");
}

#[test]
fn a_current_merge_replaces_the_pending_document_and_becomes_the_base() {
    let pending = item(SyncOperation::Update, SyncStatus::Pending, false, false);
    let merged = doc(json!({"title": "mine", "done": true}));
    let merge = PreparedMerge {
        id: id(),
        item_version: pending.version,
        document: merged.clone(),
    };
    let plan = plan_pulled(Some(&pending), true, &upsert(), Some(&merge), NOW);
    assert_eq!(plan.document, Some(DocumentWrite::Upsert(merged.clone())));
    assert_eq!(plan.copy, servers_copy());
    assert_eq!(plan.effect, PullEffect::Merged);
    let after = put(&plan);
    assert_eq!(after.payload, merged);
    assert_eq!(after.operation, SyncOperation::Update);
    assert_ne!(
        after.operation_id, pending.operation_id,
        "a new payload, a new key"
    );
}

#[test]
fn a_merge_equal_to_the_pending_document_still_moves_the_base() {
    let pending = item(SyncOperation::Update, SyncStatus::Pending, false, false);
    let merge = PreparedMerge {
        id: id(),
        item_version: pending.version,
        document: pending.payload.clone(),
    };
    let plan = plan_pulled(Some(&pending), true, &upsert(), Some(&merge), NOW);
    assert_eq!(plan.document, None);
    assert_eq!(plan.copy, servers_copy());
    assert_eq!(plan.effect, PullEffect::Skipped);
}

#[test]
fn a_merge_made_from_an_older_version_is_ignored() {
    let pending = item(SyncOperation::Update, SyncStatus::Pending, false, false);
    let merge = PreparedMerge {
        id: id(),
        item_version: pending.version - 1,
        document: doc(json!({"stale": true})),
    };
    let plan = plan_pulled(Some(&pending), true, &upsert(), Some(&merge), NOW);
    assert_eq!(plan.document, None);
    assert_eq!(plan.copy, CopyWrite::Keep);
    assert_eq!(plan.queue, QueueWrite::Keep);
}

#[test]
fn merges_go_only_to_live_items_that_send_a_document() {
    assert!(merges_into(&item(
        SyncOperation::Update,
        SyncStatus::Pending,
        false,
        false
    )));
    assert!(merges_into(&item(
        SyncOperation::Create,
        SyncStatus::Failed,
        true,
        false
    )));
    assert!(!merges_into(&item(
        SyncOperation::Delete,
        SyncStatus::Pending,
        false,
        false
    )));
    assert!(!merges_into(&item(
        SyncOperation::Update,
        SyncStatus::Syncing,
        false,
        true
    )));
    assert!(!merges_into(&item(
        SyncOperation::Update,
        SyncStatus::Synced,
        false,
        false
    )));
    let base = ServerCopy {
        data: doc(json!({"title": "base"})),
        version: None,
    };
    let pending = item(SyncOperation::Update, SyncStatus::Pending, false, false);
    let change = pending_change(&pending, Some(base.clone())).unwrap();
    assert_eq!(change.item_version, 3);
    assert_eq!(change.base, Some(base));
}

fn page(more: bool, listing: bool, cursor: Option<&str>) -> PullPage {
    PullPage {
        changes: Vec::new(),
        cursor: cursor.map(|cursor| PullCursor::new(cursor).unwrap()),
        more,
        listing,
    }
}

#[test]
fn a_delta_page_moves_the_cursor_and_an_empty_one_keeps_it() {
    let state = PullState {
        cursor: Some(PullCursor::new("5").unwrap()),
        ..PullState::default()
    };
    let plan = plan_page(&state, &page(true, false, Some("9")), NOW);
    assert_eq!(plan.after.cursor, Some(PullCursor::new("9").unwrap()));
    assert_eq!((plan.mark, plan.sweep), (None, None));
    let plan = plan_page(&state, &page(false, false, None), NOW);
    assert_eq!(plan.after, state);
}

/// A change feed's first pull (no cursor yet) lists everything the server
/// holds: it is a listing, whose last page sweeps what it did not show
/// (records deleted on the server before this device ever pulled, their
/// tombstones maybe long purged). The feed's cursor is kept after it.
#[test]
fn a_first_pull_from_no_cursor_is_a_full_listing() {
    let first = plan_page(&PullState::default(), &page(true, false, Some("3")), NOW);
    let listing = Listing {
        generation: 1,
        started_at: NOW,
    };
    assert_eq!(first.after.listing, Some(listing));
    assert_eq!(
        (first.mark, first.sweep),
        (Some(1), None),
        "nothing swept mid-way"
    );
    let last = plan_page(&first.after, &page(false, false, Some("6")), NOW);
    assert_eq!((last.mark, last.sweep), (Some(1), Some(listing)));
    assert_eq!(
        last.after,
        PullState {
            cursor: Some(PullCursor::new("6").unwrap()),
            generation: 1,
            listing: None,
        },
        "deltas go on from the feed's cursor"
    );
    // A single page from no cursor starts and ends its listing.
    let only = plan_page(&PullState::default(), &page(false, false, Some("2")), NOW);
    assert_eq!((only.mark, only.sweep), (Some(1), Some(listing)));
}

#[test]
fn a_snapshot_marks_its_pages_sweeps_at_its_end_and_starts_over() {
    let start = PullState {
        generation: 4,
        ..PullState::default()
    };
    let first = plan_page(&start, &page(true, true, Some("100")), NOW);
    let listing = Listing {
        generation: 5,
        started_at: NOW,
    };
    assert_eq!(first.after.listing, Some(listing));
    assert_eq!(first.mark, Some(5));
    assert_eq!(first.sweep, None);
    let later = Timestamp::from_millis(200);
    let last = plan_page(&first.after, &page(false, true, None), later);
    assert_eq!(last.mark, Some(5));
    assert_eq!(last.sweep, Some(listing), "the listing keeps its start time");
    assert_eq!(
        last.after,
        PullState {
            cursor: None,
            generation: 5,
            listing: None
        }
    );
}

#[test]
fn a_reload_after_an_expired_cursor_ends_on_the_feeds_cursor() {
    let state = PullState {
        cursor: Some(PullCursor::new("77").unwrap()),
        generation: 1,
        listing: None,
    };
    let restarted = restart_listing(&state, NOW);
    assert_eq!(restarted.cursor, None);
    assert_eq!(restarted.generation, 2);
    let middle = plan_page(&restarted, &page(true, false, Some("40")), NOW);
    assert_eq!(middle.mark, Some(2));
    assert_eq!(middle.sweep, None);
    let last = plan_page(&middle.after, &page(false, false, Some("90")), NOW);
    assert_eq!(last.sweep.map(|listing| listing.generation), Some(2));
    assert_eq!(last.after.cursor, Some(PullCursor::new("90").unwrap()));
    assert_eq!(last.after.listing, None);
}

#[test]
fn the_sweep_spares_shown_pending_and_recently_pushed_records() {
    let listing = Listing {
        generation: 3,
        started_at: Timestamp::from_millis(50),
    };
    assert!(sweeps(None, None, &listing));
    assert!(sweeps(None, Some(2), &listing));
    assert!(!sweeps(None, Some(3), &listing), "shown by this listing");
    let pending = item(SyncOperation::Update, SyncStatus::Pending, false, false);
    assert!(!sweeps(Some(&pending), None, &listing));
    let old_synced = item(SyncOperation::Create, SyncStatus::Synced, false, false);
    assert!(
        sweeps(Some(&old_synced), None, &listing),
        "synced before the listing"
    );
    let mut fresh = old_synced.clone();
    fresh.updated_at = Timestamp::from_millis(60);
    assert!(!sweeps(Some(&fresh), None, &listing), "pushed during the listing");
}

#[test]
fn cursors_are_checked_and_not_printed() {
    assert!(PullCursor::new("").is_err());
    assert!(PullCursor::new("a\nb").is_err());
    assert!(PullCursor::new("x".repeat(MAX_CURSOR_BYTES + 1)).is_err());
    let cursor = PullCursor::new("secret-position").unwrap();
    assert_eq!(format!("{cursor:?}"), "PullCursor(15 bytes)");
}
