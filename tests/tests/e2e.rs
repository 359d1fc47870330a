//! End to end with the real layers: the SQLite store, the HTTP adapter and the reference server on loopback, taken down and brought back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sync_facade::prelude::*;
use sync_facade::{EntityName, RecordId, SyncReport, encode_query_value, encode_segment};
use sync_reference_server::{ReferenceServer, RequestRecord, ServerConfig};

/// Only a guard against hangs: nothing asserts on how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Collection → id → object, for the local store and the server alike.
type State = BTreeMap<String, BTreeMap<String, Value>>;

/// Options for tests that sync only when they say so.
fn manual() -> OfflineSyncOptions {
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options
}

async fn start_server() -> ReferenceServer {
    ReferenceServer::start(ServerConfig::new()).await.unwrap()
}

async fn open(dir: &Path, server: &ReferenceServer, options: OfflineSyncOptions) -> OfflineSyncEngine {
    OfflineSync::builder(dir, server.url())
        .probe_api_health("/health")
        .options(options)
        .build()
        .await
        .unwrap()
}

async fn sync(engine: &OfflineSyncEngine) -> SyncReport {
    tokio::time::timeout(HANG_GUARD, engine.sync_manager().sync_now())
        .await
        .expect("sync_now hung")
        .unwrap()
}

async fn drain(engine: &OfflineSyncEngine) {
    let drained = engine.wait_until_drained(HANG_GUARD).await.unwrap();
    assert!(
        drained,
        "the queue never drained: {:#?}",
        engine.queue().await.unwrap()
    );
}

async fn local_state(engine: &OfflineSyncEngine, entities: &[&str]) -> State {
    let mut state = State::new();
    for entity in entities {
        let records = engine.get_records(entity).await.unwrap();
        let by_id = records
            .into_iter()
            .map(|record| (record.id.as_str().to_owned(), Value::Object(record.data)))
            .collect();
        state.insert((*entity).to_owned(), by_id);
    }
    state
}

fn server_state(server: &ReferenceServer, entities: &[&str]) -> State {
    let snapshot = server.snapshot();
    for name in snapshot.keys() {
        assert!(
            entities.contains(&name.as_str()),
            "the server holds an unexpected collection {name:?}"
        );
    }
    entities
        .iter()
        .map(|entity| {
            (
                (*entity).to_owned(),
                snapshot.get(*entity).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

/// The server holds exactly the local documents, and nothing waits to be
/// sent.
async fn assert_converged(engine: &OfflineSyncEngine, server: &ReferenceServer, entities: &[&str]) {
    let local = local_state(engine, entities).await;
    let remote = server_state(server, entities);
    assert_eq!(remote, local, "the server must hold exactly the local state");
    let queue = engine.queue().await.unwrap();
    assert!(
        queue.iter().all(|item| item.status == SyncStatus::Synced),
        "items left unsynced: {queue:#?}"
    );
}

fn requests<'a>(log: &'a [RequestRecord], collection: &str, id: &str) -> Vec<&'a RequestRecord> {
    log.iter()
        .filter(|record| record.collection == collection && record.id.as_deref() == Some(id))
        .collect()
}

fn methods(log: &[&RequestRecord]) -> Vec<String> {
    log.iter()
        .map(|record| record.method.as_str().to_owned())
        .collect()
}

/// Every applied write carried an idempotency key, and no key took effect
/// twice; returns the keys.
fn assert_each_key_applied_once(server: &ReferenceServer) -> BTreeSet<String> {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for record in server.applied_requests() {
        let key = record
            .idempotency_key
            .clone()
            .unwrap_or_else(|| panic!("an applied write without an idempotency key: {record:?}"));
        *by_key.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = by_key.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        twice.is_empty(),
        "idempotency keys applied more than once: {twice:?}"
    );
    by_key.into_keys().collect()
}

/// No record was created twice (the tests never re-create a deleted id).
fn assert_no_record_created_twice(server: &ReferenceServer) {
    let mut creates: HashMap<(String, String), usize> = HashMap::new();
    for record in server.applied_requests() {
        if record.method.as_str() == "POST" {
            let id = record.id.clone().expect("a create names its record");
            *creates.entry((record.collection.clone(), id)).or_default() += 1;
        }
    }
    let twice: Vec<_> = creates.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "records created more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_saved_while_the_api_is_down_reach_it_as_the_last_local_state() {
    const ENTITIES: [&str; 2] = ["tasks", "notes"];
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, manual()).await;

    // Online: the records the offline changes will edit and delete.
    for id in ["1", "2", "3"] {
        let task = json!({"id": id, "title": format!("task {id}"), "done": false});
        engine
            .save("tasks", id, task, SyncOperation::Create)
            .await
            .unwrap();
    }
    engine
        .save(
            "notes",
            "1",
            json!({"id": "1", "text": "first"}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    let report = sync(&engine).await;
    assert_eq!(
        (report.sent, report.failed, report.offline),
        (4, 0, false),
        "{report:?}"
    );
    assert_converged(&engine, &server, &ENTITIES).await;
    assert_eq!(engine.clear_synced().await.unwrap(), 4);

    // The API goes down; the app keeps working on local data.
    server.stop().await;
    let changes = [
        (
            "tasks",
            "1",
            json!({"id": "1", "title": "task 1", "done": true}),
            SyncOperation::Update,
        ),
        ("tasks", "2", json!({}), SyncOperation::Delete),
        (
            "tasks",
            "4",
            json!({"id": "4", "title": "new"}),
            SyncOperation::Create,
        ),
        (
            "tasks",
            "4",
            json!({"id": "4", "title": "new, renamed"}),
            SyncOperation::Update,
        ),
        (
            "tasks",
            "5",
            json!({"id": "5", "title": "short-lived"}),
            SyncOperation::Create,
        ),
        ("tasks", "5", json!({}), SyncOperation::Delete),
        (
            "notes",
            "1",
            json!({"id": "1", "text": "edited once"}),
            SyncOperation::Update,
        ),
        (
            "notes",
            "1",
            json!({"id": "1", "text": "edited twice"}),
            SyncOperation::Update,
        ),
        (
            "notes",
            "2",
            json!({"id": "2", "text": "written offline"}),
            SyncOperation::Create,
        ),
    ];
    for (entity, id, data, operation) in changes {
        engine.save(entity, id, data, operation).await.unwrap();
    }
    assert!(engine.get_record("tasks", "2").await.unwrap().is_none());
    assert!(engine.get_record("tasks", "5").await.unwrap().is_none());
    assert_eq!(
        engine.get_record("tasks", "4").await.unwrap().unwrap().data["title"],
        "new, renamed"
    );

    // A sync while down sends nothing and uses no attempt.
    let report = sync(&engine).await;
    assert!(report.offline, "{report:?}");
    assert_eq!((report.sent, report.still_pending), (0, 5), "{report:?}");
    let queue = engine.queue().await.unwrap();
    let queued: BTreeMap<(String, String), SyncOperation> = queue
        .iter()
        .map(|item| {
            assert_eq!(item.status, SyncStatus::Pending, "{item:#?}");
            assert_eq!(item.retry_count, 0, "{item:#?}");
            (
                (item.entity.as_str().to_owned(), item.id.as_str().to_owned()),
                item.operation,
            )
        })
        .collect();
    let expected: BTreeMap<(String, String), SyncOperation> = [
        ("tasks", "1", SyncOperation::Update),
        ("tasks", "2", SyncOperation::Delete),
        ("tasks", "4", SyncOperation::Create),
        ("notes", "1", SyncOperation::Update),
        ("notes", "2", SyncOperation::Create),
    ]
    .into_iter()
    .map(|(entity, id, operation)| ((entity.to_owned(), id.to_owned()), operation))
    .collect();
    assert_eq!(
        queued, expected,
        "offline changes coalesce to one item per record"
    );

    // Back up: one sync makes the server hold exactly the local state.
    server.clear_request_log();
    server.resume().await.unwrap();
    let report = sync(&engine).await;
    assert_eq!(
        (report.sent, report.failed, report.offline),
        (5, 0, false),
        "{report:?}"
    );
    drain(&engine).await;
    assert_converged(&engine, &server, &ENTITIES).await;
    assert_eq!(server.applied_requests().len(), 5, "{:#?}", server.request_log());
    assert!(requests(&server.request_log(), "tasks", "5").is_empty());
    assert_each_key_applied_once(&server);
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_route_to_their_own_collections_even_with_the_same_id() {
    const ENTITIES: [&str; 3] = ["tasks", "notes", "customers"];
    let odd_id = "ü a/b?c#d%";
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, manual()).await;

    let creates = [
        ("tasks", "1", json!({"id": "1", "title": "a task"})),
        (
            "notes",
            "1",
            json!({"id": "1", "text": "a note with the task's id"}),
        ),
        ("customers", "1", json!({"id": "1", "name": "Ada"})),
        ("customers", odd_id, json!({"id": odd_id, "name": "Grace"})),
    ];
    for (entity, id, data) in creates {
        engine
            .save(entity, id, data, SyncOperation::Create)
            .await
            .unwrap();
    }
    let report = sync(&engine).await;
    assert_eq!((report.sent, report.failed), (4, 0), "{report:?}");
    let log = server.request_log();
    for (entity, id) in [
        ("tasks", "1"),
        ("notes", "1"),
        ("customers", "1"),
        ("customers", odd_id),
    ] {
        let sent = requests(&log, entity, id);
        assert_eq!(methods(&sent), ["POST"], "{entity}/{id}: {log:#?}");
        assert!(sent[0].applied);
    }
    let snapshot = server.snapshot();
    assert_eq!(snapshot["tasks"]["1"]["title"], "a task");
    assert_eq!(snapshot["notes"]["1"]["text"], "a note with the task's id");
    assert_eq!(snapshot["customers"][odd_id]["name"], "Grace");

    // An update and a delete reach only their own entity's record.
    server.clear_request_log();
    engine
        .save(
            "tasks",
            "1",
            json!({"id": "1", "title": "renamed"}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    engine
        .save("notes", "1", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    engine
        .save(
            "customers",
            odd_id,
            json!({"id": odd_id, "name": "Grace H."}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    sync(&engine).await;
    let log = server.request_log();
    assert_eq!(methods(&requests(&log, "tasks", "1")), ["PUT"], "{log:#?}");
    assert_eq!(methods(&requests(&log, "notes", "1")), ["DELETE"], "{log:#?}");
    assert_eq!(methods(&requests(&log, "customers", odd_id)), ["PUT"], "{log:#?}");
    assert!(requests(&log, "customers", "1").is_empty(), "{log:#?}");
    assert_eq!(log.len(), 3, "{log:#?}");
    assert_converged(&engine, &server, &ENTITIES).await;
    assert_eq!(server.snapshot()["tasks"]["1"]["title"], "renamed");
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_path_builder_addresses_records_in_the_query_string() {
    const ENTITIES: [&str; 2] = ["tasks", "notes"];
    // Ids no path segment can carry safely, and one that would split the
    // query if it were not encoded.
    let ids = ["1", "..", "a&id=b", "x y+z=w#?"];
    let server = ReferenceServer::start(ServerConfig::new().with_prefix("/api"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let built = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&built);
    let engine = OfflineSync::builder(dir.path(), server.base_url())
        .probe_api_health("/health")
        .options(manual())
        .adapter(move |adapter| {
            adapter.path_builder(move |entity: &EntityName, id: Option<&RecordId>| {
                let path = match id {
                    None => format!("/{}", encode_segment(entity.as_str())),
                    Some(id) => format!(
                        "/{}?id={}",
                        encode_segment(entity.as_str()),
                        encode_query_value(id.as_str())
                    ),
                };
                seen.lock().unwrap().push(path.clone());
                path
            })
        })
        .build()
        .await
        .unwrap();

    for id in ids {
        engine
            .save("tasks", id, json!({"id": id, "rev": 1}), SyncOperation::Create)
            .await
            .unwrap();
    }
    engine
        .save("notes", "1", json!({"id": "1", "rev": 1}), SyncOperation::Create)
        .await
        .unwrap();
    let report = sync(&engine).await;
    assert_eq!(
        (report.sent, report.failed, report.offline),
        (5, 0, false),
        "{report:?}"
    );
    assert_converged(&engine, &server, &ENTITIES).await;

    for id in ids {
        engine
            .save("tasks", id, json!({"id": id, "rev": 2}), SyncOperation::Update)
            .await
            .unwrap();
    }
    engine
        .save("tasks", "..", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    engine
        .save("tasks", "a&id=b", json!({}), SyncOperation::Delete)
        .await
        .unwrap();
    let report = sync(&engine).await;
    assert_eq!((report.sent, report.failed), (4, 0), "{report:?}");
    assert_converged(&engine, &server, &ENTITIES).await;

    let built = built.lock().unwrap().clone();
    assert!(built.iter().any(|path| path == "/tasks"), "{built:?}");
    for expected in [
        "/tasks?id=..",
        "/tasks?id=a%26id%3Db",
        "/tasks?id=x%20y%2Bz%3Dw%23%3F",
        "/tasks?id=1",
    ] {
        assert!(
            built.iter().any(|path| path == expected),
            "{expected} not in {built:?}"
        );
    }
    let log = server.request_log();
    assert_eq!(
        methods(&requests(&log, "tasks", "..")),
        ["POST", "DELETE"],
        "{log:#?}"
    );
    assert_eq!(
        methods(&requests(&log, "tasks", "a&id=b")),
        ["POST", "DELETE"],
        "{log:#?}"
    );
    assert_eq!(
        methods(&requests(&log, "tasks", "x y+z=w#?")),
        ["POST", "PUT"],
        "{log:#?}"
    );
    assert_eq!(
        methods(&requests(&log, "tasks", "1")),
        ["POST", "PUT"],
        "{log:#?}"
    );
    assert_eq!(methods(&requests(&log, "notes", "1")), ["POST"], "{log:#?}");
    assert!(log.iter().all(|record| record.applied), "{log:#?}");
    let snapshot = server.snapshot();
    assert_eq!(snapshot["tasks"]["x y+z=w#?"]["rev"], 2);
    assert_eq!(snapshot["notes"]["1"]["rev"], 1);
    assert_each_key_applied_once(&server);
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_survives_a_restart_and_drains_afterwards() {
    const ENTITIES: [&str; 2] = ["tasks", "notes"];
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();

    let before = {
        let engine = open(dir.path(), &server, manual()).await;
        engine
            .save(
                "tasks",
                "1",
                json!({"id": "1", "title": "synced"}),
                SyncOperation::Create,
            )
            .await
            .unwrap();
        assert_eq!(sync(&engine).await.sent, 1);
        engine.clear_synced().await.unwrap();

        server.stop().await;
        let changes = [
            (
                "tasks",
                "1",
                json!({"id": "1", "title": "edited offline"}),
                SyncOperation::Update,
            ),
            (
                "tasks",
                "2",
                json!({"id": "2", "title": "created offline"}),
                SyncOperation::Create,
            ),
            (
                "notes",
                "7",
                json!({"id": "7", "text": "draft"}),
                SyncOperation::Create,
            ),
            (
                "notes",
                "7",
                json!({"id": "7", "text": "final"}),
                SyncOperation::Update,
            ),
        ];
        for (entity, id, data, operation) in changes {
            engine.save(entity, id, data, operation).await.unwrap();
        }
        assert!(sync(&engine).await.offline);
        let queue = engine.queue().await.unwrap();
        let records = local_state(&engine, &ENTITIES).await;
        engine.close().await;
        let refused = engine
            .save("tasks", "3", json!({"id": "3"}), SyncOperation::Create)
            .await;
        assert!(matches!(refused, Err(SyncError::Closed)), "{refused:?}");
        (queue, records)
    };
    let (queue_before, records_before) = before;
    assert_eq!(queue_before.len(), 3, "{queue_before:#?}");

    // A new engine on the same directory picks the queue up as it was.
    let engine = open(dir.path(), &server, manual()).await;
    assert_eq!(engine.queue().await.unwrap(), queue_before);
    assert_eq!(local_state(&engine, &ENTITIES).await, records_before);

    server.clear_request_log();
    server.resume().await.unwrap();
    let report = sync(&engine).await;
    assert_eq!((report.sent, report.failed), (3, 0), "{report:?}");
    drain(&engine).await;
    assert_converged(&engine, &server, &ENTITIES).await;
    // The keys sent are the operation ids saved before the restart.
    let keys = assert_each_key_applied_once(&server);
    let saved: BTreeSet<String> = queue_before
        .iter()
        .map(|item| item.operation_id.as_str().to_owned())
        .collect();
    assert_eq!(keys, saved);
    assert_eq!(server.snapshot()["tasks"]["1"]["title"], "edited offline");
    engine.close().await;
}

/// A small deterministic generator (xorshift64), so failures replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(bound).unwrap()).unwrap()
    }
}

/// Saves `count` random creates, updates and deletes over `entities`,
/// mirroring them in `model`; ids are numbered per entity (so entities
/// share ids) and a deleted id is never used again.
async fn random_changes(
    engine: &OfflineSyncEngine,
    entities: &[&str],
    model: &mut State,
    next_id: &mut [u64],
    rng: &mut Rng,
    count: usize,
) {
    for step in 0..count {
        let e = rng.below(entities.len());
        let entity = entities[e];
        let records = model.entry(entity.to_owned()).or_default();
        let roll = rng.below(10);
        let existing = (!records.is_empty()).then(|| {
            let index = rng.below(records.len());
            records.keys().nth(index).unwrap().clone()
        });
        match (roll, existing) {
            (4..=7, Some(id)) => {
                let data = json!({"id": id, "entity": entity, "step": step, "kind": "update"});
                engine
                    .save(entity, &id, data.clone(), SyncOperation::Update)
                    .await
                    .unwrap();
                records.insert(id, data);
            }
            (8..=9, Some(id)) => {
                engine
                    .save(entity, &id, json!({}), SyncOperation::Delete)
                    .await
                    .unwrap();
                records.remove(&id);
            }
            _ => {
                let id = next_id[e].to_string();
                next_id[e] += 1;
                let data = json!({"id": id, "entity": entity, "step": step, "kind": "create"});
                engine
                    .save(entity, &id, data.clone(), SyncOperation::Create)
                    .await
                    .unwrap();
                records.insert(id, data);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_offline_operations_drain_to_the_local_state_each_applied_once() {
    const ENTITIES: [&str; 4] = ["tasks", "notes", "customers", "orders"];
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = manual();
    options.concurrency = 4;
    let engine = open(dir.path(), &server, options).await;
    let mut model = State::new();
    let mut next_id = [0u64; 4];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    // Online: records for the offline work to edit and delete.
    random_changes(&engine, &ENTITIES, &mut model, &mut next_id, &mut rng, 80).await;
    sync(&engine).await;
    drain(&engine).await;
    assert_converged(&engine, &server, &ENTITIES).await;
    engine.clear_synced().await.unwrap();
    let applied_before = server.applied_requests().len();

    // Offline: a thousand changes.
    server.stop().await;
    random_changes(&engine, &ENTITIES, &mut model, &mut next_id, &mut rng, 1000).await;
    assert_eq!(local_state(&engine, &ENTITIES).await, model);
    let queue = engine.queue().await.unwrap();
    assert!(
        queue.len() > 200,
        "the mix should leave plenty to send: {}",
        queue.len()
    );
    assert!(
        queue.iter().all(|item| item.status == SyncStatus::Pending),
        "{queue:#?}"
    );
    for operation in [
        SyncOperation::Create,
        SyncOperation::Update,
        SyncOperation::Delete,
    ] {
        assert!(
            queue.iter().any(|item| item.operation == operation),
            "no {operation} queued"
        );
    }

    server.resume().await.unwrap();
    let report = sync(&engine).await;
    assert_eq!(report.failed, 0, "{report:?}");
    drain(&engine).await;
    assert_converged(&engine, &server, &ENTITIES).await;
    assert_eq!(local_state(&engine, &ENTITIES).await, model);

    // Each queued change took effect exactly once, under its own key.
    let keys = assert_each_key_applied_once(&server);
    let applied = server.applied_requests();
    assert_eq!(applied.len() - applied_before, queue.len());
    let queued_keys: BTreeSet<String> = queue
        .iter()
        .map(|item| item.operation_id.as_str().to_owned())
        .collect();
    assert!(queued_keys.is_subset(&keys));
    assert_no_record_created_twice(&server);
    // Nothing was ever uncertain, so nothing was checked first.
    let log = server.request_log();
    assert!(
        log.iter().all(|record| record.method.as_str() != "GET"),
        "unexpected GETs: {:#?}",
        log.iter()
            .filter(|record| record.method.as_str() == "GET")
            .collect::<Vec<_>>()
    );
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_in_the_middle_of_a_drain_neither_loses_nor_duplicates() {
    const ENTITIES: [&str; 3] = ["tasks", "notes", "customers"];
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = manual();
    options.concurrency = 2;
    options.retry_base_delay = Duration::from_millis(50);
    let engine = open(dir.path(), &server, options).await;
    let mut model = State::new();
    let mut next_id = [0u64; 3];
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);

    random_changes(&engine, &ENTITIES, &mut model, &mut next_id, &mut rng, 60).await;
    sync(&engine).await;
    drain(&engine).await;
    engine.clear_synced().await.unwrap();
    let applied_before = server.applied_requests().len();

    server.stop().await;
    random_changes(&engine, &ENTITIES, &mut model, &mut next_id, &mut rng, 400).await;
    let queue = engine.queue().await.unwrap();
    let log_before = server.request_log().len();

    // Up, and down again while the drain is under way.
    server.resume().await.unwrap();
    let running = tokio::spawn({
        let engine = engine.clone();
        async move { engine.sync_manager().sync_now().await }
    });
    tokio::time::timeout(HANG_GUARD, async {
        while server.request_log().len() < log_before + 20 && !running.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the drain never started");
    server.stop().await;
    tokio::time::timeout(HANG_GUARD, running)
        .await
        .expect("the interrupted sync hung")
        .unwrap()
        .unwrap();

    // Back for good.
    server.resume().await.unwrap();
    sync(&engine).await;
    drain(&engine).await;
    assert_converged(&engine, &server, &ENTITIES).await;
    assert_eq!(local_state(&engine, &ENTITIES).await, model);
    let keys = assert_each_key_applied_once(&server);
    assert_eq!(
        server.applied_requests().len() - applied_before,
        queue.len(),
        "each queued change must take effect exactly once"
    );
    let queued_keys: BTreeSet<String> = queue
        .iter()
        .map(|item| item.operation_id.as_str().to_owned())
        .collect();
    assert!(queued_keys.is_subset(&keys));
    assert_no_record_created_twice(&server);
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_synced_change_is_one_request() {
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, manual()).await;

    let steps = [
        (json!({"id": "1", "title": "new"}), SyncOperation::Create, "POST"),
        (
            json!({"id": "1", "title": "edited"}),
            SyncOperation::Update,
            "PUT",
        ),
        (json!({}), SyncOperation::Delete, "DELETE"),
    ];
    for (data, operation, method) in steps {
        let saved = engine.save("tasks", "1", data, operation).await.unwrap();
        let key = saved.item.expect("a change to send").operation_id;
        server.clear_request_log();
        let report = sync(&engine).await;
        assert_eq!((report.sent, report.failed), (1, 0), "{report:?}");
        let log = server.request_log();
        assert_eq!(log.len(), 1, "{operation}: {log:#?}");
        let request = &log[0];
        assert_eq!(request.method.as_str(), method);
        assert_eq!(
            (request.collection.as_str(), request.id.as_deref()),
            ("tasks", Some("1"))
        );
        assert!(request.applied && !request.replayed, "{request:?}");
        assert_eq!(request.idempotency_key.as_deref(), Some(key.as_str()));
    }
    assert_converged(&engine, &server, &["tasks"]).await;
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_sync_drains_once_the_api_comes_back() {
    const ENTITIES: [&str; 2] = ["tasks", "notes"];
    let server = start_server().await;
    server.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = manual();
    options.connectivity_check_interval = Some(Duration::from_millis(100));
    let engine = open(dir.path(), &server, options).await;
    for id in ["1", "2", "3"] {
        engine
            .save("tasks", id, json!({"id": id}), SyncOperation::Create)
            .await
            .unwrap();
    }
    engine
        .save("notes", "1", json!({"id": "1"}), SyncOperation::Create)
        .await
        .unwrap();

    engine.sync_manager().start_auto_sync();
    // While the API is down nothing can drain, however long we wait.
    assert!(
        !engine
            .wait_until_drained(Duration::from_millis(500))
            .await
            .unwrap()
    );
    assert!(server.request_log().is_empty());

    server.resume().await.unwrap();
    drain(&engine).await;
    assert_converged(&engine, &server, &ENTITIES).await;
    engine.sync_manager().stop_auto_sync();
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_after_save_drains_without_being_asked() {
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, OfflineSyncOptions::default()).await;
    for id in ["1", "2"] {
        engine
            .save(
                "tasks",
                id,
                json!({"id": id, "title": "auto"}),
                SyncOperation::Create,
            )
            .await
            .unwrap();
    }
    engine
        .save(
            "tasks",
            "1",
            json!({"id": "1", "title": "auto, edited"}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    drain(&engine).await;
    assert_converged(&engine, &server, &["tasks"]).await;
    assert_each_key_applied_once(&server);
    assert_no_record_created_twice(&server);
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_change_is_parked_until_fixed_and_others_still_sync() {
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, manual()).await;

    // The server refuses this body (400: the id must be a string or a number).
    engine
        .save("tasks", "1", json!({"id": true}), SyncOperation::Create)
        .await
        .unwrap();
    engine
        .save("tasks", "2", json!({"id": "2"}), SyncOperation::Create)
        .await
        .unwrap();
    let report = sync(&engine).await;
    assert_eq!((report.sent, report.failed), (1, 1), "{report:?}");
    let item = engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert!(item.is_parked(), "{item:#?}");
    assert_eq!(item.retry_count, 1);
    assert!(
        item.last_error.as_deref().unwrap_or_default().contains("400"),
        "{item:#?}"
    );
    assert_eq!(
        engine.queue_item("tasks", "2").await.unwrap().unwrap().status,
        SyncStatus::Synced
    );

    // Parked items wait for the app: a new pass does not retry them...
    server.clear_request_log();
    sync(&engine).await;
    assert!(server.request_log().is_empty(), "{:#?}", server.request_log());
    // ...an explicit retry does (and fails the same way)...
    assert!(engine.retry("tasks", "1").await.unwrap());
    sync(&engine).await;
    let item = engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert!(item.is_parked(), "{item:#?}");
    assert_eq!(item.retry_count, 2);
    // ...and a corrected change goes through.
    engine
        .save(
            "tasks",
            "1",
            json!({"id": "1", "fixed": true}),
            SyncOperation::Update,
        )
        .await
        .unwrap();
    let report = sync(&engine).await;
    assert_eq!((report.sent, report.failed), (1, 0), "{report:?}");
    assert_converged(&engine, &server, &["tasks"]).await;
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_meeting_an_existing_record_is_sent_as_an_update_in_the_same_attempt() {
    let server = start_server().await;
    let other_dir = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Another client created the record first.
    let other = open(other_dir.path(), &server, manual()).await;
    other
        .save(
            "tasks",
            "1",
            json!({"id": "1", "by": "other"}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    assert_eq!(sync(&other).await.sent, 1);
    other.close().await;

    let mut options = manual();
    options.retry_base_delay = Duration::from_millis(50);
    let engine = open(dir.path(), &server, options).await;
    engine
        .save(
            "tasks",
            "1",
            json!({"id": "1", "by": "us"}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    server.clear_request_log();
    sync(&engine).await;
    drain(&engine).await;
    let log = server.request_log();
    assert_eq!(
        methods(&requests(&log, "tasks", "1")),
        ["POST", "PUT"],
        "{log:#?}"
    );
    // The 409 says the server holds the record: an update follows at once.
    assert_eq!(log[0].status.as_u16(), 409);
    assert!(log[1].applied);
    assert_converged(&engine, &server, &["tasks"]).await;
    assert_eq!(server.snapshot()["tasks"]["1"]["by"], "us");
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_write_wins_keeps_the_newer_copy_on_both_sides() {
    let server = start_server().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = OfflineSync::builder(dir_a.path(), server.url())
        .probe_api_health("/health")
        .options(manual())
        .conflict_resolver(LastWriteWins::new("updatedAt"))
        .build()
        .await
        .unwrap();
    let b = open(dir_b.path(), &server, manual()).await;

    let doc = |by: &str, at: &str| json!({"id": "1", "by": by, "updatedAt": at});
    a.save(
        "notes",
        "1",
        doc("a", "2024-01-01T00:00:00Z"),
        SyncOperation::Create,
    )
    .await
    .unwrap();
    sync(&a).await;
    // B edits later than A's offline edit below.
    b.save(
        "notes",
        "1",
        doc("b", "2024-01-03T00:00:00Z"),
        SyncOperation::Update,
    )
    .await
    .unwrap();
    sync(&b).await;
    a.save(
        "notes",
        "1",
        doc("a", "2024-01-02T00:00:00Z"),
        SyncOperation::Update,
    )
    .await
    .unwrap();
    let report = sync(&a).await;
    assert_eq!((report.sent, report.failed), (1, 0), "{report:?}");
    assert_converged(&a, &server, &["notes"]).await;
    assert_eq!(a.get_record("notes", "1").await.unwrap().unwrap().data["by"], "b");

    // A newer local edit wins over the server's copy.
    a.save(
        "notes",
        "1",
        doc("a", "2024-01-04T00:00:00Z"),
        SyncOperation::Update,
    )
    .await
    .unwrap();
    sync(&a).await;
    assert_converged(&a, &server, &["notes"]).await;
    assert_eq!(server.snapshot()["notes"]["1"]["by"], "a");
    a.close().await;
    b.close().await;
}
