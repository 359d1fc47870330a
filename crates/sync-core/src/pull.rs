//! Pull: the server's changes coming down. The rules, as pure functions:
//!
//! - [`plan_pulled`]: what one incoming change (an upsert with the server's
//!   document, or a tombstone) does to the record's local document, queue
//!   item and server copy. **A pending local change is never
//!   overwritten**: a record with a live queue item keeps its document
//!   (unless the app's resolver merged the incoming copy into it), and the
//!   item only learns what the server now holds.
//! - [`plan_page`]: what a page does to the entity's pull state (its
//!   cursor, and a full listing in progress), and whether it ends with a
//!   sweep: removing the local records a full listing did not show.
//! - [`restart_listing`]: the state after the server forgot the cursor.
//!
//! Stores apply a page's decisions, its cursor and its sweep in one
//! transaction, so a crash leaves either the page applied with its cursor
//! or neither. The table of [`plan_pulled`] is in
//! `docs/queue-state-machine.md`, generated from this code.

use std::fmt;

use crate::attempt::{CopyWrite, relearn};
use crate::clock::Timestamp;
use crate::coalesce::{DocumentWrite, QueueWrite, ServerView, item_view};
use crate::error::{StoreError, StoreErrorKind, ValidationError};
use crate::ids::{EntityName, OperationId, RecordId};
use crate::model::{JsonObject, ServerCopy, SyncOperation, SyncQueueItem, SyncStatus, check_payload_size};

/// The longest cursor accepted from a server, in bytes.
pub const MAX_CURSOR_BYTES: usize = 4096;

/// Where the next pull of an entity starts, as the server issued it: opaque
/// to the engine, stored as given, never made from the device's clock.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PullCursor(String);

impl PullCursor {
    /// A cursor from the server's text.
    ///
    /// # Errors
    /// [`ValidationError::InvalidCursor`] when it is empty, longer than
    /// [`MAX_CURSOR_BYTES`] or holds control characters.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        let reason = if value.is_empty() {
            Some("it is empty")
        } else if value.len() > MAX_CURSOR_BYTES {
            Some("it is longer than 4096 bytes")
        } else if value.chars().any(char::is_control) {
            Some("it holds control characters")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(ValidationError::InvalidCursor { reason }),
            None => Ok(Self(value)),
        }
    }

    /// The cursor's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Cursors may encode what the server chose to put in them: not printed in
// full by `Debug`, which ends up in logs.
impl fmt::Debug for PullCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PullCursor({} bytes)", self.0.len())
    }
}

/// One change the server published.
#[derive(Debug, Clone, PartialEq)]
pub enum PulledChange {
    /// The record exists on the server with this document.
    Upsert {
        /// The record's id.
        id: RecordId,
        /// The server's document.
        data: JsonObject,
        /// The server's version of it, when it gives one.
        version: Option<String>,
    },
    /// The record was deleted on the server.
    Tombstone {
        /// The record's id.
        id: RecordId,
    },
}

impl PulledChange {
    /// The record's id.
    #[must_use]
    pub fn id(&self) -> &RecordId {
        match self {
            Self::Upsert { id, .. } | Self::Tombstone { id } => id,
        }
    }
}

/// One page of an entity's changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PullPage {
    /// The changes, in the server's order.
    pub changes: Vec<PulledChange>,
    /// Where the next page starts; `None` when the server gave none (the
    /// stored cursor then stays as it was).
    pub cursor: Option<PullCursor>,
    /// Whether more pages follow at once.
    pub more: bool,
    /// Whether this page is part of a full listing of the entity (the
    /// snapshot strategy): when its last page is applied, the local records
    /// it did not show are removed, unless a local change to them is
    /// pending, and the cursor starts over at the next pull.
    pub listing: bool,
}

/// A server's answer to a pull.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PullAnswer {
    /// A page of changes.
    Page(PullPage),
    /// The server no longer knows the cursor (its tombstones were purged):
    /// the entity is loaded again from scratch as a full listing.
    CursorExpired,
}

/// A full listing in progress: a snapshot, or a re-load after the server
/// forgot the cursor. Records it shows are marked with its generation;
/// at its end, the others are swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    /// The listing's number for this entity (the last one plus one).
    pub generation: u64,
    /// When it started: a queue item changed since (a push applied during
    /// the listing, perhaps after the page that would have shown it) keeps
    /// its record from the sweep.
    pub started_at: Timestamp,
}

/// An entity's pull state, stored with every page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullState {
    /// Where the next pull starts; `None`: from the beginning.
    pub cursor: Option<PullCursor>,
    /// The generation of the latest full listing (0: none yet).
    pub generation: u64,
    /// The full listing in progress, if one is.
    pub listing: Option<Listing>,
}

/// What applying one page does to the entity's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePlan {
    /// The state stored with the page.
    pub after: PullState,
    /// The generation to mark the page's records with (during a listing).
    pub mark: Option<u64>,
    /// The listing this page ends: sweep what it did not show.
    pub sweep: Option<Listing>,
}

/// Decides what a page does to the entity's pull state.
///
/// A listing page, or any page pulled from no cursor (the server's whole
/// state), starts a listing unless one is in progress. While a
/// listing is in progress its records are marked; its last page (no
/// `more`) ends it with a sweep. A snapshot's cursor then starts over; a
/// re-load's cursor is the change feed's, where deltas go on.
#[must_use]
pub fn plan_page(state: &PullState, page: &PullPage, now: Timestamp) -> PagePlan {
    let listing = match state.listing {
        Some(listing) => Some(listing),
        // A page from no cursor lists everything the server holds, so a
        // first pull is a full listing too: its end sweeps the local
        // records the server no longer has (their tombstones may be gone).
        None if page.listing || state.cursor.is_none() => Some(Listing {
            generation: state.generation.saturating_add(1),
            started_at: now,
        }),
        None => None,
    };
    let generation = listing.map_or(state.generation, |listing| listing.generation);
    let cursor = page.cursor.clone().or_else(|| state.cursor.clone());
    match listing {
        Some(listing) if !page.more => PagePlan {
            after: PullState {
                cursor: if page.listing { None } else { cursor },
                generation,
                listing: None,
            },
            mark: Some(listing.generation),
            sweep: Some(listing),
        },
        listing => PagePlan {
            after: PullState {
                cursor,
                generation,
                listing,
            },
            mark: listing.map(|listing| listing.generation),
            sweep: None,
        },
    }
}

/// The state after the server answered that it no longer knows the
/// cursor: a full listing from the beginning, so the records deleted
/// meanwhile (whose tombstones the server purged) are swept at its end.
#[must_use]
pub fn restart_listing(state: &PullState, now: Timestamp) -> PullState {
    let generation = state.generation.saturating_add(1);
    PullState {
        cursor: None,
        generation,
        listing: Some(Listing {
            generation,
            started_at: now,
        }),
    }
}

/// The app's resolver's merge of an incoming copy into a pending change,
/// prepared by the engine before the page is applied: it counts only while
/// the record's queue item is still the version it was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedMerge {
    /// The record.
    pub id: RecordId,
    /// The item version the merge was made from.
    pub item_version: u64,
    /// The merged document.
    pub document: JsonObject,
}

/// A pending local change an incoming copy meets: what the engine's
/// resolver merges with it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingChange {
    /// The record.
    pub id: RecordId,
    /// The item's version.
    pub item_version: u64,
    /// The document the change sends.
    pub payload: JsonObject,
    /// The copy the server last confirmed, the merge's base.
    pub base: Option<ServerCopy>,
}

/// Whether [`pending_change`] offers an item to the resolver: a live item
/// not in flight that sends a document (a pending delete is kept as it is).
#[must_use]
pub fn merges_into(item: &SyncQueueItem) -> bool {
    is_live(item) && item.in_flight.is_none() && item.operation != SyncOperation::Delete
}

/// The pending change an incoming copy meets, if the item is one the
/// resolver merges into ([`merges_into`]).
#[must_use]
pub fn pending_change(item: &SyncQueueItem, base: Option<ServerCopy>) -> Option<PendingChange> {
    merges_into(item).then(|| PendingChange {
        id: item.id.clone(),
        item_version: item.version,
        payload: item.payload.clone(),
        base,
    })
}

/// What a pulled change did, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullEffect {
    /// The local document now holds the server's copy.
    Upserted,
    /// The local document was removed.
    Deleted,
    /// A local change is pending: its document was kept (the item learned
    /// what the server holds).
    Skipped,
    /// A local change is pending and the resolver's merge replaced its
    /// document.
    Merged,
    /// Nothing changed (a tombstone for a record this device never had).
    Unchanged,
}

/// The decision for one pulled change: apply all writes atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledPlan {
    /// The local document's fate, if it changes.
    pub document: Option<DocumentWrite>,
    /// The queue row's fate.
    pub queue: QueueWrite,
    /// The server copy's fate.
    pub copy: CopyWrite,
    /// What it did, for the report.
    pub effect: PullEffect,
}

fn is_live(item: &SyncQueueItem) -> bool {
    item.status != SyncStatus::Synced || item.in_flight.is_some()
}

/// Decides what one pulled change does to a record.
///
/// `item` is the record's queue item, `local_exists` whether it has a local
/// document, and `merge` the resolver's merge prepared for it (ignored
/// unless made from the item's current version). See the table in
/// `docs/queue-state-machine.md`:
///
/// - **No item, or a synced one**: the server's copy is taken (an upsert
///   writes the document, a tombstone removes it) and becomes the server
///   copy. A synced item that now tells the wrong story (a synced create
///   under a tombstone, a synced delete under an upsert) is removed, so
///   the next save starts from what the server holds.
/// - **An item in flight**: nothing changes; the attempt's outcome will
///   say what the server holds.
/// - **A live item** (pending or failed): the local document is kept, the
///   item's operation is recomputed from what the server now holds (a
///   create meeting an upsert becomes an update; an update meeting a
///   tombstone becomes a create, so the pending change is not lost; a
///   delete meeting a tombstone has nothing left to send and becomes
///   synced). An item that learned anything gets a new idempotency key,
///   so a server that applied its old request does not take the next one
///   for a replay. An upsert with a current merge replaces the pending
///   document by the merge and becomes the server copy (the merge holds
///   it); without one, the old server copy stays, so a conditional write
///   still meets the server's change (412) and resolves it then.
#[must_use]
pub fn plan_pulled(
    item: Option<&SyncQueueItem>,
    local_exists: bool,
    change: &PulledChange,
    merge: Option<&PreparedMerge>,
    now: Timestamp,
) -> PulledPlan {
    match item {
        Some(item) if item.in_flight.is_some() => PulledPlan {
            document: None,
            queue: QueueWrite::Keep,
            copy: CopyWrite::Keep,
            effect: PullEffect::Skipped,
        },
        Some(item) if is_live(item) => plan_under_pending(item, change, merge, now),
        settled => take_servers(settled, local_exists, change),
    }
}

/// The server's copy replaces the local one: no local change is pending.
fn take_servers(item: Option<&SyncQueueItem>, local_exists: bool, change: &PulledChange) -> PulledPlan {
    let (server_view, document, copy, effect) = match change {
        PulledChange::Upsert { data, version, .. } => (
            ServerView::Present,
            DocumentWrite::Upsert(data.clone()),
            CopyWrite::Put(ServerCopy {
                data: data.clone(),
                version: version.clone(),
            }),
            PullEffect::Upserted,
        ),
        PulledChange::Tombstone { .. } => (
            ServerView::Absent,
            DocumentWrite::Remove,
            CopyWrite::Remove,
            if local_exists {
                PullEffect::Deleted
            } else {
                PullEffect::Unchanged
            },
        ),
    };
    let queue = match item {
        Some(item) if item_view(item) != server_view => QueueWrite::Remove,
        _ => QueueWrite::Keep,
    };
    let document = match (&document, local_exists) {
        (DocumentWrite::Remove, false) => None,
        _ => Some(document),
    };
    PulledPlan {
        document,
        queue,
        copy,
        effect,
    }
}

/// A local change is pending: it stays, and learns what the server holds.
fn plan_under_pending(
    item: &SyncQueueItem,
    change: &PulledChange,
    merge: Option<&PreparedMerge>,
    now: Timestamp,
) -> PulledPlan {
    let mut after = item.clone();
    let (known, copy, document, effect) = match change {
        PulledChange::Upsert { data, version, .. } => {
            let merge = merge.filter(|merge| merge.item_version == item.version && merges_into(item));
            match merge {
                Some(merge) => {
                    let changed = merge.document != item.payload;
                    if changed {
                        after.payload = merge.document.clone();
                    }
                    (
                        ServerView::Present,
                        CopyWrite::Put(ServerCopy {
                            data: data.clone(),
                            version: version.clone(),
                        }),
                        changed.then(|| DocumentWrite::Upsert(merge.document.clone())),
                        if changed {
                            PullEffect::Merged
                        } else {
                            PullEffect::Skipped
                        },
                    )
                }
                None => (ServerView::Present, CopyWrite::Keep, None, PullEffect::Skipped),
            }
        }
        PulledChange::Tombstone { .. } => (ServerView::Absent, CopyWrite::Remove, None, PullEffect::Skipped),
    };
    relearn(&mut after, known, now);
    let queue = if after == *item {
        QueueWrite::Keep
    } else {
        after.version = item.version.saturating_add(1);
        after.updated_at = now;
        // The item learned what the server holds, so its next request is
        // not the one its idempotency key was given for (a create turned
        // update, a delete of a record another client re-created, a merged
        // payload): a server that saw the old key would take it for a
        // replay and drop it.
        after.operation_id = OperationId::generate();
        QueueWrite::Put(after)
    };
    PulledPlan {
        document,
        queue,
        copy,
        effect,
    }
}

/// Whether the sweep at the end of `listing` removes a record the listing
/// did not show (`pulled_in` is the generation of the listing that last
/// showed it): not when a local change is pending, nor when its queue item
/// changed since the listing started (a push applied meanwhile may have
/// put it on the server after the page that would have shown it).
#[must_use]
pub fn sweeps(item: Option<&SyncQueueItem>, pulled_in: Option<u64>, listing: &Listing) -> bool {
    if pulled_in == Some(listing.generation) {
        return false;
    }
    match item {
        Some(item) if is_live(item) => false,
        Some(item) => item.updated_at < listing.started_at,
        None => true,
    }
}

/// The entity a page belongs to and everything the store applies with it,
/// in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct PullBatch {
    /// The entity.
    pub entity: EntityName,
    /// The state the page was pulled from: the store refuses the batch
    /// when its stored state differs (another pull got there first).
    pub expected: PullState,
    /// The page's plan: the state after, marks and sweep.
    pub plan: PagePlan,
    /// The page's changes, in order.
    pub changes: Vec<PulledChange>,
    /// Merges the resolver prepared for pending changes.
    pub merges: Vec<PreparedMerge>,
}

impl PullBatch {
    /// Refuses a page holding a document over `max_payload_bytes` (an
    /// upsert's, or a merge's), before a store writes anything.
    ///
    /// # Errors
    /// [`crate::StoreErrorKind::Invalid`] carrying the
    /// [`ValidationError::PayloadTooLarge`], naming the record.
    pub fn check_sizes(&self, max_payload_bytes: usize) -> Result<(), StoreError> {
        let upserts = self.changes.iter().filter_map(|change| match change {
            PulledChange::Upsert { id, data, .. } => Some((id, data)),
            PulledChange::Tombstone { .. } => None,
        });
        let merges = self.merges.iter().map(|merge| (&merge.id, &merge.document));
        for (id, document) in upserts.chain(merges) {
            if let Err(error) = check_payload_size(document, max_payload_bytes) {
                return Err(StoreError::new(
                    StoreErrorKind::Invalid,
                    format!(
                        "the pulled document of {}/{id} was refused, and nothing of its page applied: {error}",
                        self.entity
                    ),
                )
                .with_source(error));
            }
        }
        Ok(())
    }

    /// The refusal of a page pulled from a state that is no longer the
    /// stored one (see [`Self::expected`]).
    #[must_use]
    pub fn moved_on(&self) -> StoreError {
        StoreError::new(
            StoreErrorKind::Other,
            format!(
                "another pull of {} applied a page first (the stored pull state is not the one this page \
                 was pulled from): nothing was applied; pull again from the stored state",
                self.entity
            ),
        )
    }
}

/// What applying a page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PullCounts {
    /// Local documents written with the server's copy.
    pub upserted: u64,
    /// Local documents removed (by tombstones or a listing's sweep).
    pub deleted: u64,
    /// Changes kept off a record because a local change to it is pending.
    pub skipped: u64,
    /// Pending changes the resolver merged an incoming copy into.
    pub merged: u64,
}

impl PullCounts {
    /// Counts one effect.
    pub fn count(&mut self, effect: PullEffect) {
        match effect {
            PullEffect::Upserted => self.upserted += 1,
            PullEffect::Deleted => self.deleted += 1,
            PullEffect::Skipped => self.skipped += 1,
            PullEffect::Merged => self.merged += 1,
            PullEffect::Unchanged => {}
        }
    }

    /// Adds another page's counts.
    pub fn add(&mut self, other: PullCounts) {
        self.upserted += other.upserted;
        self.deleted += other.deleted;
        self.skipped += other.skipped;
        self.merged += other.merged;
    }
}

#[cfg(test)]
mod tests;
