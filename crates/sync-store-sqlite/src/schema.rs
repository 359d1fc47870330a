//! Versioned schema migrations, embedded in the binary and applied on open.
//!
//! The schema version lives in SQLite's `user_version` header field and is
//! changed in the same transaction as the migration, so a crash mid-upgrade
//! leaves the previous version intact. `application_id` marks the file as
//! ours, so a foreign SQLite file is refused rather than modified.

use sqlx::SqliteConnection;
use sync_core::{StoreError, StoreErrorKind};

use crate::error::map_sqlx;

/// `application_id` of every database this crate writes ("OSYN").
pub(crate) const APPLICATION_ID: i64 = 0x4F53_594E;

/// One migration: the SQL that takes the schema from `version - 1` to `version`.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) sql: &'static str,
}

/// Every migration, in order. Append only: never edit a shipped one.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/0001_tables.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/0002_scan_indexes.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/0003_records_rowid.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/0004_queue_http_status.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/0005_server_copies.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../migrations/0006_pull.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../migrations/0007_id_aliases.sql"),
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 7;

async fn pragma_value(connection: &mut SqliteConnection, pragma: &'static str) -> Result<i64, StoreError> {
    sqlx::query_scalar::<_, i64>(pragma)
        .fetch_one(connection)
        .await
        .map_err(|error| map_sqlx(error, "reading the schema version"))
}

/// Brings the database to `target` (at most [`SCHEMA_VERSION`]) in one
/// transaction.
///
/// # Errors
/// `SchemaTooNew` when the file was written by a newer build; `Corrupt`
/// when it belongs to another application; any SQLite failure, mapped.
pub(crate) async fn migrate(connection: &mut SqliteConnection, target: i64) -> Result<(), StoreError> {
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut *connection)
        .await
        .map_err(|error| map_sqlx(error, "starting the schema migration"))?;
    let result = migrate_in_transaction(connection, target).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = sqlx::raw_sql(end)
        .execute(&mut *connection)
        .await
        .map_err(|error| map_sqlx(error, "finishing the schema migration"));
    result.and(ended.map(|_| ()))
}

async fn migrate_in_transaction(connection: &mut SqliteConnection, target: i64) -> Result<(), StoreError> {
    let application_id = pragma_value(connection, "PRAGMA application_id").await?;
    let current = pragma_value(connection, "PRAGMA user_version").await?;
    if application_id != 0 && application_id != APPLICATION_ID {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "the file is a SQLite database of another application (application_id {application_id:#x}): \
                 choose another path for the sync database"
            ),
        ));
    }
    let foreign_tables = if application_id == 0 && current == 0 {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sqlite_schema")
            .fetch_one(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "reading the schema"))?
    } else {
        0
    };
    if application_id == 0 && (current != 0 || foreign_tables != 0) {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            "the file is a SQLite database that this library did not create: choose another path for the sync database",
        ));
    }
    if current > SCHEMA_VERSION {
        return Err(StoreError::new(
            StoreErrorKind::SchemaTooNew,
            format!(
                "the database has schema version {current}, written by a newer version of this library \
                 (this one knows up to {SCHEMA_VERSION}): upgrade the app; the file was left untouched"
            ),
        ));
    }
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= target)
    {
        sqlx::raw_sql(migration.sql)
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "applying a schema migration"))?;
        // PRAGMA takes no bound parameters; both values are our own integers.
        let stamp = format!(
            "PRAGMA user_version = {}; PRAGMA application_id = {APPLICATION_ID}",
            migration.version
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(stamp))
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "recording the schema version"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::{Connection, SqliteConnection};

    use super::*;

    /// Version 6 upgrades to 7 with no alias: every record keeps its id.
    #[tokio::test]
    async fn version_6_upgrades_to_7_with_no_alias() {
        let mut connection = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        migrate(&mut connection, 6).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO records (entity, id, data, created_at, updated_at) \
             VALUES ('notes', '1', '{\"text\":\"x\"}', 1, 2)",
        )
        .execute(&mut connection)
        .await
        .unwrap();
        migrate(&mut connection, SCHEMA_VERSION).await.unwrap();
        assert_eq!(
            pragma_value(&mut connection, "PRAGMA user_version")
                .await
                .unwrap(),
            7
        );
        let kept: (String, i64) = sqlx::query_as("SELECT id, (SELECT COUNT(*) FROM id_aliases) FROM records")
            .fetch_one(&mut connection)
            .await
            .unwrap();
        assert_eq!(kept, ("1".to_owned(), 0));
    }

    /// Version 5 upgrades to 6 with no pull state and no listing marks:
    /// documents, copies and the queue are kept; a half-stored listing is
    /// refused.
    #[tokio::test]
    async fn version_5_upgrades_to_6_with_nothing_pulled_yet() {
        let mut connection = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        migrate(&mut connection, 5).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO records (entity, id, data, created_at, updated_at) \
             VALUES ('notes', '1', '{\"text\":\"x\"}', 1, 2); \
             INSERT INTO server_copies (entity, id, data, version) VALUES ('notes', '1', '{\"text\":\"x\"}', 'v1')",
        )
        .execute(&mut connection)
        .await
        .unwrap();
        migrate(&mut connection, 6).await.unwrap();
        assert_eq!(
            pragma_value(&mut connection, "PRAGMA user_version")
                .await
                .unwrap(),
            6
        );
        let kept: (String, Option<i64>, i64, i64) = sqlx::query_as(
            "SELECT data, pulled_in, (SELECT COUNT(*) FROM server_copies), (SELECT COUNT(*) FROM pull_state) \
             FROM records",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        assert_eq!(kept, ("{\"text\":\"x\"}".to_owned(), None, 1, 0));
        let half = sqlx::raw_sql(
            "INSERT INTO pull_state (entity, cursor, generation, listing_generation, listing_started_at) \
             VALUES ('notes', NULL, 1, 1, NULL)",
        )
        .execute(&mut connection)
        .await;
        assert!(half.is_err(), "{half:?}");
    }

    /// Version 4 upgrades to 5 with an empty table of server copies; the
    /// queue and the records are untouched.
    #[tokio::test]
    async fn version_4_upgrades_to_5_with_no_server_copy() {
        let mut connection = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        migrate(&mut connection, 4).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO records (entity, id, data, created_at, updated_at) \
             VALUES ('notes', '1', '{\"text\":\"x\"}', 1, 2)",
        )
        .execute(&mut connection)
        .await
        .unwrap();
        migrate(&mut connection, 5).await.unwrap();
        assert_eq!(
            pragma_value(&mut connection, "PRAGMA user_version")
                .await
                .unwrap(),
            5
        );
        let counts: (i64, i64) =
            sqlx::query_as("SELECT (SELECT COUNT(*) FROM records), (SELECT COUNT(*) FROM server_copies)")
                .fetch_one(&mut connection)
                .await
                .unwrap();
        assert_eq!(counts, (1, 0));
    }

    /// A database at version 3 with a failed item upgrades to 4 with every
    /// column kept and no HTTP status invented for the old failure; new
    /// rows take one.
    #[tokio::test]
    async fn version_3_upgrades_to_4_keeping_every_item() {
        let mut connection = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        migrate(&mut connection, 3).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO queue (entity, id, operation, payload, status, retry_count, created_at, updated_at, \
             last_error, last_error_kind, version, operation_id, possibly_applied, in_flight, next_attempt_at, \
             not_before) VALUES ('notes', '1', 'update', '{\"text\":\"x\"}', 'failed', 2, 4000, 4500, \
             'HTTP 403', 'permanent', 3, 'op-3', 0, NULL, NULL, NULL)",
        )
        .execute(&mut connection)
        .await
        .unwrap();
        migrate(&mut connection, 4).await.unwrap();
        assert_eq!(
            pragma_value(&mut connection, "PRAGMA user_version")
                .await
                .unwrap(),
            4
        );
        let row = sqlx::query(crate::queries::QUEUE)
            .fetch_one(&mut connection)
            .await
            .unwrap();
        let item = crate::rows::item_from_row(&row).unwrap();
        assert_eq!(
            (
                item.last_error.as_deref(),
                item.last_error_kind,
                item.last_error_http_status,
                item.retry_count,
                item.version
            ),
            (
                Some("HTTP 403"),
                Some(sync_core::ErrorKind::Permanent),
                None,
                2,
                3
            )
        );
        // The column takes a status and refuses what no u16 holds.
        sqlx::raw_sql("UPDATE queue SET last_error_http_status = 403")
            .execute(&mut connection)
            .await
            .unwrap();
        let out_of_range = sqlx::raw_sql("UPDATE queue SET last_error_http_status = 70000")
            .execute(&mut connection)
            .await;
        assert!(out_of_range.is_err(), "{out_of_range:?}");
    }
}
