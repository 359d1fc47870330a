//! The PostgREST request shape, exactly once, against the reference server
//! in its PostgREST dialect (rows filtered by `?id=eq.`, arrays, `Prefer:
//! return=representation`, 409 for a taken id): PostgREST itself cannot be
//! installed here. A third of the answers to writes are lost after the
//! server applied them, on a server that honours `Idempotency-Key` and on
//! one that ignores it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod chaos_support;

use std::time::Duration;

use chaos_support::{Model, assert_no_duplicates, mode_label, report_line, seed_from_env, server_records};
use http::Method;
use sync_facade::prelude::*;
use sync_reference_server::{Dialect, Fault, FaultPlan, IdempotencyMode, ReferenceServer, ServerConfig};

const HANG_GUARD: Duration = Duration::from_secs(120);

async fn postgrest_exactly_once(mode: IdempotencyMode) {
    let seed = seed_from_env();
    let label = format!("PostgREST shape{}", mode_label(mode));
    println!("{label}: seed {seed}");
    let plan = FaultPlan::seeded(seed)
        .only_methods(&[Method::POST, Method::PATCH, Method::DELETE])
        .with_random(Fault::LoseResponse, 0.3);
    let server = ReferenceServer::start(
        ServerConfig::new()
            .with_dialect(Dialect::PostgRest)
            .with_idempotency(mode)
            .with_faults(plan),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut options = OfflineSyncOptions::default()
        .sync_after_save(false)
        .connectivity_check_interval(None);
    options.retry_base_delay = Duration::from_millis(10);
    let engine = OfflineSync::builder(dir.path(), server.url())
        .shape(RequestShape::postgrest())
        .options(options)
        .build()
        .await
        .unwrap();
    let operations = 200;
    let script = Model::script(seed, operations);
    for slice in script.chunks(25) {
        for change in slice {
            engine
                .save(change.entity, &change.id, change.data.clone(), change.operation)
                .await
                .unwrap();
        }
        engine.sync_manager().sync_now().await.unwrap();
    }
    let drained = tokio::time::timeout(HANG_GUARD, async {
        loop {
            engine.sync_manager().sync_now().await.unwrap();
            if engine
                .wait_until_drained(Duration::from_millis(50))
                .await
                .unwrap()
            {
                break;
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "seed {seed}: the queue never drained");
    let local = chaos_support::engine_records(&engine).await;
    assert_eq!(
        local,
        Model::replay(&script, operations),
        "seed {seed}: a save was lost"
    );
    assert_eq!(
        server_records(&server),
        local,
        "seed {seed}: the server differs from the local state"
    );
    let writes = assert_no_duplicates(&server, seed);
    let lost = server.fault_counts().values().sum::<u64>();
    assert!(lost > 0, "seed {seed}: no answer was lost");
    let requests = server.request_log().len();
    println!(
        "{label}: seed {seed}: {operations} operations, {requests} requests, {lost} answers lost, \
         {} applied again with the same payload; lost 0, duplicated 0",
        writes.repeated_writes
    );
    report_line(&format!(
        r#"{{"scenario":"{label}","seed":{seed},"operations":{operations},"faults":{lost},"requests":{requests},"repeated_writes":{},"lost":0,"duplicated":0}}"#,
        writes.repeated_writes
    ));
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgrest_shape_syncs_exactly_once() {
    postgrest_exactly_once(IdempotencyMode::Replay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgrest_shape_syncs_exactly_once_when_keys_are_ignored() {
    postgrest_exactly_once(IdempotencyMode::Ignore).await;
}
