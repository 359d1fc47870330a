//! Typed collections over the in-memory store and the fake server, in
//! paused tokio time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sync_core::{BoxStream, RecordKey, SyncOperation, ValidationError};
use sync_engine::{Collection, OfflineSyncEngine, OfflineSyncOptions, SyncError, TokioClock, TypedRecords};
use sync_testkit::{FakeAdapter, FakeMonitor, MemoryStore};
use tokio_stream::StreamExt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    id: String,
    title: String,
    done: bool,
}

/// An integer id in a field of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ticket {
    number: u64,
    subject: String,
}

struct Rig {
    engine: OfflineSyncEngine,
    server: FakeAdapter,
    tasks: Collection<Task>,
}

async fn rig() -> Rig {
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options.connectivity_check_interval = None;
    let server = FakeAdapter::new();
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        Arc::new(server.clone()),
        Arc::new(FakeMonitor::new(true)),
    )
    .options(options)
    .clock(Arc::new(TokioClock::new()))
    .build()
    .await
    .unwrap();
    let tasks = engine.collection::<Task>("tasks").unwrap();
    Rig {
        engine,
        server,
        tasks,
    }
}

fn task(id: &str, title: &str) -> Task {
    Task {
        id: id.into(),
        title: title.into(),
        done: false,
    }
}

fn key(entity: &str, id: &str) -> RecordKey {
    RecordKey::new(entity.parse().unwrap(), id.parse().unwrap())
}

/// The records sorted by id (the engine lists most recently updated
/// first, and saves in paused time share one instant).
fn by_id(mut typed: TypedRecords<Task>) -> TypedRecords<Task> {
    typed.records.sort_by(|a, b| a.id.cmp(&b.id));
    typed
}

#[tokio::test(start_paused = true)]
async fn saved_values_read_back_typed() {
    let rig = rig().await;
    let milk = task("1", "Buy milk");
    let bread = task("2", "Buy bread");
    rig.tasks.save(&milk).await.unwrap();
    rig.tasks.save(&bread).await.unwrap();

    assert_eq!(rig.tasks.get("1").await.unwrap(), Some(milk.clone()));
    assert_eq!(rig.tasks.get(&bread.id).await.unwrap(), Some(bread.clone()));
    assert_eq!(rig.tasks.get("3").await.unwrap(), None);
    let all = by_id(rig.tasks.all().await.unwrap());
    assert_eq!(all.records, vec![milk.clone(), bread]);
    assert!(all.unreadable.is_empty());
    // Stored as the plain JSON of the value, under the id read from it.
    let stored = rig.engine.get_record("tasks", "1").await.unwrap().unwrap();
    assert_eq!(Value::Object(stored.data), serde_json::to_value(&milk).unwrap());
    assert_eq!(rig.tasks.id_of(&milk).unwrap().as_str(), "1");
}

#[tokio::test(start_paused = true)]
async fn an_integer_id_in_a_custom_field_is_its_decimal_string() {
    let rig = rig().await;
    let tickets = rig
        .engine
        .collection::<Ticket>("tickets")
        .unwrap()
        .id_field("number");
    let printer = Ticket {
        number: 42,
        subject: "Printer jammed".into(),
    };
    tickets.save(&printer).await.unwrap();

    assert_eq!(
        rig.engine
            .get_record("tickets", "42")
            .await
            .unwrap()
            .unwrap()
            .data["number"],
        42
    );
    assert_eq!(tickets.get(42).await.unwrap(), Some(printer.clone()));
    assert_eq!(tickets.all().await.unwrap().records, vec![printer.clone()]);
    // The default field is `id`, which a ticket has not.
    let default_field = rig.engine.collection::<Ticket>("tickets").unwrap();
    assert!(matches!(
        default_field.save(&printer).await,
        Err(SyncError::Invalid(ValidationError::InvalidIdField { ref field, found: "missing" })) if field == "id"
    ));
    // A negative integer is an id too.
    let signed = rig.engine.collection::<Value>("signed").unwrap();
    signed.save(&json!({"id": -7})).await.unwrap();
    assert!(rig.engine.get_record("signed", "-7").await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn saving_a_known_record_again_reaches_the_server_as_an_update() {
    let rig = rig().await;
    let mut milk = task("1", "Buy milk");
    rig.tasks.save(&milk).await.unwrap();
    let first = rig.engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!(first.operation, SyncOperation::Create);
    rig.engine.sync_manager().sync_now().await.unwrap();

    milk.done = true;
    rig.tasks.save(&milk).await.unwrap();
    let second = rig.engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!(second.operation, SyncOperation::Update);
    let report = rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!((report.failed, report.still_pending), (0, 0));

    assert_eq!(rig.server.methods_for(&key("tasks", "1")), vec!["POST", "PUT"]);
    assert_eq!(rig.server.records()[&key("tasks", "1")]["done"], true);
}

#[tokio::test(start_paused = true)]
async fn update_says_the_server_has_a_record_this_device_never_saw() {
    let rig = rig().await;
    let milk = task("1", "Buy milk");
    rig.server.insert(
        key("tasks", "1"),
        serde_json::from_value(json!({"id": "1"})).unwrap(),
    );

    rig.tasks.update(&milk).await.unwrap();
    let item = rig.engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!(item.operation, SyncOperation::Update);
    rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(rig.server.methods_for(&key("tasks", "1")), vec!["PUT"]);
    assert_eq!(rig.server.records()[&key("tasks", "1")]["title"], "Buy milk");
}

#[tokio::test(start_paused = true)]
async fn delete_removes_the_record_here_and_on_the_server() {
    let rig = rig().await;
    rig.tasks.save(&task("1", "Buy milk")).await.unwrap();
    rig.tasks.save(&task("2", "Buy bread")).await.unwrap();
    rig.engine.sync_manager().sync_now().await.unwrap();

    rig.tasks.delete("1").await.unwrap();
    assert_eq!(rig.tasks.get("1").await.unwrap(), None);
    assert_eq!(
        rig.tasks.all().await.unwrap().records,
        vec![task("2", "Buy bread")]
    );
    let item = rig.engine.queue_item("tasks", "1").await.unwrap().unwrap();
    assert_eq!(item.operation, SyncOperation::Delete);
    rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(rig.server.methods_for(&key("tasks", "1")), vec!["POST", "DELETE"]);
    assert!(!rig.server.records().contains_key(&key("tasks", "1")));
    assert!(rig.server.records().contains_key(&key("tasks", "2")));
}

/// A value that serializes to a string, not an object.
#[derive(Serialize, Deserialize)]
struct Title(String);

/// A task whose id may be absent.
#[derive(Serialize, Deserialize)]
struct Draft {
    id: Option<String>,
    title: String,
}

#[tokio::test(start_paused = true)]
async fn values_without_a_usable_id_are_typed_errors_and_save_nothing() {
    let rig = rig().await;
    let values = rig.engine.collection::<Value>("tasks").unwrap();
    let id_field = |found: &'static str| ValidationError::InvalidIdField {
        field: "id".into(),
        found,
    };
    let cases = [
        (json!({"title": "no id"}), id_field("missing")),
        (json!({"id": null}), id_field("null")),
        (json!({"id": true}), id_field("a boolean")),
        (json!({"id": 1.5}), id_field("a fractional number")),
        (json!({"id": ["1"]}), id_field("an array")),
        (json!({"id": {"n": 1}}), id_field("an object")),
        (json!({"id": ""}), ValidationError::Empty { what: "record id" }),
        (
            json!(["1"]),
            ValidationError::PayloadNotObject { found: "an array" },
        ),
        (
            json!("1"),
            ValidationError::PayloadNotObject { found: "a string" },
        ),
    ];
    for (value, expected) in cases {
        for result in [values.save(&value).await, values.update(&value).await] {
            match result {
                Err(SyncError::Invalid(invalid)) => assert_eq!(invalid, expected, "for {value}"),
                other => panic!("{value}: expected {expected:?}, got {other:?}"),
            }
        }
    }

    let drafts = rig.engine.collection::<Draft>("tasks").unwrap();
    let draft = Draft {
        id: None,
        title: "no id yet".into(),
    };
    let error = drafts.save(&draft).await.unwrap_err();
    assert!(matches!(error, SyncError::Invalid(ref invalid) if *invalid == id_field("null")));
    assert!(error.to_string().contains("id_field"), "says what to do: {error}");
    let titles = rig.engine.collection::<Title>("tasks").unwrap();
    assert!(matches!(
        titles.save(&Title("x".into())).await,
        Err(SyncError::Invalid(ValidationError::PayloadNotObject {
            found: "a string"
        }))
    ));

    assert!(rig.engine.queue().await.unwrap().is_empty());
    assert!(rig.engine.get_records("tasks").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_bad_entity_name_is_refused_when_the_collection_is_made() {
    let rig = rig().await;
    assert!(matches!(
        rig.engine.collection::<Task>(""),
        Err(SyncError::Invalid(ValidationError::Empty { what: "entity name" }))
    ));
    assert!(matches!(
        rig.engine.collection::<Task>("ta\0sks"),
        Err(SyncError::Invalid(ValidationError::ControlCharacter { .. }))
    ));
}

/// Two typed tasks and, between them, a document saved untyped without
/// the `done` field.
async fn with_an_unreadable_document(rig: &Rig) {
    rig.tasks.save(&task("1", "Buy milk")).await.unwrap();
    rig.engine
        .save(
            "tasks",
            "2",
            json!({"id": "2", "title": "no done"}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    rig.tasks.save(&task("3", "Buy bread")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_document_that_no_longer_reads_is_listed_apart() {
    let rig = rig().await;
    with_an_unreadable_document(&rig).await;

    let all = by_id(rig.tasks.all().await.unwrap());
    assert_eq!(all.records, vec![task("1", "Buy milk"), task("3", "Buy bread")]);
    assert_eq!(all.unreadable.len(), 1);
    assert_eq!(all.unreadable[0].id.as_str(), "2");
    assert!(
        all.unreadable[0].error.contains("missing field `done`"),
        "{}",
        all.unreadable[0].error
    );

    match rig.tasks.get("2").await {
        Err(SyncError::Json(error)) => {
            let message = error.to_string();
            assert!(
                message.contains("\"2\"") && message.contains("tasks") && message.contains("done"),
                "names the record and the problem: {message}"
            );
        }
        other => panic!("expected a JSON error naming the record, got {other:?}"),
    }
    assert_eq!(rig.tasks.get("1").await.unwrap(), Some(task("1", "Buy milk")));
}

/// The stream's next value, sorted by id.
async fn next(watched: &mut BoxStream<TypedRecords<Task>>) -> TypedRecords<Task> {
    let next = tokio::time::timeout(Duration::from_secs(5), watched.next()).await;
    by_id(next.expect("a value in time").expect("the stream goes on"))
}

#[tokio::test(start_paused = true)]
async fn watch_yields_the_typed_list_and_a_new_one_after_a_save() {
    let rig = rig().await;
    with_an_unreadable_document(&rig).await;
    let mut watched = rig.tasks.watch();
    let first = next(&mut watched).await;
    assert_eq!(first.records, vec![task("1", "Buy milk"), task("3", "Buy bread")]);
    assert_eq!(first.unreadable.len(), 1);
    assert_eq!(first.unreadable[0].id.as_str(), "2");

    // Fixing the unreadable document through the collection moves it over.
    rig.tasks.save(&task("2", "now typed")).await.unwrap();
    let second = next(&mut watched).await;
    assert_eq!(
        second.records,
        vec![
            task("1", "Buy milk"),
            task("2", "now typed"),
            task("3", "Buy bread")
        ]
    );
    assert!(second.unreadable.is_empty());
}

/// Compiled, never run: a collection is `Send + Sync`, and so are its
/// futures and streams, so apps can hold them in spawned tasks.
fn _collections_and_their_futures_are_send(tasks: &Collection<Task>, value: &Task) {
    fn send_sync<V: Send + Sync>(_: &V) {}
    fn send<V: Send>(_: V) {}
    send_sync(tasks);
    send(tasks.save(value));
    send(tasks.update(value));
    send(tasks.delete("1"));
    send(tasks.get("1"));
    send(tasks.all());
    send(tasks.watch());
    send(tasks.clone());
}

/// An unreadable document's error names the field and what was expected,
/// never the document's values (errors carry no payloads).
#[tokio::test(start_paused = true)]
async fn an_unreadable_documents_error_does_not_quote_its_values() {
    let rig = rig().await;
    rig.engine
        .save(
            "tasks",
            "s",
            json!({"id": "s", "title": "t", "done": "card 4111 1111 1111 1111"}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    let all = rig.tasks.all().await.unwrap();
    let error = &all.unreadable[0].error;
    assert!(!error.contains("4111"), "{error}");
    assert!(
        error.contains("invalid type: a string") && error.contains("expected a boolean"),
        "{error}"
    );
    match rig.tasks.get("s").await {
        Err(error) => assert!(!error.to_string().contains("4111"), "{error}"),
        Ok(value) => panic!("{:?}", value.map(|task| task.title)),
    }
}

/// `create` makes a new record, and refuses (saving nothing) an id a local
/// document has already; `save` edits it.
#[tokio::test(start_paused = true)]
async fn create_refuses_an_id_that_exists_and_save_edits_it() {
    let rig = rig().await;
    rig.tasks.create(&task("1", "Buy milk")).await.unwrap();
    let error = rig.tasks.create(&task("1", "Buy bread")).await.unwrap_err();
    assert!(
        matches!(
            error,
            SyncError::Invalid(sync_core::ValidationError::RecordExists)
        ),
        "{error:?}"
    );
    assert_eq!(
        rig.tasks.get("1").await.unwrap(),
        Some(task("1", "Buy milk")),
        "nothing saved"
    );
    rig.tasks.save(&task("1", "Buy bread")).await.unwrap();
    assert_eq!(rig.tasks.get("1").await.unwrap(), Some(task("1", "Buy bread")));
    rig.engine.sync_manager().sync_now().await.unwrap();
    assert_eq!(rig.server.methods_for(&key("tasks", "1")), ["POST"]);
}
