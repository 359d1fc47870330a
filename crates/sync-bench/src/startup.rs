//! `cargo xtask bench startup`: time from opening an engine on a database
//! holding 100 000 queued items to its first request, against opening a
//! bare sqlx pool on the same file and reading the oldest queued row.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sync_store_sqlite::SqliteStore;

use crate::common::{NoopAdapter, engine, filled_db};
use crate::report::{Report, Row};

/// Milliseconds from open to the first request.
async fn engine_start(path: &Path) -> Result<f64, String> {
    let started = Instant::now();
    let store = SqliteStore::open(path).await.map_err(|e| format!("open: {e}"))?;
    let adapter = Arc::new(NoopAdapter::default());
    let engine = engine(Arc::new(store), Arc::clone(&adapter) as _, 1).await?;
    let manager = engine.sync_manager();
    let run = tokio::spawn(async move { manager.sync_now().await });
    let first = tokio::time::timeout(Duration::from_secs(60), adapter.first_call())
        .await
        .map_err(|_| "no request within 60 s of opening".to_owned())?;
    let millis = first.duration_since(started).as_secs_f64() * 1e3;
    run.abort();
    let _ = run.await;
    engine.close().await;
    Ok(millis)
}

/// Milliseconds to open a bare sqlx pool and read the oldest queued row.
async fn bare_start(path: &Path) -> Result<f64, String> {
    let started = Instant::now();
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| format!("sqlx open: {e}"))?;
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT entity, id, payload FROM queue ORDER BY created_at, seq LIMIT 1")
            .fetch_optional(&pool)
            .await
            .map_err(|e| format!("sqlx read: {e}"))?;
    let millis = started.elapsed().as_secs_f64() * 1e3;
    pool.close().await;
    row.ok_or("the bare read found no queued row")?;
    Ok(millis)
}

pub(crate) async fn run(report: &mut Report, smoke: bool) -> Result<(), String> {
    let count = if smoke { 1_000 } else { 100_000 };
    eprintln!("start-up benchmark (time to the first request with {count} queued items)");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = filled_db(dir.path(), "startup.db", count, 200).await?;
    let (mut ours, mut bare) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        ours = ours.min(engine_start(&path).await?);
        bare = bare.min(bare_start(&path).await?);
    }
    report.row(Row {
        scenario: "start-up: open to first request".into(),
        sizes: format!("{count} queued items, best of 3"),
        engine: ours,
        baseline_name: "bare sqlx pool open + oldest row read".into(),
        baseline: bare,
        unit: "ms",
        target: None,
    });
    Ok(())
}
