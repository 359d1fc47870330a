//! Server-assigned ids: a create applied under the server's id renames
//! the record everywhere in one transaction, the temporary id keeps
//! resolving, and a taken id parks the create, renaming nothing.

use serde_json::{Value, json};
use sync_core::rename::{ReferringField, assigned_id};
use sync_core::{
    AttemptOutcome, FinishResult, FinishedAttempt, RecordId, StoreEvent, SyncOperation, SyncStatus, SyncStore,
};
use tokio_stream::StreamExt;

use super::{T0, T1, T2, T3, change_with, key};

fn tasks_refer_to_projects() -> Vec<ReferringField> {
    vec![ReferringField {
        entity: "tasks".parse().expect("valid entity"),
        field: "project_id".to_owned(),
    }]
}

fn applied_as(id: Value, answer: Option<Value>) -> AttemptOutcome {
    AttemptOutcome::AppliedAs {
        assigned: assigned_id(Some(&id), tasks_refer_to_projects()).expect("a valid id"),
        replace_local_with: answer.and_then(|answer| match answer {
            Value::Object(object) => Some(object),
            _ => None,
        }),
        server_version: Some("\"v1\"".to_owned()),
    }
}

async fn data(store: &dyn SyncStore, entity: &str, id: &str) -> Option<Value> {
    store
        .record(&key(entity, id))
        .await
        .expect("a read")
        .map(|record| Value::Object(record.data))
}

/// Claims the one ready item of `entity` (the others are left ready).
async fn claim(store: &dyn SyncStore, now: sync_core::Timestamp, id: &RecordId) -> sync_core::AttemptTicket {
    let tickets = store.claim_ready(now, 100).await.expect("a claim");
    let mut found = None;
    let mut others = Vec::new();
    for ticket in tickets {
        if &ticket.key.id == id {
            found = Some(ticket);
        } else {
            others.push(FinishedAttempt {
                ticket,
                outcome: AttemptOutcome::Released {
                    possibly_applied: false,
                },
            });
        }
    }
    store.finish_attempts(others, now).await.expect("a release");
    found.expect("the item was ready")
}

/// The document, the queue item, the server copy and the references in
/// other documents and queued payloads move to the server's id at once;
/// the temporary id keeps resolving, for reads and for saves.
pub async fn an_applied_create_renames_the_record_everywhere(store: &dyn SyncStore) {
    let temporary = RecordId::temporary();
    let tmp = temporary.as_str();
    store
        .save(
            change_with(
                "projects",
                tmp,
                SyncOperation::Create,
                json!({"id": tmp, "name": "p"}),
            ),
            T0,
        )
        .await
        .expect("a save");
    store
        .save(
            change_with(
                "tasks",
                "t1",
                SyncOperation::Create,
                json!({"id": "t1", "project_id": tmp}),
            ),
            T0,
        )
        .await
        .expect("a save");
    // A note that is not a declared reference keeps its text.
    store
        .save(
            change_with("notes", "n1", SyncOperation::Create, json!({"about": tmp})),
            T0,
        )
        .await
        .expect("a save");
    let mut events = store.subscribe();
    let ticket = claim(store, T1, &temporary).await;
    let results = store
        .finish_attempts(
            vec![FinishedAttempt {
                ticket,
                outcome: applied_as(json!(17), None),
            }],
            T2,
        )
        .await
        .expect("a finish");
    assert_eq!(results, [FinishResult::Current]);

    assert_eq!(
        data(store, "projects", tmp).await,
        Some(json!({"id": 17, "name": "p"})),
        "by the old id"
    );
    assert_eq!(
        data(store, "projects", "17").await,
        Some(json!({"id": 17, "name": "p"}))
    );
    let projects = store
        .records(&"projects".parse().expect("valid"))
        .await
        .expect("a read");
    assert_eq!(projects.len(), 1, "one record, under one id");
    assert_eq!(projects[0].id.as_str(), "17");
    let item = store
        .queue_item(&key("projects", "17"))
        .await
        .expect("a read")
        .expect("an item");
    assert_eq!((item.id.as_str(), item.status), ("17", SyncStatus::Synced));
    assert_eq!(
        store.queue_item(&key("projects", tmp)).await.expect("a read"),
        Some(item),
        "the old id resolves"
    );
    assert_eq!(
        store
            .resolve_id(&key("projects", tmp))
            .await
            .expect("a read")
            .as_str(),
        "17"
    );
    assert_eq!(
        store
            .resolve_id(&key("tasks", "t1"))
            .await
            .expect("a read")
            .as_str(),
        "t1"
    );
    let copy = store.server_copy(&key("projects", "17")).await.expect("a read");
    assert_eq!(
        copy.map(|copy| Value::Object(copy.data)),
        Some(json!({"id": 17, "name": "p"}))
    );
    assert_eq!(
        data(store, "tasks", "t1").await,
        Some(json!({"id": "t1", "project_id": 17}))
    );
    let task = store
        .queue_item(&key("tasks", "t1"))
        .await
        .expect("a read")
        .expect("an item");
    assert_eq!(task.payload.get("project_id"), Some(&json!(17)));
    assert_eq!(
        (task.operation, task.status),
        (SyncOperation::Create, SyncStatus::Pending)
    );
    assert_eq!(data(store, "notes", "n1").await, Some(json!({"about": tmp})));
    let queue = store.queue().await.expect("a read");
    assert!(
        queue.iter().all(|item| item.id != temporary),
        "no item under the old id: {queue:?}"
    );

    // Watchers learn of the move.
    let mut renamed = false;
    while let Ok(Some(event)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), events.next()).await
    {
        if let StoreEvent::Renamed { from, to } = event {
            assert_eq!((from.id.as_str(), to.id.as_str()), (tmp, "17"));
            renamed = true;
        }
    }
    assert!(renamed, "a Renamed event");

    // A save still naming the old ids lands on the new ones.
    let saved = store
        .save(
            change_with(
                "projects",
                tmp,
                SyncOperation::Update,
                json!({"id": tmp, "name": "renamed later"}),
            ),
            T3,
        )
        .await
        .expect("a save");
    let item = saved.item.expect("an item");
    assert_eq!((item.id.as_str(), item.operation), ("17", SyncOperation::Update));
    assert_eq!(
        data(store, "projects", "17").await,
        Some(json!({"id": 17, "name": "renamed later"}))
    );
    store
        .save(
            change_with(
                "tasks",
                "t2",
                SyncOperation::Create,
                json!({"id": "t2", "project_id": tmp}),
            ),
            T3,
        )
        .await
        .expect("a save");
    assert_eq!(
        data(store, "tasks", "t2").await,
        Some(json!({"id": "t2", "project_id": 17}))
    );
    assert_eq!(
        store
            .records(&"projects".parse().expect("valid"))
            .await
            .expect("a read")
            .len(),
        1
    );
}

/// A change saved while the create was out is kept: it becomes an update
/// of the server's id, with a key of its own.
pub async fn a_change_saved_during_the_create_is_sent_to_the_new_id(store: &dyn SyncStore) {
    let temporary = RecordId::temporary();
    let tmp = temporary.as_str();
    store
        .save(
            change_with("projects", tmp, SyncOperation::Create, json!({"name": "a"})),
            T0,
        )
        .await
        .expect("a save");
    let ticket = claim(store, T1, &temporary).await;
    store
        .save(
            change_with("projects", tmp, SyncOperation::Update, json!({"name": "b"})),
            T1,
        )
        .await
        .expect("a save");
    let results = store
        .finish_attempts(
            vec![FinishedAttempt {
                ticket: ticket.clone(),
                outcome: applied_as(json!("a1"), Some(json!({"id": "a1", "name": "a"}))),
            }],
            T2,
        )
        .await
        .expect("a finish");
    assert_eq!(results, [FinishResult::Stale]);
    let item = store
        .queue_item(&key("projects", "a1"))
        .await
        .expect("a read")
        .expect("an item");
    assert_eq!(
        (item.operation, item.status, item.payload.get("name")),
        (SyncOperation::Update, SyncStatus::Pending, Some(&json!("b")))
    );
    assert_ne!(item.operation_id, ticket.operation_id);
    assert_eq!(data(store, "projects", "a1").await, Some(json!({"name": "b"})));
    let copy = store.server_copy(&key("projects", "a1")).await.expect("a read");
    assert_eq!(
        copy.map(|copy| Value::Object(copy.data)),
        Some(json!({"id": "a1", "name": "a"}))
    );
}

/// What the store holds under the server's id decides (`check_target`):
/// a record with changes to send there parks the create (possibly
/// applied) and renames nothing; so does another synced record there, on
/// a first create's answer; a synced copy of this very record (it holds
/// the temporary id) is replaced, and so is any synced copy once the
/// create is retried after a lost answer (a pull may have brought it).
pub async fn a_taken_id_parks_the_create_and_renames_nothing(store: &dyn SyncStore) {
    let applied = |ticket| FinishedAttempt {
        ticket,
        outcome: AttemptOutcome::Applied {
            replace_local_with: None,
            server_version: None,
        },
    };
    let renamed_to = |ticket, id: u64| FinishedAttempt {
        ticket,
        outcome: applied_as(json!(id), None),
    };
    let parked = |item: Option<sync_core::SyncQueueItem>| {
        let item = item.expect("an item");
        item.is_parked()
            && item.possibly_applied
            && item
                .last_error
                .as_deref()
                .is_some_and(|error| error.contains("nothing was renamed"))
    };
    // 17: a record with changes to send.
    let first = RecordId::temporary();
    store
        .save(
            change_with(
                "projects",
                "17",
                SyncOperation::Create,
                json!({"id": "17", "name": "mine"}),
            ),
            T0,
        )
        .await
        .expect("a save");
    store
        .save(
            change_with(
                "projects",
                first.as_str(),
                SyncOperation::Create,
                json!({"name": "new"}),
            ),
            T0,
        )
        .await
        .expect("a save");
    let ticket = claim(store, T1, &first).await;
    store
        .finish_attempts(vec![renamed_to(ticket, 17)], T1)
        .await
        .expect("a finish");
    assert!(parked(
        store
            .queue_item(&key("projects", first.as_str()))
            .await
            .expect("a read")
    ));
    assert_eq!(
        data(store, "projects", first.as_str()).await,
        Some(json!({"name": "new"}))
    );
    assert_eq!(
        data(store, "projects", "17").await,
        Some(json!({"id": "17", "name": "mine"}))
    );
    assert_eq!(
        store
            .resolve_id(&key("projects", first.as_str()))
            .await
            .expect("a read"),
        first
    );
    let ticket = claim(store, T1, &"17".parse().expect("valid")).await;
    store
        .finish_attempts(vec![applied(ticket)], T1)
        .await
        .expect("a finish");

    // 18: another synced record, a first create answered with its id.
    let second = RecordId::temporary();
    store
        .save(
            change_with(
                "projects",
                "18",
                SyncOperation::Create,
                json!({"id": "18", "name": "theirs"}),
            ),
            T1,
        )
        .await
        .expect("a save");
    let ticket = claim(store, T1, &"18".parse().expect("valid")).await;
    store
        .finish_attempts(vec![applied(ticket)], T1)
        .await
        .expect("a finish");
    store
        .save(
            change_with(
                "projects",
                second.as_str(),
                SyncOperation::Create,
                json!({"name": "second"}),
            ),
            T2,
        )
        .await
        .expect("a save");
    let ticket = claim(store, T2, &second).await;
    store
        .finish_attempts(vec![renamed_to(ticket, 18)], T2)
        .await
        .expect("a finish");
    assert!(parked(
        store
            .queue_item(&key("projects", second.as_str()))
            .await
            .expect("a read")
    ));
    assert_eq!(
        data(store, "projects", "18").await,
        Some(json!({"id": "18", "name": "theirs"}))
    );

    // Retried after that answer (possibly applied): replaced.
    assert!(
        store
            .retry(&key("projects", second.as_str()), T2)
            .await
            .expect("a retry")
    );
    let ticket = claim(store, T2, &second).await;
    store
        .finish_attempts(vec![renamed_to(ticket, 18)], T2)
        .await
        .expect("a finish");
    assert_eq!(
        data(store, "projects", "18").await,
        Some(json!({"name": "second"}))
    );
    assert_eq!(
        store
            .resolve_id(&key("projects", second.as_str()))
            .await
            .expect("a read")
            .as_str(),
        "18"
    );

    // 19: a synced copy of this very record (a pull brought it; the
    // server kept the local-id field): replaced on a first create.
    let third = RecordId::temporary();
    store
        .save(
            change_with(
                "projects",
                "19",
                SyncOperation::Update,
                json!({"id": 19, "name": "third", "client_ref": third.as_str()}),
            ),
            T2,
        )
        .await
        .expect("a save");
    let ticket = claim(store, T2, &"19".parse().expect("valid")).await;
    store
        .finish_attempts(vec![applied(ticket)], T2)
        .await
        .expect("a finish");
    store
        .save(
            change_with(
                "projects",
                third.as_str(),
                SyncOperation::Create,
                json!({"name": "third"}),
            ),
            T3,
        )
        .await
        .expect("a save");
    let ticket = claim(store, T3, &third).await;
    store
        .finish_attempts(vec![renamed_to(ticket, 19)], T3)
        .await
        .expect("a finish");
    assert_eq!(
        data(store, "projects", "19").await,
        Some(json!({"name": "third"}))
    );
    assert_eq!(
        store
            .resolve_id(&key("projects", third.as_str()))
            .await
            .expect("a read")
            .as_str(),
        "19"
    );
}

/// The deletes a parent's delete waits for: queued deletes of the
/// entity whose document (the server's copy, else the payload) names the
/// parent in the field; not synced ones, not other records'.
pub async fn queued_child_deletes_are_found_by_their_reference(store: &dyn SyncStore) {
    for (id, project) in [("t1", "p"), ("t2", "p"), ("t3", "q")] {
        store
            .save(
                change_with(
                    "tasks",
                    id,
                    SyncOperation::Create,
                    json!({"id": id, "project_id": project}),
                ),
                T0,
            )
            .await
            .expect("a save");
    }
    for _ in 0..3 {
        let ticket = store.claim_ready(T1, 1).await.expect("a claim").remove(0);
        store
            .finish_attempts(
                vec![FinishedAttempt {
                    ticket,
                    outcome: AttemptOutcome::Applied {
                        replace_local_with: None,
                        server_version: None,
                    },
                }],
                T1,
            )
            .await
            .expect("a finish");
    }
    for id in ["t1", "t3"] {
        store
            .save(change_with("tasks", id, SyncOperation::Delete, json!({})), T2)
            .await
            .expect("a save");
    }
    // A delete whose server copy is unknown names its parent in its payload.
    store
        .save(
            change_with("tasks", "t9", SyncOperation::Delete, json!({"project_id": "p"})),
            T2,
        )
        .await
        .expect("a save");
    let tasks = "tasks".parse().expect("valid");
    let mut found: Vec<String> = store
        .queued_child_deletes(&tasks, "project_id", &"p".parse().expect("valid"))
        .await
        .expect("a read")
        .into_iter()
        .map(|item| item.id.into_string())
        .collect();
    found.sort();
    assert_eq!(found, ["t1", "t9"]);
    assert!(
        store
            .queued_child_deletes(&tasks, "owner", &"p".parse().expect("valid"))
            .await
            .expect("a read")
            .is_empty()
    );
}
