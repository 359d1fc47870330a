//! ETags on the answers that carry a record, and writes conditional on
//! them with `If-Match`.

use serde_json::json;
use sync_reference_server::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, ReferenceServer, ServerConfig};

use crate::client::{Reply, send, send_with, start};

/// The reply's `ETag`, which must be there.
fn etag(reply: &Reply) -> String {
    reply
        .header("etag")
        .unwrap_or_else(|| panic!("no ETag: {} {:?}", reply.status, reply.headers))
        .to_owned()
}

fn quoted(version: u64) -> String {
    format!("\"{version}\"")
}

#[tokio::test]
async fn answers_carrying_a_record_carry_its_etag_and_every_write_changes_it() {
    let server = start().await;
    let addr = server.addr();

    let created = send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#)).await;
    assert_eq!(created.status, 201);
    let first = etag(&created);
    assert!(
        first.starts_with('"') && first.ends_with('"') && !first.starts_with("W/"),
        "{first}"
    );
    assert_eq!(first, quoted(server.record_version("tasks", "1").unwrap()));

    let fetched = send(addr, "GET", "/tasks/1", None).await;
    assert_eq!(etag(&fetched), first, "a read changes nothing");
    assert_eq!(etag(&send(addr, "GET", "/tasks?id=1", None).await), first);

    let put = send(addr, "PUT", "/tasks/1", Some(r#"{"v":1}"#)).await;
    assert_eq!(put.status, 200);
    let second = etag(&put);
    assert_ne!(second, first);
    // Even a write that leaves the object as it was is a new version.
    let again = send(addr, "PUT", "/tasks/1", Some(r#"{"v":1}"#)).await;
    let third = etag(&again);
    assert_ne!(third, second);
    let patched = send(addr, "PATCH", "/tasks/1", Some(r#"{"v":2}"#)).await;
    assert_eq!(patched.status, 200);
    let fourth = etag(&patched);
    assert_ne!(fourth, third);
    assert_eq!(etag(&send(addr, "GET", "/tasks/1", None).await), fourth);

    // Listings, deletions and errors carry no record of their own.
    assert_eq!(send(addr, "GET", "/tasks", None).await.header("etag"), None);
    assert_eq!(send(addr, "GET", "/tasks/none", None).await.header("etag"), None);
    let deleted = send(addr, "DELETE", "/tasks/1", None).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.header("etag"), None);
    assert_eq!(server.record_version("tasks", "1"), None);
}

#[tokio::test]
async fn a_matching_if_match_applies_the_write() {
    let server = start().await;
    let addr = server.addr();
    let tag = etag(&send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#)).await);

    let put = send_with(addr, "PUT", "/tasks/1", &[("If-Match", &tag)], Some(r#"{"v":1}"#)).await;
    assert_eq!(put.status, 200);
    let tag = etag(&put);
    // A list matches when one of its tags does; weak tags are skipped.
    let list = format!("\"999\", W/{tag}, {tag}");
    let patch = send_with(
        addr,
        "PATCH",
        "/tasks/1",
        &[("If-Match", &list)],
        Some(r#"{"w":1}"#),
    )
    .await;
    assert_eq!(patch.status, 200);
    assert_eq!(patch.json(), json!({"id": "1", "v": 1, "w": 1}));
    let star = send_with(addr, "PUT", "/tasks/1", &[("If-Match", "*")], Some(r#"{"v":3}"#)).await;
    assert_eq!(star.status, 200);
    let tag = etag(&star);
    let delete = send_with(addr, "DELETE", "/tasks/1", &[("If-Match", &tag)], None).await;
    assert_eq!(delete.status, 200);
    assert!(server.snapshot().is_empty());
    assert_eq!(server.applied_requests().len(), 5);
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_changes_nothing() {
    let server = start().await;
    let addr = server.addr();
    let stale = etag(&send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#)).await);
    let current = etag(&send(addr, "PUT", "/tasks/1", Some(r#"{"v":1}"#)).await);
    server.clear_request_log();

    for (method, body) in [
        ("PUT", Some(r#"{"v":"lost"}"#)),
        ("PATCH", Some(r#"{"v":"lost"}"#)),
        ("DELETE", None),
    ] {
        let headers = [("If-Match", stale.as_str())];
        let reply = send_with(addr, method, "/tasks/1", &headers, body).await;
        assert_eq!(reply.status, 412, "{method}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(reply.error().contains("If-Match"), "{method}");
        assert_eq!(
            reply.header("etag"),
            Some(current.as_str()),
            "the current tag goes along"
        );
        // Weak tags never match, even the current version's.
        let weak = format!("W/{current}");
        let reply = send_with(addr, method, "/tasks/1", &[("If-Match", &weak)], body).await;
        assert_eq!(reply.status, 412, "{method} weak");
    }
    // Evaluated before the body: a stale write with a bad body is still 412.
    let reply = send_with(addr, "PUT", "/tasks/1", &[("If-Match", &stale)], Some("[1]")).await;
    assert_eq!(reply.status, 412);

    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 1}));
    assert_eq!(etag(&send(addr, "GET", "/tasks/1", None).await), current);
    let log = server.request_log();
    assert_eq!(log.len(), 8);
    assert!(
        log[..7]
            .iter()
            .all(|record| record.status == 412 && !record.applied)
    );
    assert!(log[..7].iter().all(|record| record.id.as_deref() == Some("1")));
}

#[tokio::test]
async fn if_match_on_a_missing_record_is_412_even_for_a_star() {
    let server = start().await;
    let addr = server.addr();
    for tag in ["*", "\"1\""] {
        for (method, body) in [("PUT", Some("{}")), ("PATCH", Some("{}")), ("DELETE", None)] {
            let reply = send_with(addr, method, "/tasks/none", &[("If-Match", tag)], body).await;
            assert_eq!(reply.status, 412, "{method} {tag}");
            assert!(reply.error().contains("none"));
            assert_eq!(reply.header("etag"), None);
        }
    }
    // Without the header the same requests are 404 as ever.
    assert_eq!(send(addr, "DELETE", "/tasks/none", None).await.status, 404);
}

#[tokio::test]
async fn a_record_created_again_never_matches_an_old_etag() {
    let server = start().await;
    let addr = server.addr();
    let old = etag(&send(addr, "POST", "/tasks", Some(r#"{"id":"1"}"#)).await);
    assert_eq!(send(addr, "DELETE", "/tasks/1", None).await.status, 200);
    let new = etag(&send(addr, "POST", "/tasks", Some(r#"{"id":"1"}"#)).await);
    assert_ne!(new, old);
    // Versions are server-wide: another collection's record never shares
    // one either.
    let other = etag(&send(addr, "POST", "/notes", Some(r#"{"id":"1"}"#)).await);
    assert_ne!(other, new);
    let reply = send_with(addr, "PUT", "/tasks/1", &[("If-Match", &old)], Some("{}")).await;
    assert_eq!(reply.status, 412);
}

#[tokio::test]
async fn a_malformed_if_match_is_400_and_reads_and_creates_ignore_it() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1"}"#)).await;
    for bad in ["1", "\"1", "*, \"1\""] {
        let reply = send_with(addr, "PUT", "/tasks/1", &[("If-Match", bad)], Some("{}")).await;
        assert_eq!(reply.status, 400, "{bad}");
        reply.error();
    }
    let headers = [("If-Match", "\"999\"")];
    assert_eq!(
        send_with(addr, "GET", "/tasks/1", &headers, None).await.status,
        200
    );
    assert_eq!(send_with(addr, "GET", "/tasks", &headers, None).await.status, 200);
    assert_eq!(
        send_with(addr, "POST", "/tasks", &headers, Some(r#"{"id":"2"}"#))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn a_replay_answers_the_stored_answer_without_checking_if_match_again() {
    let server = start().await;
    let addr = server.addr();
    let tag = etag(&send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":0}"#)).await);
    let headers = [(IDEMPOTENCY_KEY, "put-1"), ("If-Match", tag.as_str())];

    let first = send_with(addr, "PUT", "/tasks/1", &headers, Some(r#"{"v":1}"#)).await;
    assert_eq!(first.status, 200);
    // The record moved on (through that very write): the tag is stale now,
    // yet the retry gets the first answer, its ETag included.
    let retry = send_with(addr, "PUT", "/tasks/1", &headers, Some(r#"{"v":1}"#)).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.header(IDEMPOTENT_REPLAYED), Some("true"));
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("etag"), first.header("etag"));
    assert_eq!(server.applied_requests().len(), 2);

    // A 412 is not remembered: the same key with a fresh tag applies.
    let stale = [(IDEMPOTENCY_KEY, "put-2"), ("If-Match", tag.as_str())];
    let refused = send_with(addr, "PUT", "/tasks/1", &stale, Some(r#"{"v":2}"#)).await;
    assert_eq!(refused.status, 412);
    let fresh_tag = etag(&first);
    let fresh = [(IDEMPOTENCY_KEY, "put-2"), ("If-Match", fresh_tag.as_str())];
    let applied = send_with(addr, "PUT", "/tasks/1", &fresh, Some(r#"{"v":2}"#)).await;
    assert_eq!(applied.status, 200);
    assert_eq!(applied.header(IDEMPOTENT_REPLAYED), None);
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 2}));
}

#[tokio::test]
async fn an_etag_from_before_a_restart_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db.json");
    let config = ServerConfig::new().with_data_file(&data);
    let server = ReferenceServer::start(config.clone()).await.unwrap();
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"1"}"#)).await;
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"2"}"#)).await;
    let old = etag(&send(addr, "PUT", "/tasks/2", Some(r#"{"v":1}"#)).await);
    // A stop and resume keeps the versions (the state stays in memory).
    server.stop().await;
    server.resume().await.unwrap();
    assert_eq!(etag(&send(addr, "GET", "/tasks/2", None).await), old);
    server.shutdown().await;

    let server = ReferenceServer::start(config).await.unwrap();
    let addr = server.addr();
    for id in ["1", "2"] {
        let reply = send(addr, "GET", &format!("/tasks/{id}"), None).await;
        assert_ne!(etag(&reply), old, "{id}");
    }
    let reply = send_with(addr, "PUT", "/tasks/2", &[("If-Match", &old)], Some("{}")).await;
    assert_eq!(reply.status, 412);
}
