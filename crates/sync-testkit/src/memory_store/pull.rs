//! Pulls in the memory store: the SQLite store's semantics on maps. A page
//! is checked whole first (the stored state, the documents' sizes), then
//! applied change by change, so it applies fully or not at all.

use std::collections::{HashMap, HashSet};

use sync_core::pull::{
    PendingChange, PreparedMerge, PullBatch, PullCounts, PullState, PulledChange, PulledPlan, pending_change,
    plan_pulled, sweeps,
};
use sync_core::{EntityName, RecordId, RecordKey, StoreError, Timestamp};

use super::{MemoryStore, State};

impl MemoryStore {
    /// The entity's stored pull state, or the default.
    pub(super) fn stored_pull_state(&self, entity: &EntityName) -> Result<PullState, StoreError> {
        Ok(self.lock()?.pulls.get(entity).cloned().unwrap_or_default())
    }

    /// The merge candidates among `ids`, in their order, with their bases.
    pub(super) fn merge_candidates(
        &self,
        entity: &EntityName,
        ids: &[RecordId],
    ) -> Result<Vec<PendingChange>, StoreError> {
        let state = self.lock()?;
        let mut seen = HashSet::new();
        Ok(ids
            .iter()
            .filter(|id| seen.insert(*id))
            .filter_map(|id| {
                let key = RecordKey::new(entity.clone(), id.clone());
                let item = &state.queue.get(&key)?.item;
                pending_change(item, state.copies.get(&key).cloned())
            })
            .collect())
    }

    /// Applies one page: every change in order, the listing's marks, its
    /// sweep and the state after; or nothing, when refused.
    pub(super) fn apply_page(&self, batch: PullBatch, now: Timestamp) -> Result<PullCounts, StoreError> {
        let mut state = self.lock()?;
        let stored = state.pulls.get(&batch.entity).cloned().unwrap_or_default();
        if stored != batch.expected {
            return Err(batch.moved_on());
        }
        batch.check_sizes(self.max_payload_bytes)?;
        let PullBatch {
            entity,
            plan: page,
            changes,
            merges,
            ..
        } = batch;
        let mut merged: HashMap<&RecordId, &PreparedMerge> = HashMap::new();
        for merge in &merges {
            merged.entry(&merge.id).or_insert(merge);
        }
        let mut counts = PullCounts::default();
        let mut upserted = Vec::new();
        for change in &changes {
            let key = RecordKey::new(entity.clone(), change.id().clone());
            let plan = plan_pulled(
                state.queue.get(&key).map(|entry| &entry.item),
                state.records.contains_key(&key),
                change,
                merged.get(change.id()).copied(),
                now,
            );
            counts.count(plan.effect);
            self.apply_plan(&mut state, &key, plan, now);
            if matches!(change, PulledChange::Upsert { .. }) {
                upserted.push(key);
            }
        }
        if let Some(generation) = page.mark {
            for key in upserted {
                if state.records.contains_key(&key) {
                    state.pulled_in.insert(key, generation);
                }
            }
        }
        if let Some(listing) = page.sweep {
            let unmarked: Vec<RecordKey> = state
                .records
                .keys()
                .filter(|key| key.entity == entity)
                .filter(|key| state.pulled_in.get(*key) != Some(&listing.generation))
                .cloned()
                .collect();
            for key in unmarked {
                let item = state.queue.get(&key).map(|entry| &entry.item);
                if !sweeps(item, state.pulled_in.get(&key).copied(), &listing) {
                    continue;
                }
                let tombstone = PulledChange::Tombstone { id: key.id.clone() };
                let plan = plan_pulled(item, true, &tombstone, None, now);
                counts.count(plan.effect);
                self.apply_plan(&mut state, &key, plan, now);
            }
        }
        state.pulls.insert(entity, page.after);
        Ok(counts)
    }

    fn apply_plan(&self, state: &mut State, key: &RecordKey, plan: PulledPlan, now: Timestamp) {
        if let Some(document) = plan.document {
            self.apply_document(state, key, document, now);
        }
        self.apply_queue(state, key, plan.queue);
        super::apply_copy(state, key, plan.copy);
    }
}
