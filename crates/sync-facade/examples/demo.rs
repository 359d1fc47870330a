//! The demo: `cargo xtask demo` (or `cargo run -p sync-facade --example demo`).
//!
//! Starts the reference REST server on loopback and takes it down, saves
//! tasks, notes and customers offline, brings the API back, shows the queue
//! draining live, and checks that the server ends with exactly the local
//! state. Then a dispatcher on another device changes tasks on the server
//! while this device has an edit waiting: the pull brings the dispatcher's
//! changes down and keeps the waiting edit, which the next sync sends.
//! Needs nothing but Rust; finishes in seconds.
#![allow(clippy::print_stdout)] // A demo prints.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use sync_facade::prelude::*;
use sync_reference_server::{ReferenceServer, ServerConfig};
use tokio_stream::StreamExt;

const ENTITIES: [&str; 3] = ["tasks", "notes", "customers"];

fn status_name(status: SyncStatus) -> &'static str {
    match status {
        SyncStatus::Pending => "pending",
        SyncStatus::Syncing => "syncing",
        SyncStatus::Synced => "synced",
        SyncStatus::Failed => "failed",
    }
}

fn print_queue(items: &[SyncQueueItem]) {
    println!(
        "    {:<11} {:<6} {:<7} {:<8} payload",
        "entity", "id", "op", "status"
    );
    for item in items {
        let payload = Value::Object(item.payload.clone()).to_string();
        let payload: String = payload.chars().take(48).collect();
        println!(
            "    {:<11} {:<6} {:<7} {:<8} {payload}",
            item.entity.as_str(),
            item.id.as_str(),
            item.operation.as_str(),
            status_name(item.status)
        );
    }
}

fn progress(items: &[SyncQueueItem]) -> (usize, String) {
    let count = |status| items.iter().filter(|item| item.status == status).count();
    let synced = count(SyncStatus::Synced);
    let total = items.len().max(1);
    let filled = synced * 30 / total;
    let bar = format!("{}{}", "#".repeat(filled), ".".repeat(30 - filled));
    let line = format!(
        "  [{bar}] {synced}/{} synced | pending {} | syncing {} | failed {}",
        items.len(),
        count(SyncStatus::Pending),
        count(SyncStatus::Syncing),
        count(SyncStatus::Failed)
    );
    (synced, line)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let workdir = tempfile::tempdir()?;
    println!("offline-sync demo\n");

    // 1. The app's REST API (the reference server), then a network outage.
    let server =
        ReferenceServer::start(ServerConfig::new().with_data_file(workdir.path().join("db.json"))).await?;
    println!(
        "1. REST API started at {} ... and taken down (connections refused).",
        server.url()
    );
    server.stop().await;

    // 2. The engine: SQLite file, REST adapter, connectivity probe on the API's /health.
    // Auto-sync sends what is saved; no extra run per save, so step 7's
    // edit can wait in the queue once auto-sync is stopped.
    let options = OfflineSyncOptions::default()
        .sync_after_save(false)
        .retry_base_delay(Duration::from_millis(200))
        .connectivity_check_interval(Some(Duration::from_millis(300)))
        .connectivity_probe_min_interval_while_online(Duration::from_millis(200));
    let mut builder = OfflineSync::builder(workdir.path(), server.url())
        .probe_api_health("/health")
        .options(options.clone());
    for entity in ENTITIES {
        builder = builder.pull(entity, PullStrategy::change_feed());
    }
    let engine = builder.build().await?;
    engine.sync_manager().start_auto_sync();
    println!(
        "2. Engine opened on {} with auto-sync on.\n",
        workdir.path().join("offline_sync.db").display()
    );

    // 3. Work offline.
    for n in 1..=6 {
        let task = json!({"id": n.to_string(), "title": format!("Inspect pump {n}"), "done": false});
        engine
            .save("tasks", &n.to_string(), task, SyncOperation::Create)
            .await?;
    }
    for n in 1..=4 {
        let note = json!({"id": n.to_string(), "text": format!("Site note {n}")});
        engine
            .save("notes", &n.to_string(), note, SyncOperation::Create)
            .await?;
    }
    for (id, name) in [
        ("c1", "Ada Lovelace"),
        ("c2", "Alan Turing"),
        ("c3", "Grace Hopper"),
    ] {
        engine
            .save(
                "customers",
                id,
                json!({"id": id, "name": name}),
                SyncOperation::Create,
            )
            .await?;
    }
    // Edits and a delete before anything was sent: folded into the queue.
    engine
        .save(
            "tasks",
            "2",
            json!({"id": "2", "title": "Inspect pump 2", "done": true}),
            SyncOperation::Update,
        )
        .await?;
    engine
        .save("notes", "4", json!({}), SyncOperation::Delete)
        .await?;
    engine
        .save(
            "customers",
            "c2",
            json!({"id": "c2", "name": "Alan M. Turing"}),
            SyncOperation::Update,
        )
        .await?;

    tokio::time::sleep(Duration::from_millis(800)).await;
    let queue = engine.queue().await?;
    println!("3. Saved offline (the API is down, auto-sync found no connection):");
    print_queue(&queue);
    let local_tasks = engine.get_records("tasks").await?.len();
    println!(
        "   {} items wait in the queue; {local_tasks} tasks are readable locally.\n",
        queue.len()
    );

    // 4. The API comes back: watch the queue drain live.
    let mut watch = engine.watch_queue();
    server.resume().await?;
    println!("4. REST API back up: the queue drains.");
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        let mut last = String::new();
        while let Some(items) = watch.next().await {
            let (synced, line) = progress(&items);
            if line != last {
                println!("{line}");
                last = line;
            }
            if synced == items.len() {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    println!();
    println!("5. Final per-item states:");
    print_queue(&engine.queue().await?);
    println!();

    // 6. Server state must equal local state.
    let snapshot = server.snapshot();
    let mut equal = drained;
    let mut compared = 0;
    for entity in ENTITIES {
        let local: BTreeMap<String, Value> = engine
            .get_records(entity)
            .await?
            .into_iter()
            .map(|record| (record.id.to_string(), Value::Object(record.data)))
            .collect();
        let remote = snapshot.get(entity).cloned().unwrap_or_default();
        compared += local.len();
        if local != remote {
            equal = false;
            println!("   MISMATCH in {entity}:\n     local  {local:?}\n     server {remote:?}");
        }
    }
    if equal {
        println!(
            "6. Server state equals local state: {compared} records in {} entities. ✓",
            ENTITIES.len()
        );
        let posts = server.request_log().iter().filter(|r| r.method == "POST").count();
        println!("   {posts} POSTs for {compared} records: no duplicate creates.");
    } else {
        println!("6. Server and local state differ. ✗");
    }
    println!();

    let pulled = pull_from_another_device(&engine, &server, workdir.path(), options).await?;
    engine.close().await;
    server.shutdown().await;
    Ok(equal && pulled)
}

/// Steps 7 to 9: a dispatcher's device changes tasks on the server while
/// an edit waits on this one; the pull brings them down and keeps the edit.
async fn pull_from_another_device(
    engine: &OfflineSyncEngine,
    server: &ReferenceServer,
    dir: &std::path::Path,
    options: OfflineSyncOptions,
) -> Result<bool, Box<dyn std::error::Error>> {
    // This device edits task 4; auto-sync is off, so the edit waits.
    engine.sync_manager().stop_auto_sync();
    let dispatcher_dir = dir.join("dispatcher");
    std::fs::create_dir_all(&dispatcher_dir)?;
    let dispatcher = OfflineSync::builder(&dispatcher_dir, server.url())
        .options(options)
        .pull("tasks", PullStrategy::change_feed())
        .build()
        .await?;
    engine.sync_manager().sync_now().await?;
    let waiting = json!({"id": "4", "title": "Inspect pump 4", "done": true, "note": "seal replaced"});
    engine
        .save("tasks", "4", waiting.clone(), SyncOperation::Update)
        .await?;

    // The dispatcher, on another device: loads the tasks, reassigns task 1,
    // touches task 4 too, and adds task 7.
    dispatcher.sync_manager().pull_now().await?;
    let assign = |id: &str, title: &str| json!({"id": id, "title": title, "done": false, "assignee": "Sam"});
    dispatcher
        .save("tasks", "1", assign("1", "Inspect pump 1"), SyncOperation::Update)
        .await?;
    dispatcher
        .save("tasks", "4", assign("4", "Inspect pump 4"), SyncOperation::Update)
        .await?;
    dispatcher
        .save(
            "tasks",
            "7",
            assign("7", "Replace valve 7"),
            SyncOperation::Create,
        )
        .await?;
    dispatcher.sync_manager().sync_now().await?;
    dispatcher.close().await;
    println!("7. A dispatcher's device changed tasks 1 and 4 and added task 7 on the server,");
    println!("   while this device's edit to task 4 waits in its queue.");

    let report = engine.sync_manager().pull_now().await?;
    println!(
        "8. Pulled: {} upserted, {} deleted, {} kept because a local change waits.",
        report.pulled.upserted, report.pulled.deleted, report.pulled.skipped
    );
    for record in engine.get_records("tasks").await? {
        if ["1", "4", "7"].contains(&record.id.as_str()) {
            let assignee = record.data.get("assignee").and_then(Value::as_str).unwrap_or("-");
            let note = record.data.get("note").and_then(Value::as_str).unwrap_or("-");
            println!(
                "   task {}: {:<16} assignee {assignee:<4} note {note}",
                record.id,
                record.data["title"].as_str().unwrap_or("")
            );
        }
    }
    let arrived = engine.get_record("tasks", "7").await?.is_some();
    let kept = engine
        .get_record("tasks", "4")
        .await?
        .is_some_and(|record| Value::Object(record.data) == waiting);

    let report = engine.sync_manager().sync_now().await?;
    let local: BTreeMap<String, Value> = engine
        .get_records("tasks")
        .await?
        .into_iter()
        .map(|record| (record.id.to_string(), Value::Object(record.data)))
        .collect();
    let remote = server.snapshot().get("tasks").cloned().unwrap_or_default();
    let equal = report.failed == 0 && local == remote;
    if arrived && kept && equal {
        println!(
            "9. The waiting edit went up after the pull; server and device agree on all {} tasks. ✓",
            local.len()
        );
    } else {
        println!("9. Pull check failed (arrived {arrived}, edit kept {kept}, equal {equal}). ✗");
    }
    Ok(arrived && kept && equal)
}
