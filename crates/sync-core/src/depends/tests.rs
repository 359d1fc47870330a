#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use serde_json::json;

use super::*;
use crate::ErrorKind;
use crate::ids::{AttemptId, OperationId};

fn name(text: &str) -> EntityName {
    text.parse().unwrap()
}

fn reference(entity: &str, field: &str, parent: &str) -> Reference {
    Reference {
        entity: name(entity),
        field: field.to_owned(),
        parent: name(parent),
    }
}

fn key(entity: &str, id: &str) -> RecordKey {
    RecordKey::new(name(entity), id.parse().unwrap())
}

const DELAYS: HoldDelays = HoldDelays {
    short: Duration::from_millis(100),
    long: Duration::from_secs(60),
};

const NOW: Timestamp = Timestamp::from_millis(10_000);

fn parent(status: SyncStatus, operation: SyncOperation) -> SyncQueueItem {
    SyncQueueItem {
        entity: name("projects"),
        id: "7".parse().unwrap(),
        operation,
        payload: JsonObject::new(),
        status,
        retry_count: 0,
        created_at: NOW,
        updated_at: NOW,
        last_error: None,
        last_error_kind: None,
        last_error_http_status: None,
        version: 1,
        operation_id: OperationId::generate(),
        possibly_applied: false,
        in_flight: None,
        next_attempt_at: Some(NOW),
        not_before: None,
    }
}

#[test]
fn parents_are_the_declared_fields_holding_ids() {
    let references = References::new([
        reference("tasks", "project_id", "projects"),
        reference("tasks", "owner", "users"),
    ])
    .unwrap();
    let document = |value: serde_json::Value| value.as_object().cloned().unwrap();
    assert_eq!(
        references.parents(&name("tasks"), &document(json!({"project_id": "7", "owner": 3}))),
        vec![key("projects", "7"), key("users", "3")]
    );
    assert_eq!(
        references.parents(
            &name("tasks"),
            &document(json!({"project_id": null, "owner": 1.5}))
        ),
        Vec::new(),
        "null and non-integer numbers refer to nothing"
    );
    assert!(
        references
            .parents(&name("notes"), &document(json!({"project_id": "7"})))
            .is_empty()
    );
}

#[test]
fn cycles_are_refused_with_their_path() {
    let two = References::new([
        reference("tasks", "project_id", "projects"),
        reference("projects", "lead_task", "tasks"),
    ]);
    match two {
        Err(ValidationError::ReferenceCycle { path }) => {
            assert!(
                path.contains("tasks.project_id") && path.contains("projects.lead_task"),
                "{path}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        References::new([reference("tasks", "parent_id", "tasks")]),
        Err(ValidationError::ReferenceCycle { .. })
    ));
    assert!(matches!(
        References::new([reference("tasks", "", "projects")]),
        Err(ValidationError::Empty { .. })
    ));
    // A diamond is no cycle.
    assert!(
        References::new([
            reference("lines", "order_id", "orders"),
            reference("lines", "product_id", "products"),
            reference("orders", "customer_id", "customers"),
            reference("products", "vendor_id", "customers"),
        ])
        .is_ok()
    );
}

#[test]
fn a_change_waits_while_its_parents_create_has_not_reached_the_server() {
    let project = key("projects", "7");
    assert_eq!(
        gate_for_parent(&project, None, NOW, DELAYS),
        None,
        "no item: on the server"
    );
    for settled in [
        parent(SyncStatus::Synced, SyncOperation::Create),
        parent(SyncStatus::Pending, SyncOperation::Update),
        parent(SyncStatus::Failed, SyncOperation::Delete),
    ] {
        assert_eq!(
            gate_for_parent(&project, Some(&settled), NOW, DELAYS),
            None,
            "{settled:?}"
        );
    }
    let pending = parent(SyncStatus::Pending, SyncOperation::Create);
    let hold = gate_for_parent(&project, Some(&pending), NOW, DELAYS).unwrap();
    assert_eq!(hold.until, NOW.saturating_add(DELAYS.short));
    assert!(hold.reason.contains("projects/7"), "{}", hold.reason);
    let mut out = parent(SyncStatus::Synced, SyncOperation::Create);
    out.in_flight = Some(AttemptId::from_u64(1));
    assert!(
        gate_for_parent(&project, Some(&out), NOW, DELAYS).is_some(),
        "synced but a newer attempt is out"
    );

    let mut backing_off = parent(SyncStatus::Failed, SyncOperation::Create);
    backing_off.next_attempt_at = Some(NOW.saturating_add(Duration::from_secs(30)));
    let hold = gate_for_parent(&project, Some(&backing_off), NOW, DELAYS).unwrap();
    assert_eq!(
        hold.until,
        NOW.saturating_add(Duration::from_secs(30)),
        "not before the parent's retry"
    );

    let mut parked = parent(SyncStatus::Failed, SyncOperation::Create);
    parked.next_attempt_at = None;
    parked.last_error_kind = Some(ErrorKind::Permanent);
    parked.last_error_http_status = Some(422);
    let hold = gate_for_parent(&project, Some(&parked), NOW, DELAYS).unwrap();
    assert_eq!(hold.until, NOW.saturating_add(DELAYS.long));
    assert!(
        hold.reason.contains("parked") && hold.reason.contains("422"),
        "{}",
        hold.reason
    );
}

#[test]
fn a_change_naming_a_temporary_parent_never_goes() {
    let temporary = RecordId::temporary();
    let parent_key = RecordKey::new(name("projects"), temporary.clone());
    // Its create on the way: held, as for any parent.
    let mut creating = parent(SyncStatus::Pending, SyncOperation::Create);
    creating.id = temporary.clone();
    let hold = gate_for_parent(&parent_key, Some(&creating), NOW, DELAYS).unwrap();
    assert!(hold.reason.contains("is on its way"), "{}", hold.reason);
    // Renamed since and this change not rewritten (the store found the
    // item under the server's id): long, saying what to do.
    let mut renamed = parent(SyncStatus::Synced, SyncOperation::Create);
    renamed.id = "17".parse().unwrap();
    let hold = gate_for_parent(&parent_key, Some(&renamed), NOW, DELAYS).unwrap();
    assert_eq!(hold.until, NOW.saturating_add(DELAYS.long));
    assert!(hold.reason.contains("save this record again"), "{}", hold.reason);
    // No create waiting (deleted or discarded before it was sent): long.
    for item in [None, Some(parent(SyncStatus::Pending, SyncOperation::Delete))] {
        let item = item.map(|mut item| {
            item.id = temporary.clone();
            item
        });
        let hold = gate_for_parent(&parent_key, item.as_ref(), NOW, DELAYS).unwrap();
        assert_eq!(hold.until, NOW.saturating_add(DELAYS.long));
        assert!(hold.reason.contains("temporary id"), "{}", hold.reason);
    }
}

#[test]
fn the_fields_referring_to_an_entity_are_listed_for_renames() {
    let references = References::new([
        reference("tasks", "project_id", "projects"),
        reference("notes", "project", "projects"),
        reference("tasks", "owner", "users"),
    ])
    .unwrap();
    let mut referring: Vec<(String, String)> = references
        .referring_to(&name("projects"))
        .into_iter()
        .map(|field| (field.entity.into_string(), field.field))
        .collect();
    referring.sort();
    assert_eq!(
        referring,
        [
            ("notes".to_owned(), "project".to_owned()),
            ("tasks".to_owned(), "project_id".to_owned())
        ]
    );
    assert!(references.referring_to(&name("tasks")).is_empty());
}

#[test]
fn a_parents_delete_waits_for_its_childrens_queued_deletes() {
    let project = key("projects", "7");
    assert_eq!(gate_for_children(&project, &[], NOW, DELAYS), None);
    let mut child = parent(SyncStatus::Pending, SyncOperation::Delete);
    child.entity = name("tasks");
    let hold = gate_for_children(&project, std::slice::from_ref(&child), NOW, DELAYS).unwrap();
    assert_eq!(hold.until, NOW.saturating_add(DELAYS.short));
    assert!(
        hold.reason.contains("1 records that refer to projects/7"),
        "{}",
        hold.reason
    );
    // A failed child: until its next attempt.
    let mut failed = child.clone();
    failed.status = SyncStatus::Failed;
    failed.next_attempt_at = Some(NOW.saturating_add(Duration::from_secs(5)));
    let hold = gate_for_children(&project, &[child.clone(), failed], NOW, DELAYS).unwrap();
    assert_eq!(hold.until, NOW.saturating_add(Duration::from_secs(5)));
    // A parked child: long, saying so.
    let mut parked = child;
    parked.status = SyncStatus::Failed;
    parked.last_error_kind = Some(ErrorKind::Permanent);
    parked.next_attempt_at = None;
    let hold = gate_for_children(&project, &[parked], NOW, DELAYS).unwrap();
    assert_eq!(hold.until, NOW.saturating_add(DELAYS.long));
    assert!(hold.reason.contains("parked"), "{}", hold.reason);
}
