//! Server-assigned ids (issue 14): a record created offline under a
//! temporary id takes the server's id when its create is applied, with
//! every reference to it; a lost answer finds the record instead of
//! creating it twice; bad answers park and rename nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

#[path = "support/assigning.rs"]
mod assigning;

use std::sync::Arc;
use std::time::Duration;

use assigning::{Answer, AssigningServer};
use serde_json::json;
use sync_core::rename::AssignedIdRefusal;
use sync_core::{SyncOperation, SyncStatus, ValidationError};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions, SyncError, TokioClock};
use sync_testkit::{FakeMonitor, MemoryStore};

async fn engine(server: &AssigningServer, concurrency: usize) -> OfflineSyncEngine {
    OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(
        OfflineSyncOptions::default()
            .sync_after_save(false)
            .connectivity_check_interval(None)
            .concurrency(concurrency),
    )
    .reference("tasks", "project_id", "projects")
    .clock(Arc::new(TokioClock::new()))
    .build()
    .await
    .unwrap()
}

/// Syncs until nothing is left to send (held children wait a moment).
async fn drain(engine: &OfflineSyncEngine) {
    for _ in 0..50 {
        engine.sync_manager().sync_now().await.unwrap();
        if engine
            .wait_until_drained(Duration::from_millis(150))
            .await
            .unwrap()
        {
            return;
        }
    }
    panic!("the queue did not drain: {:?}", engine.queue().await.unwrap());
}

fn violations(server: &AssigningServer) -> Vec<String> {
    server.violations.lock().unwrap().clone()
}

#[tokio::test]
async fn a_record_created_offline_takes_the_servers_id_and_keeps_answering_to_its_own() {
    let server = AssigningServer::new(true, false, Answer::Record);
    let engine = engine(&server, 1).await;
    let created = engine.create("projects", json!({"name": "draft"})).await.unwrap();
    let tmp = created.id.to_string();
    assert!(created.id.is_temporary(), "{tmp}");
    // Offline, it is a record like any other.
    engine
        .save("projects", &tmp, json!({"name": "plan"}), SyncOperation::Update)
        .await
        .unwrap();
    assert_eq!(
        engine.get_record("projects", &tmp).await.unwrap().unwrap().data["name"],
        json!("plan")
    );
    let mut status = engine.watch_item_status("projects", &tmp).unwrap();
    use tokio_stream::StreamExt;
    assert_eq!(status.next().await, Some(Some(SyncStatus::Pending)));

    drain(&engine).await;
    assert_eq!(
        server.records("projects"),
        [(1, json!({"id": 1, "name": "plan"}))]
    );
    assert_eq!(engine.resolve_id("projects", &tmp).await.unwrap().as_str(), "1");
    let record = engine.get_record("projects", &tmp).await.unwrap().unwrap();
    assert_eq!((record.id.as_str(), &record.data["id"]), ("1", &json!(1)));
    let all = engine.get_records("projects").await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    // The watch followed the record to its new id.
    let synced = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(value) = status.next().await {
            if value == Some(SyncStatus::Synced) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(synced);
    assert_eq!(
        created.saved.item.as_ref().map(|item| item.id.clone()),
        Some(created.id.clone())
    );

    // A later edit through the old id goes to the server's id.
    engine
        .save("projects", &tmp, json!({"name": "final"}), SyncOperation::Update)
        .await
        .unwrap();
    drain(&engine).await;
    assert_eq!(
        server.records("projects"),
        [(1, json!({"id": 1, "name": "final"}))]
    );
    assert_eq!(server.log(), ["POST projects", "PUT projects/1"]);
    assert!(violations(&server).is_empty(), "{:?}", violations(&server));
}

#[tokio::test]
async fn references_to_a_new_record_take_its_id_and_children_wait_for_it() {
    let server = AssigningServer::new(true, false, Answer::Record);
    let engine = engine(&server, 8).await;
    let mut sent = 0;
    let mut projects = Vec::new();
    for p in 0..4 {
        let project = engine
            .create("projects", json!({"name": format!("p{p}")}))
            .await
            .unwrap();
        for t in 0..5 {
            let task = engine
                .create(
                    "tasks",
                    json!({"title": format!("t{p}.{t}"), "project_id": project.id.as_str()}),
                )
                .await
                .unwrap();
            if t == 0 {
                // A task edited while its project waits.
                engine
                    .save(
                        "tasks",
                        task.id.as_str(),
                        json!({"title": "edited", "project_id": project.id.as_str()}),
                        SyncOperation::Update,
                    )
                    .await
                    .unwrap();
            }
        }
        projects.push(project);
    }
    // Every create renamed counts as sent in the runs' reports.
    for _ in 0..50 {
        let report = engine.sync_manager().sync_now().await.unwrap();
        sent += report.sent;
        if report.still_pending == 0 {
            break;
        }
    }
    assert_eq!(sent, 24, "4 projects and 20 tasks");
    drain(&engine).await;
    assert!(violations(&server).is_empty(), "{:?}", violations(&server));
    let tasks = server.records("tasks");
    assert_eq!(tasks.len(), 20);
    for (_, task) in &tasks {
        let project = task["project_id"].as_u64().expect("a numeric project id");
        assert!((1..=4).contains(&project), "{task}");
    }
    assert_eq!(
        tasks.iter().filter(|(_, task)| task["title"] == "edited").count(),
        4
    );
    // Local documents refer to the server's ids too.
    for record in engine.get_records("tasks").await.unwrap() {
        assert!(record.data["project_id"].is_u64(), "{:?}", record.data);
        assert!(!record.id.is_temporary());
    }
    for project in &projects {
        assert!(
            !engine
                .resolve_id("projects", project.id.as_str())
                .await
                .unwrap()
                .is_temporary()
        );
    }
}

#[tokio::test]
async fn a_lost_answer_is_found_by_the_temporary_id_and_not_created_twice() {
    let server = AssigningServer::new(true, false, Answer::Record);
    let engine = engine(&server, 1).await;
    let created = engine.create("projects", json!({"name": "a"})).await.unwrap();
    server.lose_next_answer();
    engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(server.records("projects").len(), 1);
    // Edited while the answer is unknown: the edit reaches the record.
    engine
        .save(
            "projects",
            created.id.as_str(),
            json!({"name": "b"}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    drain(&engine).await;
    assert_eq!(server.records("projects"), [(1, json!({"id": 1, "name": "b"}))]);
    assert_eq!(
        server.log(),
        ["POST projects", "GET projects?client_ref", "PUT projects/1"]
    );
    assert_eq!(
        engine
            .resolve_id("projects", created.id.as_str())
            .await
            .unwrap()
            .as_str(),
        "1"
    );
}

#[tokio::test]
async fn without_a_lookup_a_replaying_server_gives_the_first_answer_again() {
    let server = AssigningServer::new(false, true, Answer::Record);
    let engine = engine(&server, 1).await;
    let created = engine.create("projects", json!({"name": "a"})).await.unwrap();
    server.lose_next_answer();
    engine.sync_manager().sync_now().await.unwrap();
    engine
        .save(
            "projects",
            created.id.as_str(),
            json!({"name": "b"}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    drain(&engine).await;
    // The same key again: replayed, then the newer state over it.
    assert_eq!(server.records("projects"), [(1, json!({"id": 1, "name": "b"}))]);
    assert_eq!(server.log(), ["POST projects", "POST projects", "PUT projects/1"]);
}

#[tokio::test]
async fn a_record_deleted_after_a_lost_answer_is_deleted_on_the_server() {
    let server = AssigningServer::new(true, false, Answer::Record);
    let engine = engine(&server, 1).await;
    let created = engine.create("projects", json!({"name": "a"})).await.unwrap();
    server.lose_next_answer();
    engine.sync_manager().sync_now().await.unwrap();
    engine
        .save("projects", created.id.as_str(), json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    drain(&engine).await;
    assert!(server.records("projects").is_empty());
    assert_eq!(
        server.log(),
        ["POST projects", "GET projects?client_ref", "DELETE projects/1"]
    );
    // Deleted before it was ever sent: nothing at all.
    let never = engine.create("projects", json!({"name": "x"})).await.unwrap();
    engine
        .save("projects", never.id.as_str(), json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    drain(&engine).await;
    assert_eq!(server.log().len(), 3);
}

#[tokio::test]
async fn an_answer_without_a_usable_id_parks_and_renames_nothing() {
    for answer in [Answer::NoId, Answer::BadId] {
        let server = AssigningServer::new(true, false, answer);
        let engine = engine(&server, 1).await;
        let created = engine.create("projects", json!({"name": "a"})).await.unwrap();
        let task = engine
            .create("tasks", json!({"project_id": created.id.as_str()}))
            .await
            .unwrap();
        engine.sync_manager().sync_now().await.unwrap();
        let item = engine
            .queue_item("projects", created.id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert!(item.is_parked() && item.possibly_applied, "{item:?}");
        assert!(
            item.last_error
                .as_deref()
                .is_some_and(|error| error.contains("nothing was renamed")),
            "{item:?}"
        );
        let expected = match answer {
            Answer::NoId => AssignedIdRefusal::Missing,
            _ => AssignedIdRefusal::Invalid,
        };
        assert_eq!(AssignedIdRefusal::of_item(&item), Some(expected));
        assert_eq!(item.id, created.id);
        assert_eq!(
            engine.resolve_id("projects", created.id.as_str()).await.unwrap(),
            created.id
        );
        // The task waits, visibly, and was never sent.
        let waiting = engine
            .queue_item("tasks", task.id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(waiting.status, SyncStatus::Pending);
        assert!(
            waiting
                .last_error
                .as_deref()
                .is_some_and(|error| error.contains("is parked")),
            "{waiting:?}"
        );
        assert!(server.records("tasks").is_empty());
    }
}

#[tokio::test]
async fn an_id_a_local_record_with_unsent_changes_has_parks_the_create() {
    let server = AssigningServer::new(true, false, Answer::Record);
    let engine = engine(&server, 1).await;
    let created = engine.create("projects", json!({"name": "new"})).await.unwrap();
    // A record the app saved under "1" itself, not sent yet (it is after
    // the create in the queue).
    engine
        .save(
            "projects",
            "1",
            json!({"id": "1", "name": "mine"}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    let item = engine
        .queue_item("projects", created.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(item.is_parked(), "{item:?}");
    assert!(
        item.last_error
            .as_deref()
            .is_some_and(|error| error.contains("another local record"))
    );
    assert_eq!(
        engine.get_record("projects", "1").await.unwrap().unwrap().data["name"],
        json!("mine")
    );
    assert_eq!(
        engine
            .get_record("projects", created.id.as_str())
            .await
            .unwrap()
            .unwrap()
            .data["name"],
        json!("new")
    );
}

#[tokio::test]
async fn a_create_with_an_id_of_its_own_is_refused() {
    let server = AssigningServer::new(true, false, Answer::Record);
    let engine = engine(&server, 1).await;
    let refused = engine.create("projects", json!({"id": 5, "name": "x"})).await;
    assert!(
        matches!(
            refused,
            Err(SyncError::Invalid(ValidationError::IdForServerToAssign { .. }))
        ),
        "{refused:?}"
    );
    assert!(engine.get_records("projects").await.unwrap().is_empty());
    assert!(engine.queue().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_already_exists_answer_is_the_record_an_earlier_create_made() {
    let server = AssigningServer::new(true, false, Answer::Record);
    let engine = engine(&server, 1).await;
    let created = engine.create("projects", json!({"name": "a"})).await.unwrap();
    server.lose_next_answer_quietly();
    engine.sync_manager().sync_now().await.unwrap();
    drain(&engine).await;
    assert_eq!(server.records("projects"), [(1, json!({"id": 1, "name": "a"}))]);
    assert_eq!(
        server.log(),
        [
            "POST projects",
            "POST projects (exists)",
            "GET projects?client_ref"
        ]
    );
    assert_eq!(
        engine
            .resolve_id("projects", created.id.as_str())
            .await
            .unwrap()
            .as_str(),
        "1"
    );
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Project {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    name: String,
}

#[tokio::test]
async fn a_typed_value_without_an_id_is_created_for_the_server_to_name() {
    let server = AssigningServer::new(true, false, Answer::Record);
    let engine = engine(&server, 1).await;
    let projects = engine.collection::<Project>("projects").unwrap();
    let created = projects
        .create_new(&Project {
            id: None,
            name: "typed".into(),
        })
        .await
        .unwrap();
    // Before the server names it, it reads back without an id.
    assert_eq!(
        projects.get(created.id.as_str()).await.unwrap(),
        Some(Project {
            id: None,
            name: "typed".into()
        })
    );
    drain(&engine).await;
    assert_eq!(
        projects.get(created.id.as_str()).await.unwrap(),
        Some(Project {
            id: Some(1),
            name: "typed".into()
        })
    );
    assert_eq!(
        projects.get("1").await.unwrap().map(|project| project.id),
        Some(Some(1))
    );
    let refused = projects
        .create_new(&Project {
            id: Some(5),
            name: "mine".into(),
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(SyncError::Invalid(ValidationError::IdForServerToAssign { .. }))
        ),
        "{refused:?}"
    );
    assert_eq!(projects.all().await.unwrap().records.len(), 1);
}

#[tokio::test]
async fn a_temporary_id_where_no_rename_rewrites_it_never_reaches_the_server() {
    let server = AssigningServer::new(true, false, Answer::Record);
    let engine = engine(&server, 1).await;
    let project = engine.create("projects", json!({"name": "p"})).await.unwrap();
    let nested = engine
        .create(
            "tasks",
            json!({"title": "nested", "meta": {"project": project.id.as_str()}}),
        )
        .await
        .unwrap();
    let undeclared = engine
        .create(
            "tasks",
            json!({"title": "undeclared", "owner_project": project.id.as_str()}),
        )
        .await
        .unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(server.records("projects").len(), 1);
    assert!(
        server.records("tasks").is_empty(),
        "{:?}",
        server.records("tasks")
    );
    for (task, path) in [(&nested, "meta/project"), (&undeclared, "owner_project")] {
        let item = engine
            .queue_item("tasks", task.id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.status, SyncStatus::Pending);
        let reason = item.last_error.unwrap_or_default();
        assert!(
            reason.contains(path) && reason.contains("temporary id"),
            "{reason}"
        );
        assert!(
            !reason.contains(project.id.as_str()),
            "no id in the reason: {reason}"
        );
    }
    assert!(violations(&server).is_empty(), "{:?}", violations(&server));
}
