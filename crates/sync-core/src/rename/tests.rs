#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use serde_json::json;

use super::*;
use crate::attempt::{CopyWrite, begin_attempt, finish_attempt};
use crate::coalesce::{DocumentWrite, QueueWrite, SaveContext, plan_save};
use crate::model::LocalChange;

const NOW: Timestamp = Timestamp::from_millis(10_000);

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

fn tasks_refer_to_projects() -> Vec<ReferringField> {
    vec![ReferringField {
        entity: "tasks".parse().unwrap(),
        field: "project_id".to_owned(),
    }]
}

fn saved(
    existing: Option<&SyncQueueItem>,
    id: &RecordId,
    data: Value,
    operation: SyncOperation,
) -> SyncQueueItem {
    let change = LocalChange::new("projects", id.as_str(), data, operation).unwrap();
    match plan_save(existing, existing.is_some(), change, SaveContext::at(NOW)).queue {
        QueueWrite::Put(item) => item,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_answers_id_is_taken_when_it_is_a_valid_id_of_the_server() {
    for (answer, text) in [(json!(17), "17"), (json!("a1b2"), "a1b2"), (json!(-3), "-3")] {
        let assigned = assigned_id(Some(&answer), Vec::new()).unwrap();
        assert_eq!((assigned.id.as_str(), &assigned.value), (text, &answer));
    }
    assert_eq!(assigned_id(None, Vec::new()), Err(AssignedIdRefusal::Missing));
    assert_eq!(
        assigned_id(Some(&Value::Null), Vec::new()),
        Err(AssignedIdRefusal::Missing)
    );
    let temporary = Value::String(RecordId::temporary().into_string());
    for invalid in [
        json!(1.5),
        json!(""),
        json!(true),
        json!({"id": 1}),
        json!([1]),
        json!("x".repeat(300)),
        json!("a\u{0}b"),
        temporary,
    ] {
        assert_eq!(
            assigned_id(Some(&invalid), Vec::new()),
            Err(AssignedIdRefusal::Invalid),
            "{invalid}"
        );
    }
}

#[test]
fn refusals_park_the_create_possibly_applied_and_name_no_id() {
    for refusal in [
        AssignedIdRefusal::Missing,
        AssignedIdRefusal::Invalid,
        AssignedIdRefusal::Clash,
    ] {
        let AttemptOutcome::Failed {
            kind,
            possibly_applied,
            next_attempt_at,
            message,
            ..
        } = refusal.outcome()
        else {
            panic!("{refusal:?}");
        };
        assert_eq!(
            (kind, possibly_applied, next_attempt_at),
            (ErrorKind::Permanent, true, None)
        );
        assert!(message.contains("nothing was renamed"), "{message}");
    }
}

#[test]
fn the_new_id_is_taken_unless_what_is_there_is_this_very_record() {
    let id: RecordId = "17".parse().unwrap();
    let temporary = RecordId::temporary();
    let pending = saved(None, &id, json!({"name": "theirs"}), SyncOperation::Update);
    let theirs = object(json!({"id": 17, "name": "theirs"}));
    let ours = object(json!({"id": 17, "name": "ours", "client_ref": temporary.as_str()}));
    assert_eq!(
        check_target(Some(&pending), Some(&ours), &temporary, true),
        Err(AssignedIdRefusal::Clash),
        "changes to send there"
    );
    let mut in_flight = pending.clone();
    in_flight.status = SyncStatus::Synced;
    in_flight.in_flight = Some(crate::ids::AttemptId::generate());
    assert_eq!(
        check_target(Some(&in_flight), None, &temporary, true),
        Err(AssignedIdRefusal::Clash)
    );
    let mut synced = pending;
    synced.status = SyncStatus::Synced;
    assert_eq!(
        check_target(Some(&synced), Some(&theirs), &temporary, false),
        Err(AssignedIdRefusal::Clash),
        "another record"
    );
    assert_eq!(
        check_target(None, Some(&theirs), &temporary, false),
        Err(AssignedIdRefusal::Clash)
    );
    // After a lost answer, a pull may have brought this record without the
    // local-id field: what is there has nothing to send, and is replaced.
    assert_eq!(
        check_target(Some(&synced), Some(&theirs), &temporary, true),
        Ok(())
    );
    // A pulled copy of this record (the server kept the local-id field).
    assert_eq!(
        check_target(Some(&synced), Some(&ours), &temporary, false),
        Ok(())
    );
    assert_eq!(check_target(None, Some(&ours), &temporary, false), Ok(()));
    assert_eq!(check_target(Some(&synced), None, &temporary, false), Ok(()));
    assert_eq!(check_target(None, None, &temporary, false), Ok(()));
}

#[test]
fn a_temporary_creates_key_survives_later_saves_until_the_server_confirms_it() {
    let temporary = RecordId::temporary();
    let first = saved(None, &temporary, json!({"name": "a"}), SyncOperation::Create);
    let second = saved(
        Some(&first),
        &temporary,
        json!({"name": "b"}),
        SyncOperation::Update,
    );
    assert_eq!(second.operation, SyncOperation::Create);
    assert_eq!(second.operation_id, first.operation_id);
    // An ordinary id takes a new key per change, as before.
    let own: RecordId = "p1".parse().unwrap();
    let first = saved(None, &own, json!({"name": "a"}), SyncOperation::Create);
    let second = saved(Some(&first), &own, json!({"name": "b"}), SyncOperation::Update);
    assert_ne!(second.operation_id, first.operation_id);
}

fn applied_as(id: Value, replace: Option<Value>) -> AttemptOutcome {
    AttemptOutcome::AppliedAs {
        assigned: assigned_id(Some(&id), tasks_refer_to_projects()).unwrap(),
        replace_local_with: replace.map(object),
        server_version: Some("\"v1\"".to_owned()),
    }
}

#[test]
fn an_applied_create_moves_the_item_the_copy_and_the_document_to_the_new_id() {
    let temporary = RecordId::temporary();
    let item = saved(
        None,
        &temporary,
        json!({"id": temporary.as_str(), "name": "a"}),
        SyncOperation::Create,
    );
    let (claimed, ticket) = begin_attempt(&item, NOW).unwrap();
    let answer = json!({"id": 17, "name": "a", "created": "today"});
    let plan = finish_attempt(
        Some(&claimed),
        &ticket,
        &applied_as(json!(17), Some(answer.clone())),
        NOW,
    );
    let rename = plan.rename.clone().unwrap();
    assert_eq!(
        (rename.from.id.as_str(), rename.to.id.as_str()),
        (temporary.as_str(), "17")
    );
    assert_eq!(plan.key(&ticket), &rename.to);
    assert!(!plan.stale);
    let QueueWrite::Put(after) = &plan.queue else {
        panic!("{:?}", plan.queue)
    };
    assert_eq!(
        (after.id.as_str(), after.status, &after.payload["id"]),
        ("17", SyncStatus::Synced, &json!(17))
    );
    assert_eq!(plan.document, Some(DocumentWrite::Upsert(object(answer.clone()))));
    assert_eq!(
        plan.copy,
        CopyWrite::Put(crate::ServerCopy {
            data: object(answer),
            version: Some("\"v1\"".to_owned())
        })
    );
    // Without an answer to adopt, the copy is what was sent, under the new
    // id, and the document is left for the store to move.
    let plan = finish_attempt(Some(&claimed), &ticket, &applied_as(json!(17), None), NOW);
    assert_eq!(plan.document, None);
    let CopyWrite::Put(copy) = plan.copy else {
        panic!("{:?}", plan.copy)
    };
    assert_eq!(Value::Object(copy.data), json!({"id": 17, "name": "a"}));
}

#[test]
fn a_change_saved_during_the_create_becomes_an_update_of_the_new_id_with_a_new_key() {
    let temporary = RecordId::temporary();
    let item = saved(None, &temporary, json!({"name": "a"}), SyncOperation::Create);
    let (claimed, ticket) = begin_attempt(&item, NOW).unwrap();
    let newer = saved(
        Some(&claimed),
        &temporary,
        json!({"name": "b"}),
        SyncOperation::Update,
    );
    assert_eq!(newer.operation_id, item.operation_id);
    let plan = finish_attempt(
        Some(&newer),
        &ticket,
        &applied_as(json!(17), Some(json!({"id": 17, "name": "a"}))),
        NOW,
    );
    assert!(plan.stale);
    let QueueWrite::Put(after) = &plan.queue else {
        panic!("{:?}", plan.queue)
    };
    assert_eq!(
        (after.id.as_str(), after.operation, after.status),
        ("17", SyncOperation::Update, SyncStatus::Pending)
    );
    assert_ne!(after.operation_id, item.operation_id);
    assert_eq!(Value::Object(after.payload.clone()), json!({"name": "b"}));
    assert_eq!(plan.document, None, "the newer change stays the document");
}

#[test]
fn references_in_documents_and_queued_payloads_move_to_the_new_id() {
    let temporary = RecordId::temporary();
    let from = RecordKey::new("projects".parse().unwrap(), temporary.clone());
    let rename = Rename::new(
        &from,
        &assigned_id(Some(&json!(17)), tasks_refer_to_projects()).unwrap(),
    );
    let tasks: EntityName = "tasks".parse().unwrap();
    let notes: EntityName = "notes".parse().unwrap();
    let mut document = object(json!({"project_id": temporary.as_str(), "other": temporary.as_str()}));
    assert!(rename.rewrite_references(&tasks, &mut document));
    assert_eq!(
        Value::Object(document.clone()),
        json!({"project_id": 17, "other": temporary.as_str()})
    );
    assert!(!rename.rewrite_references(&tasks, &mut document), "once");
    let mut undeclared = object(json!({"project_id": temporary.as_str()}));
    assert!(!rename.rewrite_references(&notes, &mut undeclared));

    // A queued update of a task: a new version under a new key, sent again.
    let change = LocalChange::new(
        "tasks",
        "t1",
        json!({"project_id": temporary.as_str()}),
        SyncOperation::Update,
    )
    .unwrap();
    let QueueWrite::Put(task) = plan_save(None, true, change, SaveContext::at(NOW)).queue else {
        panic!("a save queues")
    };
    let (claimed, _) = begin_attempt(&task, NOW).unwrap();
    let later = Timestamp::from_millis(20_000);
    let rewritten = rename.rewrite_queued(&claimed, later).unwrap();
    assert_eq!(rewritten.payload["project_id"], json!(17));
    assert_eq!(rewritten.version, claimed.version + 1);
    assert_ne!(rewritten.operation_id, claimed.operation_id);
    assert_eq!(
        (rewritten.status, rewritten.in_flight, rewritten.next_attempt_at),
        (SyncStatus::Pending, claimed.in_flight, Some(later))
    );
    // A task of its own created under a temporary id keeps its key.
    let child = RecordId::temporary();
    let change = LocalChange::new(
        "tasks",
        child.as_str(),
        json!({"project_id": temporary.as_str()}),
        SyncOperation::Create,
    )
    .unwrap();
    let QueueWrite::Put(task) = plan_save(None, false, change, SaveContext::at(NOW)).queue else {
        panic!("a save queues")
    };
    let rewritten = rename.rewrite_queued(&task, later).unwrap();
    assert_eq!(rewritten.operation_id, task.operation_id);
    // A synced change (a delete sent with the old id in its payload) is
    // never sent again: made an update, it would bring the record back.
    let change = LocalChange::new(
        "tasks",
        "t5",
        json!({"project_id": temporary.as_str()}),
        SyncOperation::Delete,
    )
    .unwrap();
    let QueueWrite::Put(mut deleted) = plan_save(None, true, change, SaveContext::at(NOW)).queue else {
        panic!("a save queues")
    };
    deleted.status = SyncStatus::Synced;
    assert_eq!(rename.rewrite_queued(&deleted, later), None);
    // Nothing to rewrite: no new version.
    let mut unrelated = task;
    unrelated.payload = object(json!({"project_id": "p9"}));
    assert_eq!(rename.rewrite_queued(&unrelated, later), None);
}

#[test]
fn a_save_naming_renamed_temporary_ids_takes_the_servers_ids() {
    let project = RecordId::temporary();
    let task = RecordId::temporary();
    let unknown = RecordId::temporary();
    let change = LocalChange::new(
        "tasks",
        task.as_str(),
        json!({"project_id": project.as_str(), "other": unknown.as_str(), "title": "tmp-x"}),
        SyncOperation::Update,
    )
    .unwrap();
    let mut found = temporary_ids_in(&change);
    found.sort();
    let mut expected = vec![project.clone(), task.clone(), unknown.clone()];
    expected.sort();
    assert_eq!(found, expected);
    let aliases = HashMap::from([
        (
            project.clone(),
            Alias {
                entity: "projects".parse().unwrap(),
                id: "17".parse().unwrap(),
                value: json!(17),
            },
        ),
        (
            task.clone(),
            Alias {
                entity: "tasks".parse().unwrap(),
                id: "a1".parse().unwrap(),
                value: json!("a1"),
            },
        ),
    ]);
    let resolved = apply_aliases(change, &aliases);
    assert_eq!(resolved.key.id.as_str(), "a1");
    // The record's own temporary id in its local-id field stays; in its id
    // field it moves.
    let own = LocalChange::new(
        "tasks",
        "a1",
        json!({"id": task.as_str(), "client_ref": task.as_str()}),
        SyncOperation::Update,
    )
    .unwrap();
    assert_eq!(
        Value::Object(apply_aliases(own, &aliases).payload),
        json!({"id": "a1", "client_ref": task.as_str()})
    );
    assert_eq!(
        Value::Object(resolved.payload),
        json!({"project_id": 17, "other": unknown.as_str(), "title": "tmp-x"})
    );
}

#[test]
fn a_found_create_is_renamed_and_its_local_state_follows_as_an_update_with_a_new_key() {
    let temporary = RecordId::temporary();
    let item = saved(None, &temporary, json!({"name": "a"}), SyncOperation::Create);
    let (claimed, ticket) = begin_attempt(&item, NOW).unwrap();
    let newer = saved(
        Some(&claimed),
        &temporary,
        json!({"name": "b"}),
        SyncOperation::Update,
    );
    let found = crate::ServerCopy {
        data: object(json!({"id": 17, "name": "a", "client_ref": temporary.as_str()})),
        version: Some("\"v1\"".to_owned()),
    };
    for (current, stale) in [(&claimed, false), (&newer, true)] {
        let outcome = AttemptOutcome::FoundAs {
            assigned: assigned_id(Some(&json!(17)), Vec::new()).unwrap(),
            copy: found.clone(),
        };
        let plan = finish_attempt(Some(current), &ticket, &outcome, NOW);
        assert_eq!(plan.stale, stale);
        assert_eq!(
            plan.rename.as_ref().map(|rename| rename.to.id.as_str()),
            Some("17")
        );
        assert_eq!(plan.document, None, "the local document stays");
        assert_eq!(plan.copy, CopyWrite::Put(found.clone()));
        let QueueWrite::Put(after) = plan.queue else {
            panic!("{:?}", plan.queue)
        };
        assert_eq!(
            (
                after.id.as_str(),
                after.operation,
                after.status,
                after.possibly_applied
            ),
            ("17", SyncOperation::Update, SyncStatus::Pending, false)
        );
        assert_eq!(after.next_attempt_at, Some(NOW));
        assert_ne!(after.operation_id, ticket.operation_id, "a key of its own");
    }
}

#[test]
fn temporary_ids_no_rename_would_rewrite_are_found_with_where_they_are() {
    let one = RecordId::temporary();
    let two = RecordId::temporary();
    let document = object(json!({
        "id": one.as_str(),
        "project_id": one.as_str(),
        "client_ref": two.as_str(),
        "meta": {"parent": one.as_str(), "n": 1},
        "tags": ["x", two.as_str()],
        "title": "tmp-not-an-id",
    }));
    let mut found = stray_temporary_ids(&document, |field| field == "project_id");
    found.sort();
    let mut expected = vec![
        ("client_ref".to_owned(), two.clone()),
        ("meta/parent".to_owned(), one.clone()),
        ("tags/1".to_owned(), two),
    ];
    expected.sort();
    assert_eq!(found, expected);
    assert!(stray_temporary_ids(&object(json!({"title": "a"})), |_| false).is_empty());
}

#[test]
fn a_delete_saved_over_a_queued_change_keeps_its_document() {
    let temporary = RecordId::temporary();
    let created = saved(
        None,
        &temporary,
        json!({"name": "a", "project_id": 5}),
        SyncOperation::Create,
    );
    // Its create may have reached the server: the delete keeps the
    // document (to post again for the id, and to name its parent).
    let mut possibly = created;
    possibly.possibly_applied = true;
    let deleted = saved(Some(&possibly), &temporary, json!({}), SyncOperation::Delete);
    assert_eq!(deleted.operation, SyncOperation::Delete);
    assert_eq!(
        Value::Object(deleted.payload),
        json!({"name": "a", "project_id": 5})
    );
}

#[test]
fn a_temporary_id_with_no_item_left_is_of_unknown_state_on_the_server() {
    let temporary = RecordId::temporary();
    // An update of it (its create was discarded): a create that checks
    // first, never a PUT of an id the server cannot know.
    let updated = saved(None, &temporary, json!({"name": "a"}), SyncOperation::Update);
    assert_eq!(
        (updated.operation, updated.possibly_applied),
        (SyncOperation::Create, true)
    );
    let deleted = saved(None, &temporary, json!({}), SyncOperation::Delete);
    assert_eq!(
        (deleted.operation, deleted.possibly_applied),
        (SyncOperation::Delete, true)
    );
}

#[test]
fn a_rename_is_refused_only_for_the_attempt_the_item_carries_and_a_taken_id() {
    let temporary = RecordId::temporary();
    let item = saved(None, &temporary, json!({"name": "a"}), SyncOperation::Create);
    let (claimed, ticket) = begin_attempt(&item, NOW).unwrap();
    let outcome = applied_as(json!(17), None);
    let taken = saved(
        None,
        &"17".parse().unwrap(),
        json!({"name": "b"}),
        SyncOperation::Update,
    );
    assert_eq!(
        refused_rename(Some(&claimed), &ticket, &outcome, Some(&taken), None),
        Some(AssignedIdRefusal::Clash.outcome())
    );
    assert_eq!(
        refused_rename(Some(&claimed), &ticket, &outcome, None, None),
        None,
        "free"
    );
    // An attempt given up on: nothing applies, so nothing is refused.
    assert_eq!(
        refused_rename(Some(&item), &ticket, &outcome, Some(&taken), None),
        None
    );
    // An outcome that renames nothing.
    let plain = AttemptOutcome::Applied {
        replace_local_with: None,
        server_version: None,
    };
    assert_eq!(
        refused_rename(Some(&claimed), &ticket, &plain, Some(&taken), None),
        None
    );
    // Another record's document there: refused on a first create, taken
    // after a lost answer (a pull may have brought this record).
    let theirs = object(json!({"name": "theirs"}));
    assert!(refused_rename(Some(&claimed), &ticket, &outcome, None, Some(&theirs)).is_some());
    let mut retried = ticket;
    retried.plan = crate::attempt::SendPlan::CreateIfAbsent;
    assert_eq!(
        refused_rename(Some(&claimed), &retried, &outcome, None, Some(&theirs)),
        None
    );
}
