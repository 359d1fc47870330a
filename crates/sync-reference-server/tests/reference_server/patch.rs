//! `PATCH /{collection}/{id}` with a JSON Merge Patch (RFC 7386).

use http::{Method, StatusCode};
use serde_json::json;
use sync_reference_server::{
    Fault, FaultPlan, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, ReferenceServer, ServerConfig,
};

use crate::client::{send, send_raw, send_with, start};

const MERGE_PATCH: (&str, &str) = ("Content-Type", "application/merge-patch+json");

#[tokio::test]
async fn a_merge_patch_removes_merges_and_replaces() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(
        addr,
        "POST",
        "/tasks",
        Some(r#"{"id":"1","title":"a","tags":["x"],"meta":{"a":1,"b":{"c":2}},"gone":true}"#),
    )
    .await;
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"2"}"#)).await;

    let reply = send_with(
        addr,
        "PATCH",
        "/tasks/1",
        &[MERGE_PATCH],
        Some(r#"{"title":"b","tags":["y"],"gone":null,"meta":{"a":null,"b":{"d":3}},"new":{"n":null}}"#),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let expected = json!({
        "id": "1",
        "title": "b",
        "tags": ["y"],
        "meta": {"b": {"c": 2, "d": 3}},
        "new": {}
    });
    assert_eq!(reply.json(), expected, "the whole record");
    assert!(reply.header("etag").is_some());
    assert_eq!(server.snapshot()["tasks"]["1"], expected);

    // Plain JSON is read as a merge patch too; the record keeps its place
    // in the listing.
    let reply = send(addr, "PATCH", "/tasks/1", Some(r#"{"title":"c"}"#)).await;
    assert_eq!(reply.status, 200);
    let list = send(addr, "GET", "/tasks", None).await.json();
    assert_eq!(list[0]["title"], "c");
    assert_eq!(list[1]["id"], "2");

    // The query form addresses the record too.
    let reply = send(addr, "PATCH", "/tasks?id=2", Some(r#"{"done":true}"#)).await;
    assert_eq!(reply.json(), json!({"id": "2", "done": true}));
}

#[tokio::test]
async fn a_patch_cannot_change_the_id_and_keeps_its_stored_form() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/notes", Some(r#"{"id":42,"text":"n"}"#)).await;

    // The same id, as a number or its string form: no change, and the
    // stored number stays a number.
    for body in [r#"{"id":42,"text":"m"}"#, r#"{"id":"42","text":"o"}"#] {
        let reply = send(addr, "PATCH", "/notes/42", Some(body)).await;
        assert_eq!(reply.status, 200, "{body}");
        assert_eq!(reply.json()["id"], 42);
    }
    for body in [r#"{"id":"43"}"#, r#"{"id":7}"#, r#"{"id":null}"#] {
        let reply = send(addr, "PATCH", "/notes/42", Some(body)).await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(reply.error().contains("id"), "{body}");
    }
    assert_eq!(server.snapshot()["notes"]["42"], json!({"id": 42, "text": "o"}));
}

#[tokio::test]
async fn patch_refusals_match_put_and_change_nothing() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#)).await;

    let reply = send(addr, "PATCH", "/tasks/nope", Some(r#"{"v":1}"#)).await;
    assert_eq!(reply.status, 404);
    assert!(reply.error().contains("nope"));
    for body in ["{", "[1,2]", "null", "\"text\"", ""] {
        let reply = send(addr, "PATCH", "/tasks/1", Some(body)).await;
        assert_eq!(reply.status, 400, "{body:?}");
        reply.error();
    }
    // A JSON Patch (RFC 6902) is another format: refused, with the ones
    // accepted named.
    let reply = send_with(
        addr,
        "PATCH",
        "/tasks/1",
        &[("Content-Type", "application/json-patch+json")],
        Some(r#"[{"op":"replace","path":"/v","value":1}]"#),
    )
    .await;
    assert_eq!(reply.status, 415);
    assert_eq!(
        reply.header("accept-patch"),
        Some("application/merge-patch+json, application/json")
    );
    reply.error();
    // The bearer check applies as to every request.
    server.require_bearer(Some("tok".to_owned()));
    assert_eq!(
        send(addr, "PATCH", "/tasks/1", Some(r#"{"v":1}"#)).await.status,
        401
    );
    server.require_bearer(None);

    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 0}));
    assert_eq!(server.applied_requests().len(), 1, "only the create");
    let log = server.request_log();
    assert!(
        log[1..]
            .iter()
            .all(|record| record.method == Method::PATCH && !record.applied)
    );
}

#[tokio::test]
async fn a_repeated_patch_key_is_replayed_and_applied_once() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1","n":0}"#)).await;
    let key = [(IDEMPOTENCY_KEY, "patch-1")];

    let first = send_with(addr, "PATCH", "/tasks/1", &key, Some(r#"{"n":1}"#)).await;
    assert_eq!(first.status, 200);
    let _ = send(addr, "PATCH", "/tasks/1", Some(r#"{"n":2}"#)).await;
    let retry = send_with(addr, "PATCH", "/tasks/1", &key, Some(r#"{"n":1}"#)).await;
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), Some("true"));
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("etag"), first.header("etag"));
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "n": 2}));

    let log = server.request_log();
    let patches: Vec<_> = log
        .iter()
        .filter(|record| record.method == Method::PATCH)
        .map(|record| (record.id.clone(), record.applied, record.replayed))
        .collect();
    let one = Some("1".to_owned());
    assert_eq!(
        patches,
        [
            (one.clone(), true, false),
            (one.clone(), true, false),
            (one, false, true)
        ]
    );
}

#[tokio::test]
async fn faults_apply_to_patch_as_to_put() {
    let plan = FaultPlan::seeded(3)
        .only_methods(&[Method::PATCH])
        .first_attempts(1, Fault::LoseResponse)
        .first_attempts(1, Fault::Status(StatusCode::SERVICE_UNAVAILABLE));
    let server = ReferenceServer::start(ServerConfig::new().with_faults(plan))
        .await
        .unwrap();
    let addr = server.addr();
    assert_eq!(
        send(addr, "POST", "/tasks", Some(r#"{"id":"1"}"#)).await.status,
        201
    );
    let key = [(IDEMPOTENCY_KEY, "patch-1")];

    // The first send is applied and its answer lost.
    let lost = send_raw(addr, "PATCH", "/tasks/1", &key, Some(r#"{"v":1}"#)).await;
    assert!(lost.is_empty());
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 1}));
    // The second is refused by the fault, the third replayed.
    let refused = send_with(addr, "PATCH", "/tasks/1", &key, Some(r#"{"v":1}"#)).await;
    assert_eq!(refused.status, 503);
    let replayed = send_with(addr, "PATCH", "/tasks/1", &key, Some(r#"{"v":1}"#)).await;
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.header(IDEMPOTENT_REPLAYED), Some("true"));

    let log = server.request_log();
    let faults: Vec<_> = log.iter().map(|record| record.fault.clone()).collect();
    assert_eq!(
        faults,
        [
            None,
            Some(Fault::LoseResponse),
            Some(Fault::Status(StatusCode::SERVICE_UNAVAILABLE)),
            None
        ]
    );
    assert!(log[1..].iter().all(|record| record.id.as_deref() == Some("1")));
    assert_eq!(server.applied_requests().len(), 2);
}
