//! [`Task`]: the example's record type, read and written through the
//! engine's typed collection ([`sync_facade::OfflineSyncEngine::collection`]).

use serde::{Deserialize, Serialize};

/// One task, as stored locally and on the server. The collection reads
/// each record's id from [`Task::id`]; a stored document that does not
/// deserialize into `Task` is listed apart (see
/// [`sync_facade::TypedRecords::unreadable`]), never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The record id (`t1`, `t-1a2b3c4d`, …).
    pub id: String,
    /// The title.
    pub title: String,
    /// Whether it is done.
    pub done: bool,
}
