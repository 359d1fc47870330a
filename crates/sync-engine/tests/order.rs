//! Dependency order (issue 14): declared references send parents first,
//! with several requests out at once; a parked parent holds its children
//! (visibly) and not the rest of the queue; a parent's delete waits for its
//! children's; cycles are refused at build.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sync_core::{
    ApiError, EntityName, ErrorKind, JsonObject, OperationId, RecordId, RecordKey, SyncApiAdapter,
    SyncOperation, SyncStatus, ValidationError,
};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions, SyncError, TokioClock};
use sync_testkit::{FakeAdapter, FakeMonitor, Fault, MemoryStore};

fn key(entity: &str, id: &str) -> RecordKey {
    RecordKey::new(entity.parse().unwrap(), id.parse().unwrap())
}

/// The fake server, checking as each request arrives that the records it
/// refers to are already stored, and that a project's delete finds none of
/// its tasks left.
#[derive(Clone)]
struct OrderChecking {
    inner: FakeAdapter,
    violations: Arc<Mutex<Vec<String>>>,
}

impl OrderChecking {
    fn check_parent(&self, entity: &EntityName, id: &RecordId, data: &JsonObject) {
        if entity.as_str() != "tasks" {
            return;
        }
        let project = data.get("project_id").and_then(|value| value.as_str());
        if let Some(project) =
            project.filter(|project| !self.inner.records().contains_key(&key("projects", project)))
        {
            self.violations
                .lock()
                .unwrap()
                .push(format!("tasks/{id} arrived before projects/{project}"));
        }
    }
}

#[async_trait]
impl SyncApiAdapter for OrderChecking {
    async fn create(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        self.check_parent(entity, id, data);
        self.inner.create(entity, id, data, operation_id).await
    }

    async fn update(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        self.check_parent(entity, id, data);
        self.inner.update(entity, id, data, operation_id).await
    }

    async fn delete(
        &self,
        entity: &EntityName,
        id: &RecordId,
        operation_id: &OperationId,
    ) -> Result<(), ApiError> {
        if entity.as_str() == "projects" {
            let orphans = self
                .inner
                .records()
                .iter()
                .filter(|(key, data)| {
                    key.entity.as_str() == "tasks" && data.get("project_id") == Some(&json!(id.as_str()))
                })
                .count();
            if orphans > 0 {
                self.violations
                    .lock()
                    .unwrap()
                    .push(format!("projects/{id} deleted before its {orphans} tasks"));
            }
        }
        self.inner.delete(entity, id, operation_id).await
    }

    async fn fetch_remote(&self, entity: &EntityName, id: &RecordId) -> Result<Option<JsonObject>, ApiError> {
        self.inner.fetch_remote(entity, id).await
    }
}

struct Rig {
    engine: OfflineSyncEngine,
    server: OrderChecking,
}

async fn rig(concurrency: usize) -> Rig {
    let server = OrderChecking {
        inner: FakeAdapter::new(),
        violations: Arc::default(),
    };
    let engine = OfflineSyncEngine::builder(
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
    .unwrap();
    Rig { engine, server }
}

async fn save(engine: &OfflineSyncEngine, entity: &str, id: &str, data: serde_json::Value) {
    engine
        .save(entity, id, data, SyncOperation::Create)
        .await
        .unwrap();
}

fn violations(rig: &Rig) -> Vec<String> {
    rig.server.violations.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn a_task_saved_before_its_project_reaches_the_server_after_it() {
    let rig = rig(1).await;
    save(
        &rig.engine,
        "tasks",
        "t1",
        json!({"id": "t1", "project_id": "p1"}),
    )
    .await;
    save(&rig.engine, "projects", "p1", json!({"id": "p1"})).await;
    save(
        &rig.engine,
        "tasks",
        "t2",
        json!({"id": "t2", "project_id": null}),
    )
    .await;
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!((report.sent, report.still_pending), (3, 0), "{report:?}");
    assert_eq!(violations(&rig), Vec::<String>::new());
    rig.engine.close().await;
}

/// Many parents and children, saved in a mixed order, sent eight at a
/// time over a slow link: no child ever arrives before its parent is
/// stored.
#[tokio::test(start_paused = true)]
async fn with_many_requests_out_parents_always_arrive_first() {
    let rig = rig(8).await;
    rig.server.inner.set_latency(Duration::from_millis(50));
    for p in 0..20 {
        for t in 0..3 {
            let task = format!("t{p}-{t}");
            save(
                &rig.engine,
                "tasks",
                &task,
                json!({"id": task, "project_id": format!("p{p}")}),
            )
            .await;
            if t == 1 {
                save(
                    &rig.engine,
                    "projects",
                    &format!("p{p}"),
                    json!({"id": format!("p{p}")}),
                )
                .await;
            }
        }
    }
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!((report.sent, report.still_pending), (80, 0), "{report:?}");
    assert_eq!(violations(&rig), Vec::<String>::new());
    assert_eq!(rig.server.inner.records().len(), 80);
    rig.engine.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_project_holds_its_tasks_visibly_and_nothing_else() {
    let rig = rig(4).await;
    save(&rig.engine, "projects", "bad", json!({"id": "bad"})).await;
    save(
        &rig.engine,
        "tasks",
        "child",
        json!({"id": "child", "project_id": "bad"}),
    )
    .await;
    save(&rig.engine, "tasks", "free", json!({"id": "free"})).await;
    rig.server.inner.fail_next(
        Some(key("projects", "bad")),
        Fault::Fail(ErrorKind::Permanent, Some(422)),
    );
    let mut events = rig.engine.events();
    rig.engine.sync_manager().sync_now().await.unwrap();
    let mut held = false;
    while let Ok(Some(event)) = tokio::time::timeout(
        Duration::from_millis(10),
        tokio_stream::StreamExt::next(&mut events),
    )
    .await
    {
        if let sync_engine::SyncEvent::Attempted(attempt) = event {
            held |=
                attempt.key == key("tasks", "child") && attempt.result == sync_engine::AttemptResult::Held;
        }
    }
    assert!(held, "the hold is an event");
    let project = rig.engine.queue_item("projects", "bad").await.unwrap().unwrap();
    assert!(project.is_parked());
    let child = rig.engine.queue_item("tasks", "child").await.unwrap().unwrap();
    assert_eq!(
        (child.status, child.retry_count),
        (SyncStatus::Pending, 0),
        "{child:?}"
    );
    let reason = child.last_error.clone().unwrap();
    assert!(
        reason.contains("projects/bad") && reason.contains("parked"),
        "{reason}"
    );
    assert_eq!(
        rig.engine
            .queue_item("tasks", "free")
            .await
            .unwrap()
            .unwrap()
            .status,
        SyncStatus::Synced,
        "the rest of the queue flows"
    );
    assert!(!rig.server.inner.records().contains_key(&key("tasks", "child")));

    // The app fixes the project and retries it: the task follows in the
    // same run, not at its hold's end (a minute away).
    assert!(rig.engine.retry("projects", "bad").await.unwrap());
    rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(
        rig.engine
            .queue_item("tasks", "child")
            .await
            .unwrap()
            .unwrap()
            .status,
        SyncStatus::Synced
    );
    assert_eq!(violations(&rig), Vec::<String>::new());
    rig.engine.close().await;
}

/// Deleting a project and its tasks (the project first, as an app might):
/// with several requests out, the tasks' deletes reach the server before
/// the project's.
#[tokio::test(start_paused = true)]
async fn a_projects_delete_waits_for_its_tasks_deletes() {
    let rig = rig(8).await;
    rig.server.inner.set_latency(Duration::from_millis(50));
    save(&rig.engine, "projects", "p", json!({"id": "p"})).await;
    for t in 0..5 {
        save(
            &rig.engine,
            "tasks",
            &format!("t{t}"),
            json!({"id": format!("t{t}"), "project_id": "p"}),
        )
        .await;
    }
    rig.engine.sync_manager().sync_now().await.unwrap();
    rig.engine
        .save("projects", "p", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    for t in 0..5 {
        rig.engine
            .save("tasks", &format!("t{t}"), json!({}), SyncOperation::Delete)
            .await
            .unwrap();
    }
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(report.still_pending, 0, "{report:?}");
    assert!(rig.server.inner.records().is_empty());
    assert_eq!(violations(&rig), Vec::<String>::new());
    rig.engine.close().await;
}

/// The project's delete is claimed pages before its tasks' deletes (one
/// request at a time, other changes queued between them): it waits for
/// them all the same, and goes in the same run.
#[tokio::test(start_paused = true)]
async fn a_projects_delete_waits_for_its_tasks_deletes_queued_pages_later() {
    let rig = rig(1).await;
    save(&rig.engine, "projects", "p", json!({"id": "p"})).await;
    for t in 0..3 {
        save(
            &rig.engine,
            "tasks",
            &format!("t{t}"),
            json!({"id": format!("t{t}"), "project_id": "p"}),
        )
        .await;
    }
    rig.engine.sync_manager().sync_now().await.unwrap();
    // Each change queued at a time of its own: the queue's order is theirs.
    tokio::time::advance(Duration::from_secs(1)).await;
    rig.engine
        .save("projects", "p", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    for n in 0..20 {
        save(
            &rig.engine,
            "notes",
            &format!("n{n}"),
            json!({"id": format!("n{n}")}),
        )
        .await;
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    for t in 0..3 {
        rig.engine
            .save("tasks", &format!("t{t}"), json!({}), SyncOperation::Delete)
            .await
            .unwrap();
    }
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(report.still_pending, 0, "{report:?}");
    assert_eq!(violations(&rig), Vec::<String>::new());
    assert!(
        rig.server
            .inner
            .records()
            .keys()
            .all(|key| key.entity.as_str() == "notes")
    );
    rig.engine.close().await;
}

#[tokio::test]
async fn cycles_are_refused_at_build() {
    let built = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(FakeAdapter::new()),
        Arc::new(FakeMonitor::new(true)),
    )
    .reference("tasks", "project_id", "projects")
    .reference("projects", "main_task", "tasks")
    .build()
    .await;
    match built {
        Err(SyncError::Invalid(ValidationError::ReferenceCycle { path })) => {
            assert!(path.contains("projects.main_task"), "{path}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a cycle was accepted"),
    }
}
