//! Named tests for the attempt transitions in `docs/queue-state-machine.md`:
//! claim, outcome (compare-and-set on the version), recovery and re-arming.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use serde_json::json;
use sync_core::attempt::{
    AttemptOutcome, SendPlan, begin_attempt, finish_attempt, rearm_for_pass, recover_interrupted, retry_now,
};
use sync_core::coalesce::{DocumentWrite, QueueWrite, SaveContext, plan_save};
use sync_core::{
    AttemptTicket, ErrorKind, JsonObject, LocalChange, SyncOperation, SyncQueueItem, SyncStatus, Timestamp,
};

const T0: Timestamp = Timestamp::from_millis(1_000);
const T1: Timestamp = Timestamp::from_millis(2_000);
const T2: Timestamp = Timestamp::from_millis(3_000);

fn object(title: &str) -> JsonObject {
    sync_core::model::payload_from_value(json!({ "title": title })).unwrap()
}

/// A fresh queue item for `operation`, as a save on an empty store makes it.
fn saved(operation: SyncOperation, title: &str) -> SyncQueueItem {
    let local_exists = operation != SyncOperation::Create;
    let change = LocalChange::new("tasks", "1", json!({ "title": title }), operation).unwrap();
    match plan_save(None, local_exists, change, SaveContext::at(T0)).queue {
        QueueWrite::Put(item) => item,
        other => panic!("expected an item, got {other:?}"),
    }
}

/// Saves a newer change on top of `item`.
fn save_on(item: &SyncQueueItem, operation: SyncOperation, title: &str) -> SyncQueueItem {
    let change = LocalChange::new("tasks", "1", json!({ "title": title }), operation).unwrap();
    match plan_save(Some(item), true, change, SaveContext::at(T1)).queue {
        QueueWrite::Put(item) => item,
        other => panic!("expected an item, got {other:?}"),
    }
}

fn claim(item: &SyncQueueItem) -> (SyncQueueItem, AttemptTicket) {
    begin_attempt(item, T0).expect("item should be ready")
}

fn put(queue: QueueWrite) -> SyncQueueItem {
    match queue {
        QueueWrite::Put(item) => item,
        other => panic!("expected a queue write, got {other:?}"),
    }
}

fn failed(kind: ErrorKind, possibly_applied: bool) -> AttemptOutcome {
    AttemptOutcome::Failed {
        kind,
        message: "HTTP 503 Service Unavailable".into(),
        http_status: Some(503),
        possibly_applied,
        next_attempt_at: Some(T2),
        not_before: None,
    }
}

fn applied(data: Option<JsonObject>) -> AttemptOutcome {
    AttemptOutcome::Applied {
        replace_local_with: data,
        server_version: None,
    }
}

#[test]
fn claim_marks_syncing_in_flight_and_copies_what_to_send() {
    let item = saved(SyncOperation::Create, "a");
    let (claimed, ticket) = claim(&item);
    assert_eq!(
        (claimed.status, claimed.is_in_flight()),
        (SyncStatus::Syncing, true)
    );
    assert_eq!(ticket.version, item.version);
    assert_eq!(ticket.operation_id, item.operation_id);
    assert_eq!(ticket.payload, object("a"));
    assert_eq!(ticket.plan, SendPlan::Create);
}

#[test]
fn claim_refuses_items_not_ready() {
    let item = saved(SyncOperation::Create, "a");
    let (claimed, _) = claim(&item);
    assert!(begin_attempt(&claimed, T0).is_none(), "in flight");
    let mut later = item.clone();
    later.next_attempt_at = Some(T2);
    assert!(begin_attempt(&later, T1).is_none(), "backoff not over");
    let mut parked = item.clone();
    parked.next_attempt_at = None;
    assert!(begin_attempt(&parked, T2).is_none(), "parked");
    let mut throttled = item;
    throttled.not_before = Some(T2);
    assert!(begin_attempt(&throttled, T1).is_none(), "Retry-After not over");
}

#[test]
fn send_plan_follows_operation_and_uncertainty() {
    assert_eq!(SendPlan::for_item(SyncOperation::Create, false), SendPlan::Create);
    assert_eq!(
        SendPlan::for_item(SyncOperation::Create, true),
        SendPlan::CreateIfAbsent
    );
    assert_eq!(SendPlan::for_item(SyncOperation::Update, true), SendPlan::Update);
    assert_eq!(
        SendPlan::for_item(SyncOperation::Delete, true),
        SendPlan::RepeatDelete
    );
    assert_eq!(SendPlan::for_item(SyncOperation::Delete, false), SendPlan::Delete);
}

#[test]
fn applied_current_version_becomes_synced_and_takes_server_data() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Create, "a"));
    let plan = finish_attempt(Some(&claimed), &ticket, &applied(Some(object("server"))), T1);
    assert!(!plan.stale);
    assert_eq!(plan.document, Some(DocumentWrite::Upsert(object("server"))));
    let after = put(plan.queue);
    assert_eq!(
        (after.status, after.is_in_flight(), after.possibly_applied),
        (SyncStatus::Synced, false, false)
    );
    assert_eq!(after.next_attempt_at, None);
}

#[test]
fn applied_without_data_leaves_the_local_document() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Update, "a"));
    let plan = finish_attempt(Some(&claimed), &ticket, &applied(None), T1);
    assert_eq!(plan.document, None);
    assert_eq!(put(plan.queue).status, SyncStatus::Synced);
}

#[test]
fn applied_delete_never_writes_a_document() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Delete, "a"));
    let plan = finish_attempt(Some(&claimed), &ticket, &applied(Some(object("echo"))), T1);
    assert_eq!(plan.document, None);
    assert_eq!(put(plan.queue).status, SyncStatus::Synced);
}

#[test]
fn applied_clears_the_last_error_but_keeps_the_failure_count() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Update, "a"));
    let after_failure =
        put(finish_attempt(Some(&claimed), &ticket, &failed(ErrorKind::Transient, false), T1).queue);
    let mut retry = after_failure.clone();
    retry.next_attempt_at = Some(T0);
    let (claimed, ticket) = claim(&retry);
    let after = put(finish_attempt(Some(&claimed), &ticket, &applied(None), T2).queue);
    assert_eq!(
        (
            after.last_error,
            after.last_error_kind,
            after.last_error_http_status,
            after.retry_count
        ),
        (None, None, None, 1)
    );
}

#[test]
fn failed_current_version_counts_a_failure_and_schedules_the_retry() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Update, "a"));
    let plan = finish_attempt(Some(&claimed), &ticket, &failed(ErrorKind::Transient, true), T1);
    assert!(!plan.stale);
    assert_eq!(plan.document, None);
    let after = put(plan.queue);
    assert_eq!(
        (after.status, after.is_in_flight(), after.retry_count),
        (SyncStatus::Failed, false, 1)
    );
    assert_eq!(after.last_error.as_deref(), Some("HTTP 503 Service Unavailable"));
    assert_eq!(after.last_error_kind, Some(ErrorKind::Transient));
    assert_eq!(after.last_error_http_status, Some(503));
    assert_eq!(after.next_attempt_at, Some(T2));
    assert!(after.possibly_applied);
    assert_eq!(
        after.payload,
        object("a"),
        "the payload is never touched by a failure"
    );
}

#[test]
fn failed_create_that_may_have_applied_checks_before_the_next_post() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Create, "a"));
    let mut after =
        put(finish_attempt(Some(&claimed), &ticket, &failed(ErrorKind::Transient, true), T1).queue);
    after.next_attempt_at = Some(T0);
    let (_, retry) = claim(&after);
    assert_eq!(retry.plan, SendPlan::CreateIfAbsent);
    assert_eq!(
        retry.operation_id, ticket.operation_id,
        "retries reuse the idempotency key"
    );
}

#[test]
fn released_goes_back_to_pending_without_using_an_attempt() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Create, "a"));
    let outcome = AttemptOutcome::Released {
        possibly_applied: false,
    };
    let after = put(finish_attempt(Some(&claimed), &ticket, &outcome, T1).queue);
    assert_eq!(
        (after.status, after.retry_count, after.is_in_flight()),
        (SyncStatus::Pending, 0, false)
    );
    assert_eq!((after.last_error, after.possibly_applied), (None, false));
    assert_eq!(after.next_attempt_at, Some(T1));
}

#[test]
fn released_after_the_request_left_flags_possibly_applied() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Create, "a"));
    let outcome = AttemptOutcome::Released {
        possibly_applied: true,
    };
    let after = put(finish_attempt(Some(&claimed), &ticket, &outcome, T1).queue);
    assert!(after.possibly_applied);
}

/// A hold (the record waits for its parent's create): nothing sent, no
/// attempt used, the reason visible, not claimed before its time; a newer
/// change saved meanwhile stays ready as saved.
#[test]
fn held_waits_with_its_reason_without_using_an_attempt() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Create, "child"));
    let outcome = AttemptOutcome::Held {
        reason: "waiting for projects/7".into(),
        until: T2,
    };
    let plan = finish_attempt(Some(&claimed), &ticket, &outcome, T1);
    assert_eq!(plan.copy, sync_core::CopyWrite::Keep);
    let after = put(plan.queue);
    assert_eq!(
        (
            after.status,
            after.retry_count,
            after.is_in_flight(),
            after.possibly_applied
        ),
        (SyncStatus::Pending, 0, false, false)
    );
    assert_eq!(after.last_error.as_deref(), Some("waiting for projects/7"));
    assert_eq!((after.last_error_kind, after.next_attempt_at), (None, Some(T2)));
    assert!(!after.is_ready(T1) && after.is_ready(T2));

    let newer = save_on(&claimed, SyncOperation::Update, "newer");
    let after = put(finish_attempt(Some(&newer), &ticket, &outcome, T1).queue);
    assert!(after.is_ready(T1), "the newer change is looked at anew");
    assert_eq!((after.last_error, after.payload), (None, object("newer")));
}

/// Reference data-loss cell (2): an older attempt's failure must not write
/// its stale payload over a newer local change.
#[test]
fn stale_failure_keeps_the_newer_change() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Update, "old"));
    let newer = save_on(&claimed, SyncOperation::Update, "new");
    let plan = finish_attempt(Some(&newer), &ticket, &failed(ErrorKind::Transient, true), T2);
    assert!(plan.stale);
    assert_eq!(plan.document, None);
    let after = put(plan.queue);
    assert_eq!(after.payload, object("new"));
    assert_eq!(
        (after.status, after.version, after.is_in_flight()),
        (SyncStatus::Pending, newer.version, false)
    );
    assert_eq!(
        after.retry_count, 0,
        "the old change's failure is not the new change's"
    );
    assert!(after.is_ready(T2));
}

#[test]
fn stale_success_keeps_the_newer_change_and_its_document() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Update, "old"));
    let newer = save_on(&claimed, SyncOperation::Update, "new");
    let plan = finish_attempt(Some(&newer), &ticket, &applied(Some(object("server-old"))), T2);
    assert!(plan.stale);
    assert_eq!(
        plan.document, None,
        "the server's echo of the old change is not written"
    );
    let after = put(plan.queue);
    assert_eq!(
        (after.operation, after.payload.clone()),
        (SyncOperation::Update, object("new"))
    );
    assert_eq!(after.status, SyncStatus::Pending);
}

#[test]
fn stale_success_of_a_create_turns_the_checked_create_into_an_update() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Create, "old"));
    let newer = save_on(&claimed, SyncOperation::Update, "new");
    assert_eq!(
        (newer.operation, newer.possibly_applied),
        (SyncOperation::Create, true)
    );
    let after = put(finish_attempt(Some(&newer), &ticket, &applied(None), T2).queue);
    assert_eq!(
        (after.operation, after.possibly_applied),
        (SyncOperation::Update, false)
    );
}

#[test]
fn stale_success_of_a_delete_turns_the_checked_create_into_a_plain_create() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Delete, "gone"));
    let newer = save_on(&claimed, SyncOperation::Create, "again");
    assert_eq!(
        (newer.operation, newer.possibly_applied),
        (SyncOperation::Create, true)
    );
    let after = put(finish_attempt(Some(&newer), &ticket, &applied(None), T2).queue);
    assert_eq!(
        (after.operation, after.possibly_applied),
        (SyncOperation::Create, false)
    );
}

#[test]
fn stale_success_of_a_delete_makes_a_repeated_delete_synced() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Delete, "gone"));
    let newer = save_on(&claimed, SyncOperation::Delete, "gone again");
    let after = put(finish_attempt(Some(&newer), &ticket, &applied(None), T2).queue);
    assert_eq!((after.status, after.is_in_flight()), (SyncStatus::Synced, false));
}

#[test]
fn outcome_for_an_item_no_longer_in_flight_changes_nothing() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Create, "a"));
    let recovered = recover_interrupted(&claimed, T1).unwrap();
    let plan = finish_attempt(Some(&recovered), &ticket, &applied(Some(object("late"))), T2);
    assert_eq!(
        (plan.queue, plan.document, plan.stale),
        (QueueWrite::Keep, None, true)
    );
    let gone = finish_attempt(None, &ticket, &applied(None), T2);
    assert_eq!(gone.queue, QueueWrite::Keep);
}

#[test]
fn recovery_makes_interrupted_items_eligible_and_uncertain() {
    let (claimed, _) = claim(&saved(SyncOperation::Create, "a"));
    let recovered = recover_interrupted(&claimed, T1).unwrap();
    assert_eq!(
        (recovered.status, recovered.is_in_flight()),
        (SyncStatus::Pending, false)
    );
    assert!(recovered.possibly_applied);
    assert!(recovered.is_ready(T1));
    assert_eq!(
        begin_attempt(&recovered, T1).unwrap().1.plan,
        SendPlan::CreateIfAbsent
    );
    assert!(
        recover_interrupted(&recovered, T2).is_none(),
        "nothing to recover twice"
    );
}

#[test]
fn new_pass_rearms_backoff_but_not_parked_items_or_retry_after() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Update, "a"));
    let waiting =
        put(finish_attempt(Some(&claimed), &ticket, &failed(ErrorKind::Transient, false), T1).queue);
    let rearmed = rearm_for_pass(&waiting, T1).unwrap();
    assert!(rearmed.is_ready(T1));

    let mut throttled = waiting.clone();
    throttled.not_before = Some(T2);
    throttled.next_attempt_at = Some(T2);
    assert!(rearm_for_pass(&throttled, T1).is_none(), "Retry-After holds");
    throttled.next_attempt_at = None;
    let rearmed = rearm_for_pass(&throttled, T1).unwrap();
    assert_eq!(
        rearmed.next_attempt_at,
        Some(T2),
        "next pass, but not before the server allows"
    );
    let retried = retry_now(&throttled, T1).unwrap();
    assert!(retried.is_ready(T1), "the app's explicit retry lifts Retry-After");

    let mut parked = waiting.clone();
    parked.last_error_kind = Some(ErrorKind::Permanent);
    parked.next_attempt_at = None;
    assert!(rearm_for_pass(&parked, T1).is_none());
    assert!(
        retry_now(&parked, T1).unwrap().is_ready(T1),
        "the app can retry a parked item"
    );

    let pending = saved(SyncOperation::Update, "b");
    assert!(rearm_for_pass(&pending, T1).is_none());
    assert!(retry_now(&pending, T1).is_none());
}

/// A late outcome from an attempt given up on must not be taken for the
/// outcome of the attempt that replaced it, even at the same version.
#[test]
fn late_outcome_of_a_replaced_attempt_changes_nothing() {
    let (first, old_ticket) = claim(&saved(SyncOperation::Create, "a"));
    let recovered = recover_interrupted(&first, T1).unwrap();
    let (reclaimed, new_ticket) = begin_attempt(&recovered, T1).unwrap();
    assert_eq!(old_ticket.version, new_ticket.version);
    assert_ne!(old_ticket.attempt, new_ticket.attempt);
    let late = finish_attempt(
        Some(&reclaimed),
        &old_ticket,
        &failed(ErrorKind::Offline, false),
        T2,
    );
    assert_eq!((late.queue, late.stale), (QueueWrite::Keep, true));
    let current = finish_attempt(Some(&reclaimed), &new_ticket, &applied(None), T2);
    assert_eq!(put(current.queue).status, SyncStatus::Synced);
}

/// Issue 13: a 404 is not proof that the record is gone (a wrong update
/// route answers it too), so the re-create fetches first: it parks if the
/// record is there, and a later delete is sent rather than dropped.
#[test]
fn update_answered_not_found_becomes_a_checked_create() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Update, "a"));
    let plan = finish_attempt(Some(&claimed), &ticket, &AttemptOutcome::NotFound, T1);
    assert!(!plan.stale);
    let after = put(plan.queue);
    assert_eq!(
        (after.operation, after.possibly_applied),
        (SyncOperation::Create, true)
    );
    assert_eq!(
        (after.status, after.retry_count),
        (SyncStatus::Pending, 0),
        "not a failure"
    );
    assert!(after.is_ready(T1));
    assert_eq!(
        begin_attempt(&after, T1).unwrap().1.plan,
        SendPlan::CreateIfAbsent
    );
    // The user deletes the record before the re-create went out: the
    // delete is sent (the server may hold the record), never dropped.
    let deleted = save_on(&after, SyncOperation::Delete, "gone");
    assert_eq!(
        (deleted.operation, deleted.possibly_applied),
        (SyncOperation::Delete, true)
    );
}

#[test]
fn not_found_while_a_newer_delete_waits_repeats_the_delete() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Update, "a"));
    let newer = save_on(&claimed, SyncOperation::Delete, "gone");
    let after = put(finish_attempt(Some(&newer), &ticket, &AttemptOutcome::NotFound, T2).queue);
    assert_eq!(
        (after.status, after.is_in_flight(), after.operation),
        (SyncStatus::Pending, false, SyncOperation::Delete)
    );
    assert_eq!(begin_attempt(&after, T2).unwrap().1.plan, SendPlan::RepeatDelete);
}

#[test]
fn stale_failure_keeps_the_servers_retry_after_for_the_newer_change() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Update, "old"));
    let newer = save_on(&claimed, SyncOperation::Update, "new");
    let outcome = AttemptOutcome::Failed {
        kind: ErrorKind::Transient,
        message: "HTTP 429".into(),
        http_status: Some(429),
        possibly_applied: false,
        next_attempt_at: Some(T2),
        not_before: Some(T2),
    };
    let after = put(finish_attempt(Some(&newer), &ticket, &outcome, T1).queue);
    assert_eq!(after.not_before, Some(T2));
    assert!(!after.is_ready(T1));
    assert!(after.is_ready(T2));
}

#[test]
fn stale_success_that_completes_the_newer_change_clears_the_old_error() {
    let (claimed, ticket) = claim(&saved(SyncOperation::Delete, "gone"));
    let mut failed_before =
        put(finish_attempt(Some(&claimed), &ticket, &failed(ErrorKind::Transient, true), T1).queue);
    failed_before.next_attempt_at = Some(T0);
    let (claimed, ticket) = claim(&failed_before);
    let newer = save_on(&claimed, SyncOperation::Delete, "gone again");
    let after = put(finish_attempt(Some(&newer), &ticket, &applied(None), T2).queue);
    assert_eq!(
        (
            after.status,
            after.last_error,
            after.last_error_kind,
            after.last_error_http_status
        ),
        (SyncStatus::Synced, None, None, None)
    );
}

/// A failure answered with `status` (or not answered, `None`).
fn failed_with(kind: ErrorKind, message: &str, status: Option<u16>) -> AttemptOutcome {
    AttemptOutcome::Failed {
        kind,
        message: message.into(),
        http_status: status,
        possibly_applied: false,
        next_attempt_at: Some(T2),
        not_before: None,
    }
}

/// Fails the item's next attempt with `outcome` (made ready first).
fn fail_next(item: &SyncQueueItem, outcome: &AttemptOutcome) -> SyncQueueItem {
    let mut ready = item.clone();
    ready.next_attempt_at = Some(T0);
    let (claimed, ticket) = claim(&ready);
    put(finish_attempt(Some(&claimed), &ticket, outcome, T1).queue)
}

#[test]
fn the_http_status_goes_with_the_last_error_recorded_replaced_kept_and_cleared() {
    let item = saved(SyncOperation::Update, "a");
    let refused = fail_next(&item, &failed_with(ErrorKind::Permanent, "HTTP 403", Some(403)));
    assert_eq!(
        (refused.last_error_kind, refused.last_error_http_status),
        (Some(ErrorKind::Permanent), Some(403))
    );
    let invalid = fail_next(
        &refused,
        &failed_with(ErrorKind::Permanent, "HTTP 422", Some(422)),
    );
    assert_eq!(invalid.last_error_http_status, Some(422), "tells 422 from 403");
    let unanswered = fail_next(&invalid, &failed_with(ErrorKind::Transient, "timed out", None));
    assert_eq!(
        (
            unanswered.last_error.as_deref(),
            unanswered.last_error_http_status
        ),
        (Some("timed out"), None),
        "a failure without an answer replaces the status with none"
    );
    let conflict = fail_next(
        &unanswered,
        &failed_with(ErrorKind::Conflict, "HTTP 409", Some(409)),
    );

    // A newer change folds into the failed item: its failure history stays.
    let newer = save_on(&conflict, SyncOperation::Update, "b");
    assert_eq!(
        (newer.last_error.as_deref(), newer.last_error_http_status),
        (Some("HTTP 409"), Some(409))
    );

    // A stale failure (the item changed meanwhile) records nothing.
    let mut ready = conflict.clone();
    ready.next_attempt_at = Some(T0);
    let (claimed, ticket) = claim(&ready);
    let newer = save_on(&claimed, SyncOperation::Update, "c");
    let outcome = failed_with(ErrorKind::Transient, "HTTP 500", Some(500));
    let after_stale = put(finish_attempt(Some(&newer), &ticket, &outcome, T1).queue);
    assert_eq!(
        (
            after_stale.last_error.as_deref(),
            after_stale.last_error_http_status
        ),
        (Some("HTTP 409"), Some(409))
    );

    // Recovery, re-arming and the app's retry leave it; syncing clears it.
    let recovered = recover_interrupted(&claimed, T1).unwrap();
    assert_eq!(recovered.last_error_http_status, Some(409));
    let mut waiting = conflict.clone();
    waiting.next_attempt_at = Some(T2);
    assert_eq!(
        rearm_for_pass(&waiting, T1).unwrap().last_error_http_status,
        Some(409)
    );
    assert_eq!(
        retry_now(&conflict, T1).unwrap().last_error_http_status,
        Some(409)
    );
    let mut ready = conflict;
    ready.next_attempt_at = Some(T0);
    let (claimed, ticket) = claim(&ready);
    let synced = put(finish_attempt(Some(&claimed), &ticket, &applied(None), T2).queue);
    assert_eq!(
        (synced.status, synced.last_error, synced.last_error_http_status),
        (SyncStatus::Synced, None, None)
    );
}

/// An item held for its parent is looked at again at the app's retry
/// (of the parent, or of the item); other pending items are not retried.
#[test]
fn a_held_item_is_woken_by_the_apps_retry_and_nothing_else_is() {
    let pending = saved(SyncOperation::Update, "child");
    let (claimed, ticket) = claim(&pending);
    let hold = AttemptOutcome::Held {
        reason: "waiting for projects/7 to reach the server first".to_owned(),
        until: T2,
    };
    let held = put(finish_attempt(Some(&claimed), &ticket, &hold, T0).queue);
    assert!(sync_core::attempt::is_held(&held, T1));
    assert!(!held.is_ready(T1));
    let woken = sync_core::attempt::retry_one(&held, T1).unwrap();
    assert!(woken.is_ready(T1), "{woken:?}");
    assert_eq!(
        woken.last_error, held.last_error,
        "the reason stays until it is sent"
    );
    // Past its hold, or a plain pending change: nothing to wake.
    assert!(!sync_core::attempt::is_held(&held, T2));
    assert!(sync_core::attempt::retry_one(&pending, T1).is_none());
}
