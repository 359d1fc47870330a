//! Writes `tests/fixtures/schema_v1.db`: a database as schema version 1
//! left it, with a few records and queue items in every state, for the
//! upgrade test. Run once when a schema version ships:
//! `cargo run -p sync-store-sqlite --example make_v1_fixture`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A one-off tool: a panic is its error report.

use std::path::Path;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

const V1: &str = include_str!("../migrations/0001_tables.sql");

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema_v1.db");
    let _ = std::fs::remove_file(&path);
    let mut connection = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(V1).execute(&mut connection).await.unwrap();
    sqlx::raw_sql(
        "PRAGMA user_version = 1; PRAGMA application_id = 1330862414;
         INSERT INTO records VALUES
           ('tasks', '1', '{\"title\":\"synced task\"}', 1000, 2000),
           ('tasks', '2', '{\"title\":\"pending task\"}', 3000, 3000),
           ('notes', '1', '{\"text\":\"failed note\"}', 4000, 4000),
           ('notes', '2', '{\"text\":\"in-flight note\"}', 5000, 5000);
         INSERT INTO queue (entity, id, operation, payload, status, retry_count, created_at, updated_at,
                            last_error, last_error_kind, version, operation_id, possibly_applied, in_flight,
                            next_attempt_at, not_before) VALUES
           ('tasks', '1', 'create', '{\"title\":\"synced task\"}', 'synced', 0, 1000, 2000,
            NULL, NULL, 1, 'op-1', 0, NULL, NULL, NULL),
           ('tasks', '2', 'create', '{\"title\":\"pending task\"}', 'pending', 0, 3000, 3000,
            NULL, NULL, 1, 'op-2', 0, NULL, 3000, NULL),
           ('notes', '1', 'update', '{\"text\":\"failed note\"}', 'failed', 2, 4000, 4500,
            'HTTP 503', 'transient', 3, 'op-3', 1, NULL, 9000, NULL),
           ('notes', '2', 'create', '{\"text\":\"in-flight note\"}', 'syncing', 0, 5000, 5000,
            NULL, NULL, 1, 'op-4', 0, 77, 5000, NULL),
           ('customers', 'c9', 'delete', '{}', 'pending', 0, 6000, 6000,
            NULL, NULL, 2, 'op-5', 0, NULL, 6000, NULL);",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::raw_sql("VACUUM").execute(&mut connection).await.unwrap();
    println!("wrote {}", path.display());
}
