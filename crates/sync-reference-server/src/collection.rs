//! One collection: its rows, its tombstones, and the indexes that serve
//! lists and the change feed without scanning the whole collection.
//!
//! Every record id has at most one slot: a row (live, or soft-deleted)
//! or a tombstone (hard-deleted). Every slot carries the change stamp of
//! the last write to it, from the collection's own sequence, and the
//! feed index maps each stamp in use to its slot: the latest change per
//! record, in commit order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::order::IdOrd;
use crate::ranked::RankedSet;

/// What the collection holds for one record id.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    /// A stored object, live or soft-deleted.
    Row(Row),
    /// A deleted record, kept for the change feed until purged.
    Tombstone(Tombstone),
}

/// A stored object.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Insertion order, server-wide: lists without a sort follow it.
    pub(crate) seq: u64,
    /// Bumped by every change applied to the record: its ETag.
    pub(crate) version: u64,
    /// The collection's change stamp of the last write to the record.
    pub(crate) change: u64,
    pub(crate) object: Map<String, Value>,
    /// Whether the soft-delete field holds `true`: the record reads as
    /// missing but is still listed.
    pub(crate) deleted: bool,
    /// The stamp field's value, when it is a non-negative integer (the
    /// stamp index holds those rows).
    pub(crate) stamp_value: Option<u64>,
}

/// A hard-deleted record.
#[derive(Debug, Clone)]
pub(crate) struct Tombstone {
    /// The change stamp of the delete.
    pub(crate) change: u64,
    /// The record's `"id"` as it was stored (a string or a number).
    pub(crate) id: Value,
}

impl Slot {
    /// The change stamp of the last write to the record.
    pub(crate) fn change(&self) -> u64 {
        match self {
            Self::Row(row) => row.change,
            Self::Tombstone(tombstone) => tombstone.change,
        }
    }

    /// Whether the slot tells of a deletion (a tombstone or a
    /// soft-deleted row): purging forgets it.
    fn is_dead(&self) -> bool {
        match self {
            Self::Row(row) => row.deleted,
            Self::Tombstone(_) => true,
        }
    }
}

/// One collection's records and indexes.
#[derive(Debug)]
pub(crate) struct Collection {
    slots: HashMap<Arc<str>, Slot>,
    /// Rows by insertion sequence.
    order: RankedSet<(u64, Arc<str>)>,
    /// Rows by id, in [`IdOrd`] order.
    by_id: RankedSet<IdOrd>,
    /// Rows by the stamp field's value, then id.
    by_stamp: BTreeMap<u64, BTreeSet<IdOrd>>,
    /// How many rows the stamp index lacks (no stamp field, or a value
    /// that is not a non-negative integer): while any does, it is not
    /// used.
    unindexed: usize,
    /// Every slot by its change stamp: the change feed.
    feed: BTreeMap<u64, Arc<str>>,
    /// Tombstones and soft-deleted rows by change stamp, oldest first:
    /// what a purge forgets.
    dead: BTreeMap<u64, Arc<str>>,
    /// How many rows are live (not soft-deleted).
    live: usize,
    /// The last change stamp handed out.
    last_change: u64,
    /// The smallest `since` the feed still answers: the stamp of the
    /// latest deletion forgotten (or where the stamps started).
    oldest_cursor: u64,
}

impl Collection {
    /// No records; change stamps handed out from `base + 1` on, and no
    /// cursor below `base` accepted.
    pub(crate) fn new(base: u64) -> Self {
        Self {
            slots: HashMap::new(),
            order: RankedSet::default(),
            by_id: RankedSet::default(),
            by_stamp: BTreeMap::new(),
            unindexed: 0,
            feed: BTreeMap::new(),
            dead: BTreeMap::new(),
            live: 0,
            last_change: base,
            oldest_cursor: base,
        }
    }

    pub(crate) fn slot(&self, id: &str) -> Option<&Slot> {
        self.slots.get(id)
    }

    /// The row of `id`, soft-deleted or not.
    pub(crate) fn row(&self, id: &str) -> Option<&Row> {
        match self.slots.get(id) {
            Some(Slot::Row(row)) => Some(row),
            _ => None,
        }
    }

    /// The row of `id` unless it is soft-deleted.
    pub(crate) fn live_row(&self, id: &str) -> Option<&Row> {
        self.row(id).filter(|row| !row.deleted)
    }

    /// The next change stamp, taken for one write.
    pub(crate) fn next_change(&mut self) -> u64 {
        // Never reached (one change per nanosecond for 500 years), but
        // saturating keeps the code panic-free.
        self.last_change = self.last_change.saturating_add(1);
        self.last_change
    }

    /// The last change stamp handed out.
    pub(crate) fn last_change(&self) -> u64 {
        self.last_change
    }

    /// The smallest `since` the feed still answers.
    pub(crate) fn oldest_cursor(&self) -> u64 {
        self.oldest_cursor
    }

    /// Whether no row is stored (tombstones aside).
    pub(crate) fn has_no_rows(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether a live row is stored.
    pub(crate) fn has_live_rows(&self) -> bool {
        self.live > 0
    }

    /// How many live rows (not soft-deleted) are stored.
    pub(crate) fn live_count(&self) -> usize {
        self.live
    }

    /// Sets the slot of `id` (`None` empties it), keeping every index in
    /// step; returns what it held.
    pub(crate) fn set(&mut self, id: &str, slot: Option<Slot>) -> Option<Slot> {
        let (key, previous) = match self.slots.remove_entry(id) {
            Some((key, previous)) => (key, Some(previous)),
            None => (Arc::from(id), None),
        };
        if let Some(previous) = &previous {
            self.unindex(&key, previous);
        }
        if let Some(slot) = slot {
            self.index(&key, &slot);
            self.slots.insert(key, slot);
        }
        previous
    }

    fn index(&mut self, key: &Arc<str>, slot: &Slot) {
        self.feed.insert(slot.change(), Arc::clone(key));
        if slot.is_dead() {
            self.dead.insert(slot.change(), Arc::clone(key));
        }
        if let Slot::Row(row) = slot {
            self.order.insert((row.seq, Arc::clone(key)));
            self.by_id.insert(IdOrd(Arc::clone(key)));
            match row.stamp_value {
                Some(value) => {
                    self.by_stamp
                        .entry(value)
                        .or_default()
                        .insert(IdOrd(Arc::clone(key)));
                }
                None => self.unindexed += 1,
            }
            if !row.deleted {
                self.live += 1;
            }
        }
    }

    fn unindex(&mut self, key: &Arc<str>, slot: &Slot) {
        self.feed.remove(&slot.change());
        if slot.is_dead() {
            self.dead.remove(&slot.change());
        }
        if let Slot::Row(row) = slot {
            self.order.remove(&(row.seq, Arc::clone(key)));
            let id = IdOrd(Arc::clone(key));
            self.by_id.remove(&id);
            match row.stamp_value {
                Some(value) => {
                    if let Some(ids) = self.by_stamp.get_mut(&value) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            self.by_stamp.remove(&value);
                        }
                    }
                }
                None => self.unindexed = self.unindexed.saturating_sub(1),
            }
            if !row.deleted {
                self.live = self.live.saturating_sub(1);
            }
        }
    }

    /// Forgets the deletions (tombstones and soft-deleted rows) whose
    /// change stamp is at most `through`; from then on a `since` below
    /// the latest one forgotten is refused. Returns how many were
    /// forgotten.
    pub(crate) fn purge(&mut self, through: u64) -> usize {
        let mut purged = 0;
        while let Some((&change, key)) = self.dead.first_key_value() {
            if change > through {
                break;
            }
            let key = Arc::clone(key);
            let _forgotten = self.set(&key, None);
            self.oldest_cursor = self.oldest_cursor.max(change);
            purged += 1;
        }
        purged
    }

    /// The rows in insertion order.
    pub(crate) fn rows_in_order(&self) -> impl DoubleEndedIterator<Item = &Row> + '_ {
        self.ids_in_order().filter_map(|id| self.row(id))
    }

    /// The ids of the rows in insertion order.
    pub(crate) fn ids_in_order(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        self.order.iter().map(|(_, id)| &**id)
    }

    /// The ids of the rows in insertion order, from the `rank`-th on.
    pub(crate) fn ids_in_order_from(&self, rank: usize) -> impl Iterator<Item = &str> + '_ {
        self.order.iter_from(rank).map(|(_, id)| &**id)
    }

    /// The ids of the rows in [`IdOrd`] order (or the reverse), from the
    /// `rank`-th on.
    pub(crate) fn ids_by_id_from(
        &self,
        rank: usize,
        descending: bool,
    ) -> Box<dyn Iterator<Item = &str> + '_> {
        if descending {
            Box::new(self.by_id.iter_rev_from(rank).map(|id| &*id.0))
        } else {
            Box::new(self.by_id.iter_from(rank).map(|id| &*id.0))
        }
    }

    /// The ids of the rows whose stamp value lies in `from..=to`, by stamp
    /// value then id; `None` when some row is missing from the stamp index.
    pub(crate) fn ids_by_stamp(&self, from: u64, to: u64) -> Option<impl Iterator<Item = &str> + '_> {
        if self.unindexed > 0 {
            return None;
        }
        // An empty range when `from > to` (BTreeMap::range would panic).
        let range = (from <= to).then(|| self.by_stamp.range(from..=to));
        Some(
            range
                .into_iter()
                .flatten()
                .flat_map(|(_, ids)| ids.iter())
                .map(|id| &*id.0),
        )
    }

    /// The latest change of every record changed after `since`, in
    /// change-stamp order.
    pub(crate) fn changes_after(&self, since: u64) -> impl Iterator<Item = (u64, &Slot)> + '_ {
        let from = since.saturating_add(1);
        let range = if since < u64::MAX {
            Some(self.feed.range(from..))
        } else {
            None
        };
        range
            .into_iter()
            .flatten()
            .filter_map(|(&change, id)| self.slots.get(id).map(|slot| (change, slot)))
    }
}
