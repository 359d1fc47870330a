//! The bad input catalogue: invalid names, ids and payloads through the
//! public API, damaged, locked, full or unwritable database files, and a
//! server answering garbage. Every case returns a typed error with a clear
//! message, and the database afterwards holds exactly what it held before
//! (its records and queue, and for file-level cases its bytes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sync_facade::prelude::*;
use sync_facade::{
    ErrorKind, NetError, OfflineSyncBuilder, OpenError, SqliteStoreOptions, StoreErrorKind, SyncReport,
    ValidationError,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Only a guard against hangs: nothing asserts on how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Nothing listens there: the API cases never reach a network.
const NOWHERE: &str = "http://127.0.0.1:9";

/// The entities the seeded databases hold.
const ENTITIES: [&str; 2] = ["tasks", "notes"];

/// A case of invalid names: its label, the entity name and id, the check
/// of the error, and words its message must hold.
type NameCase<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Box<dyn Fn(&SyncError) -> bool>,
    &'a str,
);

/// Every local document (by entity) and the whole queue.
type Snapshot = (Vec<Vec<LocalRecord>>, Vec<SyncQueueItem>);

fn manual() -> OfflineSyncOptions {
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options
}

async fn open(dir: &Path) -> OfflineSyncEngine {
    OfflineSync::builder(dir, NOWHERE)
        .probe_api_health("/health")
        .options(manual())
        .build()
        .await
        .unwrap()
}

async fn snapshot(engine: &OfflineSyncEngine) -> Snapshot {
    let mut records = Vec::new();
    for entity in ENTITIES {
        records.push(engine.get_records(entity).await.unwrap());
    }
    (records, engine.queue().await.unwrap())
}

/// An engine with a few records in every state a save can leave: a
/// pending create, a create folded with an update, and a pending delete.
async fn seeded(dir: &Path) -> OfflineSyncEngine {
    let engine = open(dir).await;
    engine
        .save("tasks", "1", json!({"title": "one"}), SyncOperation::Create)
        .await
        .unwrap();
    engine
        .save("tasks", "2", json!({"title": "two"}), SyncOperation::Create)
        .await
        .unwrap();
    engine
        .save(
            "tasks",
            "2",
            json!({"title": "two, edited"}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    engine
        .save("notes", "n", json!({"text": "hello"}), SyncOperation::Create)
        .await
        .unwrap();
    engine
        .save("notes", "gone", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    engine
}

/// The database file and its companions, byte for byte (absent files as
/// `None`).
fn files(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    ["offline_sync.db", "offline_sync.db-wal", "offline_sync.db-shm"]
        .into_iter()
        .map(|name| (name.to_owned(), std::fs::read(dir.join(name)).ok()))
        .collect()
}

/// A seeded database, closed: its files are at rest. Returns its snapshot.
async fn seeded_at_rest(dir: &Path) -> Snapshot {
    let engine = seeded(dir).await;
    let state = snapshot(&engine).await;
    engine.close().await;
    state
}

/// Checks one rejected call: the error matches, its message says what to
/// do (`advice`), and the store holds what it held before.
async fn assert_rejected<T: std::fmt::Debug>(
    engine: &OfflineSyncEngine,
    before: &Snapshot,
    case: &str,
    result: Result<T, SyncError>,
    expected: impl Fn(&SyncError) -> bool,
    advice: &str,
) {
    let error = match result {
        Ok(value) => panic!("{case}: accepted ({value:?})"),
        Err(error) => error,
    };
    assert!(expected(&error), "{case}: wrong error {error:?}");
    checked(case);
    let message = error.to_string();
    assert!(
        message.contains(advice),
        "{case}: the message {message:?} does not say {advice:?}"
    );
    assert_eq!(&snapshot(engine).await, before, "{case}: the store changed");
}

fn invalid(expected: impl Fn(&ValidationError) -> bool) -> impl Fn(&SyncError) -> bool {
    move |error| matches!(error, SyncError::Invalid(validation) if expected(validation))
}

fn open_store_kind(error: &OpenError) -> Option<StoreErrorKind> {
    match error {
        OpenError::Store(store) => Some(store.kind()),
        _ => None,
    }
}

thread_local! {
    /// The cases checked by the test running on this thread (each
    /// `#[tokio::test]` runs on its own thread).
    static CASES: std::cell::RefCell<std::collections::BTreeSet<String>> =
        const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
}

/// Counts a case as checked (by name, so a case tried through several
/// calls counts once).
fn checked(case: &str) {
    CASES.with(|cases| cases.borrow_mut().insert(case.to_owned()));
}

/// Reports the cases its test checked to `cargo xtask chaos` when the test
/// ends without a panic.
struct CaseReport;

impl Drop for CaseReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let count = CASES.with(|cases| cases.borrow().len());
        let Ok(path) = std::env::var("SYNC_CHAOS_REPORT") else {
            return;
        };
        let line = format!("{{\"scenario\":\"bad input\",\"cases\":{count},\"lost\":0,\"duplicated\":0}}\n");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        std::io::Write::write_all(&mut file, line.as_bytes()).unwrap();
    }
}

#[tokio::test]
async fn invalid_entity_names_and_ids_are_rejected_and_change_nothing() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    let engine = seeded(dir.path()).await;
    let before = snapshot(&engine).await;
    let long = "x".repeat(sync_facade::MAX_NAME_BYTES + 1);
    let payload = || json!({"title": "t"});
    let empty = |what: &'static str| invalid(move |v| *v == ValidationError::Empty { what });
    let too_long = |what: &'static str| {
        invalid(move |v| matches!(v, ValidationError::TooLong { what: w, .. } if *w == what))
    };
    let control = |what: &'static str, code: u32| {
        invalid(
            move |v| matches!(v, ValidationError::ControlCharacter { what: w, code: c, .. } if *w == what && *c == code),
        )
    };

    // Saves.
    let cases: Vec<NameCase<'_>> = vec![
        (
            "empty entity",
            "",
            "1",
            Box::new(empty("entity name")),
            "must not be empty",
        ),
        (
            "empty id",
            "tasks",
            "",
            Box::new(empty("record id")),
            "must not be empty",
        ),
        (
            "long entity",
            &long,
            "1",
            Box::new(too_long("entity name")),
            "use a shorter value",
        ),
        (
            "long id",
            "tasks",
            &long,
            Box::new(too_long("record id")),
            "use a shorter value",
        ),
        (
            "NUL in entity",
            "ta\0sks",
            "1",
            Box::new(control("entity name", 0)),
            "remove control characters",
        ),
        (
            "newline in id",
            "tasks",
            "a\nb",
            Box::new(control("record id", 0x0a)),
            "remove control characters",
        ),
        (
            "DEL in id",
            "tasks",
            "a\u{7f}",
            Box::new(control("record id", 0x7f)),
            "remove control characters",
        ),
        (
            "C1 control in id",
            "tasks",
            "a\u{85}",
            Box::new(control("record id", 0x85)),
            "remove control characters",
        ),
    ];
    for (case, entity, id, expected, advice) in &cases {
        for operation in [
            SyncOperation::Create,
            SyncOperation::Update,
            SyncOperation::Delete,
        ] {
            let result = engine.save(entity, id, payload(), operation).await;
            assert_rejected(&engine, &before, case, result, expected, advice).await;
        }
    }

    // Reads, watches and retries check names the same way.
    for (case, entity, id, expected, advice) in &cases {
        let result = engine.get_record(entity, id).await;
        assert_rejected(&engine, &before, case, result, expected, advice).await;
        let result = engine.queue_item(entity, id).await;
        assert_rejected(&engine, &before, case, result, expected, advice).await;
        let result = engine.retry(entity, id).await;
        assert_rejected(&engine, &before, case, result, expected, advice).await;
        let result = engine.watch_item_status(entity, id).map(drop);
        assert_rejected(&engine, &before, case, result, expected, advice).await;
    }
    let result = engine.get_records("").await;
    assert_rejected(
        &engine,
        &before,
        "get_records of \"\"",
        result,
        empty("entity name"),
        "must not be empty",
    )
    .await;
    let result = engine.watch_records(&long).map(drop);
    assert_rejected(
        &engine,
        &before,
        "watch_records of a long name",
        result,
        too_long("entity name"),
        "shorter",
    )
    .await;
    engine.close().await;
}

#[tokio::test]
async fn payloads_that_are_not_objects_or_too_large_are_rejected_and_change_nothing() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    let engine = seeded(dir.path()).await;
    let before = snapshot(&engine).await;
    let not_object =
        |found: &'static str| invalid(move |v| *v == ValidationError::PayloadNotObject { found });
    for (case, payload, found) in [
        ("array payload", json!([1, 2]), "an array"),
        ("string payload", json!("text"), "a string"),
        ("null payload", Value::Null, "null"),
        ("number payload", json!(42), "a number"),
        ("boolean payload", json!(true), "a boolean"),
    ] {
        for operation in [SyncOperation::Create, SyncOperation::Update] {
            // Over an existing record and for a new one.
            for id in ["1", "new"] {
                let result = engine.save("tasks", id, payload.clone(), operation).await;
                assert_rejected(
                    &engine,
                    &before,
                    case,
                    result,
                    not_object(found),
                    "wrap the value in an object",
                )
                .await;
            }
        }
    }

    // Typed saves: a value that serialises to an array, and one that
    // cannot be serialised at all.
    let result = engine
        .save_as("tasks", "1", &vec![1u8, 2], SyncOperation::Update)
        .await;
    assert_rejected(
        &engine,
        &before,
        "save_as of a Vec",
        result,
        not_object("an array"),
        "wrap the value",
    )
    .await;
    let mut bad_keys: HashMap<(u8, u8), u8> = HashMap::new();
    bad_keys.insert((1, 2), 3);
    let result = engine
        .save_as("tasks", "1", &bad_keys, SyncOperation::Update)
        .await;
    assert_rejected(
        &engine,
        &before,
        "save_as of a map with non-string keys",
        result,
        |error| matches!(error, SyncError::Json(_)),
        "check that the type matches",
    )
    .await;

    // Over the default 1 MiB limit.
    let huge = json!({ "blob": "z".repeat(sync_facade::DEFAULT_MAX_PAYLOAD_BYTES) });
    let result = engine.save("tasks", "1", huge, SyncOperation::Update).await;
    assert_rejected(
        &engine,
        &before,
        "payload over 1 MiB",
        result,
        invalid(|error| matches!(error, ValidationError::PayloadTooLarge { .. })),
        "over the",
    )
    .await;

    // Reading a document as a type it does not have.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // Only its shape matters.
    struct Wrong {
        title: u64,
    }
    let result = engine.get_record_as::<Wrong>("tasks", "1").await;
    assert_rejected(
        &engine,
        &before,
        "get_record_as of the wrong type",
        result,
        |error| matches!(error, SyncError::Json(_)),
        "check that the type matches",
    )
    .await;
    engine.close().await;

    // A configured, smaller limit.
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), NOWHERE)
        .probe_api_health("/health")
        .options(manual())
        .store_options(SqliteStoreOptions::in_dir(dir.path()).max_payload_bytes(64))
        .build()
        .await
        .unwrap();
    engine
        .save("tasks", "1", json!({"t": "small"}), SyncOperation::Create)
        .await
        .unwrap();
    let before = snapshot(&engine).await;
    let result = engine
        .save("tasks", "1", json!({"t": "z".repeat(64)}), SyncOperation::Update)
        .await;
    assert_rejected(
        &engine,
        &before,
        "payload over max_payload_bytes",
        result,
        invalid(|error| matches!(error, ValidationError::PayloadTooLarge { .. })),
        "64-byte limit",
    )
    .await;
    engine.close().await;
}

#[tokio::test]
async fn unknown_operations_and_closed_engines_are_rejected() {
    let _report = CaseReport;
    // An operation name from outside (a UI, a file) is parsed first.
    let error = "upsert".parse::<SyncOperation>().unwrap_err();
    assert_eq!(error, ValidationError::UnknownOperation("upsert".into()));
    assert!(
        error
            .to_string()
            .contains("expected \"create\", \"update\" or \"delete\""),
        "{error}"
    );
    assert!("DELETE".parse::<SyncOperation>().is_err(), "names are lowercase");

    let dir = tempfile::tempdir().unwrap();
    let engine = seeded(dir.path()).await;
    let before = snapshot(&engine).await;
    engine.close().await;
    let result = engine
        .save("tasks", "3", json!({"t": 1}), SyncOperation::Create)
        .await;
    assert!(matches!(result, Err(SyncError::Closed)), "{result:?}");
    assert!(result.unwrap_err().to_string().contains("create a new one"));
    let result = engine.sync_manager().sync_now().await;
    assert!(matches!(result, Err(SyncError::Closed)), "{result:?}");
    // Reads after close fail as the store was closed.
    let result = engine.queue().await;
    assert!(
        matches!(&result, Err(SyncError::Store(e)) if e.kind() == StoreErrorKind::Closed),
        "{result:?}"
    );

    let reopened = open(dir.path()).await;
    assert_eq!(snapshot(&reopened).await, before, "a closed engine wrote nothing");
    reopened.close().await;
}

/// A delete of a record this device never saw is not an error by design
/// (sync-core's coalescing table: the app may know an id we do not). It is
/// queued as a checked delete, creates no document, and a server without
/// the record counts it as done.
#[tokio::test]
async fn a_delete_of_a_record_never_saved_is_queued_and_completes_against_a_404() {
    let _report = CaseReport;
    let server = sync_reference_server::ReferenceServer::start(Default::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), server.url())
        .probe_api_health("/health")
        .options(manual())
        .build()
        .await
        .unwrap();
    engine
        .save("tasks", "never-saved", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    assert!(engine.get_record("tasks", "never-saved").await.unwrap().is_none());
    let item = engine.queue_item("tasks", "never-saved").await.unwrap().unwrap();
    assert_eq!(item.operation, SyncOperation::Delete);
    let report = tokio::time::timeout(HANG_GUARD, engine.sync_manager().sync_now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.sent, 1, "{report:?}");
    assert!(engine.get_records("tasks").await.unwrap().is_empty());
    checked("delete of a record never saved");
    assert!(
        server
            .snapshot()
            .get("tasks")
            .is_none_or(|tasks| tasks.is_empty())
    );
    engine.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_settings_are_refused_before_the_database_changes() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    let before = seeded_at_rest(dir.path()).await;
    let bytes = files(dir.path());

    let build = |url: &str, options: OfflineSyncOptions| {
        OfflineSync::builder(dir.path(), url)
            .probe_api_health("/health")
            .options(options)
    };
    let mut zero_retries = manual();
    zero_retries.max_retries = 0;
    let mut zero_concurrency = manual();
    zero_concurrency.concurrency = 0;
    type Check = fn(&OpenError) -> bool;
    let cases: Vec<(&str, OfflineSyncBuilder, Check, &str)> = vec![
        (
            "ftp base URL",
            build("ftp://example.com", manual()),
            |e| matches!(e, OpenError::Net(NetError::InvalidBaseUrl { .. })),
            "must be http or https",
        ),
        (
            "relative base URL",
            build("/api", manual()),
            |e| matches!(e, OpenError::Net(NetError::InvalidBaseUrl { .. })),
            "start with https://",
        ),
        (
            "credentials in the base URL",
            build("https://user:pass@example.com", manual()),
            |e| matches!(e, OpenError::Net(NetError::InvalidBaseUrl { .. })),
            "use an auth hook",
        ),
        (
            "header value with a newline",
            build(NOWHERE, manual()).adapter(|a| a.default_header("X-Tenant", "a\r\nInjected: 1")),
            |e| matches!(e, OpenError::Net(NetError::InvalidHeader { .. })),
            "cannot carry",
        ),
        (
            "garbage root certificate",
            build(NOWHERE, manual()).adapter(|a| a.add_root_certificate(b"not a certificate".to_vec())),
            |e| matches!(e, OpenError::Net(NetError::InvalidCertificate(_))),
            "PEM or DER",
        ),
        (
            "zero retries",
            build(NOWHERE, zero_retries),
            |e| {
                matches!(
                    e,
                    OpenError::Engine(SyncError::Invalid(ValidationError::ZeroMaxRetries))
                )
            },
            "at least 1",
        ),
        (
            "zero concurrency",
            build(NOWHERE, zero_concurrency),
            |e| {
                matches!(
                    e,
                    OpenError::Engine(SyncError::Invalid(ValidationError::ZeroConcurrency))
                )
            },
            "at least 1",
        ),
    ];
    for (case, builder, expected, advice) in cases {
        let error = builder.build().await.expect_err(case);
        assert!(expected(&error), "{case}: wrong error {error:?}");
        assert!(error.to_string().contains(advice), "{case}: {error}");
        checked(case);
        // A store opened and dropped by a failed build releases its lock
        // asynchronously: the next open waits for it (busy timeout).
    }
    let engine = open(dir.path()).await;
    assert_eq!(snapshot(&engine).await, before);
    engine.close().await;
    assert_eq!(files(dir.path()), bytes, "the database files changed");
}

#[tokio::test]
async fn a_garbage_file_is_refused_and_left_byte_for_byte() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..16_384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(dir.path().join("offline_sync.db"), &garbage).unwrap();
    let before = files(dir.path());
    let error = OfflineSync::builder(dir.path(), NOWHERE)
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        open_store_kind(&error),
        Some(StoreErrorKind::Corrupt),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("move it away to start empty"),
        "{error}"
    );
    assert_eq!(files(dir.path()), before, "the file was modified");
    checked("a garbage file");
}

#[tokio::test]
async fn an_empty_text_file_or_a_foreign_header_is_refused_and_left_byte_for_byte() {
    let _report = CaseReport;
    // A text file that happens to sit at the database's path.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("offline_sync.db"), "hello, I am a config file\n").unwrap();
    let before = files(dir.path());
    let error = OfflineSync::builder(dir.path(), NOWHERE)
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        open_store_kind(&error),
        Some(StoreErrorKind::Corrupt),
        "{error:?}"
    );
    assert_eq!(files(dir.path()), before);
    checked("a text file at the database path");

    // Our own database, re-marked as another application's (the header's
    // application_id at offset 68).
    let dir = tempfile::tempdir().unwrap();
    seeded_at_rest(dir.path()).await;
    let db = dir.path().join("offline_sync.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[68..72].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    std::fs::write(&db, &bytes).unwrap();
    let before = files(dir.path());
    let error = OfflineSync::builder(dir.path(), NOWHERE)
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        open_store_kind(&error),
        Some(StoreErrorKind::Corrupt),
        "{error:?}"
    );
    assert!(error.to_string().contains("another application"), "{error}");
    assert_eq!(files(dir.path()), before);
    checked("another application's database");
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused_and_left_byte_for_byte() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    seeded_at_rest(dir.path()).await;
    // user_version lives at offset 60 of the header.
    let db = dir.path().join("offline_sync.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&db, &bytes).unwrap();
    let before = files(dir.path());
    let error = OfflineSync::builder(dir.path(), NOWHERE)
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        open_store_kind(&error),
        Some(StoreErrorKind::SchemaTooNew),
        "{error:?}"
    );
    assert!(error.to_string().contains("upgrade the app"), "{error}");
    assert_eq!(files(dir.path()), before);
    checked("a database from a newer version");
}

#[tokio::test]
async fn a_truncated_database_is_corrupt_and_left_byte_for_byte() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    let big = json!({ "blob": "x".repeat(20_000) });
    for id in 0..20 {
        engine
            .save("tasks", &id.to_string(), big.clone(), SyncOperation::Create)
            .await
            .unwrap();
    }
    engine.close().await;
    let db = dir.path().join("offline_sync.db");
    let bytes = std::fs::read(&db).unwrap();
    assert!(
        !dir.path().join("offline_sync.db-wal").exists(),
        "a clean close folds the WAL into the file"
    );
    std::fs::write(&db, &bytes[..bytes.len() / 2]).unwrap();
    let before = files(dir.path());

    let error = match OfflineSync::builder(dir.path(), NOWHERE)
        .options(manual())
        .build()
        .await
    {
        Err(OpenError::Store(error)) => error,
        Err(other) => panic!("wrong error {other:?}"),
        Ok(engine) => {
            // The damage shows on the first read of the lost pages.
            let result = engine.get_records("tasks").await;
            engine.close().await;
            match result {
                Err(SyncError::Store(error)) => error,
                other => panic!("a truncated database was read: {other:?}"),
            }
        }
    };
    assert_eq!(error.kind(), StoreErrorKind::Corrupt, "{error}");
    assert!(error.to_string().contains("restore it from a backup"), "{error}");
    assert_eq!(files(dir.path())[0], before[0], "the file was modified");
    checked("a truncated database");
}

#[tokio::test]
async fn a_directory_at_the_database_path_is_a_clear_error() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("offline_sync.db")).unwrap();
    let error = OfflineSync::builder(dir.path(), NOWHERE)
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        open_store_kind(&error),
        Some(StoreErrorKind::Invalid),
        "{error:?}"
    );
    assert!(error.to_string().contains("is a directory"), "{error}");
    assert!(dir.path().join("offline_sync.db").is_dir(), "left as it was");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "nothing created beside it: {names:?}");
    checked("a directory at the database path");
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error_and_is_not_created() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not").join("there");
    let error = OfflineSync::builder(&missing, NOWHERE).build().await.unwrap_err();
    assert_eq!(
        open_store_kind(&error),
        Some(StoreErrorKind::ReadOnly),
        "{error:?}"
    );
    assert!(error.to_string().contains("does not exist"), "{error}");
    assert!(!dir.path().join("not").exists());
    checked("a missing directory");
}

/// A directory the process may not write to. Root ignores permission bits,
/// so under root the test uses a directory no one can create files in.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_read_only_directory_is_a_clear_error_and_nothing_is_created() {
    let _report = CaseReport;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let read_only = dir.path().join("ro");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o500)).unwrap();
    let enforced = std::fs::File::create(read_only.join("probe")).is_err();
    let target: PathBuf = if enforced {
        read_only.clone()
    } else {
        PathBuf::from("/sys")
    };
    let error = OfflineSync::builder(&target, NOWHERE).build().await.unwrap_err();
    assert_eq!(
        open_store_kind(&error),
        Some(StoreErrorKind::ReadOnly),
        "{error:?}"
    );
    assert!(error.to_string().contains("not writable"), "{error}");
    assert!(!target.join("offline_sync.db").exists(), "nothing was created");
    checked("a read-only directory");
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[tokio::test]
async fn a_full_disk_fails_the_save_and_changes_nothing() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), NOWHERE)
        .options(manual())
        .store_options(SqliteStoreOptions::in_dir(dir.path()).max_page_count(48))
        .build()
        .await
        .unwrap();
    let payload = json!({ "blob": "y".repeat(6_000) });
    let mut full = false;
    for id in 0..200 {
        let before = snapshot(&engine).await;
        match engine
            .save("tasks", &id.to_string(), payload.clone(), SyncOperation::Create)
            .await
        {
            Ok(_) => {}
            Err(error) => {
                assert!(
                    matches!(&error, SyncError::Store(e) if e.kind() == StoreErrorKind::Full),
                    "{error:?}"
                );
                assert!(error.to_string().contains("nothing was written"), "{error}");
                assert_eq!(snapshot(&engine).await, before, "a failed save changed the store");
                full = true;
                break;
            }
        }
    }
    assert!(full, "the page limit was never reached");
    checked("a full disk");
    // Space freed by a delete of a pending create: the store goes on.
    engine
        .save("tasks", "0", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    engine.close().await;
}

#[tokio::test]
async fn a_database_held_by_another_engine_is_in_use_and_unchanged() {
    let _report = CaseReport;
    let dir = tempfile::tempdir().unwrap();
    let first = seeded(dir.path()).await;
    let before = snapshot(&first).await;
    let error = OfflineSync::builder(dir.path(), NOWHERE)
        .store_options(SqliteStoreOptions::in_dir(dir.path()).busy_timeout(Duration::from_millis(100)))
        .build()
        .await
        .unwrap_err();
    assert_eq!(open_store_kind(&error), Some(StoreErrorKind::InUse), "{error:?}");
    assert!(error.to_string().contains("close that one first"), "{error}");
    assert_eq!(snapshot(&first).await, before);
    checked("a database held by another engine");
    // The holder is unaffected.
    first
        .save("tasks", "9", json!({"t": 9}), SyncOperation::Create)
        .await
        .unwrap();
    first.close().await;
}

/// A server whose answers are not what the REST contract says: each
/// request fails with a typed error kept on the queue item; the local
/// documents and the queued changes stay exactly as they were.
#[tokio::test]
async fn a_server_answering_garbage_fails_the_attempt_and_keeps_the_local_state() {
    let _report = CaseReport;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"status\":\"ok\"}"))
        .mount(&server)
        .await;
    let text = |status: u16, body: &str, content_type: &str| {
        ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), content_type)
    };
    // Entity → (answer to its create, `None` when the answer means the
    // change was applied, else the expected kind and words in last_error).
    // A 2xx whose body is not an object (not even JSON) is applied: the
    // server accepted the change, and the local document stays.
    type Failure = Option<(ErrorKind, &'static str)>;
    let cases: Vec<(&str, ResponseTemplate, Failure)> = vec![
        ("invalid_json", text(200, "{\"id\": 1,", "application/json"), None),
        ("array", text(201, "[1,2,3]", "application/json"), None),
        (
            "html",
            text(200, "<html><body>Welcome</body></html>", "text/html"),
            Some((ErrorKind::Transient, "captive portal")),
        ),
        ("string", text(200, "\"ok\"", "application/json"), None),
        ("number", text(200, "42", "application/json"), None),
        ("null", text(200, "null", "application/json"), None),
        (
            "binary",
            ResponseTemplate::new(200).set_body_bytes(vec![0xff, 0xfe, 0, 1, 2]),
            None,
        ),
        // JSON objects that are not the record (issue 13): applied, and
        // never adopted as the local document.
        (
            "status_object",
            text(201, "{\"success\": true}", "application/json"),
            None,
        ),
        (
            "envelope",
            text(
                200,
                "{\"data\": {\"id\": \"1\", \"entity\": \"envelope\"}}",
                "application/json",
            ),
            None,
        ),
        // A record under another id: the server assigned its own (issue
        // 14), so the create is parked, never counted done.
        (
            "other_record",
            text(
                200,
                "{\"id\": \"2\", \"entity\": \"other_record\"}",
                "application/json",
            ),
            Some((ErrorKind::Permanent, "assigns ids itself")),
        ),
        (
            "html_500",
            text(500, "<h1>Internal Server Error</h1>", "text/html"),
            Some((ErrorKind::Transient, "HTTP 500")),
        ),
        (
            "teapot",
            text(418, "I'm a teapot", "text/plain"),
            Some((ErrorKind::Permanent, "HTTP 418")),
        ),
        (
            "redirect",
            text(302, "", "text/plain").insert_header("location", "http://127.0.0.1:9/"),
            Some((ErrorKind::Permanent, "HTTP 302")),
        ),
        (
            "too_large",
            text(
                200,
                &format!("{{\"pad\":\"{}\"}}", "p".repeat(4096)),
                "application/json",
            ),
            Some((ErrorKind::Transient, "larger than")),
        ),
    ];
    for (entity, answer, _) in &cases {
        Mock::given(method("POST"))
            .and(path(format!("/{entity}")))
            .respond_with(answer.clone())
            .mount(&server)
            .await;
    }
    let mut options = manual();
    options.max_retries = 1;
    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), server.uri())
        .probe_api_health("/health")
        .options(options)
        .adapter(|adapter| adapter.max_response_bytes(1024))
        .build()
        .await
        .unwrap();
    let mut before = Vec::new();
    for (entity, ..) in &cases {
        engine
            .save(
                entity,
                "1",
                json!({"id": "1", "entity": entity}),
                SyncOperation::Create,
            )
            .await
            .unwrap();
        before.push((
            engine.get_records(entity).await.unwrap(),
            engine.queue_item(entity, "1").await.unwrap().unwrap(),
        ));
    }
    let report: SyncReport = tokio::time::timeout(HANG_GUARD, engine.sync_manager().sync_now())
        .await
        .unwrap()
        .unwrap();
    let applied = cases.iter().filter(|(_, _, failure)| failure.is_none()).count() as u64;
    assert_eq!(report.sent, applied, "{report:?}");
    assert_eq!(report.failed, cases.len() as u64 - applied, "{report:?}");
    for ((entity, _, failure), (records, queued)) in cases.iter().zip(&before) {
        assert_eq!(
            &engine.get_records(entity).await.unwrap(),
            records,
            "{entity}: the document changed"
        );
        let item = engine.queue_item(entity, "1").await.unwrap().unwrap();
        let Some((kind, words)) = failure else {
            assert_eq!(item.status, SyncStatus::Synced, "{entity}: {item:#?}");
            checked(&format!("a server accepting a create with {entity}"));
            continue;
        };
        assert_eq!(item.status, SyncStatus::Failed, "{entity}: {item:#?}");
        checked(&format!("a server answering {entity}"));
        assert_eq!(item.last_error_kind, Some(*kind), "{entity}: {item:#?}");
        let message = item.last_error.clone().unwrap_or_default();
        assert!(
            message.contains(words),
            "{entity}: {message:?} does not say {words:?}"
        );
        assert!(
            message.contains(&format!("POST /{entity}")),
            "{entity}: {message:?}"
        );
        // The queued change itself is intact, ready to be sent again.
        assert_eq!(
            (&item.operation_id, &item.payload, item.version),
            (&queued.operation_id, &queued.payload, queued.version),
            "{entity}"
        );
    }
    engine.close().await;
}

/// Garbage in answers to a fetch (the conflict resolver's read) and to an
/// update: the same typed failures, nothing replaced locally.
#[tokio::test]
async fn garbage_answers_to_fetches_and_updates_keep_the_local_state() {
    let _report = CaseReport;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fetched/1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"<html>login</html>".to_vec(), "text/html"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fetched/2"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/updated/1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(b"[\"not\", \"a\", \"record\"]".to_vec(), "application/json"),
        )
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let mut options = manual();
    options.max_retries = 1;
    // With a resolver, an update first fetches the server's copy.
    let with_resolver = OfflineSync::builder(dir.path(), server.uri())
        .probe_api_health("/health")
        .options(options.clone())
        .conflict_resolver(RemoteWins)
        .build()
        .await
        .unwrap();
    for id in ["1", "2"] {
        with_resolver
            .save("fetched", id, json!({"v": id}), SyncOperation::Update)
            .await
            .unwrap();
    }
    let before = with_resolver.get_records("fetched").await.unwrap();
    tokio::time::timeout(HANG_GUARD, with_resolver.sync_manager().sync_now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(with_resolver.get_records("fetched").await.unwrap(), before);
    // A fetch answered 2xx without a record is a wrong route: asking again
    // gets the same answer, so the item is parked with the reason; an HTML
    // page (a captive portal's) is retried.
    for (id, kind, words) in [
        ("1", ErrorKind::Transient, "captive portal"),
        ("2", ErrorKind::Permanent, "empty body"),
    ] {
        let item = with_resolver.queue_item("fetched", id).await.unwrap().unwrap();
        assert_eq!(item.status, SyncStatus::Failed, "{item:#?}");
        assert_eq!(item.last_error_kind, Some(kind), "{item:#?}");
        assert!(
            item.last_error.as_deref().unwrap_or_default().contains(words),
            "{item:#?}"
        );
        checked(&format!("a fetch answered with {words}"));
    }
    with_resolver.close().await;

    let dir = tempfile::tempdir().unwrap();
    let engine = OfflineSync::builder(dir.path(), server.uri())
        .probe_api_health("/health")
        .options(options)
        .build()
        .await
        .unwrap();
    engine
        .save("updated", "1", json!({"v": 1}), SyncOperation::Update)
        .await
        .unwrap();
    let before = engine.get_records("updated").await.unwrap();
    tokio::time::timeout(HANG_GUARD, engine.sync_manager().sync_now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(engine.get_records("updated").await.unwrap(), before);
    // An update answered 2xx with a JSON array was accepted: applied, the
    // local document kept.
    let item = engine.queue_item("updated", "1").await.unwrap().unwrap();
    assert_eq!(item.status, SyncStatus::Synced, "{item:#?}");
    checked("an update answered with a JSON array");
    engine.close().await;
}
