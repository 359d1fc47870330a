//! The kill test: a child process runs the engine (real SQLite store, real
//! HTTP adapter) saving a script of creates, updates and deletes over
//! several entities while it syncs them to a reference server that lives in
//! this process; the child is killed with SIGKILL at random moments and
//! restarted on the same database until the script is saved and the queue
//! drained.
//!
//! Checked after every kill: the local records are exactly the effect of a
//! prefix of the script that includes every acknowledged save. Checked at
//! the end: the server holds exactly the local records, no create was
//! applied twice for a record nor sent again for a record the server held,
//! and no idempotency key took effect twice.
//!
//! The scenario runs twice: against a server that honours `Idempotency-Key`
//! and against one that ignores it, as json-server and most real APIs do
//! (`IdempotencyMode::Ignore`), so that only the engine can prevent a
//! duplicate. There a retried write of one change may take effect twice
//! with the same payload: harmless, since the final data is compared with
//! the model, and counted (`repeated_writes`) rather than failed on.
//!
//! `SYNC_CHAOS_KILLS` (default 50) sets the number of kills,
//! `SYNC_CHAOS_SEED` replays a run (the seed prints at the start and in
//! every failure).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod chaos_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use chaos_support::{
    Model, Rng, assert_no_duplicates, env_u64, local_records, mode_label, report_line, seed_from_env,
    server_records,
};
use sync_facade::implement::SyncStore;
use sync_facade::prelude::*;
use sync_facade::{SqliteStore, SqliteStoreOptions};
use sync_reference_server::{IdempotencyMode, ReferenceServer, ServerConfig};
use tokio::io::{AsyncBufReadExt, BufReader};

const CHILD_DIR: &str = "SYNC_KILL_CHILD_DIR";
const CHILD_URL: &str = "SYNC_KILL_CHILD_URL";
const CHILD_START: &str = "SYNC_KILL_CHILD_START";
const CHILD_SEED: &str = "SYNC_KILL_CHILD_SEED";
const CHILD_LEN: &str = "SYNC_KILL_CHILD_LEN";
const CHILD_CONCURRENCY: &str = "SYNC_KILL_CHILD_CONCURRENCY";

/// Script operations per requested kill: a round saves 1 to 16 of them
/// (8.5 on average, plus those acknowledged while the signal lands) before
/// its kill, so the save phase alone gives more kills than requested.
const OPS_PER_KILL: u64 = 11;

/// Only a guard against hangs.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The child: opens the engine on `CHILD_DIR`, saves the script from
/// `CHILD_START` on (printing `ack i` once save `i` returned), then syncs
/// until nothing is pending and prints `drained`. Does nothing unless
/// spawned by `sigkill_at_random_moments`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_child_entry_point() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let url = std::env::var(CHILD_URL).unwrap();
    let start = env_u64(CHILD_START).unwrap();
    let seed = env_u64(CHILD_SEED).unwrap();
    let len = env_u64(CHILD_LEN).unwrap();
    let concurrency = env_u64(CHILD_CONCURRENCY).unwrap() as usize;
    let script = Model::script(seed, len);

    let mut options = OfflineSyncOptions::default();
    options.concurrency = concurrency;
    options.retry_base_delay = Duration::from_millis(20);
    let engine = OfflineSync::builder(&dir, url)
        .probe_api_health("/health")
        .options(options)
        .build()
        .await
        .unwrap();
    println!("ready");
    for (index, change) in script.iter().enumerate().skip(start as usize) {
        engine
            .save(change.entity, &change.id, change.data.clone(), change.operation)
            .await
            .unwrap();
        println!("ack {index}");
        // Paced like an app, so syncs run between saves.
        tokio::time::sleep(Duration::from_micros(700)).await;
    }
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let report = engine.sync_manager().sync_now().await.unwrap();
        if engine
            .wait_until_drained(Duration::from_millis(50))
            .await
            .unwrap()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the child never drained: {report:?}");
    }
    engine.close().await;
    println!("drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    sigkill_at_random_moments(IdempotencyMode::Replay).await;
}

/// The same against a server that ignores `Idempotency-Key`: no replay
/// masks a duplicate, the engine alone prevents it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_duplicates_nothing_on_a_server_that_ignores_idempotency_keys() {
    sigkill_at_random_moments(IdempotencyMode::Ignore).await;
}

async fn sigkill_at_random_moments(mode: IdempotencyMode) {
    let seed = seed_from_env();
    let kills_wanted = env_u64("SYNC_CHAOS_KILLS").unwrap_or(50);
    let len = kills_wanted * OPS_PER_KILL;
    let label = format!("kill{}", mode_label(mode));
    println!(
        "{label}: seed {seed}, {kills_wanted} kills wanted, script of {len} saves (SYNC_CHAOS_SEED replays)"
    );
    let script = Model::script(seed, len);
    let mut rng = Rng::new(seed ^ 0x4B11);

    let server = ReferenceServer::start(ServerConfig::new().with_idempotency(mode))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut committed: u64 = 0;
    let mut kills: u64 = 0;
    let mut round: u64 = 0;
    let started = Instant::now();

    loop {
        round += 1;
        assert!(
            round < 10 * kills_wanted + 100,
            "seed {seed}: too many rounds, the child never drains"
        );
        let concurrency = if rng.below(2) == 0 { 1 } else { 4 };
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "kill_child_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_URL, server.url())
            .env(CHILD_START, committed.to_string())
            .env(CHILD_SEED, seed.to_string())
            .env(CHILD_LEN, len.to_string())
            .env(CHILD_CONCURRENCY, concurrency.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last_ack: Option<u64> = None;
        let mut drained = false;
        // Kill after a random number of acknowledged saves, or, once the
        // script is saved, after a random time into the drain.
        let acks_before_kill = 1 + rng.below(16);
        let drain_delay = Duration::from_millis(1 + rng.below(60));
        let watching = async {
            let mut acks = 0;
            while let Some(line) = lines.next_line().await.unwrap() {
                if line == "drained" {
                    drained = true;
                    return;
                }
                if line == "ready" && committed >= len {
                    tokio::time::sleep(drain_delay).await;
                    return;
                }
                if let Some(index) = line.strip_prefix("ack ") {
                    last_ack = Some(index.parse().unwrap());
                    acks += 1;
                    if acks == acks_before_kill || last_ack == Some(len - 1) {
                        // Sometimes mid-save, sometimes mid-request.
                        tokio::time::sleep(Duration::from_micros(rng.below(3000))).await;
                        return;
                    }
                }
            }
        };
        tokio::time::timeout(HANG_GUARD, watching)
            .await
            .unwrap_or_else(|_| panic!("seed {seed}, round {round}: the child hung"));
        if drained {
            assert!(child.wait().await.unwrap().success());
            break;
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills += 1;
        // Acknowledgements printed before the signal landed count too.
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(index) = line.strip_prefix("ack ") {
                last_ack = Some(index.parse().unwrap());
            }
            drained |= line == "drained";
        }
        let acknowledged = last_ack.map_or(committed, |index| index + 1);

        // The database holds the effect of the acknowledged saves, or of
        // one more (the kill may land between its commit and its ack).
        let store = SqliteStore::open_with(SqliteStoreOptions::in_dir(dir.path()))
            .await
            .unwrap();
        let found = local_records(&store).await;
        store.close().await;
        committed = if found == Model::replay(&script, acknowledged) {
            acknowledged
        } else if acknowledged < len && found == Model::replay(&script, acknowledged + 1) {
            acknowledged + 1
        } else {
            panic!(
                "seed {seed}, round {round}: after a kill the local records match neither {acknowledged} \
                 nor {} saves: an acknowledged save was lost or one was half-written",
                acknowledged + 1
            )
        };
        if drained {
            break;
        }
    }

    // The last child drained and closed: the server holds exactly the
    // local state, which is the whole script.
    let store = SqliteStore::open_with(SqliteStoreOptions::in_dir(dir.path()))
        .await
        .unwrap();
    let local = local_records(&store).await;
    let queue = store.queue().await.unwrap();
    store.close().await;
    assert_eq!(local, Model::replay(&script, len), "seed {seed}: a save was lost");
    assert!(
        queue.iter().all(|item| item.status == SyncStatus::Synced),
        "seed {seed}: items left unsynced: {queue:#?}"
    );
    assert_eq!(
        server_records(&server),
        local,
        "seed {seed}: the server differs from the local state"
    );
    let writes = assert_no_duplicates(&server, seed);
    assert!(
        kills >= kills_wanted,
        "seed {seed}: only {kills} kills happened, {kills_wanted} wanted"
    );
    let requests = server.request_log().len();
    println!(
        "{label}: seed {seed}: {kills} kills in {round} rounds, {len} saves, {} applied writes ({} keys, \
         {} the same change again), {requests} requests, {:.1} s; lost 0, duplicated 0",
        writes.applied,
        writes.keys,
        writes.repeated_writes,
        started.elapsed().as_secs_f64()
    );
    report_line(&format!(
        r#"{{"scenario":"{label}","seed":{seed},"kills":{kills},"operations":{len},"applied_writes":{},"repeated_writes":{},"requests":{requests},"lost":0,"duplicated":0}}"#,
        writes.applied, writes.repeated_writes
    ));
}
