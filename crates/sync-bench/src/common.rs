//! What several scenarios share: an always-online monitor, a no-op
//! adapter, filling a queue, and building an engine for a drain.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use serde_json::json;
use sync_core::{
    ApiError, BoxStream, ConnectivityMonitor, EntityName, JsonObject, LocalChange, OperationId, RecordId,
    SyncApiAdapter, SyncOperation, SyncStore, Timestamp,
};
use sync_engine::{OfflineSyncEngine, OfflineSyncOptions};
use sync_store_sqlite::SqliteStore;

/// Always online: the benchmarks measure sending, not probing.
pub(crate) struct Online;

#[async_trait]
impl ConnectivityMonitor for Online {
    async fn is_connected(&self) -> bool {
        true
    }

    fn changes(&self) -> BoxStream<bool> {
        Box::pin(tokio_stream::once(true))
    }
}

/// An adapter that succeeds at once without a server answer: what is left
/// of a drain is the engine's own cost. Counts its calls and remembers when
/// the first one came.
#[derive(Default)]
pub(crate) struct NoopAdapter {
    calls: AtomicU64,
    first: std::sync::OnceLock<Instant>,
    first_seen: tokio::sync::Notify,
}

impl NoopAdapter {
    fn called(&self) {
        if self.calls.fetch_add(1, Ordering::Relaxed) == 0 {
            let _ = self.first.set(Instant::now());
            self.first_seen.notify_waiters();
            self.first_seen.notify_one();
        }
    }

    /// How many requests the engine made.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Waits for the first request; returns when it came.
    pub(crate) async fn first_call(&self) -> Instant {
        loop {
            let notified = self.first_seen.notified();
            if let Some(first) = self.first.get() {
                return *first;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl SyncApiAdapter for NoopAdapter {
    async fn create(
        &self,
        _entity: &EntityName,
        _id: &RecordId,
        _data: &JsonObject,
        _operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        self.called();
        Ok(None)
    }

    async fn update(
        &self,
        _entity: &EntityName,
        _id: &RecordId,
        _data: &JsonObject,
        _operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        self.called();
        Ok(None)
    }

    async fn delete(
        &self,
        _entity: &EntityName,
        _id: &RecordId,
        _operation_id: &OperationId,
    ) -> Result<(), ApiError> {
        self.called();
        Ok(())
    }

    async fn fetch_remote(
        &self,
        _entity: &EntityName,
        _id: &RecordId,
    ) -> Result<Option<JsonObject>, ApiError> {
        self.called();
        Ok(None)
    }
}

/// A create of task `n` whose payload is about `size` bytes of JSON.
pub(crate) fn create(n: usize, size: usize) -> LocalChange {
    let payload = json!({
        "id": n.to_string(),
        "title": format!("task {n}"),
        "notes": "n".repeat(size.saturating_sub(40)),
    });
    LocalChange::new("tasks", n.to_string(), payload, SyncOperation::Create)
        .unwrap_or_else(|_| unreachable!("bench changes are valid"))
}

/// Saves `count` creates of about `size` bytes each, in batches.
pub(crate) async fn fill(store: &SqliteStore, count: usize, size: usize) -> Result<(), String> {
    let mut index = 0;
    while index < count {
        let chunk = (count - index).min(10_000);
        let changes = (index..index + chunk).map(|n| create(n, size)).collect();
        store
            .save_batch(changes, Timestamp::now())
            .await
            .map_err(|e| format!("filling the queue: {e}"))?;
        index += chunk;
    }
    Ok(())
}

/// A fresh database file holding `count` queued creates, closed again.
pub(crate) async fn filled_db(
    dir: &Path,
    name: &str,
    count: usize,
    size: usize,
) -> Result<std::path::PathBuf, String> {
    let path = dir.join(name);
    let store = SqliteStore::open(&path)
        .await
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    fill(&store, count, size).await?;
    store.close().await;
    Ok(path)
}

/// An engine for a timed drain: no sync after saves, no connectivity
/// polling, always online.
pub(crate) async fn engine(
    store: Arc<dyn SyncStore>,
    adapter: Arc<dyn SyncApiAdapter>,
    concurrency: usize,
) -> Result<OfflineSyncEngine, String> {
    let mut options = OfflineSyncOptions::default();
    options.sync_after_save = false;
    options.connectivity_check_interval = None;
    options.concurrency = concurrency;
    OfflineSyncEngine::builder(store, adapter, Arc::new(Online))
        .options(options)
        .build()
        .await
        .map_err(|e| format!("building the engine: {e}"))
}

/// Runs one `sync_now` and checks that it drained `count` items; returns
/// the seconds it took.
pub(crate) async fn timed_drain(engine: &OfflineSyncEngine, count: usize) -> Result<f64, String> {
    let started = Instant::now();
    let report = engine
        .sync_manager()
        .sync_now()
        .await
        .map_err(|e| format!("sync_now: {e}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    if report.sent != count as u64 || report.still_pending != 0 {
        return Err(format!(
            "the drain sent {} of {count} ({} left)",
            report.sent, report.still_pending
        ));
    }
    Ok(elapsed)
}

/// `VmHWM` (peak) and `VmRSS` (now) of this process, in KiB (Linux).
pub(crate) fn peak_and_current_kib() -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status (memory figures need Linux): {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/self/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// What a child process of a memory measurement printed.
pub(crate) struct ChildMeasured {
    pub(crate) peak_mib: f64,
    pub(crate) seconds: f64,
}

/// Runs this binary again as `subcommand args...` (its `mode` named in
/// errors) and reads the `peak_kib=.. seconds=..` it prints.
pub(crate) fn run_child(subcommand: &str, args: &[String], mode: &str) -> Result<ChildMeasured, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let output = std::process::Command::new(exe)
        .arg(subcommand)
        .args(args)
        .output()
        .map_err(|e| format!("starting the {mode} child: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the {mode} child failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let field = |name: &str| -> Result<f64, String> {
        stdout
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(name))
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| format!("the {mode} child printed no {name}: {stdout:?}"))
    };
    Ok(ChildMeasured {
        peak_mib: field("peak_kib=")? / 1024.0,
        seconds: field("seconds=")?,
    })
}
