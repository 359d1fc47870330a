//! Attempt transitions: claiming a queue item for sending and applying the
//! outcome, compare-and-set on the item's version.
//!
//! An outcome applies in full only to the version it was started for. When
//! the app saved a newer change meanwhile, the outcome only teaches us what
//! the server now holds; it never overwrites the newer change.

use crate::clock::Timestamp;
use crate::coalesce::{Desired, DocumentWrite, QueueWrite, operation_for, view_after};
use crate::error::ErrorKind;
use crate::ids::{OperationId, RecordKey};
use crate::model::{JsonObject, SyncOperation, SyncQueueItem, SyncStatus};

/// The requests an attempt makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPlan {
    /// `POST` the payload: the server is known not to have the record.
    Create,
    /// Fetch the record first; `PUT` if it exists, `POST` if not. Used when
    /// an earlier attempt may have created it, so no duplicate is posted.
    CreateIfAbsent,
    /// `PUT` the payload.
    Update,
    /// `DELETE` the record; "not found" counts as done.
    Delete,
}

impl SendPlan {
    /// The plan for an item's operation and uncertainty flag.
    #[must_use]
    pub fn for_item(operation: SyncOperation, possibly_applied: bool) -> Self {
        match operation {
            SyncOperation::Create if possibly_applied => Self::CreateIfAbsent,
            SyncOperation::Create => Self::Create,
            SyncOperation::Update => Self::Update,
            SyncOperation::Delete => Self::Delete,
        }
    }
}

/// Everything an attempt needs, taken when the item is claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptTicket {
    /// The record.
    pub key: RecordKey,
    /// The item version this attempt sends.
    pub version: u64,
    /// The idempotency key.
    pub operation_id: OperationId,
    /// The queued operation.
    pub operation: SyncOperation,
    /// The requests to make.
    pub plan: SendPlan,
    /// The document to send.
    pub payload: JsonObject,
    /// Failed attempts before this one, over the item's life.
    pub retry_count: u32,
}

/// Claims an item for an attempt at `now`: the item becomes `syncing` and
/// in flight. `None` when the item is not ready.
#[must_use]
pub fn begin_attempt(item: &SyncQueueItem, now: Timestamp) -> Option<(SyncQueueItem, AttemptTicket)> {
    if !item.is_ready(now) {
        return None;
    }
    let ticket = AttemptTicket {
        key: item.key(),
        version: item.version,
        operation_id: item.operation_id.clone(),
        operation: item.operation,
        plan: SendPlan::for_item(item.operation, item.possibly_applied),
        payload: item.payload.clone(),
        retry_count: item.retry_count,
    };
    let mut claimed = item.clone();
    claimed.status = SyncStatus::Syncing;
    claimed.in_flight = true;
    claimed.updated_at = now;
    Some((claimed, ticket))
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// The server applied the operation.
    Applied {
        /// The document to keep locally instead of the sent payload (the
        /// server's response, or what a conflict resolver chose). Ignored
        /// for deletes and when a newer local change exists.
        replace_local_with: Option<JsonObject>,
    },
    /// The attempt failed and counts as one.
    Failed {
        /// The classification.
        kind: ErrorKind,
        /// A readable reason, without payloads or credentials.
        message: String,
        /// Whether the server may have applied the request anyway.
        possibly_applied: bool,
        /// When to try again; `None` waits for the next pass (or parks the
        /// item after a permanent error).
        next_attempt_at: Option<Timestamp>,
        /// The server's `Retry-After`, as an absolute time.
        not_before: Option<Timestamp>,
    },
    /// The link went away: back to pending without using an attempt.
    Released {
        /// Whether the request may have reached the server before the link
        /// dropped.
        possibly_applied: bool,
    },
}

/// The decision for one finished attempt: apply both writes atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishPlan {
    /// The queue row's fate.
    pub queue: QueueWrite,
    /// The local document's fate, if it changes.
    pub document: Option<DocumentWrite>,
    /// Whether a newer local change (or a recovery) superseded the attempt,
    /// so its outcome only refined what we know of the server.
    pub stale: bool,
}

/// Applies an attempt's outcome to the record's current queue item.
///
/// Compare-and-set: the full outcome lands only when `current` is still the
/// version the ticket was taken for and still in flight. Otherwise:
/// - an `Applied` outcome tells us exactly what the server holds, so the
///   newer item's operation is recomputed from that (a create may become an
///   update, a delete that is already done becomes synced);
/// - a failure or release only clears the in-flight mark, and makes the
///   server's state uncertain if the request may have been applied;
/// - an outcome for an item that is no longer in flight (recovered after a
///   restart) changes nothing.
#[must_use]
pub fn finish_attempt(
    current: Option<&SyncQueueItem>,
    ticket: &AttemptTicket,
    outcome: &AttemptOutcome,
    now: Timestamp,
) -> FinishPlan {
    let keep = FinishPlan {
        queue: QueueWrite::Keep,
        document: None,
        stale: true,
    };
    let Some(current) = current.filter(|item| item.in_flight) else {
        return keep;
    };
    let mut item = current.clone();
    item.in_flight = false;
    item.updated_at = now;

    if current.version != ticket.version {
        match outcome {
            AttemptOutcome::Applied { .. } => {
                let known = view_after(ticket.operation);
                match operation_for(Desired::of(item.operation), known) {
                    Some((operation, possibly_applied)) => {
                        item.operation = operation;
                        item.possibly_applied = possibly_applied;
                    }
                    None => mark_synced(&mut item),
                }
            }
            AttemptOutcome::Failed { possibly_applied, .. }
            | AttemptOutcome::Released { possibly_applied } => {
                item.possibly_applied |= *possibly_applied;
            }
        }
        return FinishPlan {
            queue: QueueWrite::Put(item),
            document: None,
            stale: true,
        };
    }

    let mut document = None;
    match outcome {
        AttemptOutcome::Applied { replace_local_with } => {
            mark_synced(&mut item);
            item.last_error = None;
            item.last_error_kind = None;
            if item.operation != SyncOperation::Delete {
                document = replace_local_with.clone().map(DocumentWrite::Upsert);
            }
        }
        AttemptOutcome::Failed {
            kind,
            message,
            possibly_applied,
            next_attempt_at,
            not_before,
        } => {
            item.status = SyncStatus::Failed;
            item.retry_count = item.retry_count.saturating_add(1);
            item.last_error = Some(message.clone());
            item.last_error_kind = Some(*kind);
            item.possibly_applied |= *possibly_applied;
            item.next_attempt_at = *next_attempt_at;
            item.not_before = *not_before;
        }
        AttemptOutcome::Released { possibly_applied } => {
            item.status = SyncStatus::Pending;
            item.possibly_applied |= *possibly_applied;
            item.next_attempt_at = Some(now);
        }
    }
    FinishPlan {
        queue: QueueWrite::Put(item),
        document,
        stale: false,
    }
}

fn mark_synced(item: &mut SyncQueueItem) {
    item.status = SyncStatus::Synced;
    item.possibly_applied = false;
    item.next_attempt_at = None;
    item.not_before = None;
}

/// Recovers an item left in flight by a process that stopped mid-attempt.
///
/// The request may have reached the server, so the item is flagged
/// `possibly_applied` (a create will check before posting) and becomes
/// eligible at once. `None` when the item was not in flight.
#[must_use]
pub fn recover_interrupted(item: &SyncQueueItem, now: Timestamp) -> Option<SyncQueueItem> {
    if !item.in_flight {
        return None;
    }
    let mut recovered = item.clone();
    recovered.in_flight = false;
    recovered.possibly_applied = true;
    if recovered.status == SyncStatus::Syncing {
        recovered.status = SyncStatus::Pending;
    }
    recovered.next_attempt_at = Some(now);
    recovered.updated_at = now;
    Some(recovered)
}

/// Makes a failed item eligible at the start of a new sync pass: waits from
/// backoff end early, but a server's `Retry-After` still holds. Items parked
/// by a permanent error stay parked. `None` when nothing changes.
#[must_use]
pub fn rearm_for_pass(item: &SyncQueueItem, now: Timestamp) -> Option<SyncQueueItem> {
    let eligible = item.status == SyncStatus::Failed
        && !item.in_flight
        && item.last_error_kind != Some(ErrorKind::Permanent)
        && item.next_attempt_at.is_none_or(|at| at > now);
    eligible.then(|| {
        let mut rearmed = item.clone();
        rearmed.next_attempt_at = Some(now);
        rearmed
    })
}

/// Makes a failed item eligible now at the app's request, parked or not.
/// `None` when the item is not failed or is in flight.
#[must_use]
pub fn retry_now(item: &SyncQueueItem, now: Timestamp) -> Option<SyncQueueItem> {
    let eligible = item.status == SyncStatus::Failed && !item.in_flight;
    eligible.then(|| {
        let mut rearmed = item.clone();
        rearmed.next_attempt_at = Some(now);
        rearmed.updated_at = now;
        rearmed
    })
}
