//! The change feed, `GET /{collection}/changes?limit={n}[&since={cursor}]`:
//! the latest change per record in commit order, pages with `more` and
//! `cursor`, tombstones, their purge and the `410` after it.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use sync_reference_server::{Dialect, Fault, FaultPlan, ReferenceServer, ServerConfig};

use crate::client::{Reply, send, send_with, start};

/// One feed page, checked for its shape; `(changes, cursor, more)`.
async fn page(server: &ReferenceServer, target: &str) -> (Vec<Value>, String, bool) {
    let reply = send(server.addr(), "GET", target, None).await;
    assert_eq!(
        reply.status,
        200,
        "{target}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    split(&reply)
}

fn split(reply: &Reply) -> (Vec<Value>, String, bool) {
    let body = reply.json();
    let changes = body["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes: {body}"))
        .clone();
    let cursor = body["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("no string cursor: {body}"))
        .to_owned();
    let more = body["more"]
        .as_bool()
        .unwrap_or_else(|| panic!("no more: {body}"));
    (changes, cursor, more)
}

fn ids(changes: &[Value]) -> Vec<Value> {
    changes.iter().map(|change| change["id"].clone()).collect()
}

#[tokio::test]
async fn the_feed_lists_the_latest_change_per_record_in_commit_order() {
    let server = start().await;
    let addr = server.addr();
    for id in ["t1", "t2", "t3"] {
        let body = json!({"id": id, "title": id}).to_string();
        assert_eq!(send(addr, "POST", "/tasks", Some(&body)).await.status, 201);
    }
    let body = r#"{"title":"x"}"#;
    assert_eq!(send(addr, "PUT", "/tasks/t1", Some(body)).await.status, 200);
    assert_eq!(
        send(addr, "PATCH", "/tasks/t2", Some(r#"{"done":true}"#))
            .await
            .status,
        200
    );
    assert_eq!(send(addr, "DELETE", "/tasks/t3", None).await.status, 200);
    assert_eq!(server.change_stamp("tasks"), 6);

    let (changes, cursor, more) = page(&server, "/tasks/changes").await;
    assert_eq!((cursor.as_str(), more), ("6", false));
    assert_eq!(ids(&changes), [json!("t1"), json!("t2"), json!("t3")]);
    // Each upsert is the record as GET answers it, with its ETag.
    for change in &changes[..2] {
        let id = change["id"].as_str().unwrap();
        let fetched = send(addr, "GET", &format!("/tasks/{id}"), None).await;
        assert_eq!(change["op"], "upsert");
        assert_eq!(change["data"], fetched.json());
        assert_eq!(change["version"].as_str(), fetched.header("etag"));
    }
    assert_eq!(changes[0]["data"], json!({"id": "t1", "title": "x"}));
    assert_eq!(changes[2], json!({"op": "delete", "id": "t3"}), "a tombstone");

    // After a cursor: only what changed since, each record once.
    let (changes, cursor, _) = page(&server, "/tasks/changes?since=4").await;
    assert_eq!(ids(&changes), [json!("t2"), json!("t3")]);
    assert_eq!(cursor, "6");
    let (changes, cursor, more) = page(&server, "/tasks/changes?since=6&limit=10").await;
    assert!(changes.is_empty());
    assert_eq!(
        (cursor.as_str(), more),
        ("6", false),
        "nothing new: the cursor stays"
    );
    let _ = send(addr, "PATCH", "/tasks/t1", Some(r#"{"n":1}"#)).await;
    let _ = send(addr, "PATCH", "/tasks/t1", Some(r#"{"n":2}"#)).await;
    let (changes, cursor, _) = page(&server, "/tasks/changes?since=6").await;
    assert_eq!(ids(&changes), [json!("t1")], "changed twice, listed once");
    assert_eq!(changes[0]["data"]["n"], 2);
    assert_eq!(cursor, "8");

    // A collection never written: an empty page with the cursor "0".
    let (changes, cursor, more) = page(&server, "/never/changes").await;
    assert!(changes.is_empty());
    assert_eq!((cursor.as_str(), more), ("0", false));

    // Numeric ids stay numbers; a record deleted and created again is an
    // upsert at its latest stamp.
    let _ = send(addr, "POST", "/notes", Some(r#"{"id":5,"v":1}"#)).await;
    let _ = send(addr, "DELETE", "/notes/5", None).await;
    let (changes, _, _) = page(&server, "/notes/changes").await;
    assert_eq!(changes, [json!({"op": "delete", "id": 5})]);
    let _ = send(addr, "POST", "/notes", Some(r#"{"id":5,"v":2}"#)).await;
    let (changes, cursor, _) = page(&server, "/notes/changes?since=2").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["id"], 5);
    assert_eq!(changes[0]["data"], json!({"id": 5, "v": 2}));
    assert_eq!(cursor, "3");
}

#[tokio::test]
async fn pages_follow_the_cursor_until_more_is_false() {
    let server = start().await;
    let records: Vec<Value> = (0..25)
        .map(|n| json!({"id": format!("r{n:02}"), "n": n}))
        .collect();
    assert_eq!(server.seed("tasks", records).unwrap(), 25);

    let mut seen = Vec::new();
    let mut target = "/tasks/changes?limit=10".to_owned();
    let mut pages = Vec::new();
    loop {
        let (changes, cursor, more) = page(&server, &target).await;
        pages.push((changes.len(), cursor.clone(), more));
        seen.extend(ids(&changes));
        if !more {
            break;
        }
        target = format!("/tasks/changes?limit=10&since={cursor}");
    }
    assert_eq!(
        pages,
        [
            // A load from scratch: load cursors (stamp, horizon) until
            // its last page.
            (10, "10.0".to_owned(), true),
            (10, "20.0".to_owned(), true),
            (5, "25".to_owned(), false)
        ]
    );
    let expected: Vec<Value> = (0..25).map(|n| json!(format!("r{n:02}"))).collect();
    assert_eq!(seen, expected);

    // A record changed between pages comes again, at its new stamp; one
    // not yet listed is not skipped.
    let (first, cursor, _) = page(&server, "/tasks/changes?limit=10").await;
    assert_eq!(first[0]["id"], "r00");
    let _ = send(server.addr(), "PATCH", "/tasks/r00", Some(r#"{"n":100}"#)).await;
    let _ = send(server.addr(), "PATCH", "/tasks/r15", Some(r#"{"n":115}"#)).await;
    let (rest, _, more) = page(&server, &format!("/tasks/changes?limit=100&since={cursor}")).await;
    assert!(!more);
    let rest = ids(&rest);
    assert_eq!(rest.len(), 16, "r10..r24 but r15, then r00 and r15: {rest:?}");
    assert_eq!(rest[14..], [json!("r00"), json!("r15")]);
}

#[tokio::test]
async fn the_page_size_defaults_to_100_and_is_lowered_to_1000() {
    let server = start().await;
    let records: Vec<Value> = (0..1200).map(|n| json!({"id": n})).collect();
    server.seed("tasks", records).unwrap();
    let (changes, cursor, more) = page(&server, "/tasks/changes").await;
    assert_eq!((changes.len(), cursor.as_str(), more), (100, "100.0", true));
    let (changes, cursor, more) = page(&server, "/tasks/changes?limit=5000").await;
    assert_eq!((changes.len(), cursor.as_str(), more), (1000, "1000.0", true));
    let (changes, cursor, more) = page(&server, "/tasks/changes?limit=5000&since=1000").await;
    assert_eq!((changes.len(), cursor.as_str(), more), (200, "1200", false));
}

#[tokio::test]
async fn a_load_from_scratch_pages_below_forgotten_deletions_until_another_purge() {
    let server = start().await;
    let records: Vec<Value> = (0..10).map(|n| json!({"id": n})).collect();
    server.seed("tasks", records).unwrap();
    let _ = send(server.addr(), "DELETE", "/tasks/9", None).await;
    assert_eq!(server.purge_tombstones("tasks", None), 1);
    // Stamps 1..9 lie below the forgotten deletion (11), yet the load goes on.
    let (_, cursor, more) = page(&server, "/tasks/changes?limit=4").await;
    assert_eq!((cursor.as_str(), more), ("4.11", true));
    let (_, next, more) = page(&server, &format!("/tasks/changes?limit=4&since={cursor}")).await;
    assert_eq!((next.as_str(), more), ("8.11", true));
    // Another deletion forgotten meanwhile: the load must start over.
    let _ = send(server.addr(), "DELETE", "/tasks/1", None).await;
    server.purge_tombstones("tasks", None);
    let reply = send(
        server.addr(),
        "GET",
        &format!("/tasks/changes?limit=4&since={next}"),
        None,
    )
    .await;
    assert_eq!(reply.status, 410);
}

#[tokio::test]
async fn a_malformed_since_or_limit_is_400() {
    let server = start().await;
    let _ = send(server.addr(), "POST", "/tasks", Some(r#"{"id":"a"}"#)).await;
    for query in [
        "since=abc",
        "since=-1",
        "since=1.5.5",
        "since=",
        "since=%2B1",
        "since=1&since=1",
        "limit=0",
        "limit=ten",
    ] {
        let reply = send(server.addr(), "GET", &format!("/tasks/changes?{query}"), None).await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(!reply.error().is_empty());
    }
}

#[tokio::test]
async fn a_purge_expires_older_cursors_with_410() {
    let server = start().await;
    let addr = server.addr();
    for id in ["a", "b", "c"] {
        let _ = send(addr, "POST", "/tasks", Some(&json!({ "id": id }).to_string())).await;
    }
    let _ = send(addr, "DELETE", "/tasks/a", None).await; // 4
    let _ = send(addr, "DELETE", "/tasks/b", None).await; // 5
    let (changes, _, _) = page(&server, "/tasks/changes?since=0").await;
    assert_eq!(ids(&changes), [json!("c"), json!("a"), json!("b")]);

    // Tombstones up to 4 forgotten: a cursor below 4 may have missed one.
    let purged = send(addr, "POST", "/_admin/tasks/purge-tombstones?through=4", None).await;
    assert_eq!(purged.status, 200);
    assert_eq!(purged.json(), json!({"purged": 1, "oldest_cursor": "4"}));
    assert_eq!(server.oldest_cursor("tasks"), 4);
    for since in [0, 3] {
        let reply = send(addr, "GET", &format!("/tasks/changes?since={since}"), None).await;
        assert_eq!(reply.status, 410, "since={since}");
        assert_eq!(reply.json(), json!({"error": "cursor expired"}));
    }
    let (changes, _, _) = page(&server, "/tasks/changes?since=4").await;
    assert_eq!(changes, [json!({"op": "delete", "id": "b"})]);
    // Without a cursor: everything still known.
    let (changes, cursor, _) = page(&server, "/tasks/changes").await;
    assert_eq!(ids(&changes), [json!("c"), json!("b")]);
    assert_eq!(cursor, "5");

    // The in-process handle purges too (all of them without a bound).
    assert_eq!(server.purge_tombstones("tasks", None), 1);
    assert_eq!(server.oldest_cursor("tasks"), 5);
    assert_eq!(
        send(addr, "GET", "/tasks/changes?since=4", None).await.status,
        410
    );
    assert_eq!(
        page(&server, "/tasks/changes?since=5").await.0,
        Vec::<Value>::new()
    );
    // A cursor this server never issued is expired too.
    assert_eq!(
        send(addr, "GET", "/tasks/changes?since=6", None).await.status,
        410
    );

    // The admin route: POST only, a stamp for `through`, the bearer check.
    let reply = send(addr, "GET", "/_admin/tasks/purge-tombstones", None).await;
    assert_eq!((reply.status, reply.header("allow")), (405, Some("POST")));
    let reply = send(addr, "POST", "/_admin/tasks/purge-tombstones?through=x", None).await;
    assert_eq!(reply.status, 400);
    let reply = send(addr, "POST", "/_admin/tasks/purge-tombstones", None).await;
    assert_eq!(reply.json(), json!({"purged": 0, "oldest_cursor": "5"}));
    assert_eq!(send(addr, "POST", "/_admin/tasks", None).await.status, 404);
    server.require_bearer(Some("tok".to_owned()));
    let reply = send(addr, "POST", "/_admin/tasks/purge-tombstones", None).await;
    assert_eq!(reply.status, 401);
    let authorized = [("Authorization", "Bearer tok")];
    let reply = send_with(addr, "POST", "/_admin/tasks/purge-tombstones", &authorized, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(send(addr, "GET", "/tasks/changes", None).await.status, 401);
}

#[tokio::test]
async fn a_retention_forgets_deletions_older_than_it() {
    let server = ReferenceServer::start(ServerConfig::new().with_tombstone_retention(2))
        .await
        .unwrap();
    let addr = server.addr();
    for id in ["a", "b"] {
        let _ = send(addr, "POST", "/tasks", Some(&json!({ "id": id }).to_string())).await;
    }
    let _ = send(addr, "DELETE", "/tasks/a", None).await; // 3
    let _ = send(addr, "PATCH", "/tasks/b", Some("{}")).await; // 4
    assert_eq!(page(&server, "/tasks/changes?since=2").await.0.len(), 2);
    let _ = send(addr, "PATCH", "/tasks/b", Some("{}")).await; // 5: 3 is 2 back
    assert_eq!(server.oldest_cursor("tasks"), 3);
    assert_eq!(
        send(addr, "GET", "/tasks/changes?since=2", None).await.status,
        410
    );
    let (changes, _, _) = page(&server, "/tasks/changes?since=3").await;
    assert_eq!(ids(&changes), [json!("b")]);
}

#[tokio::test]
async fn a_held_write_takes_its_stamp_when_it_applies() {
    const HOLD: Duration = Duration::from_millis(300);
    let plan = FaultPlan::seeded(1)
        .only_methods(&[Method::POST])
        .for_id("late", Fault::DelayedApply(HOLD));
    let server = ReferenceServer::start(ServerConfig::new().with_faults(plan))
        .await
        .unwrap();
    let addr = server.addr();
    // Received first, applied last.
    let late = tokio::spawn(async move { send(addr, "POST", "/tasks", Some(r#"{"id":"late"}"#)).await });
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.delayed_applies_pending() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"early"}"#)).await;
    let (changes, cursor, more) = page(&server, "/tasks/changes").await;
    assert_eq!((ids(&changes), more), (vec![json!("early")], false));

    assert_eq!(late.await.unwrap().status, 201);
    server.wait_for_delayed_applies().await;
    // A client at the cursor it was given misses nothing.
    let (changes, _, _) = page(&server, &format!("/tasks/changes?since={cursor}")).await;
    assert_eq!(ids(&changes), [json!("late")]);
    assert_eq!(server.change_stamp("tasks"), 2);
}

#[tokio::test]
async fn feed_requests_are_logged_and_the_record_changes_stays_reachable() {
    let server = start().await;
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"changes","v":1}"#)).await;
    server.clear_request_log();
    let _ = page(&server, "/tasks/changes").await;
    let log = server.request_log();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].method.clone(), log[0].id.clone()), (Method::GET, None));
    assert_eq!(log[0].status, StatusCode::OK);
    assert!(!log[0].applied);

    // Other methods on the path address the record; a GET by query too.
    let reply = send(addr, "PUT", "/tasks/changes", Some(r#"{"v":2}"#)).await;
    assert_eq!(reply.status, 200);
    let reply = send(addr, "GET", "/tasks?id=changes", None).await;
    assert_eq!(reply.json(), json!({"id": "changes", "v": 2}));
}

#[tokio::test]
async fn the_postgrest_dialect_has_the_feed_too() {
    let server = ReferenceServer::start(ServerConfig::new().with_dialect(Dialect::PostgRest))
        .await
        .unwrap();
    let addr = server.addr();
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"7"}"#)).await;
    let _ = send(addr, "DELETE", "/tasks?id=eq.7", None).await;
    let (changes, cursor, _) = page(&server, "/tasks/changes?limit=5").await;
    assert_eq!(
        (changes, cursor.as_str()),
        (vec![json!({"op": "delete", "id": "7"})], "2")
    );
    let reply = send(addr, "POST", "/tasks/changes", Some("{}")).await;
    assert_eq!((reply.status, reply.header("allow")), (405, Some("GET")));
    assert_eq!(
        send(addr, "GET", "/tasks/changes?since=x", None).await.status,
        400
    );
    assert_eq!(
        send(addr, "GET", "/tasks/changes?since=1", None).await.status,
        200
    );
}

#[tokio::test]
async fn after_a_restart_with_a_data_file_older_cursors_are_expired() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::new()
        .with_data_file(dir.path().join("db.json"))
        .with_soft_delete("deleted");
    let server = ReferenceServer::start(config.clone()).await.unwrap();
    let addr = server.addr();
    for id in ["a", "b"] {
        let _ = send(addr, "POST", "/tasks", Some(&json!({ "id": id }).to_string())).await;
    }
    let _ = send(addr, "DELETE", "/tasks/b", None).await;
    let (_, cursor, _) = page(&server, "/tasks/changes").await;
    server.shutdown().await;

    // The tombstones of the earlier run are gone (soft-deleted rows stay,
    // as rows): its cursors are expired, and a full read starts over.
    let server = ReferenceServer::start(config).await.unwrap();
    let addr = server.addr();
    let reply = send(addr, "GET", &format!("/tasks/changes?since={cursor}"), None).await;
    assert_eq!(reply.status, 410);
    let (changes, cursor, more) = page(&server, "/tasks/changes").await;
    assert_eq!(
        changes,
        [
            json!({"op": "upsert", "id": "a", "data": {"id": "a"}, "version": changes[0]["version"]}),
            json!({"op": "delete", "id": "b"})
        ]
    );
    assert!(!more);
    assert_eq!(cursor.parse::<u64>().unwrap(), server.change_stamp("tasks"));
    assert!(
        server.oldest_cursor("tasks") > 1_000_000,
        "the start time: {}",
        server.oldest_cursor("tasks")
    );
    let (changes, _, _) = page(&server, &format!("/tasks/changes?since={cursor}")).await;
    assert!(changes.is_empty());
}

#[tokio::test]
async fn the_request_log_gives_each_applied_write_its_stamp_and_the_record_it_left() {
    let server = ReferenceServer::start(ServerConfig::new().with_soft_delete("deleted"))
        .await
        .unwrap();
    let addr = server.addr();
    let body = json!({"id": "t1", "title": "a"}).to_string();
    assert_eq!(send(addr, "POST", "/tasks", Some(&body)).await.status, 201);
    assert_eq!(
        send(addr, "POST", "/notes", Some(r#"{"id":"n1"}"#)).await.status,
        201
    );
    assert_eq!(
        send(addr, "PATCH", "/tasks/t1", Some(r#"{"done":true}"#))
            .await
            .status,
        200
    );
    // Refused writes and reads take no stamp.
    assert_eq!(send(addr, "POST", "/tasks", Some(&body)).await.status, 409);
    assert_eq!(send(addr, "GET", "/tasks/t1", None).await.status, 200);
    assert_eq!(send(addr, "DELETE", "/tasks/t1", None).await.status, 200);

    let log: Vec<_> = server
        .request_log()
        .into_iter()
        .map(|record| (record.collection, record.change, record.record))
        .collect();
    let task = |done: Option<bool>| {
        let mut task = json!({"id": "t1", "title": "a"});
        if let Some(done) = done {
            task["done"] = json!(done);
        }
        Some(task)
    };
    assert_eq!(
        log,
        [
            ("tasks".to_owned(), Some(1), task(None)),
            ("notes".to_owned(), Some(1), Some(json!({"id": "n1"}))),
            ("tasks".to_owned(), Some(2), task(Some(true))),
            ("tasks".to_owned(), None, None),
            ("tasks".to_owned(), None, None),
            // A soft delete keeps the row, but the record is gone.
            ("tasks".to_owned(), Some(3), None),
        ]
    );
    assert_eq!(server.change_stamp("tasks"), 3);
}
