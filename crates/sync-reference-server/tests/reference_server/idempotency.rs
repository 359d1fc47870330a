//! Idempotency keys and the request log: a repeated key gets the first
//! answer and takes effect once.

use serde_json::json;
use sync_reference_server::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};

use crate::client::{send, send_with, start};

#[tokio::test]
async fn a_repeated_create_key_is_answered_again_and_applied_once() {
    let server = start().await;
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "op-1")];

    let first = send_with(addr, "POST", "/tasks", &key, Some(r#"{"title":"generated id"}"#)).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header(IDEMPOTENT_REPLAYED), None);
    // A retry, even with a different body: the first answer, nothing new.
    let second = send_with(addr, "POST", "/tasks", &key, Some(r#"{"title":"again"}"#)).await;
    assert_eq!(second.status, 201);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header(IDEMPOTENT_REPLAYED), Some("true"));

    let snapshot = server.snapshot();
    assert_eq!(snapshot["tasks"].len(), 1, "created once");
    let id = first.json()["id"].as_str().unwrap().to_owned();

    let applied = server.applied_requests();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].method, "POST");
    assert_eq!(applied[0].collection, "tasks");
    assert_eq!(applied[0].id.as_deref(), Some(id.as_str()));
    assert_eq!(applied[0].idempotency_key.as_deref(), Some("op-1"));
    assert_eq!(applied[0].status, 201);
    assert!(!applied[0].replayed);

    let log = server.request_log();
    assert_eq!(log.len(), 2);
    assert!(log[1].replayed);
    assert!(!log[1].applied);
    assert_eq!(log[1].id.as_deref(), Some(id.as_str()));
    assert_eq!(log[1].status, 201);
}

#[tokio::test]
async fn repeated_update_and_delete_keys_are_replayed() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#)).await;

    let put = [(IDEMPOTENCY_KEY, "put-1")];
    let first = send_with(addr, "PUT", "/tasks/1", &put, Some(r#"{"v":1}"#)).await;
    assert_eq!(first.status, 200);
    // A newer change under another key, then a late retry of the first:
    // the retry must not bring the old value back.
    let _ = send_with(
        addr,
        "PUT",
        "/tasks/1",
        &[(IDEMPOTENCY_KEY, "put-2")],
        Some(r#"{"v":2}"#),
    )
    .await;
    let retry = send_with(addr, "PUT", "/tasks/1", &put, Some(r#"{"v":1}"#)).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), Some("true"));
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 2}));

    let delete = [(IDEMPOTENCY_KEY, "del-1")];
    let first = send_with(addr, "DELETE", "/tasks?id=1", &delete, None).await;
    assert_eq!(first.status, 200);
    // Without the key a second delete would be 404; with it, the same 200.
    let retry = send_with(addr, "DELETE", "/tasks/1", &delete, None).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body, first.body);
    assert_eq!(send(addr, "DELETE", "/tasks/1", None).await.status, 404);

    let applied: Vec<(String, Option<String>)> = server
        .applied_requests()
        .into_iter()
        .map(|record| (record.method.to_string(), record.idempotency_key))
        .collect();
    assert_eq!(
        applied,
        [
            ("POST".to_owned(), None),
            ("PUT".to_owned(), Some("put-1".to_owned())),
            ("PUT".to_owned(), Some("put-2".to_owned())),
            ("DELETE".to_owned(), Some("del-1".to_owned())),
        ]
    );
    let replayed = server
        .request_log()
        .iter()
        .filter(|record| record.replayed)
        .count();
    assert_eq!(replayed, 2);
}

#[tokio::test]
async fn a_refused_request_is_not_remembered() {
    let server = start().await;
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "op-7")];

    // The update finds nothing; the same change is then sent as a create
    // under the same key, and must create.
    let refused = send_with(addr, "PUT", "/tasks/7", &key, Some(r#"{"v":1}"#)).await;
    assert_eq!(refused.status, 404);
    let created = send_with(addr, "POST", "/tasks", &key, Some(r#"{"id":"7","v":1}"#)).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header(IDEMPOTENT_REPLAYED), None);
    // From now on the key replays the create.
    let again = send_with(addr, "PUT", "/tasks/7", &key, Some(r#"{"v":1}"#)).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header(IDEMPOTENT_REPLAYED), Some("true"));

    let log = server.request_log();
    let summary: Vec<(String, u16, bool, bool)> = log
        .iter()
        .map(|record| {
            (
                record.method.to_string(),
                record.status.as_u16(),
                record.applied,
                record.replayed,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("PUT".to_owned(), 404, false, false),
            ("POST".to_owned(), 201, true, false),
            ("PUT".to_owned(), 201, false, true),
        ]
    );
}

#[tokio::test]
async fn reads_ignore_the_key_and_the_log_counts_from_a_clear() {
    let server = start().await;
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "read")];
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1"}"#)).await;
    assert_eq!(send_with(addr, "GET", "/tasks/1", &key, None).await.status, 200);
    assert_eq!(
        send_with(addr, "GET", "/tasks/1", &key, None)
            .await
            .header(IDEMPOTENT_REPLAYED),
        None
    );

    let log = server.request_log();
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].method, "GET");
    assert_eq!(log[1].id.as_deref(), Some("1"));
    assert!(!log[1].applied && !log[1].replayed);

    server.clear_request_log();
    assert!(server.request_log().is_empty());
    let _ = send(addr, "GET", "/tasks", None).await;
    let log = server.request_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].id, None);
    assert_eq!(
        server.snapshot()["tasks"].len(),
        1,
        "clearing the log keeps the data"
    );
}
