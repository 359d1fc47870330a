//! What the real-server scenarios share: the servers' run scripts, the
//! lossy proxy, and per server the request shape and the list reading.
#![allow(dead_code)] // Each scenario uses a different part.

pub(crate) mod proxy;
pub(crate) mod server;

use std::collections::BTreeMap;

use serde_json::Value;
use sync_facade::RequestShape;

/// The fields every scenario record has, beside its `id`.
pub(crate) const FIELDS: [&str; 3] = ["title", "count", "done"];

/// A third-party server and how the engine speaks to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flavor {
    /// The report's name for the run.
    pub(crate) label: &'static str,
    /// The folder under `tests/servers`.
    pub(crate) server: &'static str,
    /// Whether the documents hold their id as a JSON number.
    pub(crate) numeric_ids: bool,
}

impl Flavor {
    pub(crate) fn shape(self) -> RequestShape {
        match self.server {
            "json-server" => RequestShape::json_server(),
            "drf" => RequestShape::django_rest_framework(),
            "pocketbase" => RequestShape::pocketbase(),
            "directus" => RequestShape::directus(),
            other => panic!("no shape for the server {other:?}"),
        }
    }

    /// The path (under the base URL) listing every record of `entity`.
    pub(crate) fn list_path(self, entity: &str) -> String {
        match self.server {
            "drf" => format!("/{entity}/"),
            "pocketbase" => format!("/{entity}/records?perPage=1000"),
            "directus" => format!("/{entity}?limit=-1"),
            _ => format!("/{entity}"),
        }
    }

    /// The rows of a list answer: an array, or one under `items`, `data`
    /// or `results`.
    pub(crate) fn rows(self, answer: Value) -> Vec<Value> {
        match answer {
            Value::Array(rows) => rows,
            Value::Object(mut object) => ["items", "data", "results"]
                .into_iter()
                .find_map(|key| match object.remove(key) {
                    Some(Value::Array(rows)) => Some(rows),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{}: a list answer without rows: {object:?}", self.label)),
            other => panic!("{}: a list answer that is not a list: {other}", self.label),
        }
    }
}

/// Entity → id (as text) → the scenario's fields, whatever else the server
/// or an adopted answer added.
pub(crate) type Rows = BTreeMap<String, BTreeMap<String, Value>>;

/// The id of a record as text, whether a string or a number.
pub(crate) fn id_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => panic!("an id that is neither a string nor a number: {other}"),
    }
}

/// Only the scenario's fields of a record.
pub(crate) fn project(record: &Value) -> Value {
    let mut fields = serde_json::Map::new();
    for field in FIELDS {
        fields.insert(
            field.to_owned(),
            record.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(fields)
}
