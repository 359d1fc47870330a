//! `cargo xtask bench engine`: draining a queue of creates through the
//! engine (SQLite store, HTTP adapter, loopback server) against a bare
//! hyper client sending the same POSTs, and the speed-up of concurrency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;
use sync_core::{LocalChange, SyncOperation, SyncStore, Timestamp};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions};
use sync_net::HttpSyncApiAdapter;
use sync_store_sqlite::SqliteStore;

use crate::report::{Report, Row, Target};

struct Drain {
    rate: f64,
    statements_per_item: f64,
    requests_per_item: f64,
}

/// Queues `count` creates, then times one `sync_now` that drains them.
async fn drain(
    dir: &std::path::Path,
    (address, requests): (SocketAddr, &AtomicU64),
    count: usize,
    concurrency: usize,
) -> Result<Drain, String> {
    let path = dir.join(format!(
        "drain-{count}-{concurrency}-{}.db",
        Timestamp::now().as_millis()
    ));
    let store = Arc::new(SqliteStore::open(&path).await.map_err(|e| e.to_string())?);
    let mut index = 0;
    while index < count {
        let size = (count - index).min(10_000);
        let changes: Vec<LocalChange> = (index..index + size)
            .map(|n| {
                let payload =
                    json!({ "id": n.to_string(), "title": format!("task {n}"), "notes": "n".repeat(150) });
                LocalChange::new("tasks", n.to_string(), payload, SyncOperation::Create)
                    .unwrap_or_else(|_| unreachable!("bench changes are valid"))
            })
            .collect();
        store
            .save_batch(changes, Timestamp::now())
            .await
            .map_err(|e| e.to_string())?;
        index += size;
    }
    let adapter = HttpSyncApiAdapter::builder(format!("http://{address}"))
        .build()
        .map_err(|e| e.to_string())?;
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options.connectivity_check_interval = None;
    options.concurrency = concurrency;
    let engine =
        OfflineSyncEngine::builder(store.clone(), Arc::new(adapter), Arc::new(crate::common::Online))
            .options(options)
            .build()
            .await
            .map_err(|e| e.to_string())?;
    let statements = store.statement_count();
    let requests_before = requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let report = engine
        .sync_manager()
        .sync_now()
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    let statements = store.statement_count() - statements;
    let sent_requests = requests.load(Ordering::Relaxed) - requests_before;
    if report.sent != count as u64 || report.still_pending != 0 {
        return Err(format!(
            "the drain sent {} of {count} ({} left)",
            report.sent, report.still_pending
        ));
    }
    engine.close().await;
    Ok(Drain {
        rate: count as f64 / elapsed,
        statements_per_item: statements as f64 / count as f64,
        requests_per_item: sent_requests as f64 / count as f64,
    })
}

pub(crate) async fn run(report: &mut Report, smoke: bool) -> Result<(), String> {
    let count = if smoke { 200 } else { 10_000 };
    eprintln!("engine benchmarks (drain of {count} queued creates to a loopback server)");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (address, requests) = crate::net::server().await?;
    let server = (address, requests.as_ref());
    crate::net::bare_hyper(address, count / 10, true).await?;
    let (mut sequential, mut bare) = (None::<Drain>, 0f64);
    for _ in 0..if smoke { 1 } else { 2 } {
        let run = drain(dir.path(), server, count, 1).await?;
        if sequential.as_ref().is_none_or(|best| run.rate > best.rate) {
            sequential = Some(run);
        }
        bare = bare.max(crate::net::bare_hyper(address, count, true).await?);
    }
    let sequential = sequential.ok_or("no run")?;
    report.row(Row {
        scenario: "engine: drain, sequential".into(),
        sizes: format!("{count} creates, concurrency 1"),
        engine: sequential.rate,
        baseline_name: "bare hyper client, same POSTs".into(),
        baseline: bare,
        unit: "items/s",
        target: Some(Target::RatioAtLeast(0.7)),
    });
    report.fact(format!(
        "engine drain: {:.2} store statements and {:.1} requests per synced item (sequential)",
        sequential.statements_per_item, sequential.requests_per_item
    ));
    for concurrency in [2, 4, 8, 16] {
        let run = drain(dir.path(), server, count, concurrency).await?;
        report.row(Row {
            scenario: format!("engine: drain, concurrency {concurrency}"),
            sizes: format!("{count} creates"),
            engine: run.rate,
            baseline_name: "engine, concurrency 1".into(),
            baseline: sequential.rate,
            unit: "items/s",
            target: None,
        });
    }
    Ok(())
}
