//! The server-stamped field (`--stamp-field`) and soft deletes
//! (`--soft-delete`), with ETags, idempotency keys, the feed and lists.

use serde_json::{Value, json};
use sync_reference_server::{Dialect, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, ReferenceServer, ServerConfig};

use crate::client::{send, send_with};

async fn start_soft() -> ReferenceServer {
    ReferenceServer::start(
        ServerConfig::new()
            .with_stamp_field("updated_at")
            .with_soft_delete("deleted"),
    )
    .await
    .unwrap()
}

fn stamp(record: &Value) -> u64 {
    record["updated_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("no stamp: {record}"))
}

#[tokio::test]
async fn every_write_stamps_a_strictly_growing_value() {
    let server = ReferenceServer::start(ServerConfig::new().with_stamp_field("updated_at"))
        .await
        .unwrap();
    let addr = server.addr();
    // What the client sends in the field is overwritten.
    let created = send(addr, "POST", "/tasks", Some(r#"{"id":"a","updated_at":1}"#)).await;
    assert_eq!(created.status, 201);
    let first = stamp(&created.json());
    assert!(first > 1_600_000_000_000, "milliseconds since the epoch: {first}");
    let mut last = first;
    for (method, target, body) in [
        ("POST", "/tasks", r#"{"id":"b"}"#),
        ("PUT", "/tasks/a", r#"{"title":"x","updated_at":"later"}"#),
        ("PATCH", "/tasks/a", r#"{"done":true}"#),
        ("PATCH", "/tasks/b", r#"{"updated_at":null}"#),
    ] {
        let reply = send(addr, method, target, Some(body)).await;
        assert!(reply.status < 300, "{method} {target}: {}", reply.status);
        let value = stamp(&reply.json());
        assert!(value > last, "{method} {target}: {value} after {last}");
        last = value;
    }
    // As answered, as stored.
    let fetched = send(addr, "GET", "/tasks/a", None).await.json();
    assert_eq!(server.snapshot()["tasks"]["a"], fetched);

    // Ties when a test asks for them.
    server.pin_stamp(Some(42));
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"c"}"#)).await;
    let _ = send(addr, "PATCH", "/tasks/a", Some(r#"{"n":1}"#)).await;
    let snapshot = server.snapshot();
    assert_eq!(
        (stamp(&snapshot["tasks"]["a"]), stamp(&snapshot["tasks"]["c"])),
        (42, 42)
    );
    server.pin_stamp(None);
    let reply = send(addr, "PATCH", "/tasks/c", Some("{}")).await;
    assert!(stamp(&reply.json()) > last, "past every value handed out");
}

#[tokio::test]
async fn a_soft_deleted_record_reads_as_missing_but_is_listed() {
    let server = start_soft().await;
    let addr = server.addr();
    let created = send(addr, "POST", "/tasks", Some(r#"{"id":"a","title":"t"}"#)).await;
    let tag = created.header("etag").unwrap().to_owned();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"b"}"#)).await;

    let deleted = send_with(addr, "DELETE", "/tasks/a", &[("If-Match", tag.as_str())], None).await;
    assert_eq!(deleted.status, 200);
    let body = deleted.json();
    assert_eq!(
        (body["deleted"].clone(), body["title"].clone()),
        (json!(true), json!("t"))
    );
    assert!(stamp(&body) > stamp(&created.json()), "a new stamp");

    // Missing for reads, updates, deletes and preconditions...
    assert_eq!(send(addr, "GET", "/tasks/a", None).await.status, 404);
    assert_eq!(send(addr, "GET", "/tasks?id=a", None).await.status, 404);
    assert_eq!(
        send(addr, "PUT", "/tasks/a", Some(r#"{"title":"u"}"#))
            .await
            .status,
        404
    );
    assert_eq!(
        send(addr, "PATCH", "/tasks/a", Some(r#"{"title":"u"}"#))
            .await
            .status,
        404
    );
    assert_eq!(send(addr, "DELETE", "/tasks/a", None).await.status, 404);
    let reply = send_with(addr, "PUT", "/tasks/a", &[("If-Match", "*")], Some("{}")).await;
    assert_eq!(reply.status, 412);
    assert_eq!(server.record_version("tasks", "a"), None);
    assert_eq!(server.snapshot()["tasks"].len(), 1, "the snapshot leaves it out");

    // ...but listed, which is how list clients learn of it.
    let list = send(addr, "GET", "/tasks", None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["deleted"], true);
    let list = send(addr, "GET", "/tasks?deleted_gte=x", None).await.json();
    assert_eq!(list, json!([]), "booleans never match a range");
    // The feed says delete.
    let feed = send(addr, "GET", "/tasks/changes", None).await.json();
    assert_eq!(feed["changes"][1], json!({"op": "delete", "id": "a"}));

    // A create brings it back, as new.
    let revived = send(addr, "POST", "/tasks", Some(r#"{"id":"a","title":"again"}"#)).await;
    assert_eq!(revived.status, 201);
    assert_ne!(revived.header("etag"), Some(tag.as_str()));
    assert_eq!(revived.json().get("deleted"), None);
    assert_eq!(send(addr, "GET", "/tasks/a", None).await.json()["title"], "again");
    assert_eq!(
        send(addr, "POST", "/tasks", Some(r#"{"id":"a"}"#)).await.status,
        409
    );

    // Purged, it leaves the lists.
    let _ = send(addr, "DELETE", "/tasks/b", None).await;
    assert_eq!(server.purge_tombstones("tasks", None), 1);
    let list = send(addr, "GET", "/tasks", None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn idempotency_keys_replay_a_soft_delete() {
    let server = start_soft().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"a"}"#)).await;
    let key = [(IDEMPOTENCY_KEY, "del-1")];
    let first = send_with(addr, "DELETE", "/tasks/a", &key, None).await;
    let again = send_with(addr, "DELETE", "/tasks/a", &key, None).await;
    assert_eq!((first.status, again.status), (200, 200));
    assert_eq!(again.header(IDEMPOTENT_REPLAYED), Some("true"));
    assert_eq!(again.json(), first.json());
    assert_eq!(server.applied_requests().len(), 2, "the create and one delete");
    // A key unknown: the record is gone for it.
    assert_eq!(
        send_with(addr, "DELETE", "/tasks/a", &[(IDEMPOTENCY_KEY, "del-2")], None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn an_update_setting_the_field_deletes_too_and_postgrest_deletes_softly() {
    let server = ReferenceServer::start(
        ServerConfig::new()
            .with_dialect(Dialect::PostgRest)
            .with_soft_delete("deleted"),
    )
    .await
    .unwrap();
    let addr = server.addr();
    let represent = [("Prefer", "return=representation")];
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"7"}"#)).await;
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"8"}"#)).await;
    let reply = send_with(addr, "DELETE", "/tasks?id=eq.7", &represent, None).await;
    assert_eq!(reply.json(), json!([{"id": "7", "deleted": true}]));
    assert_eq!(send(addr, "GET", "/tasks?id=eq.7", None).await.json(), json!([]));
    let reply = send_with(
        addr,
        "PATCH",
        "/tasks?id=eq.8",
        &represent,
        Some(r#"{"deleted":true}"#),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(send(addr, "GET", "/tasks?id=eq.8", None).await.json(), json!([]));
    let listed = send(addr, "GET", "/tasks?order=id.desc", None).await.json();
    assert_eq!(
        listed,
        json!([{"id": "8", "deleted": true}, {"id": "7", "deleted": true}])
    );
}

#[tokio::test]
async fn fields_that_cannot_work_are_refused_at_start() {
    for config in [
        ServerConfig::new().with_stamp_field("id"),
        ServerConfig::new().with_soft_delete(""),
        ServerConfig::new().with_stamp_field("x").with_soft_delete("x"),
    ] {
        assert!(ReferenceServer::start(config).await.is_err());
    }
}
