//! Server-assigned ids against a server nobody on this project wrote:
//! json-server 1.0.0-beta.3 (npm, installed by `tests/servers/json-server/setup`,
//! started by its `run` script). json-server gives a record posted without
//! an `id` a random 4-hex string id, keeps every other field (`client_ref`
//! too), filters its lists by any field (`GET /projects?client_ref=tmp-…`),
//! answers `404` to a `PUT`, `DELETE` or `GET` of an id it lacks, ignores
//! `Idempotency-Key`, and never checks its random ids for uniqueness.
//!
//! Through the facade, with `RequestShape::json_server().local_id_field("client_ref")`,
//! `.reference("tasks", "project_id", "projects")` and 8 requests at once,
//! through a proxy that loses 30 % of the answers to writes after the
//! server applied them (so only the lookup by `client_ref` stands between
//! a lost answer and a second copy):
//!
//! 1. offline (nothing is sent: no sync runs), the app creates projects and
//!    tasks with `create`, each task naming its project by the project's
//!    temporary id; edits some records through their temporary ids (read,
//!    change, save; some tasks moved to another project), deletes a few
//!    tasks; then the queue drains;
//! 2. online, with syncs running all the while, more creates (tasks naming
//!    their project by the temporary id the app holds, renamed or not),
//!    edits through temporary ids (often right after the create, while it
//!    is on its way) and deletes of tasks; then the queue drains.
//!
//! Then the server's records equal the local ones exactly: the same ids,
//! the app's fields as last saved, and every task naming its project by the
//! project's server id on both sides; no record on the server twice
//! (counted by the app's own unique `key` field, and by `client_ref` where
//! present); no temporary id on the server outside `client_ref`; every
//! temporary id the app holds resolves to the record's server id.
//!
//! json-server's random ids can collide (two records given one id): a
//! collision seen in the answers to the creates, or in the server's lists,
//! fails the test with a message naming that cause, not the engine. A
//! server that cannot start fails the test: nothing is skipped.
//! `SYNC_CHAOS_SEED` replays a run's choices (not the timing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod chaos_support;
mod real_servers_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chaos_support::{Rng, seed_from_env};
use real_servers_support::id_text;
use real_servers_support::proxy::{LossyProxy, Passed};
use real_servers_support::server::ThirdParty;
use serde_json::{Map, Value, json};
use sync_facade::RecordId;
use sync_facade::prelude::*;

/// The share of answers to writes the proxy loses, in percent.
const LOSS_PERCENT: u64 = 30;

/// The field the temporary id travels in, which json-server keeps.
const LOCAL_ID_FIELD: &str = "client_ref";

const ENTITIES: [&str; 2] = ["projects", "tasks"];

/// The fields the app writes (beside a task's `project_id`).
const APP_FIELDS: [&str; 5] = ["key", "name", "title", "seq", "note"];

/// The offline phase: projects, tasks, edits, task deletes.
const OFFLINE: (u64, u64, u64, u64) = (8, 24, 16, 4);

/// The online phase's saves.
const ONLINE_SAVES: u64 = 30;

/// How long a drain may take.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// A record of the app.
#[derive(Debug, Clone)]
struct Rec {
    entity: &'static str,
    /// The temporary id `create` gave: the only id the app ever uses.
    temporary: String,
    /// The app's fields as last saved.
    fields: Map<String, Value>,
    /// A task's project, by key.
    project: Option<String>,
    live: bool,
}

/// What the app saved, by its own `key`.
#[derive(Debug, Default)]
struct App {
    records: BTreeMap<String, Rec>,
    saves: u64,
    next: u64,
}

impl App {
    fn live(&self, entity: &str) -> Vec<String> {
        self.records
            .iter()
            .filter(|(_, record)| record.live && record.entity == entity)
            .map(|(key, _)| key.clone())
            .collect()
    }

    fn pick(&self, rng: &mut Rng, entity: &str) -> Option<String> {
        let live = self.live(entity);
        (!live.is_empty()).then(|| live[rng.below(live.len() as u64) as usize].clone())
    }

    async fn create_project(&mut self, engine: &OfflineSyncEngine) -> String {
        self.next += 1;
        let key = format!("p{}", self.next);
        let data = json!({"key": key, "name": format!("project {key}"), "seq": 0, "note": ""});
        let created = engine.create("projects", data.clone()).await.unwrap();
        self.saves += 1;
        self.records.insert(
            key.clone(),
            Rec {
                entity: "projects",
                temporary: created.id.as_str().to_owned(),
                fields: app_fields(data.as_object().unwrap()),
                project: None,
                live: true,
            },
        );
        key
    }

    /// A task naming `project` by the temporary id the app holds for it
    /// (renamed or not).
    async fn create_task(&mut self, engine: &OfflineSyncEngine, project: &str) -> String {
        self.next += 1;
        let key = format!("t{}", self.next);
        let parent = &self.records[project].temporary;
        let data = json!({
            "key": key,
            "title": format!("task {key}"),
            "seq": 0,
            "note": "",
            "project_id": parent,
        });
        let created = engine.create("tasks", data.clone()).await.unwrap();
        self.saves += 1;
        self.records.insert(
            key.clone(),
            Rec {
                entity: "tasks",
                temporary: created.id.as_str().to_owned(),
                fields: app_fields(data.as_object().unwrap()),
                project: Some(project.to_owned()),
                live: true,
            },
        );
        key
    }

    /// Read, change, save, through the temporary id; a task may move to
    /// `move_to` (named by its temporary id).
    async fn edit(&mut self, engine: &OfflineSyncEngine, rng: &mut Rng, key: &str, move_to: Option<String>) {
        let record = &self.records[key];
        let (entity, temporary) = (record.entity, record.temporary.clone());
        let mut data = engine
            .get_record(entity, &temporary)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("get_record({entity}, {temporary}) found nothing: {key} is gone"))
            .data;
        self.next += 1;
        let seq = json!(self.next);
        let note = json!("n".repeat(rng.below(20) as usize + 1));
        data.insert("seq".to_owned(), seq.clone());
        data.insert("note".to_owned(), note.clone());
        if let Some(project) = &move_to {
            data.insert("project_id".to_owned(), json!(self.records[project].temporary));
        }
        engine
            .save(entity, &temporary, Value::Object(data), SyncOperation::Update)
            .await
            .unwrap();
        self.saves += 1;
        let record = self.records.get_mut(key).unwrap();
        record.fields.insert("seq".to_owned(), seq);
        record.fields.insert("note".to_owned(), note);
        if move_to.is_some() {
            record.project = move_to;
        }
    }

    async fn delete(&mut self, engine: &OfflineSyncEngine, key: &str) {
        let record = self.records.get_mut(key).unwrap();
        engine
            .save(record.entity, &record.temporary, json!({}), SyncOperation::Delete)
            .await
            .unwrap();
        record.live = false;
        self.saves += 1;
    }

    /// A random save of the online phase; after a create, often an edit
    /// through its temporary id at once (the create still on its way).
    async fn random_save(&mut self, engine: &OfflineSyncEngine, rng: &mut Rng) {
        let roll = rng.below(100);
        let created = if roll < 15 {
            Some(self.create_project(engine).await)
        } else if roll < 50 {
            let project = self.pick(rng, "projects").unwrap();
            Some(self.create_task(engine, &project).await)
        } else if roll < 85 {
            let entity = if rng.below(3) == 0 { "projects" } else { "tasks" };
            let key = self
                .pick(rng, entity)
                .unwrap_or_else(|| self.pick(rng, "projects").unwrap());
            let move_to = (key.starts_with('t') && rng.below(4) == 0)
                .then(|| self.pick(rng, "projects"))
                .flatten();
            self.edit(engine, rng, &key, move_to).await;
            None
        } else {
            if let Some(key) = self.pick(rng, "tasks") {
                self.delete(engine, &key).await;
            }
            None
        };
        if let Some(key) = created
            && rng.below(10) < 4
        {
            self.edit(engine, rng, &key, None).await;
        }
    }
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

fn is_temporary(text: &str) -> bool {
    text.parse::<RecordId>().is_ok_and(|id| id.is_temporary())
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

async fn open_engine(dir: &std::path::Path, url: &str) -> OfflineSyncEngine {
    OfflineSync::builder(dir, url)
        .shape(RequestShape::json_server().local_id_field(LOCAL_ID_FIELD))
        .reference("tasks", "project_id", "projects")
        .options(
            OfflineSyncOptions::default()
                .sync_after_save(false)
                .connectivity_check_interval(None)
                .retry_base_delay(Duration::from_millis(20))
                .concurrency(8),
        )
        .build()
        .await
        .unwrap()
}

/// Syncs until nothing is pending; `Err` with what is stuck (parked, or
/// left when time ran out).
async fn drain(engine: &OfflineSyncEngine) -> Result<(), String> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let report = engine.sync_manager().sync_now().await.unwrap();
        if engine
            .wait_until_drained(Duration::from_millis(100))
            .await
            .unwrap()
        {
            return Ok(());
        }
        let queue = engine.queue().await.unwrap();
        let parked: Vec<_> = queue.iter().filter(|item| item.is_parked()).collect();
        if !parked.is_empty() {
            return Err(format!("items parked: {parked:#?}"));
        }
        if Instant::now() >= deadline {
            let left: Vec<_> = queue
                .iter()
                .filter(|item| item.status != SyncStatus::Synced)
                .collect();
            return Err(format!(
                "the queue never drained: {report:?}, items left: {left:#?}"
            ));
        }
    }
}

/// json-server's random-id collisions seen through the proxy: a create
/// (of a record with another `client_ref`) answered with an id a record
/// still held (created, and not deleted since). An id given again after
/// its record's delete is no collision on the server.
fn collisions_in_answers(log: &[Passed]) -> Vec<String> {
    // (collection, id) → the client_ref of the record holding it now.
    let mut holding: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut collisions = Vec::new();
    for passed in log {
        let mut parts = passed.path.trim_start_matches('/').split(['/', '?']);
        let collection = parts.next().unwrap_or_default().to_owned();
        if passed.method == http::Method::DELETE && (200..300).contains(&passed.status) {
            holding.remove(&(collection, parts.next().unwrap_or_default().to_owned()));
            continue;
        }
        let Some(created) = &passed.created else { continue };
        let (Some(id), Some(reference)) = (
            created.get("id").map(id_text),
            created.get(LOCAL_ID_FIELD).and_then(Value::as_str),
        ) else {
            continue;
        };
        if let Some(held) = holding.insert((collection.clone(), id.clone()), reference.to_owned())
            && held != reference
        {
            collisions.push(format!("{collection}/{id} given to {held} and {reference}"));
        }
    }
    collisions
}

/// The server's records, straight from json-server (not through the
/// proxy); ids held twice in a collection are collisions.
async fn server_records(server: &ThirdParty) -> (BTreeMap<&'static str, Vec<Value>>, Vec<String>) {
    let mut records = BTreeMap::new();
    let mut twice = Vec::new();
    for entity in ENTITIES {
        let Value::Array(rows) = server.get_json(&format!("/{entity}")).await else {
            panic!("json-server's list of {entity} is not an array");
        };
        let mut ids = BTreeSet::new();
        for row in &rows {
            let id = id_text(&row["id"]);
            if !ids.insert(id.clone()) {
                twice.push(format!("{entity}/{id}"));
            }
        }
        records.insert(entity, rows);
    }
    (records, twice)
}

/// What json-server holds that explains a lookup refused: its filter
/// `?client_ref=tmp-…` answers, beside the record holding that value,
/// every record without the field (json-server 1.0.0-beta.3 keeps an item
/// whose filtered field is missing).
async fn records_without_reference(server: &ThirdParty) -> String {
    let (records, _) = server_records(server).await;
    let lacking: Vec<String> = records
        .iter()
        .flat_map(|(entity, rows)| {
            rows.iter()
                .filter(|row| row.get(LOCAL_ID_FIELD).is_none())
                .map(move |row| format!("{entity} {row}"))
        })
        .collect();
    format!(
        "records on json-server without {LOCAL_ID_FIELD} (json-server's filter answers them to every \
         lookup of their collection): {lacking:#?}"
    )
}

/// Fails naming json-server's random-id collision if one happened.
async fn fail_on_collision(server: &ThirdParty, proxy: &LossyProxy, seed: u64) {
    let mut seen = collisions_in_answers(&proxy.log());
    seen.extend(server_records(server).await.1);
    assert!(
        seen.is_empty(),
        "seed {seed}: json-server gave two records one id ({seen:?}): its random 4-hex ids are never \
         checked for uniqueness. This is json-server's fault, not the engine's; run again (another seed)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_server_assigns_the_ids_exactly_once_through_lost_answers() {
    let seed = seed_from_env();
    println!(
        "json-server, server-assigned ids: seed {seed}, {LOSS_PERCENT} % of write answers lost \
         (SYNC_CHAOS_SEED replays the choices)"
    );
    let started = Instant::now();
    let mut rng = Rng::new(seed ^ 0x1D5);
    let server = ThirdParty::start("json-server").await;
    let proxy = LossyProxy::start(&server.origin(), LOSS_PERCENT, seed).await;
    let url = format!("{}{}", proxy.origin(), server.prefix());
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), &url).await;
    let mut app = App::default();

    // 1. Offline: nothing is sent until the drain.
    let (projects, tasks, edits, deletes) = OFFLINE;
    for _ in 0..projects {
        app.create_project(&engine).await;
    }
    for _ in 0..tasks {
        let project = app.pick(&mut rng, "projects").unwrap();
        app.create_task(&engine, &project).await;
    }
    for _ in 0..edits {
        let entity = if rng.below(3) == 0 { "projects" } else { "tasks" };
        let key = app.pick(&mut rng, entity).unwrap();
        let move_to = (entity == "tasks" && rng.below(3) == 0)
            .then(|| app.pick(&mut rng, "projects"))
            .flatten();
        app.edit(&engine, &mut rng, &key, move_to).await;
    }
    for _ in 0..deletes {
        let key = app.pick(&mut rng, "tasks").unwrap();
        app.delete(&engine, &key).await;
    }
    let sent_offline: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|passed| passed.method != http::Method::GET)
        .collect();
    assert!(
        sent_offline.is_empty(),
        "seed {seed}: writes went out before any sync: {sent_offline:?}"
    );
    let offline_saves = app.saves;
    let first = drain(&engine).await;
    fail_on_collision(&server, &proxy, seed).await;
    if let Err(stuck) = first {
        panic!(
            "seed {seed}: the offline changes did not drain: {stuck}\n{}",
            records_without_reference(&server).await
        );
    }
    let after_offline = proxy.log().len();

    // 2. Online: saves while syncs run.
    let stop = Arc::new(AtomicBool::new(false));
    let manager = engine.sync_manager();
    let stopping = Arc::clone(&stop);
    let mut pauses = Rng::new(rng.next());
    let syncing = tokio::spawn(async move {
        while !stopping.load(Ordering::SeqCst) {
            manager.sync_now().await.unwrap();
            tokio::time::sleep(Duration::from_micros(pauses.below(3_000))).await;
        }
    });
    for _ in 0..ONLINE_SAVES {
        app.random_save(&engine, &mut rng).await;
        tokio::time::sleep(Duration::from_micros(rng.below(4_000))).await;
    }
    stop.store(true, Ordering::SeqCst);
    syncing.await.unwrap();
    let second = drain(&engine).await;
    fail_on_collision(&server, &proxy, seed).await;
    if let Err(stuck) = second {
        panic!(
            "seed {seed}: the online changes did not drain: {stuck}\n{}",
            records_without_reference(&server).await
        );
    }

    let checked = check(&engine, &server, &app, seed).await;
    engine.close().await;
    let log = proxy.log();
    let lost = log.iter().filter(|passed| passed.lost).count();
    let lookups = log
        .iter()
        .filter(|passed| passed.method == http::Method::GET && passed.path.contains(LOCAL_ID_FIELD))
        .count();
    let posts = log
        .iter()
        .filter(|passed| passed.method == http::Method::POST)
        .count();
    server.stop().await;
    println!(
        "json-server, server-assigned ids: seed {seed}: {} saves ({offline_saves} offline), {checked} records \
         checked, {} requests ({after_offline} for the offline phase), {posts} creates posted, {lost} write \
         answers lost, {lookups} lookups by {LOCAL_ID_FIELD}; duplicates 0, mismatches 0, temporary ids on \
         the server 0; {:.1} s",
        app.saves,
        log.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The final comparison (see the file's documentation); returns how many
/// records it checked.
async fn check(engine: &OfflineSyncEngine, server: &ThirdParty, app: &App, seed: u64) -> usize {
    let (on_server, _) = server_records(server).await;
    let mut checked = 0;
    // Local: key → (id, document); server: key → record.
    let mut local: BTreeMap<String, (String, Map<String, Value>)> = BTreeMap::new();
    let mut remote: BTreeMap<String, Value> = BTreeMap::new();
    let mut duplicates = Vec::new();
    let mut temporary = Vec::new();
    for entity in ENTITIES {
        for record in engine.get_records(entity).await.unwrap() {
            let key = record.data["key"].as_str().unwrap().to_owned();
            let id = record.id.as_str().to_owned();
            assert!(
                !is_temporary(&id),
                "seed {seed}: {entity} {key} is still under its temporary id {id} locally"
            );
            if local.insert(key.clone(), (id, record.data)).is_some() {
                panic!("seed {seed}: two local records with the key {key}");
            }
        }
        let mut references: BTreeMap<String, u64> = BTreeMap::new();
        for record in &on_server[entity] {
            temporary_ids_outside_reference(record, true, &mut temporary);
            let key = record["key"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!("seed {seed}: a record on json-server without the app's key: {record}")
                })
                .to_owned();
            if let Some(reference) = record.get(LOCAL_ID_FIELD).and_then(Value::as_str) {
                *references.entry(reference.to_owned()).or_default() += 1;
                assert_eq!(
                    app.records.get(&key).map(|known| known.temporary.as_str()),
                    Some(reference),
                    "seed {seed}: {entity} {key} on json-server holds another {LOCAL_ID_FIELD} than its temporary id"
                );
            }
            if remote.insert(key.clone(), record.clone()).is_some() {
                duplicates.push(format!("{entity} key {key}"));
            }
        }
        duplicates.extend(
            references
                .into_iter()
                .filter(|(_, count)| *count > 1)
                .map(|(reference, count)| format!("{entity} {LOCAL_ID_FIELD} {reference} ×{count}")),
        );
    }
    assert!(
        duplicates.is_empty(),
        "seed {seed}: records on json-server twice (a lost answer posted again): {duplicates:?}"
    );
    assert!(
        temporary.is_empty(),
        "seed {seed}: temporary ids on json-server outside {LOCAL_ID_FIELD}: {temporary:?}"
    );
    let live: BTreeSet<&String> = app
        .records
        .iter()
        .filter(|(_, record)| record.live)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        local.keys().collect::<BTreeSet<_>>(),
        live,
        "seed {seed}: the local records are not the app's live ones"
    );
    assert_eq!(
        remote.keys().collect::<BTreeSet<_>>(),
        live,
        "seed {seed}: json-server does not hold exactly the app's live records"
    );
    for key in live {
        let known = &app.records[key];
        let (id, document) = &local[key];
        let stored = &remote[key];
        assert_eq!(
            &id_text(&stored["id"]),
            id,
            "seed {seed}: {key} is under another id on json-server than locally"
        );
        assert_eq!(
            app_fields(document),
            known.fields,
            "seed {seed}: {key} locally is not the app's last save"
        );
        assert_eq!(
            app_fields(stored.as_object().unwrap()),
            known.fields,
            "seed {seed}: {key} on json-server is not the app's last save"
        );
        if let Some(project) = &known.project {
            let parent = &local[project].0;
            assert_eq!(
                document.get("project_id"),
                Some(&json!(parent)),
                "seed {seed}: task {key} locally does not name its project {project} by the server's id {parent}"
            );
            assert_eq!(
                stored.get("project_id"),
                Some(&json!(parent)),
                "seed {seed}: task {key} on json-server does not name its project {project} by its id {parent}"
            );
        }
        assert_eq!(
            engine
                .resolve_id(known.entity, &known.temporary)
                .await
                .unwrap()
                .as_str(),
            id,
            "seed {seed}: the temporary id of {key} does not resolve to its server id"
        );
        checked += 1;
    }
    checked
}
