//! A faulty server: the reference server's seeded fault mode in front of
//! the real engine (SQLite store, HTTP adapter). Transient faults end in
//! `synced` within the retry policy, permanent ones park only their own
//! item, `Retry-After` is honoured, a 401 refreshes the credentials once,
//! lost responses never duplicate a change, and saves made while a record
//! is in flight always win over the older attempt.
//!
//! Every scenario prints its seed; `SYNC_CHAOS_SEED` replays it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod chaos_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chaos_support::{
    Change, Model, Records, Rng, assert_each_key_applied_at_most_once, assert_no_record_created_twice,
    report_line, seed_from_env, server_records,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};
use sync_facade::prelude::*;
use sync_facade::{ApiError, AuthHook, ErrorKind, SyncReport, Timestamp};
use sync_reference_server::{Fault, FaultPlan, ReferenceServer, ServerConfig};

/// Only a guard against hangs.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The adapter gives up on an answer after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);

const WRITES: [Method; 3] = [Method::POST, Method::PUT, Method::DELETE];

fn options(concurrency: usize) -> OfflineSyncOptions {
    let mut options = OfflineSyncOptions::default();
    options.concurrency = concurrency;
    options.sync_after_save = false;
    options.connectivity_check_interval = None;
    options.retry_base_delay = Duration::from_millis(10);
    options
}

async fn open_with(
    dir: &Path,
    server: &ReferenceServer,
    options: OfflineSyncOptions,
    auth: Option<Arc<dyn AuthHook>>,
) -> OfflineSyncEngine {
    OfflineSync::builder(dir, server.url())
        .probe_api_health("/health")
        .options(options)
        .adapter(|adapter| {
            let adapter = adapter.request_timeout(REQUEST_TIMEOUT);
            match auth {
                Some(hook) => adapter.auth(SharedHook(hook)),
                None => adapter,
            }
        })
        .build()
        .await
        .unwrap()
}

async fn open(dir: &Path, server: &ReferenceServer, concurrency: usize) -> OfflineSyncEngine {
    open_with(dir, server, options(concurrency), None).await
}

async fn save_all(engine: &OfflineSyncEngine, changes: &[Change]) {
    for change in changes {
        engine
            .save(change.entity, &change.id, change.data.clone(), change.operation)
            .await
            .unwrap();
    }
}

async fn sync(engine: &OfflineSyncEngine) -> SyncReport {
    tokio::time::timeout(HANG_GUARD, engine.sync_manager().sync_now())
        .await
        .expect("sync_now hung")
        .unwrap()
}

/// The engine's records of the script's entities.
async fn local(engine: &OfflineSyncEngine) -> Records {
    let mut records = Records::new();
    for entity in chaos_support::ENTITIES {
        let by_id = engine
            .get_records(entity)
            .await
            .unwrap()
            .into_iter()
            .map(|record| (record.id.as_str().to_owned(), Value::Object(record.data)))
            .collect();
        records.insert(entity.to_owned(), by_id);
    }
    records
}

/// Server and local state are equal, nothing waits, nothing was lost or
/// applied twice.
async fn assert_converged(
    engine: &OfflineSyncEngine,
    server: &ReferenceServer,
    script: &[Change],
    seed: u64,
) {
    let local = local(engine).await;
    assert_eq!(
        local,
        Model::replay(script, script.len() as u64),
        "seed {seed}: a local save was lost"
    );
    assert_eq!(
        server_records(server),
        local,
        "seed {seed}: the server differs from the local state"
    );
    let queue = engine.queue().await.unwrap();
    assert!(
        queue.iter().all(|item| item.status == SyncStatus::Synced),
        "seed {seed}: items left unsynced: {queue:#?}"
    );
    assert_no_record_created_twice(server, seed);
    assert_each_key_applied_at_most_once(server, seed);
}

/// Saves `script` in two halves, each followed by one sync pass (so
/// updates and deletes of synced records are sent too), and checks that
/// each pass alone synced everything: the faults were absorbed by the
/// retry policy within the pass.
async fn two_phases_each_one_pass(engine: &OfflineSyncEngine, script: &[Change], label: &str) {
    let (first, second) = script.split_at(script.len() / 2);
    for half in [first, second] {
        save_all(engine, half).await;
        let report = sync(engine).await;
        let queue = engine.queue().await.unwrap();
        assert_eq!(
            (report.failed > 0, report.still_pending, report.offline),
            (report.failed > 0, 0, false),
            "{label}: one pass must sync everything: {report:?}\n{queue:#?}"
        );
    }
}

/// One transient fault on the first send of every write: everything ends
/// `synced` within one pass, exactly once on the server.
async fn a_transient_fault_ends_synced(fault: Fault, concurrency: usize, ops: u64) {
    let seed = seed_from_env();
    let name = format!("{fault:?}");
    println!("fault {name}: seed {seed}");
    let plan = FaultPlan::seeded(seed)
        .only_methods(&WRITES)
        .first_attempts(1, fault);
    let server = ReferenceServer::start(ServerConfig::new().with_faults(plan))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, concurrency).await;
    let script = Model::script(seed, ops);
    two_phases_each_one_pass(&engine, &script, &name).await;
    assert_converged(&engine, &server, &script, seed).await;
    let injected: u64 = server.fault_counts().values().sum();
    assert!(injected > 0, "{name}: no fault was injected");
    for item in engine.queue().await.unwrap() {
        assert!(
            item.retry_count <= 3,
            "{name}: more attempts than the policy allows: {item:#?}"
        );
    }
    report_line(&format!(
        r#"{{"scenario":"fault {}","seed":{seed},"operations":{ops},"faults":{injected},"requests":{},"lost":0,"duplicated":0}}"#,
        name.replace('"', "'"),
        server.request_log().len()
    ));
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_response_is_retried_without_a_duplicate() {
    a_transient_fault_ends_synced(Fault::LoseResponse, 1, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_body_is_retried_without_a_duplicate() {
    a_transient_fault_ends_synced(Fault::ResetMidBody, 1, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_later_than_the_timeout_is_retried_without_a_duplicate() {
    a_transient_fault_ends_synced(Fault::Delay(Duration::from_secs(2)), 4, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_500_502_503_are_retried() {
    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        a_transient_fault_ends_synced(Fault::Status(status), 1, 30).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_json_arrays_in_answers_are_retried_without_a_duplicate() {
    a_transient_fault_ends_synced(Fault::MalformedJson, 1, 30).await;
    a_transient_fault_ends_synced(Fault::JsonArray, 1, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_answer_is_cut_off_and_retried_without_a_duplicate() {
    a_transient_fault_ends_synced(
        Fault::HugeBody {
            bytes: 50 * 1024 * 1024,
        },
        2,
        8,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_answer_times_out_and_is_retried_without_a_duplicate() {
    a_transient_fault_ends_synced(
        Fault::Trickle {
            interval: Duration::from_millis(100),
        },
        4,
        12,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_on_a_create_is_resolved_and_ends_synced() {
    let seed = seed_from_env();
    println!("409: seed {seed}");
    let plan = FaultPlan::seeded(seed)
        .only_methods(&[Method::POST])
        .first_attempts(1, Fault::Status(StatusCode::CONFLICT));
    let server = ReferenceServer::start(ServerConfig::new().with_faults(plan))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, 1).await;
    let script = Model::script(seed, 30);
    save_all(&engine, &script).await;
    for _ in 0..3 {
        sync(&engine).await;
    }
    assert_converged(&engine, &server, &script, seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_on_429_and_503() {
    for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE] {
        let seed = seed_from_env();
        let plan = FaultPlan::seeded(seed)
            .only_methods(&WRITES)
            .first_attempts(1, Fault::RetryAfter { status, seconds: 1 });
        let server = ReferenceServer::start(ServerConfig::new().with_faults(plan))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path(), &server, 1).await;
        engine
            .save("tasks", "1", json!({"id": "1"}), SyncOperation::Create)
            .await
            .unwrap();
        let before = Timestamp::now();
        let report = sync(&engine).await;
        // The pass does not wait a whole second: it ends, and the item
        // keeps the server's time.
        assert_eq!(report.still_pending, 1, "{report:?}");
        let item = engine.queue_item("tasks", "1").await.unwrap().unwrap();
        let not_before = item.not_before.expect("the server's retry time");
        let gap = not_before.as_millis() - before.as_millis();
        assert!(
            gap >= 1000,
            "{status}: Retry-After: 1 s gave a retry after only {gap} ms: {item:#?}"
        );
        assert!(item.next_attempt_at >= item.not_before, "{item:#?}");
        assert!(
            item.last_error
                .as_deref()
                .unwrap_or_default()
                .contains(status.as_str()),
            "{item:#?}"
        );
        // A pass before that time does not send it.
        sync(&engine).await;
        assert_eq!(
            server.request_log().len(),
            1,
            "{status}: retried before Retry-After"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        sync(&engine).await;
        let writes: Vec<_> = server
            .request_log()
            .into_iter()
            .filter(|record| record.method == Method::POST)
            .collect();
        assert_eq!(
            writes.len(),
            2,
            "{status}: one refused POST and one retry: {writes:#?}"
        );
        assert_eq!(
            engine.queue_item("tasks", "1").await.unwrap().unwrap().status,
            SyncStatus::Synced
        );
        engine.close().await;
    }
}

/// Credentials that go stale: the first token is refused with 401 until
/// the hook refreshes it.
#[derive(Debug, Default)]
struct RotatingToken {
    generation: AtomicU64,
    refreshes: AtomicU64,
}

#[async_trait]
impl AuthHook for RotatingToken {
    async fn headers(&self) -> Result<HeaderMap, ApiError> {
        let token = format!("Bearer token-{}", self.generation.load(Ordering::SeqCst));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::try_from(token).unwrap());
        Ok(headers)
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Lets a shared hook be handed to the adapter builder.
struct SharedHook(Arc<dyn AuthHook>);

#[async_trait]
impl AuthHook for SharedHook {
    async fn headers(&self) -> Result<HeaderMap, ApiError> {
        self.0.headers().await
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        self.0.refresh().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_refreshes_the_credentials_once() {
    let seed = seed_from_env();
    let server = ReferenceServer::start(ServerConfig::new().with_bearer_token("token-1"))
        .await
        .unwrap();
    let hook = Arc::new(RotatingToken::default());
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with(dir.path(), &server, options(1), Some(hook.clone())).await;
    let script = Model::script(seed, 20);
    two_phases_each_one_pass(&engine, &script, "401").await;
    assert_converged(&engine, &server, &script, seed).await;
    assert_eq!(
        hook.refreshes.load(Ordering::SeqCst),
        1,
        "one refresh for the whole run"
    );
    let refused = server
        .request_log()
        .iter()
        .filter(|record| record.status == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(refused, 1, "only the first request met the stale token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_park_only_their_item_and_everything_else_syncs() {
    let seed = seed_from_env();
    println!("permanent: seed {seed}");
    let plan = FaultPlan::seeded(seed)
        .for_id("poison-400", Fault::Status(StatusCode::BAD_REQUEST))
        .for_id("poison-422", Fault::Status(StatusCode::UNPROCESSABLE_ENTITY));
    let server = ReferenceServer::start(ServerConfig::new().with_faults(plan))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Strict queue order: the poisoned items are first in line.
    let engine = open(dir.path(), &server, 1).await;
    for id in ["poison-400", "poison-422"] {
        engine
            .save(
                "tasks",
                id,
                json!({"id": id, "secret": "do-not-log"}),
                SyncOperation::Create,
            )
            .await
            .unwrap();
    }
    let script = Model::script(seed, 40);
    save_all(&engine, &script).await;
    let report = sync(&engine).await;
    assert_eq!(
        report.still_pending, 2,
        "only the poisoned items wait: {report:?}"
    );
    for (id, status) in [("poison-400", "400"), ("poison-422", "422")] {
        let item = engine.queue_item("tasks", id).await.unwrap().unwrap();
        assert_eq!(item.status, SyncStatus::Failed, "{item:#?}");
        assert_eq!(item.last_error_kind, Some(ErrorKind::Permanent), "{item:#?}");
        let error = item.last_error.clone().unwrap();
        assert!(
            error.contains(status) && error.contains("POST"),
            "a readable error: {error}"
        );
        assert_eq!(item.retry_count, 1, "a permanent error is not retried: {item:#?}");
        // A permanent failure is not retried by later passes either.
        sync(&engine).await;
        let again = engine.queue_item("tasks", id).await.unwrap().unwrap();
        assert_eq!(
            (again.status, again.retry_count),
            (SyncStatus::Failed, 1),
            "{again:#?}"
        );
    }
    let mut local = local(&engine).await;
    for id in ["poison-400", "poison-422"] {
        local.get_mut("tasks").unwrap().remove(id);
    }
    assert_eq!(
        server_records(&server),
        local,
        "seed {seed}: every other item synced"
    );
    assert_each_key_applied_at_most_once(&server, seed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_on_a_third_of_1000_operations_lose_and_duplicate_nothing() {
    let seed = seed_from_env();
    println!("lost responses: seed {seed}");
    let plan = FaultPlan::seeded(seed)
        .only_methods(&WRITES)
        .with_random(Fault::LoseResponse, 1.0 / 3.0)
        .max_faults_per_request_key(2);
    let server = ReferenceServer::start(ServerConfig::new().with_faults(plan))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, 4).await;
    let script = Model::script(seed, 1000);
    // Each change is synced before the next is saved, so every one of the
    // 1000 operations is sent (none coalesced away) and may lose its answer.
    for change in &script {
        save_all(&engine, std::slice::from_ref(change)).await;
        let mut passes = 0;
        while sync(&engine).await.still_pending > 0 {
            passes += 1;
            assert!(passes < 20, "seed {seed}: the queue never drained");
        }
    }
    assert_converged(&engine, &server, &script, seed).await;
    let lost = server.fault_counts().get("lose_response").copied().unwrap_or(0);
    let writes = server
        .request_log()
        .iter()
        .filter(|record| WRITES.contains(&record.method))
        .count();
    println!("lost responses: seed {seed}: {lost} of {writes} write answers lost; lost 0, duplicated 0");
    assert!(writes >= 1000, "every operation was sent: {writes} writes");
    assert!(
        lost >= 250,
        "about a third of the operations must lose an answer: {lost} of {writes}"
    );
    report_line(&format!(
        r#"{{"scenario":"lost responses","seed":{seed},"operations":1000,"faults":{lost},"requests":{},"lost":0,"duplicated":0}}"#,
        server.request_log().len()
    ));
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_end_synced_except_the_poisoned_items() {
    let seed = seed_from_env();
    println!("mixed faults: seed {seed}");
    let transient = [
        Fault::LoseResponse,
        Fault::ResetMidBody,
        Fault::Delay(Duration::from_millis(600)),
        Fault::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Fault::Status(StatusCode::BAD_GATEWAY),
        Fault::Status(StatusCode::SERVICE_UNAVAILABLE),
        Fault::RetryAfter {
            status: StatusCode::TOO_MANY_REQUESTS,
            seconds: 1,
        },
        Fault::MalformedJson,
        Fault::JsonArray,
        Fault::HugeBody {
            bytes: 9 * 1024 * 1024,
        },
    ];
    let mut plan = FaultPlan::seeded(seed)
        .max_faults_per_request_key(2)
        .for_id("poison", Fault::Status(StatusCode::UNPROCESSABLE_ENTITY))
        .burst(5, Fault::Status(StatusCode::SERVICE_UNAVAILABLE));
    for fault in transient {
        plan = plan.with_random(fault, 0.04);
    }
    let server = ReferenceServer::start(ServerConfig::new().with_faults(plan))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, 4).await;
    let script = Model::script(seed, 300);
    engine
        .save("notes", "poison", json!({"id": "poison"}), SyncOperation::Create)
        .await
        .unwrap();
    for slice in script.chunks(60) {
        save_all(&engine, slice).await;
        let mut passes = 0;
        // Items told to wait (Retry-After) are not retried before their
        // time, so passes follow one another as auto-sync's timer would.
        while sync(&engine).await.still_pending > 1 {
            passes += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if passes == 100 {
                let stuck: Vec<_> = engine
                    .queue()
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|item| item.status != SyncStatus::Synced)
                    .collect();
                panic!("seed {seed}: the queue never drained: {stuck:#?}");
            }
        }
    }
    let poison = engine.queue_item("notes", "poison").await.unwrap().unwrap();
    assert_eq!(poison.status, SyncStatus::Failed, "{poison:#?}");
    let mut local = local(&engine).await;
    local.get_mut("notes").unwrap().remove("poison");
    assert_eq!(local, Model::replay(&script, script.len() as u64));
    assert_eq!(
        server_records(&server),
        local,
        "seed {seed}: the server differs from the local state"
    );
    assert_no_record_created_twice(&server, seed);
    assert_each_key_applied_at_most_once(&server, seed);
    let counts = server.fault_counts();
    let injected: u64 = counts.values().sum();
    println!("mixed faults: seed {seed}: {injected} faults injected: {counts:?}");
    report_line(&format!(
        r#"{{"scenario":"mixed faults","seed":{seed},"operations":300,"faults":{injected},"requests":{},"lost":0,"duplicated":0}}"#,
        server.request_log().len()
    ));
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_during_flight_always_win_and_no_older_attempt_overwrites_a_newer_change() {
    let seed = seed_from_env();
    println!("concurrent writers: seed {seed}");
    // Slow answers keep records in flight while the app writes to them.
    let plan = FaultPlan::seeded(seed)
        .only_methods(&WRITES)
        .with_random(Fault::Delay(Duration::from_millis(15)), 0.5)
        .with_random(Fault::LoseResponse, 0.1)
        .max_faults_per_request_key(2);
    let server = Arc::new(
        ReferenceServer::start(ServerConfig::new().with_faults(plan))
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(4);
    options.sync_after_save = true;
    let engine = open_with(dir.path(), &server, options, None).await;

    // Watches the server: a record's `seq` never goes back.
    let writing = Arc::new(AtomicBool::new(true));
    let watcher = {
        let server = Arc::clone(&server);
        let writing = Arc::clone(&writing);
        tokio::spawn(async move {
            let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
            let mut regressions = Vec::new();
            while writing.load(Ordering::SeqCst) {
                for (collection, records) in server.snapshot() {
                    for (id, record) in records {
                        let seq = record["seq"].as_u64().unwrap();
                        let last = seen.entry((collection.clone(), id.clone())).or_insert(seq);
                        if seq < *last {
                            regressions.push((collection.clone(), id.clone(), *last, seq));
                        }
                        *last = seq;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            regressions
        })
    };
    let mut rng = Rng::new(seed);
    let mut saves = 0u64;
    let mut last_saved: BTreeMap<String, Value> = BTreeMap::new();
    for seq in 0..600u64 {
        let id = format!("r{}", rng.below(6));
        let operation = if engine.get_record("tasks", &id).await.unwrap().is_some() {
            SyncOperation::Update
        } else {
            SyncOperation::Create
        };
        engine
            .save("tasks", &id, json!({"id": id, "seq": seq}), operation)
            .await
            .unwrap();
        last_saved.insert(id.clone(), json!({"id": id, "seq": seq}));
        saves += 1;
        if rng.below(4) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(8))).await;
        }
    }
    let mut passes = 0;
    while sync(&engine).await.still_pending > 0 {
        passes += 1;
        assert!(passes < 20, "seed {seed}: the queue never drained");
    }
    writing.store(false, Ordering::SeqCst);
    let regressions = watcher.await.unwrap();
    let local: BTreeMap<String, Value> = engine
        .get_records("tasks")
        .await
        .unwrap()
        .into_iter()
        .map(|record| (record.id.as_str().to_owned(), Value::Object(record.data)))
        .collect();
    assert_eq!(
        local, last_saved,
        "seed {seed}: the local documents must be the last saves"
    );
    let remote = server.snapshot().get("tasks").cloned().unwrap_or_default();
    assert_eq!(
        remote, local,
        "seed {seed}: the last local state must win on the server"
    );
    assert!(
        regressions.is_empty(),
        "seed {seed}: the server went back to older changes: {regressions:?}"
    );
    assert_no_record_created_twice(&server, seed);
    assert_each_key_applied_at_most_once(&server, seed);
    report_line(&format!(
        r#"{{"scenario":"concurrent writers","seed":{seed},"operations":{saves},"faults":{},"requests":{},"lost":0,"duplicated":0}}"#,
        server.fault_counts().values().sum::<u64>(),
        server.request_log().len()
    ));
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_database_never_send_an_item_twice() {
    let seed = seed_from_env();
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), &server, 4).await;
    let script = Model::script(seed, 200);
    save_all(&first, &script).await;

    // A second engine on the same file is refused while the first lives,
    // before it can recover (and resend) the first one's attempts.
    // (The open waits for the lock up to the busy timeout, 5 s by default.)
    let refused = OfflineSync::builder(dir.path(), server.url())
        .probe_api_health("/health")
        .store_options(
            sync_facade::SqliteStoreOptions::in_dir(dir.path()).busy_timeout(Duration::from_millis(50)),
        )
        .options(options(4))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, sync_facade::OpenError::Store(error) if error.kind() == sync_facade::StoreErrorKind::InUse),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("another"),
        "a message that says why: {refused}"
    );

    // The same store object shared by two engines is refused too.
    let store: Arc<dyn sync_facade::SyncStore> = Arc::new(
        sync_facade::SqliteStore::open(dir.path().join("second.db"))
            .await
            .unwrap(),
    );
    let adapter = || {
        Arc::new(
            sync_facade::HttpSyncApiAdapter::builder(server.url())
                .build()
                .unwrap(),
        )
    };
    let monitor = || Arc::new(sync_testkit::FakeMonitor::new(true));
    let one = OfflineSyncEngine::builder(store.clone(), adapter(), monitor())
        .build()
        .await
        .unwrap();
    let two = OfflineSyncEngine::builder(store.clone(), adapter(), monitor())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(two, sync_facade::SyncError::StoreInUse), "{two:?}");
    one.close().await;

    // The first engine drains alone: every change exactly once.
    while sync(&first).await.still_pending > 0 {}
    assert_converged(&first, &server, &script, seed).await;
    first.close().await;
    let requests = server.request_log().len();

    // Reopened after the first closed: nothing is sent again.
    let reopened = open(dir.path(), &server, 4).await;
    sync(&reopened).await;
    assert_eq!(
        server.request_log().len(),
        requests,
        "a reopened engine resent synced items"
    );
    reopened.close().await;
}
