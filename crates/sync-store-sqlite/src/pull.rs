//! Pulls: the server's pages applied by the writer, one `BEGIN IMMEDIATE`
//! transaction each. The stored pull state is checked against the one the
//! page was pulled from, every change is applied by
//! `sync_core::pull::plan_pulled` in order, the records a listing showed are
//! marked with its generation, its sweep asks `sync_core::pull::sweeps`
//! about the others, and the state after is stored, all in the transaction;
//! events are published after the commit. A save committed while the page
//! was on the wire is read inside the transaction, so no pending change is
//! overwritten.
//!
//! Also here: the read of the merge candidates (`pending_changes`) and the
//! size check made before a page reaches the writer.

use std::collections::{HashMap, HashSet};

use sqlx::SqliteConnection;
use sync_core::coalesce::{DocumentWrite, QueueWrite};
use sync_core::pull::{
    Listing, PendingChange, PreparedMerge, PullBatch, PullCounts, PulledChange, PulledPlan, merges_into,
    pending_change, plan_pulled, sweeps,
};
use sync_core::{
    CopyWrite, EntityName, LocalRecord, RecordId, RecordKey, ServerCopy, StoreError, StoreEvent,
    SyncQueueItem, Timestamp,
};

use crate::pull_rows::{self, Candidate, CopyText};
use crate::rows::{self, CHUNK, json_text};
use crate::store::EVENT_BUFFER;
use crate::writer::{Statements, WorkResult, Writer};

/// Statements needed for `rows` rows, one per chunk.
fn chunks(rows: usize) -> u64 {
    rows.div_ceil(CHUNK) as u64
}

/// The merge candidates among `ids` of `entity`, in the order of `ids`,
/// with their bases: one read of the queue items and one of the server
/// copies (per chunk of ids).
pub(crate) async fn pending_changes(
    connection: &mut SqliteConnection,
    entity: &EntityName,
    ids: &[RecordId],
    statements: &Statements,
) -> Result<Vec<PendingChange>, StoreError> {
    let mut seen = HashSet::new();
    let ids: Vec<&RecordId> = ids.iter().filter(|id| seen.insert(*id)).collect();
    statements.add(chunks(ids.len()));
    let mut items: HashMap<RecordId, SyncQueueItem> = pull_rows::load_items(connection, entity, &ids)
        .await?
        .into_iter()
        .filter(merges_into)
        .map(|item| (item.id.clone(), item))
        .collect();
    let candidates: Vec<(RecordKey, SyncQueueItem)> = ids
        .iter()
        .filter_map(|id| items.remove(*id))
        .map(|item| (item.key(), item))
        .collect();
    let keys: Vec<&RecordKey> = candidates.iter().map(|(key, _)| key).collect();
    statements.add(chunks(keys.len()));
    let mut copies = rows::load_copies(connection, &keys).await?;
    Ok(candidates
        .iter()
        .filter_map(|(key, item)| pending_change(item, copies.remove(key)))
        .collect())
}

/// One record of a group as its changes apply.
#[derive(Default)]
struct Row {
    /// Its queue item now.
    item: Option<SyncQueueItem>,
    /// Its document's `created_at`, while it has one.
    created_at: Option<Timestamp>,
    /// Its document as written (`Some(None)`: removed); `None`: untouched.
    document: Option<Option<LocalRecord>>,
    /// Whether its item was written or removed.
    item_changed: bool,
    /// Its server copy as written (`Some(None)`: removed); `None`: untouched.
    copy: Option<Option<ServerCopy>>,
    /// Whether an upsert of the page named it (a listing marks it).
    upserted: bool,
    /// Whether a change touched it (it is in the group's order).
    touched: bool,
}

/// The writes of a group of records of one entity (a page, or a chunk of a
/// sweep), gathered in memory as the changes apply in order, then made
/// with a few multi-row statements.
struct Group {
    entity: EntityName,
    /// Touched ids in first-change order.
    order: Vec<RecordId>,
    rows: HashMap<RecordId, Row>,
}

impl Group {
    fn new(entity: EntityName, capacity: usize) -> Self {
        Self {
            entity,
            order: Vec::with_capacity(capacity),
            rows: HashMap::with_capacity(capacity),
        }
    }

    /// Records what the store holds for `id` before the group's changes.
    fn start(&mut self, id: RecordId, item: Option<SyncQueueItem>, created_at: Option<Timestamp>) {
        self.rows.insert(
            id,
            Row {
                item,
                created_at,
                ..Row::default()
            },
        );
    }

    /// Records that `id` has a document created at `created_at`.
    fn start_document(&mut self, id: RecordId, created_at: Timestamp) {
        self.rows.entry(id).or_default().created_at = Some(created_at);
    }

    /// The record's queue item and whether it has a document, now.
    fn facts(&self, id: &RecordId) -> (Option<&SyncQueueItem>, bool) {
        self.rows
            .get(id)
            .map_or((None, false), |row| (row.item.as_ref(), row.created_at.is_some()))
    }

    /// Applies one plan to the record's row, so the next change for it
    /// sees its effect.
    fn apply(&mut self, id: &RecordId, plan: PulledPlan, now: Timestamp, upsert: bool) {
        let row = self.rows.entry(id.clone()).or_default();
        if !row.touched {
            row.touched = true;
            self.order.push(id.clone());
        }
        row.upserted |= upsert;
        match plan.document {
            Some(DocumentWrite::Upsert(data)) => {
                let created_at = *row.created_at.get_or_insert(now);
                row.document = Some(Some(LocalRecord {
                    entity: self.entity.clone(),
                    id: id.clone(),
                    data,
                    created_at,
                    updated_at: now,
                }));
            }
            Some(DocumentWrite::Remove) if row.created_at.is_some() => {
                row.created_at = None;
                row.document = Some(None);
            }
            Some(DocumentWrite::Remove) | None => {}
        }
        match plan.queue {
            QueueWrite::Put(item) => {
                row.item = Some(item);
                row.item_changed = true;
            }
            QueueWrite::Remove if row.item.is_some() => {
                row.item = None;
                row.item_changed = true;
            }
            QueueWrite::Remove | QueueWrite::Keep => {}
        }
        match plan.copy {
            CopyWrite::Keep => {}
            CopyWrite::Put(copy) => row.copy = Some(Some(copy)),
            CopyWrite::Remove => row.copy = Some(None),
        }
    }

    fn key(&self, id: &RecordId) -> RecordKey {
        RecordKey::new(self.entity.clone(), id.clone())
    }

    /// Makes the group's writes: one statement per table and kind of write
    /// (per chunk). Documents written get `mark` (a listing's generation);
    /// documents the page named in an upsert but kept (a pending change)
    /// are marked too, with one update.
    async fn write(
        &self,
        connection: &mut SqliteConnection,
        statements: &Statements,
        mark: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut items: Vec<&SyncQueueItem> = Vec::new();
        let mut removed_items: Vec<RecordKey> = Vec::new();
        let mut records: Vec<(&LocalRecord, String)> = Vec::new();
        let mut removed_records: Vec<RecordKey> = Vec::new();
        let mut copies: Vec<CopyText<'_>> = Vec::new();
        let mut removed_copies: Vec<RecordKey> = Vec::new();
        let mut marks: Vec<&RecordId> = Vec::new();
        for (id, row) in self.order.iter().filter_map(|id| Some((id, self.rows.get(id)?))) {
            let document = match &row.document {
                Some(Some(record)) => {
                    records.push((record, json_text(&record.data)));
                    Some(record)
                }
                Some(None) => {
                    removed_records.push(self.key(id));
                    None
                }
                None => {
                    if row.upserted && row.created_at.is_some() {
                        marks.push(id);
                    }
                    None
                }
            };
            match &row.copy {
                Some(Some(copy)) => {
                    // A document and the server's copy are most often the
                    // same object: encoded once.
                    let text = match (document, records.last()) {
                        (Some(record), Some((_, text))) if copy.data == record.data => text.clone(),
                        _ => json_text(&copy.data),
                    };
                    copies.push((id, text, copy.version.as_deref()));
                }
                Some(None) => removed_copies.push(self.key(id)),
                None => {}
            }
            if row.item_changed {
                match &row.item {
                    Some(item) => items.push(item),
                    None => removed_items.push(self.key(id)),
                }
            }
        }
        if mark.is_none() {
            marks.clear();
        }
        statements.add(
            chunks(items.len())
                + chunks(removed_items.len())
                + chunks(records.len())
                + chunks(removed_records.len())
                + chunks(copies.len())
                + chunks(removed_copies.len())
                + chunks(marks.len()),
        );
        rows::upsert_items(connection, &items).await?;
        rows::delete_keys(connection, "queue", &removed_items.iter().collect::<Vec<_>>()).await?;
        pull_rows::upsert_records(connection, records, mark).await?;
        rows::delete_keys(connection, "records", &removed_records.iter().collect::<Vec<_>>()).await?;
        pull_rows::upsert_copies(connection, &self.entity, copies).await?;
        rows::delete_keys(
            connection,
            "server_copies",
            &removed_copies.iter().collect::<Vec<_>>(),
        )
        .await?;
        if let Some(generation) = mark {
            pull_rows::mark_records(connection, &self.entity, &marks, generation).await?;
        }
        Ok(())
    }

    /// How many events [`Self::into_events`] gives.
    fn event_count(&self) -> usize {
        self.rows
            .values()
            .map(|row| usize::from(row.document.is_some()) + usize::from(row.item_changed))
            .sum()
    }

    /// One event per changed row, the row after the group.
    fn into_events(mut self, events: &mut Vec<StoreEvent>) {
        for id in self.order {
            let Some(row) = self.rows.remove(&id) else {
                continue;
            };
            let key = RecordKey::new(self.entity.clone(), id);
            if let Some(record) = row.document {
                events.push(StoreEvent::Record {
                    key: key.clone(),
                    record,
                });
            }
            if row.item_changed {
                events.push(StoreEvent::QueueItem { key, item: row.item });
            }
        }
    }
}

/// A sweep's events, kept up to what subscribers can buffer: past that,
/// they would lag anyway, and are told so with one [`StoreEvent::Lagged`].
#[derive(Default)]
struct Swept {
    events: Vec<StoreEvent>,
    overflow: bool,
}

impl Swept {
    fn keep(&mut self, group: Group) {
        if self.overflow {
            return;
        }
        if self.events.len() + group.event_count() > EVENT_BUFFER {
            self.overflow = true;
            self.events = Vec::new();
            return;
        }
        group.into_events(&mut self.events);
    }
}

/// What a committed page leaves to publish.
struct Applied {
    counts: PullCounts,
    page: Group,
    swept: Swept,
}

impl Writer {
    /// Applies one pulled page in one transaction; publishes its events
    /// after the commit.
    pub(crate) async fn apply_pull(
        &mut self,
        batch: &PullBatch,
        now: Timestamp,
    ) -> Result<PullCounts, StoreError> {
        self.begin().await?;
        let work = self.pull_page(batch, now).await;
        let Applied { counts, page, swept } = self.end(work).await?;
        // Events are built only for someone listening (checked after the
        // commit: a later subscriber reads the committed state).
        if self.events.receiver_count() > 0 {
            if swept.overflow || page.event_count() + swept.events.len() > EVENT_BUFFER {
                let _ = self.events.send(StoreEvent::Lagged);
            } else {
                let mut events = Vec::with_capacity(page.event_count() + swept.events.len());
                page.into_events(&mut events);
                events.extend(swept.events);
                for event in events {
                    // No subscriber is not an error.
                    let _ = self.events.send(event);
                }
            }
        }
        Ok(counts)
    }

    /// The page's work inside the transaction.
    async fn pull_page(&mut self, batch: &PullBatch, now: Timestamp) -> WorkResult<Applied> {
        let entity = &batch.entity;
        self.statements.add(1);
        let stored = pull_rows::read_state(&mut self.connection, entity).await?;
        if stored != batch.expected {
            return Err(batch.moved_on());
        }
        // One read of the items and one of the documents of the page's records.
        let mut seen = HashSet::new();
        let ids: Vec<&RecordId> = batch
            .changes
            .iter()
            .map(PulledChange::id)
            .filter(|id| seen.insert(*id))
            .collect();
        self.statements.add(2 * chunks(ids.len()));
        let items = pull_rows::load_items(&mut self.connection, entity, &ids).await?;
        let documents = pull_rows::load_documents(&mut self.connection, entity, &ids).await?;
        let mut page = Group::new(entity.clone(), ids.len());
        for item in items {
            let id = item.id.clone();
            page.start(id, Some(item), None);
        }
        for (id, created_at) in documents {
            page.start_document(id, created_at);
        }
        let mut merges: HashMap<&RecordId, &PreparedMerge> = HashMap::with_capacity(batch.merges.len());
        for merge in &batch.merges {
            merges.entry(&merge.id).or_insert(merge);
        }
        let mut counts = PullCounts::default();
        for change in &batch.changes {
            let id = change.id();
            let (item, local_exists) = page.facts(id);
            let plan = plan_pulled(item, local_exists, change, merges.get(id).copied(), now);
            counts.count(plan.effect);
            page.apply(id, plan, now, matches!(change, PulledChange::Upsert { .. }));
        }
        page.write(&mut self.connection, &self.statements, batch.plan.mark)
            .await?;
        let mut swept = Swept::default();
        if let Some(listing) = &batch.plan.sweep {
            self.sweep(entity, listing, now, &mut counts, &mut swept).await?;
        }
        self.statements.add(1);
        pull_rows::write_state(&mut self.connection, entity, &batch.plan.after).await?;
        Ok((Applied { counts, page, swept }, Vec::new()))
    }

    /// Removes, as tombstones would, the records of `entity` the listing
    /// did not show that [`sweeps`] lets go: a chunk of candidates at a
    /// time, so memory stays bounded whatever the entity's size.
    async fn sweep(
        &mut self,
        entity: &EntityName,
        listing: &Listing,
        now: Timestamp,
        counts: &mut PullCounts,
        swept: &mut Swept,
    ) -> Result<(), StoreError> {
        let mut after = String::new();
        loop {
            self.statements.add(1);
            let candidates =
                pull_rows::sweep_candidates(&mut self.connection, entity, listing.generation, &after, CHUNK)
                    .await?;
            let Some(last) = candidates.last() else {
                return Ok(());
            };
            after = last.id.as_str().to_owned();
            let more = candidates.len() == CHUNK;
            let mut group = Group::new(entity.clone(), 0);
            for Candidate {
                id,
                created_at,
                pulled_in,
                item,
            } in candidates
            {
                if !sweeps(item.as_ref(), pulled_in, listing) {
                    continue;
                }
                let tombstone = PulledChange::Tombstone { id };
                let plan = plan_pulled(item.as_ref(), true, &tombstone, None, now);
                counts.count(plan.effect);
                let id = tombstone.id();
                group.start(id.clone(), item, Some(created_at));
                group.apply(id, plan, now, false);
            }
            group.write(&mut self.connection, &self.statements, None).await?;
            swept.keep(group);
            if !more {
                return Ok(());
            }
        }
    }
}
