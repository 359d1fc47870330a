//! Files the inspector must refuse: missing, not SQLite, damaged, another
//! application's, a newer schema. Every command exits non-zero with a
//! message saying what is wrong and what to do, and leaves the file's
//! bytes, its modification time and its directory as they were.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use support::{fails, fixture, names, snapshot};

/// Every command, read-only and writing, on `file`.
const COMMANDS: &[(&str, &[&str])] = &[
    ("status", &[]),
    ("status", &["--json"]),
    ("queue", &["--failed"]),
    ("show", &["notes", "1"]),
    ("export", &["--with-payloads"]),
    ("retry", &["notes", "3"]),
    ("retry", &["--all-failed"]),
    ("discard", &["notes", "3", "--revert"]),
];

/// Runs every command on `file`, each expected to fail with exit code 1
/// and a message holding `expected`; the directory must not change.
fn refused_untouched(dir: &Path, file: &Path, expected: &str) {
    let before = snapshot(dir);
    for (command, rest) in COMMANDS {
        let message = fails(1, command, file, rest);
        assert!(
            message.contains(expected),
            "{command} {rest:?}: {expected:?} missing in {message}"
        );
        assert!(
            snapshot(dir) == before,
            "{command} {rest:?} changed the files: {:?}",
            names(dir)
        );
    }
}

/// Runs SQL on a file with a plain SQLite connection (not the store).
async fn sql(file: &Path, statements: &str) {
    let mut connection = SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_owned()))
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
}

#[test]
fn a_missing_file_is_refused_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("offline_sync.db");
    refused_untouched(
        dir.path(),
        &file,
        "does not exist: pass the path of the app's database file",
    );
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("offline_sync.db");
    let garbage: Vec<u8> = (0..8192_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &garbage).unwrap();
    refused_untouched(dir.path(), &file, "is not a SQLite database");
    assert_eq!(std::fs::read(&file).unwrap(), garbage);
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    refused_untouched(dir.path(), &empty, "is empty, not a sync database");
}

/// A sync database whose first page was overwritten past the header.
#[tokio::test]
async fn a_damaged_database_is_refused_untouched() {
    let (dir, file) = fixture().await;
    let mut bytes = std::fs::read(&file).unwrap();
    for byte in &mut bytes[100..4096] {
        *byte = 0xA5;
    }
    std::fs::write(&file, &bytes).unwrap();
    refused_untouched(dir.path(), &file, "damaged");
}

#[tokio::test]
async fn another_applications_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.db");
    sql(
        &plain,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'x')",
    )
    .await;
    refused_untouched(
        dir.path(),
        &plain,
        "not a sync database (it has no records and queue tables)",
    );
    let marked = dir.path().join("marked.db");
    sql(&marked, "PRAGMA application_id = 1234; CREATE TABLE records (x)").await;
    refused_untouched(
        dir.path(),
        &marked,
        "a SQLite database of another application (application_id 0x4d2)",
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused_untouched() {
    let (dir, file) = fixture().await;
    sql(&file, "PRAGMA user_version = 99").await;
    refused_untouched(
        dir.path(),
        &file,
        "has schema version 99, written by a newer version of the sync library (this inspector knows up to 7)",
    );
}

/// A database written by the first schema version (a device that was never
/// upgraded): the read commands work on it, untouched; the writing ones
/// refuse (opening the store would migrate a file its app could then no
/// longer open), untouched too.
#[test]
fn an_older_schema_is_read_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("offline_sync.db");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sync-store-sqlite/tests/fixtures/schema_v1.db");
    std::fs::copy(&fixture, &file).unwrap();
    let before = snapshot(dir.path());
    let status = support::ok("status", &file, &["--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["schemaVersion"], 1, "{status}");
    support::ok("queue", &file, &[]);
    support::ok("export", &file, &[]);
    for (command, rest) in [("retry", &["--all-failed"][..]), ("discard", &["tasks", "1"][..])] {
        let message = fails(1, command, &file, rest);
        assert!(
            message.contains("older than this inspector"),
            "{command}: {message}"
        );
    }
    assert!(
        snapshot(dir.path()) == before,
        "the file changed: {:?}",
        names(dir.path())
    );
}
