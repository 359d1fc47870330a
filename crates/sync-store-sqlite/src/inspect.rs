//! Read-only inspection of a sync database, for support tools such as the
//! `offline-sync` inspector.
//!
//! [`Inspection::open`] reads a database file without ever changing it: the
//! connection is opened read-only, no lock file is taken, no migration runs
//! and no file is created. It works on a copied file and beside a running
//! app (as one more WAL reader, which never blocks the app's writer).
//!
//! The file is checked before anything is read: a missing file, a file that
//! is not a SQLite database, a SQLite database of another application and a
//! schema newer than this build knows are refused with a [`StoreError`]
//! saying what is wrong and what to do.
//!
//! ```no_run
//! # async fn example() -> Result<(), sync_core::StoreError> {
//! use sync_store_sqlite::inspect::{Inspection, QueueFilter};
//!
//! let mut inspection = Inspection::open("/tmp/copy-of-offline_sync.db").await?;
//! let status = inspection.status().await?;
//! println!("{} parked", status.parked);
//! for item in inspection.queue(&QueueFilter::default()).await? {
//!     println!("{}/{}: {}", item.entity, item.id, item.status);
//! }
//! inspection.close().await;
//! # Ok(()) }
//! ```

mod check;
mod reads;
mod types;

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use sync_core::StoreError;

use crate::error::map_sqlx;

pub use types::{EntityStatus, ExportLine, OldestItem, PullCursorRow, QueueFilter, RecordDetail, Status};

/// How the file being inspected is laid out: what its schema version has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// `PRAGMA user_version`.
    pub(crate) version: i64,
    /// Whether the queue has `last_error_http_status` (version 4).
    pub(crate) http_status: bool,
    /// Whether `server_copies` exists (version 5).
    pub(crate) server_copies: bool,
    /// Whether `pull_state` exists (version 6).
    pub(crate) pull_state: bool,
    /// Whether `id_aliases` exists (version 7).
    pub(crate) aliases: bool,
}

/// A read-only view of one sync database file.
///
/// Holds one read-only connection; nothing it does writes to the file, its
/// `-wal` or its lock file, so it never disturbs an app that has the
/// database open. Each read is one statement (one snapshot).
#[derive(Debug)]
pub struct Inspection {
    path: PathBuf,
    connection: SqliteConnection,
    layout: Layout,
}

impl Inspection {
    /// Opens the database at `path` for reading.
    ///
    /// Cancel safety: cancel-safe (nothing is written; a dropped open
    /// closes its connection).
    ///
    /// # Errors
    /// - `Invalid`: the file does not exist, or is a directory;
    /// - `Corrupt`: the file is not a SQLite database, is damaged, or is a
    ///   SQLite database that is not a sync database (another
    ///   application's, or one without the `records` and `queue` tables);
    /// - `SchemaTooNew`: a newer version of the library wrote the file;
    /// - `ReadOnly`: the file cannot be read.
    ///
    /// In every case the file is left as it was.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        check::check_file(&path)?;
        // Without a `-wal` file the database file holds every commit, and
        // no app has it open (an open store always has its `-wal`): it is
        // read as immutable, so SQLite creates no `-wal` or `-shm` beside it
        // and takes no lock. With one, it is read as a WAL reader, as the
        // app's own readers do.
        let immutable = !check::companion(&path, "-wal").exists();
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true)
            .immutable(immutable)
            .create_if_missing(false)
            .foreign_keys(false)
            .statement_cache_capacity(32)
            .disable_statement_logging();
        let mut connection = options
            .connect()
            .await
            .map_err(|error| check::explain(map_sqlx(error, "opening the file"), &path))?;
        match check::layout(&mut connection, &path).await {
            Ok(layout) => Ok(Self {
                path,
                connection,
                layout,
            }),
            Err(error) => {
                let _ = connection.close().await;
                Err(error)
            }
        }
    }

    /// The inspected file's path, as given.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's schema version (`PRAGMA user_version`); at most
    /// [`crate::SCHEMA_VERSION`].
    #[must_use]
    pub fn schema_version(&self) -> i64 {
        self.layout.version
    }

    /// Closes the connection. Dropping the inspection closes it too, without
    /// waiting.
    ///
    /// Cancel safety: cancel-safe (dropped, the connection closes on drop).
    pub async fn close(self) {
        let _ = self.connection.close().await;
    }

    /// Wraps a read's error with the file's path and what to do.
    fn read_error(&self, error: sqlx::Error, context: &str) -> StoreError {
        check::explain(map_sqlx(error, context), &self.path)
    }
}
