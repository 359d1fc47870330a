//! Every route, its answers and its refusals.

use serde_json::json;
use sync_reference_server::{ReferenceServer, ServerConfig};

use crate::client::{send, send_with, start};

#[tokio::test]
async fn health_answers_ok_and_is_not_a_collection() {
    let server = start().await;
    let addr = server.addr();

    let reply = send(addr, "GET", "/health", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"status": "ok"}));

    let reply = send(addr, "POST", "/health", Some(r#"{"id":"1"}"#)).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
    reply.error();
    assert_eq!(send(addr, "GET", "/health/1", None).await.status, 404);
    assert!(server.snapshot().is_empty());
    assert!(
        server.request_log().is_empty(),
        "health checks are not collection requests"
    );
}

#[tokio::test]
async fn create_fetch_list_update_delete() {
    let server = start().await;
    let addr = server.addr();

    let reply = send(addr, "POST", "/tasks", Some(r#"{"id":"b","title":"second?"}"#)).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), json!({"id": "b", "title": "second?"}));
    let reply = send(
        addr,
        "POST",
        "/tasks",
        Some(r#"{"id":"a","title":"first","n":[1,2]}"#),
    )
    .await;
    assert_eq!(reply.status, 201);

    let reply = send(addr, "GET", "/tasks/a", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"id": "a", "title": "first", "n": [1, 2]}));

    // Insertion order, not id order.
    let reply = send(addr, "GET", "/tasks", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!([{"id": "b", "title": "second?"}, {"id": "a", "title": "first", "n": [1, 2]}])
    );

    // A replace keeps the record's place and fills in the id.
    let reply = send(
        addr,
        "PUT",
        "/tasks/b",
        Some(r#"{"title":"renamed","done":true}"#),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"id": "b", "title": "renamed", "done": true}));
    let reply = send(addr, "PUT", "/tasks/a", Some(r#"{"id":"a","title":"whole"}"#)).await;
    assert_eq!(reply.json(), json!({"id": "a", "title": "whole"}));
    let list = send(addr, "GET", "/tasks", None).await.json();
    assert_eq!(list[0]["id"], "b");
    assert_eq!(list[1], json!({"id": "a", "title": "whole"}));

    let reply = send(addr, "DELETE", "/tasks/b", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"id": "b", "title": "renamed", "done": true}));
    assert_eq!(send(addr, "GET", "/tasks/b", None).await.status, 404);

    let snapshot = server.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot["tasks"].len(), 1);
    assert_eq!(snapshot["tasks"]["a"], json!({"id": "a", "title": "whole"}));

    // The last record gone, the collection is gone from the snapshot and
    // lists as empty.
    assert_eq!(send(addr, "DELETE", "/tasks/a", None).await.status, 200);
    assert!(server.snapshot().is_empty());
    assert_eq!(send(addr, "GET", "/tasks", None).await.json(), json!([]));
    assert_eq!(send(addr, "GET", "/never-used", None).await.json(), json!([]));
}

#[tokio::test]
async fn ids_are_strings_numbers_or_generated() {
    let server = start().await;
    let addr = server.addr();

    // A number id is stored under its decimal form, and kept a number.
    let reply = send(addr, "POST", "/notes", Some(r#"{"id":42,"text":"n"}"#)).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json(), json!({"id": 42, "text": "n"}));
    assert_eq!(send(addr, "GET", "/notes/42", None).await.json()["id"], 42);
    let reply = send(addr, "PUT", "/notes/42", Some(r#"{"text":"m"}"#)).await;
    assert_eq!(reply.json(), json!({"id": 42, "text": "m"}));
    let reply = send(addr, "PUT", "/notes/42", Some(r#"{"id":"42","text":"o"}"#)).await;
    assert_eq!(reply.status, 200, "the string form of the same id matches");

    // No id (or null): one is generated, as a string, never a taken one.
    let _ = send(addr, "POST", "/notes", Some(r#"{"id":"1"}"#)).await;
    let first = send(addr, "POST", "/notes", Some(r#"{"text":"x"}"#)).await;
    assert_eq!(first.status, 201);
    let first_id = first.json()["id"].as_str().unwrap().to_owned();
    assert_ne!(first_id, "1");
    let second = send(addr, "POST", "/notes", Some(r#"{"id":null,"text":"y"}"#)).await;
    let second_id = second.json()["id"].as_str().unwrap().to_owned();
    assert_ne!(first_id, second_id);
    assert_eq!(
        send(addr, "GET", &format!("/notes/{second_id}"), None)
            .await
            .json(),
        json!({"id": second_id, "text": "y"})
    );
    assert_eq!(server.snapshot()["notes"].len(), 4);
}

#[tokio::test]
async fn query_string_addresses_a_record() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"2","v":1}"#)).await;
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"a&b c","v":1}"#)).await;

    let reply = send(addr, "GET", "/tasks?id=2", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"id": "2", "v": 1}));
    let reply = send(addr, "PUT", "/tasks?id=2", Some(r#"{"v":2}"#)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"id": "2", "v": 2}));
    // Other parameters are ignored; the same id in path and query agrees.
    assert_eq!(send(addr, "GET", "/tasks/2?id=2&x=y", None).await.json()["v"], 2);

    // Query values are form-decoded: %26 is '&', '+' and %20 are spaces.
    assert_eq!(send(addr, "GET", "/tasks?id=a%26b+c", None).await.status, 200);
    assert_eq!(
        send(addr, "DELETE", "/tasks?id=a%26b%20c", None).await.status,
        200
    );
    assert_eq!(send(addr, "DELETE", "/tasks?id=2", None).await.status, 200);
    assert_eq!(send(addr, "GET", "/tasks?id=2", None).await.status, 404);
    assert_eq!(send(addr, "PUT", "/tasks?id=2", Some("{}")).await.status, 404);
    assert_eq!(send(addr, "DELETE", "/tasks?id=2", None).await.status, 404);

    let reply = send(addr, "GET", "/tasks/1?id=2", None).await;
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("differ"));
    assert_eq!(send(addr, "GET", "/tasks?id=1&id=2", None).await.status, 400);
    assert!(server.snapshot().is_empty());
}

#[tokio::test]
async fn percent_encoded_names_and_ids_are_decoded() {
    let server = start().await;
    let addr = server.addr();

    let reply = send(addr, "POST", "/my%20tasks", Some(r#"{"id":"a/b"}"#)).await;
    assert_eq!(reply.status, 201);
    let reply = send(addr, "GET", "/my%20tasks/a%2Fb", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"id": "a/b"}));
    let reply = send(addr, "PUT", "/my%20tasks/a%2fb", Some(r#"{"x":1}"#)).await;
    assert_eq!(reply.json(), json!({"id": "a/b", "x": 1}));

    let _ = send(addr, "POST", "/my%20tasks", Some(r#"{"id":"né ?#%"}"#)).await;
    let reply = send(addr, "GET", "/my%20tasks/n%C3%A9%20%3F%23%25", None).await;
    assert_eq!(reply.status, 200);
    // In a path '+' is itself.
    let _ = send(addr, "POST", "/my%20tasks", Some(r#"{"id":"1+1"}"#)).await;
    assert_eq!(send(addr, "GET", "/my%20tasks/1+1", None).await.status, 200);
    assert_eq!(send(addr, "DELETE", "/my%20tasks/a%2Fb", None).await.status, 200);

    let snapshot = server.snapshot();
    let ids: Vec<&str> = snapshot["my tasks"].keys().map(String::as_str).collect();
    assert_eq!(ids, ["1+1", "né ?#%"]);

    let reply = send(addr, "GET", "/my%20tasks/%zz", None).await;
    assert_eq!(reply.status, 400);
    reply.error();
    assert_eq!(send(addr, "GET", "/my%20tasks/%FF", None).await.status, 400);
}

#[tokio::test]
async fn missing_records_are_404_and_taken_ids_409() {
    let server = start().await;
    let addr = server.addr();
    for (method, body) in [("GET", None), ("PUT", Some("{}")), ("DELETE", None)] {
        let reply = send(addr, method, "/tasks/nope", body).await;
        assert_eq!(reply.status, 404, "{method}");
        assert!(reply.error().contains("nope"));
    }

    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":"first"}"#)).await;
    let reply = send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":"second"}"#)).await;
    assert_eq!(reply.status, 409);
    reply.error();
    // The number 1 is the id "1".
    assert_eq!(
        send(addr, "POST", "/tasks", Some(r#"{"id":1}"#)).await.status,
        409
    );
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": "first"}));
}

#[tokio::test]
async fn bodies_that_are_not_objects_are_400() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1"}"#)).await;
    let cases = [
        ("POST", "/tasks", "{not json"),
        ("POST", "/tasks", "[1,2]"),
        ("POST", "/tasks", r#""text""#),
        ("POST", "/tasks", ""),
        ("POST", "/tasks", r#"{"id":true}"#),
        ("POST", "/tasks", r#"{"id":""}"#),
        ("POST", "/tasks", r#"{"id":{"a":1}}"#),
        ("PUT", "/tasks/1", "{"),
        ("PUT", "/tasks/1", "null"),
        ("PUT", "/tasks/1", r#"{"id":"2"}"#),
    ];
    for (method, path, body) in cases {
        let reply = send(addr, method, path, Some(body)).await;
        assert_eq!(reply.status, 400, "{method} {path} {body}");
        reply.error();
    }
    assert_eq!(server.snapshot()["tasks"].len(), 1);
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1"}));
}

#[tokio::test]
async fn other_methods_are_405_and_other_shapes_404() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1"}"#)).await;

    for (method, path, allow) in [
        ("OPTIONS", "/tasks/1", "GET, PUT, PATCH, DELETE"),
        ("POST", "/tasks/1", "GET, PUT, PATCH, DELETE"),
        ("POST", "/tasks?id=1", "GET, PUT, PATCH, DELETE"),
        ("PUT", "/tasks", "GET, POST"),
        ("PATCH", "/tasks", "GET, POST"),
        ("DELETE", "/tasks", "GET, POST"),
        ("OPTIONS", "/tasks", "GET, POST"),
    ] {
        let reply = send(addr, method, path, Some("{}")).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        reply.error();
    }

    for path in ["/", "/tasks/1/more", "//tasks", "/tasks//1"] {
        let reply = send(addr, "GET", path, None).await;
        assert_eq!(reply.status, 404, "{path}");
        reply.error();
    }
    assert_eq!(server.snapshot()["tasks"].len(), 1);
}

#[tokio::test]
async fn a_prefix_puts_every_route_under_it() {
    let server = ReferenceServer::start(ServerConfig::new().with_prefix("api/v1/"))
        .await
        .unwrap();
    let addr = server.addr();
    assert_eq!(server.base_url(), format!("http://{addr}/api/v1"));

    assert_eq!(send(addr, "GET", "/api/v1/health", None).await.status, 200);
    assert_eq!(
        send(addr, "POST", "/api/v1/tasks", Some(r#"{"id":"1"}"#))
            .await
            .status,
        201
    );
    assert_eq!(send(addr, "GET", "/api/v1/tasks/1", None).await.status, 200);
    assert_eq!(send(addr, "GET", "/api/v1/tasks?id=1", None).await.status, 200);
    for path in ["/tasks/1", "/health", "/api/tasks/1", "/api/v1x/tasks"] {
        assert_eq!(send(addr, "GET", path, None).await.status, 404, "{path}");
    }
}

#[tokio::test]
async fn an_unusable_idempotency_key_is_refused() {
    let server = start().await;
    let reply = send_with(
        server.addr(),
        "POST",
        "/tasks",
        &[("Idempotency-Key", "")],
        Some(r#"{"id":"1"}"#),
    )
    .await;
    assert_eq!(reply.status, 400);
    reply.error();
    assert!(server.snapshot().is_empty());
}
