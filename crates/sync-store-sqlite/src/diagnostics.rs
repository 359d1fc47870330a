//! What is in force on the writer connection, read back for checks.

use sync_core::StoreError;

use crate::error::map_sqlx;
use crate::writer::Writer;

/// Settings read back from the writer connection, to check what is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnostics {
    /// `PRAGMA journal_mode`: `"wal"`.
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 1 for NORMAL, 2 for FULL.
    pub synchronous: i64,
    /// `PRAGMA fullfsync`: 1 when commits flush with `F_FULLFSYNC` (Apple
    /// systems only; set with [`crate::Durability::Full`] everywhere).
    pub fullfsync: i64,
    /// `PRAGMA user_version`: the schema version.
    pub schema_version: i64,
    /// `PRAGMA max_page_count`.
    pub max_page_count: i64,
}

impl Writer {
    /// Reads the settings in force.
    pub(crate) async fn diagnostics(&mut self) -> Result<Diagnostics, StoreError> {
        let read = |error| map_sqlx(error, "reading settings");
        let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut self.connection)
            .await
            .map_err(read)?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut self.connection)
            .await
            .map_err(read)?;
        let fullfsync: i64 = sqlx::query_scalar("PRAGMA fullfsync")
            .fetch_one(&mut self.connection)
            .await
            .map_err(read)?;
        let schema_version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut self.connection)
            .await
            .map_err(read)?;
        let max_page_count: i64 = sqlx::query_scalar("PRAGMA max_page_count")
            .fetch_one(&mut self.connection)
            .await
            .map_err(read)?;
        self.statements.add(5);
        Ok(Diagnostics {
            journal_mode,
            synchronous,
            fullfsync,
            schema_version,
            max_page_count,
        })
    }
}
