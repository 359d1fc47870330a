//! [`Changes`]: the row writes and events of one write command, gathered
//! as sync-core's decisions apply in memory, then made with a few
//! multi-row statements (one per table and kind of write, per chunk).

use std::collections::{HashMap, HashSet};

use sqlx::SqliteConnection;
use sync_core::coalesce::{DocumentWrite, QueueWrite};
use sync_core::{
    CopyWrite, LocalRecord, RecordKey, ServerCopy, StoreError, StoreEvent, SyncQueueItem, Timestamp,
};

use crate::rows::{self, CHUNK, KeyState};
use crate::writer::Statements;

/// Pending row writes and their events, applied at the end of a command.
#[derive(Default)]
pub(crate) struct Changes {
    /// Set for attempt transitions: they change items that exist and never
    /// their payloads, so only the other columns are written.
    pub(crate) metadata_only: bool,
    pub(crate) states: HashMap<RecordKey, KeyState>,
    /// Keys whose item changed, in first-change order: new rows get their
    /// `seq` (the tie-break of the queue order) in the order they were saved.
    items: Vec<RecordKey>,
    item_keys: HashSet<RecordKey>,
    documents: HashMap<RecordKey, Option<LocalRecord>>,
    /// Server copies to write (`None`: remove).
    pub(crate) copies: HashMap<RecordKey, Option<ServerCopy>>,
    pub(crate) events: Vec<StoreEvent>,
}

impl Changes {
    pub(crate) fn state(&mut self, key: &RecordKey) -> &mut KeyState {
        self.states.entry(key.clone()).or_default()
    }

    pub(crate) fn queue(&mut self, key: &RecordKey, write: QueueWrite) {
        let item = match write {
            QueueWrite::Keep => return,
            QueueWrite::Put(item) => Some(item),
            QueueWrite::Remove => {
                if self.state(key).item.is_none() {
                    return;
                }
                None
            }
        };
        self.state(key).item.clone_from(&item);
        if self.item_keys.insert(key.clone()) {
            self.items.push(key.clone());
        }
        self.events.push(StoreEvent::QueueItem {
            key: key.clone(),
            item,
        });
    }

    pub(crate) fn document(
        &mut self,
        key: &RecordKey,
        write: DocumentWrite,
        now: Timestamp,
    ) -> Option<LocalRecord> {
        let state = self.state(key);
        let record = match write {
            DocumentWrite::Upsert(data) => {
                let created_at = *state.document_created_at.get_or_insert(now);
                Some(LocalRecord {
                    entity: key.entity.clone(),
                    id: key.id.clone(),
                    data,
                    created_at,
                    updated_at: now,
                })
            }
            DocumentWrite::Remove => {
                state.document_created_at.take()?;
                None
            }
        };
        self.documents.insert(key.clone(), record.clone());
        self.events.push(StoreEvent::Record {
            key: key.clone(),
            record: record.clone(),
        });
        record
    }

    /// Writes or removes the record's server copy as `write` says.
    pub(crate) fn copy(&mut self, key: &RecordKey, write: CopyWrite) {
        match write {
            CopyWrite::Keep => {}
            CopyWrite::Put(copy) => {
                self.copies.insert(key.clone(), Some(copy));
            }
            CopyWrite::Remove => {
                self.copies.insert(key.clone(), None);
            }
        }
    }

    /// Writes the final state of every touched row: a few statements in all.
    pub(crate) async fn write(
        &self,
        connection: &mut SqliteConnection,
        statements: &Statements,
    ) -> Result<(), StoreError> {
        let mut upserts: Vec<&SyncQueueItem> = Vec::new();
        let mut removed: Vec<&RecordKey> = Vec::new();
        for key in &self.items {
            match self.states.get(key).and_then(|state| state.item.as_ref()) {
                Some(item) => upserts.push(item),
                None => removed.push(key),
            }
        }
        let mut records: Vec<&LocalRecord> = Vec::new();
        let mut removed_records: Vec<&RecordKey> = Vec::new();
        for (key, record) in &self.documents {
            match record {
                Some(record) => records.push(record),
                None => removed_records.push(key),
            }
        }
        let mut copies: Vec<(&RecordKey, &ServerCopy)> = Vec::new();
        let mut removed_copies: Vec<&RecordKey> = Vec::new();
        for (key, copy) in &self.copies {
            match copy {
                Some(copy) => copies.push((key, copy)),
                None => removed_copies.push(key),
            }
        }
        let count = |len: usize| len.div_ceil(CHUNK) as u64;
        statements.add(
            count(upserts.len())
                + count(removed.len())
                + count(records.len())
                + count(removed_records.len())
                + count(copies.len())
                + count(removed_copies.len()),
        );
        if self.metadata_only && removed.is_empty() {
            rows::update_item_metadata(connection, &upserts).await?;
        } else {
            rows::upsert_items(connection, &upserts).await?;
        }
        rows::delete_keys(connection, "queue", &removed).await?;
        rows::upsert_records(connection, &records).await?;
        rows::delete_keys(connection, "records", &removed_records).await?;
        rows::upsert_copies(connection, &copies).await?;
        rows::delete_keys(connection, "server_copies", &removed_copies).await?;
        Ok(())
    }
}
