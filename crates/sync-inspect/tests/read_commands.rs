//! The read-only commands, run as the real binary on databases made by the
//! real store: status, queue, show, export, as tables and as JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{fixture, names, ok, parse, snapshot};

/// The value of `key` in a block of `key:  value` lines.
fn value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"))
        .trim()
}

/// The status counts every entity's documents and items by status, the
/// parked item, the oldest unsynced item, the pull cursor and the schema
/// version, as a table and as JSON.
#[tokio::test]
async fn status_counts_per_entity_and_status() {
    let (dir, path) = fixture().await;
    let table = ok("status", &path, &[]);
    assert_eq!(
        value(&table, "schema version"),
        sync_store_sqlite::SCHEMA_VERSION.to_string(),
        "{table}"
    );
    assert_eq!(
        value(&table, "queue"),
        "4 items: 1 pending, 0 syncing, 1 synced, 2 failed",
        "{table}"
    );
    assert_eq!(value(&table, "parked"), "1", "{table}");
    assert!(
        value(&table, "oldest unsynced").starts_with("notes/2 (failed), queued 1"),
        "{table}"
    );
    assert!(table.contains("cursor-42"), "{table}");
    let notes_row = table
        .lines()
        .find(|line| line.starts_with("notes "))
        .unwrap_or_else(|| panic!("no notes row in:\n{table}"));
    let cells: Vec<&str> = notes_row.split_whitespace().collect();
    // ENTITY DOCUMENTS PENDING SYNCING SYNCED FAILED PARKED
    assert_eq!(cells, ["notes", "3", "1", "0", "0", "2", "1"], "{table}");

    let json = parse(&ok("status", &path, &["--json"]));
    assert_eq!(json["schemaVersion"], sync_store_sqlite::SCHEMA_VERSION);
    assert_eq!(json["parked"], 1);
    assert_eq!(json["entities"]["notes"]["failed"], 2);
    assert_eq!(json["entities"]["tasks"]["synced"], 1);
    assert_eq!(json["entities"]["contacts"]["records"], 1);
    assert_eq!(json["total"]["records"], 5);
    assert_eq!(json["oldestUnsynced"]["id"], "2");
    assert!(
        json["oldestUnsynced"]["ageMs"].as_u64().unwrap() > 1_000_000,
        "{json}"
    );
    assert_eq!(json["pullCursors"][0]["entity"], "contacts");
    assert_eq!(json["pullCursors"][0]["cursor"], "cursor-42");
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(json["databaseBytes"], size);
    drop(dir);
}

/// The queue lists every item with its state, attempts, last error and
/// next attempt; the filters select failed, parked and one entity's items.
#[tokio::test]
async fn queue_lists_and_filters_items() {
    let (_dir, path) = fixture().await;
    let table = ok("queue", &path, &[]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ENTITY  ID  OPERATION  STATUS"), "{table}");
    assert_eq!(table.lines().count(), 5, "{table}");
    let parked = table
        .lines()
        .find(|line| line.starts_with("notes   3"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(parked.contains("failed (parked)"), "{parked}");
    assert!(
        parked.contains("[permanent 422] HTTP 422 title too long"),
        "{parked}"
    );
    // Columns line up: every row's STATUS starts where the header's does.
    let column = header.find("STATUS").unwrap();
    for line in table.lines().skip(1) {
        let status = &line[column..];
        assert!(
            ["pending", "failed", "synced"]
                .iter()
                .any(|s| status.starts_with(s)),
            "misaligned: {line}\n{table}"
        );
    }

    let failed = parse(&ok("queue", &path, &["--failed", "--json"]));
    let ids: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["2", "3"]);
    assert_eq!(failed[0]["lastErrorHttpStatus"], 503);
    assert_eq!(failed[0]["retryCount"], 1);
    assert_eq!(failed[0]["parked"], false);
    assert!(failed[0].get("payload").is_none(), "{failed}");

    let parked = parse(&ok("queue", &path, &["--parked", "--json"]));
    assert_eq!(parked.as_array().unwrap().len(), 1, "{parked}");
    assert_eq!(parked[0]["id"], "3");
    assert_eq!(parked[0]["parked"], true);

    let tasks = parse(&ok("queue", &path, &["--entity", "tasks", "--json"]));
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    assert_eq!(tasks[0]["status"], "synced");
}

/// Show gives one record's document, queue item, last error and server
/// copy with its version.
#[tokio::test]
async fn show_gives_document_item_error_and_server_copy() {
    let (_dir, path) = fixture().await;
    let parked = ok("show", &path, &["notes", "3"]);
    assert_eq!(value(&parked, "record"), "notes/3");
    assert_eq!(
        value(&parked, "document"),
        r#"{"id":"3","title":"SECRET-parked"}"#
    );
    assert_eq!(
        value(&parked, "queue item"),
        "create failed (parked), 1 failed attempts"
    );
    assert_eq!(
        value(&parked, "last error"),
        "[permanent 422] HTTP 422 title too long"
    );
    assert_eq!(value(&parked, "server copy"), "none known");
    let synced = parse(&ok("show", &path, &["tasks", "a", "--json"]));
    assert_eq!(synced["serverCopy"]["version"], "v7");
    assert_eq!(synced["serverCopy"]["data"]["title"], "SECRET-synced");
    assert_eq!(synced["document"]["data"]["title"], "SECRET-synced");
    assert_eq!(synced["queueItem"]["status"], "synced");

    let missing = support::fails(4, "show", &path, &["notes", "nope"]);
    assert!(missing.contains("notes/nope is not in"), "{missing}");
}

/// The export is JSON lines of documents and items, with ids, statuses,
/// errors and timestamps; documents' data and payloads only when asked.
#[tokio::test]
async fn export_leaves_payloads_out_unless_asked() {
    let (_dir, path) = fixture().await;
    let export = ok("export", &path, &[]);
    assert!(!export.contains("SECRET"), "a payload leaked:\n{export}");
    let lines: Vec<serde_json::Value> = export.lines().map(parse).collect();
    assert_eq!(lines[0]["type"], "export");
    assert_eq!(lines[0]["withPayloads"], false);
    let documents: Vec<_> = lines.iter().filter(|l| l["type"] == "document").collect();
    let items: Vec<_> = lines.iter().filter(|l| l["type"] == "queueItem").collect();
    assert_eq!((documents.len(), items.len()), (5, 4), "{export}");
    let parked = items.iter().find(|item| item["id"] == "3").unwrap();
    assert_eq!(parked["lastError"], "HTTP 422 title too long");
    assert_eq!(parked["status"], "failed");
    assert!(parked["updatedAt"].is_number(), "{parked}");
    assert!(documents.iter().all(|d| d.get("data").is_none()), "{export}");

    let full = ok("export", &path, &["--with-payloads"]);
    for secret in [
        "SECRET-pending",
        "SECRET-parked",
        "SECRET-synced",
        "SECRET-pulled",
    ] {
        assert!(full.contains(secret), "{secret} missing in:\n{full}");
    }
    let lines: Vec<serde_json::Value> = full.lines().map(parse).collect();
    assert_eq!(lines[0]["withPayloads"], true);
    let item = lines
        .iter()
        .find(|l| l["type"] == "queueItem" && l["id"] == "1")
        .unwrap();
    assert_eq!(item["payload"]["title"], "SECRET-pending");
}

/// On a closed (copied) database the read-only commands change nothing
/// and create no file: no lock, no -wal, no -shm.
#[tokio::test]
async fn read_commands_leave_a_closed_file_untouched() {
    let (dir, path) = fixture().await;
    let before = snapshot(dir.path());
    let files = names(dir.path());
    for command in ["status", "queue", "export"] {
        ok(command, &path, &[]);
        ok(command, &path, &["--json"]);
    }
    ok("show", &path, &["notes", "1"]);
    assert_eq!(names(dir.path()), files);
    assert!(
        snapshot(dir.path()) == before,
        "a read-only command changed the files"
    );
}

/// Beside an app that holds the store open (its lock taken, its WAL
/// live), the read-only commands work, see the app's latest commits and
/// change neither the database nor its WAL; the app goes on writing.
#[tokio::test]
async fn read_commands_work_while_an_app_holds_the_file() {
    let (dir, path) = support::temp_db();
    let store = sync_store_sqlite::SqliteStore::open(&path).await.unwrap();
    support::fill(&store).await;
    let wal = dir.path().join("offline_sync.db-wal");
    let database = std::fs::read(&path).unwrap();
    let wal_bytes = std::fs::read(&wal).unwrap();
    assert!(!wal_bytes.is_empty(), "the app's commits should be in its WAL");

    let status = parse(&ok("status", &path, &["--json"]));
    assert_eq!(status["total"]["failed"], 2, "{status}");
    assert!(status["walBytes"].as_u64().unwrap() > 0, "{status}");
    ok("queue", &path, &["--failed"]);
    ok("show", &path, &["notes", "2"]);
    ok("export", &path, &["--with-payloads"]);

    assert!(std::fs::read(&path).unwrap() == database, "the database changed");
    assert!(std::fs::read(&wal).unwrap() == wal_bytes, "the WAL changed");
    // The app still writes.
    let change = sync_core::LocalChange::new(
        "notes",
        "9",
        serde_json::json!({ "id": "9" }),
        sync_core::SyncOperation::Create,
    )
    .unwrap();
    sync_core::SyncStore::save(&store, change, support::SAVED_AT)
        .await
        .unwrap();
    let queue = parse(&ok("queue", &path, &["--json"]));
    assert_eq!(queue.as_array().unwrap().len(), 5, "{queue}");
    store.close().await;
}
