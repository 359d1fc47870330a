//! Dependency order end to end (issue 14): through the facade, against the
//! reference server answering every request 20 ms late, eight requests out
//! at once. Every task's create reaches the server after its project's was
//! applied (checked in the server's request log), whatever order the app
//! saved them in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;
use serde_json::json;
use sync_facade::prelude::*;
use sync_reference_server::{Fault, FaultPlan, ReferenceServer, ServerConfig};

#[tokio::test]
async fn tasks_reach_the_server_after_their_projects_with_eight_requests_out() {
    let faults = FaultPlan::seeded(1).with_random(Fault::Delay(Duration::from_millis(20)), 1.0);
    let server = ReferenceServer::start(ServerConfig::new().with_faults(faults))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), server.url())
        .probe_api_health("/health")
        .reference("tasks", "project_id", "projects")
        .options(
            OfflineSyncOptions::default()
                .sync_after_save(false)
                .connectivity_check_interval(None)
                .concurrency(8),
        )
        .build()
        .await
        .unwrap();
    for p in 0..10 {
        for t in 0..4 {
            let task = format!("t{p}-{t}");
            engine
                .save(
                    "tasks",
                    &task,
                    json!({"id": task, "project_id": format!("p{p}")}),
                    SyncOperation::Create,
                )
                .await
                .unwrap();
            if t == 2 {
                let project = format!("p{p}");
                engine
                    .save(
                        "projects",
                        &project,
                        json!({"id": project}),
                        SyncOperation::Create,
                    )
                    .await
                    .unwrap();
            }
        }
    }
    let report = tokio::time::timeout(Duration::from_secs(120), engine.sync_manager().sync_now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.still_pending, report.failed), (0, 0), "{report:?}");
    let snapshot = server.snapshot();
    assert_eq!(snapshot["projects"].len(), 10);
    assert_eq!(snapshot["tasks"].len(), 40);
    // The log in the order the server answered.
    let log = server.request_log();
    let mut project_applied: HashMap<String, usize> = HashMap::new();
    let mut checked = 0;
    for (at, request) in log.iter().enumerate() {
        if request.method != Method::POST || !request.applied {
            continue;
        }
        let id = request.id.clone().unwrap();
        match request.collection.as_str() {
            "projects" => {
                project_applied.insert(id, at);
            }
            "tasks" => {
                let project = format!("p{}", &id[1..id.find('-').unwrap()]);
                assert!(
                    project_applied.contains_key(&project),
                    "tasks/{id} was applied before projects/{project}"
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert_eq!(checked, 40);
    engine.close().await;
}
