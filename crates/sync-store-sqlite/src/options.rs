//! How a store is opened: path, durability, timeouts, limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sync_core::{DEFAULT_MAX_PAYLOAD_BYTES, StoreError, StoreErrorKind};

use crate::store::SqliteStore;

/// The database file name used by [`SqliteStoreOptions::in_dir`].
pub const DEFAULT_FILE_NAME: &str = "offline_sync.db";

/// How hard a commit works to survive a power cut.
///
/// Both levels survive a crash of the app process: a save that returned
/// `Ok` is in the database after a restart. They differ only when the
/// operating system or the power fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = NORMAL` in WAL mode: commits are fast (no fsync per
    /// commit); a power cut may lose the last few commits, never corrupt
    /// the file. The default, and what most apps want.
    #[default]
    Normal,
    /// `synchronous = FULL`: every commit is flushed to the device before
    /// the save returns, so it survives a power cut too. Several times
    /// slower per commit on most storage.
    Full,
}

/// Options for opening a [`SqliteStore`]; every setting has a default.
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteStoreOptions {
    pub(crate) path: PathBuf,
    pub(crate) durability: Durability,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_payload_bytes: usize,
    pub(crate) max_page_count: Option<u32>,
    pub(crate) read_connections: u32,
}

impl SqliteStoreOptions {
    /// Options for the database file at `path` (created if missing).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            durability: Durability::Normal,
            busy_timeout: Duration::from_secs(5),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_page_count: None,
            read_connections: 2,
        }
    }

    /// Options for `offline_sync.db` inside the directory `dir`.
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        Self::new(dir.as_ref().join(DEFAULT_FILE_NAME))
    }

    /// Commit durability. Default [`Durability::Normal`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long to wait for a lock held by another connection or process,
    /// at open and for each write. Default 5 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The largest payload accepted, as compact JSON bytes. Default 1 MiB.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Caps the database size at this many pages (4 KiB each): writes past
    /// it fail with [`StoreErrorKind::Full`] and change nothing. Default:
    /// no cap.
    pub fn max_page_count(mut self, pages: u32) -> Self {
        self.max_page_count = Some(pages);
        self
    }

    /// Connections kept for reads, which run beside the single writer.
    /// Default 2.
    pub fn read_connections(mut self, connections: u32) -> Self {
        self.read_connections = connections;
        self
    }

    /// The database file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let invalid = |message: &str| Err(StoreError::new(StoreErrorKind::Invalid, message));
        if self.read_connections == 0 {
            return invalid("read_connections must be at least 1");
        }
        if self.max_payload_bytes == 0 {
            return invalid("max_payload_bytes must be at least 1");
        }
        if self.max_page_count == Some(0) {
            return invalid("max_page_count must be at least 1 when set");
        }
        if self.path.as_os_str().is_empty() {
            return invalid("the database path is empty: pass a file path or use SqliteStoreOptions::in_dir");
        }
        Ok(())
    }

    /// Opens (or creates) the database and applies pending migrations.
    ///
    /// # Errors
    /// See [`SqliteStore::open_with`].
    pub async fn open(self) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(self).await
    }
}
