//! An in-memory store: the executable reference for `SyncStore`.

mod pull;
mod rename;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use sync_core::attempt::{begin_attempt, rearm_for_pass, recover_interrupted, retry_now, retry_one};
use sync_core::coalesce::{DocumentWrite, QueueWrite, SaveContext, plan_save};
use sync_core::model::check_payload_size;
use sync_core::pull::{PendingChange, PullBatch, PullCounts, PullState};
use sync_core::{
    AttemptTicket, BoxStream, CopyWrite, DEFAULT_MAX_PAYLOAD_BYTES, EntityName, FinishResult,
    FinishedAttempt, LocalChange, LocalRecord, QueueCounts, RecordId, RecordKey, RetryPolicy, SavedChange,
    ServerCopy, StoreError, StoreErrorKind, StoreEvent, SyncQueueItem, SyncStatus, SyncStore, Timestamp,
};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// How many events a slow subscriber may fall behind before it is told
/// [`StoreEvent::Lagged`].
const EVENT_BUFFER: usize = 1024;

/// A queue item and its insertion order, which breaks `created_at` ties.
#[derive(Debug, Clone)]
struct Entry {
    item: SyncQueueItem,
    seq: u64,
}

/// Writes or removes the record's server copy as `write` says.
fn apply_copy(state: &mut State, key: &RecordKey, write: CopyWrite) {
    match write {
        CopyWrite::Keep => {}
        CopyWrite::Put(copy) => {
            state.copies.insert(key.clone(), copy);
        }
        CopyWrite::Remove => {
            state.copies.remove(key);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: BTreeMap<RecordKey, Entry>,
    records: BTreeMap<RecordKey, LocalRecord>,
    copies: BTreeMap<RecordKey, ServerCopy>,
    /// Each pulled entity's state.
    pulls: BTreeMap<EntityName, PullState>,
    /// The generation of the full listing that last showed each record.
    pulled_in: BTreeMap<RecordKey, u64>,
    /// Temporary ids renamed to the server's ids.
    aliases: std::collections::HashMap<RecordId, sync_core::rename::Alias>,
    next_seq: u64,
    closed: bool,
}

/// An in-memory [`SyncStore`]: same semantics as the SQLite store, no
/// durability. Cheap to create; each instance is independent.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<StoreEvent>,
    max_payload_bytes: usize,
    /// Outcome recordings to refuse, counted down.
    failing_finishes: std::sync::atomic::AtomicUsize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with the default 1 MiB payload limit.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_payload_bytes(DEFAULT_MAX_PAYLOAD_BYTES)
    }

    /// An empty store rejecting payloads over `max_payload_bytes`.
    #[must_use]
    pub fn with_max_payload_bytes(max_payload_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            events: broadcast::channel(EVENT_BUFFER).0,
            max_payload_bytes,
            failing_finishes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Makes the next `count` calls of `finish_attempts` fail as a busy
    /// database would, changing nothing: for testing how callers keep
    /// outcomes they could not record.
    pub fn fail_next_finishes(&self, count: usize) {
        self.failing_finishes
            .store(count, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes the store: every later call fails with
    /// [`StoreErrorKind::Closed`], as a closed database would.
    pub fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self.state.lock().map_err(|_| {
            StoreError::new(
                StoreErrorKind::Other,
                "memory store poisoned by a panic: recreate it",
            )
        })?;
        if state.closed {
            return Err(StoreError::new(
                StoreErrorKind::Closed,
                "the store was closed: open a new one",
            ));
        }
        Ok(state)
    }

    fn emit(&self, event: StoreEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    fn put_item(&self, state: &mut State, item: SyncQueueItem) {
        let key = item.key();
        let seq = match state.queue.get(&key) {
            Some(entry) if entry.item.created_at == item.created_at => entry.seq,
            _ => {
                state.next_seq += 1;
                state.next_seq
            }
        };
        state.queue.insert(
            key.clone(),
            Entry {
                item: item.clone(),
                seq,
            },
        );
        self.emit(StoreEvent::QueueItem {
            key,
            item: Some(item),
        });
    }

    fn apply_queue(&self, state: &mut State, key: &RecordKey, write: QueueWrite) {
        match write {
            QueueWrite::Put(item) => self.put_item(state, item),
            QueueWrite::Remove => {
                if state.queue.remove(key).is_some() {
                    self.emit(StoreEvent::QueueItem {
                        key: key.clone(),
                        item: None,
                    });
                }
            }
            QueueWrite::Keep => {}
        }
    }

    fn apply_document(&self, state: &mut State, key: &RecordKey, write: DocumentWrite, now: Timestamp) {
        let record = match write {
            DocumentWrite::Upsert(data) => {
                let created_at = state.records.get(key).map_or(now, |record| record.created_at);
                let record = LocalRecord {
                    entity: key.entity.clone(),
                    id: key.id.clone(),
                    data,
                    created_at,
                    updated_at: now,
                };
                state.records.insert(key.clone(), record.clone());
                Some(record)
            }
            DocumentWrite::Remove => {
                state.pulled_in.remove(key);
                if state.records.remove(key).is_none() {
                    return;
                }
                None
            }
        };
        self.emit(StoreEvent::Record {
            key: key.clone(),
            record,
        });
    }

    fn save_locked(&self, state: &mut State, change: LocalChange, now: Timestamp) -> SavedChange {
        let change = Self::resolve_change(state, change);
        let key = change.key.clone();
        let local_exists = state.records.contains_key(&key);
        let existing = state.queue.get(&key).map(|entry| &entry.item);
        let plan = plan_save(existing, local_exists, change, SaveContext::at(now));
        self.apply_queue(state, &key, plan.queue);
        self.apply_document(state, &key, plan.document, now);
        SavedChange {
            item: state.queue.get(&key).map(|entry| entry.item.clone()),
            record: state.records.get(&key).cloned(),
        }
    }

    fn sorted_queue(state: &State) -> Vec<&Entry> {
        let mut entries: Vec<&Entry> = state.queue.values().collect();
        entries.sort_by_key(|entry| (entry.item.created_at, entry.seq));
        entries
    }

    /// Replaces every item for which `change` returns a new version.
    fn update_each(
        &self,
        state: &mut State,
        change: impl Fn(&SyncQueueItem) -> Option<SyncQueueItem>,
    ) -> u64 {
        let changed: Vec<SyncQueueItem> = state
            .queue
            .values()
            .filter_map(|entry| change(&entry.item))
            .collect();
        let count = changed.len() as u64;
        for item in changed {
            self.put_item(state, item);
        }
        count
    }
}

#[async_trait]
impl SyncStore for MemoryStore {
    async fn save(&self, change: LocalChange, now: Timestamp) -> Result<SavedChange, StoreError> {
        let mut state = self.lock()?;
        check_payload_size(&change.payload, self.max_payload_bytes)?;
        Ok(self.save_locked(&mut state, change, now))
    }

    async fn save_batch(
        &self,
        changes: Vec<LocalChange>,
        now: Timestamp,
    ) -> Result<Vec<SavedChange>, StoreError> {
        let mut state = self.lock()?;
        // Validation is the only way a memory save can fail: check all
        // first, so the batch applies fully or not at all.
        for change in &changes {
            check_payload_size(&change.payload, self.max_payload_bytes)?;
        }
        Ok(changes
            .into_iter()
            .map(|change| self.save_locked(&mut state, change, now))
            .collect())
    }

    async fn record(&self, key: &RecordKey) -> Result<Option<LocalRecord>, StoreError> {
        let state = self.lock()?;
        Ok(state.records.get(&Self::resolve_key(&state, key)).cloned())
    }

    async fn resolve_id(&self, key: &RecordKey) -> Result<RecordId, StoreError> {
        let state = self.lock()?;
        Ok(Self::resolve_key(&state, key).id)
    }

    async fn records(&self, entity: &EntityName) -> Result<Vec<LocalRecord>, StoreError> {
        let state = self.lock()?;
        let mut records: Vec<LocalRecord> = state
            .records
            .values()
            .filter(|record| &record.entity == entity)
            .cloned()
            .collect();
        records.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then_with(|| a.id.cmp(&b.id)));
        Ok(records)
    }

    async fn queue_item(&self, key: &RecordKey) -> Result<Option<SyncQueueItem>, StoreError> {
        let state = self.lock()?;
        Ok(state
            .queue
            .get(&Self::resolve_key(&state, key))
            .map(|entry| entry.item.clone()))
    }

    async fn queued_child_deletes(
        &self,
        entity: &EntityName,
        field: &str,
        parent: &RecordId,
    ) -> Result<Vec<SyncQueueItem>, StoreError> {
        let state = self.lock()?;
        Ok(Self::sorted_queue(&state)
            .into_iter()
            .map(|entry| &entry.item)
            .filter(|item| {
                &item.entity == entity
                    && item.operation == sync_core::SyncOperation::Delete
                    && (item.status != SyncStatus::Synced || item.in_flight.is_some())
            })
            .filter(|item| {
                let document = state
                    .copies
                    .get(&item.key())
                    .map_or(&item.payload, |copy| &copy.data);
                sync_core::depends::id_in(document, field).as_ref() == Some(parent)
            })
            .cloned()
            .collect())
    }

    async fn queue(&self) -> Result<Vec<SyncQueueItem>, StoreError> {
        let state = self.lock()?;
        Ok(Self::sorted_queue(&state)
            .into_iter()
            .map(|entry| entry.item.clone())
            .collect())
    }

    async fn counts(&self) -> Result<QueueCounts, StoreError> {
        let state = self.lock()?;
        let mut counts = QueueCounts::default();
        for entry in state.queue.values() {
            match entry.item.status {
                SyncStatus::Pending => counts.pending += 1,
                SyncStatus::Syncing => counts.syncing += 1,
                SyncStatus::Synced => counts.synced += 1,
                SyncStatus::Failed => counts.failed += 1,
            }
        }
        Ok(counts)
    }

    async fn claim_ready(&self, now: Timestamp, limit: usize) -> Result<Vec<AttemptTicket>, StoreError> {
        let mut state = self.lock()?;
        let claims: Vec<(SyncQueueItem, AttemptTicket)> = Self::sorted_queue(&state)
            .into_iter()
            .filter_map(|entry| begin_attempt(&entry.item, now))
            .take(limit)
            .collect();
        Ok(claims
            .into_iter()
            .map(|(claimed, mut ticket)| {
                self.put_item(&mut state, claimed);
                ticket.base = state.copies.get(&ticket.key).cloned();
                ticket
            })
            .collect())
    }

    async fn server_copy(&self, key: &RecordKey) -> Result<Option<ServerCopy>, StoreError> {
        Ok(self.lock()?.copies.get(key).cloned())
    }

    async fn next_attempt_time(&self) -> Result<Option<Timestamp>, StoreError> {
        let state = self.lock()?;
        Ok(state
            .queue
            .values()
            .map(|entry| &entry.item)
            .filter(|item| {
                matches!(item.status, SyncStatus::Pending | SyncStatus::Failed) && !item.is_in_flight()
            })
            .filter_map(|item| item.next_attempt_at)
            .min())
    }

    async fn finish_attempts(
        &self,
        finished: Vec<FinishedAttempt>,
        now: Timestamp,
    ) -> Result<Vec<FinishResult>, StoreError> {
        let refuse = self
            .failing_finishes
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |left| left.checked_sub(1),
            )
            .is_ok();
        if refuse {
            return Err(StoreError::new(
                StoreErrorKind::Busy,
                "injected: the database is busy; retry later",
            ));
        }
        let mut state = self.lock()?;
        Ok(finished
            .into_iter()
            .map(|finished| self.finish_one(&mut state, finished, now))
            .collect())
    }

    async fn recover_interrupted(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut state = self.lock()?;
        // An attempt cut off may have applied: what the server holds is no
        // longer known, so the copies of the recovered items are forgotten.
        let recovered: Vec<RecordKey> = state
            .queue
            .iter()
            .filter(|(_, entry)| entry.item.is_in_flight())
            .map(|(key, _)| key.clone())
            .collect();
        for key in &recovered {
            state.copies.remove(key);
        }
        Ok(self.update_each(&mut state, |item| recover_interrupted(item, now)))
    }

    async fn rebase_timers(&self, now: Timestamp, policy: RetryPolicy) -> Result<u64, StoreError> {
        let mut state = self.lock()?;
        Ok(self.update_each(&mut state, |item| {
            sync_core::retry::rebase_timers(item, now, &policy)
        }))
    }

    async fn rearm_failed(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut state = self.lock()?;
        Ok(self.update_each(&mut state, |item| rearm_for_pass(item, now)))
    }

    async fn retry(&self, key: &RecordKey, now: Timestamp) -> Result<bool, StoreError> {
        let mut state = self.lock()?;
        let Some(item) = state.queue.get(key).and_then(|entry| retry_one(&entry.item, now)) else {
            return Ok(false);
        };
        self.put_item(&mut state, item);
        Ok(true)
    }

    async fn retry_failed(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut state = self.lock()?;
        Ok(self.update_each(&mut state, |item| retry_now(item, now)))
    }

    async fn clear_synced(&self) -> Result<u64, StoreError> {
        let mut state = self.lock()?;
        let before = state.queue.len();
        state
            .queue
            .retain(|_, entry| entry.item.status != SyncStatus::Synced || entry.item.is_in_flight());
        let removed = (before - state.queue.len()) as u64;
        if removed > 0 {
            self.emit(StoreEvent::SyncedCleared);
        }
        Ok(removed)
    }

    async fn discard(
        &self,
        key: &RecordKey,
        revert: bool,
        now: Timestamp,
    ) -> Result<sync_core::DiscardOutcome, StoreError> {
        let mut state = self.lock()?;
        let item = state.queue.get(key).map(|entry| &entry.item);
        let plan = sync_core::discard::plan_discard(item, state.copies.get(key), revert)
            .map_err(|refusal| refusal.to_store_error(key))?;
        if let Some(document) = plan.document {
            self.apply_document(&mut state, key, document, now);
        }
        self.apply_queue(&mut state, key, plan.queue);
        apply_copy(&mut state, key, plan.copy);
        Ok(plan.outcome)
    }

    async fn pull_state(&self, entity: &EntityName) -> Result<PullState, StoreError> {
        self.stored_pull_state(entity)
    }

    async fn pending_changes(
        &self,
        entity: &EntityName,
        ids: &[RecordId],
    ) -> Result<Vec<PendingChange>, StoreError> {
        self.merge_candidates(entity, ids)
    }

    async fn apply_pull(&self, batch: PullBatch, now: Timestamp) -> Result<PullCounts, StoreError> {
        self.apply_page(batch, now)
    }

    async fn close(&self) {
        MemoryStore::close(self);
    }

    fn subscribe(&self) -> BoxStream<StoreEvent> {
        let stream = BroadcastStream::new(self.events.subscribe()).map(|event| match event {
            Ok(event) => event,
            Err(BroadcastStreamRecvError::Lagged(_)) => StoreEvent::Lagged,
        });
        Box::pin(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[tokio::test]
    async fn memory_store_conforms() {
        conformance::run_all(|| async { MemoryStore::new() }).await;
    }

    #[tokio::test]
    async fn closed_store_refuses_every_call() {
        let store = MemoryStore::new();
        store.close();
        let error = store.queue().await.unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Closed);
    }

    #[tokio::test]
    async fn slow_subscriber_is_told_it_lagged() {
        let store = MemoryStore::new();
        let mut events = store.subscribe();
        for id in 0..(EVENT_BUFFER as u64 + 10) {
            let change = conformance::change("tasks", &id.to_string(), sync_core::SyncOperation::Create);
            store.save(change, Timestamp::from_millis(1)).await.unwrap();
        }
        assert_eq!(events.next().await, Some(StoreEvent::Lagged));
    }
}
