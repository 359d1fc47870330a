//! Offline-first sync for Rust apps: save every change locally first, send
//! it to your REST API when the network allows, and never lose or duplicate
//! it on the way (through kills, lost answers and cancelled calls; a server
//! that applies a request after the engine gave up on it is the one case
//! the guide's "Requests applied late" describes).
//!
//! This is the crate apps depend on. It re-exports the engine
//! ([`OfflineSyncEngine`]), the core types, and, behind features, the
//! layers: `sqlite` (the SQLite store) and `http` (the REST adapter and the
//! connectivity monitor, TLS by rustls), both on by default. With both,
//! [`OfflineSync::builder`] opens an engine in one call; without them, plug
//! in your own [`implement::SyncStore`], [`implement::SyncApiAdapter`] and
//! [`implement::ConnectivityMonitor`] through [`OfflineSyncEngine::builder`]
//! (everything an implementer needs is in [`implement`]). The feature `memory-store` (off
//! by default) adds `MemoryStore`, an in-memory store for your own tests
//! with tokio's paused time.
//!
//! # Quick start
//!
//! ```
//! use serde_json::json;
//! use sync_facade::prelude::*;
//! use tokio_stream::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = sync_reference_server::ReferenceServer::start(Default::default()).await?;
//! # let api_url = server.url();
//! # let data_dir = tempfile::tempdir()?;
//! # let data_dir = data_dir.path();
//! // An engine with a SQLite file in `data_dir`, sending to your REST API.
//! let engine = OfflineSync::builder(data_dir, api_url)
//!     .probe_api_health("/health")
//!     .build()
//!     .await?;
//!
//! // Saved locally at once, online or not.
//! engine.save("tasks", "1", json!({"id": "1", "title": "Buy milk"}), SyncOperation::Create).await?;
//! let record = engine.get_record("tasks", "1").await?.expect("saved locally");
//! assert_eq!(record.data["title"], "Buy milk");
//!
//! // Watch the item's state for the UI: it starts with the current value.
//! let mut status = engine.watch_item_status("tasks", "1")?;
//! assert!(status.next().await.is_some());
//!
//! // Sync now (or `engine.sync_manager().start_auto_sync()`). The save
//! // already started a run in the background (`sync_after_save`), so this
//! // one may find the item sent: it returns once a whole pass is done.
//! let report = engine.sync_manager().sync_now().await?;
//! assert_eq!((report.failed, report.still_pending), (0, 0));
//! assert_eq!(engine.queue_item("tasks", "1").await?.map(|i| i.status), Some(SyncStatus::Synced));
//! # assert_eq!(server.snapshot()["tasks"]["1"]["title"], "Buy milk");
//! engine.close().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

#[cfg(all(feature = "sqlite", feature = "http"))]
mod defaults;

#[cfg(all(feature = "sqlite", feature = "http"))]
pub use defaults::{OfflineSync, OfflineSyncBuilder, OpenError};
pub use sync_core::{
    ApiError, Backoff, BoxStream, Clock, ConflictResolver, DEFAULT_MAX_PAYLOAD_BYTES, DiscardOutcome,
    EntityName, Error, ErrorKind, FnResolver, JsonObject, LastWriteWins, LocalRecord, LocalWins,
    MAX_NAME_BYTES, ManualClock, MergeFields, PullCounts, PullCursor, QueueCounts, RecordId, RecordKey,
    RemoteWins, ResolveError, SavedChange, StoreError, StoreErrorKind, SyncOperation, SyncQueueItem,
    SyncStatus, SystemClock, Timestamp, ValidationError,
};
pub use sync_engine::{
    AttemptEvent, AttemptResult, BackgroundSyncScheduler, ChangeOutcome, Collection, Created,
    OfflineSyncEngine, OfflineSyncEngineBuilder, OfflineSyncOptions, PullProgress, SyncError, SyncEvent,
    SyncManager, SyncReport, SyncStats, TokioClock, TypedRecords, Unreadable,
};
#[cfg(feature = "http")]
pub use sync_net::{
    AnswerMatch, AnswerShape, AuthHook, BodyShape, ChangeFeed, FilteredList, HttpMethod, HttpSyncApiAdapter,
    HttpSyncApiAdapterBuilder, IdType, InternetCheckOption, InternetConnectionMonitor,
    InternetConnectionMonitorBuilder, ListDialect, NetError, PullStrategy, RequestKind, RequestShape,
    Snapshot, VersionSource, default_path, encode_query_value, encode_segment, merge_patch,
};
#[cfg(feature = "sqlite")]
pub use sync_store_sqlite::{Durability, SqliteStore, SqliteStoreOptions};
/// An in-memory [`SyncStore`] for the app's own tests (feature
/// `memory-store`): unlike the SQLite store it works with tokio's paused
/// time, so retry timers and auto-sync can be tested instantly.
#[cfg(feature = "memory-store")]
pub use sync_testkit::MemoryStore;

/// For implementers of the seams: your own store, server adapter, pull
/// source or connectivity monitor, plugged in through
/// [`OfflineSyncEngine::builder`]. The traits, the types that cross them,
/// and sync-core's pure decisions (`attempt`, `coalesce`, `pull`,
/// `discard`, `rename`, `snapshot`) a store applies, plus `async_trait` to implement
/// the traits with. Apps using the SQLite store and the HTTP adapter need
/// none of this.
pub mod implement {
    pub use async_trait::async_trait;
    pub use sync_core::{
        AttemptOutcome, AttemptTicket, ConnectivityMonitor, CopyWrite, CreatedLookup, FinishResult,
        FinishedAttempt, LocalChange, OperationId, PullAnswer, PullPage, PullRequest, PullSource, PullState,
        PulledChange, RetryPolicy, RetrySchedule, SendPlan, ServerCopy, StoreEvent, SyncApiAdapter,
        SyncStore, WriteAnswer, WriteKind, WriteRequest,
    };
    pub use sync_core::{attempt, coalesce, discard, pull, rename, snapshot};
    /// The store conformance checks: run them against your own store.
    #[cfg(feature = "memory-store")]
    pub use sync_testkit::conformance;
}

/// The names most apps need, for `use sync_facade::prelude::*`.
pub mod prelude {
    #[cfg(all(feature = "sqlite", feature = "http"))]
    pub use crate::OfflineSync;
    pub use crate::{
        ChangeOutcome, Collection, ConflictResolver, Created, DiscardOutcome, LastWriteWins, LocalRecord,
        LocalWins, OfflineSyncEngine, OfflineSyncOptions, RemoteWins, SyncError, SyncEvent, SyncOperation,
        SyncQueueItem, SyncStatus, TypedRecords,
    };
    #[cfg(feature = "http")]
    pub use crate::{PullStrategy, RequestShape};
}
