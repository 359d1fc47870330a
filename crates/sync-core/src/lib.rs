//! The pure core of the offline sync engine.
//!
//! This crate holds what every layer agrees on, and does no I/O:
//! - the models ([`SyncQueueItem`], [`LocalRecord`], [`SyncOperation`],
//!   [`SyncStatus`]) and validated names ([`EntityName`], [`RecordId`]);
//! - the queue-coalescing state machine ([`coalesce`]) and the attempt
//!   transitions ([`attempt`]), as pure functions: facts in, decisions out;
//! - conflict resolvers ([`conflict`]) and the retry policy ([`retry`]);
//! - the seams between layers ([`SyncApiAdapter`], [`SyncStore`],
//!   [`ConnectivityMonitor`]) and the errors they return;
//! - snapshots kept current from store events ([`snapshot`]), so watchers
//!   never re-read the whole queue per change.
//!
//! The rule everything here serves: **after the queue drains, the server
//! holds exactly the last local state**, whatever earlier attempts did or
//! did not reach it.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod answer;
pub mod attempt;
pub mod clock;
pub mod coalesce;
pub mod conflict;
pub mod depends;
pub mod discard;
pub mod error;
pub mod ids;
pub mod model;
pub mod pull;
pub mod rename;
pub mod retry;
pub mod seams;
pub mod snapshot;

pub use attempt::{AttemptOutcome, AttemptTicket, CopyWrite, SendPlan};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use conflict::{ConflictResolver, FnResolver, LastWriteWins, LocalWins, MergeFields, RemoteWins};
pub use discard::{DiscardOutcome, DiscardRefusal};
pub use error::{ApiError, Error, ErrorKind, ResolveError, StoreError, StoreErrorKind, ValidationError};
pub use ids::{AttemptId, EntityName, MAX_NAME_BYTES, OperationId, RecordId, RecordKey};
pub use model::{
    DEFAULT_MAX_PAYLOAD_BYTES, JsonObject, LocalChange, LocalRecord, ServerCopy, SyncOperation,
    SyncQueueItem, SyncStatus,
};
pub use pull::{PullAnswer, PullCounts, PullCursor, PullPage, PullState, PulledChange};
pub use retry::{Backoff, RetryPolicy, RetrySchedule};
pub use seams::{
    BoxStream, ConnectivityMonitor, CreatedLookup, FinishResult, FinishedAttempt, PullRequest, PullSource,
    QueueCounts, SavedChange, StoreEvent, SyncApiAdapter, SyncStore, WriteAnswer, WriteKind, WriteRequest,
};
