//! What the reliability scenarios share: a seeded generator, a script of
//! changes with its model of the resulting records, state readers, the
//! at-most-once checks against the reference server's request log, the
//! server's history as of any pull cursor ([`history`]), child processes
//! to kill and another writer of the server over HTTP.
#![allow(dead_code)] // Each scenario file uses a different part.

pub(crate) mod history;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::Stdio;

use serde_json::{Value, json};
use sync_facade::implement::SyncStore;
use sync_facade::{EntityName, OfflineSyncEngine, SyncOperation};
use sync_reference_server::{IdempotencyMode, ReferenceServer, RequestRecord};

/// Collection → id → object, for the local store and the server alike.
pub(crate) type Records = BTreeMap<String, BTreeMap<String, Value>>;

/// The entities the scripts write to.
pub(crate) const ENTITIES: [&str; 3] = ["tasks", "notes", "photos"];

/// Record slots per entity: few, so records are edited many times.
const SLOTS: u64 = 8;

/// SplitMix64: small, seedable, good enough to pick test moves.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The value of an environment variable as a number, if set.
pub(crate) fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|value| value.parse().ok())
}

/// `SYNC_CHAOS_SEED`, or a fresh seed (printed by the callers) so every
/// run explores new schedules.
pub(crate) fn seed_from_env() -> u64 {
    env_u64("SYNC_CHAOS_SEED").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        Rng::new(nanos ^ u64::from(std::process::id())).next() % 1_000_000_007
    })
}

/// Appends a JSON line to the file named by `SYNC_CHAOS_REPORT`, where
/// `cargo xtask chaos` collects the figures of the run.
pub(crate) fn report_line(line: &str) {
    let Ok(path) = std::env::var("SYNC_CHAOS_REPORT") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|error| panic!("cannot open the chaos report {path}: {error}"));
    writeln!(file, "{line}").unwrap();
}

/// One save of a script.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) entity: &'static str,
    pub(crate) id: String,
    pub(crate) data: Value,
    pub(crate) operation: SyncOperation,
}

/// A script of changes valid at every step (creates of absent records,
/// updates and deletes of present ones), and the records it leaves.
pub(crate) struct Model;

impl Model {
    /// `len` changes over [`ENTITIES`] × 8 slots, from `seed`. A deleted
    /// record's slot is reused under a new id (`s{slot}g{generation}`), so
    /// no id is ever created twice and a second create of one is a
    /// duplicate.
    pub(crate) fn script(seed: u64, len: u64) -> Vec<Change> {
        let mut rng = Rng::new(seed);
        // (entity, slot) → (generation, present)
        let mut slots: HashMap<(usize, u64), (u64, bool)> = HashMap::new();
        (0..len)
            .map(|index| {
                let entity = rng.below(ENTITIES.len() as u64) as usize;
                let slot = rng.below(SLOTS);
                let (generation, present) = slots.entry((entity, slot)).or_insert((0, false));
                let id = format!("s{slot}g{generation}");
                let operation = if !*present {
                    *present = true;
                    SyncOperation::Create
                } else if rng.below(4) == 0 {
                    *present = false;
                    *generation += 1;
                    SyncOperation::Delete
                } else {
                    SyncOperation::Update
                };
                let data = match operation {
                    SyncOperation::Delete => json!({}),
                    _ => json!({
                        "id": id,
                        "seq": index,
                        "text": "x".repeat(rng.below(200) as usize),
                    }),
                };
                Change {
                    entity: ENTITIES[entity],
                    id,
                    data,
                    operation,
                }
            })
            .collect()
    }

    /// The records after the first `count` changes of `script`.
    pub(crate) fn replay(script: &[Change], count: u64) -> Records {
        let mut records: Records = ENTITIES
            .iter()
            .map(|entity| ((*entity).to_owned(), BTreeMap::new()))
            .collect();
        for change in script.iter().take(count as usize) {
            let by_id = records.entry(change.entity.to_owned()).or_default();
            match change.operation {
                SyncOperation::Delete => {
                    by_id.remove(&change.id);
                }
                _ => {
                    by_id.insert(change.id.clone(), change.data.clone());
                }
            }
        }
        records
    }
}

/// The store's records of [`ENTITIES`].
pub(crate) async fn local_records(store: &dyn SyncStore) -> Records {
    let mut records = Records::new();
    for entity in ENTITIES {
        let name: EntityName = entity.parse().unwrap();
        let by_id = store
            .records(&name)
            .await
            .unwrap()
            .into_iter()
            .map(|record| (record.id.as_str().to_owned(), Value::Object(record.data)))
            .collect();
        records.insert(entity.to_owned(), by_id);
    }
    records
}

/// The engine's local records of [`ENTITIES`], read through its API.
pub(crate) async fn engine_records(engine: &OfflineSyncEngine) -> Records {
    let mut records = Records::new();
    for entity in ENTITIES {
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

/// The server's records of [`ENTITIES`]; it must hold no other collection.
pub(crate) fn server_records(server: &ReferenceServer) -> Records {
    let snapshot = server.snapshot();
    for name in snapshot.keys() {
        assert!(
            ENTITIES.contains(&name.as_str()),
            "the server holds an unexpected collection {name:?}"
        );
    }
    ENTITIES
        .iter()
        .map(|entity| {
            (
                (*entity).to_owned(),
                snapshot.get(*entity).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

/// What the reference server's request log shows about writes that took
/// effect more than once, in either [`IdempotencyMode`].
#[derive(Debug, Default)]
pub(crate) struct WriteLog {
    /// Writes that took effect.
    pub(crate) applied: usize,
    /// The idempotency keys they carried.
    pub(crate) keys: usize,
    /// Records created more than once: two creates of one id took effect.
    pub(crate) created_twice: Vec<(String, String)>,
    /// Creates that reached the server after a create of the same record
    /// had taken effect there (and no delete of it since): the engine sent
    /// a create for a record that may have existed without checking first.
    /// With keys honoured the server replays such a create, with keys
    /// ignored it refuses it (409): either way the server masks it, so the
    /// log is where it shows.
    pub(crate) creates_resent: Vec<(String, String)>,
    /// Keys under which more than one write took effect.
    pub(crate) keys_applied_twice: Vec<String>,
    /// Writes that took effect beyond the first under their key: one change
    /// applied again (its payload is the same; a create followed by the
    /// update that a check chose counts too). Harmless for the data, and
    /// only possible when the server ignores the keys.
    pub(crate) repeated_writes: usize,
}

/// Reads the request log (see [`WriteLog`]).
pub(crate) fn write_log(server: &ReferenceServer) -> WriteLog {
    let log = server.request_log();
    let applied: Vec<_> = log.iter().filter(|record| record.applied).collect();
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    let mut creates: HashMap<(String, String), usize> = HashMap::new();
    for record in &applied {
        if let Some(key) = record.idempotency_key.as_deref() {
            *by_key.entry(key).or_default() += 1;
        }
        if record.method.as_str() == "POST" {
            let id = record.id.clone().expect("a create names its record");
            *creates.entry((record.collection.clone(), id)).or_default() += 1;
        }
    }
    let mut creates_resent = Vec::new();
    for sent in log.iter().filter(|sent| sent.method.as_str() == "POST") {
        if server_held_it(&applied, sent) {
            creates_resent.push((sent.collection.clone(), sent.id.clone().unwrap_or_default()));
        }
    }
    let mut keys_applied_twice: Vec<String> = by_key
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(key, _)| (*key).to_owned())
        .collect();
    keys_applied_twice.sort();
    let mut created_twice: Vec<_> = creates
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(record, _)| record)
        .collect();
    created_twice.sort();
    WriteLog {
        applied: applied.len(),
        keys: by_key.len(),
        repeated_writes: by_key.values().map(|count| count - 1).sum(),
        created_twice,
        creates_resent,
        keys_applied_twice,
    }
}

/// Whether the server held `sent`'s record when `sent` arrived: the last
/// write of it that took effect before then was a create or an update.
fn server_held_it(applied: &[&RequestRecord], sent: &RequestRecord) -> bool {
    applied
        .iter()
        .filter(|earlier| {
            earlier.collection == sent.collection
                && earlier.id == sent.id
                && earlier.handled_at <= sent.received_at
                && !std::ptr::eq(**earlier, sent)
        })
        .max_by_key(|earlier| earlier.handled_at)
        .is_some_and(|earlier| earlier.method.as_str() != "DELETE")
}

/// No record was created twice on the server (scripts never re-create an
/// id), and no create was sent for a record the server already held (which
/// the server would mask, by a replay or a 409).
pub(crate) fn assert_no_record_created_twice(server: &ReferenceServer, seed: u64) {
    let writes = write_log(server);
    assert!(
        writes.created_twice.is_empty(),
        "seed {seed}: records created more than once: {:?}",
        writes.created_twice
    );
    assert!(
        writes.creates_resent.is_empty(),
        "seed {seed}: creates sent again for records the server already held (no check first): {:?}",
        writes.creates_resent
    );
}

/// Every applied write carried an idempotency key and no key took effect
/// twice; returns each key with its count (1). For a server that honours
/// the keys: one that ignores them may apply a retried write again (see
/// [`assert_no_duplicates`]).
pub(crate) fn assert_each_key_applied_at_most_once(
    server: &ReferenceServer,
    seed: u64,
) -> HashMap<String, usize> {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for record in server.applied_requests() {
        let key = record.idempotency_key.clone().unwrap_or_else(|| {
            panic!("seed {seed}: an applied write without an idempotency key: {record:?}")
        });
        *by_key.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = by_key.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        twice.is_empty(),
        "seed {seed}: idempotency keys applied more than once: {twice:?}"
    );
    by_key
}

/// The duplicate checks that fit the server's [`IdempotencyMode`]:
///
/// - always: no record created twice, no create sent for a record the
///   server held ([`assert_no_record_created_twice`]), every applied write
///   carried a key;
/// - keys honoured ([`IdempotencyMode::Replay`]): no key took effect twice;
/// - keys ignored ([`IdempotencyMode::Ignore`]): a change applied again
///   under its key (a retried write of the same payload: harmless, since
///   the scenarios compare the final data with the model) is counted in
///   [`WriteLog::repeated_writes`], not failed on; a create applied twice
///   still fails above.
///
/// The caller also compares the server with the local state and the
/// model: that is what makes a repeated write harmless.
pub(crate) fn assert_no_duplicates(server: &ReferenceServer, seed: u64) -> WriteLog {
    assert_no_record_created_twice(server, seed);
    match server.idempotency() {
        IdempotencyMode::Replay => {
            assert_each_key_applied_at_most_once(server, seed);
        }
        _ => {
            for record in server.applied_requests() {
                assert!(
                    record.idempotency_key.is_some(),
                    "seed {seed}: an applied write without an idempotency key: {record:?}"
                );
            }
        }
    }
    write_log(server)
}

/// The label scenarios add for a server that ignores idempotency keys.
pub(crate) fn mode_label(mode: IdempotencyMode) -> &'static str {
    match mode {
        IdempotencyMode::Replay => "",
        _ => ", keys ignored",
    }
}

/// A command running `entry_point`, a test of this same test binary that
/// does nothing unless its environment says so (the caller adds it), with
/// its stdout piped (its lines tell what it did) and its stderr appended
/// to `stderr` (for the failure report). Killed when dropped.
pub(crate) fn child_command(entry_point: &str, stderr: &std::path::Path) -> tokio::process::Command {
    let exe = std::env::current_exe().unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr)
        .unwrap();
    let mut command = tokio::process::Command::new(exe);
    command
        .args([entry_point, "--exact", "--nocapture", "--test-threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    command
}

/// Another client of the server, writing over plain HTTP (keep-alive)
/// under idempotency keys of its own (`{prefix}{n}`), so the request log
/// tells its writes from the device's.
pub(crate) struct OtherWriter {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    base: String,
    prefix: &'static str,
    sent: std::sync::atomic::AtomicU64,
}

impl OtherWriter {
    pub(crate) fn new(base: String, prefix: &'static str) -> Self {
        Self {
            client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
            base,
            prefix,
            sent: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether `key` is one of this writer's idempotency keys.
    pub(crate) fn owns(&self, key: Option<&str>) -> bool {
        key.is_some_and(|key| key.starts_with(self.prefix))
    }

    /// One write (`POST /{collection}`, `PUT` or `DELETE /{collection}/{id}`);
    /// the status answered, whatever it is.
    pub(crate) async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> u16 {
        use http_body_util::BodyExt;
        let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = body.map_or_else(bytes::Bytes::new, |body| bytes::Bytes::from(body.to_string()));
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .header(
                sync_reference_server::IDEMPOTENCY_KEY,
                format!("{}{n}", self.prefix),
            )
            .body(http_body_util::Full::new(body))
            .unwrap();
        let response = tokio::time::timeout(std::time::Duration::from_secs(60), self.client.request(request))
            .await
            .expect("the server did not answer the other writer within 60 s")
            .unwrap();
        let status = response.status().as_u16();
        let _body = response.into_body().collect().await.unwrap();
        status
    }

    /// How many writes it sent.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }
}
