//! The bearer check: requests to collections without the token are
//! refused with 401, logged and not applied.

use sync_reference_server::{Fault, FaultPlan, IDEMPOTENCY_KEY, ReferenceServer, ServerConfig};

use crate::client::{send, send_with, start};

const BODY: &str = r#"{"id":"1","title":"t"}"#;

#[tokio::test]
async fn a_missing_or_wrong_token_gets_401_and_the_right_one_201() {
    let server = start().await;
    let addr = server.addr();
    server.require_bearer(Some("s3cret".to_owned()));

    let missing = send_with(addr, "POST", "/tasks", &[(IDEMPOTENCY_KEY, "op-1")], Some(BODY)).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let _ = missing.error();
    for wrong in [
        "Bearer stale",
        "bearer s3cret",
        "Bearer s3cret2",
        "Basic s3cret",
        "s3cret",
    ] {
        let reply = send_with(
            addr,
            "POST",
            "/tasks",
            &[("Authorization", wrong), (IDEMPOTENCY_KEY, "op-1")],
            Some(BODY),
        )
        .await;
        assert_eq!(reply.status, 401, "{wrong:?}");
    }
    assert!(server.snapshot().is_empty());

    // The refresh: the same operation with the right token.
    let right = send_with(
        addr,
        "POST",
        "/tasks",
        &[("Authorization", "Bearer s3cret"), (IDEMPOTENCY_KEY, "op-1")],
        Some(BODY),
    )
    .await;
    assert_eq!(right.status, 201);
    assert_eq!(server.applied_requests().len(), 1);

    let log = server.request_log();
    assert_eq!(log.len(), 7);
    assert!(
        log[..6]
            .iter()
            .all(|record| record.status == 401 && !record.applied)
    );
    assert_eq!(log[0].idempotency_key.as_deref(), Some("op-1"));

    // Health stays open; switching the check off opens the collections.
    assert_eq!(send(addr, "GET", "/health", None).await.status, 200);
    assert_eq!(send(addr, "GET", "/tasks/1", None).await.status, 401);
    server.require_bearer(None);
    assert_eq!(send(addr, "GET", "/tasks/1", None).await.status, 200);
}

#[tokio::test]
async fn the_token_can_be_configured_and_unauthorized_requests_are_not_faulted() {
    let config = ServerConfig::new()
        .with_bearer_token("tok")
        .with_faults(FaultPlan::seeded(1).first_attempts(1, Fault::JsonArray));
    let server = ReferenceServer::start(config).await.unwrap();
    let addr = server.addr();
    let key = (IDEMPOTENCY_KEY, "op-1");
    assert_eq!(
        send_with(addr, "POST", "/tasks", &[key], Some(BODY)).await.status,
        401
    );
    // The first attempt the plan sees is the authorized one.
    let auth = ("Authorization", "Bearer tok");
    let first = send_with(addr, "POST", "/tasks", &[auth, key], Some(BODY)).await;
    assert_eq!(first.json(), serde_json::json!([1, 2, 3]));
    let log = server.request_log();
    assert_eq!(log[0].fault, None);
    assert_eq!(log[1].fault, Some(Fault::JsonArray));
}
