//! One named test per cell of the coalescing table in
//! `docs/queue-state-machine.md`: existing queue state × new local change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use serde_json::json;
use sync_core::coalesce::{DocumentWrite, QueueWrite, SaveContext, ServerView, plan_save};
use sync_core::{
    AttemptId, ErrorKind, JsonObject, LocalChange, OperationId, SyncOperation, SyncQueueItem, SyncStatus,
    Timestamp,
};

const CREATED: Timestamp = Timestamp::from_millis(1_000);
const NOW: Timestamp = Timestamp::from_millis(5_000);

/// The existing state of a record before the change: the rows of the table.
#[derive(Clone, Copy, Debug)]
enum Row {
    NoItemNoDocument,
    NoItemWithDocument,
    CreateNeverAttempted,
    CreateFailedNotApplied,
    CreateFailedPossiblyApplied,
    CreateInFlight,
    CreateSynced,
    UpdatePending,
    UpdateInFlight,
    UpdateSynced,
    DeletePending,
    DeletePossiblyApplied,
    DeleteInFlight,
    DeleteSynced,
}

fn payload(value: &str) -> JsonObject {
    sync_core::model::payload_from_value(json!({ "title": value })).unwrap()
}

fn item(
    operation: SyncOperation,
    status: SyncStatus,
    possibly_applied: bool,
    in_flight: bool,
) -> SyncQueueItem {
    let failed = status == SyncStatus::Failed;
    SyncQueueItem {
        entity: "tasks".parse().unwrap(),
        id: "1".parse().unwrap(),
        operation,
        payload: payload("old"),
        status,
        retry_count: u32::from(failed) * 2,
        created_at: CREATED,
        updated_at: CREATED,
        last_error: failed.then(|| "HTTP 503".to_owned()),
        last_error_kind: failed.then_some(ErrorKind::Transient),
        last_error_http_status: failed.then_some(503),
        version: 7,
        operation_id: OperationId::new("old-op").unwrap(),
        possibly_applied,
        in_flight: in_flight.then(|| AttemptId::from_u64(99)),
        next_attempt_at: (!in_flight && status != SyncStatus::Synced).then_some(CREATED),
        not_before: None,
    }
}

/// The existing queue item and whether a local document exists.
fn existing(row: Row) -> (Option<SyncQueueItem>, bool) {
    use SyncOperation::{Create, Delete, Update};
    use SyncStatus::{Failed, Pending, Synced, Syncing};
    match row {
        Row::NoItemNoDocument => (None, false),
        Row::NoItemWithDocument => (None, true),
        Row::CreateNeverAttempted => (Some(item(Create, Pending, false, false)), true),
        Row::CreateFailedNotApplied => (Some(item(Create, Failed, false, false)), true),
        Row::CreateFailedPossiblyApplied => (Some(item(Create, Failed, true, false)), true),
        Row::CreateInFlight => (Some(item(Create, Syncing, false, true)), true),
        Row::CreateSynced => (Some(item(Create, Synced, false, false)), true),
        Row::UpdatePending => (Some(item(Update, Pending, false, false)), true),
        Row::UpdateInFlight => (Some(item(Update, Syncing, false, true)), true),
        Row::UpdateSynced => (Some(item(Update, Synced, false, false)), true),
        Row::DeletePending => (Some(item(Delete, Pending, false, false)), false),
        Row::DeletePossiblyApplied => (Some(item(Delete, Failed, true, false)), false),
        Row::DeleteInFlight => (Some(item(Delete, Syncing, false, true)), false),
        Row::DeleteSynced => (Some(item(Delete, Synced, false, false)), false),
    }
}

/// What a cell must produce.
#[derive(Debug, PartialEq)]
enum Expect {
    /// A pending item sending this operation, with this uncertainty flag.
    Send(SyncOperation, bool),
    /// The queue row disappears.
    Remove,
    /// The queue row is left as it was.
    Keep,
}

fn check(row: Row, operation: SyncOperation, view: ServerView, expected: Expect) {
    let (before, local_exists) = existing(row);
    let change = LocalChange::new("tasks", "1", json!({ "title": "new" }), operation).unwrap();
    let context = SaveContext {
        now: NOW,
        operation_id: OperationId::new("new-op").unwrap(),
    };
    let plan = plan_save(before.as_ref(), local_exists, change, context);
    assert_eq!(plan.view, view, "{row:?} + {operation}: server view");

    let expected_document = match operation {
        SyncOperation::Delete => DocumentWrite::Remove,
        _ => DocumentWrite::Upsert(payload("new")),
    };
    assert_eq!(
        plan.document, expected_document,
        "{row:?} + {operation}: document"
    );

    match (expected, plan.queue) {
        (Expect::Remove, QueueWrite::Remove) | (Expect::Keep, QueueWrite::Keep) => {}
        (Expect::Send(op, flag), QueueWrite::Put(after)) => {
            assert_eq!(
                (after.operation, after.possibly_applied),
                (op, flag),
                "{row:?} + {operation}"
            );
            assert_eq!(after.status, SyncStatus::Pending);
            assert_eq!(after.payload, payload("new"));
            assert_eq!(
                after.operation_id.as_str(),
                "new-op",
                "every change gets a new operation id"
            );
            assert_eq!(after.next_attempt_at, Some(NOW));
            assert_eq!(after.updated_at, NOW);
            let live = before
                .as_ref()
                .filter(|b| b.status != SyncStatus::Synced || b.is_in_flight());
            match (&before, live) {
                (Some(before), Some(_)) => {
                    assert_eq!(after.version, before.version + 1, "version bumps");
                    assert_eq!(
                        after.created_at, before.created_at,
                        "keeps its place in the queue"
                    );
                    assert_eq!(after.retry_count, before.retry_count, "failure history is kept");
                    assert_eq!(after.last_error, before.last_error);
                    assert_eq!(
                        (after.last_error_kind, after.last_error_http_status),
                        (before.last_error_kind, before.last_error_http_status)
                    );
                    assert_eq!(after.in_flight, before.in_flight, "an attempt out stays out");
                }
                (Some(before), None) => {
                    assert_eq!(after.version, before.version + 1, "version keeps rising");
                    assert_eq!(after.created_at, NOW, "a new entry after a synced one");
                    assert_eq!((after.retry_count, after.last_error.as_deref()), (0, None));
                    assert_eq!(
                        (after.last_error_kind, after.last_error_http_status),
                        (None, None)
                    );
                    assert!(!after.is_in_flight());
                }
                (None, _) => {
                    assert_eq!((after.version, after.created_at, after.retry_count), (1, NOW, 0));
                    assert!(!after.is_in_flight());
                }
            }
        }
        (expected, actual) => panic!("{row:?} + {operation}: expected {expected:?}, got {actual:?}"),
    }
}

macro_rules! cells {
    ($($name:ident: $row:ident + $op:ident => $view:ident, $expect:expr;)*) => {
        $(
            #[test]
            fn $name() {
                #[allow(unused_imports)]
                use {Expect::{Keep, Remove, Send}, SyncOperation::{Create, Delete, Update}};
                check(Row::$row, SyncOperation::$op, ServerView::$view, $expect);
            }
        )*
    };
}

cells! {
    // No queue item and no local document: the app's operation states what the server has.
    new_record_create_is_sent_as_create: NoItemNoDocument + Create => Absent, Send(Create, false);
    new_record_update_is_sent_as_update: NoItemNoDocument + Update => Present, Send(Update, false);
    unknown_record_delete_is_sent_as_uncertain_delete: NoItemNoDocument + Delete => Unknown, Send(Delete, true);

    // A local document without a queue item was synced: the server has it.
    synced_document_create_becomes_update: NoItemWithDocument + Create => Present, Send(Update, false);
    synced_document_update_is_update: NoItemWithDocument + Update => Present, Send(Update, false);
    synced_document_delete_is_delete: NoItemWithDocument + Delete => Present, Send(Delete, false);

    // The reference's rules: a create never attempted absorbs later changes.
    create_never_attempted_then_create_is_one_create: CreateNeverAttempted + Create => Absent, Send(Create, false);
    create_never_attempted_then_update_is_one_create: CreateNeverAttempted + Update => Absent, Send(Create, false);
    create_never_attempted_then_delete_disappears: CreateNeverAttempted + Delete => Absent, Remove;

    // A create whose attempt certainly did not apply (offline, 4xx) is still unsent.
    create_failed_not_applied_then_create_stays_create: CreateFailedNotApplied + Create => Absent, Send(Create, false);
    create_failed_not_applied_then_update_stays_create: CreateFailedNotApplied + Update => Absent, Send(Create, false);
    create_failed_not_applied_then_delete_disappears: CreateFailedNotApplied + Delete => Absent, Remove;

    // Reference data-loss cell (1): the create may be on the server or not.
    // It stays a create that checks first, never a bare update.
    create_possibly_applied_then_create_checks_first: CreateFailedPossiblyApplied + Create => Unknown, Send(Create, true);
    create_possibly_applied_then_update_stays_checked_create: CreateFailedPossiblyApplied + Update => Unknown, Send(Create, true);
    create_possibly_applied_then_delete_is_sent_explicitly: CreateFailedPossiblyApplied + Delete => Unknown, Send(Delete, true);

    // A create in flight: its outcome is unknown until it reports back.
    create_in_flight_then_create_checks_first: CreateInFlight + Create => Unknown, Send(Create, true);
    create_in_flight_then_update_checks_first: CreateInFlight + Update => Unknown, Send(Create, true);
    create_in_flight_then_delete_is_sent_explicitly: CreateInFlight + Delete => Unknown, Send(Delete, true);

    // A synced create: the server has the record.
    create_synced_then_create_becomes_update: CreateSynced + Create => Present, Send(Update, false);
    create_synced_then_update_is_update: CreateSynced + Update => Present, Send(Update, false);
    create_synced_then_delete_is_delete: CreateSynced + Delete => Present, Send(Delete, false);

    // Updates only exist for records the server has; applied or not, it still has them.
    update_pending_then_create_is_update: UpdatePending + Create => Present, Send(Update, false);
    update_pending_then_update_is_one_update: UpdatePending + Update => Present, Send(Update, false);
    update_pending_then_delete_is_delete: UpdatePending + Delete => Present, Send(Delete, false);
    update_in_flight_then_create_is_update: UpdateInFlight + Create => Present, Send(Update, false);
    update_in_flight_then_update_is_update: UpdateInFlight + Update => Present, Send(Update, false);
    update_in_flight_then_delete_is_delete: UpdateInFlight + Delete => Present, Send(Delete, false);
    update_synced_then_create_is_update: UpdateSynced + Create => Present, Send(Update, false);
    update_synced_then_update_is_update: UpdateSynced + Update => Present, Send(Update, false);
    update_synced_then_delete_is_delete: UpdateSynced + Delete => Present, Send(Delete, false);

    // A delete not yet applied: the server still has the record.
    delete_pending_then_create_is_update: DeletePending + Create => Present, Send(Update, false);
    delete_pending_then_update_is_update: DeletePending + Update => Present, Send(Update, false);
    delete_pending_then_delete_is_one_delete: DeletePending + Delete => Present, Send(Delete, false);

    // A delete that may have been applied, or is in flight: check before creating.
    delete_possibly_applied_then_create_checks_first: DeletePossiblyApplied + Create => Unknown, Send(Create, true);
    delete_possibly_applied_then_update_checks_first: DeletePossiblyApplied + Update => Unknown, Send(Create, true);
    delete_possibly_applied_then_delete_is_uncertain_delete: DeletePossiblyApplied + Delete => Unknown, Send(Delete, true);
    delete_in_flight_then_create_checks_first: DeleteInFlight + Create => Unknown, Send(Create, true);
    delete_in_flight_then_update_checks_first: DeleteInFlight + Update => Unknown, Send(Create, true);
    delete_in_flight_then_delete_is_uncertain_delete: DeleteInFlight + Delete => Unknown, Send(Delete, true);

    // A synced delete: the server no longer has the record.
    delete_synced_then_create_is_create: DeleteSynced + Create => Absent, Send(Create, false);
    delete_synced_then_update_is_create: DeleteSynced + Update => Absent, Send(Create, false);
    delete_synced_then_delete_changes_nothing: DeleteSynced + Delete => Absent, Keep;
}

#[test]
fn server_retry_after_survives_a_new_local_change() {
    let (before, _) = existing(Row::CreateFailedNotApplied);
    let mut before = before.unwrap();
    before.not_before = Some(Timestamp::from_millis(60_000));
    let change = LocalChange::new("tasks", "1", json!({}), SyncOperation::Update).unwrap();
    let plan = plan_save(Some(&before), true, change, SaveContext::at(NOW));
    let QueueWrite::Put(after) = plan.queue else {
        panic!("expected a queue write, got {:?}", plan.queue)
    };
    assert_eq!(after.not_before, Some(Timestamp::from_millis(60_000)));
    assert!(!after.is_ready(NOW));
    assert!(after.is_ready(Timestamp::from_millis(60_000)));
}
