//! A sorted set that finds its `k`-th element without walking the `k`
//! before it: what a list's offset (`_start`, `offset`) needs to stay
//! cheap deep into a large collection.
//!
//! The keys sit in sorted blocks of at most [`MAX_BLOCK`]; finding the
//! `k`-th adds up block lengths (a thousand blocks for a million keys),
//! and an insert or a remove moves at most one block's keys.

/// The most keys a block holds before it is split in two.
const MAX_BLOCK: usize = 1024;

/// A sorted set of distinct keys with cheap rank lookups.
#[derive(Debug, Clone)]
pub(crate) struct RankedSet<K> {
    /// Sorted, non-empty blocks; every key of a block is smaller than
    /// every key of the next.
    blocks: Vec<Vec<K>>,
}

impl<K> Default for RankedSet<K> {
    fn default() -> Self {
        Self { blocks: Vec::new() }
    }
}

impl<K: Ord> RankedSet<K> {
    /// The block `key` belongs in: the first whose last key is not smaller
    /// (the last block for a key past them all).
    fn block_of(&self, key: &K) -> usize {
        let index = self
            .blocks
            .partition_point(|block| block.last().is_some_and(|last| last < key));
        index.min(self.blocks.len().saturating_sub(1))
    }

    /// Adds `key`; `false` when it was there already.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        if self.blocks.is_empty() {
            self.blocks.push(vec![key]);
            return true;
        }
        let index = self.block_of(&key);
        let Some(block) = self.blocks.get_mut(index) else {
            return false;
        };
        let Err(position) = block.binary_search(&key) else {
            return false;
        };
        block.insert(position, key);
        if block.len() > MAX_BLOCK {
            let upper = block.split_off(block.len() / 2);
            self.blocks.insert(index + 1, upper);
        }
        true
    }

    /// Removes `key`; `false` when it was not there.
    pub(crate) fn remove(&mut self, key: &K) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let index = self.block_of(key);
        let Some(block) = self.blocks.get_mut(index) else {
            return false;
        };
        let Ok(position) = block.binary_search(key) else {
            return false;
        };
        block.remove(position);
        if block.is_empty() {
            self.blocks.remove(index);
        }
        true
    }

    /// Every key, in order (`rev()` for the reverse).
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.blocks.iter().flatten()
    }

    /// Whether the set holds no key.
    pub(crate) fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The keys in order from the `rank`-th (0-based) on.
    pub(crate) fn iter_from(&self, rank: usize) -> impl Iterator<Item = &K> + '_ {
        let (block, offset) = locate(rank, self.blocks.iter());
        self.blocks
            .get(block..)
            .unwrap_or_default()
            .iter()
            .flatten()
            .skip(offset)
    }

    /// The keys in reverse order from the `rank`-th from the end on.
    pub(crate) fn iter_rev_from(&self, rank: usize) -> impl Iterator<Item = &K> + '_ {
        let (block, offset) = locate(rank, self.blocks.iter().rev());
        let end = self.blocks.len().saturating_sub(block);
        self.blocks
            .get(..end)
            .unwrap_or_default()
            .iter()
            .rev()
            .flat_map(|block| block.iter().rev())
            .skip(offset)
    }
}

/// How many whole blocks of `blocks` (in the order given) lie before rank
/// `rank`, and the rank left within the next.
fn locate<'a, K: 'a>(rank: usize, blocks: impl Iterator<Item = &'a Vec<K>>) -> (usize, usize) {
    let mut left = rank;
    let mut skipped = 0;
    for block in blocks {
        if left < block.len() {
            break;
        }
        left -= block.len();
        skipped += 1;
    }
    (skipped, left)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{MAX_BLOCK, RankedSet};

    #[test]
    fn it_stays_sorted_and_ranks_like_a_btree_set() {
        let mut ranked = RankedSet::default();
        let mut model = BTreeSet::new();
        // A deterministic shuffle of inserts and removes across several
        // block splits and merges.
        let mut x: u64 = 7;
        for step in 0..(MAX_BLOCK * 6) {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let key = (x >> 33) % 5_000;
            if step % 3 == 2 {
                assert_eq!(ranked.remove(&key), model.remove(&key), "remove {key}");
            } else {
                assert_eq!(ranked.insert(key), model.insert(key), "insert {key}");
            }
        }
        let all: Vec<u64> = model.iter().copied().collect();
        assert_eq!(ranked.iter().copied().collect::<Vec<_>>(), all);
        for rank in [0, 1, 500, MAX_BLOCK, all.len() - 1, all.len(), all.len() + 10] {
            let from: Vec<u64> = ranked.iter_from(rank).copied().collect();
            assert_eq!(from, all.iter().skip(rank).copied().collect::<Vec<_>>(), "{rank}");
            let back: Vec<u64> = ranked.iter_rev_from(rank).copied().collect();
            assert_eq!(
                back,
                all.iter().rev().skip(rank).copied().collect::<Vec<_>>(),
                "{rank}"
            );
        }
        for key in all {
            assert!(ranked.remove(&key));
        }
        assert_eq!(ranked.iter().count(), 0);
        assert!(!ranked.remove(&1));
        assert_eq!(ranked.iter_from(3).count(), 0);
    }
}
