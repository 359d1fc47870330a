//! `Fault::DelayedApply`: the server holds a write, its client gives up
//! and hangs up, and the write takes effect afterwards all the same.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use sync_reference_server::{
    Fault, FaultPlan, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, IdempotencyMode, ReferenceServer, ServerConfig,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::client::{send, send_with, write_request};

const HOLD: Duration = Duration::from_millis(400);

/// How long the client waits for an answer before giving up: well within
/// [`HOLD`].
const PATIENCE: Duration = Duration::from_millis(50);

/// Bounds every wait for the held requests, so a regression fails rather
/// than hangs.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

async fn start_holding() -> ReferenceServer {
    let plan = FaultPlan::seeded(5)
        .only_methods(&[Method::POST, Method::PUT, Method::DELETE])
        .first_attempts(1, Fault::DelayedApply(HOLD));
    ReferenceServer::start(ServerConfig::new().with_faults(plan))
        .await
        .unwrap()
}

async fn settle(server: &ReferenceServer) {
    tokio::time::timeout(SETTLE_LIMIT, server.wait_for_delayed_applies())
        .await
        .expect("the held requests were never handled");
    assert_eq!(server.delayed_applies_pending(), 0);
}

/// How a client gives up on a request.
#[derive(Debug, Clone, Copy)]
enum HangUp {
    /// Closes the connection (FIN).
    Close,
    /// Resets it (RST, zero linger).
    Reset,
}

/// Sends a request, waits [`PATIENCE`] for an answer that must not have
/// come, and hangs up; returns when it hung up.
async fn give_up(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    hang_up: HangUp,
) -> Instant {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    write_request(&mut stream, method, target, headers, body).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await;
    assert!(
        read.is_err(),
        "an answer came before the client gave up: {read:?}"
    );
    if let HangUp::Reset = hang_up {
        stream.set_zero_linger().unwrap();
    }
    drop(stream);
    Instant::now()
}

async fn a_held_create_lands_after_the_client_hung_up(hang_up: HangUp) {
    let server = start_holding().await;
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "op-1")];

    let gave_up = give_up(
        addr,
        "POST",
        "/tasks",
        &key,
        Some(r#"{"id":"1","title":"t"}"#),
        hang_up,
    )
    .await;
    // Held: nothing applied or logged yet, but counted as pending.
    assert_eq!(server.delayed_applies_pending(), 1);
    assert!(server.snapshot().is_empty());
    assert!(server.request_log().is_empty());

    settle(&server).await;
    assert_eq!(
        server.snapshot()["tasks"]["1"],
        json!({"id": "1", "title": "t"}),
        "applied after the client left"
    );
    let log = server.request_log();
    assert_eq!(log.len(), 1);
    let record = &log[0];
    assert!(record.applied);
    assert_eq!(record.status, StatusCode::CREATED);
    assert_eq!(record.fault, Some(Fault::DelayedApply(HOLD)));
    assert_eq!(record.idempotency_key.as_deref(), Some("op-1"));
    assert!(record.handled_at > gave_up, "handled after the client hung up");
    assert!(record.received_at < gave_up);
    assert!(record.handled_after() >= HOLD, "{:?}", record.handled_after());
    assert_eq!(server.fault_counts()["delayed_apply"], 1);

    // The key was remembered when the create took effect: a retry now is
    // replayed.
    let retry = send_with(addr, "POST", "/tasks", &key, Some(r#"{"id":"1","title":"t"}"#)).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), Some("true"));
}

#[tokio::test]
async fn a_held_create_lands_after_the_client_closed_the_connection() {
    a_held_create_lands_after_the_client_hung_up(HangUp::Close).await;
}

#[tokio::test]
async fn a_held_create_lands_after_the_client_reset_the_connection() {
    a_held_create_lands_after_the_client_hung_up(HangUp::Reset).await;
}

#[tokio::test]
async fn a_client_that_waits_gets_the_answer_after_the_hold() {
    let server = start_holding().await;
    let started = Instant::now();
    let reply = send(server.addr(), "POST", "/tasks", Some(r#"{"id":"1"}"#)).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), json!({"id": "1"}));
    assert!(started.elapsed() >= HOLD);
    assert_eq!(server.delayed_applies_pending(), 0);
    assert!(server.request_log()[0].handled_after() >= HOLD);

    // Only writes are held: a read is handled at once.
    let read = send(server.addr(), "GET", "/tasks/1", None).await;
    assert_eq!(read.status, 200);
    let log = server.request_log();
    assert!(log[1].handled_after() < HOLD, "{:?}", log[1]);
    assert_eq!(log[1].fault, None);
}

#[tokio::test]
async fn a_retry_during_the_hold_takes_effect_first_and_the_held_request_is_replayed() {
    let server = start_holding().await;
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "op-1")];
    let body = Some(r#"{"id":"1","title":"t"}"#);

    give_up(addr, "POST", "/tasks", &key, body, HangUp::Close).await;
    // The operation's second occurrence is not held: applied at once.
    let retry = send_with(addr, "POST", "/tasks", &key, body).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), None);
    settle(&server).await;

    let log = server.request_log();
    assert_eq!(log.len(), 2);
    assert!(log[0].applied && log[0].fault.is_none());
    assert!(log[1].replayed && !log[1].applied, "{:?}", log[1]);
    assert_eq!(log[1].fault, Some(Fault::DelayedApply(HOLD)));
    assert_eq!(server.applied_requests().len(), 1);
}

#[tokio::test]
async fn without_idempotency_a_held_update_overwrites_a_newer_one() {
    // What the engine cannot prevent without preconditions on the wire:
    // the client gave up on v1, sent v2, and v1 lands last.
    let server = ReferenceServer::start(ServerConfig::new().with_idempotency(IdempotencyMode::Ignore))
        .await
        .unwrap();
    let addr = server.addr();
    assert_eq!(
        send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#))
            .await
            .status,
        201
    );
    server.set_faults(Some(FaultPlan::seeded(5).for_id("1", Fault::DelayedApply(HOLD))));

    let v1 = [(IDEMPOTENCY_KEY, "put-1")];
    give_up(addr, "PUT", "/tasks/1", &v1, Some(r#"{"v":1}"#), HangUp::Close).await;
    server.set_faults(None);
    let v2 = [(IDEMPOTENCY_KEY, "put-2")];
    assert_eq!(
        send_with(addr, "PUT", "/tasks/1", &v2, Some(r#"{"v":2}"#))
            .await
            .status,
        200
    );
    settle(&server).await;

    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 1}));
    let keys: Vec<_> = server
        .applied_requests()
        .iter()
        .map(|record| record.idempotency_key.clone())
        .collect();
    assert_eq!(keys, [None, Some("put-2".to_owned()), Some("put-1".to_owned())]);
}

#[tokio::test]
async fn a_held_request_lands_even_while_the_server_is_down() {
    let server = start_holding().await;
    let addr = server.addr();
    give_up(addr, "POST", "/tasks", &[], Some(r#"{"id":"1"}"#), HangUp::Close).await;
    server.stop().await;
    assert_eq!(
        server.delayed_applies_pending(),
        1,
        "the stop did not wait for it"
    );
    settle(&server).await;
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1"}));
    server.resume().await.unwrap();
    assert_eq!(send(addr, "GET", "/tasks/1", None).await.status, 200);
}

#[tokio::test]
async fn waiting_with_nothing_held_returns_at_once() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    assert_eq!(server.delayed_applies_pending(), 0);
    settle(&server).await;
}

#[tokio::test]
async fn a_held_update_whose_if_match_went_stale_meanwhile_is_not_applied() {
    // The same race as above, with the precondition the engine can send:
    // checked when the held write applies, it keeps v1 from landing last.
    let server = ReferenceServer::start(ServerConfig::new().with_idempotency(IdempotencyMode::Ignore))
        .await
        .unwrap();
    let addr = server.addr();
    let created = send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#)).await;
    let tag = created.header("etag").unwrap().to_owned();
    server.set_faults(Some(FaultPlan::seeded(5).for_id("1", Fault::DelayedApply(HOLD))));

    let v1 = [(IDEMPOTENCY_KEY, "put-1"), ("If-Match", tag.as_str())];
    give_up(addr, "PUT", "/tasks/1", &v1, Some(r#"{"v":1}"#), HangUp::Close).await;
    // Checked when the request arrived, the tag matched: the hold matters.
    assert_eq!(
        server.record_version("tasks", "1").map(|v| format!("\"{v}\"")),
        Some(tag.clone())
    );
    server.set_faults(None);
    let v2 = [(IDEMPOTENCY_KEY, "put-2"), ("If-Match", tag.as_str())];
    assert_eq!(
        send_with(addr, "PUT", "/tasks/1", &v2, Some(r#"{"v":2}"#))
            .await
            .status,
        200
    );
    settle(&server).await;

    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 2}));
    let log = server.request_log();
    let held = log.last().unwrap();
    assert_eq!(held.idempotency_key.as_deref(), Some("put-1"));
    assert_eq!(held.status, StatusCode::PRECONDITION_FAILED);
    assert!(!held.applied);
    assert_eq!(held.fault, Some(Fault::DelayedApply(HOLD)));
    assert!(held.handled_after() >= HOLD);
}

#[tokio::test]
async fn a_held_update_whose_if_match_still_holds_is_applied_late() {
    let server = start_holding().await;
    let addr = server.addr();
    server.set_faults(None);
    let created = send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#)).await;
    let tag = created.header("etag").unwrap().to_owned();
    server.set_faults(Some(
        FaultPlan::seeded(5).first_attempts(1, Fault::DelayedApply(HOLD)),
    ));

    let headers = [("If-Match", tag.as_str())];
    let reply = send_with(addr, "PATCH", "/tasks/1", &headers, Some(r#"{"v":1}"#)).await;
    assert_eq!(reply.status, 200);
    assert_ne!(reply.header("etag"), Some(tag.as_str()));
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 1}));
    let held = server.request_log().pop().unwrap();
    assert!(held.applied);
    assert_eq!(held.method, Method::PATCH);
    assert!(held.handled_after() >= HOLD);
}
