//! Databases made by the real store, the real binary, and file snapshots.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use serde_json::json;
use sync_core::pull::{PullBatch, PullCursor, PullPage, PulledChange, plan_page};
use sync_core::{
    AttemptOutcome, EntityName, ErrorKind, FinishedAttempt, LocalChange, RecordKey, SyncOperation, SyncStore,
    Timestamp,
};
use sync_store_sqlite::SqliteStore;

/// When the fixture's items were saved: long ago, so ages are large.
pub const SAVED_AT: Timestamp = Timestamp::from_millis(1_700_000_000_000);
/// When a transient failure's next attempt is due.
pub const RETRY_AT: Timestamp = Timestamp::from_millis(4_000_000_000_000);

pub fn key(entity: &str, id: &str) -> RecordKey {
    RecordKey::new(entity.parse().unwrap(), id.parse().unwrap())
}

fn change(entity: &str, id: &str, operation: SyncOperation, secret: &str) -> LocalChange {
    LocalChange::new(entity, id, json!({ "id": id, "title": secret }), operation).unwrap()
}

/// A fresh directory and the database path inside it.
pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offline_sync.db");
    (dir, path)
}

/// Fills a store with, through the `SyncStore` trait:
/// - `notes/1`: pending create (payload "SECRET-pending");
/// - `notes/2`: failed with a transient 503, next attempt at `RETRY_AT`;
/// - `notes/3`: parked after a permanent 422 ("SECRET-parked");
/// - `tasks/a`: synced, the server's copy at version "v7";
/// - `contacts/c1`: pulled from the server, cursor "cursor-42".
pub async fn fill(store: &SqliteStore) {
    store
        .save(
            change("notes", "2", SyncOperation::Create, "SECRET-failed"),
            SAVED_AT,
        )
        .await
        .unwrap();
    store
        .save(
            change("notes", "3", SyncOperation::Create, "SECRET-parked"),
            SAVED_AT,
        )
        .await
        .unwrap();
    store
        .save(
            change("tasks", "a", SyncOperation::Create, "SECRET-synced"),
            SAVED_AT,
        )
        .await
        .unwrap();
    let tickets = store.claim_ready(SAVED_AT, 10).await.unwrap();
    assert_eq!(tickets.len(), 3);
    let finished = tickets
        .into_iter()
        .map(|ticket| {
            let outcome = match (ticket.key.entity.as_str(), ticket.key.id.as_str()) {
                ("notes", "2") => AttemptOutcome::Failed {
                    kind: ErrorKind::Transient,
                    message: "HTTP 503 Service Unavailable".into(),
                    http_status: Some(503),
                    possibly_applied: false,
                    next_attempt_at: Some(RETRY_AT),
                    not_before: None,
                },
                ("notes", "3") => AttemptOutcome::Failed {
                    kind: ErrorKind::Permanent,
                    message: "HTTP 422 title too long".into(),
                    http_status: Some(422),
                    possibly_applied: false,
                    next_attempt_at: None,
                    not_before: None,
                },
                _ => AttemptOutcome::Applied {
                    replace_local_with: None,
                    server_version: Some("v7".into()),
                },
            };
            FinishedAttempt { ticket, outcome }
        })
        .collect();
    store.finish_attempts(finished, SAVED_AT).await.unwrap();
    store
        .save(
            change("notes", "1", SyncOperation::Create, "SECRET-pending"),
            SAVED_AT,
        )
        .await
        .unwrap();
    let contacts: EntityName = "contacts".parse().unwrap();
    let page = PullPage {
        changes: vec![PulledChange::Upsert {
            id: "c1".parse().unwrap(),
            data: json!({ "id": "c1", "name": "SECRET-pulled" })
                .as_object()
                .cloned()
                .unwrap(),
            version: Some("s1".into()),
        }],
        cursor: PullCursor::new("cursor-42").ok(),
        more: false,
        listing: false,
    };
    let expected = store.pull_state(&contacts).await.unwrap();
    let plan = plan_page(&expected, &page, SAVED_AT);
    let batch = PullBatch {
        entity: contacts,
        expected,
        plan,
        changes: page.changes,
        merges: Vec::new(),
    };
    store.apply_pull(batch, SAVED_AT).await.unwrap();
}

/// A closed database holding the fixture.
pub async fn fixture() -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = temp_db();
    let store = SqliteStore::open(&path).await.unwrap();
    fill(&store).await;
    store.close().await;
    (dir, path)
}

/// Runs the real binary.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_offline-sync"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the binary on `file` and returns its standard output, failing the
/// test when it exits non-zero.
pub fn ok(command: &str, file: &Path, rest: &[&str]) -> String {
    let file = file.to_str().unwrap();
    let mut args = vec![command, file];
    args.extend_from_slice(rest);
    let output = run(&args);
    assert!(
        output.status.success(),
        "offline-sync {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs the binary on `file`, expecting it to fail with `code`; returns
/// standard error.
pub fn fails(code: i32, command: &str, file: &Path, rest: &[&str]) -> String {
    let file = file.to_str().unwrap();
    let mut args = vec![command, file];
    args.extend_from_slice(rest);
    let output = run(&args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "offline-sync {args:?}: stdout {}\nstderr {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// Parses JSON output.
pub fn parse(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// Every file in `dir` with its bytes and modification time.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            (path, bytes, modified)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// The names of the files in `dir`.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
