#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use serde_json::json;

use super::*;
use crate::clock::Timestamp;
use crate::ids::{AttemptId, EntityName, OperationId, RecordId};
use crate::model::{JsonObject, SyncOperation};

fn doc(value: serde_json::Value) -> JsonObject {
    match value {
        serde_json::Value::Object(object) => object,
        _ => unreachable!("test documents are objects"),
    }
}

fn item(
    operation: SyncOperation,
    status: SyncStatus,
    possibly_applied: bool,
    in_flight: bool,
) -> SyncQueueItem {
    SyncQueueItem {
        entity: EntityName::new("tasks").unwrap(),
        id: RecordId::from(1u64),
        operation,
        payload: doc(json!({"title": "mine"})),
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
        next_attempt_at: None,
        not_before: None,
    }
}

fn copy() -> ServerCopy {
    ServerCopy {
        data: doc(json!({"title": "theirs"})),
        version: Some("\"4\"".to_owned()),
    }
}

use SyncOperation::{Create, Delete, Update};
use SyncStatus::{Failed, Pending, Synced, Syncing};

#[test]
fn nothing_queued_changes_nothing() {
    for revert in [false, true] {
        assert_eq!(
            plan_discard(None, Some(&copy()), revert).unwrap(),
            DiscardPlan::nothing()
        );
        let synced = item(Update, Synced, false, false);
        assert_eq!(
            plan_discard(Some(&synced), Some(&copy()), revert).unwrap(),
            DiscardPlan::nothing()
        );
    }
}

#[test]
fn an_attempt_in_flight_is_never_discarded() {
    for operation in [Create, Update, Delete] {
        let out = item(operation, Syncing, false, true);
        assert_eq!(
            plan_discard(Some(&out), Some(&copy()), true),
            Err(DiscardRefusal::InFlight)
        );
        assert_eq!(
            plan_discard(Some(&out), None, false),
            Err(DiscardRefusal::InFlight)
        );
    }
}

#[test]
fn without_revert_the_item_goes_and_the_document_stays() {
    for (operation, status, possibly_applied) in [
        (Create, Pending, false),
        (Create, Failed, true),
        (Update, Failed, false),
        (Delete, Pending, false),
    ] {
        let waiting = item(operation, status, possibly_applied, false);
        let plan = plan_discard(Some(&waiting), Some(&copy()), false).unwrap();
        assert_eq!(
            plan,
            DiscardPlan {
                document: None,
                queue: QueueWrite::Remove,
                copy: CopyWrite::Keep,
                outcome: DiscardOutcome::Dropped,
            },
            "{operation} {status}"
        );
    }
}

#[test]
fn revert_puts_back_the_servers_confirmed_copy() {
    for operation in [Update, Delete] {
        let waiting = item(operation, Failed, false, false);
        let plan = plan_discard(Some(&waiting), Some(&copy()), true).unwrap();
        assert_eq!(plan.outcome, DiscardOutcome::Reverted, "{operation}");
        assert_eq!(plan.document, Some(DocumentWrite::Upsert(copy().data)));
        assert_eq!((plan.queue, plan.copy), (QueueWrite::Remove, CopyWrite::Keep));
    }
}

#[test]
fn revert_of_a_create_the_server_never_applied_removes_the_document() {
    let waiting = item(Create, Failed, false, false);
    let plan = plan_discard(Some(&waiting), None, true).unwrap();
    assert_eq!(
        plan,
        DiscardPlan {
            document: Some(DocumentWrite::Remove),
            queue: QueueWrite::Remove,
            copy: CopyWrite::Remove,
            outcome: DiscardOutcome::Removed,
        }
    );
}

#[test]
fn revert_without_a_known_server_state_keeps_the_document() {
    // An answer was lost: the server may or may not hold the create or
    // the delete; or no confirmed copy is kept for an update.
    for (operation, possibly_applied, kept) in [
        (Create, true, None),
        (Delete, true, Some(copy())),
        (Update, false, None),
    ] {
        let waiting = item(operation, Failed, possibly_applied, false);
        let plan = plan_discard(Some(&waiting), kept.as_ref(), true).unwrap();
        assert_eq!(plan.outcome, DiscardOutcome::Dropped, "{operation}");
        assert_eq!(plan.document, None);
        assert_eq!(plan.queue, QueueWrite::Remove);
    }
}
