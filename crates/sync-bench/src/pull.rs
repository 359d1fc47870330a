//! `cargo xtask bench pull`: the server's changes coming down through the
//! facade (`OfflineSync::builder(..).pull("tasks", PullStrategy::change_feed())`,
//! default durability) from the reference server's change feed on loopback.
//!
//! 1. Initial load: records pulled per second, against raw sqlx writing
//!    the same rows in the same batches (one transaction per page,
//!    multi-row upserts of each record's document and server copy into
//!    the store's own tables, and the cursor; the store's pragmas: the
//!    target), against the documents alone inserted into a plain table
//!    (what an app without the engine would write; shown, not a target:
//!    the engine keeps the server's copy of each record and indexes its
//!    documents, and no code can make that free), and against fetching and parsing the same pages with a bare hyper
//!    client (the part of a pull that is not the store's). Where the time
//!    goes: the HTTP adapter's pull and the store's `apply_pull` are also
//!    timed alone (`pull_parts`).
//! 2. Peak memory: `VmHWM` of a child process (this binary re-executed
//!    with a hidden subcommand) pulling a million records, the server in
//!    the parent so its copy of the records never counts.
//! 3. Flat cost: time per pulled record with few or a million records
//!    already local (the million are the child's database).
//! 4. Requests: one `GET /tasks/changes` per page, and one for a pull that
//!    finds nothing new, counted in the reference server's request log;
//!    these are checked in a smoke run too.

use std::path::Path;
use std::time::Instant;

use http::Method;
use serde_json::{Value, json};
use sync_facade::{OfflineSync, OfflineSyncEngine, OfflineSyncOptions, PullStrategy};
use sync_reference_server::{ReferenceServer, ServerConfig};

use crate::common::ChildMeasured;
use crate::pull_parts::{RawTables, adapter_only, fetch_only, raw_sqlx_load, store_only};
use crate::report::{Report, Row, Target, num};

/// The hidden subcommand the parent runs its children with.
pub(crate) const CHILD: &str = "__pull-child";

/// The pulled entity, a collection of the reference server.
pub(crate) const ENTITY: &str = "tasks";

/// The peak resident memory a pull may reach, in MiB.
const MEMORY_BUDGET_MIB: f64 = 64.0;

/// The scenario's sizes.
struct Sizes {
    /// Records of the initial load.
    initial: usize,
    /// `pull_page_size`.
    page: usize,
    /// Rounds of the initial load (best taken).
    rounds: usize,
    /// Pulls of new records in each flat-cost case (best taken).
    deltas: usize,
    /// Records the child pulls for its peak memory; then the large local
    /// size of the flat cost.
    big: usize,
    /// The small local size of the flat cost.
    small: usize,
    /// Records pulled on top of each local size.
    delta: usize,
}

impl Sizes {
    fn new(smoke: bool) -> Self {
        if smoke {
            Self {
                initial: 2_000,
                page: 100,
                rounds: 1,
                deltas: 2,
                big: 3_000,
                small: 300,
                delta: 200,
            }
        } else {
            Self {
                initial: 100_000,
                page: 1_000,
                rounds: 3,
                deltas: 5,
                big: 1_000_000,
                small: 10_000,
                delta: 10_000,
            }
        }
    }
}

/// Record `n` as the server holds it: about 200 bytes of JSON.
pub(crate) fn document(n: usize) -> Value {
    json!({
        "id": n.to_string(),
        "title": format!("task {n}"),
        "done": false,
        "notes": "n".repeat(150),
    })
}

pub(crate) fn err<E: std::fmt::Display>(context: &str) -> impl Fn(E) -> String + '_ {
    move |error| format!("{context}: {error}")
}

/// A reference server on a free loopback port holding records
/// `0..count`.
async fn seeded_server(count: usize) -> Result<ReferenceServer, String> {
    let server = ReferenceServer::start(ServerConfig::new())
        .await
        .map_err(err("reference server"))?;
    seed(&server, 0..count)?;
    Ok(server)
}

/// Stores records `range` on the server, in slices (the documents are
/// built as they go).
fn seed(server: &ReferenceServer, range: std::ops::Range<usize>) -> Result<(), String> {
    let mut start = range.start;
    while start < range.end {
        let end = range.end.min(start + 100_000);
        server
            .seed(ENTITY, (start..end).map(document))
            .map_err(err("seeding the server"))?;
        start = end;
    }
    Ok(())
}

/// Options for a timed pull: no background runs, no periodic probing.
fn options(page: usize) -> OfflineSyncOptions {
    let mut options = OfflineSyncOptions::default().pull_page_size(page);
    options.sync_after_save = false;
    options.connectivity_check_interval = None;
    options.pull_interval = None;
    options
}

/// The engine an app builds to pull `tasks` from the change feed, its
/// database in `dir`.
async fn open(dir: &Path, url: &str, page: usize) -> Result<OfflineSyncEngine, String> {
    OfflineSync::builder(dir, url)
        .pull(ENTITY, PullStrategy::change_feed())
        .options(options(page))
        .build()
        .await
        .map_err(err("opening the engine"))
}

/// One `pull_now`, checked to have upserted `expected` records; returns
/// the seconds it took.
async fn timed_pull(engine: &OfflineSyncEngine, expected: usize) -> Result<f64, String> {
    let started = Instant::now();
    let report = engine.sync_manager().pull_now().await.map_err(err("pull_now"))?;
    let seconds = started.elapsed().as_secs_f64();
    let pulled = report.pulled;
    if pulled.upserted != expected as u64 || report.pull_failed != 0 || report.offline {
        return Err(format!(
            "the pull upserted {} of {expected} (deleted {}, skipped {}, failed entities {}, offline {})",
            pulled.upserted, pulled.deleted, pulled.skipped, report.pull_failed, report.offline
        ));
    }
    Ok(seconds)
}

/// The change-feed requests in the server's log: `GET`s of the collection
/// without an id (the feed is logged so; the engine sends no listing).
fn feed_requests(server: &ReferenceServer) -> usize {
    server
        .request_log()
        .iter()
        .filter(|request| {
            request.collection == ENTITY && request.method == Method::GET && request.id.is_none()
        })
        .count()
}

/// What the initial load measured.
struct Initial {
    engine: f64,
    raw: f64,
    keyed: f64,
    /// Raw sqlx writing the engine's rows into the store's schema.
    same_rows: f64,
    fetch: f64,
    adapter: f64,
    store: f64,
    requests: usize,
    requests_again: usize,
}

/// Rounds of: the engine's initial load into a fresh directory, the raw
/// sqlx baseline, the bare fetch; best of each. The first round counts
/// the requests of the load and of a pull that finds nothing new.
async fn initial_load(dir: &Path, sizes: &Sizes) -> Result<Initial, String> {
    let server = seeded_server(sizes.initial).await?;
    let url = server.base_url();
    let mut best = Initial {
        engine: 0.0,
        raw: 0.0,
        keyed: 0.0,
        same_rows: 0.0,
        fetch: 0.0,
        adapter: 0.0,
        store: 0.0,
        requests: 0,
        requests_again: 0,
    };
    for round in 0..sizes.rounds {
        let engine_dir = dir.join(format!("initial-{round}"));
        std::fs::create_dir_all(&engine_dir).map_err(err("engine directory"))?;
        let engine = open(&engine_dir, &url, sizes.page).await?;
        server.clear_request_log();
        let seconds = timed_pull(&engine, sizes.initial).await?;
        best.engine = best.engine.max(sizes.initial as f64 / seconds);
        if round == 0 {
            best.requests = feed_requests(&server);
            server.clear_request_log();
            timed_pull(&engine, 0).await?;
            best.requests_again = feed_requests(&server);
        }
        engine.close().await;
        std::fs::remove_dir_all(&engine_dir).map_err(err("removing the engine directory"))?;
        let raw_path = dir.join(format!("raw-{round}.db"));
        best.raw = best
            .raw
            .max(raw_sqlx_load(&raw_path, sizes.initial, sizes.page, RawTables::Plain).await?);
        best.keyed = best
            .keyed
            .max(raw_sqlx_load(&raw_path, sizes.initial, sizes.page, RawTables::Keyed).await?);
        best.same_rows = best
            .same_rows
            .max(raw_sqlx_load(&raw_path, sizes.initial, sizes.page, RawTables::StoreSchema).await?);
        best.fetch = best.fetch.max(fetch_only(&url, sizes.initial, sizes.page).await?);
        best.adapter = best
            .adapter
            .max(adapter_only(&url, sizes.initial, sizes.page).await?);
        let store_dir = dir.join(format!("store-{round}"));
        std::fs::create_dir_all(&store_dir).map_err(err("store directory"))?;
        best.store = best
            .store
            .max(store_only(&store_dir.join("store.db"), sizes.initial, sizes.page).await?);
        std::fs::remove_dir_all(&store_dir).map_err(err("removing the store directory"))?;
    }
    server.shutdown().await;
    Ok(best)
}

/// The child: `__pull-child <dir> <url> <page> <open|pull> <count>`: opens
/// the engine with its database in `dir`, and in `pull` mode pulls,
/// checking `count` records came down. Prints `peak_kib=.. seconds=..`.
pub(crate) async fn child(args: &[String]) -> Result<(), String> {
    let [dir, url, page, mode, count] = args else {
        return Err(format!("usage: {CHILD} <dir> <url> <page> <open|pull> <count>"));
    };
    let page: usize = page.parse().map_err(|_| format!("bad page size {page:?}"))?;
    let count: usize = count.parse().map_err(|_| format!("bad count {count:?}"))?;
    let engine = open(Path::new(dir), url, page).await?;
    let seconds = match mode.as_str() {
        "open" => {
            // What a UI does first: read a record.
            let _ = engine.get_record(ENTITY, "0").await.map_err(err("read"))?;
            0.0
        }
        "pull" => timed_pull(&engine, count).await?,
        other => return Err(format!("unknown mode {other:?}")),
    };
    engine.close().await;
    let (peak, _) = crate::common::peak_and_current_kib()?;
    println!("peak_kib={peak} seconds={seconds}");
    Ok(())
}

/// Runs the child in `mode` over `dir`, pulling from `url`.
fn run_child(dir: &Path, url: &str, page: usize, mode: &str, count: usize) -> Result<ChildMeasured, String> {
    let args = [
        dir.display().to_string(),
        url.to_owned(),
        page.to_string(),
        mode.to_owned(),
        count.to_string(),
    ];
    crate::common::run_child(CHILD, &args, mode)
}

/// A child run off the parent's runtime, which serves the server meanwhile.
async fn child_run(
    dir: &Path,
    url: &str,
    page: usize,
    mode: &str,
    count: usize,
) -> Result<ChildMeasured, String> {
    let (dir, url, mode) = (dir.to_path_buf(), url.to_owned(), mode.to_owned());
    tokio::task::spawn_blocking(move || run_child(&dir, &url, page, &mode, count))
        .await
        .map_err(|e| e.to_string())?
}

/// A local size of the flat-cost comparison: a server, and an engine
/// whose database pulled everything the server held.
struct Local {
    server: ReferenceServer,
    engine: OfflineSyncEngine,
    /// The next record id to seed.
    next: usize,
    /// The best microseconds per pulled record.
    best: f64,
}

impl Local {
    async fn new(server: ReferenceServer, dir: &Path, local: usize, page: usize) -> Result<Self, String> {
        let engine = open(dir, &server.base_url(), page).await?;
        Ok(Self {
            server,
            engine,
            next: local,
            best: f64::MAX,
        })
    }

    /// Seeds `delta` new records and pulls them; keeps the best time per
    /// record.
    async fn pull_delta(&mut self, delta: usize) -> Result<(), String> {
        seed(&self.server, self.next..self.next + delta)?;
        self.next += delta;
        let seconds = timed_pull(&self.engine, delta).await?;
        self.best = self.best.min(seconds * 1e6 / delta as f64);
        Ok(())
    }

    async fn close(self) {
        self.engine.close().await;
        self.server.shutdown().await;
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The size of the database files in `dir`.
fn db_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.metadata().ok())
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0)
}

pub(crate) async fn run(report: &mut Report, smoke: bool) -> Result<(), String> {
    let sizes = Sizes::new(smoke);
    let started = Instant::now();
    eprintln!(
        "pull benchmarks (initial load of {}, peak memory and flat cost with {} local, pages of {})",
        sizes.initial, sizes.big, sizes.page
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;

    // 1 and 4. The initial load, and its requests.
    let initial = initial_load(dir.path(), &sizes).await?;
    let load_sizes = format!(
        "{} records of ~200 B, pages of {}, FULL",
        sizes.initial, sizes.page
    );
    report.row(Row {
        scenario: "pull: initial load".into(),
        sizes: load_sizes.clone(),
        engine: initial.engine,
        baseline_name: format!(
            "raw sqlx, the same rows into the store's tables (document, server copy, cursor), 1 transaction \
             per {} (multi-row upserts), FULL",
            sizes.page
        ),
        baseline: initial.same_rows,
        unit: "records/s",
        target: Some(Target::RatioAtLeast(0.5)),
    });
    report.row(Row {
        scenario: "pull: initial load".into(),
        sizes: load_sizes.clone(),
        engine: initial.engine,
        baseline_name: format!(
            "raw sqlx, the documents alone into a plain table (no key, no index), 1 transaction per {} \
             (multi-row INSERTs), FULL",
            sizes.page
        ),
        baseline: initial.raw,
        unit: "records/s",
        target: None,
    });
    report.row(Row {
        scenario: "pull: initial load".into(),
        sizes: load_sizes,
        engine: initial.engine,
        baseline_name: "bare hyper client fetching and parsing the same pages, nothing stored".into(),
        baseline: initial.fetch,
        unit: "records/s",
        target: Some(Target::ValueAtLeast(30_000.0)),
    });
    let pages = sizes.initial.div_ceil(sizes.page);
    report.row(Row {
        scenario: "pull: requests, initial load".into(),
        sizes: format!("{} records, pages of {}", sizes.initial, sizes.page),
        engine: initial.requests as f64,
        baseline_name: "one per page".into(),
        baseline: pages as f64,
        unit: "requests",
        target: Some(Target::Exactly),
    });
    report.row(Row {
        scenario: "pull: requests, nothing new".into(),
        sizes: "1 entity, cursor at the end".into(),
        engine: initial.requests_again as f64,
        baseline_name: "one per entity".into(),
        baseline: 1.0,
        unit: "requests",
        target: Some(Target::Exactly),
    });
    // Exact counts, not timings: wrong even in a smoke run.
    if initial.requests != pages || initial.requests_again != 1 {
        return Err(format!(
            "the initial load of {} records at pages of {} sent {} change-feed requests (expected {pages}), \
             and a pull with nothing new {} (expected 1)",
            sizes.initial, sizes.page, initial.requests, initial.requests_again
        ));
    }
    // Where the time goes: each part alone, in µs per record; the engine
    // fetches a page, then applies it, then fetches the next.
    let micros = |rate: f64| num(1e6 / rate.max(1e-9));
    report.fact(format!(
        "pull, initial load, µs per record: engine {}; its parts alone: the HTTP adapter's pull (request, \
         server, parse into changes) {}, the store's apply_pull (pages built in memory) {}, so {} one after \
         the other (the engine overlaps them: it fetches the next page while it applies one); the baselines: \
         bare hyper fetch + parse into JSON values {}, raw sqlx into the store's tables {}, into a plain \
         table {} (with UNIQUE (entity, id) and an upsert: {})",
        micros(initial.engine),
        micros(initial.adapter),
        micros(initial.store),
        micros(1.0 / (1.0 / initial.adapter + 1.0 / initial.store)),
        micros(initial.fetch),
        micros(initial.same_rows),
        micros(initial.raw),
        micros(initial.keyed),
    ));
    report.fact(format!(
        "pull requests: {} GET /{ENTITY}/changes for {} records at pages of {}; 1 for a pull with nothing new",
        initial.requests, sizes.initial, sizes.page
    ));

    // 2. Peak memory of a child pulling the big load; the parent serves.
    let seeding = Instant::now();
    let big_server = seeded_server(sizes.big).await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    let big_url = big_server.base_url();
    let big_dir = dir.path().join("big");
    std::fs::create_dir_all(&big_dir).map_err(err("big directory"))?;
    let open_dir = dir.path().join("open-only");
    std::fs::create_dir_all(&open_dir).map_err(err("open-only directory"))?;
    let opened = child_run(&open_dir, &big_url, sizes.page, "open", 0).await?;
    let pulled = child_run(&big_dir, &big_url, sizes.page, "pull", sizes.big).await?;
    report.row(Row {
        scenario: "pull: peak RSS".into(),
        sizes: format!(
            "{} records of ~200 B, pages of {}, server in another process",
            sizes.big, sizes.page
        ),
        engine: pulled.peak_mib,
        baseline_name: "budget".into(),
        baseline: MEMORY_BUDGET_MIB,
        unit: "MiB",
        target: Some(Target::ValueBelow(MEMORY_BUDGET_MIB)),
    });
    report.fact(format!(
        "pull, {} records: {:.1} s in the child ({} records/s); database {} MiB; the same child only \
         opening the engine peaks at {} MiB (seeding the server took {:.1} s)",
        sizes.big,
        pulled.seconds,
        num(sizes.big as f64 / pulled.seconds.max(1e-9)),
        num(mib(db_bytes(&big_dir))),
        num(opened.peak_mib),
        seed_seconds
    ));

    // 3. Flat cost: new records on few and on many local ones, each
    //    engine kept open across the rounds (the first warms its cache).
    let small_server = seeded_server(sizes.small).await?;
    let small_dir = dir.path().join("small");
    std::fs::create_dir_all(&small_dir).map_err(err("small directory"))?;
    let mut small = Local::new(small_server, &small_dir, sizes.small, sizes.page).await?;
    timed_pull(&small.engine, sizes.small).await?;
    let mut large = Local::new(big_server, &big_dir, sizes.big, sizes.page).await?;
    for _ in 0..sizes.deltas {
        small.pull_delta(sizes.delta).await?;
        large.pull_delta(sizes.delta).await?;
    }
    report.row(Row {
        scenario: "pull: cost per record, local size".into(),
        sizes: format!(
            "{} new on {} vs {} local, best of {} pulls",
            sizes.delta, sizes.big, sizes.small, sizes.deltas
        ),
        engine: large.best,
        baseline_name: format!("same on {} local", sizes.small),
        baseline: small.best,
        unit: "µs/record",
        target: Some(Target::RatioAtMost(1.5)),
    });
    small.close().await;
    large.close().await;
    report.fact(format!(
        "pull scenario: {:.1} s in all",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
