//! What reads give back: [`TypedRecords`], and [`Unreadable`] for a
//! document that does not deserialize into the collection's type.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;
use sync_core::{LocalRecord, RecordId};

/// One record as `T`, or why it is not.
pub(super) fn read<T: DeserializeOwned>(record: LocalRecord) -> Result<T, Unreadable> {
    serde_json::from_value(Value::Object(record.data)).map_err(|error| Unreadable {
        id: record.id,
        error: error.to_string(),
    })
}

/// A collection's records as `T`, from [`super::Collection::all`] and
/// [`super::Collection::watch`]: the documents that deserialize, and apart, those
/// that do not. Both lists keep the engine's order, most recently updated
/// first.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRecords<T> {
    /// The records that deserialize into `T`.
    pub records: Vec<T>,
    /// The records that do not, with their ids and serde's messages: fix
    /// them with [`crate::OfflineSyncEngine::get_record`] and
    /// [`crate::OfflineSyncEngine::save`], or delete them.
    pub unreadable: Vec<Unreadable>,
}

impl<T> Default for TypedRecords<T> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            unreadable: Vec::new(),
        }
    }
}

impl<T: DeserializeOwned> TypedRecords<T> {
    pub(super) fn read(list: Vec<LocalRecord>) -> Self {
        let mut typed = Self::default();
        for record in list {
            match read(record) {
                Ok(value) => typed.records.push(value),
                Err(unreadable) => typed.unreadable.push(unreadable),
            }
        }
        typed
    }
}

/// A stored document that does not deserialize into a collection's type.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The record's id.
    pub id: RecordId,
    /// Serde's message, such as ``missing field `done` ``.
    pub error: String,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {:?} does not deserialize: {}",
            self.id.as_str(),
            self.error
        )
    }
}
