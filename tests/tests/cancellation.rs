//! Public calls dropped at random points, as an app's timeout or a UI
//! "cancel" drops them, with the real engine (SQLite store, HTTP adapter,
//! reference server): afterwards every saved change still reaches the
//! server exactly once and nothing stays `syncing`.
//!
//! Every scenario prints its seed; `SYNC_CHAOS_SEED` replays it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod chaos_support;

use std::path::Path;
use std::time::Duration;

use chaos_support::{
    Rng, assert_each_key_applied_at_most_once, assert_no_record_created_twice, env_u64, report_line,
    seed_from_env,
};
use serde_json::json;
use sync_facade::prelude::*;
use sync_reference_server::{ReferenceServer, ServerConfig};

/// Only a guard against hangs.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn options() -> OfflineSyncOptions {
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options.connectivity_check_interval = None;
    options.retry_base_delay = Duration::from_millis(10);
    options
}

async fn open(dir: &Path, server: &ReferenceServer, options: OfflineSyncOptions) -> OfflineSyncEngine {
    OfflineSync::builder(dir, server.url())
        .probe_api_health("/health")
        .options(options)
        .build()
        .await
        .unwrap()
}

/// A random cancellation point between 50 µs and 3 ms: what a mobile
/// background budget or a UI "cancel" does to a call.
fn cancel_after(rng: &mut Rng) -> Duration {
    Duration::from_micros(50 + rng.below(2_950))
}

/// Items not `synced`, with their status.
async fn unsynced(engine: &OfflineSyncEngine) -> Vec<(String, SyncStatus)> {
    engine
        .queue()
        .await
        .unwrap()
        .into_iter()
        .filter(|item| item.status != SyncStatus::Synced)
        .map(|item| (item.id.to_string(), item.status))
        .collect()
}

/// Issue 11, item 1: a `sync_now` cut short by a timeout left the items it
/// had claimed `syncing` for the life of the process (the claim committed
/// in the store's writer after the caller's future was gone), and later
/// edits to them never synced either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_now_cut_short_by_a_timeout_leaves_nothing_stuck() {
    let seed = seed_from_env();
    eprintln!("seed {seed} (SYNC_CHAOS_SEED replays it)");
    let rounds = env_u64("SYNC_CANCEL_ROUNDS").unwrap_or(200);
    let mut rng = Rng::new(seed);
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, options()).await;
    let manager = engine.sync_manager();
    let mut stuck_rounds = 0;
    for round in 0..rounds {
        for n in 0..20 {
            let id = format!("{round}-{n}");
            engine
                .save("tasks", &id, json!({"id": id, "round": round}), SyncOperation::Create)
                .await
                .unwrap();
        }
        let _ = tokio::time::timeout(cancel_after(&mut rng), manager.sync_now()).await;
        // An edit to a record whose claim may have been cut short.
        let edited = format!("{round}-0");
        engine
            .save(
                "tasks",
                &edited,
                json!({"id": edited, "round": round, "edited": true}),
                SyncOperation::Update,
            )
            .await
            .unwrap();
        for _ in 0..2 {
            tokio::time::timeout(HANG_GUARD, manager.sync_now())
                .await
                .expect("sync_now hung")
                .unwrap();
        }
        if !unsynced(&engine).await.is_empty() {
            stuck_rounds += 1;
        }
    }
    let left = unsynced(&engine).await;
    assert!(
        left.is_empty(),
        "seed {seed}: {} items never synced ({stuck_rounds} of {rounds} rounds left some): {:?}",
        left.len(),
        &left[..left.len().min(10)]
    );
    let server_tasks = server.snapshot().get("tasks").cloned().unwrap_or_default();
    assert_eq!(server_tasks.len() as u64, rounds * 20, "seed {seed}");
    for round in 0..rounds {
        assert_eq!(
            server_tasks[&format!("{round}-0")]["edited"],
            true,
            "seed {seed}: the edit of round {round} did not reach the server"
        );
    }
    assert_no_record_created_twice(&server, seed);
    assert_each_key_applied_at_most_once(&server, seed);
    report_line(&format!(
        r#"{{"scenario":"cancelled sync_now","seed":{seed},"rounds":{rounds},"stuck":{}}}"#,
        left.len()
    ));
    engine.close().await;
}
