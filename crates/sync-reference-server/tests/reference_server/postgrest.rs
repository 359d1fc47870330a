//! The PostgREST dialect, over plain HTTP: rows filtered by `id=eq.`,
//! arrays or empty answers as `Prefer` asks, PostgREST's errors.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use sync_reference_server::{
    Dialect, Fault, FaultPlan, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, IdempotencyMode, ReferenceServer,
    ServerConfig,
};

use crate::client::{Reply, send, send_raw, send_with};

const REPRESENT: (&str, &str) = ("Prefer", "return=representation");

async fn start_postgrest() -> ReferenceServer {
    start_with(ServerConfig::new()).await
}

async fn start_with(config: ServerConfig) -> ReferenceServer {
    let server = ReferenceServer::start(config.with_dialect(Dialect::PostgRest))
        .await
        .unwrap();
    assert_eq!(server.dialect(), Dialect::PostgRest);
    server
}

/// Checks a PostgREST error body and returns its code.
fn code(reply: &Reply) -> String {
    let body = reply.json();
    assert!(body["message"].is_string(), "no message: {body}");
    assert!(
        body.get("details").is_some() && body.get("hint").is_some(),
        "{body}"
    );
    body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {body}"))
        .to_owned()
}

fn assert_empty(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status);
    assert!(reply.body.is_empty(), "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type"), None);
}

#[tokio::test]
async fn rows_are_created_read_updated_and_deleted_as_arrays_when_represented() {
    let server = start_postgrest().await;
    let addr = server.addr();

    let created = send_with(
        addr,
        "POST",
        "/tasks",
        &[REPRESENT],
        Some(r#"{"id":"7","title":"a","meta":{"x":1,"y":2}}"#),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("content-type"), Some("application/json"));
    let row = json!({"id": "7", "title": "a", "meta": {"x": 1, "y": 2}});
    assert_eq!(created.json(), json!([row]));
    let tag = created.header("etag").unwrap().to_owned();

    let fetched = send(addr, "GET", "/tasks?id=eq.7", None).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), json!([row]));
    assert_eq!(fetched.header("etag"), Some(tag.as_str()));
    assert_eq!(
        send(addr, "GET", "/tasks?select=*&id=eq.7", None).await.json(),
        json!([row])
    );
    let missing = send(addr, "GET", "/tasks?id=eq.8", None).await;
    assert_eq!(missing.status, 200);
    assert_eq!(missing.json(), json!([]));
    assert_eq!(missing.header("etag"), None);

    // A shallow set of the given columns: a nested object is replaced,
    // null is stored as null.
    let patched = send_with(
        addr,
        "PATCH",
        "/tasks?id=eq.7",
        &[REPRESENT],
        Some(r#"{"id":"7","meta":{"x":5},"title":null}"#),
    )
    .await;
    assert_eq!(patched.status, 200);
    let row = json!({"id": "7", "title": null, "meta": {"x": 5}});
    assert_eq!(patched.json(), json!([row]));
    assert_ne!(patched.header("etag"), Some(tag.as_str()));
    assert_eq!(server.snapshot()["tasks"]["7"], row);
    let nothing = send_with(addr, "PATCH", "/tasks?id=eq.8", &[REPRESENT], Some(r#"{"a":1}"#)).await;
    assert_eq!(nothing.status, 200);
    assert_eq!(nothing.json(), json!([]));

    let listed = send(addr, "GET", "/tasks", None).await;
    assert_eq!(listed.json(), json!([row]));

    let deleted = send_with(addr, "DELETE", "/tasks?id=eq.7", &[REPRESENT], None).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json(), json!([row]));
    let again = send_with(addr, "DELETE", "/tasks?id=eq.7", &[REPRESENT], None).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json(), json!([]));
    assert!(server.snapshot().is_empty());

    // The log names the row of every request, filter or body.
    let log: Vec<(Method, Option<String>, u16, bool)> = server
        .request_log()
        .iter()
        .map(|record| {
            (
                record.method.clone(),
                record.id.clone(),
                record.status.as_u16(),
                record.applied,
            )
        })
        .collect();
    let id = |id: &str| Some(id.to_owned());
    assert_eq!(
        log,
        [
            (Method::POST, id("7"), 201, true),
            (Method::GET, id("7"), 200, false),
            (Method::GET, id("7"), 200, false),
            (Method::GET, id("8"), 200, false),
            (Method::PATCH, id("7"), 200, true),
            (Method::PATCH, id("8"), 200, false),
            (Method::GET, None, 200, false),
            (Method::DELETE, id("7"), 200, true),
            (Method::DELETE, id("7"), 200, false),
        ]
    );
}

#[tokio::test]
async fn without_representation_writes_answer_without_a_body() {
    let server = start_postgrest().await;
    let addr = server.addr();

    let created = send(addr, "POST", "/tasks", Some(r#"{"id":"7","n":0}"#)).await;
    assert_empty(&created, 201);
    assert!(created.header("etag").is_some());
    let patched = send(addr, "PATCH", "/tasks?id=eq.7", Some(r#"{"n":1}"#)).await;
    assert_empty(&patched, 204);
    // Whether or not a row matched, as PostgREST does.
    assert_empty(
        &send(addr, "PATCH", "/tasks?id=eq.8", Some(r#"{"n":1}"#)).await,
        204,
    );
    assert_eq!(server.snapshot()["tasks"]["7"], json!({"id": "7", "n": 1}));
    assert_empty(&send(addr, "DELETE", "/tasks?id=eq.7", None).await, 204);
    assert_empty(&send(addr, "DELETE", "/tasks?id=eq.7", None).await, 204);
    assert!(server.snapshot().is_empty());
    let applied: Vec<Method> = server
        .applied_requests()
        .iter()
        .map(|record| record.method.clone())
        .collect();
    assert_eq!(applied, [Method::POST, Method::PATCH, Method::DELETE]);

    // Other preferences beside it, or `minimal`, are read as PostgREST
    // reads them.
    let created = send_with(
        addr,
        "POST",
        "/tasks",
        &[("Prefer", "tx=commit, return=representation; x=1")],
        Some(r#"{"id":"9"}"#),
    )
    .await;
    assert_eq!(created.json(), json!([{"id": "9"}]));
    let minimal = send_with(
        addr,
        "PATCH",
        "/tasks?id=eq.9",
        &[("Prefer", "return=minimal")],
        Some("{}"),
    )
    .await;
    assert_empty(&minimal, 204);
}

#[tokio::test]
async fn a_taken_id_is_409_with_the_unique_violation_code() {
    let server = start_postgrest().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"7","v":"first"}"#)).await;
    for body in [r#"{"id":"7","v":"second"}"#, r#"{"id":7}"#] {
        let reply = send_with(addr, "POST", "/tasks", &[REPRESENT], Some(body)).await;
        assert_eq!(reply.status, 409, "{body}");
        assert_eq!(code(&reply), "23505");
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.starts_with("duplicate key value violates unique constraint"),
            "{message}"
        );
    }
    assert_eq!(server.snapshot()["tasks"]["7"], json!({"id": "7", "v": "first"}));
    // A row without an id gets one, as from a serial column.
    let generated = send_with(addr, "POST", "/tasks", &[REPRESENT], Some(r#"{"v":"x"}"#)).await;
    assert_eq!(generated.status, 201);
    assert!(generated.json()[0]["id"].is_string());
}

#[tokio::test]
async fn mass_updates_and_unsupported_requests_are_refused() {
    let server = start_postgrest().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"7","v":0}"#)).await;

    // No filter: never every row.
    let reply = send_with(addr, "PATCH", "/tasks", &[REPRESENT], Some(r#"{"v":1}"#)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(code(&reply), "21000");
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("UPDATE requires a WHERE clause")
    );
    let reply = send_with(addr, "DELETE", "/tasks", &[REPRESENT], None).await;
    assert_eq!(reply.status, 400);
    assert_eq!(code(&reply), "21000");
    assert!(reply.json()["message"].as_str().unwrap().contains("DELETE"));
    let reply = send(addr, "DELETE", "/tasks?select=*", None).await;
    assert_eq!(reply.status, 400);

    // Filters and parameters other than id=eq., select=* and a list's.
    for target in [
        "/tasks?id=7",
        "/tasks?id=neq.7",
        "/tasks?v=like.0",
        "/tasks?id=eq.7&id=eq.8",
    ] {
        for method in ["GET", "DELETE"] {
            let reply = send(addr, method, target, None).await;
            assert_eq!(reply.status, 400, "{method} {target}");
            assert_eq!(code(&reply), "PGRST100", "{method} {target}");
        }
    }
    let reply = send(addr, "POST", "/tasks?id=eq.8", Some(r#"{"id":"8"}"#)).await;
    assert_eq!(reply.status, 400);
    // A list's parameters (a lookup too) are for lists only: writes go
    // by id=eq. alone.
    for (method, target) in [
        ("DELETE", "/tasks?order=id"),
        ("DELETE", "/tasks?v=eq.0"),
        ("PATCH", "/tasks?v=eq.0"),
        ("DELETE", "/tasks?id=eq.7&v=gte.0"),
        ("GET", "/tasks?id=eq.7&limit=1"),
    ] {
        let reply = send(addr, method, target, None).await;
        assert_eq!(reply.status, 400, "{method} {target}");
        assert_eq!(code(&reply), "PGRST100", "{method} {target}");
    }

    // No /{table}/{id} route, no PUT.
    assert_eq!(send(addr, "GET", "/tasks/7", None).await.status, 404);
    let reply = send(addr, "PUT", "/tasks?id=eq.7", Some(r#"{"id":"7"}"#)).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, POST, PATCH, DELETE"));

    // A PATCH body is plain JSON: a merge patch means something else here.
    let reply = send_with(
        addr,
        "PATCH",
        "/tasks?id=eq.7",
        &[("Content-Type", "application/merge-patch+json")],
        Some(r#"{"v":null}"#),
    )
    .await;
    assert_eq!(reply.status, 415);
    assert_eq!(reply.header("accept-patch"), Some("application/json"));
    // Nor can it change the row's id.
    let reply = send(addr, "PATCH", "/tasks?id=eq.7", Some(r#"{"id":"8"}"#)).await;
    assert_eq!(reply.status, 400);
    let reply = send(addr, "PATCH", "/tasks?id=eq.7", Some("[]")).await;
    assert_eq!(reply.status, 400);

    assert_eq!(server.snapshot()["tasks"]["7"], json!({"id": "7", "v": 0}));
    assert_eq!(server.applied_requests().len(), 1);
}

#[tokio::test]
async fn idempotency_keys_work_as_in_the_rest_dialect() {
    let server = start_postgrest().await;
    let addr = server.addr();
    let create = [(IDEMPOTENCY_KEY, "create-1"), REPRESENT];
    let first = send_with(addr, "POST", "/tasks", &create, Some(r#"{"title":"generated"}"#)).await;
    assert_eq!(first.status, 201);
    let retry = send_with(addr, "POST", "/tasks", &create, Some(r#"{"title":"generated"}"#)).await;
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), Some("true"));
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("etag"), first.header("etag"));
    let id = first.json()[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(server.snapshot()["tasks"].len(), 1);

    // A no-op delete changed nothing, so its key is not remembered: the
    // same key applies once the row exists.
    let delete = [(IDEMPOTENCY_KEY, "delete-1"), REPRESENT];
    let nothing = send_with(addr, "DELETE", "/tasks?id=eq.none", &delete, None).await;
    assert_eq!(nothing.json(), json!([]));
    let target = format!("/tasks?id=eq.{id}");
    let done = send_with(addr, "DELETE", &target, &delete, None).await;
    assert_eq!(done.json()[0]["id"], id.as_str());
    assert_eq!(done.header(IDEMPOTENT_REPLAYED), None);
    let replayed = send_with(addr, "DELETE", &target, &delete, None).await;
    assert_eq!(replayed.header(IDEMPOTENT_REPLAYED), Some("true"));
    assert_eq!(replayed.body, done.body);

    let log = server.request_log();
    let ids: Vec<Option<&str>> = log.iter().map(|record| record.id.as_deref()).collect();
    assert_eq!(
        ids,
        [
            Some(id.as_str()),
            Some(id.as_str()),
            Some("none"),
            Some(id.as_str()),
            Some(id.as_str())
        ]
    );
    let applied: Vec<bool> = log.iter().map(|record| record.applied).collect();
    assert_eq!(applied, [true, false, false, true, false]);
}

#[tokio::test]
async fn without_idempotency_a_repeated_create_is_a_unique_violation() {
    let server = start_with(ServerConfig::new().with_idempotency(IdempotencyMode::Ignore)).await;
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "create-1")];
    assert_eq!(
        send_with(addr, "POST", "/tasks", &key, Some(r#"{"id":"7"}"#))
            .await
            .status,
        201
    );
    let again = send_with(addr, "POST", "/tasks", &key, Some(r#"{"id":"7"}"#)).await;
    assert_eq!(again.status, 409);
    assert_eq!(code(&again), "23505");
}

#[tokio::test]
async fn faults_pick_rows_by_the_filter_id() {
    let server = start_postgrest().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"7","v":0}"#)).await;
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"8","v":0}"#)).await;
    server.set_faults(Some(
        FaultPlan::seeded(1)
            .for_id("7", Fault::LoseResponse)
            .for_id("8", Fault::Status(StatusCode::SERVICE_UNAVAILABLE)),
    ));
    server.clear_request_log();

    let lost = send_raw(addr, "PATCH", "/tasks?id=eq.7", &[REPRESENT], Some(r#"{"v":1}"#)).await;
    assert!(lost.is_empty(), "{}", String::from_utf8_lossy(&lost));
    assert_eq!(server.snapshot()["tasks"]["7"]["v"], 1, "applied all the same");
    let refused = send_with(addr, "PATCH", "/tasks?id=eq.8", &[REPRESENT], Some(r#"{"v":1}"#)).await;
    assert_eq!(refused.status, 503);
    assert_eq!(server.snapshot()["tasks"]["8"]["v"], 0);
    // A 204 has no body to break, and the fault is still counted.
    server.set_faults(Some(FaultPlan::seeded(1).for_id("8", Fault::MalformedJson)));
    assert_empty(
        &send(addr, "PATCH", "/tasks?id=eq.8", Some(r#"{"v":2}"#)).await,
        204,
    );

    let log = server.request_log();
    let seen: Vec<(Option<&str>, Option<Fault>, bool)> = log
        .iter()
        .map(|record| (record.id.as_deref(), record.fault.clone(), record.applied))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("7"), Some(Fault::LoseResponse), true),
            (
                Some("8"),
                Some(Fault::Status(StatusCode::SERVICE_UNAVAILABLE)),
                false
            ),
            (Some("8"), Some(Fault::MalformedJson), true),
        ]
    );
}

#[tokio::test]
async fn if_match_guards_dialect_writes_too() {
    let server = start_postgrest().await;
    let addr = server.addr();
    let created = send_with(addr, "POST", "/tasks", &[REPRESENT], Some(r#"{"id":"7","v":0}"#)).await;
    let stale = created.header("etag").unwrap().to_owned();
    let current = send(addr, "PATCH", "/tasks?id=eq.7", Some(r#"{"v":1}"#)).await;
    let current = current.header("etag").unwrap().to_owned();

    let reply = send_with(
        addr,
        "PATCH",
        "/tasks?id=eq.7",
        &[REPRESENT, ("If-Match", &stale)],
        Some(r#"{"v":2}"#),
    )
    .await;
    assert_eq!(reply.status, 412);
    let reply = send_with(addr, "DELETE", "/tasks?id=eq.none", &[("If-Match", "*")], None).await;
    assert_eq!(reply.status, 412);
    let reply = send_with(
        addr,
        "DELETE",
        "/tasks?id=eq.7",
        &[REPRESENT, ("If-Match", &current)],
        None,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), Value::Array(vec![json!({"id": "7", "v": 1})]));
}
