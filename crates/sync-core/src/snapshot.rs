//! Snapshots kept current from store events: one initial read, then each
//! event costs O(log n), whatever the size of the queue or the collection.
//!
//! The reference re-reads the entire queue after every write, which makes
//! draining n items O(n²). A subscriber that wants whole lists builds them
//! here instead: [`QueueSnapshot::new`] from one `queue()` read, then
//! [`QueueSnapshot::apply`] per event. When an event reports
//! [`StoreEvent::Lagged`], `apply` returns [`Applied::Resync`]: read again.

use std::collections::{BTreeMap, HashMap};

use crate::clock::Timestamp;
use crate::ids::{EntityName, RecordKey};
use crate::model::{LocalRecord, SyncQueueItem, SyncStatus};
use crate::seams::StoreEvent;

/// What an event did to a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The snapshot changed.
    Changed,
    /// The event did not concern this snapshot.
    Unchanged,
    /// Events were missed: rebuild the snapshot from a fresh read.
    Resync,
}

/// The queue in send order (`created_at`, then record key), kept current
/// from events.
#[derive(Debug, Clone, Default)]
pub struct QueueSnapshot {
    ordered: BTreeMap<(Timestamp, RecordKey), SyncQueueItem>,
    positions: HashMap<RecordKey, Timestamp>,
}

impl QueueSnapshot {
    /// A snapshot of `items` (typically one `SyncStore::queue()` read).
    #[must_use]
    pub fn new(items: impl IntoIterator<Item = SyncQueueItem>) -> Self {
        let mut snapshot = Self::default();
        for item in items {
            snapshot.put(item);
        }
        snapshot
    }

    fn put(&mut self, item: SyncQueueItem) {
        let key = item.key();
        if let Some(old) = self.positions.insert(key.clone(), item.created_at) {
            self.ordered.remove(&(old, key.clone()));
        }
        self.ordered.insert((item.created_at, key), item);
    }

    fn remove(&mut self, key: &RecordKey) -> bool {
        match self.positions.remove(key) {
            Some(created_at) => self.ordered.remove(&(created_at, key.clone())).is_some(),
            None => false,
        }
    }

    /// Applies one store event in O(log n).
    pub fn apply(&mut self, event: &StoreEvent) -> Applied {
        match event {
            StoreEvent::QueueItem { item: Some(item), .. } => {
                self.put(item.clone());
                Applied::Changed
            }
            StoreEvent::QueueItem { key, item: None } => {
                if self.remove(key) {
                    Applied::Changed
                } else {
                    Applied::Unchanged
                }
            }
            StoreEvent::SyncedCleared => {
                let synced: Vec<RecordKey> = self
                    .ordered
                    .values()
                    .filter(|item| item.status == SyncStatus::Synced && !item.is_in_flight())
                    .map(SyncQueueItem::key)
                    .collect();
                for key in &synced {
                    self.remove(key);
                }
                if synced.is_empty() {
                    Applied::Unchanged
                } else {
                    Applied::Changed
                }
            }
            StoreEvent::Lagged => Applied::Resync,
            StoreEvent::Record { .. } | StoreEvent::Renamed { .. } => Applied::Unchanged,
        }
    }

    /// One record's item.
    #[must_use]
    pub fn get(&self, key: &RecordKey) -> Option<&SyncQueueItem> {
        let created_at = self.positions.get(key)?;
        self.ordered.get(&(*created_at, key.clone()))
    }

    /// The items in send order.
    pub fn iter(&self) -> impl Iterator<Item = &SyncQueueItem> {
        self.ordered.values()
    }

    /// How many items.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ordered.len()
    }

    /// Whether the queue is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    /// The items in send order, as an owned list.
    #[must_use]
    pub fn to_vec(&self) -> Vec<SyncQueueItem> {
        self.ordered.values().cloned().collect()
    }
}

/// One entity's local documents, most recently updated first (then by id),
/// kept current from events.
#[derive(Debug, Clone)]
pub struct RecordsSnapshot {
    entity: EntityName,
    ordered: BTreeMap<(std::cmp::Reverse<Timestamp>, crate::ids::RecordId), LocalRecord>,
    positions: HashMap<crate::ids::RecordId, Timestamp>,
}

impl RecordsSnapshot {
    /// A snapshot of `entity` from `records` (typically one
    /// `SyncStore::records(entity)` read); records of other entities are
    /// ignored.
    #[must_use]
    pub fn new(entity: EntityName, records: impl IntoIterator<Item = LocalRecord>) -> Self {
        let mut snapshot = Self {
            entity,
            ordered: BTreeMap::new(),
            positions: HashMap::new(),
        };
        for record in records {
            if record.entity == snapshot.entity {
                snapshot.put(record);
            }
        }
        snapshot
    }

    fn put(&mut self, record: LocalRecord) {
        if let Some(old) = self.positions.insert(record.id.clone(), record.updated_at) {
            self.ordered.remove(&(std::cmp::Reverse(old), record.id.clone()));
        }
        self.ordered
            .insert((std::cmp::Reverse(record.updated_at), record.id.clone()), record);
    }

    /// Applies one store event in O(log n).
    pub fn apply(&mut self, event: &StoreEvent) -> Applied {
        match event {
            StoreEvent::Record { key, record } if key.entity == self.entity => match record {
                Some(record) => {
                    self.put(record.clone());
                    Applied::Changed
                }
                None => match self.positions.remove(&key.id) {
                    Some(updated_at) => {
                        self.ordered
                            .remove(&(std::cmp::Reverse(updated_at), key.id.clone()));
                        Applied::Changed
                    }
                    None => Applied::Unchanged,
                },
            },
            StoreEvent::Lagged => Applied::Resync,
            _ => Applied::Unchanged,
        }
    }

    /// The entity this snapshot follows.
    #[must_use]
    pub fn entity(&self) -> &EntityName {
        &self.entity
    }

    /// The records, most recently updated first.
    pub fn iter(&self) -> impl Iterator<Item = &LocalRecord> {
        self.ordered.values()
    }

    /// How many records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ordered.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    /// The records, most recently updated first, as an owned list.
    #[must_use]
    pub fn to_vec(&self) -> Vec<LocalRecord> {
        self.ordered.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::coalesce::{QueueWrite, SaveContext, plan_save};
    use crate::model::{LocalChange, SyncOperation};

    fn item(id: &str, created: i64) -> SyncQueueItem {
        let change = LocalChange::new("tasks", id, json!({}), SyncOperation::Create).unwrap();
        match plan_save(
            None,
            false,
            change,
            SaveContext::at(Timestamp::from_millis(created)),
        )
        .queue
        {
            QueueWrite::Put(item) => item,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn queue_snapshot_keeps_send_order_through_updates_and_removals() {
        let mut snapshot = QueueSnapshot::new([item("b", 2), item("a", 1)]);
        let ids = |s: &QueueSnapshot| s.iter().map(|i| i.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&snapshot), ["a", "b"]);

        let mut moved = item("a", 3);
        moved.status = SyncStatus::Synced;
        let event = StoreEvent::QueueItem {
            key: moved.key(),
            item: Some(moved),
        };
        assert_eq!(snapshot.apply(&event), Applied::Changed);
        assert_eq!(
            ids(&snapshot),
            ["b", "a"],
            "a new entry moves to its new place, once"
        );
        assert_eq!(snapshot.len(), 2);

        assert_eq!(snapshot.apply(&StoreEvent::SyncedCleared), Applied::Changed);
        assert_eq!(ids(&snapshot), ["b"]);
        let gone = StoreEvent::QueueItem {
            key: item("b", 0).key(),
            item: None,
        };
        assert_eq!(snapshot.apply(&gone), Applied::Changed);
        assert_eq!(snapshot.apply(&gone), Applied::Unchanged);
        assert!(snapshot.is_empty());
        assert_eq!(snapshot.apply(&StoreEvent::Lagged), Applied::Resync);
    }

    #[test]
    fn records_snapshot_follows_one_entity_newest_first() {
        let record = |entity: &str, id: &str, updated: i64| LocalRecord {
            entity: entity.parse().unwrap(),
            id: id.parse().unwrap(),
            data: crate::JsonObject::new(),
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::from_millis(updated),
        };
        let tasks: EntityName = "tasks".parse().unwrap();
        let mut snapshot =
            RecordsSnapshot::new(tasks.clone(), [record("tasks", "a", 1), record("notes", "x", 9)]);
        assert_eq!(snapshot.len(), 1);
        let put = |r: LocalRecord| StoreEvent::Record {
            key: RecordKey::new(r.entity.clone(), r.id.clone()),
            record: Some(r),
        };
        assert_eq!(snapshot.apply(&put(record("tasks", "b", 2))), Applied::Changed);
        assert_eq!(snapshot.apply(&put(record("notes", "y", 3))), Applied::Unchanged);
        assert_eq!(snapshot.apply(&put(record("tasks", "a", 5))), Applied::Changed);
        let ids: Vec<String> = snapshot.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(ids, ["a", "b"]);
        let removed = StoreEvent::Record {
            key: RecordKey::new(tasks.clone(), "b".parse().unwrap()),
            record: None,
        };
        assert_eq!(snapshot.apply(&removed), Applied::Changed);
        assert_eq!(snapshot.to_vec().len(), 1);
        assert_eq!(snapshot.entity(), &tasks);
    }
}
