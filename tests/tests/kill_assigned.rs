//! The kill test of server-assigned ids (issue 14): a child process runs
//! the engine (the facade: real SQLite store, real HTTP adapter, requests
//! in parallel) against the reference server in its assigned-ids mode,
//! which lives in this process and keeps running across the child's
//! restarts. The child creates projects and tasks with `create` (each task
//! names its project by the temporary id the project got), edits records
//! through their temporary ids (read, change, save; often right after the
//! create, while it is still in flight), and deletes a few, while it syncs
//! as it goes. It is killed with SIGKILL many times and restarted on the
//! same database.
//!
//! # Aiming at the window
//!
//! The server holds every answer to a `POST` back for [`ANSWER_DELAY`]
//! after applying it (`Fault::Delay`; a few are lost outright,
//! `Fault::LoseResponse`). Most rounds watch the server's id counter and
//! kill the child at a random moment within that delay (and a little
//! after) once a create was applied: between the server applying the
//! create and the engine's outcome transaction that renames the record.
//! The other rounds kill at a random time. After every kill the database
//! tells whether it landed there: a record whose create the server applied
//! (and answered, not lost) is still under its temporary id locally. Those
//! kills are counted (`kills_in_window`) and, with 10 kills or more, must
//! be at least a quarter of them.
//!
//! # Checked after every kill
//!
//! The local records are exactly the effect of the saves the child
//! acknowledged (and perhaps of the one the kill interrupted): each live
//! record is there once with the fields last saved, and nothing else. A
//! record still under its temporary id is the one the app got from
//! `create`; a renamed one resolves from its temporary id. A task names
//! its project by the project's id as the project is stored now: a
//! temporary id only while the project is still under it (the rename
//! rewrote the reference in the same transaction), and no change waiting
//! in the queue names a temporary id that was renamed.
//!
//! # At the end
//!
//! The last child drains (nothing parked). Then: every record is under
//! its server id locally, its temporary id resolving to it; the server
//! holds exactly one record per live record (counted by the app's own
//! `key` field; no applied create twice for a key, nor, with the lookup
//! field, for a `client_ref`), none missing and none extra, each equal to
//! the local document on the app's fields, a task's `project_id` and the
//! id (not on `client_ref`: a `PUT` that replaces the document drops it
//! after the rename, which is allowed) and holding the app's last save;
//! every create the server applied carried the app's fields (never a
//! record the app did not save); no field on the server (nor in any write
//! the server applied) holds a temporary id but `client_ref`; every task
//! names a project the server holds, and in the server's log no task write
//! ever arrived naming a project the server did not hold then (no child
//! before its parent).
//!
//! It runs twice: against a server that honours `Idempotency-Key`, with
//! no lookup field (a lost answer is recovered by posting again under the
//! same key, which the server replays), and against one that ignores the
//! keys, with `RequestShape::rest().local_id_field("client_ref")` (a lost
//! answer is recovered by `GET /{entity}?client_ref=tmp-…`): there only
//! the lookup stands between a kill and a record created twice.
//!
//! `SYNC_CHAOS_KILLS` (default 12 per run, so plain `cargo test` takes a
//! few seconds) sets the number of kills, `SYNC_CHAOS_SEED` replays a
//! run's choices (the seed prints at the start and in every failure; the
//! timing of two processes is not replayed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod chaos_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use chaos_support::{
    Rng, assert_each_key_applied_at_most_once, child_command, env_u64, mode_label, report_line, seed_from_env,
};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sync_facade::implement::SyncStore;
use sync_facade::prelude::*;
use sync_facade::{EntityName, RecordId, RecordKey, SqliteStore, SqliteStoreOptions};
use sync_reference_server::{
    Fault, FaultPlan, IdempotencyMode, ReferenceServer, RequestRecord, ServerConfig,
};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

const CHILD_DIR: &str = "SYNC_KILL_ASSIGNED_CHILD_DIR";
const CHILD_URL: &str = "SYNC_KILL_ASSIGNED_CHILD_URL";
const CHILD_SEED: &str = "SYNC_KILL_ASSIGNED_CHILD_SEED";
const CHILD_ROUND: &str = "SYNC_KILL_ASSIGNED_CHILD_ROUND";
const CHILD_MODEL: &str = "SYNC_KILL_ASSIGNED_CHILD_MODEL";
const CHILD_LOOKUP: &str = "SYNC_KILL_ASSIGNED_CHILD_LOOKUP";
const CHILD_CONCURRENCY: &str = "SYNC_KILL_ASSIGNED_CHILD_CONCURRENCY";
const CHILD_DRAIN: &str = "SYNC_KILL_ASSIGNED_CHILD_DRAIN";

const ENTITIES: [&str; 2] = ["projects", "tasks"];

/// The field that carries the temporary id in creates, with the lookup.
const LOCAL_ID_FIELD: &str = "client_ref";

/// The fields the app writes (beside a task's `project_id`).
const APP_FIELDS: [&str; 5] = ["key", "name", "title", "seq", "note"];

/// How long the server holds the answer to a create after applying it.
const ANSWER_DELAY: Duration = Duration::from_millis(12);

/// The share of creates whose answer the server loses after applying them.
const LOST_ANSWERS: f64 = 0.05;

/// The child's lines start with this (the test harness may print before
/// them on the same line).
const MARK: &str = "@@";

/// Only a guard against hangs.
const HANG_GUARD: Duration = Duration::from_secs(90);

/// How long the last child may take to drain (well within [`HANG_GUARD`],
/// so its own report of what is stuck comes first).
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// A live record the app knows, handed to the next child.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    entity: String,
    key: String,
    /// The id the app holds: the temporary id `create` gave it (the server's
    /// id only when the app never learned the temporary one).
    handle: String,
    /// A task's project, by key.
    project: Option<String>,
    /// A project that never gets tasks, and so may be deleted.
    empty: bool,
}

/// One save of the child, printed before it is made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Create {
        entity: String,
        key: String,
        data: Value,
        project: Option<String>,
        empty: bool,
    },
    Edit {
        entity: String,
        key: String,
        handle: String,
        seq: u64,
        note: String,
    },
    Delete {
        entity: String,
        key: String,
        handle: String,
    },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Self::Create { key, .. } | Self::Edit { key, .. } | Self::Delete { key, .. } => key,
        }
    }
}

fn is_temporary(text: &str) -> bool {
    text.parse::<RecordId>().is_ok_and(|id| id.is_temporary())
}

/// The app's fields of a document.
fn app_fields(document: &Map<String, Value>) -> Map<String, Value> {
    APP_FIELDS
        .iter()
        .filter_map(|field| {
            document
                .get(*field)
                .map(|value| ((*field).to_owned(), value.clone()))
        })
        .collect()
}

/// An id as text, from a string or a number.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

async fn open_engine(dir: &str, url: String, lookup: bool, concurrency: usize) -> OfflineSyncEngine {
    let shape = if lookup {
        RequestShape::rest().local_id_field(LOCAL_ID_FIELD)
    } else {
        RequestShape::rest()
    };
    OfflineSync::builder(dir, url)
        .probe_api_health("/health")
        .shape(shape)
        .reference("tasks", "project_id", "projects")
        .options(
            OfflineSyncOptions::default()
                .retry_base_delay(Duration::from_millis(20))
                .concurrency(concurrency),
        )
        .build()
        .await
        .unwrap()
}

/// The child: opens the engine on `CHILD_DIR` and prints `ready`; then
/// either makes random saves over the records of `CHILD_MODEL` and those
/// it creates (printing `op {…}` before each save and `ack {…}` once it
/// returned, with the temporary id for a create) while a task of its own
/// syncs, until it is killed; or, with `CHILD_DRAIN`, syncs until nothing
/// is pending and prints `drained`. Does nothing unless spawned by the
/// tests below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_assigned_child_entry_point() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let url = std::env::var(CHILD_URL).unwrap();
    let seed = env_u64(CHILD_SEED).unwrap();
    let round = env_u64(CHILD_ROUND).unwrap();
    let lookup = env_u64(CHILD_LOOKUP) == Some(1);
    let concurrency = env_u64(CHILD_CONCURRENCY).unwrap() as usize;
    let model = std::fs::read_to_string(std::env::var(CHILD_MODEL).unwrap()).unwrap();
    let mut live: Vec<Known> = serde_json::from_str(&model).unwrap();
    let mut rng = Rng::new(seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let engine = open_engine(&dir, url, lookup, concurrency).await;
    println!("{MARK}ready");
    if std::env::var(CHILD_DRAIN).is_ok() {
        drain(&engine).await;
        engine.close().await;
        println!("{MARK}drained");
        return;
    }

    let manager = engine.sync_manager();
    let mut runs = Rng::new(rng.next());
    let syncing = tokio::spawn(async move {
        loop {
            manager.sync_now().await.unwrap();
            tokio::time::sleep(Duration::from_micros(runs.below(4000))).await;
        }
    });
    for n in 1.. {
        assert!(!syncing.is_finished(), "the sync loop ended");
        tokio::time::sleep(Duration::from_micros(rng.below(2500))).await;
        let op = next_op(&mut rng, &engine, &live, round, n).await;
        let follow = apply(&engine, &mut live, op).await;
        // Often an edit (or, for a task, a delete) right after the create,
        // through the temporary id, while the create is still on its way.
        if let Some(created) = follow {
            let roll = rng.below(10);
            if roll < 3 {
                let op = edit_op(&mut rng, &created, round, n);
                apply(&engine, &mut live, op).await;
            } else if roll == 3 && created.entity == "tasks" {
                let op = Op::Delete {
                    entity: created.entity.clone(),
                    key: created.key.clone(),
                    handle: created.handle.clone(),
                };
                apply(&engine, &mut live, op).await;
            }
        }
    }
}

fn edit_op(rng: &mut Rng, known: &Known, round: u64, n: u64) -> Op {
    Op::Edit {
        entity: known.entity.clone(),
        key: known.key.clone(),
        handle: known.handle.clone(),
        seq: round * 1_000_000 + n * 10 + rng.below(10),
        note: "x".repeat(rng.below(30) as usize),
    }
}

/// A random save over the live records.
async fn next_op(rng: &mut Rng, engine: &OfflineSyncEngine, live: &[Known], round: u64, n: u64) -> Op {
    let keepers: Vec<&Known> = live
        .iter()
        .filter(|known| known.entity == "projects" && !known.empty)
        .collect();
    let deletable: Vec<&Known> = live
        .iter()
        .filter(|known| known.entity == "tasks" || known.empty)
        .collect();
    let roll = rng.below(100);
    if keepers.is_empty() || roll < 15 {
        let key = format!("p{round}.{n}");
        let empty = !keepers.is_empty() && rng.below(3) == 0;
        return Op::Create {
            entity: "projects".to_owned(),
            data: json!({"key": key, "name": format!("project {key}"), "seq": 0, "note": ""}),
            key,
            project: None,
            empty,
        };
    }
    if roll < 50 {
        let project = keepers[rng.below(keepers.len() as u64) as usize];
        // By the temporary id the app got; the server's id (as the
        // document holds it) only for a project whose temporary id the
        // app never learned.
        let project_id = if is_temporary(&project.handle) {
            json!(project.handle)
        } else {
            engine
                .get_record("projects", &project.handle)
                .await
                .unwrap()
                .unwrap()
                .data["id"]
                .clone()
        };
        let key = format!("t{round}.{n}");
        return Op::Create {
            entity: "tasks".to_owned(),
            data: json!({"key": key, "title": format!("task {key}"), "seq": 0, "note": "", "project_id": project_id}),
            key,
            project: Some(project.key.clone()),
            empty: false,
        };
    }
    if roll < 85 || deletable.is_empty() {
        let known = &live[rng.below(live.len() as u64) as usize];
        return edit_op(rng, known, round, n);
    }
    let known = deletable[rng.below(deletable.len() as u64) as usize];
    Op::Delete {
        entity: known.entity.clone(),
        key: known.key.clone(),
        handle: known.handle.clone(),
    }
}

/// Makes one save, printed before and acknowledged after; a create
/// returns the record created.
async fn apply(engine: &OfflineSyncEngine, live: &mut Vec<Known>, op: Op) -> Option<Known> {
    println!("{MARK}op {}", serde_json::to_string(&op).unwrap());
    match op {
        Op::Create {
            entity,
            key,
            data,
            project,
            empty,
        } => {
            let created = engine.create(&entity, data).await.unwrap();
            println!("{MARK}ack {}", json!({"id": created.id.as_str()}));
            let known = Known {
                entity,
                key,
                handle: created.id.as_str().to_owned(),
                project,
                empty,
            };
            live.push(known.clone());
            Some(known)
        }
        Op::Edit {
            entity,
            key,
            handle,
            seq,
            note,
        } => {
            // Read, change, save: through the id the app holds.
            let record = engine
                .get_record(&entity, &handle)
                .await
                .unwrap()
                .unwrap_or_else(|| {
                    panic!("get_record({entity}, {handle}) found nothing: the live record {key} is gone")
                });
            let mut data = record.data;
            data.insert("seq".to_owned(), json!(seq));
            data.insert("note".to_owned(), json!(note));
            engine
                .save(&entity, &handle, Value::Object(data), SyncOperation::Update)
                .await
                .unwrap();
            println!("{MARK}ack null");
            None
        }
        Op::Delete { entity, key, handle } => {
            engine
                .save(&entity, &handle, json!({}), SyncOperation::Delete)
                .await
                .unwrap();
            live.retain(|known| known.key != key);
            println!("{MARK}ack null");
            None
        }
    }
}

/// Syncs until nothing is pending; nothing may park.
async fn drain(engine: &OfflineSyncEngine) {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let report = engine.sync_manager().sync_now().await.unwrap();
        if engine
            .wait_until_drained(Duration::from_millis(50))
            .await
            .unwrap()
        {
            return;
        }
        let queue = engine.queue().await.unwrap();
        let parked: Vec<_> = queue.iter().filter(|item| item.is_parked()).collect();
        assert!(parked.is_empty(), "items parked: {parked:#?}");
        let left: Vec<_> = queue
            .iter()
            .filter(|item| item.status != SyncStatus::Synced)
            .collect();
        assert!(
            Instant::now() < deadline,
            "the child never drained: {report:?}, items left: {left:#?}"
        );
    }
}

/// A record of the app, as the test knows it from the child's lines.
#[derive(Debug, Clone)]
struct Rec {
    entity: String,
    key: String,
    handle: String,
    /// Whether `handle` is the temporary id `create` gave.
    temporary_known: bool,
    project: Option<String>,
    empty: bool,
    /// The app's fields as last saved.
    fields: Map<String, Value>,
    live: bool,
}

/// What the test knows of the app's saves.
#[derive(Debug, Default)]
struct App {
    records: BTreeMap<String, Rec>,
    /// The save the child was making when killed: it may or may not have
    /// landed.
    uncertain: Option<Op>,
    acknowledged: u64,
    /// Creates whose temporary id the app never learned (killed between
    /// the save and its acknowledgement, and renamed before the check).
    temporary_unknown: u64,
    /// Per key, the child's saves and how they ended, for failure reports.
    history: BTreeMap<String, Vec<String>>,
    /// The round running.
    round: u64,
}

impl App {
    /// Takes one line of the child in.
    fn read(&mut self, line: &str) {
        let Some(at) = line.find(MARK) else { return };
        let line = &line[at + MARK.len()..];
        if let Some(op) = line.strip_prefix("op ") {
            assert!(self.uncertain.is_none(), "an op without an ack before: {line}");
            let op: Op = serde_json::from_str(op).unwrap();
            self.note(op.key(), &format!("{op:?}"));
            self.uncertain = Some(op);
        } else if let Some(ack) = line.strip_prefix("ack ") {
            let op = self.uncertain.take().expect("an ack follows an op");
            self.note(op.key(), &format!("ack {ack}"));
            let ack: Value = serde_json::from_str(ack).unwrap();
            let handle = ack["id"].as_str().map(str::to_owned);
            self.landed(op, handle.map(|handle| (handle, true)));
            self.acknowledged += 1;
        }
    }

    fn note(&mut self, key: &str, what: &str) {
        let round = self.round;
        self.history
            .entry(key.to_owned())
            .or_default()
            .push(format!("round {round}: {what}"));
    }

    /// What the test saw of `key`.
    fn story(&self, key: &str) -> String {
        self.history
            .get(key)
            .map(|steps| steps.join("\n  "))
            .unwrap_or_default()
    }

    /// A save that landed; a create with the id the app holds for it.
    fn landed(&mut self, op: Op, handle: Option<(String, bool)>) {
        match op {
            Op::Create {
                entity,
                key,
                data,
                project,
                empty,
            } => {
                let (handle, temporary_known) = handle.expect("a create has an id");
                let fields = app_fields(data.as_object().unwrap());
                self.records.insert(
                    key.clone(),
                    Rec {
                        entity,
                        key,
                        handle,
                        temporary_known,
                        project,
                        empty,
                        fields,
                        live: true,
                    },
                );
            }
            Op::Edit { key, seq, note, .. } => {
                let record = self.records.get_mut(&key).unwrap();
                record.fields.insert("seq".to_owned(), json!(seq));
                record.fields.insert("note".to_owned(), json!(note));
            }
            Op::Delete { key, .. } => {
                self.records.get_mut(&key).unwrap().live = false;
            }
        }
    }

    /// Settles the save the kill interrupted by what the database holds.
    fn settle(&mut self, local: &Local) {
        let Some(op) = self.uncertain.take() else { return };
        let found = local.by_key.get(op.key());
        let landed = match &op {
            Op::Create { .. } => found.is_some(),
            Op::Edit { seq, .. } => found.is_some_and(|found| found.data.get("seq") == Some(&json!(seq))),
            Op::Delete { .. } => found.is_none(),
        };
        let key = op.key().to_owned();
        self.note(
            &key,
            if landed {
                "killed after this save landed"
            } else {
                "killed before this save landed"
            },
        );
        if !landed {
            return;
        }
        let handle = found.filter(|_| matches!(op, Op::Create { .. })).map(|found| {
            if is_temporary(&found.id) {
                (found.id.clone(), true)
            } else if let Some(reference) = found
                .data
                .get(LOCAL_ID_FIELD)
                .and_then(Value::as_str)
                .filter(|text| is_temporary(text))
            {
                (reference.to_owned(), true)
            } else {
                self.temporary_unknown += 1;
                (found.id.clone(), false)
            }
        });
        self.landed(op, handle);
    }

    fn live(&self) -> impl Iterator<Item = &Rec> {
        self.records.values().filter(|record| record.live)
    }

    /// The live records, for the next child.
    fn known(&self) -> Vec<Known> {
        self.live()
            .map(|record| Known {
                entity: record.entity.clone(),
                key: record.key.clone(),
                handle: record.handle.clone(),
                project: record.project.clone(),
                empty: record.empty,
            })
            .collect()
    }
}

/// A local record.
#[derive(Debug, Clone)]
struct Found {
    entity: String,
    id: String,
    data: Map<String, Value>,
}

/// The child's database as it stands.
struct Local {
    by_key: BTreeMap<String, Found>,
    queue: Vec<SyncQueueItem>,
    /// What each record's temporary id resolves to, by key.
    resolved: HashMap<String, String>,
}

async fn read_local(dir: &Path, app: &App) -> Local {
    let store = SqliteStore::open_with(SqliteStoreOptions::in_dir(dir))
        .await
        .unwrap();
    let mut by_key = BTreeMap::new();
    for entity in ENTITIES {
        let name: EntityName = entity.parse().unwrap();
        for record in store.records(&name).await.unwrap() {
            let key = record.data["key"]
                .as_str()
                .unwrap_or_else(|| panic!("a local record without the app's key: {record:?}"))
                .to_owned();
            let found = Found {
                entity: entity.to_owned(),
                id: record.id.as_str().to_owned(),
                data: record.data,
            };
            if let Some(other) = by_key.insert(key.clone(), found) {
                panic!(
                    "two local records with the key {key}: {other:?} and {:?}",
                    by_key[&key]
                );
            }
        }
    }
    let mut resolved = HashMap::new();
    for record in app.live().filter(|record| record.temporary_known) {
        let key = RecordKey::new(record.entity.parse().unwrap(), record.handle.parse().unwrap());
        resolved.insert(
            record.key.clone(),
            store.resolve_id(&key).await.unwrap().as_str().to_owned(),
        );
    }
    let queue = store.queue().await.unwrap();
    store.close().await;
    Local {
        by_key,
        queue,
        resolved,
    }
}

/// The keys of the creates the server applied and answered (or is about
/// to answer: the answer held back) without losing the answer.
fn answered_creates(log: &[RequestRecord]) -> BTreeSet<String> {
    log.iter()
        .filter(|request| {
            request.applied && request.method == Method::POST && request.fault != Some(Fault::LoseResponse)
        })
        .filter_map(|request| request.record.as_ref()?.get("key")?.as_str().map(str::to_owned))
        .collect()
}

/// The server's log of one record (by the app's key, or the id it took),
/// for failure reports.
fn trail(log: &[RequestRecord], entity: &str, key: &str) -> String {
    let ids: BTreeSet<String> = log
        .iter()
        .filter(|request| {
            request.collection == entity
                && request.method == Method::POST
                && request
                    .record
                    .as_ref()
                    .is_some_and(|record| record["key"] == json!(key))
        })
        .filter_map(|request| request.id.clone())
        .collect();
    log.iter()
        .filter(|request| {
            request.collection == entity
                && (request
                    .record
                    .as_ref()
                    .is_some_and(|record| record["key"] == json!(key))
                    || request.id.as_ref().is_some_and(|id| ids.contains(id)))
        })
        .map(|request| {
            format!(
                "{} /{}/{} {}{}{}{}, key {}, leaving {}",
                request.method,
                request.collection,
                request.id.as_deref().unwrap_or(""),
                request.status.as_u16(),
                if request.applied { " applied" } else { "" },
                if request.replayed { " replayed" } else { "" },
                request
                    .fault
                    .as_ref()
                    .map_or_else(String::new, |fault| format!(" {fault:?}")),
                request.idempotency_key.as_deref().unwrap_or("-"),
                request
                    .record
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), Value::to_string)
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Checks the local state against the app's saves (see the file's
/// documentation); returns how many records whose create the server
/// applied at `log[since..]` are still under their temporary id here.
fn check_local(app: &App, local: &Local, log: &[RequestRecord], since: usize, seed: u64, when: &str) -> u64 {
    let answered = answered_creates(&log[since..]);
    let live: BTreeSet<&String> = app.live().map(|record| &record.key).collect();
    let stored: BTreeSet<&String> = local.by_key.keys().collect();
    assert_eq!(
        stored, live,
        "seed {seed}, {when}: the local records are not those the app saved (a save lost, or one \
         brought back)"
    );
    let mut in_window = 0;
    for record in app.live() {
        let found = &local.by_key[&record.key];
        assert_eq!(found.entity, record.entity, "seed {seed}, {when}: {}", record.key);
        if app_fields(&found.data) != record.fields {
            let item = local
                .queue
                .iter()
                .find(|item| item.entity.as_str() == record.entity && item.id.as_str() == found.id);
            panic!(
                "seed {seed}, {when}: {} {} does not hold the app's last save: it holds {:?}, the app saved \
                 {:?}\n the app's saves:\n  {}\n the server's log of it:\n  {}\n its queue item: {item:#?}",
                record.entity,
                record.key,
                app_fields(&found.data),
                record.fields,
                app.story(&record.key),
                trail(log, &record.entity, &record.key)
            );
        }
        if is_temporary(&found.id) {
            assert_eq!(
                found.id, record.handle,
                "seed {seed}, {when}: {} is under another temporary id than create gave",
                record.key
            );
            in_window += u64::from(answered.contains(&record.key));
        } else if record.temporary_known {
            assert_eq!(
                local.resolved[&record.key], found.id,
                "seed {seed}, {when}: the temporary id of {} does not resolve to its server id",
                record.key
            );
        }
        if let Some(project) = &record.project {
            let parent = &local.by_key[project];
            let named = &found.data["project_id"];
            assert_eq!(
                id_text(named).as_deref(),
                Some(parent.id.as_str()),
                "seed {seed}, {when}: task {} names {named} but its project {project} is stored under {} \
                 (a rename that missed a reference)",
                record.key,
                parent.id
            );
        }
    }
    // No waiting change names a temporary id that was renamed.
    let temporary_now: BTreeSet<&str> = local
        .by_key
        .values()
        .filter(|found| is_temporary(&found.id))
        .map(|found| found.id.as_str())
        .collect();
    for item in local
        .queue
        .iter()
        .filter(|item| item.status != SyncStatus::Synced)
    {
        if let Some(named) = item.payload.get("project_id").and_then(Value::as_str)
            && is_temporary(named)
            && !temporary_now.contains(named)
        {
            let project = app
                .records
                .values()
                .find(|record| record.handle == named)
                .map_or("?", |record| record.key.as_str());
            panic!(
                "seed {seed}, {when}: a waiting change names the project {project} by its temporary id \
                 {named}, but the project was renamed (the rename missed a queued reference): {item:#?}\n \
                 the project's saves:\n  {}\n the server's log of it:\n  {}",
                app.story(project),
                trail(log, "projects", project)
            );
        }
    }
    in_window
}

/// Every string holding a temporary id in `value`, but the top level's
/// local-id field.
fn temporary_ids_outside_reference(value: &Value, top: bool, found: &mut Vec<String>) {
    match value {
        Value::String(text) if is_temporary(text) => found.push(text.clone()),
        Value::Array(items) => {
            for item in items {
                temporary_ids_outside_reference(item, false, found);
            }
        }
        Value::Object(fields) => {
            for (field, item) in fields {
                if !(top && field == LOCAL_ID_FIELD) {
                    temporary_ids_outside_reference(item, false, found);
                }
            }
        }
        _ => {}
    }
}

/// Reads the child's lines until `until`, or until `stop` says so (checked
/// every half millisecond); `false` when the child's output ended.
async fn watch(
    lines: &mut Lines<BufReader<ChildStdout>>,
    app: &mut App,
    until: tokio::time::Instant,
    mut stop: impl FnMut() -> bool,
) -> bool {
    loop {
        if stop() || tokio::time::Instant::now() >= until {
            return true;
        }
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => app.read(&line),
                _ => return false,
            },
            () = tokio::time::sleep(Duration::from_micros(500)) => {}
        }
    }
}

/// Waits for a line of the child ending in `what`.
async fn wait_for(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> bool {
    tokio::time::timeout(HANG_GUARD, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.ends_with(&format!("{MARK}{what}")) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_the_servers_answer_and_the_rename_keys_replayed() {
    sigkill_between_answer_and_rename(IdempotencyMode::Replay, false).await;
}

/// The hard case: the server ignores `Idempotency-Key`, so only the
/// lookup by `client_ref` can find what a killed create made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_the_servers_answer_and_the_rename_keys_ignored_lookup_by_client_ref() {
    sigkill_between_answer_and_rename(IdempotencyMode::Ignore, true).await;
}

async fn sigkill_between_answer_and_rename(mode: IdempotencyMode, lookup: bool) {
    let seed = seed_from_env();
    let kills_wanted = env_u64("SYNC_CHAOS_KILLS").unwrap_or(12).max(2);
    let label = format!(
        "kill with server-assigned ids{}{}",
        mode_label(mode),
        if lookup { ", lookup by client_ref" } else { "" }
    );
    println!("{label}: seed {seed}, {kills_wanted} kills (SYNC_CHAOS_SEED replays the choices)");
    let mut rng = Rng::new(seed ^ 0x0A55_16ED);
    let started = Instant::now();

    let faults = FaultPlan::seeded(seed)
        .only_methods(&[Method::POST])
        .with_random(Fault::LoseResponse, LOST_ANSWERS)
        .with_random(Fault::Delay(ANSWER_DELAY), 1.0);
    let server = ReferenceServer::start(
        ServerConfig::new()
            .with_assigned_ids(true)
            .with_idempotency(mode)
            .with_faults(faults),
    )
    .await
    .unwrap();
    let creates_applied = || {
        ENTITIES
            .iter()
            .map(|entity| server.last_assigned_id(entity))
            .sum::<u64>()
    };

    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("child-stderr.log");
    let model = dir.path().join("model.json");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut app = App::default();
    let mut kills = 0u64;
    let mut aimed = 0u64;
    let mut kills_in_window = 0u64;
    let mut records_in_window = 0u64;
    let mut records_checked = 0u64;

    for round in 1..=kills_wanted + 1 {
        let draining = round > kills_wanted;
        app.round = round;
        std::fs::write(&model, serde_json::to_string(&app.known()).unwrap()).unwrap();
        let concurrency = [2, 4, 8][rng.below(3) as usize];
        let mut command = child_command("kill_assigned_child_entry_point", &stderr);
        command
            .env(CHILD_DIR, &data)
            .env(CHILD_URL, server.url())
            .env(CHILD_SEED, seed.to_string())
            .env(CHILD_ROUND, round.to_string())
            .env(CHILD_MODEL, &model)
            .env(CHILD_LOOKUP, u64::from(lookup).to_string())
            .env(CHILD_CONCURRENCY, concurrency.to_string());
        if draining {
            command.env(CHILD_DRAIN, "1");
        }
        // What this child's kill catches: creates applied from now on.
        let since = server.request_log().len();
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(
            wait_for(&mut lines, "ready").await,
            "seed {seed}, round {round}: the child failed to start: {}",
            tail(&stderr)
        );
        if draining {
            assert!(
                wait_for(&mut lines, "drained").await,
                "seed {seed}: the last child never drained: {}",
                tail(&stderr)
            );
            assert!(child.wait().await.unwrap().success());
            break;
        }
        let aimed_now = rng.below(10) < 7;
        let alive = if aimed_now {
            // Aimed: once the server applied one to three more creates, a
            // random moment while its answer is held back, or just after.
            aimed += 1;
            let target = creates_applied() + 1 + rng.below(3);
            let guard = tokio::time::Instant::now() + Duration::from_secs(3);
            let spread = ANSWER_DELAY.as_micros() as u64 + 2_000;
            watch(&mut lines, &mut app, guard, || creates_applied() >= target).await && {
                let until = tokio::time::Instant::now() + Duration::from_micros(rng.below(spread));
                watch(&mut lines, &mut app, until, || false).await
            }
        } else {
            let until = tokio::time::Instant::now() + Duration::from_millis(5 + rng.below(150));
            watch(&mut lines, &mut app, until, || false).await
        };
        assert!(
            alive,
            "seed {seed}, round {round}: the child ended before its kill: {}",
            tail(&stderr)
        );
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills += 1;
        // Lines printed before the signal landed count too.
        while let Ok(Some(line)) = lines.next_line().await {
            app.read(&line);
        }
        let local = read_local(&data, &app).await;
        app.settle(&local);
        let in_window = check_local(
            &app,
            &local,
            &server.request_log(),
            since,
            seed,
            &format!("after kill {kills} (round {round})"),
        );
        records_checked += local.by_key.len() as u64;
        records_in_window += in_window;
        kills_in_window += u64::from(in_window > 0);
        println!(
            "kill {kills} (round {round}, {}): {in_window} records created on the server in this round and \
             not renamed yet",
            if aimed_now { "aimed" } else { "at random" }
        );
    }

    // The last child drained and closed.
    let local = read_local(&data, &app).await;
    let log = server.request_log();
    assert_eq!(
        check_local(&app, &local, &log, 0, seed, "at the end"),
        0,
        "seed {seed}: records left under their temporary ids after the drain"
    );
    assert!(
        local
            .queue
            .iter()
            .all(|item| item.status == SyncStatus::Synced && item.in_flight.is_none()),
        "seed {seed}: items left unsynced: {:#?}",
        local.queue
    );
    let snapshot = server.snapshot();
    for name in snapshot.keys() {
        assert!(
            ENTITIES.contains(&name.as_str()),
            "seed {seed}: the server holds an unexpected collection {name:?}"
        );
    }
    // The server's records by the app's key: one each, none missing, none
    // extra, each the local document.
    let mut on_server: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut twice = Vec::new();
    for entity in ENTITIES {
        for record in server.records(entity) {
            let key = record["key"]
                .as_str()
                .unwrap_or_else(|| panic!("seed {seed}: a server record without the app's key: {record}"))
                .to_owned();
            if on_server
                .insert(key.clone(), (entity.to_owned(), record))
                .is_some()
            {
                twice.push((entity, key));
            }
        }
    }
    assert!(
        twice.is_empty(),
        "seed {seed}: records on the server twice:\n{}",
        twice
            .iter()
            .map(|(entity, key)| format!(
                "{entity} {key}; the app's saves:\n  {}\n the server's log of it:\n  {}",
                app.story(key),
                trail(&log, entity, key)
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let live: BTreeSet<&String> = app.live().map(|record| &record.key).collect();
    let held: BTreeSet<&String> = on_server.keys().collect();
    let odd: Vec<String> = held
        .symmetric_difference(&live)
        .map(|key| {
            let entity = on_server.get(*key).map_or("?", |(entity, _)| entity.as_str());
            format!(
                "{key} ({}); the app's saves:\n  {}\n the server's log of it:\n  {}",
                if live.contains(key) {
                    "missing"
                } else {
                    "left over"
                },
                app.story(key),
                trail(&log, entity, key)
            )
        })
        .collect();
    assert!(
        odd.is_empty(),
        "seed {seed}: the server does not hold exactly the live records:\n{}",
        odd.join("\n")
    );
    for record in app.live() {
        let found = &local.by_key[&record.key];
        let (entity, stored) = &on_server[&record.key];
        assert_eq!(entity, &record.entity);
        assert!(
            !is_temporary(&found.id),
            "seed {seed}: {} is still under a temporary id",
            record.key
        );
        assert_eq!(
            id_text(&stored["id"]).as_deref(),
            Some(found.id.as_str()),
            "seed {seed}: {} is under another id locally than on the server",
            record.key
        );
        // Compared on what the app saved (its fields, a task's project)
        // and the id: not on `client_ref`, which a `PUT` on a server that
        // replaces documents drops after the rename (the lookup is only
        // needed before), nor on the document's own `id`, which a record
        // found holding an older state lacks until the answer to its
        // follow-up update is adopted (checked when present).
        let saved_part = |document: &Map<String, Value>| {
            let mut part = app_fields(document);
            if let Some(project) = document.get("project_id") {
                part.insert("project_id".to_owned(), project.clone());
            }
            part
        };
        assert_eq!(
            saved_part(stored.as_object().unwrap()),
            saved_part(&found.data),
            "seed {seed}: {} differs between the server (left) and the device (right)\n the app's saves:\n  \
             {}\n the server's log of it:\n  {}",
            record.key,
            app.story(&record.key),
            trail(&log, &record.entity, &record.key)
        );
        if let Some(own) = found.data.get("id") {
            assert_eq!(
                own, &stored["id"],
                "seed {seed}: {}'s document names another id than the server's",
                record.key
            );
        }
        assert_eq!(
            app_fields(stored.as_object().unwrap()),
            record.fields,
            "seed {seed}: {} on the server is not the app's last save",
            record.key
        );
        if record.temporary_known {
            assert_eq!(
                local.resolved[&record.key], found.id,
                "seed {seed}: the temporary id of {} does not resolve to its server id",
                record.key
            );
        }
        if let Some(project) = &record.project {
            let (_, parent) = &on_server[project];
            assert_eq!(
                stored["project_id"], parent["id"],
                "seed {seed}: task {} does not name its project {project} by the project's server id",
                record.key
            );
        }
    }
    // The server's log: one create per record, the temporary id only in
    // the local-id field, no task before its project.
    let mut creates_by_key: BTreeMap<String, u64> = BTreeMap::new();
    let mut creates_by_reference: BTreeMap<String, u64> = BTreeMap::new();
    let mut projects_held: BTreeSet<String> = BTreeSet::new();
    let mut temporary_on_server = Vec::new();
    for request in log.iter().filter(|request| request.applied) {
        let record = request.record.as_ref();
        if let Some(record) = record {
            temporary_ids_outside_reference(record, true, &mut temporary_on_server);
        }
        if request.method == Method::POST {
            let record = record.unwrap();
            let key = record["key"]
                .as_str()
                .unwrap_or_else(|| {
                    // The requests of the same operation, and of the id it made.
                    let same: Vec<String> = log
                        .iter()
                        .filter(|other| {
                            (other.collection == request.collection && other.id == request.id)
                                || other.idempotency_key == request.idempotency_key
                        })
                        .map(|other| format!("{other:?}"))
                        .collect();
                    panic!(
                        "seed {seed}: the server applied a create without the app's fields (a record the app \
                         never saved): {request:?}\n its requests:\n  {}",
                        same.join("\n  ")
                    )
                })
                .to_owned();
            *creates_by_key.entry(key.clone()).or_default() += 1;
            if lookup {
                let reference = record[LOCAL_ID_FIELD]
                    .as_str()
                    .unwrap_or_else(|| panic!("seed {seed}: a create without its {LOCAL_ID_FIELD}: {record}"))
                    .to_owned();
                let known = &app.records[&key];
                assert!(
                    !known.temporary_known || known.handle == reference,
                    "seed {seed}: {key} was created with {LOCAL_ID_FIELD} {reference}, not its temporary id {}",
                    known.handle
                );
                *creates_by_reference.entry(reference).or_default() += 1;
            } else {
                assert!(
                    record.get(LOCAL_ID_FIELD).is_none(),
                    "seed {seed}: a {LOCAL_ID_FIELD} without the lookup: {record}"
                );
            }
        }
        match (request.collection.as_str(), &request.method) {
            ("projects", &Method::POST) => {
                projects_held.insert(id_text(&record.unwrap()["id"]).unwrap());
            }
            ("projects", &Method::DELETE) => {
                projects_held.remove(request.id.as_deref().unwrap());
            }
            ("tasks", &Method::POST | &Method::PUT) => {
                let named = &record.unwrap()["project_id"];
                assert!(
                    named.is_u64() && projects_held.contains(&id_text(named).unwrap()),
                    "seed {seed}: a task reached the server naming {named}, a project the server did not hold \
                     then: {request:?}"
                );
            }
            _ => {}
        }
    }
    let created_twice: Vec<_> = creates_by_key
        .iter()
        .chain(&creates_by_reference)
        .filter(|(_, count)| **count > 1)
        .collect();
    assert!(
        created_twice.is_empty(),
        "seed {seed}: records created more than once: {created_twice:?}"
    );
    for key in &live {
        assert_eq!(
            creates_by_key.get(*key),
            Some(&1),
            "seed {seed}: {key} was not created once"
        );
    }
    assert!(
        temporary_on_server.is_empty(),
        "seed {seed}: temporary ids reached the server outside {LOCAL_ID_FIELD}: {temporary_on_server:?}"
    );
    let repeated_writes = match mode {
        IdempotencyMode::Replay => {
            assert_each_key_applied_at_most_once(&server, seed);
            0
        }
        _ => {
            let mut by_key: HashMap<&str, u64> = HashMap::new();
            for request in log.iter().filter(|request| request.applied) {
                *by_key
                    .entry(request.idempotency_key.as_deref().unwrap_or_default())
                    .or_default() += 1;
            }
            by_key.values().map(|count| count - 1).sum()
        }
    };
    // With enough kills, many land in the window (with a handful, chance
    // decides).
    if kills_wanted >= 10 {
        assert!(
            kills_in_window * 4 >= kills,
            "seed {seed}: only {kills_in_window} of {kills} kills landed between a create's application \
             and its rename"
        );
    }

    let requests = log.len();
    let creates = creates_by_key.len();
    let lost_answers = log
        .iter()
        .filter(|request| request.fault == Some(Fault::LoseResponse))
        .count();
    println!(
        "{label}: seed {seed}: {kills} kills ({aimed} aimed), {kills_in_window} of them between a create applied \
         on the server and its rename ({records_in_window} records caught there), {} saves acknowledged, \
         {creates} records created on the server, {} live at the end; {records_checked} records checked \
         after kills; {requests} requests, {lost_answers} create answers lost, {repeated_writes} writes \
         applied again; {} temporary ids the app never learned; {:.1} s; lost 0, duplicated 0",
        app.acknowledged,
        live.len(),
        app.temporary_unknown,
        started.elapsed().as_secs_f64()
    );
    report_line(
        &json!({
            "scenario": label,
            "seed": seed,
            "kills": kills,
            "kills_in_window": kills_in_window,
            "records_in_window": records_in_window,
            "records_checked": records_checked,
            "operations": app.acknowledged,
            "requests": requests,
            "faults": lost_answers,
            "repeated_writes": repeated_writes,
            "lost": 0,
            "duplicated": 0,
        })
        .to_string(),
    );
}
