//! The queue-coalescing state machine: what a new local change does to the
//! record's queue item and local document.
//!
//! One principle defines every cell: **after the queue drains, the server
//! holds exactly the last local state, whatever earlier attempts did or did
//! not reach it.** So a change is reduced to the state the app wants
//! ([`Desired`]) and what we know of the server's copy ([`ServerView`]); the
//! operation to send follows from those two alone:
//!
//! | desired \ server | `Absent` | `Present` | `Unknown` |
//! |---|---|---|---|
//! | `Exists(P)` | create P | update P | create P, checking first |
//! | `Deleted` | nothing to send | delete | delete (404 counts as done) |
//!
//! The full table of (existing item × change) cells, with their tests, is in
//! `docs/queue-state-machine.md`.

use crate::clock::Timestamp;
use crate::ids::OperationId;
use crate::model::{JsonObject, LocalChange, SyncOperation, SyncQueueItem, SyncStatus};

/// What we know of the server's copy of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerView {
    /// The server does not have the record.
    Absent,
    /// The server has the record (its content may be older).
    Present,
    /// An attempt whose outcome we never heard may have created or deleted it.
    Unknown,
}

/// The state the app wants a record to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// The record exists with the change's payload.
    Exists,
    /// The record is gone.
    Deleted,
}

impl Desired {
    /// The state a change asks for: create and update both mean "exists".
    #[must_use]
    pub fn of(operation: SyncOperation) -> Self {
        match operation {
            SyncOperation::Create | SyncOperation::Update => Self::Exists,
            SyncOperation::Delete => Self::Deleted,
        }
    }
}

/// What the server holds once `operation` has been applied.
#[must_use]
pub fn view_after(operation: SyncOperation) -> ServerView {
    match operation {
        SyncOperation::Create | SyncOperation::Update => ServerView::Present,
        SyncOperation::Delete => ServerView::Absent,
    }
}

/// What the server holds according to an existing queue item.
///
/// - A synced item's operation took effect: present after a create or
///   update, absent after a delete.
/// - An item in flight or flagged `possibly_applied` may or may not have
///   taken effect: unknown for a create or delete. An update only exists
///   when the record was present, and it stays present either way.
/// - Otherwise nothing was applied, so the server is as the operation
///   expected: absent before a create, present before an update or delete.
#[must_use]
pub fn item_view(item: &SyncQueueItem) -> ServerView {
    if item.status == SyncStatus::Synced && item.in_flight.is_none() {
        return view_after(item.operation);
    }
    match item.operation {
        SyncOperation::Update => ServerView::Present,
        SyncOperation::Create | SyncOperation::Delete
            if item.in_flight.is_some() || item.possibly_applied =>
        {
            ServerView::Unknown
        }
        SyncOperation::Create => ServerView::Absent,
        SyncOperation::Delete => ServerView::Present,
    }
}

/// What the server holds before a change, from the existing item or, when
/// there is none, from the local document and the app's own operation.
///
/// Without a queue item, a local document means the record was synced
/// (present). Without either, the app's operation is its statement about
/// the server: a create says absent, an update says present, and a delete
/// of a record we never saw is unknown (the app may know an id we don't).
#[must_use]
pub fn server_view(
    existing: Option<&SyncQueueItem>,
    local_exists: bool,
    operation: SyncOperation,
) -> ServerView {
    match existing {
        Some(item) => item_view(item),
        None if local_exists => ServerView::Present,
        None => match operation {
            SyncOperation::Create => ServerView::Absent,
            SyncOperation::Update => ServerView::Present,
            SyncOperation::Delete => ServerView::Unknown,
        },
    }
}

/// The operation to send, and whether the server's state is uncertain, for
/// a desired state and a server view; `None` when nothing needs sending.
#[must_use]
pub fn operation_for(desired: Desired, view: ServerView) -> Option<(SyncOperation, bool)> {
    match (desired, view) {
        (Desired::Exists, ServerView::Absent) => Some((SyncOperation::Create, false)),
        (Desired::Exists, ServerView::Present) => Some((SyncOperation::Update, false)),
        (Desired::Exists, ServerView::Unknown) => Some((SyncOperation::Create, true)),
        (Desired::Deleted, ServerView::Absent) => None,
        (Desired::Deleted, ServerView::Present) => Some((SyncOperation::Delete, false)),
        (Desired::Deleted, ServerView::Unknown) => Some((SyncOperation::Delete, true)),
    }
}

/// What happens to a record's queue row.
// A decision is built, matched and consumed at once: boxing the item would
// add an allocation to every save and claim to save moving a few bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum QueueWrite {
    /// Write this item (insert or replace).
    Put(SyncQueueItem),
    /// Remove the row: nothing is left to reconcile.
    Remove,
    /// Leave the row as it is (or absent, if there is none).
    Keep,
}

/// What happens to a record's local document.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentWrite {
    /// Insert or replace the document, keeping its `created_at`.
    Upsert(JsonObject),
    /// Remove the document (no-op when there is none).
    Remove,
}

/// The decision for one save: apply both writes in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SavePlan {
    /// The queue row's fate.
    pub queue: QueueWrite,
    /// The local document's fate.
    pub document: DocumentWrite,
    /// What the server held before the change, as far as we knew.
    pub view: ServerView,
}

/// Facts a save needs from outside: the time and a fresh operation id.
#[derive(Debug, Clone)]
pub struct SaveContext {
    /// The time of the save.
    pub now: Timestamp,
    /// The id the new local change will carry.
    pub operation_id: OperationId,
}

impl SaveContext {
    /// A context at `now` with a freshly generated operation id.
    #[must_use]
    pub fn at(now: Timestamp) -> Self {
        Self {
            now,
            operation_id: OperationId::generate(),
        }
    }
}

/// Decides what a local change does to the queue and the local document.
///
/// `existing` is the record's current queue item and `local_exists` whether
/// it has a local document. The result is a pure decision; the store applies
/// it atomically.
#[must_use]
pub fn plan_save(
    existing: Option<&SyncQueueItem>,
    local_exists: bool,
    change: LocalChange,
    context: SaveContext,
) -> SavePlan {
    let desired = Desired::of(change.operation);
    // An update or delete of a temporary id with no item left (its create
    // discarded): the app cannot know what the server holds, since only
    // the engine could have sent it; the server's state is unknown, so the
    // record is created after a check, or looked up to be deleted. A
    // create of a new temporary id is what it says.
    let view =
        if existing.is_none() && change.key.id.is_temporary() && change.operation != SyncOperation::Create {
            ServerView::Unknown
        } else {
            server_view(existing, local_exists, change.operation)
        };
    let document = match desired {
        Desired::Exists => DocumentWrite::Upsert(change.payload.clone()),
        Desired::Deleted => DocumentWrite::Remove,
    };
    let Some((operation, possibly_applied)) = operation_for(desired, view) else {
        // Deleting a record the server never had: nothing to send. A live
        // item (a create never sent) disappears with the document; a synced
        // item stays for observation. An item in flight is never `Absent`.
        let queue = match existing {
            Some(item) if item.status != SyncStatus::Synced && item.in_flight.is_none() => QueueWrite::Remove,
            _ => QueueWrite::Keep,
        };
        return SavePlan {
            queue,
            document,
            view,
        };
    };

    // A change folded into a live item keeps its place in the queue and its
    // failure history; a change after a synced item starts a new entry.
    let live = existing.filter(|item| item.status != SyncStatus::Synced || item.in_flight.is_some());
    let now = context.now;
    // A delete saved with an empty payload keeps the last document queued:
    // what names the record's parents (a parent's delete waits for this
    // one, `crate::depends::gate_for_children`), and the body a create
    // under a temporary id is posted again with to learn the id to delete.
    let payload = match live {
        Some(item) if operation == SyncOperation::Delete && change.payload.is_empty() => item.payload.clone(),
        _ => change.payload,
    };
    let not_before = live.and_then(|item| item.not_before);
    let item = SyncQueueItem {
        entity: change.key.entity,
        id: change.key.id,
        operation,
        payload,
        status: SyncStatus::Pending,
        retry_count: live.map_or(0, |item| item.retry_count),
        created_at: live.map_or(now, |item| item.created_at),
        updated_at: now,
        last_error: live.and_then(|item| item.last_error.clone()),
        last_error_kind: live.and_then(|item| item.last_error_kind),
        last_error_http_status: live.and_then(|item| item.last_error_http_status),
        version: existing.map_or(1, |item| item.version.saturating_add(1)),
        // A create under a temporary id keeps its key until the server has
        // confirmed it: the key is how a lost answer is found again
        // (`crate::rename`).
        operation_id: match live {
            Some(item) if item.operation == SyncOperation::Create && item.id.is_temporary() => {
                item.operation_id.clone()
            }
            _ => context.operation_id,
        },
        possibly_applied,
        in_flight: live.and_then(|item| item.in_flight),
        // A new change is sent at once, unless the server asked to wait.
        next_attempt_at: Some(not_before.map_or(now, |at| at.max(now))),
        not_before,
    };
    SavePlan {
        queue: QueueWrite::Put(item),
        document,
        view,
    }
}
