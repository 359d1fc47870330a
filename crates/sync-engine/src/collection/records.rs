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
        error: without_values(&error.to_string()),
    })
}

/// Serde's message with the document's values left out: errors never
/// carry payloads. Field names and what the type expected come from the
/// app's type and stay; a value serde quotes (`invalid type: string
/// "..."`, `unknown variant `...``) is replaced by its kind.
fn without_values(message: &str) -> String {
    const KEPT: [&str; 4] = [
        "missing field",
        "unknown field",
        "duplicate field",
        "invalid length",
    ];
    if KEPT.iter().any(|kept| message.starts_with(kept)) {
        return message.to_owned();
    }
    let expected = message.rfind(", expected ").map_or("", |at| &message[at..]);
    for problem in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(problem) {
            // The kind is serde's first word: string, integer, map, ...
            let kind = rest.split([' ', ',']).next().unwrap_or("value");
            return format!("{problem}a {kind} (its value not shown){expected}");
        }
    }
    if message.starts_with("unknown variant") {
        return format!("unknown variant (its value not shown){expected}");
    }
    "the document does not fit the type (serde's message is not shown: it may quote the document)".to_owned()
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
    /// The records that do not, with their ids and serde's messages
    /// (without the document's values): fix
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

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn messages_keep_field_names_and_lose_values() {
        let cases = [
            ("missing field `title`", "missing field `title`"),
            (
                "invalid type: string \"secret\", expected a boolean",
                "invalid type: a string (its value not shown), expected a boolean",
            ),
            (
                "invalid value: integer `42`, expected u8",
                "invalid value: a integer (its value not shown), expected u8",
            ),
            (
                "unknown variant `secret`, expected one of `a`, `b`",
                "unknown variant (its value not shown), expected one of `a`, `b`",
            ),
        ];
        for (message, shown) in cases {
            assert_eq!(without_values(message), shown);
        }
        assert!(!without_values("something \"secret\" else").contains("secret"));
    }
}
