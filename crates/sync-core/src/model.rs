//! The records and queue items the engine stores and shows to the app.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Timestamp;
use crate::error::{ErrorKind, ValidationError};
use crate::ids::{AttemptId, EntityName, OperationId, RecordId, RecordKey};

/// A JSON object: the only shape a payload or a local document may have.
pub type JsonObject = serde_json::Map<String, Value>;

/// The default limit on a payload's serialised size: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Turns a JSON value into a payload, rejecting anything but an object.
///
/// # Errors
/// [`ValidationError::PayloadNotObject`] naming the JSON type found.
pub fn payload_from_value(value: Value) -> Result<JsonObject, ValidationError> {
    match value {
        Value::Object(object) => Ok(object),
        other => Err(ValidationError::PayloadNotObject {
            found: json_type_name(&other),
        }),
    }
}

/// Checks a payload's serialised size against `max_bytes`.
///
/// # Errors
/// [`ValidationError::PayloadTooLarge`] when it is larger.
pub fn check_payload_size(payload: &JsonObject, max_bytes: usize) -> Result<usize, ValidationError> {
    let size = serialized_len(payload);
    if size > max_bytes {
        return Err(ValidationError::PayloadTooLarge { size, max: max_bytes });
    }
    Ok(size)
}

/// The length of `payload` as compact JSON, without allocating it.
fn serialized_len(payload: &JsonObject) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Map of Values to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, payload);
    counter.0
}

/// The name of a JSON value's type, for error messages.
#[must_use]
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a local change does to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncOperation {
    /// A new record.
    Create,
    /// New content for an existing record (the whole document).
    Update,
    /// The record is removed.
    Delete,
}

impl SyncOperation {
    /// The lowercase name used in storage and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for SyncOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SyncOperation {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create" => Ok(Self::Create),
            "update" => Ok(Self::Update),
            "delete" => Ok(Self::Delete),
            other => Err(ValidationError::UnknownOperation(other.to_owned())),
        }
    }
}

/// Where a queue item stands, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    /// Waiting for the network or the next sync pass.
    Pending,
    /// An upload is in progress.
    Syncing,
    /// The server accepted the change; kept until `clear_synced`.
    Synced,
    /// The last attempt failed; see `last_error`.
    Failed,
}

impl SyncStatus {
    /// The lowercase name used in storage and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Syncing => "syncing",
            Self::Synced => "synced",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SyncStatus {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "syncing" => Ok(Self::Syncing),
            "synced" => Ok(Self::Synced),
            "failed" => Ok(Self::Failed),
            other => Err(ValidationError::UnknownStatus(other.to_owned())),
        }
    }
}

/// The copy of a record the server last confirmed: the document it held
/// after this device's last applied write (or as its answer showed it),
/// with the version it gave it (a strong `ETag`, or a version field).
///
/// It is the base of conditional writes (`If-Match`), of merge patches
/// (the fields changed since) and of three-way conflict resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerCopy {
    /// The document the server holds, as far as this device knows.
    pub data: JsonObject,
    /// The server's version of it, if the server gives one.
    pub version: Option<String>,
}

/// A document kept locally for offline reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalRecord {
    /// The collection.
    pub entity: EntityName,
    /// The record's id.
    pub id: RecordId,
    /// The document.
    pub data: JsonObject,
    /// When the record was first saved locally.
    pub created_at: Timestamp,
    /// When the record was last written locally.
    pub updated_at: Timestamp,
}

/// A change the app asks to save: validated, not yet stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalChange {
    /// The record changed.
    pub key: RecordKey,
    /// What happens to it.
    pub operation: SyncOperation,
    /// The new document (for a delete, whatever the app passed; it is kept
    /// with the queue item but never becomes a local document).
    pub payload: JsonObject,
}

impl LocalChange {
    /// Validates and assembles a change.
    ///
    /// # Errors
    /// [`ValidationError`] for an invalid entity name or id, or a payload
    /// that is not a JSON object.
    pub fn new(
        entity: impl Into<String>,
        id: impl Into<String>,
        payload: Value,
        operation: SyncOperation,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            key: RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?),
            operation,
            payload: payload_from_value(payload)?,
        })
    }
}

/// One record's pending reconciliation with the server.
///
/// There is at most one queue item per record: later changes are folded
/// into it by [`crate::coalesce::plan_save`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncQueueItem {
    /// The collection.
    pub entity: EntityName,
    /// The record's id.
    pub id: RecordId,
    /// What must be sent.
    pub operation: SyncOperation,
    /// The document to send.
    pub payload: JsonObject,
    /// Where the item stands.
    pub status: SyncStatus,
    /// How many attempts have failed, over the item's whole life.
    pub retry_count: u32,
    /// When the item entered the queue; the queue is sent in this order.
    pub created_at: Timestamp,
    /// When the item last changed.
    pub updated_at: Timestamp,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// The last failure's classification.
    pub last_error_kind: Option<ErrorKind>,
    /// The HTTP status of the server's answer to the last failed attempt
    /// (`403`, `409`, `422`, `503`...), so a UI can tell a refused change
    /// from an invalid one without reading `last_error`. `None` when that
    /// attempt got no answer (offline, timeout, a dropped connection) and
    /// whenever `last_error` is `None`: recorded, kept and cleared with it.
    #[serde(default)]
    pub last_error_http_status: Option<u16>,
    /// Bumped by every local change; attempt outcomes apply only to the
    /// version they were started for (compare-and-set).
    pub version: u64,
    /// The identity of the current local change, sent as the idempotency
    /// key; the same for every retry of it.
    pub operation_id: OperationId,
    /// Whether the server's state for this record is uncertain because an
    /// earlier attempt (or an earlier change's attempt) may have been
    /// applied without us hearing back. A create with this flag checks the
    /// server before posting.
    pub possibly_applied: bool,
    /// The attempt (for this or an older version) that is out and has not
    /// reported back. No second attempt starts until it does, which keeps
    /// the order of changes to one record.
    pub in_flight: Option<AttemptId>,
    /// The earliest time of the next attempt; `None` when the item waits for
    /// the next sync pass or is parked after a permanent error. Never
    /// earlier than `not_before`.
    pub next_attempt_at: Option<Timestamp>,
    /// The server's `Retry-After`: no automatic attempt before this time,
    /// even when a new pass starts.
    pub not_before: Option<Timestamp>,
}

impl SyncQueueItem {
    /// The record this item belongs to.
    #[must_use]
    pub fn key(&self) -> RecordKey {
        RecordKey::new(self.entity.clone(), self.id.clone())
    }

    /// Whether an attempt may start at `now`.
    #[must_use]
    pub fn is_ready(&self, now: Timestamp) -> bool {
        matches!(self.status, SyncStatus::Pending | SyncStatus::Failed)
            && self.in_flight.is_none()
            && self.next_attempt_at.is_some_and(|at| at <= now)
            && self.not_before.is_none_or(|at| at <= now)
    }

    /// Whether an attempt is out for this record.
    #[must_use]
    pub fn is_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether the item is parked after a permanent error: it waits for a
    /// new local change or the app's retry, never for a timer.
    #[must_use]
    pub fn is_parked(&self) -> bool {
        self.status == SyncStatus::Failed
            && self.in_flight.is_none()
            && self.next_attempt_at.is_none()
            && self.last_error_kind == Some(ErrorKind::Permanent)
    }

    /// Whether the item still needs sending (anything but `synced`).
    #[must_use]
    pub fn is_unsynced(&self) -> bool {
        self.status != SyncStatus::Synced
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payload_must_be_an_object() {
        assert!(payload_from_value(json!({"a": 1})).is_ok());
        for (value, found) in [
            (json!([1]), "an array"),
            (json!("x"), "a string"),
            (json!(1), "a number"),
            (json!(null), "null"),
            (json!(true), "a boolean"),
        ] {
            assert_eq!(
                payload_from_value(value),
                Err(ValidationError::PayloadNotObject { found })
            );
        }
    }

    #[test]
    fn payload_size_is_its_compact_json_length() {
        let payload = payload_from_value(json!({"k": "vvvv"})).unwrap();
        let len = serde_json::to_string(&payload).unwrap().len();
        assert_eq!(check_payload_size(&payload, len), Ok(len));
        assert_eq!(
            check_payload_size(&payload, len - 1),
            Err(ValidationError::PayloadTooLarge {
                size: len,
                max: len - 1
            })
        );
    }

    #[test]
    fn local_change_validates_every_part() {
        assert!(LocalChange::new("tasks", "1", json!({}), SyncOperation::Create).is_ok());
        assert!(matches!(
            LocalChange::new("", "1", json!({}), SyncOperation::Create),
            Err(ValidationError::Empty { .. })
        ));
        assert!(matches!(
            LocalChange::new("tasks", "a\0", json!({}), SyncOperation::Create),
            Err(ValidationError::ControlCharacter { .. })
        ));
        assert!(matches!(
            LocalChange::new("tasks", "1", json!([]), SyncOperation::Update),
            Err(ValidationError::PayloadNotObject { .. })
        ));
    }

    #[test]
    fn enums_round_trip_and_reject_unknown_names() {
        for op in [
            SyncOperation::Create,
            SyncOperation::Update,
            SyncOperation::Delete,
        ] {
            assert_eq!(op.as_str().parse::<SyncOperation>().unwrap(), op);
            assert_eq!(serde_json::to_value(op).unwrap(), json!(op.as_str()));
        }
        for status in [
            SyncStatus::Pending,
            SyncStatus::Syncing,
            SyncStatus::Synced,
            SyncStatus::Failed,
        ] {
            assert_eq!(status.as_str().parse::<SyncStatus>().unwrap(), status);
        }
        assert_eq!(
            "upsert".parse::<SyncOperation>(),
            Err(ValidationError::UnknownOperation("upsert".into()))
        );
        assert!("done".parse::<SyncStatus>().is_err());
        assert!(serde_json::from_value::<SyncOperation>(json!("upsert")).is_err());
    }
}
