//! The collections: JSON objects keyed by id, kept in insertion order.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

/// The server's data: collection name → record id → stored object.
///
/// Only collections holding at least one record appear, so a snapshot
/// compares equal to local state however the records got there.
pub type Snapshot = BTreeMap<String, BTreeMap<String, Value>>;

/// All collections, plus the counters that order records, name new ones
/// and version them.
#[derive(Debug, Default)]
pub(crate) struct Collections {
    by_name: BTreeMap<String, Collection>,
    /// Insertion sequence numbers, server-wide, so order survives an undo.
    next_seq: u64,
    /// The last generated id, server-wide, so a generated id is not handed
    /// out twice while the server runs, even after its record is deleted.
    last_generated_id: u64,
    /// The last version handed out, server-wide rather than per record: a
    /// record deleted and created again gets a version no earlier record
    /// had, so an ETag of the old one never matches the new one.
    last_version: u64,
}

#[derive(Debug, Default)]
struct Collection {
    records: HashMap<String, Stored>,
    /// Insertion order: sequence number → id.
    order: BTreeMap<u64, String>,
}

#[derive(Debug)]
struct Stored {
    seq: u64,
    /// Bumped by every change applied to the record: its ETag.
    version: u64,
    object: Map<String, Value>,
}

/// How to take back one change, when it could not be made durable.
#[derive(Debug)]
pub(crate) enum Undo {
    Insert {
        collection: String,
        id: String,
    },
    Replace {
        collection: String,
        id: String,
        previous: Map<String, Value>,
        previous_version: u64,
    },
    Remove {
        collection: String,
        id: String,
        seq: u64,
        version: u64,
        previous: Map<String, Value>,
    },
}

/// The key an `"id"` value is stored under: strings as they are, numbers as
/// their decimal form. `None` for anything else (and for the empty string).
pub(crate) fn id_key(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

impl Collections {
    /// No records; versions handed out from `version_base + 1` on.
    pub(crate) fn with_version_base(version_base: u64) -> Self {
        Self {
            last_version: version_base,
            ..Self::default()
        }
    }

    /// The record and its version.
    pub(crate) fn get_versioned(&self, collection: &str, id: &str) -> Option<(&Map<String, Value>, u64)> {
        self.by_name
            .get(collection)?
            .records
            .get(id)
            .map(|stored| (&stored.object, stored.version))
    }

    /// The record's version, `None` when there is no such record.
    pub(crate) fn version(&self, collection: &str, id: &str) -> Option<u64> {
        self.get_versioned(collection, id).map(|(_, version)| version)
    }

    fn next_version(&mut self) -> u64 {
        // Never reached (one change per nanosecond for 500 years), but
        // saturating keeps the code panic-free.
        self.last_version = self.last_version.saturating_add(1);
        self.last_version
    }

    pub(crate) fn get(&self, collection: &str, id: &str) -> Option<&Map<String, Value>> {
        self.by_name
            .get(collection)?
            .records
            .get(id)
            .map(|stored| &stored.object)
    }

    pub(crate) fn contains(&self, collection: &str, id: &str) -> bool {
        self.get(collection, id).is_some()
    }

    /// The collection's objects in insertion order; empty for an unknown one.
    pub(crate) fn list(&self, collection: &str) -> Vec<Value> {
        let Some(collection) = self.by_name.get(collection) else {
            return Vec::new();
        };
        collection
            .order
            .values()
            .filter_map(|id| collection.records.get(id))
            .map(|stored| Value::Object(stored.object.clone()))
            .collect()
    }

    /// A fresh id for `collection`: the next counter value not in use.
    pub(crate) fn generate_id(&mut self, collection: &str) -> String {
        loop {
            self.last_generated_id += 1;
            let id = self.last_generated_id.to_string();
            if !self.contains(collection, &id) {
                return id;
            }
        }
    }

    /// Adds a record the caller checked is absent.
    pub(crate) fn insert(&mut self, collection: &str, id: &str, object: Map<String, Value>) -> Undo {
        let seq = self.next_seq;
        self.next_seq += 1;
        let version = self.next_version();
        self.insert_at(collection, id, seq, version, object);
        Undo::Insert {
            collection: collection.to_owned(),
            id: id.to_owned(),
        }
    }

    fn insert_at(&mut self, collection: &str, id: &str, seq: u64, version: u64, object: Map<String, Value>) {
        let entry = self.by_name.entry(collection.to_owned()).or_default();
        entry.order.insert(seq, id.to_owned());
        entry
            .records
            .insert(id.to_owned(), Stored { seq, version, object });
    }

    /// Replaces an existing record in place (it keeps its position) under
    /// a new version; `None` when there is no such record.
    pub(crate) fn replace(&mut self, collection: &str, id: &str, object: Map<String, Value>) -> Option<Undo> {
        if !self.contains(collection, id) {
            return None;
        }
        let version = self.next_version();
        self.put_back(collection, id, object, version)
    }

    /// Sets a record's object and version as they are given.
    fn put_back(
        &mut self,
        collection: &str,
        id: &str,
        object: Map<String, Value>,
        version: u64,
    ) -> Option<Undo> {
        let stored = self.by_name.get_mut(collection)?.records.get_mut(id)?;
        let previous = std::mem::replace(&mut stored.object, object);
        let previous_version = std::mem::replace(&mut stored.version, version);
        Some(Undo::Replace {
            collection: collection.to_owned(),
            id: id.to_owned(),
            previous,
            previous_version,
        })
    }

    /// Removes a record, returning it; `None` when there is no such record.
    pub(crate) fn remove(&mut self, collection: &str, id: &str) -> Option<(Map<String, Value>, Undo)> {
        let entry = self.by_name.get_mut(collection)?;
        let stored = entry.records.remove(id)?;
        entry.order.remove(&stored.seq);
        if entry.records.is_empty() {
            self.by_name.remove(collection);
        }
        let undo = Undo::Remove {
            collection: collection.to_owned(),
            id: id.to_owned(),
            seq: stored.seq,
            version: stored.version,
            previous: stored.object.clone(),
        };
        Some((stored.object, undo))
    }

    /// Takes back the change `undo` was made for (the last change made),
    /// the record's version included. The version counter is not wound
    /// back: a version handed out is never handed out again.
    pub(crate) fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Insert { collection, id } => {
                // Removing is the whole undo; the sequence number is not reused.
                let _removed = self.remove(&collection, &id);
            }
            Undo::Replace {
                collection,
                id,
                previous,
                previous_version,
            } => {
                let _undo = self.put_back(&collection, &id, previous, previous_version);
            }
            Undo::Remove {
                collection,
                id,
                seq,
                version,
                previous,
            } => self.insert_at(&collection, &id, seq, version, previous),
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.by_name
            .iter()
            .map(|(name, collection)| {
                let records = collection
                    .records
                    .iter()
                    .map(|(id, stored)| (id.clone(), Value::Object(stored.object.clone())))
                    .collect();
                (name.clone(), records)
            })
            .collect()
    }

    /// The data file's text: `{"collection": [objects in order], ...}`,
    /// the shape json-server's `db.json` has, one record per line.
    pub(crate) fn to_file_text(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = b"{".to_vec();
        for (index, (name, collection)) in self.by_name.iter().enumerate() {
            out.extend_from_slice(if index == 0 { b"\n  " } else { b",\n  " });
            serde_json::to_writer(&mut out, name)?;
            out.extend_from_slice(b": [");
            let objects = collection
                .order
                .values()
                .filter_map(|id| collection.records.get(id));
            for (position, stored) in objects.enumerate() {
                out.extend_from_slice(if position == 0 { b"\n    " } else { b",\n    " });
                serde_json::to_writer(&mut out, &stored.object)?;
            }
            out.extend_from_slice(b"\n  ]");
        }
        out.extend_from_slice(b"\n}\n");
        Ok(out)
    }

    /// Reads the data file's text back; `Err` says what is wrong. Versions
    /// are not kept in the file: the records get fresh ones after
    /// `version_base`.
    pub(crate) fn from_file_text(text: &[u8], version_base: u64) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(text).map_err(|error| format!("not JSON: {error}"))?;
        let Value::Object(top) = value else {
            return Err("the top level must be a JSON object of collections".to_owned());
        };
        let mut collections = Self::with_version_base(version_base);
        for (name, records) in top {
            let Value::Array(records) = records else {
                return Err(format!("collection {name:?} must be an array of objects"));
            };
            for (index, record) in records.into_iter().enumerate() {
                let Value::Object(object) = record else {
                    return Err(format!("{name:?}[{index}] is not a JSON object"));
                };
                let Some(id) = object.get("id").and_then(id_key) else {
                    return Err(format!(
                        "{name:?}[{index}] has no \"id\" that is a non-empty string or a number"
                    ));
                };
                if collections.contains(&name, &id) {
                    return Err(format!("{name:?} holds the id {id:?} twice"));
                }
                let _undo = collections.insert(&name, &id, object);
            }
        }
        Ok(collections)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::Collections;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn undo_restores_content_and_order() {
        let mut store = Collections::default();
        let _ = store.insert("t", "a", object(json!({"id": "a"})));
        let _ = store.insert("t", "b", object(json!({"id": "b"})));
        let _ = store.insert("t", "c", object(json!({"id": "c"})));
        let before = store.list("t");

        let (_, undo) = store.remove("t", "b").unwrap();
        store.undo(undo);
        assert_eq!(store.list("t"), before);

        let undo = store
            .replace("t", "a", object(json!({"id": "a", "x": 1})))
            .unwrap();
        store.undo(undo);
        assert_eq!(store.list("t"), before);

        let undo = store.insert("u", "z", object(json!({"id": "z"})));
        store.undo(undo);
        assert!(!store.snapshot().contains_key("u"));
    }

    #[test]
    fn the_file_text_round_trips_with_order() {
        let mut store = Collections::default();
        for id in ["9", "1", "a/b", "5"] {
            let _ = store.insert("tasks", id, object(json!({"id": id, "n": id})));
        }
        let _ = store.insert("notes", "7", object(json!({"id": 7})));
        let text = store.to_file_text().unwrap();
        let back = Collections::from_file_text(&text, 0).unwrap();
        assert_eq!(back.snapshot(), store.snapshot());
        assert_eq!(back.list("tasks"), store.list("tasks"));
        assert_eq!(Collections::from_file_text(b"{}", 0).unwrap().snapshot().len(), 0);
    }

    #[test]
    fn versions_are_never_reused_and_undo_restores_them() {
        let mut store = Collections::with_version_base(100);
        let _ = store.insert("t", "a", object(json!({"id": "a"})));
        assert_eq!(store.version("t", "a"), Some(101));
        let undo = store
            .replace("t", "a", object(json!({"id": "a", "x": 1})))
            .unwrap();
        assert_eq!(store.version("t", "a"), Some(102));
        store.undo(undo);
        assert_eq!(store.version("t", "a"), Some(101), "undone with its version");
        let (_, undo) = store.remove("t", "a").unwrap();
        assert_eq!(store.version("t", "a"), None);
        store.undo(undo);
        assert_eq!(store.version("t", "a"), Some(101));
        // Deleted and created again: a version no earlier record had.
        let _ = store.remove("t", "a").unwrap();
        let _ = store.insert("t", "a", object(json!({"id": "a"})));
        assert_eq!(store.version("t", "a"), Some(103));
        assert!(store.replace("t", "missing", Map::new()).is_none());
        // A loaded file's records are versioned after the base.
        let loaded = Collections::from_file_text(&store.to_file_text().unwrap(), 500).unwrap();
        assert_eq!(loaded.version("t", "a"), Some(501));
    }

    #[test]
    fn generated_ids_skip_ids_in_use() {
        let mut store = Collections::default();
        let _ = store.insert("t", "1", object(json!({"id": 1})));
        assert_eq!(store.generate_id("t"), "2");
        assert_eq!(store.generate_id("t"), "3");
    }
}
