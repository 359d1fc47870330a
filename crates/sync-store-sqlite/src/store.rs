//! [`SqliteStore`]: opening, reads, and the [`SyncStore`] implementation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row};
use sync_core::RecordId;
use sync_core::model::check_payload_size;
use sync_core::pull::{PendingChange, PullBatch, PullCounts, PullState};
use sync_core::{
    AttemptTicket, BoxStream, DiscardOutcome, EntityName, FinishResult, FinishedAttempt, LocalChange,
    LocalRecord, QueueCounts, RecordKey, SavedChange, ServerCopy, StoreError, StoreErrorKind, StoreEvent,
    SyncQueueItem, SyncStore, Timestamp,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::diagnostics::Diagnostics;
use crate::error::{map_io, map_sqlx};
use crate::files::{acquire_lock, create_owner_only, tighten};
use crate::options::{Durability, SqliteStoreOptions};
use crate::pull_rows;
use crate::queries;
use crate::rows::{copy_from_row, item_from_row, record_from_row};
use crate::schema::{SCHEMA_VERSION, migrate};
use crate::writer::{Command, Rewrite, Statements, Writer};

/// Events a slow subscriber may fall behind before it is told
/// [`StoreEvent::Lagged`].
pub(crate) const EVENT_BUFFER: usize = 4096;
/// Commands that may wait for the writer before senders wait too.
const COMMAND_BUFFER: usize = 1024;

/// Local documents and the sync queue in one SQLite file.
///
/// - **Atomic saves.** Each save (or batch) writes the document and the
///   queue item in one transaction; saves waiting together share one
///   commit.
/// - **Compare-and-set attempts.** Outcomes apply only to the version they
///   were started for: a newer local change always survives.
/// - **One process at a time.** Opening takes an exclusive lock on
///   `<database>.lock`, held until the store is closed or dropped, so two
///   processes (or two engines) can never send the same item concurrently.
///   A second opener waits up to the busy timeout, then gets
///   [`StoreErrorKind::InUse`].
/// - **Durability.** WAL journal, `synchronous = FULL` by default: a save
///   that returned `Ok` survives an app crash, an OS crash and a power cut.
///   [`Durability::Normal`] survives an app crash only (see [`Durability`]).
/// - **Owner-only files.** On Unix the database and its `-wal`, `-shm` and
///   `.lock` files are created with mode 0600 whatever the umask, and an
///   existing database of ours is set back to 0600 when opened.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    pub(crate) readers: SqlitePool,
    events: broadcast::Sender<StoreEvent>,
    pub(crate) statements: Arc<Statements>,
    max_payload_bytes: usize,
    /// Real and tokio time at open: a read that times out while tokio's
    /// clock ran far ahead of the real one was tripped by a paused clock.
    opened_at: (Instant, tokio::time::Instant),
}

/// How long a read waits for a free read connection (sqlx's default).
const READ_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

impl SqliteStore {
    /// Opens (or creates) the database at `path` with default options.
    ///
    /// Cancel safety: as [`SqliteStore::open_with`].
    ///
    /// # Errors
    /// See [`SqliteStore::open_with`].
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with(SqliteStoreOptions::new(path)).await
    }

    /// Opens (or creates) `offline_sync.db` in the directory `dir`.
    ///
    /// Cancel safety: as [`SqliteStore::open_with`].
    ///
    /// # Errors
    /// See [`SqliteStore::open_with`].
    pub async fn open_in_dir(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteStoreOptions::in_dir(dir)).await
    }

    /// Opens (or creates) the database and applies pending migrations.
    ///
    /// # Errors
    /// - `Invalid`: an option is out of range;
    /// - `ReadOnly`: the directory is missing or not writable;
    /// - `InUse`: another process or engine has the database open;
    /// - `Corrupt`: the file is not a sync database or is damaged;
    /// - `SchemaTooNew`: a newer version of this library wrote the file.
    ///
    /// In every case the file is left as it was.
    ///
    /// Cancel safety: safe to drop, though not free of traces. Dropped
    /// mid-way, it leaves no open store and its lock goes with the future;
    /// a database file it was creating may stay behind, either empty or
    /// fully migrated (each migration is one transaction), which a later
    /// open accepts as it would its own.
    pub async fn open_with(options: SqliteStoreOptions) -> Result<Self, StoreError> {
        options.validate()?;
        let path = options.path.clone();
        let created = create_owner_only(&path)?;
        let result = Self::open_created(options).await;
        if created
            && result
                .as_ref()
                .is_err_and(|error| error.kind() != StoreErrorKind::InUse)
        {
            // A failed open of a new path leaves nothing behind.
            for suffix in ["", "-wal", "-shm", ".lock"] {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                let _ = std::fs::remove_file(name);
            }
        }
        result
    }

    async fn open_created(options: SqliteStoreOptions) -> Result<Self, StoreError> {
        // One lock per file, however it is spelled (links, relative paths).
        let path = std::fs::canonicalize(&options.path)
            .map_err(|error| map_io(error, &format!("resolving {}", options.path.display())))?;
        let lock = acquire_lock(&path, options.busy_timeout).await?;

        let base = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(false)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(false)
            .statement_cache_capacity(256)
            .disable_statement_logging();
        // `fullfsync` only matters on Apple systems, where a plain `fsync`
        // leaves the data in the drive's cache; SQLite ignores it elsewhere.
        let (synchronous, fullfsync) = match options.durability {
            Durability::Full => (SqliteSynchronous::Full, "ON"),
            Durability::Normal => (SqliteSynchronous::Normal, "OFF"),
        };
        let base = base.pragma("fullfsync", fullfsync);
        // WAL is switched on only after `migrate` has checked that the file
        // is ours: switching rewrites the header of whatever file it is.
        let mut writer_options = base.clone().synchronous(synchronous);
        if let Some(pages) = options.max_page_count {
            writer_options = writer_options.pragma("max_page_count", pages.to_string());
        }
        let mut connection = writer_options
            .connect()
            .await
            .map_err(|error| map_sqlx(error, &format!("opening {}", path.display())))?;
        let ready = match migrate(&mut connection, SCHEMA_VERSION).await {
            Ok(()) => match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
                .fetch_one(&mut connection)
                .await
            {
                Ok(mode) if mode.eq_ignore_ascii_case("wal") => Ok(()),
                // SQLite answers with the mode it kept when WAL is not
                // possible (some network filesystems): refuse rather than
                // run with weaker guarantees than documented.
                Ok(mode) => Err(StoreError::new(
                    StoreErrorKind::Other,
                    format!(
                        "the filesystem of {} does not support SQLite's WAL journal (it stayed {mode:?}): \
                         put the database on a local disk",
                        path.display()
                    ),
                )),
                Err(error) => Err(map_sqlx(error, "switching to the WAL journal")),
            },
            Err(error) => Err(error),
        };
        if let Err(error) = ready {
            let _ = connection.close().await;
            return Err(error);
        }
        // The file is ours (checked by `migrate`): its mode can be fixed.
        tighten(&path);
        let readers = SqlitePoolOptions::new()
            .max_connections(options.read_connections)
            .acquire_timeout(READ_ACQUIRE_TIMEOUT)
            .min_connections(0)
            .connect_lazy_with(base.synchronous(synchronous));

        let events = broadcast::channel(EVENT_BUFFER).0;
        let statements = Arc::new(Statements::default());
        let (sender, receiver) = mpsc::channel(COMMAND_BUFFER);
        let writer = Writer {
            connection,
            events: events.clone(),
            statements: Arc::clone(&statements),
            open_transaction: false,
            _lock: lock,
        };
        let task = tokio::spawn(writer.run(receiver));
        Ok(Self {
            path: options.path,
            commands: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(task)),
            readers,
            events,
            statements,
            max_payload_bytes: options.max_payload_bytes,
            opened_at: (Instant::now(), tokio::time::Instant::now()),
        })
    }

    /// A read's error. A pool timeout while tokio's clock has run ahead of
    /// the real one by more than the timeout is no busy pool: tokio's time
    /// is paused (a test with `start_paused`, or `time::advance`), and the
    /// acquire timeout fired as virtual time jumped.
    pub(crate) fn read_error(&self, error: sqlx::Error, context: &str) -> StoreError {
        let (real, virtual_time) = self.opened_at;
        let ahead = virtual_time.elapsed().saturating_sub(real.elapsed());
        if matches!(error, sqlx::Error::PoolTimedOut) && ahead >= READ_ACQUIRE_TIMEOUT / 2 {
            return StoreError::new(
                sync_core::StoreErrorKind::Busy,
                format!(
                    "{context}: tokio's clock is paused or advanced by hand ({ahead:?} ahead of real \
                     time), so the read pool's acquire timeout fired as virtual time jumped: use the \
                     in-memory store in paused-time tests (sync_facade::MemoryStore, feature \
                     memory-store), or real time"
                ),
            )
            .with_source(error);
        }
        map_sqlx(error, context)
    }

    /// The database file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQL statements executed so far (transaction control included): the
    /// store's main cost, for benchmarks.
    #[must_use]
    pub fn statement_count(&self) -> u64 {
        self.statements.get()
    }

    /// The settings in force on the writer connection.
    ///
    /// Cancel safety: cancel-safe (it only reads settings).
    ///
    /// # Errors
    /// `Closed` after [`SqliteStore::close`]; a mapped SQLite error otherwise.
    pub async fn diagnostics(&self) -> Result<Diagnostics, StoreError> {
        self.write(|reply| Command::Diagnostics { reply }).await
    }

    /// Finishes pending writes, closes every connection and releases the
    /// lock, so the database can be reopened at once. Later calls fail with
    /// [`StoreErrorKind::Closed`].
    ///
    /// Cancel safety: cancel-safe in effect, not in timing. The store stops
    /// taking calls at the first poll; dropped after that, the writer still
    /// finishes the pending writes in its own task and then releases the
    /// lock, but nobody waits for it, so an open right after may briefly
    /// get `InUse` (a second `close` does not wait for it either).
    pub async fn close(&self) {
        let sender = self.commands.lock().ok().and_then(|mut sender| sender.take());
        drop(sender);
        let task = self.writer.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        self.readers.close().await;
    }

    fn writer_stopped() -> StoreError {
        StoreError::new(
            StoreErrorKind::Closed,
            "the store's writer stopped before answering (closed, or a bug): open the store again",
        )
    }

    fn closed() -> StoreError {
        StoreError::new(StoreErrorKind::Closed, "the store was closed: open it again")
    }

    /// Sends a command to the writer and waits for its answer.
    async fn write<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let sender = self
            .commands
            .lock()
            .ok()
            .and_then(|sender| sender.clone())
            .ok_or_else(Self::closed)?;
        let (reply, answer) = oneshot::channel();
        sender.send(command(reply)).await.map_err(|_| Self::closed())?;
        // Not held while waiting: `close` must be able to end the writer
        // even if this future is never polled again.
        drop(sender);
        answer.await.map_err(|_| Self::writer_stopped())?
    }

    fn check_sizes<'a>(&self, changes: impl IntoIterator<Item = &'a LocalChange>) -> Result<(), StoreError> {
        for change in changes {
            check_payload_size(&change.payload, self.max_payload_bytes)?;
        }
        Ok(())
    }
}

#[async_trait]
impl SyncStore for SqliteStore {
    async fn save(&self, change: LocalChange, now: Timestamp) -> Result<SavedChange, StoreError> {
        self.check_sizes([&change])?;
        let mut saved = self
            .write(|reply| Command::Save {
                changes: vec![change],
                now,
                reply,
            })
            .await?;
        saved.pop().ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Other,
                "a save returned no result: please report this bug",
            )
        })
    }

    async fn save_batch(
        &self,
        changes: Vec<LocalChange>,
        now: Timestamp,
    ) -> Result<Vec<SavedChange>, StoreError> {
        self.check_sizes(&changes)?;
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|reply| Command::Save { changes, now, reply }).await
    }

    async fn resolve_id(&self, key: &RecordKey) -> Result<RecordId, StoreError> {
        Ok(self
            .renamed(key)
            .await?
            .map_or_else(|| key.id.clone(), |key| key.id))
    }

    async fn record(&self, key: &RecordKey) -> Result<Option<LocalRecord>, StoreError> {
        self.statements.add(1);
        let query = if key.id.is_temporary() {
            queries::RECORD_BY_TEMPORARY_ID
        } else {
            queries::RECORD
        };
        let row = sqlx::query(query)
            .bind(key.entity.as_str())
            .bind(key.id.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "reading a record"))?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn records(&self, entity: &EntityName) -> Result<Vec<LocalRecord>, StoreError> {
        self.statements.add(1);
        let rows = sqlx::query(queries::RECORDS_OF_ENTITY)
            .bind(entity.as_str())
            .fetch_all(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "reading records"))?;
        rows.iter().map(record_from_row).collect()
    }

    async fn queue_item(&self, key: &RecordKey) -> Result<Option<SyncQueueItem>, StoreError> {
        self.statements.add(1);
        let query = if key.id.is_temporary() {
            queries::QUEUE_ITEM_BY_TEMPORARY_ID
        } else {
            queries::QUEUE_ITEM
        };
        let row = sqlx::query(query)
            .bind(key.entity.as_str())
            .bind(key.id.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "reading a queue item"))?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn queued_child_deletes(
        &self,
        entity: &EntityName,
        field: &str,
        parent: &RecordId,
    ) -> Result<Vec<SyncQueueItem>, StoreError> {
        self.child_deletes(entity, field, parent).await
    }

    async fn queue(&self) -> Result<Vec<SyncQueueItem>, StoreError> {
        self.statements.add(1);
        let rows = sqlx::query(queries::QUEUE)
            .fetch_all(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "reading the queue"))?;
        rows.iter().map(item_from_row).collect()
    }

    async fn counts(&self) -> Result<QueueCounts, StoreError> {
        self.statements.add(1);
        let rows = sqlx::query(queries::COUNTS)
            .fetch_all(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "counting the queue"))?;
        let mut counts = QueueCounts::default();
        for row in rows {
            let status: String = row
                .try_get("status")
                .map_err(|e| map_sqlx(e, "counting the queue"))?;
            let n: i64 = row.try_get("n").map_err(|e| map_sqlx(e, "counting the queue"))?;
            let n = u64::try_from(n).unwrap_or(0);
            match status.as_str() {
                "pending" => counts.pending = n,
                "syncing" => counts.syncing = n,
                "synced" => counts.synced = n,
                "failed" => counts.failed = n,
                other => return Err(crate::error::corrupt_row("queue status", other)),
            }
        }
        Ok(counts)
    }

    async fn claim_ready(&self, now: Timestamp, limit: usize) -> Result<Vec<AttemptTicket>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.write(|reply| Command::Claim { now, limit, reply }).await
    }

    async fn server_copy(&self, key: &RecordKey) -> Result<Option<ServerCopy>, StoreError> {
        self.statements.add(1);
        let row = sqlx::query(queries::SERVER_COPY)
            .bind(key.entity.as_str())
            .bind(key.id.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "reading a server copy"))?;
        row.map(|row| copy_from_row(&row).map(|(_, copy)| copy))
            .transpose()
    }

    async fn next_attempt_time(&self) -> Result<Option<Timestamp>, StoreError> {
        self.statements.add(1);
        let earliest: Option<i64> = sqlx::query_scalar(queries::NEXT_ATTEMPT_TIME)
            .fetch_one(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "reading the next attempt time"))?;
        Ok(earliest.map(Timestamp::from_millis))
    }

    async fn finish_attempts(
        &self,
        finished: Vec<FinishedAttempt>,
        now: Timestamp,
    ) -> Result<Vec<FinishResult>, StoreError> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|reply| Command::Finish { finished, now, reply }).await
    }

    async fn recover_interrupted(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write(|reply| Command::Rewrite {
            rewrite: Rewrite::RecoverInterrupted,
            now,
            reply,
        })
        .await
    }

    async fn rebase_timers(&self, now: Timestamp, policy: sync_core::RetryPolicy) -> Result<u64, StoreError> {
        self.write(|reply| Command::Rewrite {
            rewrite: Rewrite::RebaseTimers(policy),
            now,
            reply,
        })
        .await
    }

    async fn rearm_failed(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write(|reply| Command::Rewrite {
            rewrite: Rewrite::RearmFailed,
            now,
            reply,
        })
        .await
    }

    async fn retry(&self, key: &RecordKey, now: Timestamp) -> Result<bool, StoreError> {
        let rewrite = Rewrite::RetryOne(key.clone());
        let count = self
            .write(|reply| Command::Rewrite { rewrite, now, reply })
            .await?;
        Ok(count > 0)
    }

    async fn retry_failed(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write(|reply| Command::Rewrite {
            rewrite: Rewrite::RetryFailed,
            now,
            reply,
        })
        .await
    }

    async fn clear_synced(&self) -> Result<u64, StoreError> {
        self.write(|reply| Command::ClearSynced { reply }).await
    }

    async fn discard(
        &self,
        key: &RecordKey,
        revert: bool,
        now: Timestamp,
    ) -> Result<DiscardOutcome, StoreError> {
        let key = key.clone();
        self.write(|reply| Command::Discard {
            key,
            revert,
            now,
            reply,
        })
        .await
    }

    async fn pull_state(&self, entity: &EntityName) -> Result<PullState, StoreError> {
        self.statements.add(1);
        let row = sqlx::query(queries::PULL_STATE)
            .bind(entity.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "reading a pull state"))?;
        row.as_ref()
            .map(pull_rows::state_from_row)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn pending_changes(
        &self,
        entity: &EntityName,
        ids: &[RecordId],
    ) -> Result<Vec<PendingChange>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One snapshot for both reads; rolled back if dropped half-way.
        self.statements.add(2);
        let mut transaction = self
            .readers
            .begin()
            .await
            .map_err(|error| self.read_error(error, "reading pending changes"))?;
        let found = crate::pull::pending_changes(&mut transaction, entity, ids, &self.statements).await?;
        transaction
            .commit()
            .await
            .map_err(|error| map_sqlx(error, "reading pending changes"))?;
        Ok(found)
    }

    async fn apply_pull(&self, batch: PullBatch, now: Timestamp) -> Result<PullCounts, StoreError> {
        batch.check_sizes(self.max_payload_bytes)?;
        self.write(|reply| Command::ApplyPull { batch, now, reply }).await
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    fn subscribe(&self) -> BoxStream<StoreEvent> {
        let stream = BroadcastStream::new(self.events.subscribe()).map(|event| match event {
            Ok(event) => event,
            Err(BroadcastStreamRecvError::Lagged(_)) => StoreEvent::Lagged,
        });
        Box::pin(stream)
    }
}
