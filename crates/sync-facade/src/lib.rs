//! Offline-first sync for Rust apps: save every change locally first, send
//! it to your REST API when the network allows, and never lose or duplicate
//! it on the way.
//!
//! This is the crate apps depend on. Today it exposes the engine's core:
//! the models, the validated names, the queue-coalescing rules, the retry
//! policy and the conflict resolvers, plus the traits a store, an API
//! adapter and a connectivity monitor implement. The SQLite store, the HTTP
//! adapter and the engine join it, each behind a feature, as they land.
//!
//! # What a save does to the queue
//!
//! ```
//! use serde_json::json;
//! use sync_facade::prelude::*;
//! use sync_facade::coalesce::{plan_save, QueueWrite, SaveContext};
//!
//! // Created offline, then edited before it was ever sent: one create
//! // carrying the latest payload goes out.
//! let create = LocalChange::new("tasks", "1", json!({"title": "draft"}), SyncOperation::Create)?;
//! let first = plan_save(None, false, create, SaveContext::at(Timestamp::now()));
//! let QueueWrite::Put(queued) = first.queue else { unreachable!() };
//!
//! let edit = LocalChange::new("tasks", "1", json!({"title": "final"}), SyncOperation::Update)?;
//! let second = plan_save(Some(&queued), true, edit, SaveContext::at(Timestamp::now()));
//! let QueueWrite::Put(queued) = second.queue else { unreachable!() };
//! assert_eq!(queued.operation, SyncOperation::Create);
//! assert_eq!(queued.payload["title"], "final");
//!
//! // Bad input is a typed error and nothing is planned.
//! let error = LocalChange::new("tasks", "", json!({}), SyncOperation::Create).unwrap_err();
//! assert!(matches!(error, ValidationError::Empty { .. }));
//! # Ok::<(), ValidationError>(())
//! ```
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub use sync_core::attempt;
pub use sync_core::coalesce;
pub use sync_core::{
    ApiError, AttemptOutcome, AttemptTicket, Backoff, BoxStream, Clock, ConflictResolver,
    ConnectivityMonitor, DEFAULT_MAX_PAYLOAD_BYTES, EntityName, Error, ErrorKind, FinishResult,
    FinishedAttempt, FnResolver, JsonObject, LastWriteWins, LocalChange, LocalRecord, LocalWins,
    MAX_NAME_BYTES, ManualClock, OperationId, QueueCounts, RecordId, RecordKey, RemoteWins, ResolveError,
    RetryPolicy, RetrySchedule, SavedChange, SendPlan, StoreError, StoreErrorKind, StoreEvent,
    SyncApiAdapter, SyncOperation, SyncQueueItem, SyncStatus, SyncStore, SystemClock, Timestamp,
    ValidationError,
};

/// The names most apps need, for `use sync_facade::prelude::*`.
pub mod prelude {
    pub use crate::{
        ConflictResolver, EntityName, ErrorKind, JsonObject, LastWriteWins, LocalChange, LocalRecord,
        LocalWins, RecordId, RemoteWins, RetryPolicy, SyncOperation, SyncQueueItem, SyncStatus, Timestamp,
        ValidationError,
    };
}
