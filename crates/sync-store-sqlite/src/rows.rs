//! Row mapping and the statements that read and write many rows at once.
//!
//! sqlx costs about 45 µs per statement on SQLite, so every bulk operation
//! here is one statement per chunk of rows, whatever the number of records.

use std::collections::HashMap;

use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, AssertSqlSafe, Row, SqliteConnection};
use sync_core::{
    AttemptId, ErrorKind, JsonObject, LocalRecord, OperationId, RecordKey, ServerCopy, StoreError,
    SyncOperation, SyncQueueItem, SyncStatus, Timestamp,
};

use crate::error::{corrupt_row, map_sqlx};

/// The queue columns, in the order `bind_item` binds them.
pub(crate) const QUEUE_COLUMNS: &str = crate::queries::queue_columns!();
const QUEUE_WIDTH: usize = 17;
const RECORD_WIDTH: usize = 5;

/// Whether a statement for `rows` rows stays prepared: small groups recur
/// (single saves, group commits), large batches would only crowd the cache.
pub(crate) fn keep_prepared(rows: usize) -> bool {
    rows <= 64
}

/// Rows per multi-row statement: keeps bound parameters well under
/// SQLite's limit of 32 766.
pub(crate) const CHUNK: usize = 500;

pub(crate) fn bind_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::new(
        sync_core::StoreErrorKind::Other,
        format!("could not bind a query parameter ({error}): this is a bug, please report it"),
    )
}

fn millis(time: Timestamp) -> i64 {
    time.as_millis()
}

pub(crate) fn json_text(object: &JsonObject) -> String {
    // Serialising a map of JSON values cannot fail.
    serde_json::to_string(object).unwrap_or_else(|_| String::from("{}"))
}

fn parse_object(what: &str, text: &str) -> Result<JsonObject, StoreError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        Ok(_) => Err(corrupt_row(what, "not a JSON object")),
        Err(error) => Err(corrupt_row(what, error)),
    }
}

/// Adds one queue item's columns to `arguments`, in [`QUEUE_COLUMNS`] order;
/// without the payload when `with_payload` is false.
fn bind_item(
    arguments: &mut SqliteArguments,
    item: &SyncQueueItem,
    with_payload: bool,
) -> Result<(), StoreError> {
    arguments
        .add(item.entity.as_str().to_owned())
        .map_err(bind_error)?;
    arguments.add(item.id.as_str().to_owned()).map_err(bind_error)?;
    arguments.add(item.operation.as_str()).map_err(bind_error)?;
    if with_payload {
        arguments.add(json_text(&item.payload)).map_err(bind_error)?;
    }
    arguments.add(item.status.as_str()).map_err(bind_error)?;
    arguments.add(i64::from(item.retry_count)).map_err(bind_error)?;
    arguments.add(millis(item.created_at)).map_err(bind_error)?;
    arguments.add(millis(item.updated_at)).map_err(bind_error)?;
    arguments.add(item.last_error.clone()).map_err(bind_error)?;
    arguments
        .add(item.last_error_kind.map(ErrorKind::as_str))
        .map_err(bind_error)?;
    arguments
        .add(item.last_error_http_status.map(i64::from))
        .map_err(bind_error)?;
    arguments
        .add(i64::try_from(item.version).unwrap_or(i64::MAX))
        .map_err(bind_error)?;
    arguments
        .add(item.operation_id.as_str().to_owned())
        .map_err(bind_error)?;
    arguments.add(item.possibly_applied).map_err(bind_error)?;
    arguments
        .add(
            item.in_flight
                .map(|attempt| i64::try_from(attempt.as_u64()).unwrap_or(i64::MAX)),
        )
        .map_err(bind_error)?;
    arguments
        .add(item.next_attempt_at.map(millis))
        .map_err(bind_error)?;
    arguments.add(item.not_before.map(millis)).map_err(bind_error)?;
    Ok(())
}

/// Decodes a queue item from a row holding [`QUEUE_COLUMNS`].
pub(crate) fn item_from_row(row: &SqliteRow) -> Result<SyncQueueItem, StoreError> {
    let get_err = |error| map_sqlx(error, "reading a queue item");
    let text = |name: &str| row.try_get::<String, _>(name).map_err(get_err);
    let optional_time = |name: &str| {
        row.try_get::<Option<i64>, _>(name)
            .map(|value| value.map(Timestamp::from_millis))
            .map_err(get_err)
    };
    let operation: SyncOperation = text("operation")?
        .parse()
        .map_err(|e| corrupt_row("queue item", e))?;
    let status: SyncStatus = text("status")?
        .parse()
        .map_err(|e| corrupt_row("queue item", e))?;
    let last_error_kind = row
        .try_get::<Option<String>, _>("last_error_kind")
        .map_err(get_err)?
        .map(|kind| kind.parse::<ErrorKind>())
        .transpose()
        .map_err(|e| corrupt_row("queue item", e))?;
    Ok(SyncQueueItem {
        entity: text("entity")?
            .parse()
            .map_err(|e| corrupt_row("queue item", e))?,
        id: text("id")?.parse().map_err(|e| corrupt_row("queue item", e))?,
        operation,
        payload: parse_object("queue payload", &text("payload")?)?,
        status,
        retry_count: u32::try_from(row.try_get::<i64, _>("retry_count").map_err(get_err)?)
            .map_err(|e| corrupt_row("queue item", e))?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(get_err)?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at").map_err(get_err)?),
        last_error: row.try_get("last_error").map_err(get_err)?,
        last_error_kind,
        last_error_http_status: row
            .try_get::<Option<i64>, _>("last_error_http_status")
            .map_err(get_err)?
            .map(u16::try_from)
            .transpose()
            .map_err(|e| corrupt_row("queue item", e))?,
        version: u64::try_from(row.try_get::<i64, _>("version").map_err(get_err)?)
            .map_err(|e| corrupt_row("queue item", e))?,
        operation_id: OperationId::new(text("operation_id")?).map_err(|e| corrupt_row("queue item", e))?,
        possibly_applied: row.try_get("possibly_applied").map_err(get_err)?,
        in_flight: row
            .try_get::<Option<i64>, _>("in_flight")
            .map_err(get_err)?
            .map(|attempt| u64::try_from(attempt).map(AttemptId::from_u64))
            .transpose()
            .map_err(|e| corrupt_row("queue item", e))?,
        next_attempt_at: optional_time("next_attempt_at")?,
        not_before: optional_time("not_before")?,
    })
}

/// Decodes a local record from a row holding entity, id, data, created_at, updated_at.
pub(crate) fn record_from_row(row: &SqliteRow) -> Result<LocalRecord, StoreError> {
    let get_err = |error| map_sqlx(error, "reading a local record");
    let text = |name: &str| row.try_get::<String, _>(name).map_err(get_err);
    Ok(LocalRecord {
        entity: text("entity")?.parse().map_err(|e| corrupt_row("record", e))?,
        id: text("id")?.parse().map_err(|e| corrupt_row("record", e))?,
        data: parse_object("record", &text("data")?)?,
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(get_err)?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at").map_err(get_err)?),
    })
}

/// `(?, ?, ...), (?, ?, ...)`: `rows` groups of `width` placeholders.
pub(crate) fn placeholders(rows: usize, width: usize) -> String {
    let group = format!("({})", vec!["?"; width].join(", "));
    vec![group; rows].join(", ")
}

/// Inserts or fully replaces queue items, one statement per chunk.
pub(crate) async fn upsert_items(
    connection: &mut SqliteConnection,
    items: &[&SyncQueueItem],
) -> Result<(), StoreError> {
    for chunk in items.chunks(CHUNK) {
        // A new entry for the record (a change after a synced item) goes
        // to the back of the queue: a fresh `seq` breaks `created_at` ties
        // in save order, as for a new row.
        let updates = QUEUE_COLUMNS
            .split(", ")
            .filter(|column| !matches!(*column, "entity" | "id"))
            .map(|column| format!("{column} = excluded.{column}"))
            .chain(std::iter::once(
                "seq = CASE WHEN excluded.created_at = queue.created_at THEN queue.seq \
                 ELSE (SELECT MAX(seq) + 1 FROM queue) END"
                    .to_owned(),
            ))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO queue ({QUEUE_COLUMNS}) VALUES {} ON CONFLICT (entity, id) DO UPDATE SET {updates}",
            placeholders(chunk.len(), QUEUE_WIDTH)
        );
        let mut arguments = SqliteArguments::default();
        for item in chunk {
            bind_item(&mut arguments, item, true)?;
        }
        sqlx::query_with(AssertSqlSafe(sql), arguments)
            .persistent(keep_prepared(chunk.len()))
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "writing queue items"))?;
    }
    Ok(())
}

/// Updates every column but the payload of existing queue items, one
/// statement per chunk: attempt transitions never change a payload, so it
/// is neither re-encoded nor rewritten.
pub(crate) async fn update_item_metadata(
    connection: &mut SqliteConnection,
    items: &[&SyncQueueItem],
) -> Result<(), StoreError> {
    // Every queue column but the key and the payload, in bind order.
    let columns: Vec<&str> = QUEUE_COLUMNS
        .split(", ")
        .filter(|column| !matches!(*column, "entity" | "id" | "payload"))
        .collect();
    for chunk in items.chunks(CHUNK) {
        // VALUES columns: 1 entity, 2 id, then `columns` from column3 on.
        let sets = columns
            .iter()
            .enumerate()
            .map(|(index, column)| format!("{column} = v.column{}", index + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE queue SET {sets} FROM (VALUES {}) AS v WHERE queue.entity = v.column1 AND queue.id = v.column2",
            placeholders(chunk.len(), columns.len() + 2)
        );
        let mut arguments = SqliteArguments::default();
        for item in chunk {
            bind_item(&mut arguments, item, false)?;
        }
        sqlx::query_with(AssertSqlSafe(sql), arguments)
            .persistent(keep_prepared(chunk.len()))
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "updating queue items"))?;
    }
    Ok(())
}

/// Inserts or fully replaces local records, one statement per chunk.
pub(crate) async fn upsert_records(
    connection: &mut SqliteConnection,
    records: &[&LocalRecord],
) -> Result<(), StoreError> {
    for chunk in records.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO records (entity, id, data, created_at, updated_at) VALUES {} \
             ON CONFLICT (entity, id) DO UPDATE SET data = excluded.data, \
             created_at = excluded.created_at, updated_at = excluded.updated_at",
            placeholders(chunk.len(), RECORD_WIDTH)
        );
        let mut arguments = SqliteArguments::default();
        for record in chunk {
            arguments
                .add(record.entity.as_str().to_owned())
                .map_err(bind_error)?;
            arguments.add(record.id.as_str().to_owned()).map_err(bind_error)?;
            arguments.add(json_text(&record.data)).map_err(bind_error)?;
            arguments.add(millis(record.created_at)).map_err(bind_error)?;
            arguments.add(millis(record.updated_at)).map_err(bind_error)?;
        }
        sqlx::query_with(AssertSqlSafe(sql), arguments)
            .persistent(keep_prepared(chunk.len()))
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "writing local records"))?;
    }
    Ok(())
}

pub(crate) fn bind_keys(keys: &[&RecordKey]) -> Result<SqliteArguments, StoreError> {
    let mut arguments = SqliteArguments::default();
    for key in keys {
        arguments
            .add(key.entity.as_str().to_owned())
            .map_err(bind_error)?;
        arguments.add(key.id.as_str().to_owned()).map_err(bind_error)?;
    }
    Ok(arguments)
}

/// Deletes rows of `table` ("queue", "records" or "server_copies") by key,
/// one statement per chunk.
pub(crate) async fn delete_keys(
    connection: &mut SqliteConnection,
    table: &'static str,
    keys: &[&RecordKey],
) -> Result<(), StoreError> {
    for chunk in keys.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM {table} WHERE (entity, id) IN (VALUES {})",
            placeholders(chunk.len(), 2)
        );
        sqlx::query_with(AssertSqlSafe(sql), bind_keys(chunk)?)
            .persistent(keep_prepared(chunk.len()))
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "deleting rows"))?;
    }
    Ok(())
}

/// What the store holds for one record before a change: its queue item and
/// its document's `created_at`, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyState {
    pub(crate) item: Option<SyncQueueItem>,
    pub(crate) document_created_at: Option<Timestamp>,
}

/// Reads the queue item and document `created_at` of every key, one
/// statement per chunk. Keys with neither are absent from the map.
pub(crate) async fn load_keys(
    connection: &mut SqliteConnection,
    keys: &[&RecordKey],
    with_documents: bool,
) -> Result<HashMap<RecordKey, KeyState>, StoreError> {
    let mut states: HashMap<RecordKey, KeyState> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let values = placeholders(chunk.len(), 2);
        let queue_columns = QUEUE_COLUMNS
            .split(", ")
            .filter(|column| !matches!(*column, "entity" | "id"))
            .map(|column| format!("q.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let document = if with_documents {
            "(SELECT r.created_at FROM records r WHERE r.entity = k.column1 AND r.id = k.column2)"
        } else {
            "NULL"
        };
        let sql = format!(
            "SELECT k.column1 AS entity, k.column2 AS id, {document} AS document_created_at, \
             q.seq IS NOT NULL AS has_item, {queue_columns} \
             FROM (VALUES {values}) AS k LEFT JOIN queue q ON q.entity = k.column1 AND q.id = k.column2"
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), bind_keys(chunk)?)
            .persistent(keep_prepared(chunk.len()))
            .fetch_all(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "reading queue items"))?;
        for row in rows {
            let has_item: bool = row
                .try_get("has_item")
                .map_err(|e| map_sqlx(e, "reading queue items"))?;
            let document_created_at = row
                .try_get::<Option<i64>, _>("document_created_at")
                .map_err(|e| map_sqlx(e, "reading local records"))?
                .map(Timestamp::from_millis);
            let item = if has_item {
                Some(item_from_row(&row)?)
            } else {
                None
            };
            let entity: String = row.try_get("entity").map_err(|e| map_sqlx(e, "reading keys"))?;
            let id: String = row.try_get("id").map_err(|e| map_sqlx(e, "reading keys"))?;
            let key = RecordKey::new(
                entity.parse().map_err(|e| corrupt_row("key", e))?,
                id.parse().map_err(|e| corrupt_row("key", e))?,
            );
            states.insert(
                key,
                KeyState {
                    item,
                    document_created_at,
                },
            );
        }
    }
    Ok(states)
}

/// Reads a page of queue items with `query` (`?1` after seq, `?2` limit,
/// and `?3` a bound for queries that take one).
pub(crate) async fn items_page(
    connection: &mut SqliteConnection,
    query: &'static str,
    after_seq: i64,
    limit: usize,
    bound: Option<i64>,
) -> Result<Vec<(i64, SyncQueueItem)>, StoreError> {
    let mut statement = sqlx::query(query)
        .bind(after_seq)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    if let Some(bound) = bound {
        statement = statement.bind(bound);
    }
    let rows = statement
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| map_sqlx(error, "reading queue items"))?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row
                .try_get("seq")
                .map_err(|e| map_sqlx(e, "reading queue items"))?;
            Ok((seq, item_from_row(row)?))
        })
        .collect()
}

/// Reads the server copies of `keys`, one statement per chunk. Keys without
/// one are absent from the map.
pub(crate) async fn load_copies(
    connection: &mut SqliteConnection,
    keys: &[&RecordKey],
) -> Result<HashMap<RecordKey, ServerCopy>, StoreError> {
    let mut copies = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let sql = format!(
            "SELECT entity, id, data, version FROM server_copies WHERE (entity, id) IN (VALUES {})",
            placeholders(chunk.len(), 2)
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), bind_keys(chunk)?)
            .persistent(keep_prepared(chunk.len()))
            .fetch_all(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "reading server copies"))?;
        for row in rows {
            let (key, copy) = copy_from_row(&row)?;
            copies.insert(key, copy);
        }
    }
    Ok(copies)
}

/// A server copy row: its key and copy.
pub(crate) fn copy_from_row(row: &SqliteRow) -> Result<(RecordKey, ServerCopy), StoreError> {
    let read = |e| map_sqlx(e, "reading server copies");
    let entity: String = row.try_get("entity").map_err(read)?;
    let id: String = row.try_get("id").map_err(read)?;
    let data: String = row.try_get("data").map_err(read)?;
    let version: Option<String> = row.try_get("version").map_err(read)?;
    let key = RecordKey::new(
        entity.parse().map_err(|e| corrupt_row("key", e))?,
        id.parse().map_err(|e| corrupt_row("key", e))?,
    );
    let data = match serde_json::from_str::<serde_json::Value>(&data) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => return Err(corrupt_row("server copy", "not a JSON object")),
    };
    Ok((key, ServerCopy { data, version }))
}

/// Inserts or replaces server copies, one statement per chunk.
pub(crate) async fn upsert_copies(
    connection: &mut SqliteConnection,
    copies: &[(&RecordKey, &ServerCopy)],
) -> Result<(), StoreError> {
    for chunk in copies.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO server_copies (entity, id, data, version) VALUES {} \
             ON CONFLICT (entity, id) DO UPDATE SET data = excluded.data, version = excluded.version",
            placeholders(chunk.len(), 4)
        );
        let mut arguments = SqliteArguments::default();
        for (key, copy) in chunk {
            arguments
                .add(key.entity.as_str().to_owned())
                .map_err(bind_error)?;
            arguments.add(key.id.as_str().to_owned()).map_err(bind_error)?;
            arguments.add(json_text(&copy.data)).map_err(bind_error)?;
            arguments.add(copy.version.clone()).map_err(bind_error)?;
        }
        sqlx::query_with(AssertSqlSafe(sql), arguments)
            .persistent(keep_prepared(chunk.len()))
            .execute(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "writing server copies"))?;
    }
    Ok(())
}
