//! `cargo xtask bench store`: the SQLite store against raw sqlx running the
//! same statements with the same pragmas (the store's own overhead) and
//! against rusqlite on the same `libsqlite3-sys` (the physical limit).
//! Single and concurrent saves run at both durability levels, side by side:
//! `Full` (the default, one flush per commit) and `Normal`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Arguments, AssertSqlSafe, ConnectOptions, Connection, SqliteConnection};
use sync_core::attempt::AttemptOutcome;
use sync_core::{AttemptId, FinishedAttempt, LocalChange, OperationId, SyncOperation, SyncStore, Timestamp};
use sync_store_sqlite::{Durability, SqliteStore, SqliteStoreOptions};
use tokio_stream::StreamExt;

use crate::report::{Report, Row, Target};

const QUEUE_COLUMNS: &str = "entity, id, operation, payload, status, retry_count, created_at, updated_at, \
     last_error, last_error_kind, last_error_http_status, version, operation_id, possibly_applied, in_flight, \
     next_attempt_at, not_before";

fn payload(index: usize) -> serde_json::Value {
    json!({ "title": format!("task {index}"), "done": false, "notes": "n".repeat(150) })
}

fn change(index: usize) -> LocalChange {
    LocalChange::new("tasks", index.to_string(), payload(index), SyncOperation::Create)
        .unwrap_or_else(|_| unreachable!("bench changes are valid"))
}

/// Both durability levels, the default first.
const LEVELS: [Durability; 2] = [Durability::Full, Durability::Normal];

/// The level's name in the report.
fn level_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    }
}

/// The pragmas the store sets for a level, for the baselines.
fn level_pragmas(durability: Durability) -> (SqliteSynchronous, &'static str) {
    match durability {
        Durability::Full => (SqliteSynchronous::Full, "ON"),
        Durability::Normal => (SqliteSynchronous::Normal, "OFF"),
    }
}

async fn open_store(path: &Path, durability: Durability) -> Result<SqliteStore, String> {
    SqliteStoreOptions::new(path)
        .durability(durability)
        .open()
        .await
        .map_err(err("open"))
}

fn rate(count: usize, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}

fn err<E: std::fmt::Display>(context: &str) -> impl Fn(E) -> String + '_ {
    move |error| format!("{context}: {error}")
}

/// A fresh database with the store's schema, closed again.
async fn fresh_db(dir: &Path, name: &str) -> Result<std::path::PathBuf, String> {
    let path = dir.join(name);
    SqliteStore::open(&path)
        .await
        .map_err(|e| e.to_string())?
        .close()
        .await;
    Ok(path)
}

fn load_sql(rows: usize) -> String {
    let values = vec!["(?, ?)"; rows].join(", ");
    let columns: Vec<String> = QUEUE_COLUMNS
        .split(", ")
        .filter(|c| !matches!(*c, "entity" | "id"))
        .map(|c| format!("q.{c}"))
        .collect();
    format!(
        "SELECT k.column1 AS entity, k.column2 AS id, \
         (SELECT r.created_at FROM records r WHERE r.entity = k.column1 AND r.id = k.column2) AS document_created_at, \
         q.seq IS NOT NULL AS has_item, {} FROM (VALUES {values}) AS k \
         LEFT JOIN queue q ON q.entity = k.column1 AND q.id = k.column2",
        columns.join(", ")
    )
}

fn queue_upsert_sql(rows: usize) -> String {
    let updates: Vec<String> = QUEUE_COLUMNS
        .split(", ")
        .filter(|c| !matches!(*c, "entity" | "id"))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let group = format!("({})", vec!["?"; 17].join(", "));
    format!(
        "INSERT INTO queue ({QUEUE_COLUMNS}) VALUES {} ON CONFLICT (entity, id) DO UPDATE SET {}",
        vec![group; rows].join(", "),
        updates.join(", ")
    )
}

pub(crate) fn record_upsert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO records (entity, id, data, created_at, updated_at) VALUES {} ON CONFLICT (entity, id) \
         DO UPDATE SET data = excluded.data, created_at = excluded.created_at, updated_at = excluded.updated_at",
        vec!["(?, ?, ?, ?, ?)"; rows].join(", ")
    )
}

/// The values a save writes, in bind order.
struct Written {
    id: String,
    payload: String,
    operation_id: String,
}

fn written(index: usize) -> Written {
    Written {
        id: index.to_string(),
        payload: payload(index).to_string(),
        operation_id: format!("op-{index}"),
    }
}

fn bind_queue(arguments: &mut SqliteArguments, row: &Written) -> Result<(), String> {
    let now = Timestamp::now().as_millis();
    let add = |e: sqlx::error::BoxDynError| e.to_string();
    arguments.add("tasks").map_err(add)?;
    arguments.add(row.id.clone()).map_err(add)?;
    arguments.add("create").map_err(add)?;
    arguments.add(row.payload.clone()).map_err(add)?;
    arguments.add("pending").map_err(add)?;
    arguments.add(0i64).map_err(add)?;
    arguments.add(now).map_err(add)?;
    arguments.add(now).map_err(add)?;
    arguments.add(None::<String>).map_err(add)?;
    arguments.add(None::<String>).map_err(add)?;
    arguments.add(None::<i64>).map_err(add)?;
    arguments.add(1i64).map_err(add)?;
    arguments.add(row.operation_id.clone()).map_err(add)?;
    arguments.add(false).map_err(add)?;
    arguments.add(None::<i64>).map_err(add)?;
    arguments.add(Some(now)).map_err(add)?;
    arguments.add(None::<i64>).map_err(add)?;
    Ok(())
}

fn bind_record(arguments: &mut SqliteArguments, row: &Written) -> Result<(), String> {
    let now = Timestamp::now().as_millis();
    let add = |e: sqlx::error::BoxDynError| e.to_string();
    arguments.add("tasks").map_err(add)?;
    arguments.add(row.id.clone()).map_err(add)?;
    arguments.add(row.payload.clone()).map_err(add)?;
    arguments.add(now).map_err(add)?;
    arguments.add(now).map_err(add)?;
    Ok(())
}

pub(crate) async fn raw_sqlx_connection(
    path: &Path,
    durability: Durability,
) -> Result<SqliteConnection, String> {
    let (synchronous, fullfsync) = level_pragmas(durability);
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .pragma("fullfsync", fullfsync)
        .foreign_keys(false)
        .statement_cache_capacity(256)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// Raw sqlx, the store's statements: begin, read, two upserts, commit.
async fn raw_sqlx_saves(
    path: &Path,
    durability: Durability,
    start: usize,
    batch: usize,
    count: usize,
) -> Result<f64, String> {
    let mut connection = raw_sqlx_connection(path, durability).await?;
    let started = Instant::now();
    let mut index = start;
    while index < start + count {
        let rows: Vec<Written> = (index..index + batch).map(written).collect();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        for chunk in rows.chunks(500) {
            let mut keys = SqliteArguments::default();
            for row in chunk {
                keys.add("tasks").map_err(|e| e.to_string())?;
                keys.add(row.id.clone()).map_err(|e| e.to_string())?;
            }
            sqlx::query_with(AssertSqlSafe(load_sql(chunk.len())), keys)
                .fetch_all(&mut connection)
                .await
                .map_err(|e| e.to_string())?;
        }
        for chunk in rows.chunks(500) {
            let mut arguments = SqliteArguments::default();
            for row in chunk {
                bind_queue(&mut arguments, row)?;
            }
            sqlx::query_with(AssertSqlSafe(queue_upsert_sql(chunk.len())), arguments)
                .execute(&mut connection)
                .await
                .map_err(|e| e.to_string())?;
        }
        for chunk in rows.chunks(500) {
            let mut arguments = SqliteArguments::default();
            for row in chunk {
                bind_record(&mut arguments, row)?;
            }
            sqlx::query_with(AssertSqlSafe(record_upsert_sql(chunk.len())), arguments)
                .execute(&mut connection)
                .await
                .map_err(|e| e.to_string())?;
        }
        sqlx::raw_sql("COMMIT")
            .execute(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        index += batch;
    }
    let rate = rate(count, started);
    connection.close().await.map_err(|e| e.to_string())?;
    Ok(rate)
}

/// rusqlite, single-row prepared statements: the physical limit.
fn rusqlite_saves(path: &Path, durability: Durability, batch: usize, count: usize) -> Result<f64, String> {
    let mut connection = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let (_, fullfsync) = level_pragmas(durability);
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA fullfsync = {fullfsync};",
            level_name(durability)
        ))
        .map_err(|e| e.to_string())?;
    let load = load_sql(1);
    let queue = queue_upsert_sql(1);
    let record = record_upsert_sql(1);
    let started = Instant::now();
    let mut index = 0;
    while index < count {
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        for row in (index..index + batch).map(written) {
            let now = Timestamp::now().as_millis();
            let mut statement = transaction.prepare_cached(&load).map_err(|e| e.to_string())?;
            let mut rows = statement
                .query(rusqlite::params!["tasks", row.id])
                .map_err(|e| e.to_string())?;
            while rows.next().map_err(|e| e.to_string())?.is_some() {}
            drop(rows);
            drop(statement);
            transaction
                .prepare_cached(&queue)
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        "tasks",
                        row.id,
                        "create",
                        row.payload,
                        "pending",
                        0,
                        now,
                        now,
                        None::<String>,
                        None::<String>,
                        None::<i64>,
                        1,
                        row.operation_id,
                        false,
                        None::<i64>,
                        Some(now),
                        None::<i64>
                    ])
                })
                .map_err(|e| e.to_string())?;
            transaction
                .prepare_cached(&record)
                .and_then(|mut s| s.execute(rusqlite::params!["tasks", row.id, row.payload, now, now]))
                .map_err(|e| e.to_string())?;
        }
        transaction.commit().map_err(|e| e.to_string())?;
        index += batch;
    }
    Ok(rate(count, started))
}

async fn engine_saves(store: &SqliteStore, start: usize, batch: usize, count: usize) -> Result<f64, String> {
    let started = Instant::now();
    let mut index = start;
    while index < start + count {
        // Saves carry the current time, as in an app: time-ordered indexes
        // then grow at their end.
        if batch == 1 {
            store
                .save(change(index), Timestamp::now())
                .await
                .map_err(|e| e.to_string())?;
        } else {
            let changes = (index..index + batch).map(change).collect();
            store
                .save_batch(changes, Timestamp::now())
                .await
                .map_err(|e| e.to_string())?;
        }
        index += batch;
    }
    Ok(rate(count, started))
}

async fn concurrent_engine_saves(
    store: Arc<SqliteStore>,
    tasks: usize,
    per_task: usize,
) -> Result<f64, String> {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for n in 0..per_task {
                    let index = 10_000_000 + task * per_task + n;
                    store
                        .save(change(index), Timestamp::now())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await.map_err(|e| e.to_string())??;
    }
    Ok(rate(tasks * per_task, started))
}

/// Time per save (with a watcher consuming every event) on a queue that
/// already holds `queued` items.
async fn save_cost_with_queue(dir: &Path, queued: usize, saves: usize) -> Result<f64, String> {
    let store = SqliteStore::open(dir.join(format!("queued-{queued}.db")))
        .await
        .map_err(|e| e.to_string())?;
    let mut index = 0;
    while index < queued {
        let size = (queued - index).min(10_000);
        let changes = (index..index + size).map(change).collect();
        store
            .save_batch(changes, Timestamp::now())
            .await
            .map_err(|e| e.to_string())?;
        index += size;
    }
    let mut events = store.subscribe();
    let watcher = tokio::spawn(async move {
        let mut seen = 0u64;
        while events.next().await.is_some() {
            seen += 1;
        }
        seen
    });
    let rate = engine_saves(&store, 20_000_000, 1, saves).await?;
    store.close().await;
    drop(store);
    let seen = watcher.await.map_err(|e| e.to_string())?;
    if seen < saves as u64 {
        return Err(format!("the watcher saw {seen} events for {saves} saves"));
    }
    Ok(rate)
}

pub(crate) async fn run(report: &mut Report, smoke: bool) -> Result<(), String> {
    let (single, batch, per_task, notify_saves, big_queue) = if smoke {
        (50, 200, 20, 50, 2_000)
    } else {
        (4_000, 10_000, 500, 2_000, 100_000)
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    eprintln!("store benchmarks (sizes: {single} single saves, batch of {batch}, 8 tasks x {per_task})");

    // 1. One save per transaction, best of three interleaved runs, at each
    //    durability level against baselines with the same pragmas.
    let mut single_rates = Vec::new();
    for durability in LEVELS {
        let level = level_name(durability);
        let (mut engine, mut raw, mut physical) = (0f64, 0f64, 0f64);
        for round in 0..3 {
            let store =
                open_store(&dir.path().join(format!("single-{level}-{round}.db")), durability).await?;
            engine = engine.max(engine_saves(&store, 0, 1, single).await?);
            store.close().await;
            let path = fresh_db(dir.path(), &format!("raw-{level}-{round}.db")).await?;
            raw = raw.max(raw_sqlx_saves(&path, durability, 0, 1, single).await?);
            let path = fresh_db(dir.path(), &format!("rusqlite-{level}-{round}.db")).await?;
            physical = physical.max(rusqlite_saves(&path, durability, 1, single)?);
        }
        let scenario = format!("store: single saves, {level}");
        let sizes = format!("{single} saves, ~200 B payloads");
        report.row(Row {
            scenario: scenario.clone(),
            sizes: sizes.clone(),
            engine,
            baseline_name: format!("raw sqlx, same SQL, {level}"),
            baseline: raw,
            unit: "saves/s",
            target: Some(Target::RatioAtLeast(0.85)),
        });
        report.row(Row {
            scenario,
            sizes,
            engine,
            baseline_name: format!("rusqlite, {level}"),
            baseline: physical,
            unit: "saves/s",
            target: None,
        });
        single_rates.push((durability, engine));
    }
    let single_rate = |durability: Durability| {
        single_rates
            .iter()
            .find(|(level, _)| *level == durability)
            .map_or(0.0, |(_, rate)| *rate)
    };
    report.row(Row {
        scenario: "store: single saves, FULL (default) vs NORMAL".into(),
        sizes: format!("{single} saves, ~200 B payloads"),
        engine: single_rate(Durability::Full),
        baseline_name: "engine, NORMAL".into(),
        baseline: single_rate(Durability::Normal),
        unit: "saves/s",
        target: None,
    });

    // 2. One batch of many saves in one transaction (the default level).
    let durability = Durability::default();
    let (mut engine, mut raw, mut physical) = (0f64, 0f64, 0f64);
    for round in 0..3 {
        let store = open_store(&dir.path().join(format!("batch-{round}.db")), durability).await?;
        engine = engine.max(engine_saves(&store, 0, batch, batch).await?);
        store.close().await;
        let path = fresh_db(dir.path(), &format!("raw-batch-{round}.db")).await?;
        raw = raw.max(raw_sqlx_saves(&path, durability, 0, batch, batch).await?);
        let path = fresh_db(dir.path(), &format!("rusqlite-batch-{round}.db")).await?;
        physical = physical.max(rusqlite_saves(&path, durability, batch, batch)?);
    }
    let sizes = format!("1 batch of {batch}");
    report.row(Row {
        scenario: "store: batch save".into(),
        sizes: sizes.clone(),
        engine,
        baseline_name: "rusqlite, row by row".into(),
        baseline: physical,
        unit: "saves/s",
        target: Some(Target::RatioAtLeast(0.3)),
    });
    report.row(Row {
        scenario: "store: batch save".into(),
        sizes,
        engine,
        baseline_name: "raw sqlx, same SQL".into(),
        baseline: raw,
        unit: "saves/s",
        target: None,
    });

    // 3. Concurrent saves: group commit, at each durability level.
    let mut concurrent_rates = Vec::new();
    for durability in LEVELS {
        let level = level_name(durability);
        let store =
            Arc::new(open_store(&dir.path().join(format!("concurrent-{level}.db")), durability).await?);
        let before = store.statement_count();
        let concurrent = concurrent_engine_saves(Arc::clone(&store), 8, per_task).await?;
        let per_save = (store.statement_count() - before) as f64 / (8 * per_task) as f64;
        store.close().await;
        report.fact(format!(
            "statements per save with 8 concurrent savers, {level}: {per_save:.2} (about {:.1} saves per commit)",
            5.0 / per_save
        ));
        report.row(Row {
            scenario: format!("store: 8 concurrent savers, {level}"),
            sizes: format!("8 x {per_task} saves"),
            engine: concurrent,
            baseline_name: format!("engine, 1 saver, {level}"),
            baseline: single_rate(durability),
            unit: "saves/s",
            target: Some(Target::RatioAtLeast(3.0)),
        });
        concurrent_rates.push(concurrent);
    }
    if let [full, normal] = concurrent_rates[..] {
        report.row(Row {
            scenario: "store: 8 concurrent savers, FULL (default) vs NORMAL".into(),
            sizes: format!("8 x {per_task} saves"),
            engine: full,
            baseline_name: "engine, NORMAL".into(),
            baseline: normal,
            unit: "saves/s",
            target: None,
        });
    }

    // 4. Statements per save and per attempt transition.
    let store = SqliteStore::open(dir.path().join("statements.db"))
        .await
        .map_err(err("open"))?;
    let before = store.statement_count();
    engine_saves(&store, 0, 1, 100).await?;
    let per_save = (store.statement_count() - before) as f64 / 100.0;
    let before = store.statement_count();
    for _ in 0..100 {
        let tickets = store
            .claim_ready(Timestamp::now(), 1)
            .await
            .map_err(|e| e.to_string())?;
        let finished = tickets
            .into_iter()
            .map(|ticket| FinishedAttempt {
                ticket,
                outcome: AttemptOutcome::Applied {
                    replace_local_with: None,
                    server_version: None,
                },
            })
            .collect();
        store
            .finish_attempts(finished, Timestamp::now())
            .await
            .map_err(|e| e.to_string())?;
    }
    let per_item_one_by_one = (store.statement_count() - before) as f64 / 100.0;
    engine_saves(&store, 1_000, 1, 100).await?;
    let before = store.statement_count();
    let tickets = store
        .claim_ready(Timestamp::now(), 100)
        .await
        .map_err(|e| e.to_string())?;
    let claimed = tickets.len();
    let finished = tickets
        .into_iter()
        .map(|ticket| FinishedAttempt {
            ticket,
            outcome: AttemptOutcome::Applied {
                replace_local_with: None,
                server_version: None,
            },
        })
        .collect();
    store
        .finish_attempts(finished, Timestamp::now())
        .await
        .map_err(|e| e.to_string())?;
    let per_item_grouped = (store.statement_count() - before) as f64 / claimed.max(1) as f64;
    store.close().await;
    report.fact(format!(
        "statements per single save: {per_save:.1} (begin, read, 2 upserts, commit)"
    ));
    report.fact(format!(
        "statements per synced item (claim + finish): {per_item_one_by_one:.1} one at a time, \
         {per_item_grouped:.2} in groups of {claimed}"
    ));

    // 5. Cost of one change (and its notification) as the queue grows.
    let small = save_cost_with_queue(dir.path(), 100, notify_saves).await?;
    let large = save_cost_with_queue(dir.path(), big_queue, notify_saves).await?;
    report.row(Row {
        scenario: "store: save + event, queue size".into(),
        sizes: format!("{notify_saves} saves on {big_queue} vs 100 queued, 1 watcher"),
        engine: large,
        baseline_name: "same on 100 queued".into(),
        baseline: small,
        unit: "saves/s",
        target: Some(Target::RatioAtLeast(0.8)),
    });

    // 6. The ids every save and claim generates.
    let ids = if smoke { 1_000 } else { 1_000_000 };
    let started = Instant::now();
    let mut length = 0;
    for _ in 0..ids {
        length += std::hint::black_box(OperationId::generate()).as_str().len();
    }
    let operation_ns = started.elapsed().as_nanos() as f64 / ids as f64;
    let started = Instant::now();
    let mut sum = 0u64;
    for _ in 0..ids {
        sum ^= std::hint::black_box(AttemptId::generate()).as_u64();
    }
    let attempt_ns = started.elapsed().as_nanos() as f64 / ids as f64;
    std::hint::black_box((length, sum));
    report.fact(format!(
        "id generation: {operation_ns:.0} ns per operation id (UUID v4 string, one per save), \
         {attempt_ns:.0} ns per attempt id (one per claim)"
    ));
    Ok(())
}
