//! What an app's own test looks like with the facade's `memory-store`
//! feature: the engine over the in-memory store, its own fake server
//! behind the adapter trait, and tokio's paused time, so a retry timer of
//! minutes passes instantly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sync_facade::implement::{ConnectivityMonitor, OperationId, SyncApiAdapter};
use sync_facade::prelude::*;
use sync_facade::{
    ApiError, BoxStream, EntityName, ErrorKind, JsonObject, MemoryStore, RecordId, TokioClock,
};

/// The app's own fake of its server: fails the first create with a 503.
#[derive(Default)]
struct FlakyServer {
    creates: AtomicUsize,
}

#[async_trait]
impl SyncApiAdapter for FlakyServer {
    async fn create(
        &self,
        _: &EntityName,
        _: &RecordId,
        _: &JsonObject,
        _: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        if self.creates.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(ApiError::new(ErrorKind::Transient, "HTTP 503").with_status(503));
        }
        Ok(None)
    }
    async fn update(
        &self,
        _: &EntityName,
        _: &RecordId,
        _: &JsonObject,
        _: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        Ok(None)
    }
    async fn delete(&self, _: &EntityName, _: &RecordId, _: &OperationId) -> Result<(), ApiError> {
        Ok(())
    }
    async fn fetch_remote(&self, _: &EntityName, _: &RecordId) -> Result<Option<JsonObject>, ApiError> {
        Ok(None)
    }
}

struct AlwaysOnline;

#[async_trait]
impl ConnectivityMonitor for AlwaysOnline {
    async fn is_connected(&self) -> bool {
        true
    }
    fn changes(&self) -> BoxStream<bool> {
        Box::pin(tokio_stream::iter([true]))
    }
}

#[tokio::test(start_paused = true)]
async fn an_apps_own_test_runs_a_ten_minute_retry_instantly_on_the_memory_store() {
    let server = Arc::new(FlakyServer::default());
    let options = OfflineSyncOptions::default()
        .retry_base_delay(Duration::from_secs(600))
        .connectivity_check_interval(None);
    let engine = OfflineSyncEngine::builder(
        Arc::new(MemoryStore::new()),
        server.clone(),
        Arc::new(AlwaysOnline),
    )
    .options(options)
    .clock(Arc::new(TokioClock::new()))
    .build()
    .await
    .unwrap();
    engine
        .save("tasks", "1", json!({"id": "1"}), SyncOperation::Create)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    assert!(
        engine
            .wait_until_drained(Duration::from_secs(3600))
            .await
            .unwrap()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(600),
        "the retry waited its 10 minutes"
    );
    assert_eq!(
        engine
            .queue_item("tasks", "1")
            .await
            .unwrap()
            .map(|item| item.status),
        Some(SyncStatus::Synced)
    );
    engine.close().await;
}
