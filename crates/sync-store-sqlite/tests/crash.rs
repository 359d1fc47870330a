//! Crash consistency: a child process saves in a loop and is killed with
//! SIGKILL at random moments; after each kill the database, reopened, holds
//! exactly the effect of a prefix of the saves that includes every
//! acknowledged one, and nothing half-written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use sync_core::{LocalChange, LocalRecord, OperationId, SyncOperation, SyncQueueItem, SyncStore, Timestamp};
use sync_store_sqlite::SqliteStore;
use sync_testkit::MemoryStore;
use tokio::io::{AsyncBufReadExt, BufReader};

const CHILD_DB: &str = "SYNC_STORE_CRASH_CHILD_DB";
const CHILD_START: &str = "SYNC_STORE_CRASH_CHILD_START";
const SCRIPT_SEED: u64 = 0x5EED_CAFE;
const ROUNDS: usize = 6;

/// A small deterministic generator, so the parent can replay the child.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The `index`-th change of the script: mixed operations over a few
/// records of two entities, with payloads of varying size.
fn scripted_change(index: u64) -> LocalChange {
    let mut random = XorShift(SCRIPT_SEED ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let entity = if random.next().is_multiple_of(2) {
        "tasks"
    } else {
        "notes"
    };
    let id = (random.next() % 12).to_string();
    let operation = match random.next() % 4 {
        0 => SyncOperation::Create,
        1 | 2 => SyncOperation::Update,
        _ => SyncOperation::Delete,
    };
    let filler = "x".repeat((random.next() % 3000) as usize);
    LocalChange::new(entity, id, json!({ "n": index, "filler": filler }), operation).unwrap()
}

/// The child process: saves the script from `CHILD_START` on, printing an
/// acknowledgement after each save returns. Does nothing unless spawned by
/// `kill_at_random_moments_loses_no_acknowledged_save`.
#[tokio::test]
async fn crash_child_entry_point() {
    let Ok(path) = std::env::var(CHILD_DB) else { return };
    let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let store = SqliteStore::open(path).await.unwrap();
    for index in start.. {
        store
            .save(scripted_change(index), Timestamp::from_millis(index as i64))
            .await
            .unwrap();
        println!("ack {index}");
    }
}

/// Rows with the random operation ids blanked, for comparison.
async fn state(store: &dyn SyncStore) -> (Vec<SyncQueueItem>, Vec<LocalRecord>) {
    let blank = OperationId::new("x").unwrap();
    let queue = store
        .queue()
        .await
        .unwrap()
        .into_iter()
        .map(|mut item| {
            item.operation_id = blank.clone();
            item
        })
        .collect();
    let mut records = store.records(&"tasks".parse().unwrap()).await.unwrap();
    records.extend(store.records(&"notes".parse().unwrap()).await.unwrap());
    (queue, records)
}

/// The state after the first `count` saves of the script.
async fn replay(count: u64) -> (Vec<SyncQueueItem>, Vec<LocalRecord>) {
    let memory = MemoryStore::new();
    for index in 0..count {
        memory
            .save(scripted_change(index), Timestamp::from_millis(index as i64))
            .await
            .unwrap();
    }
    state(&memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_random_moments_loses_no_acknowledged_save() {
    let seed: u64 = std::env::var("SYNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xC0FFEE);
    println!("crash test seed {seed} (set SYNC_CRASH_SEED to replay)");
    let mut random = XorShift(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let exe = std::env::current_exe().unwrap();
    let mut applied: u64 = 0;

    for round in 0..ROUNDS {
        let wanted_acks = 5 + random.next() % 120;
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "crash_child_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DB, &path)
            .env(CHILD_START, applied.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last_ack = None;
        let reading = async {
            let mut acks = 0;
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(index) = line.strip_prefix("ack ") {
                    last_ack = Some(index.parse::<u64>().unwrap());
                    acks += 1;
                    if acks == wanted_acks {
                        break;
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), reading)
            .await
            .expect("the child stopped acknowledging");
        // SIGKILL, mid-save or between saves.
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        // The child kept saving until the signal landed: every
        // acknowledgement it printed counts.
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(index) = line.strip_prefix("ack ") {
                last_ack = Some(index.parse::<u64>().unwrap());
            }
        }
        let acknowledged = last_ack.expect("the child acknowledged saves") + 1;

        let store = SqliteStore::open(&path).await.unwrap();
        let found = state(&store).await;
        store.close().await;
        // The save after the last acknowledgement may have committed too.
        if found == replay(acknowledged).await {
            applied = acknowledged;
        } else if found == replay(acknowledged + 1).await {
            applied = acknowledged + 1;
        } else {
            panic!(
                "round {round} (seed {seed}): the database after a kill matches neither {acknowledged} \
                 nor {} saves: an acknowledged save was lost or one was half-written",
                acknowledged + 1
            );
        }
        println!("round {round}: killed after {acknowledged} acknowledged saves; database holds {applied}");
    }
    assert!(applied >= ROUNDS as u64 * 5);
}
