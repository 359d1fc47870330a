//! The collections: JSON objects keyed by id, kept in insertion order,
//! each write stamped from its collection's change sequence.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::clock::StampClock;
use crate::collection::{Collection, Row, Slot, Tombstone};

/// The server's data: collection name → record id → stored object.
///
/// Only collections holding at least one record appear, so a snapshot
/// compares equal to local state however the records got there.
/// Soft-deleted records are left out, as `GET` answers them `404`.
pub type Snapshot = BTreeMap<String, BTreeMap<String, Value>>;

/// The data file's top-level key holding the last id assigned in each
/// collection (see [`Collections::assign_id`]), beside the collections'
/// arrays; no collection may take the name.
pub(crate) const ASSIGNED_IDS_KEY: &str = "_assigned_ids";

/// What the store does beyond keeping objects, set at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoreOptions {
    /// The field every create, update, patch and soft delete sets to a
    /// growing integer (milliseconds since the Unix epoch).
    pub(crate) stamp_field: Option<String>,
    /// The field a delete sets to `true` instead of removing the record.
    pub(crate) soft_delete_field: Option<String>,
    /// How many change stamps back deletions are kept for the feed.
    pub(crate) tombstone_retention: Option<u64>,
}

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
    /// The last id assigned in each collection in the assigned-ids mode
    /// (absent: none yet), kept in the data file so that no id is
    /// assigned twice, not even after a delete and a restart.
    last_assigned_ids: BTreeMap<String, u64>,
    /// The last version handed out, server-wide rather than per record: a
    /// record deleted and created again gets a version no earlier record
    /// had, so an ETag of the old one never matches the new one.
    last_version: u64,
    /// Where every collection's change stamps start, and the smallest
    /// cursor accepted: `0` in memory, the start time with a data file
    /// (see [`Self::new`]).
    stamp_base: u64,
    options: StoreOptions,
    /// The stamp field's values.
    clock: StampClock,
}

/// How to take back one change, when it could not be made durable: the
/// record's slot as it was.
#[derive(Debug)]
pub(crate) struct Undo {
    collection: String,
    id: String,
    previous: Option<Slot>,
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
    /// No records; versions handed out from `base + 1` on, and change
    /// stamps in every collection too (a cursor below `base` is expired:
    /// it comes from an earlier run whose deletions were not kept).
    pub(crate) fn new(base: u64, options: StoreOptions) -> Self {
        Self {
            last_version: base,
            stamp_base: base,
            options,
            ..Self::default()
        }
    }

    /// The options the store was made with.
    pub(crate) fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The collection, when anything was ever written to it.
    pub(crate) fn collection(&self, name: &str) -> Option<&Collection> {
        self.by_name.get(name)
    }

    /// The smallest `since` the collection's feed answers and its last
    /// change stamp.
    pub(crate) fn feed_bounds(&self, name: &str) -> (u64, u64) {
        self.by_name
            .get(name)
            .map_or((self.stamp_base, self.stamp_base), |collection| {
                (collection.oldest_cursor(), collection.last_change())
            })
    }

    fn live_row(&self, collection: &str, id: &str) -> Option<&Row> {
        self.by_name.get(collection)?.live_row(id)
    }

    /// The record and its version (a soft-deleted record is missing).
    pub(crate) fn get_versioned(&self, collection: &str, id: &str) -> Option<(&Map<String, Value>, u64)> {
        self.live_row(collection, id)
            .map(|row| (&row.object, row.version))
    }

    /// The record's version, `None` when there is no such record.
    pub(crate) fn version(&self, collection: &str, id: &str) -> Option<u64> {
        self.live_row(collection, id).map(|row| row.version)
    }

    pub(crate) fn get(&self, collection: &str, id: &str) -> Option<&Map<String, Value>> {
        self.live_row(collection, id).map(|row| &row.object)
    }

    pub(crate) fn contains(&self, collection: &str, id: &str) -> bool {
        self.live_row(collection, id).is_some()
    }

    fn next_version(&mut self) -> u64 {
        // Never reached (one change per nanosecond for 500 years), but
        // saturating keeps the code panic-free.
        self.last_version = self.last_version.saturating_add(1);
        self.last_version
    }

    /// The collection's objects in insertion order, soft-deleted ones
    /// included; empty for an unknown one.
    #[cfg(test)]
    pub(crate) fn list(&self, collection: &str) -> Vec<Value> {
        self.by_name
            .get(collection)
            .map(|collection| {
                collection
                    .rows_in_order()
                    .map(|row| Value::Object(row.object.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A fresh id for `collection`: the next counter value not in use, not
    /// even by a soft-deleted record or a tombstone.
    pub(crate) fn generate_id(&mut self, collection: &str) -> String {
        loop {
            self.last_generated_id += 1;
            let id = self.last_generated_id.to_string();
            let taken = self
                .by_name
                .get(collection)
                .is_some_and(|collection| collection.slot(&id).is_some());
            if !taken {
                return id;
            }
        }
    }

    /// The id the server assigns to a record created in `collection`: the
    /// next integer after the last one assigned there (from `1`) that no
    /// slot holds, not even a soft-deleted record or a tombstone (a record
    /// created with an explicit id). Counted per collection and never
    /// wound back, so an id is assigned once.
    pub(crate) fn assign_id(&mut self, collection: &str) -> u64 {
        let last = self.last_assigned_ids.entry(collection.to_owned()).or_insert(0);
        let slots = self.by_name.get(collection);
        loop {
            // Never reached (one create per nanosecond for 500 years), but
            // saturating keeps the code panic-free.
            *last = last.saturating_add(1);
            let taken = slots.is_some_and(|slots| slots.slot(&last.to_string()).is_some());
            if !taken {
                return *last;
            }
        }
    }

    /// The last id assigned in `collection`, `0` when none was.
    pub(crate) fn last_assigned_id(&self, collection: &str) -> u64 {
        self.last_assigned_ids.get(collection).copied().unwrap_or(0)
    }

    /// The live records of `collection` (soft-deleted ones left out), in
    /// insertion order; empty for an unknown one.
    pub(crate) fn records(&self, collection: &str) -> Vec<Value> {
        self.by_name
            .get(collection)
            .map(|collection| {
                collection
                    .rows_in_order()
                    .filter(|row| !row.deleted)
                    .map(|row| Value::Object(row.object.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many live records (not soft-deleted) `collection` holds.
    pub(crate) fn record_count(&self, collection: &str) -> usize {
        self.by_name.get(collection).map_or(0, Collection::live_count)
    }

    /// Adds a record the caller checked is not live (a soft-deleted one is
    /// revived, a tombstone replaced): a new position at the end, a new
    /// version and change stamp, and the stamp field set. Returns the
    /// object stored and its version.
    pub(crate) fn insert(
        &mut self,
        collection: &str,
        id: &str,
        object: Map<String, Value>,
    ) -> (Map<String, Value>, u64, Undo) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.write_row(collection, id, seq, object, true)
    }

    /// Replaces a live record in place (it keeps its position) under a new
    /// version and change stamp, the stamp field set; `None` when there is
    /// no such record.
    pub(crate) fn replace(
        &mut self,
        collection: &str,
        id: &str,
        object: Map<String, Value>,
    ) -> Option<(Map<String, Value>, u64, Undo)> {
        let seq = self.live_row(collection, id)?.seq;
        Some(self.write_row(collection, id, seq, object, true))
    }

    /// Deletes a live record: with a soft-delete field, sets it to `true`
    /// (the stamp field too) and keeps the record; otherwise leaves a
    /// tombstone. Returns the deleted object as it was (hard) or is now
    /// (soft); `None` when there is no such record.
    pub(crate) fn remove(&mut self, collection: &str, id: &str) -> Option<(Map<String, Value>, Undo)> {
        let row = self.live_row(collection, id)?;
        let (seq, mut object) = (row.seq, row.object.clone());
        if let Some(field) = self.options.soft_delete_field.clone() {
            object.insert(field, Value::Bool(true));
            let (object, _version, undo) = self.write_row(collection, id, seq, object, true);
            return Some((object, undo));
        }
        let entry = self.by_name.get_mut(collection)?;
        let change = entry.next_change();
        let tombstone = Tombstone {
            change,
            id: object
                .get("id")
                .cloned()
                .unwrap_or_else(|| Value::String(id.to_owned())),
        };
        let previous = entry.set(id, Some(Slot::Tombstone(tombstone)));
        self.keep_retention(collection);
        Some((
            object,
            Undo {
                collection: collection.to_owned(),
                id: id.to_owned(),
                previous,
            },
        ))
    }

    /// Stores `object` as the row of `id` at `seq`, under a new version and
    /// change stamp (and stamp value, when `stamp`).
    fn write_row(
        &mut self,
        collection: &str,
        id: &str,
        seq: u64,
        mut object: Map<String, Value>,
        stamp: bool,
    ) -> (Map<String, Value>, u64, Undo) {
        if stamp && let Some(field) = &self.options.stamp_field {
            object.insert(field.clone(), Value::from(self.clock.next()));
        }
        let version = self.next_version();
        let row = self.row(seq, version, object.clone());
        let base = self.stamp_base;
        let entry = self
            .by_name
            .entry(collection.to_owned())
            .or_insert_with(|| Collection::new(base));
        let change = entry.next_change();
        let previous = entry.set(id, Some(Slot::Row(Row { change, ..row })));
        self.keep_retention(collection);
        let undo = Undo {
            collection: collection.to_owned(),
            id: id.to_owned(),
            previous,
        };
        (object, version, undo)
    }

    /// A row of `object`, its change stamp still to be set.
    fn row(&self, seq: u64, version: u64, object: Map<String, Value>) -> Row {
        let deleted = self
            .options
            .soft_delete_field
            .as_ref()
            .is_some_and(|field| object.get(field) == Some(&Value::Bool(true)));
        let stamp_value = self
            .options
            .stamp_field
            .as_ref()
            .and_then(|field| object.get(field))
            .and_then(Value::as_u64);
        Row {
            seq,
            version,
            change: 0,
            object,
            deleted,
            stamp_value,
        }
    }

    /// Forgets the deletions older than the retention, if one is set.
    fn keep_retention(&mut self, collection: &str) {
        if let (Some(retention), Some(entry)) =
            (self.options.tombstone_retention, self.by_name.get_mut(collection))
        {
            let _purged = entry.purge(entry.last_change().saturating_sub(retention));
        }
    }

    /// Forgets the deletions of `collection` (tombstones and soft-deleted
    /// records) whose change stamp is at most `through`; returns how many.
    pub(crate) fn purge_tombstones(&mut self, collection: &str, through: u64) -> usize {
        self.by_name
            .get_mut(collection)
            .map_or(0, |entry| entry.purge(through))
    }

    /// From now on every stamped write gets `value` (`None`: the clock).
    pub(crate) fn pin_stamp(&mut self, value: Option<u64>) {
        self.clock.pin(value);
    }

    /// Takes back the change `undo` was made for (the last change made),
    /// the record's version included. The version and change-stamp
    /// counters are not wound back: what was handed out is never handed
    /// out again.
    pub(crate) fn undo(&mut self, undo: Undo) {
        if let Some(entry) = self.by_name.get_mut(&undo.collection) {
            let _undone = entry.set(&undo.id, undo.previous);
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.by_name
            .iter()
            .filter(|(_, collection)| collection.has_live_rows())
            .map(|(name, collection)| {
                let records = collection
                    .rows_in_order()
                    .filter(|row| !row.deleted)
                    .filter_map(|row| {
                        let id = row.object.get("id").and_then(id_key)?;
                        Some((id, Value::Object(row.object.clone())))
                    })
                    .collect();
                (name.clone(), records)
            })
            .collect()
    }

    /// The data file's text: `{"collection": [objects in order], ...}`,
    /// the shape json-server's `db.json` has, one record per line.
    /// Soft-deleted records are kept (with their field); tombstones are
    /// not. When ids were ever assigned, the last one of each collection
    /// follows under [`ASSIGNED_IDS_KEY`]: `"_assigned_ids": {"tasks": 17}`.
    pub(crate) fn to_file_text(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = b"{".to_vec();
        let stored = self
            .by_name
            .iter()
            .filter(|(_, collection)| !collection.has_no_rows());
        let mut written = 0;
        for (name, collection) in stored {
            out.extend_from_slice(if written == 0 { b"\n  " } else { b",\n  " });
            written += 1;
            serde_json::to_writer(&mut out, name)?;
            out.extend_from_slice(b": [");
            for (position, row) in collection.rows_in_order().enumerate() {
                out.extend_from_slice(if position == 0 { b"\n    " } else { b",\n    " });
                serde_json::to_writer(&mut out, &row.object)?;
            }
            out.extend_from_slice(b"\n  ]");
        }
        if !self.last_assigned_ids.is_empty() {
            out.extend_from_slice(if written == 0 { b"\n  " } else { b",\n  " });
            serde_json::to_writer(&mut out, ASSIGNED_IDS_KEY)?;
            out.extend_from_slice(b": ");
            serde_json::to_writer(&mut out, &self.last_assigned_ids)?;
        }
        out.extend_from_slice(b"\n}\n");
        Ok(out)
    }

    /// Reads the data file's text back; `Err` says what is wrong. Versions
    /// and change stamps are not kept in the file: the records get fresh
    /// ones after `base`, in file order, and their stamp fields stay as
    /// they are.
    pub(crate) fn from_file_text(text: &[u8], base: u64, options: StoreOptions) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(text).map_err(|error| format!("not JSON: {error}"))?;
        let Value::Object(top) = value else {
            return Err("the top level must be a JSON object of collections".to_owned());
        };
        let mut collections = Self::new(base, options);
        for (name, records) in top {
            if name == ASSIGNED_IDS_KEY {
                collections.last_assigned_ids = read_assigned_ids(records)?;
                continue;
            }
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
                let taken = collections
                    .by_name
                    .get(&name)
                    .is_some_and(|collection| collection.slot(&id).is_some());
                if taken {
                    return Err(format!("{name:?} holds the id {id:?} twice"));
                }
                let seq = collections.next_seq;
                collections.next_seq += 1;
                let (object, _, _) = collections.write_row(&name, &id, seq, object, false);
                if let Some(value) = collections
                    .options
                    .stamp_field
                    .as_ref()
                    .and_then(|field| object.get(field))
                    .and_then(Value::as_u64)
                {
                    collections.clock.observe(value);
                }
            }
        }
        Ok(collections)
    }
}

/// The last assigned ids as the data file keeps them: an object of
/// collection names to non-negative integers.
fn read_assigned_ids(value: Value) -> Result<BTreeMap<String, u64>, String> {
    let Value::Object(counters) = value else {
        return Err(format!(
            "{ASSIGNED_IDS_KEY:?} must be an object of collection names to the last id assigned"
        ));
    };
    counters
        .into_iter()
        .map(|(name, last)| match last.as_u64() {
            Some(last) => Ok((name, last)),
            None => Err(format!(
                "{ASSIGNED_IDS_KEY:?}: the last id assigned in {name:?} is not a non-negative integer"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::{Collections, StoreOptions};

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            other => panic!("not an object: {other}"),
        }
    }

    fn soft() -> StoreOptions {
        StoreOptions {
            stamp_field: Some("updated_at".to_owned()),
            soft_delete_field: Some("deleted".to_owned()),
            tombstone_retention: None,
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

        let (_, _, undo) = store
            .replace("t", "a", object(json!({"id": "a", "x": 1})))
            .unwrap();
        store.undo(undo);
        assert_eq!(store.list("t"), before);

        let (_, _, undo) = store.insert("u", "z", object(json!({"id": "z"})));
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
        let back = Collections::from_file_text(&text, 0, StoreOptions::default()).unwrap();
        assert_eq!(back.snapshot(), store.snapshot());
        assert_eq!(back.list("tasks"), store.list("tasks"));
        let empty = Collections::from_file_text(b"{}", 0, StoreOptions::default()).unwrap();
        assert_eq!(empty.snapshot().len(), 0);
    }

    #[test]
    fn versions_are_never_reused_and_undo_restores_them() {
        let mut store = Collections::new(100, StoreOptions::default());
        let _ = store.insert("t", "a", object(json!({"id": "a"})));
        assert_eq!(store.version("t", "a"), Some(101));
        let (_, _, undo) = store
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
        let text = store.to_file_text().unwrap();
        let loaded = Collections::from_file_text(&text, 500, StoreOptions::default()).unwrap();
        assert_eq!(loaded.version("t", "a"), Some(501));
        assert_eq!(loaded.feed_bounds("t"), (500, 501));
    }

    #[test]
    fn generated_ids_skip_ids_in_use() {
        let mut store = Collections::default();
        let _ = store.insert("t", "1", object(json!({"id": 1})));
        let _ = store.insert("t", "3", object(json!({"id": 3})));
        let _ = store.remove("t", "3");
        assert_eq!(store.generate_id("t"), "2");
        assert_eq!(store.generate_id("t"), "4", "not the tombstone's id");
    }

    #[test]
    fn assigned_ids_count_per_collection_skip_taken_ids_and_survive_the_file() {
        let mut store = Collections::default();
        assert_eq!(store.last_assigned_id("t"), 0);
        assert_eq!(store.assign_id("t"), 1);
        assert_eq!(store.assign_id("u"), 1, "counted per collection");
        let _ = store.insert("t", "2", object(json!({"id": 2})));
        let _ = store.insert("t", "3", object(json!({"id": "3"})));
        let _ = store.remove("t", "3");
        assert_eq!(store.assign_id("t"), 4, "past a live id and a tombstone");
        assert_eq!(store.last_assigned_id("t"), 4);
        assert_eq!(store.records("t"), [json!({"id": 2})]);
        assert_eq!(store.record_count("t"), 1);
        assert_eq!(store.record_count("none"), 0);

        let text = store.to_file_text().unwrap();
        let file: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(file["_assigned_ids"], json!({"t": 4, "u": 1}));
        let mut loaded = Collections::from_file_text(&text, 9, StoreOptions::default()).unwrap();
        assert_eq!(loaded.assign_id("t"), 5);
        assert_eq!(loaded.assign_id("u"), 2);
        assert_eq!(loaded.snapshot(), store.snapshot());

        // Only the counters: still an object the next load reads.
        let mut counters_only = Collections::default();
        let _ = counters_only.assign_id("t");
        let text = counters_only.to_file_text().unwrap();
        let loaded = Collections::from_file_text(&text, 0, StoreOptions::default()).unwrap();
        assert_eq!(loaded.last_assigned_id("t"), 1);
        // Without any, the file has json-server's shape alone.
        assert_eq!(Collections::default().to_file_text().unwrap(), b"{\n}\n");
        for bad in [
            r#"{"_assigned_ids": [1]}"#,
            r#"{"_assigned_ids": {"t": -1}}"#,
            r#"{"_assigned_ids": {"t": "4"}}"#,
        ] {
            assert!(
                Collections::from_file_text(bad.as_bytes(), 0, StoreOptions::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_write_takes_the_next_change_stamp_and_undo_gives_the_slot_back() {
        let mut store = Collections::default();
        let _ = store.insert("t", "a", object(json!({"id": "a"})));
        let _ = store.insert("t", "b", object(json!({"id": "b"})));
        let _ = store.replace("t", "a", object(json!({"id": "a", "x": 1})));
        assert_eq!(store.feed_bounds("t"), (0, 3));
        let (_, undo) = store.remove("t", "b").unwrap();
        assert_eq!(store.feed_bounds("t"), (0, 4));
        let feed = |store: &Collections| -> Vec<u64> {
            store
                .collection("t")
                .unwrap()
                .changes_after(0)
                .map(|(change, _)| change)
                .collect()
        };
        assert_eq!(feed(&store), [3, 4], "the latest change per record");
        store.undo(undo);
        assert_eq!(feed(&store), [2, 3]);
        assert_eq!(
            store.feed_bounds("t"),
            (0, 4),
            "a stamp is never handed out twice"
        );
        // The collection outlives its last record: its stamps go on.
        let _ = store.remove("t", "a");
        let _ = store.remove("t", "b");
        assert!(!store.snapshot().contains_key("t"));
        assert_eq!(store.feed_bounds("t"), (0, 6));
        assert_eq!(store.purge_tombstones("t", 5), 1);
        assert_eq!(store.feed_bounds("t"), (5, 6));
        assert_eq!(feed(&store), [6]);
    }

    #[test]
    fn soft_deletes_keep_the_row_and_stamp_it() {
        let mut store = Collections::new(0, soft());
        let (created, _, _) = store.insert("t", "a", object(json!({"id": "a", "updated_at": 1})));
        let first = created["updated_at"].as_u64().unwrap();
        assert!(first > 1, "the server's stamp, not the client's");
        let (deleted, _) = store.remove("t", "a").unwrap();
        assert_eq!(deleted["deleted"], true);
        assert!(deleted["updated_at"].as_u64().unwrap() > first);
        assert!(!store.contains("t", "a"));
        assert_eq!(store.version("t", "a"), None);
        assert!(store.remove("t", "a").is_none());
        assert!(store.replace("t", "a", Map::new()).is_none());
        assert_eq!(store.list("t").len(), 1, "still listed");
        assert!(store.snapshot().is_empty());
        // The file keeps it; a load reads it as deleted.
        let text = store.to_file_text().unwrap();
        let loaded = Collections::from_file_text(&text, 10, soft()).unwrap();
        assert!(!loaded.contains("t", "a"));
        assert_eq!(loaded.list("t"), store.list("t"));
        // A create revives it; a purge forgets it while deleted.
        let _ = store.insert("t", "a", object(json!({"id": "a"})));
        assert!(store.contains("t", "a"));
        let _ = store.remove("t", "a");
        assert_eq!(store.purge_tombstones("t", u64::MAX), 1);
        assert!(store.list("t").is_empty());
    }

    #[test]
    fn retention_forgets_old_deletions_as_writes_go_on() {
        let options = StoreOptions {
            tombstone_retention: Some(2),
            ..StoreOptions::default()
        };
        let mut store = Collections::new(0, options);
        for id in ["a", "b", "c", "d"] {
            let _ = store.insert("t", id, object(json!({"id": id})));
        }
        let _ = store.remove("t", "a"); // stamp 5
        let _ = store.remove("t", "b"); // stamp 6
        assert_eq!(store.feed_bounds("t"), (0, 6));
        let _ = store.replace("t", "c", object(json!({"id": "c"}))); // 7: 5 is 2 back
        assert_eq!(store.feed_bounds("t"), (5, 7));
        let _ = store.replace("t", "c", object(json!({"id": "c"}))); // 8
        assert_eq!(store.feed_bounds("t"), (6, 8));
    }
}
