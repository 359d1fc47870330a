//! The orchestration layer: local-first saves, sync passes, per-item
//! retries, watch streams and auto-sync, on tokio, over the seams of
//! [`sync_core`] (any store, adapter and connectivity monitor).
//!
//! - **Local first.** [`OfflineSyncEngine::save`] writes the document and
//!   the queue item in one transaction before any network call.
//! - **No item stuck behind another.** Each item has its own retry timer;
//!   a failing item never delays healthy ones, while changes to one record
//!   always reach the server in order.
//! - **No duplicates, no lost updates.** A create that may already have
//!   reached the server is checked before it is posted again; an attempt's
//!   outcome never overwrites a newer local change.
//! - **Observable.** Streams of records, the queue, one item's status and
//!   connectivity, each starting with the current value.
//!
//! Logs go through `tracing` (a span per pass and per item); payloads and
//! credentials are never logged.
#![deny(missing_docs)]

mod auto_sync;
mod builder;
mod clock;
mod collection;
mod engine;
mod error;
mod events;
mod ids;
mod lease;
mod link;
mod manager;
mod observe;
mod options;
mod order;
mod pass;
mod pull;
mod relay;
mod send;
mod sends;
mod shared;
mod watch;

pub use builder::OfflineSyncEngineBuilder;
pub use clock::TokioClock;
pub use collection::{Collection, TypedRecords, Unreadable};
pub use engine::OfflineSyncEngine;
pub use error::SyncError;
pub use events::{AttemptEvent, AttemptResult, SyncEvent};
pub use ids::Created;
pub use manager::{BackgroundSyncScheduler, SyncManager, SyncReport};
pub use observe::{ChangeOutcome, SyncStats};
pub use options::OfflineSyncOptions;
pub use pull::PullProgress;
