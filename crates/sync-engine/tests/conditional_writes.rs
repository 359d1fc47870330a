//! Conditional writes through the engine (issue 13): the copy the server
//! last confirmed is the base of each update and delete; its version goes
//! out as `If-Match`, a 412 makes the engine fetch, resolve three-way and
//! send again, and an update with a resolver costs one request when nobody
//! else changed the record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};
use sync_core::{
    ApiError, EntityName, ErrorKind, JsonObject, MergeFields, OperationId, RecordId, ServerCopy,
    SyncApiAdapter, SyncOperation, SyncStatus, WriteAnswer, WriteKind, WriteRequest,
};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions, TokioClock};
use sync_testkit::{FakeMonitor, MemoryStore};

/// A server that versions its records and honours `If-Match`: a write
/// whose base version is not the record's current one is refused with 412.
#[derive(Default)]
struct Versioned {
    records: Mutex<BTreeMap<String, (JsonObject, u64)>>,
    next_version: Mutex<u64>,
    log: Mutex<Vec<String>>,
    /// Whether every conditional write is refused, even with the version
    /// just served (a server that does not check `If-Match` as it gives
    /// versions).
    refuses_versions: bool,
}

impl Versioned {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn record(&self, id: &str) -> Option<Value> {
        self.records
            .lock()
            .unwrap()
            .get(id)
            .map(|(data, _)| Value::Object(data.clone()))
    }

    /// Another client's write.
    fn edit(&self, id: &str, field: &str, value: Value) {
        let version = self.bump();
        let mut records = self.records.lock().unwrap();
        let (data, current) = records.get_mut(id).unwrap();
        data.insert(field.to_owned(), value);
        *current = version;
    }

    fn bump(&self) -> u64 {
        let mut next = self.next_version.lock().unwrap();
        *next += 1;
        *next
    }

    fn tag(version: u64) -> String {
        format!("\"{version}\"")
    }
}

#[async_trait]
impl SyncApiAdapter for Versioned {
    async fn create(
        &self,
        _: &EntityName,
        _: &RecordId,
        _: &JsonObject,
        _: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        unreachable!("the engine calls write")
    }

    async fn update(
        &self,
        _: &EntityName,
        _: &RecordId,
        _: &JsonObject,
        _: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        unreachable!("the engine calls write")
    }

    async fn delete(&self, _: &EntityName, _: &RecordId, _: &OperationId) -> Result<(), ApiError> {
        unreachable!("the engine calls write")
    }

    async fn fetch_remote(&self, _: &EntityName, _: &RecordId) -> Result<Option<JsonObject>, ApiError> {
        unreachable!("the engine calls fetch_copy")
    }

    async fn write(&self, request: WriteRequest<'_>) -> Result<WriteAnswer, ApiError> {
        let if_match = request.version.map(str::to_owned);
        let method = match request.kind {
            WriteKind::Create => "POST",
            WriteKind::Update => "PUT",
            _ => "DELETE",
        };
        self.log.lock().unwrap().push(match &if_match {
            Some(tag) => format!("{method} {tag}"),
            None => method.to_owned(),
        });
        if self.refuses_versions && if_match.is_some() {
            return Err(ApiError::new(ErrorKind::Conflict, "HTTP 412")
                .with_status(412)
                .with_possibly_applied(false));
        }
        let id = request.id.as_str().to_owned();
        let current = self.records.lock().unwrap().get(&id).map(|(_, version)| *version);
        if let (Some(tag), Some(current)) = (&if_match, current)
            && *tag != Self::tag(current)
        {
            return Err(ApiError::new(ErrorKind::Conflict, "HTTP 412")
                .with_status(412)
                .with_possibly_applied(false));
        }
        if request.kind == WriteKind::Delete {
            self.records.lock().unwrap().remove(&id);
            return Ok(WriteAnswer::default());
        }
        let version = self.bump();
        self.records
            .lock()
            .unwrap()
            .insert(id, (request.data.clone(), version));
        Ok(WriteAnswer {
            record: None,
            version: Some(Self::tag(version)),
            assigned_id: None,
        })
    }

    async fn fetch_copy(&self, _: &EntityName, id: &RecordId) -> Result<Option<ServerCopy>, ApiError> {
        self.log.lock().unwrap().push("GET".to_owned());
        Ok(self
            .records
            .lock()
            .unwrap()
            .get(id.as_str())
            .map(|(data, version)| ServerCopy {
                data: data.clone(),
                version: Some(Self::tag(*version)),
            }))
    }
}

async fn engine(server: Arc<Versioned>, merge: bool) -> OfflineSyncEngine {
    let mut builder = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        server,
        Arc::new(FakeMonitor::new(true)),
    )
    .options(
        OfflineSyncOptions::default()
            .sync_after_save(false)
            .connectivity_check_interval(None),
    )
    .clock(Arc::new(TokioClock::new()));
    if merge {
        builder = builder.conflict_resolver(MergeFields);
    }
    builder.build().await.unwrap()
}

async fn save(engine: &OfflineSyncEngine, data: Value, operation: SyncOperation) {
    engine.save("tasks", "1", data, operation).await.unwrap();
    engine.sync_manager().sync_now().await.unwrap();
}

/// With a resolver and the server's version known, an update nobody else
/// touched is one conditional request; it used to be a `GET` and a `PUT`.
#[tokio::test(start_paused = true)]
async fn an_untouched_record_is_updated_in_one_request() {
    let server = Arc::new(Versioned::default());
    let engine = engine(server.clone(), true).await;
    save(&engine, json!({"id": "1", "title": "a"}), SyncOperation::Create).await;
    save(&engine, json!({"id": "1", "title": "b"}), SyncOperation::Update).await;
    assert_eq!(server.log(), ["POST", "PUT \"1\""]);
    assert_eq!(server.record("1"), Some(json!({"id": "1", "title": "b"})));
    engine.close().await;
}

/// Another client changed a field meanwhile: the conditional update is
/// refused (412), the engine fetches the new copy, merges field by field
/// against the base (this device's title, the other client's `done`) and
/// sends the merge over the new version.
#[tokio::test(start_paused = true)]
async fn a_412_is_fetched_merged_against_the_base_and_sent_again() {
    let server = Arc::new(Versioned::default());
    let engine = engine(server.clone(), true).await;
    save(
        &engine,
        json!({"id": "1", "title": "a", "done": false}),
        SyncOperation::Create,
    )
    .await;
    server.edit("1", "done", json!(true));
    save(
        &engine,
        json!({"id": "1", "title": "b", "done": false}),
        SyncOperation::Update,
    )
    .await;
    assert_eq!(server.log(), ["POST", "PUT \"1\"", "GET", "PUT \"2\""]);
    let merged = json!({"id": "1", "title": "b", "done": true});
    assert_eq!(server.record("1"), Some(merged.clone()));
    let local = engine.get_record("tasks", "1").await.unwrap().unwrap();
    assert_eq!(Value::Object(local.data), merged);
    let item = engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!(item.status, SyncStatus::Synced);
    engine.close().await;
}

/// Without a resolver the device's copy wins, as before, but over the
/// server's current version: the write is still conditional, so a stale
/// write of this device can never land later.
#[tokio::test(start_paused = true)]
async fn without_a_resolver_the_local_copy_goes_over_the_new_version() {
    let server = Arc::new(Versioned::default());
    let engine = engine(server.clone(), false).await;
    save(&engine, json!({"id": "1", "title": "a"}), SyncOperation::Create).await;
    server.edit("1", "title", json!("theirs"));
    save(
        &engine,
        json!({"id": "1", "title": "mine"}),
        SyncOperation::Update,
    )
    .await;
    assert_eq!(server.log(), ["POST", "PUT \"1\"", "GET", "PUT \"2\""]);
    assert_eq!(server.record("1"), Some(json!({"id": "1", "title": "mine"})));
    // A delete carries the version too, and follows the record's changes.
    server.edit("1", "title", json!("again"));
    save(&engine, json!({}), SyncOperation::Delete).await;
    assert_eq!(server.log()[4..], ["DELETE \"3\"", "GET", "DELETE \"4\""]);
    assert_eq!(server.record("1"), None);
    engine.close().await;
}

/// A server that gives versions but never accepts one back (an ETag that
/// changes with compression, a version it does not check): the update is
/// refused, the copy fetched, and refused again; the item parks, saying
/// what to set, instead of trying twice every pass for ever.
#[tokio::test(start_paused = true)]
async fn a_server_refusing_the_version_it_just_served_parks_the_item() {
    let server = Arc::new(Versioned {
        refuses_versions: true,
        ..Versioned::default()
    });
    let engine = engine(server.clone(), false).await;
    save(&engine, json!({"id": "1", "title": "a"}), SyncOperation::Create).await;
    save(&engine, json!({"id": "1", "title": "b"}), SyncOperation::Update).await;
    engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(server.log(), ["POST", "PUT \"1\"", "GET", "PUT \"1\""]);
    let item = engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert!(item.is_parked(), "{item:?}");
    assert!(
        item.last_error
            .as_deref()
            .unwrap()
            .contains("does not check If-Match"),
        "{item:?}"
    );
    engine.close().await;
}
