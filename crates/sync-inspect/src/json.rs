//! The JSON the commands print with `--json` and in exports. Field names
//! are camelCase, as the library serialises its records and items;
//! timestamps are milliseconds since the Unix epoch.

use serde_json::{Map, Value, json};
use sync_core::{LocalRecord, ServerCopy, SyncQueueItem, Timestamp};
use sync_store_sqlite::inspect::{EntityStatus, PullCursorRow, Status};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A queue item; its payload only when `with_payload`. `parked` and
/// `inFlight` are added for readers that do not know the rules.
pub(crate) fn item(item: &SyncQueueItem, with_payload: bool) -> Value {
    let mut map = object(serde_json::to_value(item).unwrap_or(Value::Null));
    if !with_payload {
        map.remove("payload");
    }
    map.insert("parked".into(), Value::Bool(item.is_parked()));
    map.insert("inFlight".into(), Value::Bool(item.in_flight.is_some()));
    Value::Object(map)
}

/// A local document; its data only when `with_data`.
pub(crate) fn record(record: &LocalRecord, with_data: bool) -> Value {
    let mut map = object(serde_json::to_value(record).unwrap_or(Value::Null));
    if !with_data {
        map.remove("data");
    }
    Value::Object(map)
}

/// A server copy.
pub(crate) fn copy(copy: &ServerCopy) -> Value {
    json!({ "version": copy.version, "data": copy.data })
}

fn counts(entity: &EntityStatus) -> Value {
    json!({
        "records": entity.records,
        "pending": entity.pending,
        "syncing": entity.syncing,
        "synced": entity.synced,
        "failed": entity.failed,
        "parked": entity.parked,
    })
}

fn cursor(row: &PullCursorRow) -> Value {
    json!({
        "entity": row.entity,
        "cursor": row.cursor,
        "generation": row.generation,
        "listingGeneration": row.listing_generation,
        "listingStartedAt": row.listing_started_at,
    })
}

/// The status report.
pub(crate) fn status(file: &str, status: &Status, now: Timestamp) -> Value {
    let entities: Map<String, Value> = status
        .entities
        .iter()
        .map(|entity| (entity.entity.clone(), counts(entity)))
        .collect();
    let oldest = status.oldest_unsynced.as_ref().map(|oldest| {
        json!({
            "entity": oldest.entity,
            "id": oldest.id,
            "status": oldest.status,
            "createdAt": oldest.created_at,
            "ageMs": u64::try_from(now.saturating_duration_since(oldest.created_at).as_millis()).unwrap_or(u64::MAX),
        })
    });
    json!({
        "file": file,
        "schemaVersion": status.schema_version,
        "databaseBytes": status.database_bytes,
        "walBytes": status.wal_bytes,
        "totalBytes": status.database_bytes.saturating_add(status.wal_bytes),
        "total": counts(&status.total),
        "entities": entities,
        "parked": status.parked,
        "inFlight": status.in_flight,
        "oldestUnsynced": oldest,
        "pullCursors": status.pull_cursors.iter().map(cursor).collect::<Vec<_>>(),
    })
}

/// Pretty JSON text and a newline.
pub(crate) fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
    text.push('\n');
    text
}
