//! An initial load through `apply_pull` against raw sqlx inserting the same
//! rows in the same batches into a plain table: ignored, run by hand in
//! release with
//! `cargo test -p sync-store-sqlite --release --test pull_throughput -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)] // A measurement, printed.

use std::path::Path;
use std::time::Instant;

use serde_json::json;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Arguments, AssertSqlSafe, ConnectOptions, Connection, SqliteConnection};
use sync_core::pull::{PullBatch, PullCursor, PullPage, PulledChange, plan_page};
use sync_core::{EntityName, JsonObject, SyncStore, Timestamp};
use sync_store_sqlite::{Durability, SqliteStoreOptions};

const PAGES: usize = 100;
const PAGE: usize = 1000;
const CHUNK: usize = 500;

/// About 200 bytes of JSON.
fn document(index: usize) -> JsonObject {
    json!({ "id": index.to_string(), "title": format!("task {index}"), "done": false, "notes": "n".repeat(150) })
        .as_object()
        .cloned()
        .unwrap()
}

fn pages() -> Vec<Vec<(String, JsonObject)>> {
    (0..PAGES)
        .map(|page| {
            (page * PAGE..(page + 1) * PAGE)
                .map(|index| (index.to_string(), document(index)))
                .collect()
        })
        .collect()
}

async fn store_load(dir: &Path, durability: Durability, pages: &[Vec<(String, JsonObject)>]) -> f64 {
    let store = SqliteStoreOptions::new(dir.join(format!("store-{durability:?}.db")))
        .durability(durability)
        .open()
        .await
        .unwrap();
    let entity: EntityName = "tasks".parse().unwrap();
    let now = Timestamp::from_millis(1_000);
    // The input, as the pull source hands it over.
    let input: Vec<PullPage> = pages
        .iter()
        .enumerate()
        .map(|(index, rows)| PullPage {
            changes: rows
                .iter()
                .map(|(id, data)| PulledChange::Upsert {
                    id: id.parse().unwrap(),
                    data: data.clone(),
                    version: Some(format!("\"{id}\"")),
                })
                .collect(),
            cursor: Some(PullCursor::new(format!("cursor-{index}")).unwrap()),
            more: index + 1 < PAGES,
            listing: false,
        })
        .collect();
    let started = Instant::now();
    for page in input {
        let expected = store.pull_state(&entity).await.unwrap();
        let plan = plan_page(&expected, &page, now);
        let batch = PullBatch {
            entity: entity.clone(),
            expected,
            plan,
            changes: page.changes,
            merges: Vec::new(),
        };
        store.apply_pull(batch, now).await.unwrap();
    }
    let rate = (PAGES * PAGE) as f64 / started.elapsed().as_secs_f64();
    assert_eq!(store.records(&entity).await.unwrap().len(), PAGES * PAGE);
    store.close().await;
    rate
}

async fn raw_load(
    dir: &Path,
    durability: Durability,
    pages: &[Vec<(String, JsonObject)>],
    table: &str,
    serialize: bool,
) -> f64 {
    let synchronous = match durability {
        Durability::Full => SqliteSynchronous::Full,
        Durability::Normal => SqliteSynchronous::Normal,
    };
    let mut connection: SqliteConnection = SqliteConnectOptions::new()
        .filename(dir.join(format!("raw-{durability:?}-{serialize}-{}.db", table.len())))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .pragma(
            "fullfsync",
            if durability == Durability::Full {
                "ON"
            } else {
                "OFF"
            },
        )
        .foreign_keys(false)
        .statement_cache_capacity(256)
        .disable_statement_logging()
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(table.to_owned()))
        .execute(&mut connection)
        .await
        .unwrap();
    let texts: Vec<Vec<String>> = if serialize {
        Vec::new()
    } else {
        pages
            .iter()
            .map(|rows| rows.iter().map(|(_, data)| json!(data).to_string()).collect())
            .collect()
    };
    let now = 1_000_i64;
    let started = Instant::now();
    for (page, rows) in pages.iter().enumerate() {
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut connection)
            .await
            .unwrap();
        for (chunk_index, chunk) in rows.chunks(CHUNK).enumerate() {
            // The keyed table takes the store's upsert, as the bench's baseline.
            let upsert = if table == KEYED {
                " ON CONFLICT (entity, id) DO UPDATE SET data = excluded.data, \
                 created_at = excluded.created_at, updated_at = excluded.updated_at"
            } else {
                ""
            };
            let sql = format!(
                "INSERT INTO plain (entity, id, data, created_at, updated_at) VALUES {}{upsert}",
                vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut arguments = SqliteArguments::default();
            for (offset, (id, data)) in chunk.iter().enumerate() {
                let text = if serialize {
                    serde_json::to_string(data).unwrap()
                } else {
                    texts[page][chunk_index * CHUNK + offset].clone()
                };
                arguments.add("tasks").unwrap();
                arguments.add(id.clone()).unwrap();
                arguments.add(text).unwrap();
                arguments.add(now).unwrap();
                arguments.add(now).unwrap();
            }
            sqlx::query_with(AssertSqlSafe(sql), arguments)
                .persistent(true)
                .execute(&mut connection)
                .await
                .unwrap();
        }
        sqlx::raw_sql("COMMIT").execute(&mut connection).await.unwrap();
    }
    let rate = (PAGES * PAGE) as f64 / started.elapsed().as_secs_f64();
    connection.close().await.unwrap();
    rate
}

/// Raw sqlx writing what a pull writes, into the store's own tables: the
/// floor for `apply_pull` (documents and server copies, no reads).
async fn raw_store_tables(dir: &Path, durability: Durability, pages: &[Vec<(String, JsonObject)>]) -> f64 {
    let synchronous = match durability {
        Durability::Full => SqliteSynchronous::Full,
        Durability::Normal => SqliteSynchronous::Normal,
    };
    let mut connection: SqliteConnection = SqliteConnectOptions::new()
        .filename(dir.join(format!("raw-tables-{durability:?}.db")))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .pragma(
            "fullfsync",
            if durability == Durability::Full {
                "ON"
            } else {
                "OFF"
            },
        )
        .foreign_keys(false)
        .statement_cache_capacity(256)
        .disable_statement_logging()
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE records (entity TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, \
         created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, pulled_in INTEGER, UNIQUE (entity, id)); \
         CREATE INDEX records_by_updated ON records (entity, updated_at DESC, id); \
         CREATE TABLE server_copies (entity TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, version TEXT, \
         PRIMARY KEY (entity, id)) WITHOUT ROWID;",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    let now = 1_000_i64;
    let started = Instant::now();
    for rows in pages {
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut connection)
            .await
            .unwrap();
        let texts: Vec<String> = rows
            .iter()
            .map(|(_, data)| serde_json::to_string(data).unwrap())
            .collect();
        for (chunk, texts) in rows.chunks(CHUNK).zip(texts.chunks(CHUNK)) {
            let sql = format!(
                "INSERT INTO records (entity, id, data, created_at, updated_at, pulled_in) VALUES {} \
                 ON CONFLICT (entity, id) DO UPDATE SET data = excluded.data",
                vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut arguments = SqliteArguments::default();
            for ((id, _), text) in chunk.iter().zip(texts) {
                arguments.add("tasks").unwrap();
                arguments.add(id.clone()).unwrap();
                arguments.add(text.clone()).unwrap();
                arguments.add(now).unwrap();
                arguments.add(now).unwrap();
                arguments.add(None::<i64>).unwrap();
            }
            sqlx::query_with(AssertSqlSafe(sql), arguments)
                .persistent(true)
                .execute(&mut connection)
                .await
                .unwrap();
            let sql = format!(
                "INSERT INTO server_copies (entity, id, data, version) VALUES {} \
                 ON CONFLICT (entity, id) DO UPDATE SET data = excluded.data",
                vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut arguments = SqliteArguments::default();
            for ((id, _), text) in chunk.iter().zip(texts) {
                arguments.add("tasks").unwrap();
                arguments.add(id.clone()).unwrap();
                arguments.add(text.clone()).unwrap();
                arguments.add(Some(format!("\"{id}\""))).unwrap();
            }
            sqlx::query_with(AssertSqlSafe(sql), arguments)
                .persistent(true)
                .execute(&mut connection)
                .await
                .unwrap();
        }
        sqlx::raw_sql("COMMIT").execute(&mut connection).await.unwrap();
    }
    let rate = (PAGES * PAGE) as f64 / started.elapsed().as_secs_f64();
    connection.close().await.unwrap();
    rate
}

const PLAIN: &str = "CREATE TABLE plain (entity TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, \
     created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)";
const KEYED: &str = "CREATE TABLE plain (entity TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, \
     created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, UNIQUE (entity, id))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand in release"]
async fn initial_load_against_raw_sqlx() {
    let pages = pages();
    for durability in [Durability::Full, Durability::Normal] {
        let (mut store, mut raw, mut raw_text, mut keyed, mut tables) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for round in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            store = store.max(store_load(dir.path(), durability, &pages).await);
            raw = raw.max(raw_load(dir.path(), durability, &pages, PLAIN, true).await);
            raw_text = raw_text.max(raw_load(dir.path(), durability, &pages, PLAIN, false).await);
            keyed = keyed.max(raw_load(dir.path(), durability, &pages, KEYED, true).await);
            tables = tables.max(raw_store_tables(dir.path(), durability, &pages).await);
            let _ = round;
        }
        println!(
            "{durability:?}: apply_pull {store:.0} records/s; raw sqlx plain table {raw:.0}/s (ratio {:.2}), \
             pre-encoded text {raw_text:.0}/s (ratio {:.2}), UNIQUE (entity, id) and upsert {keyed:.0}/s (ratio {:.2}); \
             raw sqlx into the store's records and server_copies {tables:.0}/s (ratio {:.2})",
            store / raw,
            store / raw_text,
            store / keyed,
            store / tables
        );
    }
}
