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

use chaos_support::{Rng, assert_no_duplicates, env_u64, report_line, seed_from_env, write_log};
use serde_json::json;
use sync_facade::prelude::*;
use sync_reference_server::{IdempotencyMode, ReferenceServer, ServerConfig};

/// Only a guard against hangs.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn options() -> OfflineSyncOptions {
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options.connectivity_check_interval = None;
    options.retry_base_delay = Duration::from_millis(10);
    options
}

/// A reference server that ignores idempotency keys, as most real APIs
/// do: the engine's own checks must keep every change single.
async fn server_ignoring_keys() -> ReferenceServer {
    ReferenceServer::start(ServerConfig::new().with_idempotency(IdempotencyMode::Ignore))
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
    let server = server_ignoring_keys().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, options()).await;
    let manager = engine.sync_manager();
    let mut stuck_rounds = 0;
    for round in 0..rounds {
        for n in 0..20 {
            let id = format!("{round}-{n}");
            engine
                .save(
                    "tasks",
                    &id,
                    json!({"id": id, "round": round}),
                    SyncOperation::Create,
                )
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
    let writes = assert_no_duplicates(&server, seed);
    report_line(&format!(
        r#"{{"scenario":"cancelled sync_now, keys ignored","seed":{seed},"rounds":{rounds},"stuck":{},"repeated_writes":{}}}"#,
        left.len(),
        writes.repeated_writes
    ));
    engine.close().await;
}

/// What the app last did to one record, as far as the engine acknowledged.
#[derive(Debug, Clone, PartialEq, Default)]
struct Known {
    /// The documents the record may hold: the last acknowledged save's,
    /// and those of the saves dropped since (each may have landed).
    documents: Vec<serde_json::Value>,
    /// Whether the record may be gone: a delete since the last
    /// acknowledged save, acknowledged or dropped. A dropped save after a
    /// dropped delete may not have landed, so it does not end this.
    may_be_absent: bool,
}

/// Issue 11, item 4: every public async call dropped at random points
/// (saves, `sync_now`, `retry`, `retry_failed`, `clear_synced`, watch
/// streams, and `close` followed by a reopen), then the queue, the
/// documents and the server converge with nothing lost, duplicated or
/// stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_call_dropped_at_random_points_converges() {
    use tokio_stream::StreamExt;

    let seed = seed_from_env();
    eprintln!("seed {seed} (SYNC_CHAOS_SEED replays it)");
    let steps = env_u64("SYNC_CANCEL_STEPS").unwrap_or(400);
    let mut rng = Rng::new(seed);
    let server = server_ignoring_keys().await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = options();
    options.sync_after_save = true;
    let mut engine = open(dir.path(), &server, options.clone()).await;
    // Per id: the documents the local copy may hold (the last
    // acknowledged one, plus any whose save was dropped since).
    let mut known: std::collections::BTreeMap<String, Known> = std::collections::BTreeMap::new();
    let mut dropped = 0u64;
    // What happened to each id and around it, for a failure's report.
    let mut history: Vec<String> = Vec::new();
    for step in 0..steps {
        let cut = cancel_after(&mut rng);
        let id = format!("r{}", rng.below(12));
        let action = rng.below(9);
        history.push(format!("{step}: {id} action {action}"));
        match action {
            0..=3 => {
                let data = json!({"id": id, "step": step});
                let known_here = known.entry(id.clone()).or_insert_with(|| Known {
                    documents: Vec::new(),
                    may_be_absent: true,
                });
                let operation = if known_here.may_be_absent {
                    SyncOperation::Create
                } else {
                    SyncOperation::Update
                };
                let save = engine.save("tasks", &id, data.clone(), operation);
                // Acknowledged means the save returned Ok in time; an error
                // (atomic: nothing saved) or a cut leaves it possible.
                let answer = tokio::time::timeout(cut, save).await;
                history.push(format!("{step}: {id} save {operation:?}: {answer:?}"));
                if matches!(answer, Ok(Ok(_))) {
                    *known_here = Known {
                        documents: vec![data],
                        may_be_absent: false,
                    };
                } else {
                    dropped += 1;
                    known_here.documents.push(data);
                }
            }
            4 => {
                if let Some(known_here) = known.get_mut(&id)
                    && !known_here.documents.is_empty()
                {
                    let delete = engine.save("tasks", &id, json!({}), SyncOperation::Delete);
                    let answer = tokio::time::timeout(cut, delete).await;
                    history.push(format!("{step}: {id} delete: {answer:?}"));
                    if matches!(answer, Ok(Ok(_))) {
                        known_here.documents.clear();
                    } else {
                        dropped += 1;
                    }
                    known_here.may_be_absent = true;
                }
            }
            5 => {
                dropped += u64::from(
                    tokio::time::timeout(cut, engine.sync_manager().sync_now())
                        .await
                        .is_err(),
                );
            }
            6 => {
                let retry = tokio::time::timeout(cut, engine.retry("tasks", &id)).await;
                let retry_all = tokio::time::timeout(cut, engine.retry_failed()).await;
                let clear = tokio::time::timeout(cut, engine.clear_synced()).await;
                dropped += [retry.is_err(), retry_all.is_err(), clear.is_err()]
                    .into_iter()
                    .map(u64::from)
                    .sum::<u64>();
            }
            7 => {
                // A watch stream taken and dropped after a few values.
                let mut records = engine.watch_records("tasks").unwrap();
                let mut queue = engine.watch_queue();
                let mut item = engine.watch_queue_item("tasks", &id).unwrap();
                let _ = tokio::time::timeout(cut, async {
                    records.next().await;
                    queue.next().await;
                    item.next().await;
                })
                .await;
            }
            _ => {
                // An app shutting down under a deadline, then starting again.
                dropped += u64::from(tokio::time::timeout(cut, engine.close()).await.is_err());
                drop(engine);
                engine = open(dir.path(), &server, options.clone()).await;
            }
        }
    }
    engine.sync_manager().start_auto_sync();
    for _ in 0..3 {
        tokio::time::timeout(HANG_GUARD, engine.sync_manager().sync_now())
            .await
            .expect("sync_now hung")
            .unwrap();
    }
    assert!(
        engine.wait_until_drained(Duration::from_secs(30)).await.unwrap(),
        "seed {seed}: still unsynced: {:?}",
        unsynced(&engine).await
    );
    // Local documents: for each id, one of the documents it may hold.
    for (id, state) in &known {
        let local = engine.get_record("tasks", id).await.unwrap();
        let its_requests = || {
            server
                .request_log()
                .iter()
                .filter(|request| request.id.as_deref() == Some(id.as_str()))
                .map(|request| {
                    format!(
                        "{} {} applied {}",
                        request.method, request.status, request.applied
                    )
                })
                .collect::<Vec<_>>()
        };
        let its_steps = || {
            history
                .iter()
                .filter(|line| line.contains(&format!(" {id} ")))
                .cloned()
                .collect::<Vec<_>>()
        };
        match local {
            Some(record) => assert!(
                state
                    .documents
                    .contains(&serde_json::Value::Object(record.data.clone())),
                "seed {seed}: {id} holds {:?}, none of {:?}\nits requests: {:#?}\nits steps: {:#?}",
                record.data,
                state.documents,
                its_requests(),
                its_steps(),
            ),
            None => assert!(
                state.may_be_absent,
                "seed {seed}: {id} was saved ({:?}) and is gone locally\nits requests: {:#?}\nits steps: {:#?}",
                state.documents,
                its_requests(),
                its_steps(),
            ),
        }
    }
    // The server holds exactly the local documents.
    let local: std::collections::BTreeMap<String, serde_json::Value> = engine
        .get_records("tasks")
        .await
        .unwrap()
        .into_iter()
        .map(|record| (record.id.to_string(), serde_json::Value::Object(record.data)))
        .collect();
    let remote = server.snapshot().get("tasks").cloned().unwrap_or_default();
    assert_eq!(remote, local, "seed {seed}: server and local differ");
    assert_no_record_created_twice_while_alive(&server, seed);
    let writes = write_log(&server);
    assert!(
        writes.creates_resent.is_empty(),
        "seed {seed}: creates sent for records the server held (no check first): {:?}",
        writes.creates_resent
    );
    report_line(&format!(
        r#"{{"scenario":"public calls dropped, keys ignored","seed":{seed},"steps":{steps},"dropped":{dropped},"stuck":0,"repeated_writes":{}}}"#,
        writes.repeated_writes
    ));
    engine.close().await;
}

/// Opens the engine (again, after a close), waiting out the store's lock
/// if a close dropped half-way still holds it.
async fn open(dir: &Path, server: &ReferenceServer, options: OfflineSyncOptions) -> OfflineSyncEngine {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        match OfflineSync::builder(dir, server.url())
            .probe_api_health("/health")
            .options(options.clone())
            .build()
            .await
        {
            Ok(engine) => return engine,
            Err(error) if tokio::time::Instant::now() < deadline => {
                eprintln!("reopen: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("cannot reopen the engine: {error}"),
        }
    }
}

/// No record was created twice while it existed: a create after a delete
/// of the same id is a new record, not a duplicate.
fn assert_no_record_created_twice_while_alive(server: &ReferenceServer, seed: u64) {
    let mut alive = std::collections::BTreeSet::new();
    for record in server.applied_requests() {
        let id = record.id.clone().expect("a write names its record");
        match record.method.as_str() {
            "POST" => assert!(alive.insert(id.clone()), "seed {seed}: {id} created twice"),
            "DELETE" => {
                alive.remove(&id);
            }
            _ => {}
        }
    }
}
