//! The kill test of pulls (issue 12): a child process runs the engine (the
//! facade: real SQLite store, real HTTP adapter, two entities pulled from
//! the reference server's change feed in small pages) saving creates,
//! updates and deletes of a few dozen records while it pushes and pulls;
//! meanwhile this process writes to the same server as another client,
//! on records that overlap the device's. The child is killed with SIGKILL
//! at random moments and restarted on the same database. Once, while the
//! child is down, fresh deletions are purged from the server
//! (`purge_tombstones`), so the child's cursor expires and it loads
//! everything again (a full listing ending in a sweep) under kills.
//!
//! # The invariant, checked after every kill
//!
//! The child is dead, so its database is read as it stands: each pulled
//! entity's stored cursor `c` (a change stamp of the server), its
//! documents and the queue. The server's history comes from the
//! reference server's request log, in which every applied write carries
//! its change stamp and the record it left ([`History`]); `state(t)` is a
//! record as of stamp `t` (its last write at or before `t`; absent if
//! deleted or not created yet). For every record of the entity:
//!
//! - **With a live queue item** (not synced, or in flight): the local
//!   document is the device's last save of it that landed (printed as
//!   acknowledged by the child, or the save the kill interrupted, which may
//!   or may not have landed). Pulls never overwrite a pending change.
//! - **Without one**: let `d` be the stamp as of which the answer to the
//!   device's last request to the record told its state (the stamp its
//!   write took; for an answer replayed under an idempotency key, the
//!   stamp the write that first took the key took; for a read or a
//!   refused write, the server's last stamp then), and `s = max(c, d)`.
//!   The local
//!   document is `state(s)`: the server's state as of the cursor, or as
//!   of the device's own later write (its push, whose echo the cursor has
//!   not reached yet). The feed lists only the *latest* change of each
//!   record, so a page that ends at `c` leaves out a record changed again
//!   after `c`, which keeps an older state: the local document may then
//!   differ from `state(s)`, but only for a record written after `s`; and
//!   during a full listing (a re-load after the cursor expired), for a
//!   record whose deletion was purged, which the listing's end sweeps.
//!   In every case the local document is `state(t)` for some `t` between
//!   a floor and `max(highest cursor stored so far, d)`: the floor is `d`,
//!   and the stamp the record was found at by the previous check, so no
//!   record ever goes back to an older state.
//!
//! # At the end
//!
//! The other writer stops, the child syncs and pulls until nothing is
//! pending and a pull brings nothing; then each entity's cursor is the
//! server's last stamp, the invariant holds exactly for every record, the
//! server holds exactly the local documents, every queue item is synced,
//! no idempotency key took effect twice, and nothing the device saved was
//! lost: the last save of every record reached the server (a document: a
//! write of the device left exactly it; a delete: the record was absent on
//! the server after the device's last write of it), and the server's
//! final state is it unless the other writer wrote the record after.
//!
//! `SYNC_CHAOS_KILLS` (default 30) sets the number of kills,
//! `SYNC_CHAOS_SEED` replays a run's choices (the seed prints at the start
//! and in every failure; the timing of two processes is not replayed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod chaos_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chaos_support::history::History;
use chaos_support::{
    OtherWriter, Rng, assert_each_key_applied_at_most_once, child_command, env_u64, local_records,
    report_line, seed_from_env, server_records,
};
use serde_json::{Value, json};
use sync_facade::implement::{PullState, SyncStore};
use sync_facade::prelude::*;
use sync_facade::{EntityName, PullCounts, SqliteStore, SqliteStoreOptions};
use sync_reference_server::{ReferenceServer, ServerConfig};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

const CHILD_DIR: &str = "SYNC_KILL_PULL_CHILD_DIR";
const CHILD_URL: &str = "SYNC_KILL_PULL_CHILD_URL";
const CHILD_SEED: &str = "SYNC_KILL_PULL_CHILD_SEED";
const CHILD_ROUND: &str = "SYNC_KILL_PULL_CHILD_ROUND";
const CHILD_PAGE: &str = "SYNC_KILL_PULL_CHILD_PAGE";
const CHILD_DRAIN: &str = "SYNC_KILL_PULL_CHILD_DRAIN";

/// The entities pulled, each by its change feed.
const PULLED: [&str; 2] = ["tasks", "notes"];

/// The records the device saves (`r{n}`), and those the other writer
/// changes: they overlap.
const DEVICE_IDS: Range<u64> = 0..16;
const OTHER_IDS: Range<u64> = 8..24;

/// Records per entity that only the first load and the re-load bring.
const STILL_RECORDS: u64 = 120;

/// The other writer's idempotency keys start so.
const OTHER_KEYS: &str = "other-";

/// Rounds after the purge whose kill comes early, to land in the re-load.
const RELOAD_ROUNDS: u64 = 6;

/// Only a guard against hangs.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// The child: opens the engine on `CHILD_DIR` and prints `ready`; then
/// either saves random changes (printing `saving {entity} {id} {document
/// or null}` before each save and `ack` once it returned) while a task of
/// its own pulls and syncs, until it is killed; or, with `CHILD_DRAIN`,
/// syncs and pulls until nothing is pending nor comes down, and prints
/// `drained`. Does nothing unless spawned by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_pull_child_entry_point() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let url = std::env::var(CHILD_URL).unwrap();
    let seed = env_u64(CHILD_SEED).unwrap();
    let round = env_u64(CHILD_ROUND).unwrap();
    let page = env_u64(CHILD_PAGE).unwrap() as usize;
    let mut rng = Rng::new(seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Half the rounds push after every save, in the background, beside
    // the pulls; the others push only in `sync_now`.
    let options = OfflineSyncOptions::default()
        .retry_base_delay(Duration::from_millis(20))
        .sync_after_save(rng.below(2) == 0)
        .pull_page_size(page)
        .pull_interval(None);
    let mut builder = OfflineSync::builder(&dir, url)
        .probe_api_health("/health")
        .options(options);
    for entity in PULLED {
        builder = builder.pull(entity, PullStrategy::change_feed());
    }
    let engine = builder.build().await.unwrap();
    println!("ready");
    if std::env::var(CHILD_DRAIN).is_ok() {
        drain(&engine).await;
        engine.close().await;
        println!("drained");
        return;
    }

    let manager = engine.sync_manager();
    let mut runs = Rng::new(rng.next());
    let syncing = tokio::spawn(async move {
        // A pull at once, as an app's start would: a load in progress
        // goes on.
        let mut pull = true;
        loop {
            if pull {
                println!("pulling");
                manager.pull_now().await.unwrap();
                println!("pulled");
            } else {
                manager.sync_now().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(runs.below(10))).await;
            pull = runs.below(3) > 0;
        }
    });
    for n in 1.. {
        if syncing.is_finished() {
            syncing.await.unwrap();
            unreachable!("the sync loop never ends");
        }
        tokio::time::sleep(Duration::from_micros(rng.below(8000))).await;
        let entity = PULLED[rng.below(PULLED.len() as u64) as usize];
        let id = format!(
            "r{}",
            DEVICE_IDS.start + rng.below(DEVICE_IDS.end - DEVICE_IDS.start)
        );
        let present = engine.get_record(entity, &id).await.unwrap().is_some();
        let (operation, document) = if present && rng.below(4) == 0 {
            (SyncOperation::Delete, Value::Null)
        } else {
            let operation = if present {
                SyncOperation::Update
            } else {
                SyncOperation::Create
            };
            let document = json!({
                "id": id,
                "by": "device",
                "seq": round * 1_000_000 + n,
                "text": "x".repeat(rng.below(40) as usize),
            });
            (operation, document)
        };
        println!("saving {entity} {id} {document}");
        let payload = if document.is_null() { json!({}) } else { document };
        engine.save(entity, &id, payload, operation).await.unwrap();
        println!("ack");
    }
}

/// Syncs and pulls until nothing is pending and a pull brings nothing.
async fn drain(engine: &OfflineSyncEngine) {
    let manager = engine.sync_manager();
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let report = manager.sync_now().await.unwrap();
        if engine
            .wait_until_drained(Duration::from_millis(50))
            .await
            .unwrap()
        {
            let pulled = manager.pull_now().await.unwrap();
            if pulled.pulled == PullCounts::default() && pulled.pull_failed == 0 && pulled.still_pending == 0
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the child never drained: {report:?}, queue {:#?}",
            engine.queue().await.unwrap()
        );
    }
}

type Key = (String, String);

/// What the test knows of the device's saves, from the child's lines.
#[derive(Debug, Default)]
struct Saves {
    /// The last save of each record that landed: its document, `None`
    /// for a delete.
    last: HashMap<Key, Option<Value>>,
    /// The save the child was making when killed: it may or may not have
    /// landed.
    uncertain: Option<(Key, Option<Value>)>,
    /// Saves acknowledged.
    acknowledged: u64,
    /// Whether the child was pulling (`pull_now`) at its last line.
    pulling: bool,
}

impl Saves {
    /// Takes one line of the child in.
    fn read(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("saving ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(entity), Some(id), Some(document)) = (parts.next(), parts.next(), parts.next()) else {
                panic!("a bad line from the child: {line}");
            };
            let document: Value = serde_json::from_str(document).unwrap();
            self.uncertain = Some((
                (entity.to_owned(), id.to_owned()),
                Some(document).filter(|document| !document.is_null()),
            ));
        } else if line == "pulling" || line == "pulled" {
            self.pulling = line == "pulling";
        } else if line == "ack" {
            let (key, document) = self.uncertain.take().expect("an ack follows a saving line");
            self.last.insert(key, document);
            self.acknowledged += 1;
        }
    }
}

/// What the checks carry from one kill to the next.
#[derive(Debug, Default)]
struct Checker {
    seed: u64,
    /// Per record, the stamp of the state the last check found it in.
    floor: HashMap<Key, u64>,
    /// Per entity, the highest cursor stored so far.
    cursor_high: HashMap<String, u64>,
    /// Per entity, the stamp through which deletions were purged.
    purged_through: HashMap<String, u64>,
    /// Checks that found a full listing in progress.
    listings_seen: u64,
    /// Records checked, over all checks.
    records_checked: u64,
    /// Records found in an older state than the cursor's (a later change
    /// not pulled yet, or a purged deletion not swept yet), each excused.
    older_states: u64,
    /// Records holding the device's own push, which differs from the
    /// server's state as of the cursor (its echo not pulled yet).
    ahead_of_cursor: u64,
    /// Records checked with a pending change.
    pending: u64,
}

/// The child's database as it stands.
struct Local {
    documents: BTreeMap<String, BTreeMap<String, Value>>,
    states: BTreeMap<String, PullState>,
    queue: Vec<SyncQueueItem>,
}

async fn read_local(dir: &Path) -> Local {
    let store = SqliteStore::open_with(SqliteStoreOptions::in_dir(dir))
        .await
        .unwrap();
    let documents = local_records(&store).await;
    let mut states = BTreeMap::new();
    for entity in PULLED {
        let name: EntityName = entity.parse().unwrap();
        states.insert(entity.to_owned(), store.pull_state(&name).await.unwrap());
    }
    let queue = store.queue().await.unwrap();
    store.close().await;
    Local {
        documents,
        states,
        queue,
    }
}

/// The stamp a cursor stands at: the reference server's cursors are its
/// change stamps, `{stamp}.{horizon}` during a load from scratch.
fn cursor_stamp(state: &PullState) -> u64 {
    state.cursor.as_ref().map_or(0, |cursor| {
        let text = cursor.as_str();
        text.split_once('.')
            .map_or(text, |(stamp, _horizon)| stamp)
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "a cursor that is no stamp of the reference server: {:?}",
                    cursor.as_str()
                )
            })
    })
}

fn is_live(item: &SyncQueueItem) -> bool {
    item.status != SyncStatus::Synced || item.in_flight.is_some()
}

impl Checker {
    /// Checks the invariant (see the file's documentation) on the dead
    /// child's database; resolves the interrupted save.
    fn check(&mut self, local: &Local, history: &History, saves: &mut Saves, context: &str) {
        let seed = self.seed;
        for entity in PULLED {
            let state = &local.states[entity];
            let cursor = cursor_stamp(state);
            let high = self.cursor_high.entry(entity.to_owned()).or_default();
            *high = (*high).max(cursor);
            let high = *high;
            let listing = state.listing.is_some();
            self.listings_seen += u64::from(listing);
            let purged = self.purged_through.get(entity).copied();
            let documents = &local.documents[entity];
            let mut ids: BTreeSet<String> = documents.keys().cloned().collect();
            ids.extend(history.ids(entity));
            ids.extend(
                saves
                    .last
                    .keys()
                    .filter(|(name, _)| name == entity)
                    .map(|(_, id)| id.clone()),
            );
            for id in ids {
                self.records_checked += 1;
                let key = (entity.to_owned(), id.clone());
                let found = documents.get(&id);
                let items: Vec<_> = local
                    .queue
                    .iter()
                    .filter(|item| item.entity.as_str() == entity && item.id.as_str() == id)
                    .collect();
                let uncertain = saves
                    .uncertain
                    .as_ref()
                    .filter(|(uncertain, _)| *uncertain == key)
                    .map(|(_, document)| document.as_ref());
                if items.iter().any(|item| is_live(item)) {
                    let last = saves.last.get(&key).map(Option::as_ref);
                    assert!(
                        last == Some(found) || uncertain == Some(found),
                        "seed {seed}, {context}: {entity}/{id} has a pending change, but its document {found:?} \
                         is not the device's last save {last:?} (nor the interrupted one {uncertain:?}): \
                         a pull overwrote a pending change, or a save was lost; items {items:#?}"
                    );
                    if uncertain == Some(found) {
                        saves.last.insert(key, found.cloned());
                    }
                    self.pending += 1;
                    continue;
                }
                let record = history.record(entity, &id);
                let learned = record.device_learned;
                let seen = cursor.max(learned);
                let floor = self.floor.get(&key).copied().unwrap_or(0).max(learned);
                let ceiling = high.max(learned);
                let expected = record.state_at(seen);
                if found == expected && learned > cursor && record.state_at(cursor) != expected {
                    self.ahead_of_cursor += 1;
                }
                if found != expected {
                    let changed_since = record.written_after(seen);
                    let purged_deletion = listing
                        && record.last().is_some_and(|write| {
                            write.record.is_none() && purged.is_some_and(|through| write.stamp <= through)
                        });
                    assert!(
                        changed_since || purged_deletion,
                        "seed {seed}, {context}: {entity}/{id} has no pending change, so its document must be \
                         the server's as of the cursor {cursor} (or of the device's own request at {learned}): \
                         {expected:?}, found {found:?}; listing in progress: {listing}; the record's writes: \
                         {:#?}; its requests: {:#?}; items {items:#?}",
                        record.writes,
                        record.trail
                    );
                    self.older_states += 1;
                }
                let Some(stamp) = record.first_stamp_of(found, floor, ceiling) else {
                    panic!(
                        "seed {seed}, {context}: {entity}/{id} holds {found:?}, which the server did not hold at \
                         any stamp from {floor} (the device's own request, or the state the last check found) \
                         to {ceiling} (the highest cursor stored, or the device's request): a state newer than \
                         the cursor (a page applied without it), an older one come back, or one the server never \
                         had; the record's writes: {:#?}; its requests: {:#?}; \
                         items {items:#?}",
                        record.writes, record.trail
                    );
                };
                self.floor.insert(key.clone(), stamp);
                // The interrupted save, with no pending change left: it
                // landed if the device pushed its document (unique), or,
                // for a delete, if the record is gone here.
                if let Some(document) = uncertain {
                    let landed = match document {
                        Some(document) => record
                            .writes
                            .iter()
                            .any(|write| write.by_device && write.record.as_ref() == Some(document)),
                        None => found.is_none(),
                    };
                    if landed {
                        saves.last.insert(key, document.cloned());
                    }
                }
            }
        }
        saves.uncertain = None;
    }
}

/// Reads the child's lines until `until` or its end (`false` then).
async fn watch(
    lines: &mut Lines<BufReader<ChildStdout>>,
    saves: &mut Saves,
    until: tokio::time::Instant,
) -> bool {
    loop {
        match tokio::time::timeout_at(until, lines.next_line()).await {
            Err(_) => return true,
            Ok(Ok(Some(line))) => saves.read(&line),
            Ok(_) => return false,
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The other writer: until `stop`, changes a random record of its range
/// every few milliseconds, creating it if the server lacks it, otherwise
/// replacing or deleting it.
async fn write_meanwhile(
    server: Arc<ReferenceServer>,
    writer: Arc<OtherWriter>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng::new(seed ^ 0x07E1);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_micros(500 + rng.below(6000))).await;
        n += 1;
        let entity = PULLED[rng.below(PULLED.len() as u64) as usize];
        let id = format!(
            "r{}",
            OTHER_IDS.start + rng.below(OTHER_IDS.end - OTHER_IDS.start)
        );
        let document = json!({"id": id, "by": "other", "n": n});
        if server.record_version(entity, &id).is_none() {
            writer.send("POST", &format!("/{entity}"), Some(&document)).await;
        } else if rng.below(3) == 0 {
            writer.send("DELETE", &format!("/{entity}/{id}"), None).await;
        } else {
            writer
                .send("PUT", &format!("/{entity}/{id}"), Some(&document))
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_pulling_keeps_the_servers_state_as_of_the_cursor_and_pending_changes() {
    let seed = seed_from_env();
    let kills_wanted = env_u64("SYNC_CHAOS_KILLS").unwrap_or(30).max(2);
    let label = "kill while pulling";
    println!("{label}: seed {seed}, {kills_wanted} kills (SYNC_CHAOS_SEED replays the choices)");
    let mut rng = Rng::new(seed ^ 0x9011);
    let started = Instant::now();

    let server = Arc::new(ReferenceServer::start(ServerConfig::new()).await.unwrap());
    let writer = Arc::new(OtherWriter::new(server.url(), OTHER_KEYS));
    // Most records exist before the device, and many nobody changes: a
    // load from scratch (the first, and the re-load) takes many pages, so
    // kills land in it.
    for entity in PULLED {
        let changing = (0..20).map(|n| format!("r{n}"));
        let still = (0..STILL_RECORDS).map(|n| format!("s{n}"));
        for id in changing.chain(still) {
            let document = json!({"id": id, "by": "other", "n": 0});
            assert_eq!(
                writer.send("POST", &format!("/{entity}"), Some(&document)).await,
                201
            );
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writing = Some(tokio::spawn(write_meanwhile(
        Arc::clone(&server),
        Arc::clone(&writer),
        Arc::clone(&stop),
        seed,
    )));

    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("child-stderr.log");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let by_device =
        |entry: &sync_reference_server::RequestRecord| !writer.owns(entry.idempotency_key.as_deref());
    let mut saves = Saves::default();
    let mut checker = Checker {
        seed,
        ..Checker::default()
    };
    let purge_round = kills_wanted / 2;
    let mut kills = 0u64;
    let mut reload_kills = 0u64;
    let mut kills_mid_pull = 0u64;
    let mut reload_over = false;
    let mut purge_cursors = HashMap::new();

    for round in 1..=kills_wanted + 1 {
        let draining = round > kills_wanted;
        if draining {
            stop.store(true, Ordering::SeqCst);
            if let Some(writing) = writing.take() {
                writing.await.unwrap();
            }
        }
        let page = 3 + rng.below(5);
        let mut command = child_command("kill_pull_child_entry_point", &stderr);
        command
            .env(CHILD_DIR, &data)
            .env(CHILD_URL, server.url())
            .env(CHILD_SEED, seed.to_string())
            .env(CHILD_ROUND, round.to_string())
            .env(CHILD_PAGE, page.to_string());
        if draining {
            command.env(CHILD_DRAIN, "1");
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The test harness prints lines of its own first.
        let ready = tokio::time::timeout(HANG_GUARD, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                // After the harness's "test … " on the same line.
                if line.ends_with("ready") {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or_else(|_| panic!("seed {seed}, round {round}: the child never got ready"));
        assert!(
            ready,
            "seed {seed}, round {round}: the child failed to start: {}",
            tail(&stderr)
        );
        if draining {
            let drained = tokio::time::timeout(HANG_GUARD, async {
                while let Some(line) = lines.next_line().await.unwrap() {
                    if line.ends_with("drained") {
                        return true;
                    }
                }
                false
            })
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: the last child never drained"));
            assert!(drained, "seed {seed}: the last child failed: {}", tail(&stderr));
            assert!(child.wait().await.unwrap().success());
            break;
        }
        // Early kills after the purge, to land in the re-load.
        let delay = if round > purge_round && round <= purge_round + RELOAD_ROUNDS && !reload_over {
            5 + rng.below(60)
        } else {
            20 + rng.below(300)
        };
        let until = tokio::time::Instant::now() + Duration::from_millis(delay);
        assert!(
            watch(&mut lines, &mut saves, until).await,
            "seed {seed}, round {round}: the child ended before its kill: {}",
            tail(&stderr)
        );
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills += 1;
        // Lines printed before the signal landed count too.
        while let Ok(Some(line)) = lines.next_line().await {
            saves.read(&line);
        }
        kills_mid_pull += u64::from(std::mem::take(&mut saves.pulling));

        let local = read_local(&data).await;
        let history = History::from_log(&server.request_log(), by_device);
        let listings_before = checker.listings_seen;
        checker.check(&local, &history, &mut saves, &format!("after kill {kills}"));
        if round > purge_round && checker.listings_seen > listings_before {
            reload_kills += 1;
        }
        reload_over = round > purge_round
            && local
                .states
                .values()
                .all(|state| state.generation >= 1 && state.listing.is_none());

        if round == purge_round {
            // Fresh deletions, after the device's cursor, then forgotten:
            // its next pull gets 410 and loads everything again, and the
            // listing's end sweeps the records deleted meanwhile.
            for entity in PULLED {
                let cursor = cursor_stamp(&local.states[entity]);
                purge_cursors.insert(entity, local.states[entity].clone());
                let mut deleted = 0;
                for id in local.documents[entity].keys() {
                    if deleted < 3 && writer.send("DELETE", &format!("/{entity}/{id}"), None).await == 200 {
                        deleted += 1;
                    }
                }
                if deleted == 0 {
                    let id = format!("r{}", OTHER_IDS.end);
                    let document = json!({"id": id, "by": "other", "n": 0});
                    writer.send("POST", &format!("/{entity}"), Some(&document)).await;
                    writer.send("DELETE", &format!("/{entity}/{id}"), None).await;
                }
                server.purge_tombstones(entity, None);
                let through = server.oldest_cursor(entity);
                assert!(
                    through > cursor,
                    "seed {seed}: the purge would not expire the cursor"
                );
                checker.purged_through.insert(entity.to_owned(), through);
            }
        }
    }
    // The last child drained: the invariant holds exactly, at the end of
    // the feed.
    let local = read_local(&data).await;
    let log = server.request_log();
    let history = History::from_log(&log, by_device);
    for entity in PULLED {
        let state = &local.states[entity];
        assert_eq!(
            cursor_stamp(state),
            server.change_stamp(entity),
            "seed {seed}: {entity}'s cursor is not at the end of the feed"
        );
        assert!(
            state.listing.is_none(),
            "seed {seed}: {entity}'s re-load never ended"
        );
        // A device without a cursor yet at the purge loads from scratch
        // anyway: no cursor to expire.
        let had_cursor = purge_cursors
            .get(entity)
            .is_some_and(|state: &PullState| state.cursor.is_some());
        assert!(
            state.generation >= 1 || !had_cursor,
            "seed {seed}: {entity} was never loaded again after the purge: {state:?}"
        );
    }
    // With enough kills, some land where they should (with a handful,
    // chance decides).
    if kills_wanted >= 10 {
        assert!(kills_mid_pull > 0, "seed {seed}: no kill landed during a pull");
        assert!(reload_kills > 0, "seed {seed}: no kill landed during the re-load");
    }
    let older_before = checker.older_states;
    checker.check(&local, &history, &mut saves, "at the end");
    assert_eq!(
        checker.older_states, older_before,
        "seed {seed}: records left behind at the end"
    );
    assert!(
        local
            .queue
            .iter()
            .all(|item| item.status == SyncStatus::Synced && item.in_flight.is_none()),
        "seed {seed}: items left unsynced: {:#?}",
        local.queue
    );
    assert_eq!(
        server_records(&server),
        local.documents,
        "seed {seed}: the server differs from the local state"
    );
    assert_each_key_applied_at_most_once(&server, seed);
    // Nothing lost: the last save of every record reached the server.
    let final_state = server_records(&server);
    for ((entity, id), last) in &saves.last {
        let record = history.record(entity, id);
        let device_writes: Vec<_> = record.writes.iter().filter(|write| write.by_device).collect();
        match last {
            Some(document) => {
                let pushed = device_writes
                    .iter()
                    .rev()
                    .find(|write| write.record.as_ref() == Some(document))
                    .unwrap_or_else(|| {
                        panic!("seed {seed}: the device's last save of {entity}/{id} never reached the server: {document}")
                    });
                let now = final_state[entity].get(id);
                assert!(
                    now == Some(document) || record.written_after(pushed.stamp),
                    "seed {seed}: {entity}/{id} holds {now:?} on the server, not the device's last save {document}, \
                     and nothing wrote it after"
                );
            }
            None => {
                let last_upsert = device_writes
                    .iter()
                    .rev()
                    .find(|write| write.record.is_some())
                    .map_or(0, |write| write.stamp);
                assert!(
                    last_upsert == 0
                        || record
                            .writes
                            .iter()
                            .any(|write| write.stamp > last_upsert && write.record.is_none()),
                    "seed {seed}: the device's delete of {entity}/{id} never reached the server"
                );
            }
        }
    }

    let requests = log.len();
    let operations = saves.acknowledged + writer.sent();
    println!(
        "{label}: seed {seed}: {kills} kills ({kills_mid_pull} during a pull, {reload_kills} in the re-load), {} saves acknowledged, {} writes \
         of the other writer; {} records checked: {} with a pending change, {} holding the device's push ahead \
         of the cursor, {} in an older state than the cursor's (changed again after it, or deleted and purged \
         during the re-load); {requests} requests, {:.1} s; lost 0, duplicated 0",
        saves.acknowledged,
        writer.sent(),
        checker.records_checked,
        checker.pending,
        checker.ahead_of_cursor,
        checker.older_states,
        started.elapsed().as_secs_f64()
    );
    report_line(&format!(
        r#"{{"scenario":"{label}","seed":{seed},"kills":{kills},"operations":{operations},"requests":{requests},"kills_mid_pull":{kills_mid_pull},"reload_kills":{reload_kills},"lost":0,"duplicated":0}}"#
    ));
}
