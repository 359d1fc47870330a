//! Server-assigned ids in the memory store (`sync_core::rename`): the
//! SQLite store's semantics on maps.

use sync_core::attempt::finish_attempt;
use sync_core::coalesce::DocumentWrite;
use sync_core::rename::{Alias, refused_rename};
use sync_core::{FinishResult, FinishedAttempt, LocalChange, RecordKey, StoreEvent, Timestamp};

use super::{Entry, MemoryStore, State, apply_copy};

impl MemoryStore {
    /// The change with the temporary ids it names resolved to the ids the
    /// server gave them, where they were renamed.
    pub(super) fn resolve_change(state: &State, change: LocalChange) -> LocalChange {
        if state.aliases.is_empty() {
            return change;
        }
        sync_core::rename::apply_aliases(change, &state.aliases)
    }

    /// The key a temporary id was renamed to, or the key itself.
    pub(super) fn resolve_key(state: &State, key: &RecordKey) -> RecordKey {
        match state.aliases.get(&key.id) {
            Some(alias) if alias.entity == key.entity => {
                RecordKey::new(alias.entity.clone(), alias.id.clone())
            }
            _ => key.clone(),
        }
    }

    /// Applies one finished attempt; an [`sync_core::AttemptOutcome::AppliedAs`]
    /// renames the record (unless the new id is taken: parked instead).
    pub(super) fn finish_one(
        &self,
        state: &mut State,
        finished: FinishedAttempt,
        now: Timestamp,
    ) -> FinishResult {
        let FinishedAttempt { ticket, outcome } = finished;
        let current = state.queue.get(&ticket.key).map(|entry| entry.item.clone());
        let to = outcome
            .assigned()
            .map(|assigned| RecordKey::new(ticket.key.entity.clone(), assigned.id.clone()));
        let target_item = to
            .as_ref()
            .and_then(|to| state.queue.get(to))
            .map(|entry| &entry.item);
        let target_document = to
            .as_ref()
            .and_then(|to| state.records.get(to))
            .map(|record| &record.data);
        let outcome = refused_rename(current.as_ref(), &ticket, &outcome, target_item, target_document)
            .unwrap_or(outcome);
        let plan = finish_attempt(current.as_ref(), &ticket, &outcome, now);
        if let Some(rename) = &plan.rename {
            // Move the rows: the new key's are replaced; the queue entry
            // keeps its place.
            let (from, to) = (&rename.from, &rename.to);
            self.emit(StoreEvent::Renamed {
                from: from.clone(),
                to: to.clone(),
            });
            state.records.remove(to);
            state.copies.remove(to);
            state.queue.remove(to);
            state.copies.remove(from);
            let moved = state.records.remove(from);
            if moved.is_some() {
                state.pulled_in.remove(from);
                self.emit(StoreEvent::Record {
                    key: from.clone(),
                    record: None,
                });
            }
            if let Some(entry) = state.queue.remove(from) {
                self.emit(StoreEvent::QueueItem {
                    key: from.clone(),
                    item: None,
                });
                let mut item = entry.item;
                item.id = to.id.clone();
                state.queue.insert(to.clone(), Entry { item, seq: entry.seq });
            }
            state.aliases.insert(from.id.clone(), Alias::of(rename));
            if let Some(mut record) = moved {
                if plan.document.is_none() {
                    rename.rewrite_own(&mut record.data);
                }
                record.id = to.id.clone();
                state.records.insert(to.clone(), record.clone());
                self.apply_document(state, to, DocumentWrite::Upsert(record.data), now);
            }
            // Declared references, in documents and queued changes.
            let documents: Vec<(RecordKey, sync_core::JsonObject)> = state
                .records
                .iter()
                .filter_map(|(key, record)| {
                    let mut data = record.data.clone();
                    rename
                        .rewrite_references(&key.entity, &mut data)
                        .then(|| (key.clone(), data))
                })
                .collect();
            for (key, data) in documents {
                self.apply_document(state, &key, DocumentWrite::Upsert(data), now);
            }
            let items: Vec<_> = state
                .queue
                .values()
                .filter_map(|entry| rename.rewrite_queued(&entry.item, now))
                .collect();
            for item in items {
                self.put_item(state, item);
            }
        }
        let key = plan.key(&ticket).clone();
        self.apply_queue(state, &key, plan.queue);
        if let Some(document) = plan.document {
            self.apply_document(state, &key, document, now);
        }
        apply_copy(state, &key, plan.copy);
        if plan.stale {
            FinishResult::Stale
        } else {
            FinishResult::Current
        }
    }
}
