//! Exactly once against servers nobody on this project wrote: json-server
//! (npm), Django REST framework over PostgreSQL (PyPI, Debian), PocketBase
//! (PyPI) and Directus over PostgreSQL (npm), each installed by its
//! `tests/servers/<name>/setup` (which `cargo xtask ci` runs first) and
//! started on loopback by its `run` script.
//!
//! Each run: a child process saves a script of mixed creates, updates and
//! deletes over three entities through the facade, with the preset request
//! shape of its server, syncing as it goes through a proxy that loses 30 %
//! of the answers to writes after the server applied them; it is killed
//! with SIGKILL half way and restarted on the same database, and drains.
//! Then the server's records equal the local ones exactly (no record
//! missing, none extra, none twice, every field equal), and a fresh create
//! whose answer is not lost takes one request.
//!
//! A server that cannot start fails its test with its script's reasons:
//! nothing is skipped in silence. `SYNC_CHAOS_SEED` replays a run and
//! `SYNC_REAL_OPERATIONS` (default 300) sets the script's length.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod chaos_support;
mod real_servers_support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chaos_support::{Rng, env_u64, report_line, seed_from_env};
use real_servers_support::proxy::LossyProxy;
use real_servers_support::server::ThirdParty;
use real_servers_support::{Flavor, Rows, id_text, project};
use serde_json::{Value, json};
use sync_facade::implement::SyncStore;
use sync_facade::prelude::*;
use sync_facade::{SqliteStore, SqliteStoreOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

const ENTITIES: [&str; 3] = ["tasks", "notes", "customers"];

/// The share of answers to writes the proxy loses, in percent.
const LOSS_PERCENT: u64 = 30;

const CHILD_DIR: &str = "SYNC_REAL_CHILD_DIR";
const CHILD_URL: &str = "SYNC_REAL_CHILD_URL";
const CHILD_SERVER: &str = "SYNC_REAL_CHILD_SERVER";
const CHILD_NUMERIC: &str = "SYNC_REAL_CHILD_NUMERIC";
const CHILD_TOKEN: &str = "SYNC_REAL_CHILD_TOKEN";
const CHILD_SEED: &str = "SYNC_REAL_CHILD_SEED";
const CHILD_LEN: &str = "SYNC_REAL_CHILD_LEN";
const CHILD_START: &str = "SYNC_REAL_CHILD_START";

/// Only a guard against hangs.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// One save of the script.
#[derive(Debug, Clone)]
struct Change {
    entity: &'static str,
    id: String,
    data: Value,
    operation: SyncOperation,
}

/// A script valid at every step: creates of new ids, updates and deletes
/// of live records. Ids are 15 lowercase letters and digits (PocketBase's
/// rule), or numbers held as JSON numbers.
fn script(seed: u64, len: u64, numeric_ids: bool) -> Vec<Change> {
    let mut rng = Rng::new(seed);
    let mut live: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut changes = Vec::new();
    for step in 0..len {
        let entity = ENTITIES[rng.below(3) as usize];
        let records = live.entry(entity).or_default();
        let roll = rng.below(10);
        let (id, operation) = if records.len() < 4 || roll < 4 {
            let id = if numeric_ids {
                (1_000_000 + step * 1_000 + rng.below(1_000)).to_string()
            } else {
                (0..15)
                    .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.below(36) as usize]))
                    .collect()
            };
            records.push(id.clone());
            (id, SyncOperation::Create)
        } else if roll < 8 {
            let id = records[rng.below(records.len() as u64) as usize].clone();
            (id, SyncOperation::Update)
        } else {
            let id = records.remove(rng.below(records.len() as u64) as usize);
            (id, SyncOperation::Delete)
        };
        let id_value = if numeric_ids {
            json!(id.parse::<u64>().unwrap())
        } else {
            json!(id)
        };
        let data = match operation {
            SyncOperation::Delete => json!({}),
            _ => json!({
                "id": id_value,
                "title": format!("{entity} {step}"),
                "count": rng.below(1_000),
                "done": rng.below(2) == 1,
            }),
        };
        changes.push(Change {
            entity,
            id,
            data,
            operation,
        });
    }
    changes
}

/// The records the first `count` changes leave, projected on the
/// scenario's fields.
fn replay(script: &[Change], count: u64) -> Rows {
    let mut rows: Rows = ENTITIES
        .iter()
        .map(|entity| ((*entity).to_owned(), BTreeMap::new()))
        .collect();
    for change in script.iter().take(count as usize) {
        let records = rows.entry(change.entity.to_owned()).or_default();
        match change.operation {
            SyncOperation::Delete => {
                records.remove(&change.id);
            }
            _ => {
                records.insert(change.id.clone(), project(&change.data));
            }
        }
    }
    rows
}

async fn local_rows(dir: &std::path::Path) -> Rows {
    let store = SqliteStore::open_with(SqliteStoreOptions::in_dir(dir))
        .await
        .unwrap();
    let mut rows = Rows::new();
    for entity in ENTITIES {
        let records = store.records(&entity.parse().unwrap()).await.unwrap();
        rows.insert(
            entity.to_owned(),
            records
                .iter()
                .map(|record| {
                    (
                        record.id.as_str().to_owned(),
                        project(&Value::Object(record.data.clone())),
                    )
                })
                .collect(),
        );
    }
    store.close().await;
    rows
}

/// The server's records, and how many ids it holds more than once.
async fn server_rows(server: &ThirdParty, flavor: Flavor) -> (Rows, u64) {
    let mut rows = Rows::new();
    let mut twice = 0;
    for entity in ENTITIES {
        let answer = server.get_json(&flavor.list_path(entity)).await;
        let records = rows.entry(entity.to_owned()).or_default();
        for row in flavor.rows(answer) {
            let id = id_text(&row["id"]);
            if records.insert(id, project(&row)).is_some() {
                twice += 1;
            }
        }
    }
    (rows, twice)
}

/// Records differing between two snapshots: missing on one side, or with
/// other fields.
fn mismatches(a: &Rows, b: &Rows) -> u64 {
    let mut count = 0;
    for entity in ENTITIES {
        let (left, right) = (&a[entity], &b[entity]);
        count += left
            .iter()
            .filter(|(id, row)| right.get(*id) != Some(row))
            .count() as u64;
        count += right.keys().filter(|id| !left.contains_key(*id)).count() as u64;
    }
    count
}

async fn engine(dir: &str, url: &str, flavor: Flavor, token: Option<String>) -> OfflineSyncEngine {
    let mut options = OfflineSyncOptions::default();
    options.retry_base_delay = Duration::from_millis(20);
    let mut builder = OfflineSync::builder(dir, url)
        .shape(flavor.shape())
        .options(options);
    if let Some(token) = token {
        builder = builder
            .adapter(move |adapter| adapter.default_header("Authorization", format!("Bearer {token}")));
    }
    builder.build().await.unwrap()
}

fn flavor_named(server: &str, numeric_ids: bool) -> Flavor {
    FLAVORS
        .iter()
        .copied()
        .find(|flavor| flavor.server == server && flavor.numeric_ids == numeric_ids)
        .unwrap()
}

const FLAVORS: [Flavor; 5] = [
    Flavor {
        label: "json-server 1.0.0-beta.3 (string ids)",
        server: "json-server",
        numeric_ids: false,
    },
    Flavor {
        label: "json-server 1.0.0-beta.3 (numeric ids)",
        server: "json-server",
        numeric_ids: true,
    },
    Flavor {
        label: "Django REST framework on PostgreSQL",
        server: "drf",
        numeric_ids: false,
    },
    Flavor {
        label: "PocketBase",
        server: "pocketbase",
        numeric_ids: false,
    },
    Flavor {
        label: "Directus on PostgreSQL",
        server: "directus",
        numeric_ids: false,
    },
];

/// The child: saves the script from `CHILD_START` on through the facade
/// (printing `ack i` once save `i` returned), syncing as it goes, then
/// syncs until drained and prints `drained`. Does nothing unless spawned
/// by a scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_child_entry_point() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let url = std::env::var(CHILD_URL).unwrap();
    let flavor = flavor_named(
        &std::env::var(CHILD_SERVER).unwrap(),
        env_u64(CHILD_NUMERIC) == Some(1),
    );
    let token = std::env::var(CHILD_TOKEN).ok().filter(|token| !token.is_empty());
    let (seed, len, start) = (
        env_u64(CHILD_SEED).unwrap(),
        env_u64(CHILD_LEN).unwrap(),
        env_u64(CHILD_START).unwrap(),
    );
    let script = script(seed, len, flavor.numeric_ids);
    let engine = engine(&dir, &url, flavor, token).await;
    println!("ready");
    for (index, change) in script.iter().enumerate().skip(start as usize) {
        engine
            .save(change.entity, &change.id, change.data.clone(), change.operation)
            .await
            .unwrap();
        println!("ack {index}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let report = engine.sync_manager().sync_now().await.unwrap();
        if engine
            .wait_until_drained(Duration::from_millis(100))
            .await
            .unwrap()
        {
            break;
        }
        let queue = engine.queue().await.unwrap();
        let parked: Vec<_> = queue.iter().filter(|item| item.is_parked()).collect();
        assert!(parked.is_empty(), "items parked: {parked:#?}");
        assert!(Instant::now() < deadline, "the child never drained: {report:?}");
    }
    engine.close().await;
    println!("drained");
}

/// Runs the child from `start`; with `kill_after`, SIGKILLs it once that
/// save is acknowledged. Returns the last acknowledged save + 1 and
/// whether the child drained.
async fn run_child(
    env: &[(&str, String)],
    start: u64,
    kill_after: Option<u64>,
    rng: &mut Rng,
) -> (Option<u64>, bool) {
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new(exe)
        .args([
            "real_server_child_entry_point",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .env(CHILD_START, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = None;
    let mut drained = false;
    let watching = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "drained" {
                drained = true;
                return;
            }
            if let Some(index) = line.strip_prefix("ack ") {
                let index: u64 = index.parse().unwrap();
                acknowledged = Some(index + 1);
                if Some(index) == kill_after {
                    // Sometimes mid-save, sometimes mid-request.
                    tokio::time::sleep(Duration::from_micros(rng.below(5_000))).await;
                    return;
                }
            }
        }
    };
    tokio::time::timeout(HANG_GUARD, watching)
        .await
        .unwrap_or_else(|_| panic!("the child hung"));
    if drained {
        assert!(child.wait().await.unwrap().success());
        return (acknowledged, true);
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(index) = line.strip_prefix("ack ") {
            acknowledged = Some(index.parse::<u64>().unwrap() + 1);
        }
        drained |= line == "drained";
    }
    (acknowledged, drained)
}

async fn exactly_once(server_name: &'static str, numeric_ids: bool) {
    let flavor = flavor_named(server_name, numeric_ids);
    let seed = seed_from_env();
    let len = env_u64("SYNC_REAL_OPERATIONS").unwrap_or(300);
    println!(
        "{}: seed {seed}, {len} operations, {LOSS_PERCENT} % of write answers lost (SYNC_CHAOS_SEED replays)",
        flavor.label
    );
    let script = script(seed, len, numeric_ids);
    let mut rng = Rng::new(seed ^ 0x5EA1);
    let started = Instant::now();
    let server = ThirdParty::start(server_name).await;
    let proxy = LossyProxy::start(&server.origin(), LOSS_PERCENT, seed).await;
    let url = format!("{}{}", proxy.origin(), server.prefix());
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (CHILD_DIR, dir.path().display().to_string()),
        (CHILD_URL, url.clone()),
        (CHILD_SERVER, server_name.to_owned()),
        (CHILD_NUMERIC, u64::from(numeric_ids).to_string()),
        (CHILD_TOKEN, server.token.clone().unwrap_or_default()),
        (CHILD_SEED, seed.to_string()),
        (CHILD_LEN, len.to_string()),
    ];

    // Half way, SIGKILL; the database holds the acknowledged saves, or
    // one more (the kill may land between a commit and its ack).
    let half = len / 2;
    let (acknowledged, drained) = run_child(&env, 0, Some(half), &mut rng).await;
    assert!(!drained, "seed {seed}: the child drained before its kill");
    let acknowledged = acknowledged.unwrap_or(0);
    let found = local_rows(dir.path()).await;
    let committed = if found == replay(&script, acknowledged) {
        acknowledged
    } else if found == replay(&script, acknowledged + 1) {
        acknowledged + 1
    } else {
        panic!("seed {seed}: after the kill the local records match neither {acknowledged} nor more saves")
    };
    let (_, drained) = run_child(&env, committed, None, &mut rng).await;
    assert!(drained, "seed {seed}: the restarted child did not drain");

    let local = local_rows(dir.path()).await;
    assert_eq!(local, replay(&script, len), "seed {seed}: a save was lost");
    let (remote, twice) = server_rows(&server, flavor).await;
    let differing = mismatches(&local, &remote);
    let log = proxy.log();
    let lost_answers = log.iter().filter(|passed| passed.lost).count();
    assert_eq!(twice, 0, "seed {seed}: records exist twice on {}", flavor.label);
    assert_eq!(
        remote, local,
        "seed {seed}: {} differs from the local records ({differing} records)",
        flavor.label
    );

    // A fresh create whose answer is not lost: one request.
    proxy.set_loss_percent(0);
    proxy.clear_log();
    let fresh = script_id(&mut rng, numeric_ids);
    let engine = engine(
        &dir.path().display().to_string(),
        &url,
        flavor,
        server.token.clone(),
    )
    .await;
    let id_value = if numeric_ids {
        json!(fresh.parse::<u64>().unwrap())
    } else {
        json!(fresh)
    };
    engine
        .save(
            "tasks",
            &fresh,
            json!({"id": id_value, "title": "fresh", "count": 1, "done": false}),
            SyncOperation::Create,
        )
        .await
        .unwrap();
    engine.sync_manager().sync_now().await.unwrap();
    assert!(engine.wait_until_drained(Duration::from_secs(10)).await.unwrap());
    engine.close().await;
    // The record's own requests: the connectivity probe's GET of the base
    // URL is not one of them.
    let clean_create: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|passed| passed.method != http::Method::GET || passed.path.contains(&fresh))
        .collect();
    let requests_per_create = clean_create.len();
    assert_eq!(
        requests_per_create, 1,
        "seed {seed}: a clean create took more than one request: {clean_create:?}"
    );
    server.stop().await;

    let requests = log.len();
    let line = json!({
        "scenario": format!("real server: {}", flavor.label),
        "operations": len,
        "kills": 1,
        "requests": requests,
        "faults": lost_answers,
        "lost": 0,
        "duplicated": twice,
        "mismatches": differing,
        "requests_per_create": requests_per_create,
    });
    report_line(&line.to_string());
    println!(
        "{}: seed {seed}: {len} operations, 1 kill, {requests} requests, {lost_answers} answers lost, \
         duplicates 0, mismatches 0, {requests_per_create} request(s) for a clean create, {:.1} s",
        flavor.label,
        started.elapsed().as_secs_f64()
    );
}

fn script_id(rng: &mut Rng, numeric_ids: bool) -> String {
    if numeric_ids {
        (900_000_000 + rng.below(1_000_000)).to_string()
    } else {
        (0..15)
            .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz"[rng.below(26) as usize]))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_server_string_ids_exactly_once() {
    exactly_once("json-server", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_server_numeric_ids_exactly_once() {
    exactly_once("json-server", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_rest_framework_exactly_once() {
    exactly_once("drf", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pocketbase_exactly_once() {
    exactly_once("pocketbase", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directus_exactly_once() {
    exactly_once("directus", false).await;
}
