//! The inspection's reads: status, the queue, one record, the export.
//! Each multi-statement read runs in one read transaction (one snapshot).

use std::path::Path;

use sqlx::{AssertSqlSafe, Connection, Row};
use sync_core::{RecordKey, StoreError, StoreErrorKind, SyncStatus, Timestamp};
use tokio_stream::StreamExt;

use super::types::{EntityStatus, ExportLine, OldestItem, PullCursorRow, QueueFilter, RecordDetail, Status};
use super::{Inspection, Layout};
use crate::error::corrupt_row;
use crate::rows::{copy_from_row, item_from_row, record_from_row};

/// The condition of a parked item (see `SyncQueueItem::is_parked`).
const PARKED: &str = "status = 'failed' AND in_flight IS NULL AND next_attempt_at IS NULL \
     AND last_error_kind = 'permanent'";

/// The queue columns `item_from_row` reads, for this file's schema.
fn queue_columns(layout: Layout) -> String {
    crate::rows::QUEUE_COLUMNS
        .split(", ")
        .map(|column| match column {
            "last_error_http_status" if !layout.http_status => "NULL AS last_error_http_status",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Adds one (entity, status) group of the queue to `entity`.
fn add_group(entity: &mut EntityStatus, status: &str, n: u64, parked: u64) -> Result<(), StoreError> {
    match status {
        "pending" => entity.pending += n,
        "syncing" => entity.syncing += n,
        "synced" => entity.synced += n,
        "failed" => entity.failed += n,
        other => return Err(corrupt_row("queue status", other)),
    }
    entity.parked += parked;
    Ok(())
}

fn file_size(path: &Path, suffix: &str) -> u64 {
    std::fs::metadata(super::check::companion(path, suffix)).map_or(0, |m| m.len())
}

impl Inspection {
    /// Counts per entity and status, the oldest item not yet synced, parked
    /// and in-flight items, pull cursors, file sizes and schema version, all
    /// from one snapshot.
    ///
    /// Cancel safety: cancel-safe (it only reads, in one snapshot).
    ///
    /// # Errors
    /// `Corrupt` when the file is damaged or a row does not decode; another
    /// mapped SQLite error otherwise.
    pub async fn status(&mut self) -> Result<Status, StoreError> {
        let layout = self.layout;
        let path = self.path.clone();
        let fail = |error: sqlx::Error| {
            super::check::explain(crate::error::map_sqlx(error, "reading the status"), &path)
        };
        let mut transaction = self.connection.begin().await.map_err(fail)?;
        let mut entities: std::collections::BTreeMap<String, EntityStatus> =
            std::collections::BTreeMap::new();
        let rows = sqlx::query("SELECT entity, COUNT(*) AS n FROM records GROUP BY entity")
            .fetch_all(&mut *transaction)
            .await
            .map_err(fail)?;
        for row in rows {
            let entity: String = row.try_get("entity").map_err(fail)?;
            let n: i64 = row.try_get("n").map_err(fail)?;
            entities.entry(entity.clone()).or_default().records = count(n);
        }
        let groups = sqlx::query(AssertSqlSafe(format!(
            "SELECT entity, status, COUNT(*) AS n, COALESCE(SUM({PARKED}), 0) AS parked, \
             COALESCE(SUM(in_flight IS NOT NULL), 0) AS in_flight FROM queue GROUP BY entity, status"
        )))
        .fetch_all(&mut *transaction)
        .await
        .map_err(fail)?;
        let mut in_flight = 0;
        for row in groups {
            let entity: String = row.try_get("entity").map_err(fail)?;
            let status: String = row.try_get("status").map_err(fail)?;
            let n = count(row.try_get("n").map_err(fail)?);
            let parked = count(row.try_get("parked").map_err(fail)?);
            in_flight += count(row.try_get("in_flight").map_err(fail)?);
            add_group(entities.entry(entity).or_default(), &status, n, parked)?;
        }
        let oldest = sqlx::query(
            "SELECT entity, id, status, created_at FROM queue WHERE status <> 'synced' \
             ORDER BY created_at, seq LIMIT 1",
        )
        .fetch_optional(&mut *transaction)
        .await
        .map_err(fail)?;
        let oldest_unsynced = match oldest {
            Some(row) => Some(OldestItem {
                entity: row.try_get("entity").map_err(fail)?,
                id: row.try_get("id").map_err(fail)?,
                status: row
                    .try_get::<String, _>("status")
                    .map_err(fail)?
                    .parse::<SyncStatus>()
                    .map_err(|error| corrupt_row("queue status", error))?,
                created_at: Timestamp::from_millis(row.try_get("created_at").map_err(fail)?),
            }),
            None => None,
        };
        let mut pull_cursors = Vec::new();
        if layout.pull_state {
            let rows = sqlx::query(
                "SELECT entity, cursor, generation, listing_generation, listing_started_at \
                 FROM pull_state ORDER BY entity",
            )
            .fetch_all(&mut *transaction)
            .await
            .map_err(fail)?;
            for row in rows {
                pull_cursors.push(PullCursorRow {
                    entity: row.try_get("entity").map_err(fail)?,
                    cursor: row.try_get("cursor").map_err(fail)?,
                    generation: row.try_get("generation").map_err(fail)?,
                    listing_generation: row.try_get("listing_generation").map_err(fail)?,
                    listing_started_at: row
                        .try_get::<Option<i64>, _>("listing_started_at")
                        .map_err(fail)?
                        .map(Timestamp::from_millis),
                });
            }
        }
        transaction.rollback().await.map_err(fail)?;
        let mut total = EntityStatus::default();
        let entities: Vec<EntityStatus> = entities
            .into_iter()
            .map(|(name, mut entity)| {
                entity.entity = name;
                total.records += entity.records;
                total.pending += entity.pending;
                total.syncing += entity.syncing;
                total.synced += entity.synced;
                total.failed += entity.failed;
                total.parked += entity.parked;
                entity
            })
            .collect();
        Ok(Status {
            schema_version: layout.version,
            database_bytes: file_size(&self.path, ""),
            wal_bytes: file_size(&self.path, "-wal"),
            parked: total.parked,
            entities,
            total,
            oldest_unsynced,
            in_flight,
            pull_cursors,
        })
    }

    /// The queue items `filter` selects, in send order (oldest first).
    ///
    /// Cancel safety: cancel-safe (it only reads, in one snapshot).
    ///
    /// # Errors
    /// `Corrupt` when the file is damaged or a row does not decode; another
    /// mapped SQLite error otherwise.
    pub async fn queue(&mut self, filter: &QueueFilter) -> Result<Vec<sync_core::SyncQueueItem>, StoreError> {
        let condition = if filter.failed {
            "status = 'failed'"
        } else if filter.parked {
            PARKED
        } else {
            "1"
        };
        let sql = format!(
            "SELECT {} FROM queue WHERE (?1 IS NULL OR entity = ?1) AND {condition} ORDER BY created_at, seq",
            queue_columns(self.layout)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(filter.entity.clone())
            .fetch_all(&mut self.connection)
            .await
            .map_err(|error| self.read_error(error, "reading the queue"))?;
        rows.iter().map(item_from_row).collect()
    }

    /// The record's document, queue item and server copy, from one snapshot.
    ///
    /// Cancel safety: cancel-safe (it only reads, in one snapshot).
    ///
    /// # Errors
    /// `Corrupt` when the file is damaged or a row does not decode; another
    /// mapped SQLite error otherwise.
    pub async fn record_detail(&mut self, key: &RecordKey) -> Result<RecordDetail, StoreError> {
        let layout = self.layout;
        let path = self.path.clone();
        let fail = |error: sqlx::Error| {
            super::check::explain(crate::error::map_sqlx(error, "reading a record"), &path)
        };
        let mut transaction = self.connection.begin().await.map_err(fail)?;
        // A temporary id the server has named since: the record under its
        // new id.
        let renamed: Option<String> = if layout.aliases && key.id.is_temporary() {
            sqlx::query_scalar(crate::queries::RESOLVE_ALIAS)
                .bind(key.id.as_str())
                .bind(key.entity.as_str())
                .fetch_optional(&mut *transaction)
                .await
                .map_err(fail)?
        } else {
            None
        };
        let (entity, id) = (key.entity.as_str(), renamed.as_deref().unwrap_or(key.id.as_str()));
        let record = sqlx::query(crate::queries::RECORD)
            .bind(entity)
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(fail)?;
        let item = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM queue WHERE entity = ?1 AND id = ?2",
            queue_columns(layout)
        )))
        .bind(entity)
        .bind(id)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(fail)?;
        let copy = if layout.server_copies {
            sqlx::query(crate::queries::SERVER_COPY)
                .bind(entity)
                .bind(id)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(fail)?
        } else {
            None
        };
        transaction.rollback().await.map_err(fail)?;
        Ok(RecordDetail {
            record: record.as_ref().map(record_from_row).transpose()?,
            item: item.as_ref().map(item_from_row).transpose()?,
            server_copy: copy
                .as_ref()
                .map(|row| copy_from_row(row).map(|(_, copy)| copy))
                .transpose()?,
        })
    }

    /// Every document (by entity and id) and then every queue item (in send
    /// order), one at a time to `sink`, from one snapshot: memory stays
    /// flat however large the database. Stops at the first error of `sink`.
    ///
    /// Cancel safety: cancel-safe (it only reads); dropped part-way, `sink`
    /// holds the lines written so far.
    ///
    /// # Errors
    /// `Corrupt` when the file is damaged or a row does not decode; `Other`
    /// when `sink` fails (its error is the source); another mapped SQLite
    /// error otherwise.
    pub async fn export(
        &mut self,
        mut sink: impl FnMut(ExportLine) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let layout = self.layout;
        let path = self.path.clone();
        let fail =
            |error: sqlx::Error| super::check::explain(crate::error::map_sqlx(error, "exporting"), &path);
        let sink_failed = |error: std::io::Error| {
            StoreError::new(
                StoreErrorKind::Other,
                format!("could not write the export ({error}): check the output's destination"),
            )
            .with_source(error)
        };
        let mut transaction = self.connection.begin().await.map_err(fail)?;
        {
            let mut records = sqlx::query(
                "SELECT entity, id, data, created_at, updated_at FROM records ORDER BY entity, id",
            )
            .fetch(&mut *transaction);
            while let Some(row) = records.next().await {
                let record = record_from_row(&row.map_err(fail)?)?;
                sink(ExportLine::Record(record)).map_err(sink_failed)?;
            }
        }
        {
            let sql = format!(
                "SELECT {} FROM queue ORDER BY created_at, seq",
                queue_columns(layout)
            );
            let mut items = sqlx::query(AssertSqlSafe(sql)).fetch(&mut *transaction);
            while let Some(row) = items.next().await {
                let item = item_from_row(&row.map_err(fail)?)?;
                sink(ExportLine::Item(item)).map_err(sink_failed)?;
            }
        }
        transaction.rollback().await.map_err(fail)?;
        Ok(())
    }
}
