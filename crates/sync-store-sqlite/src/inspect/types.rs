//! The typed rows an [`super::Inspection`] returns.

use sync_core::{LocalRecord, ServerCopy, SyncQueueItem, SyncStatus, Timestamp};

/// Which queue items [`super::Inspection::queue`] returns. The default
/// returns them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueFilter {
    /// Only failed items (parked ones included).
    pub failed: bool,
    /// Only parked items: failed after a permanent error, waiting for a new
    /// local change or a retry. With `failed` too, every failed item.
    pub parked: bool,
    /// Only items of this entity.
    pub entity: Option<String>,
}

impl QueueFilter {
    /// Every item.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// Only failed items (parked ones included) when `failed`.
    #[must_use]
    pub fn failed(mut self, failed: bool) -> Self {
        self.failed = failed;
        self
    }

    /// Only parked items when `parked`.
    #[must_use]
    pub fn parked(mut self, parked: bool) -> Self {
        self.parked = parked;
        self
    }

    /// Only items of `entity`, when given.
    #[must_use]
    pub fn entity(mut self, entity: Option<String>) -> Self {
        self.entity = entity;
        self
    }
}

/// One entity's documents and queue items by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntityStatus {
    /// The entity (collection) name.
    pub entity: String,
    /// Local documents.
    pub records: u64,
    /// Queue items waiting to be sent.
    pub pending: u64,
    /// Queue items being sent (an attempt is out, or was when the app stopped).
    pub syncing: u64,
    /// Queue items the server accepted, not yet cleared.
    pub synced: u64,
    /// Queue items whose last attempt failed (parked ones included).
    pub failed: u64,
    /// Failed items parked after a permanent error.
    pub parked: u64,
}

/// The oldest queue item not yet synced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OldestItem {
    /// Its entity.
    pub entity: String,
    /// Its record's id.
    pub id: String,
    /// Its status.
    pub status: SyncStatus,
    /// When it entered the queue.
    pub created_at: Timestamp,
}

/// One entity's pull state (table `pull_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullCursorRow {
    /// The entity pulled.
    pub entity: String,
    /// The server's cursor as issued; `None`: the next pull starts from the
    /// beginning.
    pub cursor: Option<String>,
    /// The latest full listing's generation (0: none yet).
    pub generation: i64,
    /// The full listing in progress, if one is.
    pub listing_generation: Option<i64>,
    /// When that listing started.
    pub listing_started_at: Option<Timestamp>,
}

/// A summary of a database: what [`super::Inspection::status`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// `PRAGMA user_version`.
    pub schema_version: i64,
    /// The database file's size in bytes.
    pub database_bytes: u64,
    /// The `-wal` file's size in bytes (0 when there is none).
    pub wal_bytes: u64,
    /// Per entity with documents or queue items, by name.
    pub entities: Vec<EntityStatus>,
    /// The sums over every entity (`entity` is empty).
    pub total: EntityStatus,
    /// The oldest item not yet synced (pending, syncing or failed).
    pub oldest_unsynced: Option<OldestItem>,
    /// Failed items parked after a permanent error, over every entity.
    pub parked: u64,
    /// Items with an attempt out (or left out by a stopped app).
    pub in_flight: u64,
    /// Each pulled entity's cursor, by name; empty when nothing was pulled
    /// (or the schema predates pulls).
    pub pull_cursors: Vec<PullCursorRow>,
}

/// Everything known about one record: what
/// [`super::Inspection::record_detail`] returns.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecordDetail {
    /// The local document, if there is one (a deleted record has none).
    pub record: Option<LocalRecord>,
    /// The record's queue item, if there is one; it holds the last error.
    pub item: Option<SyncQueueItem>,
    /// The copy the server last confirmed, with its version, if known.
    pub server_copy: Option<ServerCopy>,
}

/// One line of an export: a document or a queue item.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportLine {
    /// A local document.
    Record(LocalRecord),
    /// A queue item.
    Item(SyncQueueItem),
}
