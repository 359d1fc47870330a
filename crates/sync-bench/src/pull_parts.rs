//! The pull scenario's baselines and the parts of a pull timed alone:
//! raw sqlx inserting the same rows, a bare hyper client fetching the same
//! pages, the HTTP adapter's pull alone and the store's `apply_pull`
//! alone. Each returns records per second.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe, Connection};
use sync_core::pull::{PullBatch, plan_page};
use sync_core::{
    EntityName, JsonObject, PullAnswer, PullCursor, PullPage, PullRequest, PullSource, PulledChange,
    RecordId, SyncStore, Timestamp,
};
use sync_facade::{HttpSyncApiAdapter, PullStrategy};
use sync_store_sqlite::{Durability, SqliteStore};

use crate::pull::{ENTITY, document, err};

/// Records per statement in the raw baseline, as in the store scenario's.
const STATEMENT_ROWS: usize = 500;

/// A plain records table, as an app without the engine would keep one.
const PLAIN_TABLE: &str = "CREATE TABLE records (entity TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, \
     created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)";

/// The same with the key a pull upserts on.
const KEYED_TABLE: &str = "CREATE TABLE records (entity TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, \
     created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, UNIQUE (entity, id))";

/// A multi-row insert of `rows` records into the plain table.
fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO records (entity, id, data, created_at, updated_at) VALUES {}",
        vec!["(?, ?, ?, ?, ?)"; rows].join(", ")
    )
}

/// The tables a raw sqlx baseline writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawTables {
    /// A plain records table, as an app without the engine would keep one.
    Plain,
    /// The same with `UNIQUE (entity, id)` and an upsert.
    Keyed,
    /// The store's own schema (made by opening a `SqliteStore`), writing
    /// what the engine writes for each pulled record: its document (in
    /// `records`, with both of that table's indexes) and the server's copy
    /// with its version (`server_copies`), and the cursor (`pull_state`)
    /// with each page. No reads: the engine's look-up of pending changes
    /// is its own cost.
    StoreSchema,
}

/// The raw sqlx baseline: the same documents in transactions of `page`
/// rows, multi-row statements of [`STATEMENT_ROWS`] rows into `tables`,
/// the store's pragmas at its default durability. Records per second.
pub(crate) async fn raw_sqlx_load(
    path: &Path,
    count: usize,
    page: usize,
    tables: RawTables,
) -> Result<f64, String> {
    if tables == RawTables::StoreSchema {
        let store = SqliteStore::open(path).await.map_err(err("store schema"))?;
        store.close().await;
    } else {
        // An empty file is an empty database (the connection does not create one).
        std::fs::File::create(path).map_err(err("raw sqlx database"))?;
    }
    let mut connection = crate::store::raw_sqlx_connection(path, Durability::default()).await?;
    if let Some(schema) = match tables {
        RawTables::Plain => Some(PLAIN_TABLE),
        RawTables::Keyed => Some(KEYED_TABLE),
        RawTables::StoreSchema => None,
    } {
        sqlx::raw_sql(schema)
            .execute(&mut connection)
            .await
            .map_err(err("raw sqlx schema"))?;
    }
    // The documents arrive as values (built before the clock starts) and
    // are written as text.
    let documents: Vec<Value> = (0..count).map(document).collect();
    let started = Instant::now();
    let mut start = 0;
    while start < count {
        let end = count.min(start + page);
        let rows: Vec<(String, String)> = (start..end)
            .map(|n| (n.to_string(), documents[n].to_string()))
            .collect();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut connection)
            .await
            .map_err(err("raw sqlx begin"))?;
        for (index, chunk) in rows.chunks(STATEMENT_ROWS).enumerate() {
            write_chunk(&mut connection, chunk, start + index * STATEMENT_ROWS, tables).await?;
        }
        if tables == RawTables::StoreSchema {
            sqlx::query(PUT_CURSOR)
                .bind(ENTITY)
                .bind(end.to_string())
                .execute(&mut connection)
                .await
                .map_err(err("raw sqlx cursor"))?;
        }
        sqlx::raw_sql("COMMIT")
            .execute(&mut connection)
            .await
            .map_err(err("raw sqlx commit"))?;
        start = end;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    connection.close().await.map_err(err("raw sqlx close"))?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(rate)
}

/// The cursor's row, as the store writes it.
const PUT_CURSOR: &str = "INSERT INTO pull_state (entity, cursor, generation) VALUES (?, ?, 0) \
     ON CONFLICT (entity) DO UPDATE SET cursor = excluded.cursor";

/// One multi-row statement per table for `chunk` (`(id, JSON text)`),
/// whose first row is record `first`.
async fn write_chunk(
    connection: &mut sqlx::SqliteConnection,
    chunk: &[(String, String)],
    first: usize,
    tables: RawTables,
) -> Result<(), String> {
    let add = |e: sqlx::error::BoxDynError| e.to_string();
    let now = Timestamp::now().as_millis();
    let mut arguments = SqliteArguments::default();
    for (id, data) in chunk {
        arguments.add(ENTITY).map_err(add)?;
        arguments.add(id.clone()).map_err(add)?;
        arguments.add(data.clone()).map_err(add)?;
        arguments.add(now).map_err(add)?;
        arguments.add(now).map_err(add)?;
    }
    let sql = match tables {
        RawTables::Plain => insert_sql(chunk.len()),
        RawTables::Keyed | RawTables::StoreSchema => crate::store::record_upsert_sql(chunk.len()),
    };
    sqlx::query_with(AssertSqlSafe(sql), arguments)
        .execute(&mut *connection)
        .await
        .map_err(err("raw sqlx insert"))?;
    if tables != RawTables::StoreSchema {
        return Ok(());
    }
    let mut arguments = SqliteArguments::default();
    for (offset, (id, data)) in chunk.iter().enumerate() {
        arguments.add(ENTITY).map_err(add)?;
        arguments.add(id.clone()).map_err(add)?;
        arguments.add(data.clone()).map_err(add)?;
        arguments
            .add(format!("\"{}\"", first + offset + 1))
            .map_err(add)?;
    }
    let sql = format!(
        "INSERT INTO server_copies (entity, id, data, version) VALUES {} ON CONFLICT (entity, id) \
         DO UPDATE SET data = excluded.data, version = excluded.version",
        vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
    );
    sqlx::query_with(AssertSqlSafe(sql), arguments)
        .execute(&mut *connection)
        .await
        .map_err(err("raw sqlx server copies"))?;
    Ok(())
}

/// The network side alone: the same pages fetched with a bare hyper
/// client over keep-alive and parsed into JSON values, nothing stored.
/// Records per second.
pub(crate) async fn fetch_only(url: &str, count: usize, page: usize) -> Result<f64, String> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let uri = match &cursor {
            None => format!("{url}/{ENTITY}/changes?limit={page}"),
            Some(cursor) => format!("{url}/{ENTITY}/changes?limit={page}&since={cursor}"),
        };
        let request = Request::get(uri)
            .header("accept", "application/json")
            .body(Empty::new())
            .map_err(err("fetch request"))?;
        let response = client.request(request).await.map_err(err("fetch"))?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(err("fetch body"))?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&body).map_err(err("fetch parse"))?;
        seen += answer["changes"].as_array().map_or(0, Vec::len);
        cursor = answer["cursor"].as_str().map(str::to_owned);
        if answer["more"] != Value::Bool(true) {
            break;
        }
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    if seen != count {
        return Err(format!("the bare fetch saw {seen} of {count} changes"));
    }
    Ok(rate)
}

/// Where an initial load's time goes, part one: the HTTP adapter's
/// `PullSource::pull` alone, page after page, nothing stored. Records per
/// second.
pub(crate) async fn adapter_only(url: &str, count: usize, page: usize) -> Result<f64, String> {
    let adapter = HttpSyncApiAdapter::builder(url)
        .pull(ENTITY, PullStrategy::change_feed())
        .build()
        .map_err(err("adapter"))?;
    let entity: EntityName = ENTITY.parse().map_err(err("entity"))?;
    let started = Instant::now();
    let mut cursor: Option<PullCursor> = None;
    let mut seen = 0;
    loop {
        let request = PullRequest {
            entity: &entity,
            cursor: cursor.as_ref(),
            limit: page,
        };
        let answer = adapter.pull(request).await.map_err(err("adapter pull"))?;
        let PullAnswer::Page(page) = answer else {
            return Err("the adapter's pull gave no page".to_owned());
        };
        seen += page.changes.len();
        if page.cursor.is_some() {
            cursor = page.cursor;
        }
        if !page.more {
            break;
        }
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    if seen != count {
        return Err(format!("the adapter alone saw {seen} of {count} changes"));
    }
    Ok(rate)
}

/// Where an initial load's time goes, part two: the SQLite store's
/// `apply_pull` alone (default durability), the same pages built in
/// memory as the adapter hands them over. Records per second.
pub(crate) async fn store_only(path: &Path, count: usize, page: usize) -> Result<f64, String> {
    let store = SqliteStore::open(path).await.map_err(err("store"))?;
    let entity: EntityName = ENTITY.parse().map_err(err("entity"))?;
    let pages: Vec<PullPage> = (0..count)
        .step_by(page)
        .map(|start| {
            let end = count.min(start + page);
            let changes = (start..end)
                .map(|n| {
                    let data: JsonObject = match document(n) {
                        Value::Object(data) => data,
                        _ => JsonObject::default(),
                    };
                    PulledChange::Upsert {
                        id: RecordId::from(n as u64),
                        data,
                        version: Some(format!("\"{}\"", n + 1)),
                    }
                })
                .collect();
            Ok(PullPage {
                changes,
                cursor: Some(PullCursor::new(end.to_string()).map_err(err("cursor"))?),
                more: end < count,
                listing: false,
            })
        })
        .collect::<Result<_, String>>()?;
    let started = Instant::now();
    for page in pages {
        let state = store.pull_state(&entity).await.map_err(err("pull_state"))?;
        let now = Timestamp::now();
        let plan = plan_page(&state, &page, now);
        let batch = PullBatch {
            entity: entity.clone(),
            expected: state,
            plan,
            changes: page.changes,
            merges: Vec::new(),
        };
        store.apply_pull(batch, now).await.map_err(err("apply_pull"))?;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    store.close().await;
    Ok(rate)
}
