//! `IdempotencyMode::Ignore`: the server treats every write as new, as
//! json-server and most real APIs do, and the log still tells how often
//! each key and each create took effect.

use std::collections::BTreeMap;

use serde_json::json;
use sync_reference_server::{
    Fault, FaultPlan, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, IdempotencyMode, ReferenceServer, RequestRecord,
    ServerConfig,
};

use crate::client::{send, send_raw, send_with};

async fn start_ignoring() -> ReferenceServer {
    let server = ReferenceServer::start(ServerConfig::new().with_idempotency(IdempotencyMode::Ignore))
        .await
        .unwrap();
    assert_eq!(server.idempotency(), IdempotencyMode::Ignore);
    server
}

/// Applied writes per idempotency key, as a duplicate check counts them.
fn applied_per_key(applied: &[RequestRecord]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in applied {
        let key = record.idempotency_key.clone().unwrap_or_default();
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn replay_is_the_default() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    assert_eq!(server.idempotency(), IdempotencyMode::Replay);
    assert_eq!(ServerConfig::new().idempotency, IdempotencyMode::Replay);
}

#[tokio::test]
async fn a_repeated_create_of_an_existing_id_gets_409_and_is_logged_with_its_key() {
    let server = start_ignoring().await;
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "op-1")];
    let body = Some(r#"{"id":"1","title":"t"}"#);

    let first = send_with(addr, "POST", "/tasks", &key, body).await;
    assert_eq!(first.status, 201);
    let repeat = send_with(addr, "POST", "/tasks", &key, body).await;
    assert_eq!(repeat.status, 409, "{}", String::from_utf8_lossy(&repeat.body));
    assert!(repeat.error().contains("already holds"), "{}", repeat.error());
    assert_eq!(repeat.header(IDEMPOTENT_REPLAYED), None, "nothing is replayed");
    assert_eq!(server.snapshot()["tasks"].len(), 1);

    let log = server.request_log();
    assert_eq!(log.len(), 2);
    for record in &log {
        assert_eq!(record.idempotency_key.as_deref(), Some("op-1"));
        assert_eq!(record.id.as_deref(), Some("1"));
        assert!(!record.replayed);
    }
    assert!(log[0].applied);
    assert!(!log[1].applied);
    assert_eq!(log[1].status, 409);
}

#[tokio::test]
async fn a_repeated_create_without_an_id_creates_twice_and_the_log_shows_the_key_twice() {
    let server = start_ignoring().await;
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "op-1")];

    let first = send_with(addr, "POST", "/tasks", &key, Some(r#"{"title":"t"}"#)).await;
    let second = send_with(addr, "POST", "/tasks", &key, Some(r#"{"title":"t"}"#)).await;
    assert_eq!((first.status, second.status), (201, 201));
    assert_ne!(first.json()["id"], second.json()["id"], "two records");
    assert_eq!(server.snapshot()["tasks"].len(), 2);

    let applied = server.applied_requests();
    assert_eq!(
        applied_per_key(&applied),
        BTreeMap::from([("op-1".to_owned(), 2)])
    );
}

#[tokio::test]
async fn a_repeated_update_is_applied_again_and_a_repeated_delete_gets_404() {
    let server = start_ignoring().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#)).await;

    let put = [(IDEMPOTENCY_KEY, "put-1")];
    assert_eq!(
        send_with(addr, "PUT", "/tasks/1", &put, Some(r#"{"v":1}"#))
            .await
            .status,
        200
    );
    let newer = [(IDEMPOTENCY_KEY, "put-2")];
    assert_eq!(
        send_with(addr, "PUT", "/tasks/1", &newer, Some(r#"{"v":2}"#))
            .await
            .status,
        200
    );
    // A late retry of the first update is applied again and brings the
    // old value back: what a server without idempotency does.
    let retry = send_with(addr, "PUT", "/tasks/1", &put, Some(r#"{"v":1}"#)).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), None);
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 1}));

    let delete = [(IDEMPOTENCY_KEY, "del-1")];
    assert_eq!(
        send_with(addr, "DELETE", "/tasks/1", &delete, None).await.status,
        200
    );
    assert_eq!(
        send_with(addr, "DELETE", "/tasks/1", &delete, None).await.status,
        404
    );

    let applied = server.applied_requests();
    let counts = applied_per_key(&applied);
    assert_eq!(counts["put-1"], 2, "the key applied twice is visible: {counts:?}");
    assert_eq!(counts["put-2"], 1);
    assert_eq!(counts["del-1"], 1);
    assert!(server.request_log().iter().all(|record| !record.replayed));
}

#[tokio::test]
async fn a_lost_answer_and_its_retry_show_what_a_real_server_does() {
    // The kill and lost-response scenarios: the create took effect, its
    // answer was lost, the retry under the same key is refused as a
    // conflict rather than answered from a replay.
    let server = ReferenceServer::start(
        ServerConfig::new()
            .with_idempotency(IdempotencyMode::Ignore)
            .with_faults(FaultPlan::seeded(3).first_attempts(1, Fault::LoseResponse)),
    )
    .await
    .unwrap();
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "op-1")];
    let body = Some(r#"{"id":"1","title":"t"}"#);

    assert!(send_raw(addr, "POST", "/tasks", &key, body).await.is_empty());
    let retry = send_with(addr, "POST", "/tasks", &key, body).await;
    assert_eq!(retry.status, 409);
    assert_eq!(server.applied_requests().len(), 1);
}

#[tokio::test]
async fn an_unusable_key_is_not_refused_when_ignored() {
    let server = start_ignoring().await;
    let addr = server.addr();
    let empty = [(IDEMPOTENCY_KEY, "")];
    let created = send_with(addr, "POST", "/tasks", &empty, Some(r#"{"id":"1"}"#)).await;
    assert_eq!(created.status, 201);
    let log = server.request_log();
    assert!(log[0].applied);
    assert_eq!(log[0].idempotency_key, None);

    server.set_idempotency(IdempotencyMode::Replay);
    let refused = send_with(addr, "POST", "/tasks", &empty, Some(r#"{"id":"2"}"#)).await;
    assert_eq!(refused.status, 400);
}

#[tokio::test]
async fn switching_modes_keeps_the_keys_remembered_before() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    let addr = server.addr();
    let remembered = [(IDEMPOTENCY_KEY, "before")];
    let first = send_with(addr, "POST", "/tasks", &remembered, Some(r#"{"id":"1"}"#)).await;
    assert_eq!(first.status, 201);

    server.set_idempotency(IdempotencyMode::Ignore);
    assert_eq!(server.idempotency(), IdempotencyMode::Ignore);
    // Not consulted while ignored...
    let repeat = send_with(addr, "POST", "/tasks", &remembered, Some(r#"{"id":"1"}"#)).await;
    assert_eq!(repeat.status, 409);
    // ...and nothing applied meanwhile is remembered.
    let during = [(IDEMPOTENCY_KEY, "during")];
    assert_eq!(
        send_with(addr, "POST", "/tasks", &during, Some(r#"{"id":"2"}"#))
            .await
            .status,
        201
    );

    server.set_idempotency(IdempotencyMode::Replay);
    let replayed = send_with(addr, "POST", "/tasks", &remembered, Some(r#"{"id":"1"}"#)).await;
    assert_eq!(replayed.status, 201);
    assert_eq!(replayed.header(IDEMPOTENT_REPLAYED), Some("true"));
    assert_eq!(replayed.body, first.body);
    let not_remembered = send_with(addr, "POST", "/tasks", &during, Some(r#"{"id":"2"}"#)).await;
    assert_eq!(not_remembered.status, 409);
}
