//! Pulls end to end (issue 12), through the facade only: the SQLite store,
//! the HTTP adapter and the reference server on loopback, with another
//! client writing to the server over plain HTTP. Each strategy, an initial
//! load of 10 000 records, deltas with tombstones, a pull while local edits
//! wait, a cursor the server no longer knows, and bad pages from a server
//! (wiremock) refused whole.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sync_facade::prelude::*;
use sync_facade::{ListDialect, SqliteStoreOptions, SyncReport};
use sync_reference_server::{Dialect, ReferenceServer, ServerConfig};
use tokio_stream::StreamExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Only a guard against hangs: nothing asserts on how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Options for tests that sync only when they say so.
fn manual() -> OfflineSyncOptions {
    OfflineSyncOptions::default()
        .sync_after_save(false)
        .connectivity_check_interval(None)
        .retry_base_delay(Duration::from_millis(20))
}

/// Another client of the server: one request over plain HTTP; the status.
async fn another_client(method: &str, url: String, body: Option<Value>) -> u16 {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
    let request = http::Request::builder()
        .method(method)
        .uri(url.as_str())
        .header("Content-Type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let response = tokio::time::timeout(HANG_GUARD, client.request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    let _body = response.into_body().collect().await.unwrap();
    assert!(status < 300, "{method} {url} answered {status}");
    status
}

async fn pull(engine: &OfflineSyncEngine) -> SyncReport {
    tokio::time::timeout(HANG_GUARD, engine.sync_manager().pull_now())
        .await
        .unwrap()
        .unwrap()
}

async fn sync(engine: &OfflineSyncEngine) -> SyncReport {
    tokio::time::timeout(HANG_GUARD, engine.sync_manager().sync_now())
        .await
        .unwrap()
        .unwrap()
}

/// The engine's documents of `entity`, by id.
async fn local(engine: &OfflineSyncEngine, entity: &str) -> BTreeMap<String, Value> {
    engine
        .get_records(entity)
        .await
        .unwrap()
        .into_iter()
        .map(|record| (record.id.to_string(), Value::Object(record.data)))
        .collect()
}

/// The server's live records of `entity`, by id (soft-deleted ones left out).
fn remote(server: &ReferenceServer, entity: &str, deleted_field: Option<&str>) -> BTreeMap<String, Value> {
    server
        .snapshot()
        .get(entity)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, record)| deleted_field.is_none_or(|field| record.get(field) != Some(&json!(true))))
        .collect()
}

fn feed_requests(server: &ReferenceServer) -> usize {
    server
        .request_log()
        .iter()
        // The feed is logged as a GET of the collection without an id.
        .filter(|request| request.method == "GET" && request.collection == "tasks" && request.id.is_none())
        .count()
}

async fn open(
    dir: &Path,
    server: &ReferenceServer,
    entity: &str,
    strategy: PullStrategy,
) -> OfflineSyncEngine {
    OfflineSync::builder(dir, server.url())
        .probe_api_health("/health")
        .options(manual().pull_page_size(1000))
        .pull(entity, strategy)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_load_of_10_000_records_then_deltas_with_tombstones() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    let records = (0..10_000).map(|n| json!({"id": format!("t{n}"), "title": format!("Job {n}"), "n": n}));
    assert_eq!(server.seed("tasks", records).unwrap(), 10_000);
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, "tasks", PullStrategy::change_feed().into()).await;
    let mut progress = engine.watch_pull_progress();

    let report = pull(&engine).await;
    assert_eq!((report.pulled.upserted, report.pull_failed), (10_000, 0));
    assert_eq!(local(&engine, "tasks").await, remote(&server, "tasks", None));
    assert!(
        engine.queue().await.unwrap().is_empty(),
        "pulled records have no queue item"
    );
    // One request per page of 1000.
    assert_eq!(feed_requests(&server), 10);
    let mut last = None;
    while let Ok(Some(now)) = tokio::time::timeout(Duration::from_millis(200), progress.next()).await {
        last = Some(now);
    }
    let last = last.unwrap();
    assert_eq!((last.pages, last.records, last.running), (10, 10_000, false));

    // Another client edits, deletes and adds.
    let base = server.url();
    another_client(
        "PUT",
        format!("{base}/tasks/t5"),
        Some(json!({"id": "t5", "title": "Changed", "n": 5})),
    )
    .await;
    another_client("DELETE", format!("{base}/tasks/t6"), None).await;
    another_client(
        "POST",
        format!("{base}/tasks"),
        Some(json!({"id": "new", "title": "New job"})),
    )
    .await;
    let report = pull(&engine).await;
    assert_eq!((report.pulled.upserted, report.pulled.deleted), (2, 1));
    let mine = local(&engine, "tasks").await;
    assert_eq!(mine["t5"]["title"], "Changed");
    assert!(!mine.contains_key("t6"));
    assert_eq!(mine["new"]["title"], "New job");
    assert_eq!(mine, remote(&server, "tasks", None));

    // Nothing new: one request.
    let before = feed_requests(&server);
    let report = pull(&engine).await;
    assert_eq!(report.pulled, Default::default());
    assert_eq!(feed_requests(&server), before + 1);
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_while_local_edits_wait_keeps_them_and_the_next_sync_converges() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    server
        .seed(
            "tasks",
            (1..=4).map(|n| json!({"id": format!("r{n}"), "title": "server", "done": false})),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, "tasks", PullStrategy::change_feed().into()).await;
    pull(&engine).await;

    // Edits on the device wait in the queue (no sync after save) ...
    engine
        .save(
            "tasks",
            "r1",
            json!({"id": "r1", "title": "mine", "done": false}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    engine
        .save(
            "tasks",
            "r4",
            json!({"id": "r4", "title": "mine too", "done": false}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    // ... while another client changes r1 and r2, and deletes r3 and r4.
    let base = server.url();
    another_client(
        "PUT",
        format!("{base}/tasks/r1"),
        Some(json!({"id": "r1", "title": "theirs", "done": true})),
    )
    .await;
    another_client(
        "PUT",
        format!("{base}/tasks/r2"),
        Some(json!({"id": "r2", "title": "theirs", "done": true})),
    )
    .await;
    another_client("DELETE", format!("{base}/tasks/r3"), None).await;
    another_client("DELETE", format!("{base}/tasks/r4"), None).await;

    let report = pull(&engine).await;
    assert_eq!(
        (
            report.pulled.upserted,
            report.pulled.deleted,
            report.pulled.skipped
        ),
        (1, 1, 2)
    );
    let mine = local(&engine, "tasks").await;
    assert_eq!(mine["r1"]["title"], "mine", "the pending edit stays");
    assert_eq!(mine["r2"]["title"], "theirs");
    assert!(!mine.contains_key("r3"));
    assert_eq!(
        mine["r4"]["title"], "mine too",
        "an edit to a record deleted there stays"
    );
    let r4 = engine.queue_item("tasks", "r4").await.unwrap().unwrap();
    assert_eq!(r4.operation, SyncOperation::Create, "sent again as a create");

    let report = sync(&engine).await;
    assert_eq!((report.failed, report.still_pending), (0, 0));
    assert_eq!(local(&engine, "tasks").await, remote(&server, "tasks", None));
    assert_eq!(remote(&server, "tasks", None)["r1"]["title"], "mine");
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_the_server_forgot_reloads_the_entity_and_removes_what_it_lost() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    server
        .seed("tasks", (1..=30).map(|n| json!({"id": format!("r{n}"), "v": 1})))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), server.url())
        .probe_api_health("/health")
        .options(manual().pull_page_size(7))
        .pull("tasks", PullStrategy::change_feed())
        .build()
        .await
        .unwrap();
    pull(&engine).await;
    let base = server.url();
    another_client("DELETE", format!("{base}/tasks/r2"), None).await;
    another_client("DELETE", format!("{base}/tasks/r9"), None).await;
    another_client(
        "PUT",
        format!("{base}/tasks/r3"),
        Some(json!({"id": "r3", "v": 2})),
    )
    .await;
    engine
        .save(
            "tasks",
            "r9",
            json!({"id": "r9", "v": "edited here"}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    // The server purges its tombstones: the device's cursor is too old.
    server.purge_tombstones("tasks", None);

    let report = pull(&engine).await;
    assert_eq!(report.pull_failed, 0);
    let mine = local(&engine, "tasks").await;
    assert!(!mine.contains_key("r2"), "removed by the re-load's sweep");
    assert_eq!(mine["r3"]["v"], 2);
    assert_eq!(
        mine["r9"]["v"], "edited here",
        "a pending change survives the sweep"
    );
    assert_eq!(mine.len(), 29);
    assert!(
        server
            .request_log()
            .iter()
            .any(|request| request.status.as_u16() == 410),
        "the server answered 410 Gone"
    );
    sync(&engine).await;
    assert_eq!(local(&engine, "tasks").await, remote(&server, "tasks", None));
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_list_with_soft_deletes_brings_changes_down() {
    for dialect in [Dialect::Rest, Dialect::PostgRest] {
        let server = ReferenceServer::start(
            ServerConfig::new()
                .with_dialect(dialect)
                .with_stamp_field("updated_at")
                .with_soft_delete("deleted"),
        )
        .await
        .unwrap();
        let (shape, list_dialect) = match dialect {
            Dialect::PostgRest => (RequestShape::postgrest(), ListDialect::PostgRest),
            _ => (RequestShape::rest(), ListDialect::JsonServer),
        };
        let dir = tempfile::tempdir().unwrap();
        // Another device writes through the same shape.
        let writer_dir = tempfile::tempdir().unwrap();
        let writer = OfflineSync::builder(writer_dir.path(), server.url())
            .options(manual())
            .shape(shape.clone())
            .build()
            .await
            .unwrap();
        for n in 0..12 {
            writer
                .save(
                    "tasks",
                    &format!("r{n}"),
                    json!({"id": format!("r{n}"), "n": n}),
                    SyncOperation::Create,
                )
                .await
                .unwrap();
        }
        sync(&writer).await;
        let engine = OfflineSync::builder(dir.path(), server.url())
            .options(manual().pull_page_size(5))
            .shape(shape)
            .pull(
                "tasks",
                PullStrategy::filtered_list("updated_at")
                    .soft_delete("deleted")
                    .dialect(list_dialect),
            )
            .build()
            .await
            .unwrap();
        let report = pull(&engine).await;
        assert_eq!(
            (report.pulled.upserted, report.pull_failed),
            (12, 0),
            "{dialect:?}"
        );
        writer
            .save("tasks", "r3", json!({"id": "r3", "n": 33}), SyncOperation::Update)
            .await
            .unwrap();
        writer
            .save("tasks", "r4", json!({}), SyncOperation::Delete)
            .await
            .unwrap();
        sync(&writer).await;
        let report = pull(&engine).await;
        assert_eq!(
            (report.pulled.upserted, report.pulled.deleted),
            (1, 1),
            "{dialect:?}"
        );
        let mine = local(&engine, "tasks").await;
        assert_eq!(mine["r3"]["n"], 33);
        assert!(!mine.contains_key("r4"));
        assert_eq!(mine, remote(&server, "tasks", Some("deleted")), "{dialect:?}");
        // Nothing new: nothing applied again.
        let report = pull(&engine).await;
        assert_eq!(report.pulled.upserted + report.pulled.deleted, 0, "{dialect:?}");
        writer.close().await;
        engine.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_removes_what_the_server_no_longer_lists_unless_a_change_waits() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    server
        .seed(
            "sites",
            (0..25).map(|n| json!({"id": format!("s{n:02}"), "n": n})),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), server.url())
        .options(manual().pull_page_size(10))
        .pull("sites", PullStrategy::snapshot())
        .build()
        .await
        .unwrap();
    let report = pull(&engine).await;
    assert_eq!((report.pulled.upserted, report.pull_failed), (25, 0));
    let base = server.url();
    for id in ["s01", "s02", "s03"] {
        another_client("DELETE", format!("{base}/sites/{id}"), None).await;
    }
    another_client(
        "PUT",
        format!("{base}/sites/s10"),
        Some(json!({"id": "s10", "n": 100})),
    )
    .await;
    engine
        .save(
            "sites",
            "s03",
            json!({"id": "s03", "n": "kept"}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    let report = pull(&engine).await;
    assert_eq!(
        report.pulled.deleted, 2,
        "s01 and s02 swept; s03 waits to be sent"
    );
    let mine = local(&engine, "sites").await;
    assert_eq!(mine.len(), 23);
    assert_eq!(mine["s10"]["n"], 100);
    assert_eq!(mine["s03"]["n"], "kept");
    sync(&engine).await;
    assert_eq!(local(&engine, "sites").await, remote(&server, "sites", None));
    engine.close().await;
}

/// A server whose change feed answers `body` (with `status`).
async fn feed_answering(status: u16, body: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tasks/changes"))
        .respond_with(ResponseTemplate::new(status).set_body_raw(body.to_owned(), "application/json"))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pages_are_refused_whole_and_nothing_else_is_touched() {
    let good = r#"{"changes": [{"op": "upsert", "id": "a", "data": {"id": "a", "v": 1}}], "cursor": "5", "more": false}"#;
    let cases = [
        ("not JSON", r#"{"changes": [{"op": "upsert", "id": "b""#),
        (
            "a change without an id",
            r#"{"changes": [{"op": "upsert", "id": "b", "data": {"v": 2}}, {"op": "upsert", "data": {"v": 3}}], "cursor": "9"}"#,
        ),
        (
            "an invalid id",
            r#"{"changes": [{"op": "upsert", "id": "b", "data": {"v": 2}}, {"op": "upsert", "id": "", "data": {}}], "cursor": "9"}"#,
        ),
        (
            "a cursor going backwards",
            r#"{"changes": [{"op": "upsert", "id": "b", "data": {"v": 2}}], "cursor": "3", "more": false}"#,
        ),
        (
            "a document over the size limit",
            &format!(
                r#"{{"changes": [{{"op": "upsert", "id": "b", "data": {{"v": 2}}}}, {{"op": "upsert", "id": "c", "data": {{"big": "{}"}}}}], "cursor": "9"}}"#,
                "x".repeat(2048)
            ),
        ),
    ];
    for (name, bad) in cases {
        let mock = feed_answering(200, good).await;
        let dir = tempfile::tempdir().unwrap();
        let engine = OfflineSync::builder(dir.path(), mock.uri())
            .options(manual())
            .store_options(SqliteStoreOptions::in_dir(dir.path()).max_payload_bytes(1024))
            .pull("tasks", PullStrategy::change_feed())
            .build()
            .await
            .unwrap();
        let report = pull(&engine).await;
        assert_eq!((report.pulled.upserted, report.pull_failed), (1, 0), "{name}");
        engine
            .save("tasks", "mine", json!({"id": "mine"}), SyncOperation::Create)
            .await
            .unwrap();
        let before = (local(&engine, "tasks").await, engine.queue().await.unwrap());

        mock.reset().await;
        Mock::given(method("GET"))
            .and(path("/tasks/changes"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(bad.to_owned(), "application/json"))
            .mount(&mock)
            .await;
        let report = pull(&engine).await;
        assert_eq!(report.pull_failed, 1, "{name}");
        assert_eq!(report.pulled, Default::default(), "{name}");
        assert_eq!(
            (local(&engine, "tasks").await, engine.queue().await.unwrap()),
            before,
            "{name}: nothing touched"
        );
        // (The connectivity probe asks the mock too: feed requests only.)
        let asked: Vec<_> = mock
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|request| request.url.path() == "/tasks/changes")
            .collect();
        // A permanent error is not retried within the run ...
        assert_eq!(asked.len(), 1, "{name}");
        // ... and the next pull starts from the last page applied.
        assert!(asked[0].url.query().unwrap_or("").contains("since=5"), "{name}");
        engine.close().await;
    }
}

/// An app that adds pulls to a device that already synced records: the
/// first pull lists everything the server holds, and removes the records
/// this device pushed that another client deleted since (their tombstones
/// purged long ago), keeping the ones the server still has.
#[tokio::test]
async fn a_first_pull_removes_what_the_server_deleted_before_pulls_were_set_up() {
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pushing = OfflineSync::builder(dir.path(), server.url())
        .probe_api_health("/health")
        .options(manual())
        .build()
        .await
        .unwrap();
    for id in ["a", "b", "c"] {
        pushing
            .save("tasks", id, json!({"id": id, "v": 1}), SyncOperation::Create)
            .await
            .unwrap();
    }
    assert_eq!(sync(&pushing).await.sent, 3);
    pushing.close().await;
    let base = server.url();
    another_client("DELETE", format!("{base}/tasks/b"), None).await;
    server.purge_tombstones("tasks", None);

    let engine = OfflineSync::builder(dir.path(), server.url())
        .probe_api_health("/health")
        .options(manual().pull_page_size(2))
        .pull("tasks", PullStrategy::change_feed())
        .build()
        .await
        .unwrap();
    assert_eq!(
        local(&engine, "tasks").await.len(),
        3,
        "b is still here before the pull"
    );
    let report = pull(&engine).await;
    assert_eq!((report.pull_failed, report.pulled.deleted), (0, 1));
    let mine = local(&engine, "tasks").await;
    assert_eq!(mine.keys().collect::<Vec<_>>(), ["a", "c"]);
    engine.close().await;
}
