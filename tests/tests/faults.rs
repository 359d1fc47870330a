//! A faulty server: the reference server's seeded fault mode in front of
//! the real engine (SQLite store, HTTP adapter). Transient faults end in
//! `synced` within the retry policy, permanent ones park only their own
//! item, `Retry-After` is honoured, a 401 refreshes the credentials once,
//! lost responses never duplicate a change, and saves made while a record
//! is in flight always win over the older attempt.
//!
//! Also the classes issue 11 found missing: a server that ignores
//! `Idempotency-Key` (so only the engine prevents duplicates), a server
//! that applies a write after its client gave up on it (delayed apply),
//! public calls cut short at random points, and a connectivity monitor
//! whose change stream misses transitions.
//!
//! Every scenario prints its seed; `SYNC_CHAOS_SEED` replays it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod chaos_support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chaos_support::{
    Change, Model, Rng, WriteLog, assert_each_key_applied_at_most_once, assert_no_duplicates,
    assert_no_record_created_twice, mode_label, report_line, seed_from_env, server_records, write_log,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};
use sync_facade::implement::{ConnectivityMonitor, SyncStore};
use sync_facade::prelude::*;
use sync_facade::{
    ApiError, AuthHook, BoxStream, ErrorKind, HttpSyncApiAdapter, InternetCheckOption,
    InternetConnectionMonitor, OpenError, SqliteStore, SqliteStoreOptions, StoreErrorKind, SyncReport,
    Timestamp,
};
use sync_reference_server::{Fault, FaultPlan, IdempotencyMode, ReferenceServer, ServerConfig};

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

/// Syncs until nothing is pending, in a bounded number of passes.
async fn drain(engine: &OfflineSyncEngine, seed: u64) {
    let mut passes = 0;
    while sync(engine).await.still_pending > 0 {
        passes += 1;
        assert!(
            passes < 20,
            "seed {seed}: the queue never drained: {:#?}",
            unsynced(engine).await
        );
    }
}

/// Items not `synced`.
async fn unsynced(engine: &OfflineSyncEngine) -> Vec<SyncQueueItem> {
    engine
        .queue()
        .await
        .unwrap()
        .into_iter()
        .filter(|item| item.status != SyncStatus::Synced)
        .collect()
}

/// A random cancellation point between 50 µs and 3 ms: what a mobile
/// background budget or a UI "cancel" does to a call.
fn cancel_after(rng: &mut Rng) -> Duration {
    Duration::from_micros(50 + rng.below(2_950))
}

/// Server and local state are equal, nothing waits, nothing was lost or
/// applied twice (as far as the server's idempotency mode can tell: see
/// [`assert_no_duplicates`]).
async fn assert_converged(
    engine: &OfflineSyncEngine,
    server: &ReferenceServer,
    script: &[Change],
    seed: u64,
) -> WriteLog {
    let local = chaos_support::engine_records(engine).await;
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
    assert_no_duplicates(server, seed)
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
    let mut local = chaos_support::engine_records(&engine).await;
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
    lost_responses_on_a_third_of_1000_operations(IdempotencyMode::Replay).await;
}

/// The same against a server that ignores `Idempotency-Key`, as most real
/// APIs do: no replay masks a duplicate. A create whose answer was lost is
/// checked (`GET`) and then sent as an update, never posted again; a
/// retried update or delete may take effect twice with the same payload,
/// which is harmless and only counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_duplicate_nothing_on_a_server_that_ignores_idempotency_keys() {
    lost_responses_on_a_third_of_1000_operations(IdempotencyMode::Ignore).await;
}

async fn lost_responses_on_a_third_of_1000_operations(mode: IdempotencyMode) {
    let seed = seed_from_env();
    let label = format!("lost responses{}", mode_label(mode));
    println!("{label}: seed {seed}");
    let plan = FaultPlan::seeded(seed)
        .only_methods(&WRITES)
        .with_random(Fault::LoseResponse, 1.0 / 3.0)
        .max_faults_per_request_key(2);
    let server = ReferenceServer::start(ServerConfig::new().with_faults(plan).with_idempotency(mode))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, 4).await;
    let script = Model::script(seed, 1000);
    // Each change is synced before the next is saved, so every one of the
    // 1000 operations is sent (none coalesced away) and may lose its answer.
    for change in &script {
        save_all(&engine, std::slice::from_ref(change)).await;
        drain(&engine, seed).await;
    }
    let writes_log = assert_converged(&engine, &server, &script, seed).await;
    let lost = server.fault_counts().get("lose_response").copied().unwrap_or(0);
    let writes = server
        .request_log()
        .iter()
        .filter(|record| WRITES.contains(&record.method))
        .count();
    println!(
        "{label}: seed {seed}: {lost} of {writes} write answers lost, {} changes applied again with the \
         same payload; lost 0, duplicated 0",
        writes_log.repeated_writes
    );
    assert!(writes >= 1000, "every operation was sent: {writes} writes");
    assert!(
        lost >= 250,
        "about a third of the operations must lose an answer: {lost} of {writes}"
    );
    report_line(&format!(
        r#"{{"scenario":"{label}","seed":{seed},"operations":1000,"faults":{lost},"requests":{},"repeated_writes":{},"lost":0,"duplicated":0}}"#,
        server.request_log().len(),
        writes_log.repeated_writes
    ));
    engine.close().await;
}

/// Every fault mixed, with public calls cut short at random points (issue
/// 11): some saves and some `sync_now` calls are dropped after 50 µs to
/// 3 ms, as an app's timeout or a UI "cancel" drops them. A save cut short
/// is saved in full or not at all, so the app saves it again (harmless,
/// as the docs say); a `sync_now` cut short stops the waiting, not the
/// run. Afterwards nothing is stuck `syncing`, the server equals the local
/// state, and nothing was created twice.
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
    let mut rng = Rng::new(seed ^ 0xCA9C);
    let (mut saves_cut, mut syncs_cut, mut parked_by_broken_checks) = (0u64, 0u64, 0u64);
    let cut_short_sync = |rng: &mut Rng| {
        let manager = engine.sync_manager();
        let after = cancel_after(rng);
        async move { tokio::time::timeout(after, manager.sync_now()).await.is_err() }
    };
    for slice in script.chunks(60) {
        for change in slice {
            if rng.below(6) == 0 {
                let save = engine.save(change.entity, &change.id, change.data.clone(), change.operation);
                if tokio::time::timeout(cancel_after(&mut rng), save).await.is_err() {
                    saves_cut += 1;
                    save_all(&engine, std::slice::from_ref(change)).await;
                }
            } else {
                save_all(&engine, std::slice::from_ref(change)).await;
            }
            if rng.below(8) == 0 && cut_short_sync(&mut rng).await {
                syncs_cut += 1;
            }
        }
        for _ in 0..rng.below(4) {
            if cut_short_sync(&mut rng).await {
                syncs_cut += 1;
            }
        }
        let mut passes = 0;
        // Items told to wait (Retry-After) are not retried before their
        // time, so passes follow one another as auto-sync's timer would.
        while sync(&engine).await.still_pending > 1 {
            passes += 1;
            // A check (`GET`) answered 2xx with a body that is not an object
            // (`JsonArray`, `MalformedJson`) breaks the API's contract: the
            // adapter calls that permanent and the item is parked, to be
            // retried by the app once the server is fixed; this server's
            // fault is over by then, so the app retries it.
            for item in unsynced(&engine).await {
                let broken_check = item.status == SyncStatus::Failed
                    && item
                        .last_error
                        .as_deref()
                        .is_some_and(|error| error.contains("answered a fetch with"));
                if broken_check {
                    assert!(
                        engine
                            .retry(item.entity.as_str(), item.id.as_str())
                            .await
                            .unwrap()
                    );
                    parked_by_broken_checks += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                passes < 100,
                "seed {seed}: the queue never drained: {:#?}",
                unsynced(&engine).await
            );
        }
    }
    let poison = engine.queue_item("notes", "poison").await.unwrap().unwrap();
    assert_eq!(poison.status, SyncStatus::Failed, "{poison:#?}");
    let left: Vec<_> = unsynced(&engine)
        .await
        .into_iter()
        .filter(|item| item.id.as_str() != "poison")
        .collect();
    assert!(left.is_empty(), "seed {seed}: items left unsynced: {left:#?}");
    let mut local = chaos_support::engine_records(&engine).await;
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
    println!(
        "mixed faults: seed {seed}: {injected} faults injected: {counts:?}; {saves_cut} saves and {syncs_cut} \
         sync_now calls cut short; {parked_by_broken_checks} items parked by a check answered with a broken \
         body, retried"
    );
    report_line(&format!(
        r#"{{"scenario":"mixed faults","seed":{seed},"operations":300,"faults":{injected},"requests":{},"cancelled":{},"lost":0,"duplicated":0}}"#,
        server.request_log().len(),
        saves_cut + syncs_cut
    ));
    engine.close().await;
}

/// How long a `DelayedApply` server holds a write before applying it: past
/// the adapter's [`REQUEST_TIMEOUT`], so the engine has given up on it and
/// retried by then.
const HELD: Duration = Duration::from_millis(1_000);

/// The engine against a server that applies a write after the client gave
/// up on it (issue 11): 15 % of writes are held for [`HELD`], longer than
/// the adapter's request timeout, so the engine counts the attempt as
/// possibly applied and retries it; the held write lands later, in the
/// middle of whatever the engine sent since.
///
/// What the engine promises then, and this test asserts:
///
/// - **No create is duplicated.** Ids are set by the client, so a record
///   exists once however often it is posted: a retried create checks
///   first (`GET`), and a held create that lands on the record the retry
///   made is refused with `409` (or replayed, with keys honoured). The
///   request log shows no create sent for a record the server held.
/// - **Every item ends `synced`, nothing is stuck, nothing saved is lost
///   locally**, and the server holds only states the app saved (never a
///   mix or an invented one). Every record the app holds is on the
///   server, because the script never creates a deleted id again.
///
/// - **No held update or delete lands on a newer state** (issue 13): the
///   reference server gives ETags, so every update and delete carries
///   `If-Match` with the version of the copy it was written against, and a
///   held one that applies after the record changed is refused with 412.
///   (Before conditional writes, such a held update put the older document
///   back on the server.)
///
/// What it cannot promise, and this test measures without failing on:
///
/// - **A held create that lands after the record's delete brings it
///   back**: a create has no version to be conditional on. The engine has
///   recorded the delete `synced` by then and has no way to tell. A server
///   that honours `Idempotency-Key` refuses most of them (the retry stored
///   the key).
async fn delayed_apply(mode: IdempotencyMode) {
    let seed = seed_from_env();
    let label = format!("delayed apply{}", mode_label(mode));
    println!("{label}: seed {seed}");
    let plan = FaultPlan::seeded(seed)
        .only_methods(&WRITES)
        .with_random(Fault::DelayedApply(HELD), 0.15)
        .max_faults_per_request_key(1);
    let server = ReferenceServer::start(ServerConfig::new().with_faults(plan).with_idempotency(mode))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), &server, 4).await;
    let ops = 200;
    let script = Model::script(seed, ops);
    // Slices synced one after the other, without waiting for held writes:
    // the next slice's writes go out while some are still held.
    for slice in script.chunks(20) {
        save_all(&engine, slice).await;
        drain(&engine, seed).await;
    }
    let left = unsynced(&engine).await;
    assert!(left.is_empty(), "seed {seed}: items left unsynced: {left:#?}");
    tokio::time::timeout(HANG_GUARD, server.wait_for_delayed_applies())
        .await
        .expect("held writes never landed");
    let held = server.fault_counts().get("delayed_apply").copied().unwrap_or(0);
    assert!(held > 0, "seed {seed}: no write was held");

    let local = chaos_support::engine_records(&engine).await;
    assert_eq!(
        local,
        Model::replay(&script, ops),
        "seed {seed}: a local save was lost"
    );
    // Every state the app saved, per record.
    let mut saved: HashMap<(&str, &str), Vec<&Value>> = HashMap::new();
    for change in script
        .iter()
        .filter(|change| change.operation != SyncOperation::Delete)
    {
        saved
            .entry((change.entity, change.id.as_str()))
            .or_default()
            .push(&change.data);
    }
    let remote = server_records(&server);
    let (mut older, mut resurrected) = (Vec::new(), Vec::new());
    for entity in chaos_support::ENTITIES {
        for (id, document) in &remote[entity] {
            assert!(
                saved
                    .get(&(entity, id.as_str()))
                    .is_some_and(|states| states.contains(&document)),
                "seed {seed}: the server holds a state the app never saved: {entity}/{id}: {document}"
            );
            match local[entity].get(id) {
                None => resurrected.push(format!("{entity}/{id}")),
                Some(newest) if newest != document => {
                    assert!(
                        document["seq"].as_u64() < newest["seq"].as_u64(),
                        "seed {seed}: {entity}/{id}"
                    );
                    older.push(format!("{entity}/{id}"));
                }
                Some(_) => {}
            }
        }
        for id in local[entity].keys() {
            assert!(
                remote[entity].contains_key(id),
                "seed {seed}: {entity}/{id} is saved locally and synced, but missing on the server"
            );
        }
    }

    // No create duplicated: none sent over a record the server held, and a
    // record created twice only by a held create landing after its delete
    // (an older write winning: the record is back, counted above, unless a
    // held delete landed later still).
    let writes = write_log(&server);
    assert!(
        writes.creates_resent.is_empty(),
        "seed {seed}: creates sent again for records the server held (no check first): {:?}",
        writes.creates_resent
    );
    let log = server.request_log();
    for (collection, id) in &writes.created_twice {
        let of_record: Vec<_> = log
            .iter()
            .filter(|record| {
                record.applied && &record.collection == collection && record.id.as_ref() == Some(id)
            })
            .collect();
        let late_create = of_record
            .iter()
            .filter(|record| record.method == Method::POST && record.fault.is_some())
            .map(|record| record.handled_at)
            .max();
        let deleted_before = of_record
            .iter()
            .any(|record| record.method == Method::DELETE && Some(record.handled_at) < late_create);
        assert!(
            deleted_before,
            "seed {seed}: {collection}/{id} was created twice, not by a held create landing after its \
             delete: {of_record:#?}"
        );
    }
    if mode == IdempotencyMode::Replay {
        assert_each_key_applied_at_most_once(&server, seed);
    }
    assert!(
        older.is_empty(),
        "seed {seed}: held writes put older documents back over newer ones despite If-Match: {older:?}"
    );
    let older_state = older.len() + resurrected.len();
    println!(
        "{label}: seed {seed}: {held} writes held past the timeout; {} records older on the server than \
         locally {older:?}, {} brought back after their delete {resurrected:?} ({} creates landed after \
         the delete); {} changes applied again with the same payload; no create duplicated, nothing stuck",
        older.len(),
        resurrected.len(),
        writes.created_twice.len(),
        writes.repeated_writes
    );
    report_line(&format!(
        r#"{{"scenario":"{label}","seed":{seed},"operations":{ops},"faults":{held},"requests":{},"repeated_writes":{},"older_state":{older_state},"lost":0,"duplicated":0}}"#,
        log.len(),
        writes.repeated_writes
    ));
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_applied_after_the_client_gave_up_duplicate_no_create_and_leave_nothing_stuck() {
    delayed_apply(IdempotencyMode::Ignore).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_applied_after_the_client_gave_up_with_keys_honoured() {
    delayed_apply(IdempotencyMode::Replay).await;
}

/// A connectivity monitor whose change stream never reports anything, as
/// platforms that miss transitions do; its probe is the real one (the
/// reference server's `/health`), and it counts the probes.
struct DeafMonitor {
    inner: InternetConnectionMonitor,
    probes: AtomicU64,
}

#[async_trait]
impl ConnectivityMonitor for DeafMonitor {
    async fn is_connected(&self) -> bool {
        self.probes.fetch_add(1, Ordering::SeqCst);
        self.inner.is_connected().await
    }

    fn changes(&self) -> BoxStream<bool> {
        Box::pin(tokio_stream::pending())
    }
}

/// Auto-sync polls while its monitor's stream stays silent (issue 11): the
/// API goes down and comes back without a word from the monitor. While
/// down, probes stay few (they back off); once back, the queue drains at
/// the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_sync_drains_after_an_outage_its_monitor_never_reported_and_probes_little_meanwhile() {
    const POLL: Duration = Duration::from_millis(500);
    const OFFLINE_FOR: Duration = Duration::from_secs(4);
    let seed = seed_from_env();
    println!("missed monitor transitions: seed {seed}");
    let server = ReferenceServer::start(ServerConfig::new()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let monitor = Arc::new(DeafMonitor {
        inner: InternetConnectionMonitor::builder()
            .add_option(InternetCheckOption::new(&format!("{}/health", server.url())).unwrap())
            .build()
            .unwrap(),
        probes: AtomicU64::new(0),
    });
    let mut options = options(4);
    options.sync_after_save = true;
    options.connectivity_check_interval = Some(POLL);
    let store = SqliteStore::open_with(SqliteStoreOptions::in_dir(dir.path()))
        .await
        .unwrap();
    let adapter = HttpSyncApiAdapter::builder(server.url())
        .request_timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let engine = OfflineSyncEngine::builder(Arc::new(store), Arc::new(adapter), monitor.clone())
        .options(options)
        .build()
        .await
        .unwrap();
    engine.sync_manager().start_auto_sync();
    let script = Model::script(seed, 90);
    let (online, rest) = script.split_at(30);
    let (offline, after) = rest.split_at(30);

    save_all(&engine, online).await;
    assert!(
        engine.wait_until_drained(HANG_GUARD).await.unwrap(),
        "seed {seed}: auto-sync did not drain while online"
    );

    // The API goes down; the monitor says nothing. Saves keep coming.
    server.stop().await;
    let probes_before = monitor.probes.load(Ordering::SeqCst);
    let down_at = Instant::now();
    for change in offline {
        save_all(&engine, std::slice::from_ref(change)).await;
        tokio::time::sleep(OFFLINE_FOR / 40).await;
    }
    tokio::time::sleep(OFFLINE_FOR.saturating_sub(down_at.elapsed())).await;
    let offline_probes = monitor.probes.load(Ordering::SeqCst) - probes_before;
    let down_for = down_at.elapsed();
    assert!(
        !unsynced(&engine).await.is_empty(),
        "seed {seed}: nothing can sync while the API is down"
    );
    // Backing off from 1 s: about one probe a second, never a hot loop.
    let per_second = offline_probes as f64 / down_for.as_secs_f64();
    assert!(
        per_second <= 3.0,
        "seed {seed}: {offline_probes} probes in {down_for:?} while offline"
    );

    // Back, still without a word from the monitor: the next poll finds it.
    // The poll is 500 ms; while offline the probe waits out the link's
    // backoff, which starts at 1 s and is capped at the larger of the two.
    server.resume().await.unwrap();
    let up_at = Instant::now();
    assert!(
        engine.wait_until_drained(HANG_GUARD).await.unwrap(),
        "seed {seed}: auto-sync never drained after the outage"
    );
    let drained_after = up_at.elapsed();
    let bound = POLL.max(Duration::from_secs(1)) + Duration::from_secs(1);
    assert!(
        drained_after <= bound,
        "seed {seed}: drained {drained_after:?} after the API came back, more than {bound:?}"
    );

    save_all(&engine, after).await;
    assert!(engine.wait_until_drained(HANG_GUARD).await.unwrap());
    engine.sync_manager().stop_auto_sync();
    assert_converged(&engine, &server, &script, seed).await;
    println!(
        "missed monitor transitions: seed {seed}: {offline_probes} probes in {:.1} s offline, drained {} ms \
         after the API came back",
        down_for.as_secs_f64(),
        drained_after.as_millis()
    );
    report_line(&format!(
        r#"{{"scenario":"missed monitor transitions","seed":{seed},"operations":90,"requests":{},"offline_probes":{offline_probes},"offline_ms":{},"drained_after_ms":{},"lost":0,"duplicated":0}}"#,
        server.request_log().len(),
        down_for.as_millis(),
        drained_after.as_millis()
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

/// Two engines on one database at the same time: while the first drains
/// (slow answers keep its items in flight), a second engine on the same
/// file is refused again and again, before it can recover (and resend) the
/// first one's attempts; a second engine over the same store object is
/// refused while that one drains too. Every change reaches the server
/// exactly once, and every wait is bounded: a hang fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_database_never_send_an_item_twice() {
    const BOUND: Duration = Duration::from_secs(60);
    let seed = seed_from_env();
    println!("two engines: seed {seed}");
    // Every write answered 60 ms late: the drain takes about a second.
    let slow = || {
        FaultPlan::seeded(seed)
            .only_methods(&WRITES)
            .with_random(Fault::Delay(Duration::from_millis(60)), 1.0)
    };
    let server = ReferenceServer::start(ServerConfig::new().with_faults(slow()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), &server, 4).await;
    let script = Model::script(seed, 200);
    save_all(&first, &script).await;

    // The first engine drains in a task of its own, each pass bounded.
    let draining = tokio::spawn({
        let first = first.clone();
        async move {
            for _ in 0..20 {
                if sync(&first).await.still_pending == 0 {
                    return;
                }
            }
            panic!("seed {seed}: the first engine never drained");
        }
    });
    // Once the first has items out, a second engine on the same file is
    // tried again and again while the drain goes on: refused each time.
    // (The open waits for the lock up to the busy timeout: 50 ms here.)
    let deadline = Instant::now() + BOUND;
    while first
        .queue()
        .await
        .unwrap()
        .iter()
        .all(|item| !item.is_in_flight())
    {
        assert!(
            !draining.is_finished() && Instant::now() < deadline,
            "seed {seed}: the first engine never had an item in flight"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut refusals = 0;
    while !draining.is_finished() {
        assert!(Instant::now() < deadline, "seed {seed}: the drain hung");
        let second = OfflineSync::builder(dir.path(), server.url())
            .probe_api_health("/health")
            .store_options(SqliteStoreOptions::in_dir(dir.path()).busy_timeout(Duration::from_millis(50)))
            .options(options(4))
            .build();
        let refused = tokio::time::timeout(BOUND, second)
            .await
            .expect("opening a second engine hung")
            .map(drop)
            .expect_err("a second engine opened the database the first one drives");
        assert!(
            matches!(&refused, OpenError::Store(error) if error.kind() == StoreErrorKind::InUse),
            "{refused:?}"
        );
        assert!(
            refused.to_string().contains("another"),
            "a message that says why: {refused}"
        );
        refusals += 1;
    }
    tokio::time::timeout(BOUND, draining)
        .await
        .expect("the drain hung")
        .unwrap();
    assert!(
        refusals >= 2,
        "seed {seed}: the drain ended before a second engine was tried twice ({refusals} tries)"
    );
    println!("two engines: seed {seed}: a second engine refused {refusals} times while the first drained");
    assert_converged(&first, &server, &script, seed).await;

    // The same store object shared by two engines is refused while the
    // first drains too (its own server, so the logs stay apart).
    let other_server = ReferenceServer::start(ServerConfig::new().with_faults(slow()))
        .await
        .unwrap();
    let store: Arc<dyn SyncStore> = Arc::new(SqliteStore::open(dir.path().join("second.db")).await.unwrap());
    let adapter = || Arc::new(HttpSyncApiAdapter::builder(other_server.url()).build().unwrap());
    let monitor = || Arc::new(sync_testkit::FakeMonitor::new(true));
    let one = OfflineSyncEngine::builder(store.clone(), adapter(), monitor())
        .options(options(4))
        .build()
        .await
        .unwrap();
    save_all(&one, &script).await;
    let one_draining = tokio::spawn({
        let one = one.clone();
        async move { sync(&one).await }
    });
    while one.queue().await.unwrap().iter().all(|item| !item.is_in_flight()) && !one_draining.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let two = tokio::time::timeout(
        BOUND,
        OfflineSyncEngine::builder(store.clone(), adapter(), monitor())
            .options(options(4))
            .build(),
    )
    .await
    .expect("building a second engine hung")
    .map(drop)
    .expect_err("a second engine drives the store the first one drives");
    assert!(matches!(two, SyncError::StoreInUse), "{two:?}");
    assert!(
        !one_draining.is_finished(),
        "seed {seed}: the first engine finished before the second was tried"
    );
    tokio::time::timeout(BOUND, one_draining)
        .await
        .expect("the drain hung")
        .unwrap();
    drain(&one, seed).await;
    assert_converged(&one, &other_server, &script, seed).await;
    one.close().await;

    // Reopened after the first closed: nothing is sent again.
    first.close().await;
    let requests = server.request_log().len();
    let reopened = open(dir.path(), &server, 4).await;
    sync(&reopened).await;
    assert_eq!(
        server.request_log().len(),
        requests,
        "a reopened engine resent synced items"
    );
    reopened.close().await;
}
