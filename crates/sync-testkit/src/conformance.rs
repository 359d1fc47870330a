//! Behaviour every [`SyncStore`] must show, as reusable async checks.
//!
//! A store's tests call [`run_all`] with a factory of fresh, empty stores.
//! Each check panics with a message naming the broken rule: this module is
//! a test harness, and a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;

use serde_json::json;
use sync_core::attempt::{AttemptOutcome, SendPlan};
use sync_core::snapshot::{Applied, QueueSnapshot, RecordsSnapshot};
use sync_core::{
    ErrorKind, FinishResult, FinishedAttempt, LocalChange, QueueCounts, RecordKey, RetryPolicy,
    StoreErrorKind, StoreEvent, SyncOperation, SyncStatus, SyncStore, Timestamp,
};
use tokio_stream::StreamExt;

pub mod discard;
pub mod pull;
pub mod rename;

const T0: Timestamp = Timestamp::from_millis(1_000);
const T1: Timestamp = Timestamp::from_millis(2_000);
const T2: Timestamp = Timestamp::from_millis(3_000);
const T3: Timestamp = Timestamp::from_millis(4_000);

/// A change to `entity`/`id` whose payload names the operation.
#[must_use]
pub fn change(entity: &str, id: &str, operation: SyncOperation) -> LocalChange {
    change_with(
        entity,
        id,
        operation,
        json!({ "id": id, "op": operation.as_str() }),
    )
}

/// A change with an explicit payload.
#[must_use]
pub fn change_with(
    entity: &str,
    id: &str,
    operation: SyncOperation,
    payload: serde_json::Value,
) -> LocalChange {
    LocalChange::new(entity, id, payload, operation).expect("test changes are valid")
}

/// The key of `entity`/`id`.
#[must_use]
pub fn key(entity: &str, id: &str) -> RecordKey {
    RecordKey::new(
        entity.parse().expect("valid entity"),
        id.parse().expect("valid id"),
    )
}

/// Runs every check, each on a fresh store from `new_store`.
pub async fn run_all<S, F, Fut>(new_store: F)
where
    S: SyncStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    save_writes_document_and_queue_item(&new_store().await).await;
    records_are_newest_first_and_entities_do_not_collide(&new_store().await).await;
    saves_coalesce_per_record(&new_store().await).await;
    batch_saves_apply_in_order(&new_store().await).await;
    oversized_payload_is_rejected_and_changes_nothing(&new_store().await).await;
    claims_are_oldest_first_bounded_and_exclusive(&new_store().await).await;
    applied_outcome_syncs_and_takes_server_data(&new_store().await).await;
    stale_outcome_never_overwrites_a_newer_change(&new_store().await).await;
    failures_schedule_park_and_rearm(&new_store().await).await;
    next_attempt_time_is_the_earliest_timer(&new_store().await).await;
    late_outcome_after_recovery_changes_nothing(&new_store().await).await;
    snapshots_follow_events(&new_store().await).await;
    a_new_entry_goes_to_the_back_of_the_queue(&new_store().await).await;
    interrupted_attempts_are_recovered(&new_store().await).await;
    clear_synced_keeps_unsynced_items(&new_store().await).await;
    events_describe_each_changed_row(&new_store().await).await;
    the_last_failures_http_status_goes_with_its_error(&new_store().await).await;
    timers_beyond_the_latest_come_back(&new_store().await).await;
    server_copies_follow_what_the_server_confirmed(&new_store().await).await;
    server_copies_are_forgotten_once_the_server_state_is_unknown(&new_store().await).await;
    discard::a_parked_update_is_dropped_or_reverted(&new_store().await).await;
    discard::a_create_the_server_never_saw_is_removed_on_revert(&new_store().await).await;
    discard::an_attempt_in_flight_is_never_discarded(&new_store().await).await;
    rename::an_applied_create_renames_the_record_everywhere(&new_store().await).await;
    rename::a_change_saved_during_the_create_is_sent_to_the_new_id(&new_store().await).await;
    rename::a_taken_id_parks_the_create_and_renames_nothing(&new_store().await).await;
    rename::queued_child_deletes_are_found_by_their_reference(&new_store().await).await;
    pull::run_all(&new_store).await;
}

/// Claims, finishes the one ready item with `outcome` at `now`, and
/// returns the ticket it was claimed with.
async fn attempt_with(
    store: &dyn SyncStore,
    outcome: AttemptOutcome,
    now: Timestamp,
) -> sync_core::AttemptTicket {
    let ticket = store.claim_ready(now, 1).await.unwrap().remove(0);
    store
        .finish_attempts(
            vec![FinishedAttempt {
                ticket: ticket.clone(),
                outcome,
            }],
            now,
        )
        .await
        .unwrap();
    ticket
}

/// The copy the server last confirmed is kept with each outcome (the
/// document written, or the server's answer, with its version), handed to
/// the next attempt as its base, kept through a failure, and dropped once
/// the server no longer holds the record.
pub async fn server_copies_follow_what_the_server_confirmed(store: &dyn SyncStore) {
    let one = key("tasks", "1");
    let applied = |answer: Option<serde_json::Value>, version: &str| AttemptOutcome::Applied {
        replace_local_with: answer.and_then(|value| value.as_object().cloned()),
        server_version: Some(version.to_owned()),
    };
    store
        .save(
            change_with("tasks", "1", SyncOperation::Create, json!({"id": "1", "v": 1})),
            T0,
        )
        .await
        .unwrap();
    let first = attempt_with(store, applied(None, "\"1\""), T0).await;
    assert_eq!(first.base, None, "nothing confirmed before the first create");
    let copy = store
        .server_copy(&one)
        .await
        .unwrap()
        .expect("a copy after a create");
    assert_eq!(
        (json!(copy.data), copy.version.as_deref()),
        (json!({"id": "1", "v": 1}), Some("\"1\""))
    );

    store
        .save(
            change_with("tasks", "1", SyncOperation::Update, json!({"id": "1", "v": 2})),
            T1,
        )
        .await
        .unwrap();
    let failed = AttemptOutcome::Failed {
        kind: ErrorKind::Transient,
        message: "HTTP 503".into(),
        http_status: Some(503),
        possibly_applied: false,
        next_attempt_at: Some(T1),
        not_before: None,
    };
    let second = attempt_with(store, failed, T1).await;
    assert_eq!(second.base.as_ref(), Some(&copy), "the next attempt's base");
    assert_eq!(
        store.server_copy(&one).await.unwrap().as_ref(),
        Some(&copy),
        "kept through a failure"
    );

    let answer = json!({"id": "1", "v": 2, "at": "server"});
    let third = attempt_with(store, applied(Some(answer.clone()), "\"2\""), T2).await;
    assert_eq!(third.base.as_ref(), Some(&copy));
    let copy = store.server_copy(&one).await.unwrap().unwrap();
    assert_eq!(
        (json!(copy.data), copy.version.as_deref()),
        (answer, Some("\"2\"")),
        "the server's answer is its copy"
    );

    store
        .save(change("tasks", "1", SyncOperation::Delete), T3)
        .await
        .unwrap();
    assert!(
        store.server_copy(&one).await.unwrap().is_some(),
        "a local delete leaves the server's copy until the delete is applied"
    );
    let fourth = attempt_with(
        store,
        AttemptOutcome::Applied {
            replace_local_with: None,
            server_version: None,
        },
        T3,
    )
    .await;
    assert_eq!(fourth.plan, SendPlan::Delete);
    assert_eq!(
        store.server_copy(&one).await.unwrap(),
        None,
        "gone with the record"
    );
    assert_eq!(store.server_copy(&key("tasks", "2")).await.unwrap(), None);
}

/// A save writes the document and a pending queue item.
pub async fn save_writes_document_and_queue_item(store: &dyn SyncStore) {
    let saved = store
        .save(change("tasks", "1", SyncOperation::Create), T0)
        .await
        .unwrap();
    let item = saved.item.expect("a create is queued");
    assert_eq!(
        (item.operation, item.status, item.version),
        (SyncOperation::Create, SyncStatus::Pending, 1)
    );
    assert_eq!(item.next_attempt_at, Some(T0));
    let record = saved.record.expect("a create writes the document");
    assert_eq!(record.data.get("op"), Some(&json!("create")));
    assert_eq!((record.created_at, record.updated_at), (T0, T0));

    assert_eq!(store.record(&key("tasks", "1")).await.unwrap(), Some(record));
    assert_eq!(
        store.queue_item(&key("tasks", "1")).await.unwrap(),
        Some(item.clone())
    );
    assert_eq!(store.queue().await.unwrap(), vec![item]);
    assert_eq!(
        store.counts().await.unwrap(),
        QueueCounts {
            pending: 1,
            ..QueueCounts::default()
        }
    );
    assert_eq!(store.record(&key("tasks", "2")).await.unwrap(), None);
}

/// `records` lists one entity, most recently updated first; equal ids in
/// different entities are different records.
pub async fn records_are_newest_first_and_entities_do_not_collide(store: &dyn SyncStore) {
    store
        .save(change("tasks", "a", SyncOperation::Create), T0)
        .await
        .unwrap();
    store
        .save(change("tasks", "b", SyncOperation::Create), T1)
        .await
        .unwrap();
    store
        .save(change("notes", "a", SyncOperation::Create), T2)
        .await
        .unwrap();
    store
        .save(change("tasks", "a", SyncOperation::Update), T3)
        .await
        .unwrap();

    let tasks = store.records(&"tasks".parse().unwrap()).await.unwrap();
    let ids: Vec<&str> = tasks.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "newest first");
    assert_eq!(tasks[0].created_at, T0, "an update keeps created_at");
    assert_eq!(tasks[0].updated_at, T3);
    let notes = store.records(&"notes".parse().unwrap()).await.unwrap();
    assert_eq!(notes.len(), 1);
    let queue: Vec<String> = store
        .queue()
        .await
        .unwrap()
        .iter()
        .map(|i| i.key().to_string())
        .collect();
    assert_eq!(
        queue,
        ["tasks/a", "tasks/b", "notes/a"],
        "queue in created_at order"
    );
}

/// Later changes fold into the record's one queue item.
pub async fn saves_coalesce_per_record(store: &dyn SyncStore) {
    store
        .save(change("tasks", "1", SyncOperation::Create), T0)
        .await
        .unwrap();
    let first = store.queue_item(&key("tasks", "1")).await.unwrap().unwrap();
    let saved = store
        .save(change("tasks", "1", SyncOperation::Update), T1)
        .await
        .unwrap();
    let item = saved.item.unwrap();
    assert_eq!(
        item.operation,
        SyncOperation::Create,
        "never-sent create absorbs the update"
    );
    assert_eq!(item.payload.get("op"), Some(&json!("update")));
    assert_eq!(item.version, 2);
    assert_ne!(
        item.operation_id, first.operation_id,
        "a new change gets a new operation id"
    );
    assert_eq!(item.created_at, T0, "keeps its place in the queue");

    let saved = store
        .save(change("tasks", "1", SyncOperation::Delete), T2)
        .await
        .unwrap();
    assert_eq!(
        (saved.item, saved.record),
        (None, None),
        "create then delete leaves nothing"
    );
    assert!(store.queue().await.unwrap().is_empty());
    assert_eq!(store.record(&key("tasks", "1")).await.unwrap(), None);
}

/// A batch applies its changes in order in one transaction.
pub async fn batch_saves_apply_in_order(store: &dyn SyncStore) {
    let saved = store
        .save_batch(
            vec![
                change("tasks", "1", SyncOperation::Create),
                change("tasks", "2", SyncOperation::Create),
                change("tasks", "1", SyncOperation::Update),
            ],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(saved.len(), 3);
    let queue = store.queue().await.unwrap();
    assert_eq!(queue.len(), 2);
    assert_eq!(
        queue[0].payload.get("op"),
        Some(&json!("update")),
        "later change in a batch wins"
    );
    assert_eq!(queue[0].operation, SyncOperation::Create);
    assert!(store.save_batch(Vec::new(), T1).await.unwrap().is_empty());
}

/// A payload over the limit is a typed error, alone or inside a batch, and
/// nothing is written.
pub async fn oversized_payload_is_rejected_and_changes_nothing(store: &dyn SyncStore) {
    store
        .save(change("tasks", "keep", SyncOperation::Create), T0)
        .await
        .unwrap();
    let before = (
        store.queue().await.unwrap(),
        store.records(&"tasks".parse().unwrap()).await.unwrap(),
    );
    let huge = change_with(
        "tasks",
        "big",
        SyncOperation::Create,
        json!({ "blob": "x".repeat(2 * 1024 * 1024) }),
    );

    let error = store.save(huge.clone(), T1).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Invalid, "{error}");
    assert!(error.to_string().contains("over the"), "{error}");

    let batch = vec![change("tasks", "ok", SyncOperation::Create), huge];
    let error = store.save_batch(batch, T1).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Invalid, "{error}");

    let after = (
        store.queue().await.unwrap(),
        store.records(&"tasks".parse().unwrap()).await.unwrap(),
    );
    assert_eq!(before, after, "a rejected save changes nothing");
}

/// Claims take ready items oldest first, at most `limit`, and never the
/// same item twice while it is in flight.
pub async fn claims_are_oldest_first_bounded_and_exclusive(store: &dyn SyncStore) {
    for (id, at) in [("c", T2), ("a", T0), ("b", T1)] {
        store
            .save(change("tasks", id, SyncOperation::Create), at)
            .await
            .unwrap();
    }
    let first = store.claim_ready(T3, 2).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|t| t.key.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(first[0].plan, SendPlan::Create);
    let claimed = store.queue_item(&key("tasks", "a")).await.unwrap().unwrap();
    assert_eq!(
        (claimed.status, claimed.is_in_flight()),
        (SyncStatus::Syncing, true)
    );

    let second = store.claim_ready(T3, 10).await.unwrap();
    assert_eq!(second.len(), 1, "items in flight are not claimed again");
    assert_eq!(second[0].key.id.as_str(), "c");
    assert!(store.claim_ready(T3, 10).await.unwrap().is_empty());
    assert_eq!(store.counts().await.unwrap().syncing, 3);
}

/// An applied outcome marks the item synced and replaces the document with
/// the server's data.
pub async fn applied_outcome_syncs_and_takes_server_data(store: &dyn SyncStore) {
    store
        .save(change("tasks", "1", SyncOperation::Create), T0)
        .await
        .unwrap();
    let ticket = store.claim_ready(T0, 1).await.unwrap().remove(0);
    let server_data = json!({ "id": "1", "serverField": true }).as_object().cloned();
    let outcome = AttemptOutcome::Applied {
        replace_local_with: server_data.clone(),
        server_version: None,
    };
    let results = store
        .finish_attempts(vec![FinishedAttempt { ticket, outcome }], T1)
        .await
        .unwrap();
    assert_eq!(results, [FinishResult::Current]);
    let item = store.queue_item(&key("tasks", "1")).await.unwrap().unwrap();
    assert_eq!((item.status, item.is_in_flight()), (SyncStatus::Synced, false));
    let record = store.record(&key("tasks", "1")).await.unwrap().unwrap();
    assert_eq!(Some(record.data), server_data);
    assert_eq!(record.created_at, T0);
}

/// An older attempt's outcome never overwrites a change saved while it was
/// in flight, and the next claim waits for it to report back.
pub async fn stale_outcome_never_overwrites_a_newer_change(store: &dyn SyncStore) {
    store
        .save(change("tasks", "1", SyncOperation::Create), T0)
        .await
        .unwrap();
    let ticket = store.claim_ready(T0, 1).await.unwrap().remove(0);
    store
        .save(
            change_with("tasks", "1", SyncOperation::Update, json!({ "v": "newer" })),
            T1,
        )
        .await
        .unwrap();
    assert!(
        store.claim_ready(T1, 10).await.unwrap().is_empty(),
        "one attempt per record at a time"
    );

    let outcome = AttemptOutcome::Failed {
        kind: ErrorKind::Transient,
        message: "timeout".into(),
        http_status: None,
        possibly_applied: true,
        next_attempt_at: Some(T3),
        not_before: None,
    };
    let results = store
        .finish_attempts(vec![FinishedAttempt { ticket, outcome }], T2)
        .await
        .unwrap();
    assert_eq!(results, [FinishResult::Stale]);
    let item = store.queue_item(&key("tasks", "1")).await.unwrap().unwrap();
    assert_eq!(item.payload.get("v"), Some(&json!("newer")));
    assert_eq!(
        (item.status, item.is_in_flight(), item.retry_count),
        (SyncStatus::Pending, false, 0)
    );
    let record = store.record(&key("tasks", "1")).await.unwrap().unwrap();
    assert_eq!(record.data.get("v"), Some(&json!("newer")));

    let retry = store.claim_ready(T2, 10).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(
        retry[0].plan,
        SendPlan::CreateIfAbsent,
        "the first create may have landed"
    );
}

/// Failures count, schedule the next attempt, park permanent errors, and a
/// new pass or an explicit retry makes them eligible again.
pub async fn failures_schedule_park_and_rearm(store: &dyn SyncStore) {
    store
        .save(change("tasks", "t", SyncOperation::Create), T0)
        .await
        .unwrap();
    store
        .save(change("tasks", "p", SyncOperation::Create), T0)
        .await
        .unwrap();
    let tickets = store.claim_ready(T0, 10).await.unwrap();
    let finished = tickets
        .into_iter()
        .map(|ticket| {
            let permanent = ticket.key.id.as_str() == "p";
            let outcome = AttemptOutcome::Failed {
                kind: if permanent {
                    ErrorKind::Permanent
                } else {
                    ErrorKind::Transient
                },
                message: if permanent {
                    "HTTP 422".into()
                } else {
                    "HTTP 503".into()
                },
                http_status: Some(if permanent { 422 } else { 503 }),
                possibly_applied: !permanent,
                next_attempt_at: (!permanent).then_some(T3),
                not_before: None,
            };
            FinishedAttempt { ticket, outcome }
        })
        .collect();
    store.finish_attempts(finished, T1).await.unwrap();

    let transient = store.queue_item(&key("tasks", "t")).await.unwrap().unwrap();
    assert_eq!((transient.status, transient.retry_count), (SyncStatus::Failed, 1));
    assert_eq!(transient.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(transient.last_error_kind, Some(ErrorKind::Transient));
    assert_eq!(transient.last_error_http_status, Some(503));
    assert!(
        store.claim_ready(T2, 10).await.unwrap().is_empty(),
        "backoff not over"
    );

    assert_eq!(
        store.rearm_failed(T2).await.unwrap(),
        1,
        "only the transient failure is rearmed"
    );
    let rearmed = store.claim_ready(T2, 10).await.unwrap();
    assert_eq!(rearmed.len(), 1);
    assert_eq!(rearmed[0].key.id.as_str(), "t");

    let parked = store.queue_item(&key("tasks", "p")).await.unwrap().unwrap();
    assert_eq!(
        (parked.next_attempt_at, parked.last_error_kind),
        (None, Some(ErrorKind::Permanent))
    );
    assert!(store.retry(&key("tasks", "p"), T2).await.unwrap());
    assert!(!store.retry(&key("tasks", "missing"), T2).await.unwrap());
    assert_eq!(
        store.claim_ready(T2, 10).await.unwrap().len(),
        1,
        "the app's retry unparks"
    );
    assert_eq!(store.counts().await.unwrap().syncing, 2);
}

/// Items left in flight by a stopped process become eligible again and are
/// flagged as possibly applied.
pub async fn interrupted_attempts_are_recovered(store: &dyn SyncStore) {
    store
        .save(change("tasks", "1", SyncOperation::Create), T0)
        .await
        .unwrap();
    store
        .save(change("tasks", "2", SyncOperation::Create), T0)
        .await
        .unwrap();
    store.claim_ready(T0, 1).await.unwrap();
    assert_eq!(store.recover_interrupted(T1).await.unwrap(), 1);
    let item = store.queue_item(&key("tasks", "1")).await.unwrap().unwrap();
    assert_eq!(
        (item.status, item.is_in_flight(), item.possibly_applied),
        (SyncStatus::Pending, false, true)
    );
    let tickets = store.claim_ready(T1, 10).await.unwrap();
    assert_eq!(tickets.len(), 2);
    assert_eq!(tickets[0].plan, SendPlan::CreateIfAbsent);
    assert_eq!(tickets[1].plan, SendPlan::Create);
    assert_eq!(store.recover_interrupted(T2).await.unwrap(), 2);
    assert_eq!(
        store.retry_failed(T2).await.unwrap(),
        0,
        "recovered items are pending, not failed"
    );
}

/// `clear_synced` removes exactly the synced items.
pub async fn clear_synced_keeps_unsynced_items(store: &dyn SyncStore) {
    store
        .save(change("tasks", "1", SyncOperation::Create), T0)
        .await
        .unwrap();
    store
        .save(change("tasks", "2", SyncOperation::Create), T1)
        .await
        .unwrap();
    let ticket = store.claim_ready(T1, 1).await.unwrap().remove(0);
    let outcome = AttemptOutcome::Applied {
        replace_local_with: None,
        server_version: None,
    };
    store
        .finish_attempts(vec![FinishedAttempt { ticket, outcome }], T2)
        .await
        .unwrap();
    assert_eq!(store.clear_synced().await.unwrap(), 1);
    let queue = store.queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].id.as_str(), "2");
    assert!(
        store.record(&key("tasks", "1")).await.unwrap().is_some(),
        "documents stay"
    );
    assert_eq!(store.clear_synced().await.unwrap(), 0);
}

/// Each change emits events describing the changed rows, in order.
pub async fn events_describe_each_changed_row(store: &dyn SyncStore) {
    let mut events = store.subscribe();
    store
        .save(change("tasks", "1", SyncOperation::Create), T0)
        .await
        .unwrap();
    store
        .save(change("tasks", "1", SyncOperation::Delete), T1)
        .await
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(events.next().await.expect("stream open"));
    }
    let queue_events: Vec<bool> = seen
        .iter()
        .filter_map(|event| match event {
            StoreEvent::QueueItem { key: k, item } if *k == key("tasks", "1") => Some(item.is_some()),
            _ => None,
        })
        .collect();
    assert_eq!(queue_events, [true, false], "item written, then removed");
    let record_events: Vec<bool> = seen
        .iter()
        .filter_map(|event| match event {
            StoreEvent::Record { key: k, record } if *k == key("tasks", "1") => Some(record.is_some()),
            _ => None,
        })
        .collect();
    assert_eq!(record_events, [true, false], "document written, then removed");
}

/// `next_attempt_time` is the earliest timer among items that wait for one.
pub async fn next_attempt_time_is_the_earliest_timer(store: &dyn SyncStore) {
    assert_eq!(store.next_attempt_time().await.unwrap(), None);
    store
        .save(change("tasks", "a", SyncOperation::Create), T1)
        .await
        .unwrap();
    store
        .save(change("tasks", "b", SyncOperation::Create), T2)
        .await
        .unwrap();
    assert_eq!(store.next_attempt_time().await.unwrap(), Some(T1));
    let tickets = store.claim_ready(T2, 10).await.unwrap();
    assert_eq!(
        store.next_attempt_time().await.unwrap(),
        None,
        "items in flight wait for no timer"
    );
    let finished = tickets
        .into_iter()
        .map(|ticket| {
            let later = ticket.key.id.as_str() == "b";
            let outcome = AttemptOutcome::Failed {
                kind: ErrorKind::Transient,
                message: "HTTP 503".into(),
                http_status: Some(503),
                possibly_applied: false,
                next_attempt_at: later.then_some(T3),
                not_before: None,
            };
            FinishedAttempt { ticket, outcome }
        })
        .collect();
    store.finish_attempts(finished, T2).await.unwrap();
    assert_eq!(
        store.next_attempt_time().await.unwrap(),
        Some(T3),
        "items waiting for a pass have no timer"
    );
}

/// The late outcome of an attempt given up on by a recovery changes nothing,
/// even after the item was claimed again at the same version.
pub async fn late_outcome_after_recovery_changes_nothing(store: &dyn SyncStore) {
    store
        .save(change("tasks", "1", SyncOperation::Create), T0)
        .await
        .unwrap();
    let old = store.claim_ready(T0, 1).await.unwrap().remove(0);
    store.recover_interrupted(T1).await.unwrap();
    let new = store.claim_ready(T1, 1).await.unwrap().remove(0);
    assert_eq!((old.version, new.plan), (new.version, SendPlan::CreateIfAbsent));
    let before = store.queue_item(&key("tasks", "1")).await.unwrap();
    let outcome = AttemptOutcome::Applied {
        replace_local_with: json!({ "late": true }).as_object().cloned(),
        server_version: None,
    };
    let results = store
        .finish_attempts(vec![FinishedAttempt { ticket: old, outcome }], T2)
        .await
        .unwrap();
    assert_eq!(results, [FinishResult::Stale]);
    assert_eq!(store.queue_item(&key("tasks", "1")).await.unwrap(), before);
    let record = store.record(&key("tasks", "1")).await.unwrap().unwrap();
    assert_eq!(record.data.get("late"), None);
}

/// Snapshots built from one read plus events stay equal to fresh reads
/// through saves, claims, outcomes, recovery and `clear_synced`.
pub async fn snapshots_follow_events(store: &dyn SyncStore) {
    let at = |n: i64| Timestamp::from_millis(10_000 + n * 1_000);
    store
        .save(change("tasks", "old", SyncOperation::Create), at(0))
        .await
        .unwrap();
    let mut events = store.subscribe();
    let tasks: sync_core::EntityName = "tasks".parse().unwrap();
    let mut queue = QueueSnapshot::new(store.queue().await.unwrap());
    let mut records = RecordsSnapshot::new(tasks.clone(), store.records(&tasks).await.unwrap());

    for (n, (id, operation)) in [
        ("a", SyncOperation::Create),
        ("b", SyncOperation::Create),
        ("a", SyncOperation::Update),
        ("c", SyncOperation::Create),
        ("b", SyncOperation::Delete),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .save(change("tasks", id, operation), at(n as i64 + 1))
            .await
            .unwrap();
    }
    store
        .save(change("notes", "a", SyncOperation::Create), at(7))
        .await
        .unwrap();
    let tickets = store.claim_ready(at(8), 2).await.unwrap();
    let finished = tickets
        .into_iter()
        .map(|ticket| FinishedAttempt {
            ticket,
            outcome: AttemptOutcome::Applied {
                replace_local_with: json!({ "from": "server" }).as_object().cloned(),
                server_version: None,
            },
        })
        .collect();
    store.finish_attempts(finished, at(9)).await.unwrap();
    store.claim_ready(at(10), 1).await.unwrap();
    store.recover_interrupted(at(11)).await.unwrap();
    store.clear_synced().await.unwrap();
    store
        .save(change("tasks", "d", SyncOperation::Create), at(12))
        .await
        .unwrap();

    // Drain what was published, then compare with fresh reads.
    let marker = change("markers", "end", SyncOperation::Create);
    store.save(marker, at(13)).await.unwrap();
    loop {
        let event = events.next().await.expect("stream open");
        assert_ne!(
            queue.apply(&event),
            Applied::Resync,
            "no event may be missed here"
        );
        records.apply(&event);
        if matches!(&event, StoreEvent::Record { key: k, .. } if *k == key("markers", "end")) {
            break;
        }
    }
    assert_eq!(
        queue.to_vec(),
        store.queue().await.unwrap(),
        "queue snapshot drifted from the store"
    );
    assert_eq!(
        records.to_vec(),
        store.records(&tasks).await.unwrap(),
        "records snapshot drifted"
    );
    assert_eq!(
        queue.get(&key("tasks", "c")).map(|item| item.status),
        Some(SyncStatus::Pending)
    );
}

/// A change to a record whose item is synced starts a new entry at the back
/// of the queue, behind changes saved before it, even at the same time.
pub async fn a_new_entry_goes_to_the_back_of_the_queue(store: &dyn SyncStore) {
    store
        .save(change("tasks", "a", SyncOperation::Create), T0)
        .await
        .unwrap();
    let ticket = store.claim_ready(T0, 1).await.unwrap().remove(0);
    let outcome = AttemptOutcome::Applied {
        replace_local_with: None,
        server_version: None,
    };
    store
        .finish_attempts(vec![FinishedAttempt { ticket, outcome }], T0)
        .await
        .unwrap();
    store
        .save_batch(
            vec![
                change("tasks", "b", SyncOperation::Create),
                change("tasks", "a", SyncOperation::Update),
            ],
            T1,
        )
        .await
        .unwrap();
    let order: Vec<String> = store
        .queue()
        .await
        .unwrap()
        .iter()
        .map(|item| item.id.to_string())
        .collect();
    assert_eq!(order, ["b", "a"], "queue order");
    let claimed: Vec<String> = store
        .claim_ready(T1, 10)
        .await
        .unwrap()
        .iter()
        .map(|t| t.key.id.to_string())
        .collect();
    assert_eq!(claimed, ["b", "a"], "claim order");
}

/// Items saved before the wall clock moved back a day: `rebase_timers`
/// makes those not in flight eligible now, leaves items in flight and
/// timers within reach alone, and reports how many changed.
pub async fn timers_beyond_the_latest_come_back(store: &dyn SyncStore) {
    let day = 86_400_000;
    let later = Timestamp::from_millis(T0.as_millis() + day);
    for id in ["a", "b", "flying"] {
        store
            .save(change("tasks", id, SyncOperation::Create), later)
            .await
            .unwrap();
    }
    let flying = store.claim_ready(later, 1).await.unwrap();
    assert_eq!(flying.len(), 1);
    // The clock is back at T0: the saves of "a" and "b" (and the one in
    // flight) carry timers a day ahead.
    assert!(
        store.claim_ready(T0, 10).await.unwrap().is_empty(),
        "nothing is ready before the rebase"
    );
    let policy = RetryPolicy::default();
    assert_eq!(store.rebase_timers(T0, policy).await.unwrap(), 2);
    for id in ["a", "b", "flying"] {
        let item = store.queue_item(&key("tasks", id)).await.unwrap().unwrap();
        if item.is_in_flight() {
            assert_eq!(item.status, SyncStatus::Syncing, "{id}: left alone in flight");
        } else {
            assert_eq!(item.next_attempt_at, Some(T0), "{id}");
        }
    }
    assert_eq!(store.claim_ready(T0, 10).await.unwrap().len(), 2);
    assert_eq!(
        store.rebase_timers(T0, policy).await.unwrap(),
        0,
        "nothing left beyond reach"
    );
}

/// The item's `last_error` and `last_error_http_status`, read both ways.
async fn error_and_status(store: &dyn SyncStore, k: &RecordKey) -> (Option<String>, Option<u16>) {
    let item = store.queue_item(k).await.unwrap().unwrap();
    let from_queue = store
        .queue()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.key() == *k)
        .unwrap();
    assert_eq!(item, from_queue, "queue_item and queue agree");
    (item.last_error, item.last_error_http_status)
}

/// Fails every claimable item with `status` (`None`: no answer).
async fn fail_all(store: &dyn SyncStore, at: Timestamp, status: Option<u16>) {
    let tickets = store.claim_ready(at, 10).await.unwrap();
    assert!(!tickets.is_empty(), "something to fail at {at:?}");
    let finished = tickets
        .into_iter()
        .map(|ticket| FinishedAttempt {
            ticket,
            outcome: AttemptOutcome::Failed {
                kind: ErrorKind::Permanent,
                message: status.map_or_else(|| "no answer".to_owned(), |status| format!("HTTP {status}")),
                http_status: status,
                possibly_applied: false,
                next_attempt_at: None,
                not_before: None,
            },
        })
        .collect();
    store.finish_attempts(finished, at).await.unwrap();
}

/// The HTTP status of the last failed attempt is kept in its own field,
/// beside `last_error`, and follows it exactly: recorded by a failure,
/// replaced by the next (with none when that one got no answer), kept when
/// a newer change folds into the item, untouched by a stale outcome, and
/// cleared when the item syncs.
pub async fn the_last_failures_http_status_goes_with_its_error(store: &dyn SyncStore) {
    let k = key("tasks", "1");
    store
        .save(change("tasks", "1", SyncOperation::Create), T0)
        .await
        .unwrap();
    assert_eq!(error_and_status(store, &k).await, (None, None));

    fail_all(store, T0, Some(403)).await;
    assert_eq!(
        error_and_status(store, &k).await,
        (Some("HTTP 403".into()), Some(403))
    );
    assert!(store.retry(&k, T1).await.unwrap());
    assert_eq!(error_and_status(store, &k).await.1, Some(403), "a retry keeps it");
    fail_all(store, T1, Some(422)).await;
    assert_eq!(
        error_and_status(store, &k).await,
        (Some("HTTP 422".into()), Some(422)),
        "403 and 422 told apart"
    );
    assert!(store.retry(&k, T1).await.unwrap());
    fail_all(store, T1, None).await;
    assert_eq!(
        error_and_status(store, &k).await,
        (Some("no answer".into()), None),
        "replaced by none"
    );
    assert_eq!(store.retry_failed(T1).await.unwrap(), 1);
    fail_all(store, T1, Some(409)).await;

    // A newer change folds into the failed item: the failure history stays.
    let saved = store
        .save(change("tasks", "1", SyncOperation::Update), T2)
        .await
        .unwrap();
    assert_eq!(saved.item.unwrap().last_error_http_status, Some(409));
    assert_eq!(
        error_and_status(store, &k).await,
        (Some("HTTP 409".into()), Some(409))
    );

    // A stale failure (a newer change saved while it was out) records nothing.
    let ticket = store.claim_ready(T2, 1).await.unwrap().remove(0);
    store
        .save(change("tasks", "1", SyncOperation::Update), T2)
        .await
        .unwrap();
    let stale = AttemptOutcome::Failed {
        kind: ErrorKind::Transient,
        message: "HTTP 500".into(),
        http_status: Some(500),
        possibly_applied: false,
        next_attempt_at: Some(T3),
        not_before: None,
    };
    let results = store
        .finish_attempts(
            vec![FinishedAttempt {
                ticket,
                outcome: stale,
            }],
            T2,
        )
        .await
        .unwrap();
    assert_eq!(results, [FinishResult::Stale]);
    assert_eq!(
        error_and_status(store, &k).await,
        (Some("HTTP 409".into()), Some(409))
    );

    // Synced: gone with the error, from reads and from the event.
    let mut events = store.subscribe();
    let ticket = store.claim_ready(T2, 1).await.unwrap().remove(0);
    let applied = AttemptOutcome::Applied {
        replace_local_with: None,
        server_version: None,
    };
    store
        .finish_attempts(
            vec![FinishedAttempt {
                ticket,
                outcome: applied,
            }],
            T3,
        )
        .await
        .unwrap();
    assert_eq!(error_and_status(store, &k).await, (None, None));
    loop {
        match events.next().await.expect("stream open") {
            StoreEvent::QueueItem {
                key: changed,
                item: Some(item),
            } if changed == k && item.status == SyncStatus::Synced => {
                assert_eq!(item.last_error_http_status, None);
                break;
            }
            _ => {}
        }
    }
}

/// A failure that may have applied, and an attempt cut off by a stopped
/// process, leave the server's state unknown: the copy is forgotten, so no
/// patch or merge is made against a state the server may no longer hold.
pub async fn server_copies_are_forgotten_once_the_server_state_is_unknown(store: &dyn SyncStore) {
    let synced = AttemptOutcome::Applied {
        replace_local_with: None,
        server_version: Some("\"1\"".to_owned()),
    };
    for id in ["lost", "killed"] {
        store
            .save(
                change_with("tasks", id, SyncOperation::Create, json!({"id": id})),
                T0,
            )
            .await
            .unwrap();
        attempt_with(store, synced.clone(), T0).await;
        assert!(store.server_copy(&key("tasks", id)).await.unwrap().is_some());
        store
            .save(
                change_with("tasks", id, SyncOperation::Update, json!({"id": id, "v": 2})),
                T1,
            )
            .await
            .unwrap();
    }
    // An answer lost: the update may have applied.
    let lost = AttemptOutcome::Failed {
        kind: ErrorKind::Transient,
        message: "timed out".into(),
        http_status: None,
        possibly_applied: true,
        next_attempt_at: Some(T2),
        not_before: None,
    };
    let ticket = store.claim_ready(T1, 1).await.unwrap().remove(0);
    assert_eq!(ticket.key, key("tasks", "lost"));
    store
        .finish_attempts(
            vec![FinishedAttempt {
                ticket,
                outcome: lost,
            }],
            T1,
        )
        .await
        .unwrap();
    assert_eq!(store.server_copy(&key("tasks", "lost")).await.unwrap(), None);
    // A process stopped with the other update in flight.
    let ticket = store.claim_ready(T1, 1).await.unwrap().remove(0);
    assert_eq!(ticket.key, key("tasks", "killed"));
    assert_eq!(store.recover_interrupted(T2).await.unwrap(), 1);
    assert_eq!(store.server_copy(&key("tasks", "killed")).await.unwrap(), None);
}
