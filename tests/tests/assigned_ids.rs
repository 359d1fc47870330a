//! Through the facade: a server that assigns ids itself (issue 14). Until
//! the engine follows server-assigned ids, a create answered under another
//! id parks with a message saying what to do, after exactly one POST:
//! before, the engine counted it done and sent every later change to an id
//! the server did not have, re-creating the record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::time::Duration;

use serde_json::json;
use sync_facade::prelude::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn a_create_stored_under_the_servers_own_id_parks_with_what_to_do() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 17, "title": "Buy milk"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), server.uri())
        .probe_api_health("/health")
        .options(
            OfflineSyncOptions::default()
                .sync_after_save(false)
                .connectivity_check_interval(None),
        )
        .build()
        .await
        .unwrap();
    engine
        .save(
            "tasks",
            "local-1",
            json!({"id": "local-1", "title": "Buy milk"}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(60), engine.sync_manager().sync_now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.sent, report.failed), (0, 1));
    let item = engine.queue_item("tasks", "local-1").await.unwrap().unwrap();
    assert!(item.is_parked(), "{item:?}");
    assert!(item.possibly_applied, "the server stored it");
    let error = item.last_error.unwrap();
    assert!(
        error.contains("assigns ids itself") && error.contains("RequestShape::id_field"),
        "{error}"
    );
    assert_eq!(item.last_error_http_status, Some(201));
    // One POST, and nothing more on the next run: parked items wait for the app.
    tokio::time::timeout(Duration::from_secs(60), engine.sync_manager().sync_now())
        .await
        .unwrap()
        .unwrap();
    let posts = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|request| request.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1);
    assert!(
        engine.get_record("tasks", "local-1").await.unwrap().is_some(),
        "the document stays"
    );
    engine.close().await;
}
