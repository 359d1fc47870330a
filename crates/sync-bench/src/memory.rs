//! `cargo xtask bench memory`: peak resident memory of a process that
//! opens the engine on 100 000 queued items of 1 KiB and drains them
//! through the HTTP adapter to a loopback server, against the same process
//! that only opens the engine. Each is a child process (this binary
//! re-executed with a hidden subcommand) reporting its `VmHWM` from
//! `/proc/self/status`, so the parent's own memory never counts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sync_net::HttpSyncApiAdapter;
use sync_store_sqlite::SqliteStore;

use crate::common::{ChildMeasured, engine, filled_db, peak_and_current_kib, timed_drain};
use crate::report::{Report, Row, Target};

/// The hidden subcommand the parent runs its children with.
pub(crate) const CHILD: &str = "__memory-child";

/// The child: `__memory-child <db> <open|drain> <server address> <count>`.
/// Prints `peak_kib=.. rss_kib=.. seconds=..` on stdout.
pub(crate) async fn child(args: &[String]) -> Result<(), String> {
    let [db, mode, address, count] = args else {
        return Err(format!("usage: {CHILD} <db> <open|drain> <address> <count>"));
    };
    let count: usize = count.parse().map_err(|_| format!("bad count {count:?}"))?;
    let store = SqliteStore::open(db).await.map_err(|e| format!("open: {e}"))?;
    let adapter = HttpSyncApiAdapter::builder(format!("http://{address}"))
        .build()
        .map_err(|e| e.to_string())?;
    let engine = engine(Arc::new(store), Arc::new(adapter), 1).await?;
    let seconds = match mode.as_str() {
        "open" => {
            // What a UI does first: read the queue counts.
            let _ = engine.queue_item("tasks", "0").await.map_err(|e| e.to_string())?;
            0.0
        }
        "drain" => timed_drain(&engine, count).await?,
        other => return Err(format!("unknown mode {other:?}")),
    };
    engine.close().await;
    let (peak, rss) = peak_and_current_kib()?;
    println!("peak_kib={peak} rss_kib={rss} seconds={seconds}");
    Ok(())
}

/// Runs the child in `mode` on `db`, draining to the server at `address`.
fn run_child(db: &Path, mode: &str, address: SocketAddr, count: usize) -> Result<ChildMeasured, String> {
    let args = [
        db.display().to_string(),
        mode.to_owned(),
        address.to_string(),
        count.to_string(),
    ];
    crate::common::run_child(CHILD, &args, mode)
}

pub(crate) async fn run(report: &mut Report, smoke: bool) -> Result<(), String> {
    let count = if smoke { 500 } else { 100_000 };
    eprintln!("memory benchmark (peak RSS of a child draining {count} queued items of 1 KiB)");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = filled_db(dir.path(), "memory.db", count, 1024).await?;
    let db_mib = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let (address, _requests) = crate::net::server().await?;
    // The children block on their own work; the parent's runtime serves
    // the loopback server meanwhile.
    let open = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || run_child(&db, "open", address, count))
            .await
            .map_err(|e| e.to_string())??
    };
    let drain = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || run_child(&db, "drain", address, count))
            .await
            .map_err(|e| e.to_string())??
    };
    report.row(Row {
        scenario: "memory: peak RSS while draining".into(),
        sizes: format!("{count} queued items of 1 KiB, HTTP to loopback"),
        engine: drain.peak_mib,
        baseline_name: "same process, engine opened, no drain".into(),
        baseline: open.peak_mib,
        unit: "MiB",
        target: Some(Target::ValueBelow(64.0)),
    });
    report.fact(format!(
        "memory: the drain took {:.1} s ({} items/s); database file {} MiB; the drain adds {} MiB \
         to the opened engine's peak",
        drain.seconds,
        crate::report::num(count as f64 / drain.seconds.max(1e-9)),
        crate::report::num(db_mib),
        crate::report::num(drain.peak_mib - open.peak_mib)
    ));
    Ok(())
}
