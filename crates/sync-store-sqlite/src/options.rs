//! How a store is opened: path, durability, timeouts, limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sync_core::{DEFAULT_MAX_PAYLOAD_BYTES, StoreError, StoreErrorKind};

use crate::store::SqliteStore;

/// The database file name used by [`SqliteStoreOptions::in_dir`].
pub const DEFAULT_FILE_NAME: &str = "offline_sync.db";

/// How hard a commit works to survive a power cut.
///
/// The journal is always WAL. Both levels survive a crash of the app
/// process (a panic, a kill, the OS ending the app): a save that returned
/// `Ok` is in the database after a restart, and the file is never
/// corrupted. They differ only when the whole system stops at once: an OS
/// crash, a battery that dies, a pulled plug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: the WAL is flushed to the device (`fsync`, and
    /// `F_FULLFSYNC` on Apple systems, where a plain `fsync` leaves the
    /// data in the drive's cache) before a save returns, so every save that
    /// returned `Ok` survives an OS crash or a power cut too, on storage
    /// that honours flushes. The default.
    ///
    /// Each commit waits for one flush. Saves that wait together share a
    /// commit (group commit), so many concurrent savers pay about one flush
    /// per group rather than one each; `cargo xtask bench store` reports
    /// both levels side by side.
    #[default]
    Full,
    /// `synchronous = NORMAL`: commits do not wait for the device; the WAL
    /// is flushed only when it is checkpointed into the database (about
    /// every 4 MiB of writes). Survives a crash of the app exactly as
    /// [`Durability::Full`] does, but an OS crash or a power cut may lose
    /// the commits since the last checkpoint, saves that had already
    /// returned `Ok` (the file stays consistent: they are lost whole, never
    /// half-written). Faster per commit; choose it only when losing the
    /// most recent saves to a power cut is acceptable.
    Normal,
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
            durability: Durability::Full,
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

    /// Commit durability. Default [`Durability::Full`]: every save that
    /// returned `Ok` survives a power cut; [`Durability::Normal`] trades
    /// that for faster commits (see [`Durability`]).
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
    /// Cancel safety: as [`SqliteStore::open_with`].
    ///
    /// # Errors
    /// See [`SqliteStore::open_with`].
    pub async fn open(self) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(self).await
    }
}
