//! The statements of pulls: an entity's pull state, pulled documents with
//! their listing's mark, server copies from text encoded once, marks of
//! documents a page showed but kept, and the sweep's candidates. Bulk
//! writes are one statement per chunk of rows, as in [`crate::rows`].

use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, AssertSqlSafe, Row, SqliteConnection};
use sync_core::pull::{Listing, PullCursor, PullState};
use sync_core::{EntityName, LocalRecord, RecordId, StoreError, StoreErrorKind, SyncQueueItem, Timestamp};

use crate::error::{corrupt_row, map_sqlx};
use crate::queries;
use crate::rows::{CHUNK, QUEUE_COLUMNS, bind_error, item_from_row, placeholders};

/// Whether a pull statement for `rows` rows stays prepared: small ones, and
/// full chunks, which every page of a long pull repeats.
fn keep_prepared(rows: usize) -> bool {
    crate::rows::keep_prepared(rows) || rows == CHUNK
}

/// A generation as stored (SQLite integers are signed).
fn stored_generation(generation: u64) -> Result<i64, StoreError> {
    i64::try_from(generation).map_err(|_| {
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("listing generation {generation} is beyond what the store keeps (2^63 - 1)"),
        )
    })
}

fn read_generation(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|error| corrupt_row("pull state", error))
}

/// Decodes a pull state from a row of [`queries::PULL_STATE`].
pub(crate) fn state_from_row(row: &SqliteRow) -> Result<PullState, StoreError> {
    let read = |error| map_sqlx(error, "reading a pull state");
    let cursor = row
        .try_get::<Option<String>, _>("cursor")
        .map_err(read)?
        .map(PullCursor::new)
        .transpose()
        .map_err(|error| corrupt_row("pull cursor", error))?;
    let generation = read_generation(row.try_get("generation").map_err(read)?)?;
    let listing_generation: Option<i64> = row.try_get("listing_generation").map_err(read)?;
    let listing_started_at: Option<i64> = row.try_get("listing_started_at").map_err(read)?;
    let listing = match (listing_generation, listing_started_at) {
        (Some(generation), Some(started_at)) => Some(Listing {
            generation: read_generation(generation)?,
            started_at: Timestamp::from_millis(started_at),
        }),
        (None, None) => None,
        _ => return Err(corrupt_row("pull state", "half a listing")),
    };
    Ok(PullState {
        cursor,
        generation,
        listing,
    })
}

/// The stored pull state of `entity`, or the default when none is stored.
pub(crate) async fn read_state(
    connection: &mut SqliteConnection,
    entity: &EntityName,
) -> Result<PullState, StoreError> {
    let row = sqlx::query(queries::PULL_STATE)
        .bind(entity.as_str())
        .fetch_optional(&mut *connection)
        .await
        .map_err(|error| map_sqlx(error, "reading a pull state"))?;
    row.as_ref()
        .map(state_from_row)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Stores the pull state of `entity`.
pub(crate) async fn write_state(
    connection: &mut SqliteConnection,
    entity: &EntityName,
    state: &PullState,
) -> Result<(), StoreError> {
    let listing_generation = state
        .listing
        .map(|listing| stored_generation(listing.generation))
        .transpose()?;
    sqlx::query(queries::PUT_PULL_STATE)
        .bind(entity.as_str())
        .bind(state.cursor.as_ref().map(PullCursor::as_str))
        .bind(stored_generation(state.generation)?)
        .bind(listing_generation)
        .bind(state.listing.map(|listing| listing.started_at.as_millis()))
        .execute(&mut *connection)
        .await
        .map_err(|error| map_sqlx(error, "writing a pull state"))?;
    Ok(())
}

/// Inserts or replaces pulled documents, each with its JSON text, one
/// statement per chunk. `mark` is the listing generation the page marks its
/// documents with; without one, a document keeps the mark it had.
pub(crate) async fn upsert_records(
    connection: &mut SqliteConnection,
    records: Vec<(&LocalRecord, String)>,
    mark: Option<u64>,
) -> Result<(), StoreError> {
    let mark = mark.map(stored_generation).transpose()?;
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let chunk: Vec<_> = records.by_ref().take(CHUNK).collect();
        let rows = chunk.len();
        let sql = format!(
            "INSERT INTO records (entity, id, data, created_at, updated_at, pulled_in) VALUES {} \
             ON CONFLICT (entity, id) DO UPDATE SET data = excluded.data, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, pulled_in = COALESCE(excluded.pulled_in, records.pulled_in)",
            placeholders(rows, 6)
        );
        let mut arguments = SqliteArguments::default();
        for (record, data) in chunk {
            arguments
                .add(record.entity.as_str().to_owned())
                .map_err(bind_error)?;
            arguments.add(record.id.as_str().to_owned()).map_err(bind_error)?;
            arguments.add(data).map_err(bind_error)?;
            arguments.add(record.created_at.as_millis()).map_err(bind_error)?;
            arguments.add(record.updated_at.as_millis()).map_err(bind_error)?;
            arguments.add(mark).map_err(bind_error)?;
        }
        sqlx::query_with(AssertSqlSafe(sql), arguments)
            .persistent(keep_prepared(rows))
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "writing pulled records"))?;
    }
    Ok(())
}

/// One server copy to write: its record's id, JSON text and version.
pub(crate) type CopyText<'a> = (&'a RecordId, String, Option<&'a str>);

/// Inserts or replaces server copies of records of `entity` from their
/// JSON text, one statement per chunk.
pub(crate) async fn upsert_copies(
    connection: &mut SqliteConnection,
    entity: &EntityName,
    copies: Vec<CopyText<'_>>,
) -> Result<(), StoreError> {
    let mut copies = copies.into_iter().peekable();
    while copies.peek().is_some() {
        let chunk: Vec<_> = copies.by_ref().take(CHUNK).collect();
        let rows = chunk.len();
        let sql = format!(
            "INSERT INTO server_copies (entity, id, data, version) VALUES {} \
             ON CONFLICT (entity, id) DO UPDATE SET data = excluded.data, version = excluded.version",
            placeholders(rows, 4)
        );
        let mut arguments = SqliteArguments::default();
        for (id, data, version) in chunk {
            arguments.add(entity.as_str().to_owned()).map_err(bind_error)?;
            arguments.add(id.as_str().to_owned()).map_err(bind_error)?;
            arguments.add(data).map_err(bind_error)?;
            arguments.add(version.map(str::to_owned)).map_err(bind_error)?;
        }
        sqlx::query_with(AssertSqlSafe(sql), arguments)
            .persistent(keep_prepared(rows))
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "writing server copies"))?;
    }
    Ok(())
}

/// Marks existing documents of `entity` with a listing's generation, one
/// statement per chunk.
pub(crate) async fn mark_records(
    connection: &mut SqliteConnection,
    entity: &EntityName,
    ids: &[&RecordId],
    generation: u64,
) -> Result<(), StoreError> {
    let generation = stored_generation(generation)?;
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "UPDATE records SET pulled_in = {generation} WHERE entity = ? AND id IN ({})",
            list(chunk.len())
        );
        let arguments = bind_ids(entity, chunk)?;
        sqlx::query_with(AssertSqlSafe(sql), arguments)
            .persistent(keep_prepared(chunk.len()))
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "marking pulled records"))?;
    }
    Ok(())
}

/// `?, ?, ...`: `count` placeholders.
fn list(count: usize) -> String {
    vec!["?"; count].join(", ")
}

/// Binds `entity` then every id.
fn bind_ids(entity: &EntityName, ids: &[&RecordId]) -> Result<SqliteArguments, StoreError> {
    let mut arguments = SqliteArguments::default();
    arguments.add(entity.as_str().to_owned()).map_err(bind_error)?;
    for id in ids {
        arguments.add(id.as_str().to_owned()).map_err(bind_error)?;
    }
    Ok(arguments)
}

/// The queue items of the records `ids` of `entity` that have one, one
/// statement per chunk: only the rows found come back.
pub(crate) async fn load_items(
    connection: &mut SqliteConnection,
    entity: &EntityName,
    ids: &[&RecordId],
) -> Result<Vec<SyncQueueItem>, StoreError> {
    let mut items = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT {QUEUE_COLUMNS} FROM queue WHERE entity = ? AND id IN ({})",
            list(chunk.len())
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), bind_ids(entity, chunk)?)
            .persistent(keep_prepared(chunk.len()))
            .fetch_all(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "reading queue items"))?;
        for row in &rows {
            items.push(item_from_row(row)?);
        }
    }
    Ok(items)
}

/// The `created_at` of the documents of `ids` of `entity` that exist, one
/// statement per chunk.
pub(crate) async fn load_documents(
    connection: &mut SqliteConnection,
    entity: &EntityName,
    ids: &[&RecordId],
) -> Result<Vec<(RecordId, Timestamp)>, StoreError> {
    let read = |error| map_sqlx(error, "reading local records");
    let mut found = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, created_at FROM records WHERE entity = ? AND id IN ({})",
            list(chunk.len())
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), bind_ids(entity, chunk)?)
            .persistent(keep_prepared(chunk.len()))
            .fetch_all(&mut *connection)
            .await
            .map_err(read)?;
        for row in &rows {
            let id: String = row.try_get("id").map_err(read)?;
            let created_at: i64 = row.try_get("created_at").map_err(read)?;
            found.push((
                id.parse().map_err(|error| corrupt_row("record", error))?,
                Timestamp::from_millis(created_at),
            ));
        }
    }
    Ok(found)
}

/// A local record a listing did not mark: what the sweep asks about.
pub(crate) struct Candidate {
    pub(crate) id: RecordId,
    pub(crate) created_at: Timestamp,
    pub(crate) pulled_in: Option<u64>,
    pub(crate) item: Option<SyncQueueItem>,
}

/// Up to `limit` records of `entity` after `after_id` (in id order) not
/// marked with `generation`, with their queue items: one statement.
pub(crate) async fn sweep_candidates(
    connection: &mut SqliteConnection,
    entity: &EntityName,
    generation: u64,
    after_id: &str,
    limit: usize,
) -> Result<Vec<Candidate>, StoreError> {
    let read = |error| map_sqlx(error, "reading records to sweep");
    let rows = sqlx::query(queries::SWEEP_CANDIDATES)
        .bind(entity.as_str())
        .bind(after_id)
        .bind(stored_generation(generation)?)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *connection)
        .await
        .map_err(read)?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("record_id").map_err(read)?;
            let has_item: bool = row.try_get("has_item").map_err(read)?;
            Ok(Candidate {
                id: id.parse().map_err(|error| corrupt_row("record", error))?,
                created_at: Timestamp::from_millis(row.try_get("document_created_at").map_err(read)?),
                pulled_in: row
                    .try_get::<Option<i64>, _>("pulled_in")
                    .map_err(read)?
                    .map(read_generation)
                    .transpose()?,
                item: if has_item { Some(item_from_row(row)?) } else { None },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::{Connection, SqliteConnection};

    use super::*;

    /// The reads of a page look its records up through the keys' indexes:
    /// no table scan, whatever the number of local records.
    #[tokio::test]
    async fn the_reads_of_a_page_search_by_key() {
        let mut connection = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        crate::schema::migrate(&mut connection, crate::schema::SCHEMA_VERSION)
            .await
            .unwrap();
        let cases = [
            (
                format!("SELECT {QUEUE_COLUMNS} FROM queue WHERE entity = ? AND id IN (?, ?, ?)"),
                "sqlite_autoindex_queue_1",
            ),
            (
                "SELECT id, created_at FROM records WHERE entity = ? AND id IN (?, ?, ?)".to_owned(),
                "sqlite_autoindex_records_1",
            ),
            (
                "UPDATE records SET pulled_in = 1 WHERE entity = ? AND id IN (?, ?, ?)".to_owned(),
                "sqlite_autoindex_records_1",
            ),
        ];
        for (sql, index) in cases {
            let rows = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&mut connection)
                .await
                .unwrap();
            let plan: Vec<String> = rows.iter().map(|row| row.get::<String, _>("detail")).collect();
            let text = plan.join(" | ");
            assert!(text.contains(index), "{sql}\n  does not use {index}: {text}");
            assert!(
                !plan.iter().any(|step| step.starts_with("SCAN")),
                "{sql}\n  scans: {text}"
            );
        }
        let state = PullState {
            cursor: Some(PullCursor::new("c").unwrap()),
            generation: 3,
            listing: Some(Listing {
                generation: 4,
                started_at: Timestamp::from_millis(9),
            }),
        };
        let entity: EntityName = "tasks".parse().unwrap();
        assert_eq!(
            read_state(&mut connection, &entity).await.unwrap(),
            PullState::default()
        );
        write_state(&mut connection, &entity, &state).await.unwrap();
        assert_eq!(read_state(&mut connection, &entity).await.unwrap(), state);
    }
}
