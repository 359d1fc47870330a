//! The demo: `cargo xtask demo` (or `cargo run -p sync-facade --example demo`).
//!
//! Starts the reference REST server on loopback and takes it down, saves
//! tasks, notes and customers offline, brings the API back, shows the queue
//! draining live, and checks that the server ends with exactly the local
//! state. Needs nothing but Rust; finishes in seconds.
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
    let mut options = OfflineSyncOptions::default();
    options.retry_base_delay = Duration::from_millis(200);
    options.connectivity_check_interval = Some(Duration::from_millis(300));
    options.connectivity_probe_min_interval_while_online = Duration::from_millis(200);
    let engine = OfflineSync::builder(workdir.path(), server.url())
        .probe_api_health("/health")
        .options(options)
        .build()
        .await?;
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
    engine.close().await;
    server.shutdown().await;
    Ok(equal)
}
