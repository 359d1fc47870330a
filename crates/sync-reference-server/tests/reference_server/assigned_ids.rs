//! Server-assigned ids: creates get the collection's next integer, never
//! reused, kept in the data file; a body with an id is refused; replays,
//! ignored keys, the other routes and lookups by field work on them.

use std::fs;

use http::Method;
use serde_json::{Value, json};
use sync_reference_server::{
    Dialect, Fault, FaultPlan, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, IdempotencyMode, ReferenceServer,
    ServerConfig,
};

use crate::client::{send, send_raw, send_with};

async fn start_assigning(config: ServerConfig) -> ReferenceServer {
    let server = ReferenceServer::start(config.with_assigned_ids(true))
        .await
        .unwrap();
    assert!(server.assigned_ids());
    server
}

/// The ids of `records`, as stored.
fn ids(records: &[Value]) -> Vec<Value> {
    records.iter().map(|record| record["id"].clone()).collect()
}

#[tokio::test]
async fn assigned_ids_increase_per_collection_and_are_never_reused() {
    let server = start_assigning(ServerConfig::new()).await;
    let addr = server.addr();
    assert!(!ServerConfig::new().assigned_ids, "off by default");

    let first = send(addr, "POST", "/tasks", Some(r#"{"title":"a"}"#)).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.json(), json!({"id": 1, "title": "a"}), "a JSON number");
    let version = server.record_version("tasks", "1").unwrap();
    assert_eq!(first.header("etag"), Some(format!("\"{version}\"").as_str()));
    let second = send(addr, "POST", "/tasks", Some(r#"{"title":"b"}"#)).await;
    assert_eq!(second.json()["id"], 2);
    // Counted per collection.
    let note = send(addr, "POST", "/notes", Some(r#"{"text":"n"}"#)).await;
    assert_eq!(note.json()["id"], 1);

    // The highest id deleted: the next create does not take it again.
    assert_eq!(send(addr, "DELETE", "/tasks/2", None).await.status, 200);
    let third = send(addr, "POST", "/tasks", Some(r#"{"title":"c"}"#)).await;
    assert_eq!(third.json()["id"], 3);
    assert_eq!(server.last_assigned_id("tasks"), 3);
    assert_eq!(server.last_assigned_id("notes"), 1);
    assert_eq!(server.last_assigned_id("none"), 0);

    assert_eq!(ids(&server.records("tasks")), [json!(1), json!(3)]);
    assert_eq!(server.record_count("tasks"), 2);
    assert_eq!(server.record_count("notes"), 1);
    assert_eq!(server.record_count("none"), 0);
    assert_eq!(server.snapshot()["tasks"]["3"], json!({"id": 3, "title": "c"}));

    // The list, the id sort and the change feed carry the numbers.
    assert_eq!(
        ids(send(addr, "GET", "/tasks?_sort=-id", None)
            .await
            .json()
            .as_array()
            .unwrap()),
        [json!(3), json!(1)]
    );
    let feed = send(addr, "GET", "/tasks/changes", None).await.json();
    let changes: Vec<(Value, Value)> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| (change["op"].clone(), change["id"].clone()))
        .collect();
    assert_eq!(
        changes,
        [
            (json!("upsert"), json!(1)),
            (json!("delete"), json!(2)),
            (json!("upsert"), json!(3)),
        ]
    );
    // The request log names records by their id's text.
    let logged: Vec<(Method, Option<String>)> = server
        .applied_requests()
        .into_iter()
        .filter(|record| record.collection == "tasks")
        .map(|record| (record.method, record.id))
        .collect();
    assert_eq!(
        logged,
        [
            (Method::POST, Some("1".to_owned())),
            (Method::POST, Some("2".to_owned())),
            (Method::DELETE, Some("2".to_owned())),
            (Method::POST, Some("3".to_owned())),
        ]
    );
}

#[tokio::test]
async fn a_create_that_carries_an_id_is_refused_and_changes_nothing() {
    let server = start_assigning(ServerConfig::new()).await;
    let addr = server.addr();
    for body in [
        r#"{"id":"tmp-7f3a","title":"x"}"#,
        r#"{"id":5,"title":"x"}"#,
        r#"{"id":"","title":"x"}"#,
        r#"{"id":{},"title":"x"}"#,
    ] {
        let reply = send_with(addr, "POST", "/tasks", &[(IDEMPOTENCY_KEY, "k")], Some(body)).await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(
            reply.error().contains("the server assigns ids"),
            "{}",
            reply.error()
        );
    }
    assert!(server.snapshot().is_empty());
    assert_eq!(server.record_count("tasks"), 0);
    assert_eq!(server.last_assigned_id("tasks"), 0, "no id spent");
    assert!(server.applied_requests().is_empty());
    assert!(server.request_log().iter().all(|record| record.status == 400));

    // A `null` id is none; the refused key was not remembered.
    let reply = send_with(
        addr,
        "POST",
        "/tasks",
        &[(IDEMPOTENCY_KEY, "k")],
        Some(r#"{"id":null,"title":"y"}"#),
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), json!({"id": 1, "title": "y"}));
    assert_eq!(reply.header(IDEMPOTENT_REPLAYED), None);
}

#[tokio::test]
async fn a_replayed_create_answers_the_same_id_and_creates_nothing() {
    let server = start_assigning(ServerConfig::new()).await;
    assert_eq!(server.idempotency(), IdempotencyMode::Replay);
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "op-1")];
    let body = Some(r#"{"title":"t","client_ref":"r-1"}"#);

    let first = send_with(addr, "POST", "/tasks", &key, body).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.json()["id"], 1);
    let retry = send_with(addr, "POST", "/tasks", &key, body).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.body, first.body, "the same record, the same id");
    assert_eq!(retry.header("etag"), first.header("etag"));
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), Some("true"));
    assert_eq!(server.record_count("tasks"), 1);
    assert_eq!(server.last_assigned_id("tasks"), 1, "no id spent on the retry");
    assert_eq!(server.applied_requests().len(), 1);
    let log = server.request_log();
    assert!(log[1].replayed);
    assert_eq!(log[1].id.as_deref(), Some("1"));

    // Another key is another create.
    let other = send_with(addr, "POST", "/tasks", &[(IDEMPOTENCY_KEY, "op-2")], body).await;
    assert_eq!(other.json()["id"], 2);
}

#[tokio::test]
async fn ignoring_keys_a_repeated_create_makes_a_second_record_under_a_new_id() {
    let server = start_assigning(ServerConfig::new().with_idempotency(IdempotencyMode::Ignore)).await;
    let addr = server.addr();
    let key = [(IDEMPOTENCY_KEY, "op-1")];
    let body = Some(r#"{"title":"t","client_ref":"r-1"}"#);

    let first = send_with(addr, "POST", "/tasks", &key, body).await;
    let second = send_with(addr, "POST", "/tasks", &key, body).await;
    assert_eq!((first.status, second.status), (201, 201));
    assert_eq!(
        (first.json()["id"].clone(), second.json()["id"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(second.header(IDEMPOTENT_REPLAYED), None);
    assert_eq!(server.record_count("tasks"), 2, "a duplicate");
    let applied = server.applied_requests();
    assert_eq!(applied.len(), 2);
    assert!(
        applied
            .iter()
            .all(|record| record.idempotency_key.as_deref() == Some("op-1"))
    );
    // The lookup by the client's reference shows the duplicate.
    let found = send(addr, "GET", "/tasks?client_ref=r-1", None).await.json();
    assert_eq!(ids(found.as_array().unwrap()), [json!(1), json!(2)]);
}

#[tokio::test]
async fn assigned_records_are_read_replaced_patched_and_deleted_by_their_id() {
    let server = start_assigning(ServerConfig::new()).await;
    let addr = server.addr();
    for title in ["a", "b"] {
        let body = json!({ "title": title }).to_string();
        assert_eq!(send(addr, "POST", "/tasks", Some(&body)).await.status, 201);
    }

    let read = send(addr, "GET", "/tasks/2", None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), json!({"id": 2, "title": "b"}));
    assert_eq!(send(addr, "GET", "/tasks?id=2", None).await.json()["title"], "b");
    let etag = read.header("etag").unwrap().to_owned();

    // PUT without an id, with the number, or with its text: the id stays
    // the number.
    for body in [
        r#"{"title":"b2"}"#,
        r#"{"id":2,"title":"b3"}"#,
        r#"{"id":"2","title":"b4"}"#,
    ] {
        let reply = send(addr, "PUT", "/tasks/2", Some(body)).await;
        assert_eq!(reply.status, 200, "{body}");
        assert_eq!(reply.json()["id"], 2, "{body}");
    }
    assert_eq!(server.snapshot()["tasks"]["2"], json!({"id": 2, "title": "b4"}));
    assert_eq!(
        send(addr, "PUT", "/tasks/2", Some(r#"{"id":1,"title":"x"}"#))
            .await
            .status,
        400
    );
    // The ETag read before the updates is stale.
    let stale = send_with(
        addr,
        "PUT",
        "/tasks/2",
        &[("If-Match", &etag)],
        Some(r#"{"title":"x"}"#),
    )
    .await;
    assert_eq!(stale.status, 412);
    let patched = send(addr, "PATCH", "/tasks/2", Some(r#"{"done":true}"#)).await;
    assert_eq!(patched.json(), json!({"id": 2, "title": "b4", "done": true}));
    let current = patched.header("etag").unwrap().to_owned();
    let deleted = send_with(addr, "DELETE", "/tasks/2", &[("If-Match", &current)], None).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(send(addr, "GET", "/tasks/2", None).await.status, 404);
    assert_eq!(
        send(addr, "PUT", "/tasks/2", Some("{}")).await.status,
        404,
        "no upsert"
    );
    assert_eq!(ids(&server.records("tasks")), [json!(1)]);
    // The next create does not bring 2 back.
    assert_eq!(send(addr, "POST", "/tasks", Some("{}")).await.json()["id"], 3);
}

#[tokio::test]
async fn assigned_ids_survive_a_restart_with_a_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.json");
    let config = ServerConfig::new().with_data_file(&path);

    let server = start_assigning(config.clone()).await;
    let addr = server.addr();
    for title in ["a", "b", "c"] {
        let body = json!({ "title": title }).to_string();
        let _ = send(addr, "POST", "/tasks", Some(&body)).await;
    }
    // The last one deleted: only the file's counter remembers it.
    assert_eq!(send(addr, "DELETE", "/tasks/3", None).await.status, 200);
    server.shutdown().await;
    let file: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        file,
        json!({
            "tasks": [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}],
            "_assigned_ids": {"tasks": 3},
        })
    );

    // A run without the mode keeps the counter (and writes it back).
    let server = ReferenceServer::start(config.clone()).await.unwrap();
    assert!(!server.assigned_ids());
    assert_eq!(server.last_assigned_id("tasks"), 3);
    let named = send(server.addr(), "POST", "/tasks", Some(r#"{"id":"n1"}"#)).await;
    assert_eq!(named.status, 201, "clients name records again");
    // Switched on while running, it goes on after the last id.
    server.set_assigned_ids(true);
    let reply = send(server.addr(), "POST", "/tasks", Some(r#"{"title":"d"}"#)).await;
    assert_eq!(reply.json()["id"], 4);
    server.shutdown().await;

    let server = start_assigning(config).await;
    let addr = server.addr();
    assert_eq!(server.last_assigned_id("tasks"), 4);
    assert_eq!(send(addr, "GET", "/tasks/2", None).await.json()["title"], "b");
    let reply = send(addr, "POST", "/tasks", Some(r#"{"title":"e"}"#)).await;
    assert_eq!(reply.json()["id"], 5);
    assert_eq!(
        ids(&server.records("tasks")),
        [json!(1), json!(2), json!("n1"), json!(4), json!(5)]
    );
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_a_field_it_sent() {
    let plan = FaultPlan::seeded(3)
        .only_methods(&[Method::POST])
        .first_attempts(1, Fault::LoseResponse);
    let server = start_assigning(ServerConfig::new().with_faults(plan)).await;
    let addr = server.addr();

    let body = Some(r#"{"title":"t","client_ref":"r-81"}"#);
    let lost = send_raw(addr, "POST", "/tasks", &[], body).await;
    assert!(lost.is_empty(), "no answer");
    assert_eq!(server.record_count("tasks"), 1, "but created");

    let found = send(addr, "GET", "/tasks?client_ref=r-81", None).await;
    assert_eq!(found.status, 200);
    assert_eq!(
        found.json(),
        json!([{"id": 1, "title": "t", "client_ref": "r-81"}])
    );
    assert_eq!(
        send(addr, "GET", "/tasks?client_ref=r-82", None).await.json(),
        json!([])
    );
    assert_eq!(
        send(addr, "GET", "/tasks?id=1", None).await.json()["client_ref"],
        "r-81"
    );
}

#[tokio::test]
async fn the_postgrest_dialect_assigns_ids_too() {
    let server = start_assigning(ServerConfig::new().with_dialect(Dialect::PostgRest)).await;
    let addr = server.addr();
    let represent = [("Prefer", "return=representation")];

    let created = send_with(
        addr,
        "POST",
        "/tasks",
        &represent,
        Some(r#"{"title":"a","ref":"x"}"#),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json(), json!([{"id": 1, "title": "a", "ref": "x"}]));
    assert!(created.header("etag").is_some());

    let refused = send_with(
        addr,
        "POST",
        "/tasks",
        &represent,
        Some(r#"{"id":9,"title":"b"}"#),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["code"], "428C9");
    assert!(
        refused.json()["details"]
            .as_str()
            .unwrap()
            .contains("the server assigns ids"),
        "{}",
        refused.json()
    );
    assert_eq!(server.record_count("tasks"), 1);

    assert_eq!(
        send(addr, "GET", "/tasks?id=eq.1", None).await.json(),
        json!([{"id": 1, "title": "a", "ref": "x"}])
    );
    assert_eq!(
        send(addr, "GET", "/tasks?ref=eq.x", None).await.json()[0]["id"],
        1
    );
    assert_eq!(send(addr, "GET", "/tasks?ref=eq.y", None).await.json(), json!([]));
    let patched = send_with(
        addr,
        "PATCH",
        "/tasks?id=eq.1",
        &represent,
        Some(r#"{"title":"b"}"#),
    )
    .await;
    assert_eq!(patched.json(), json!([{"id": 1, "title": "b", "ref": "x"}]));
    assert_eq!(send(addr, "DELETE", "/tasks?id=eq.1", None).await.status, 204);
    let next = send_with(addr, "POST", "/tasks", &represent, Some("{}")).await;
    assert_eq!(next.json(), json!([{"id": 2}]));
}

#[tokio::test]
async fn the_name_that_keeps_the_counters_is_no_collection() {
    let server = start_assigning(ServerConfig::new()).await;
    let addr = server.addr();
    assert_eq!(send(addr, "POST", "/_assigned_ids", Some("{}")).await.status, 404);
    assert_eq!(send(addr, "GET", "/_assigned_ids", None).await.status, 404);
    assert!(server.seed("_assigned_ids", [json!({"id": 1})]).is_err());
    assert!(server.snapshot().is_empty());
}
