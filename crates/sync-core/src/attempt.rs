//! Attempt transitions: claiming a queue item for sending and applying the
//! outcome, compare-and-set on the item's version.
//!
//! An outcome applies in full only to the version it was started for. When
//! the app saved a newer change meanwhile, the outcome only teaches us what
//! the server now holds; it never overwrites the newer change.

use crate::clock::Timestamp;
use crate::coalesce::{Desired, DocumentWrite, QueueWrite, ServerView, operation_for, view_after};
use crate::error::ErrorKind;
use crate::ids::{AttemptId, OperationId, RecordKey};
use crate::model::{JsonObject, ServerCopy, SyncOperation, SyncQueueItem, SyncStatus};
use crate::rename::Rename;

/// The requests an attempt makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPlan {
    /// `POST` the payload: the server is known not to have the record. An
    /// "already exists" answer means it has it after all: the payload is
    /// sent as an update in the same attempt.
    Create,
    /// Fetch the record first; `PUT` if it exists, `POST` if not. Used when
    /// an earlier attempt may have created it, so no duplicate is posted.
    CreateIfAbsent,
    /// `PUT` the payload.
    Update,
    /// `DELETE` a record the server is known to hold. A "not found" answer
    /// is checked with a fetch, since a wrong route answers 404 too: done
    /// when the fetch finds nothing, parked when it finds the record.
    Delete,
    /// `DELETE` again after an attempt that may have applied: "not found"
    /// counts as done.
    RepeatDelete,
}

impl SendPlan {
    /// The plan for an item's operation and uncertainty flag.
    #[must_use]
    pub fn for_item(operation: SyncOperation, possibly_applied: bool) -> Self {
        match operation {
            SyncOperation::Create if possibly_applied => Self::CreateIfAbsent,
            SyncOperation::Create => Self::Create,
            SyncOperation::Update => Self::Update,
            SyncOperation::Delete if possibly_applied => Self::RepeatDelete,
            SyncOperation::Delete => Self::Delete,
        }
    }
}

/// Everything an attempt needs, taken when the item is claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptTicket {
    /// The record.
    pub key: RecordKey,
    /// This attempt's identity: its outcome applies only while the item
    /// still carries it.
    pub attempt: AttemptId,
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
    /// The copy of the record the server last confirmed, if known: the
    /// base of conditional writes, merge patches and three-way resolution.
    /// Stores fill it in when they claim the item.
    pub base: Option<ServerCopy>,
    /// Whether this is the re-create of a record an update was told is
    /// gone (404): the create is then checked before and after, so a
    /// server whose routes cannot find the record gets at most one copy.
    pub after_not_found: bool,
    /// Whether the item was parked for a 404 that proved nothing (a
    /// re-create the server could not find, or a 404 right after a GET
    /// found the record): a later save of the record re-creates nothing
    /// until a GET finds the record, so the server gets no copy per edit.
    pub parked_for_not_found: bool,
}

/// Claims an item for an attempt at `now`: the item becomes `syncing` and
/// carries a fresh attempt id until the outcome is reported. `None` when the
/// item is not ready.
#[must_use]
pub fn begin_attempt(item: &SyncQueueItem, now: Timestamp) -> Option<(SyncQueueItem, AttemptTicket)> {
    if !item.is_ready(now) {
        return None;
    }
    let attempt = AttemptId::generate();
    let ticket = AttemptTicket {
        key: item.key(),
        attempt,
        version: item.version,
        operation_id: item.operation_id.clone(),
        operation: item.operation,
        plan: SendPlan::for_item(item.operation, item.possibly_applied),
        payload: item.payload.clone(),
        retry_count: item.retry_count,
        base: None,
        after_not_found: item.last_error_kind == Some(ErrorKind::NotFound),
        // A new save of the record keeps the error, so the mark outlives it.
        parked_for_not_found: item.last_error_kind == Some(ErrorKind::Permanent)
            && item.last_error_http_status == Some(404)
            && item.possibly_applied,
    };
    let mut claimed = item.clone();
    claimed.status = SyncStatus::Syncing;
    claimed.in_flight = Some(attempt);
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
        /// The server's version of the record after the write (a strong
        /// `ETag`, or a version field), if it gave one.
        server_version: Option<String>,
    },
    /// The server applied the create of a record saved under a temporary
    /// id ([`crate::RecordId::temporary`]) and gave it its own id: as
    /// `Applied`, and the record is renamed everywhere
    /// ([`crate::rename`]) in the same transaction. The store refuses the
    /// rename when the new id is taken ([`crate::rename::check_target`])
    /// and parks the item instead.
    AppliedAs {
        /// The server's id and the references to rewrite.
        assigned: crate::rename::AssignedId,
        /// As for `Applied`.
        replace_local_with: Option<JsonObject>,
        /// As for `Applied`.
        server_version: Option<String>,
    },
    /// An earlier create of a record under a temporary id was applied (its
    /// answer was lost): found by the temporary id, or answered again by a
    /// server replaying the create's key, holding `copy`, not the local
    /// state. The record is renamed as for `AppliedAs`, the server's copy
    /// is kept, and the local state goes as an update of the new id (or a
    /// delete) at the next claim, under a key of its own: nothing of it was
    /// sent. The local document is left as it is.
    FoundAs {
        /// The server's id and the references to rewrite.
        assigned: crate::rename::AssignedId,
        /// What the server holds.
        copy: ServerCopy,
    },
    /// The server answered that the record does not exist (an update
    /// answered 404): the record is re-created from the local state, since
    /// the server must end up holding it, after a fetch confirms the 404
    /// (a wrong update route answers 404 too). Not counted as a failure.
    NotFound,
    /// The attempt failed and counts as one.
    Failed {
        /// The classification.
        kind: ErrorKind,
        /// A readable reason, without payloads or credentials.
        message: String,
        /// The HTTP status the server answered with; `None` when the
        /// attempt got no answer (offline, timeout, a dropped connection).
        http_status: Option<u16>,
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
    /// Nothing was sent: the record waits for another one first (a
    /// parent's create, [`crate::depends`]). No attempt is used; the item
    /// is pending again with `reason` as its `last_error`, and is not
    /// claimed before `until`.
    Held {
        /// Why it waits, for the app and the support engineer.
        reason: String,
        /// When it is looked at again.
        until: Timestamp,
    },
}

impl AttemptOutcome {
    /// The server's id of a record created under a temporary id, for the
    /// outcomes that rename it (`AppliedAs`, `FoundAs`).
    #[must_use]
    pub fn assigned(&self) -> Option<&crate::rename::AssignedId> {
        match self {
            Self::AppliedAs { assigned, .. } | Self::FoundAs { assigned, .. } => Some(assigned),
            _ => None,
        }
    }
}

/// What happens to the record's server copy (see [`ServerCopy`]).
#[derive(Debug, Clone, PartialEq)]
pub enum CopyWrite {
    /// It is unchanged (nothing was learned, or the attempt failed).
    Keep,
    /// The server now holds this copy.
    Put(ServerCopy),
    /// The server no longer holds the record.
    Remove,
}

/// The decision for one finished attempt: apply all writes atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishPlan {
    /// The queue row's fate.
    pub queue: QueueWrite,
    /// The local document's fate, if it changes.
    pub document: Option<DocumentWrite>,
    /// The server copy's fate. It follows what the server answered, even
    /// when a newer local change superseded the attempt: the server's
    /// state is what it is.
    pub copy: CopyWrite,
    /// Whether a newer local change (or a recovery) superseded the attempt,
    /// so its outcome only refined what we know of the server.
    pub stale: bool,
    /// The rename to apply first, for [`AttemptOutcome::AppliedAs`]: the
    /// queue, document and copy writes above are then for the new key.
    pub rename: Option<crate::rename::Rename>,
}

impl FinishPlan {
    /// The key the queue, document and copy writes are for: the new one
    /// after a rename.
    #[must_use]
    pub fn key<'a>(&'a self, ticket: &'a AttemptTicket) -> &'a RecordKey {
        self.rename.as_ref().map_or(&ticket.key, |rename| &rename.to)
    }
}

/// Applies an attempt's outcome to the record's current queue item.
///
/// The outcome counts only while the item still carries the ticket's
/// attempt id; an outcome for an attempt given up on (the item was
/// recovered after a restart, perhaps claimed again since) changes nothing.
/// Then compare-and-set on the version: the full outcome lands only when
/// the item is still the version the ticket was taken for. Otherwise a newer
/// local change was saved while the attempt was out, and:
/// - an `Applied` or `NotFound` outcome tells us exactly what the server
///   holds, so the newer change's operation is recomputed from that (a
///   checked create becomes an update, a repeated delete becomes synced);
/// - a failure or release only clears the in-flight mark, keeps a server's
///   `Retry-After`, and makes the server's state uncertain if the request
///   may have been applied.
#[must_use]
pub fn finish_attempt(
    current: Option<&SyncQueueItem>,
    ticket: &AttemptTicket,
    outcome: &AttemptOutcome,
    now: Timestamp,
) -> FinishPlan {
    let Some(current) = current.filter(|item| item.in_flight == Some(ticket.attempt)) else {
        return FinishPlan {
            queue: QueueWrite::Keep,
            document: None,
            copy: CopyWrite::Keep,
            stale: true,
            rename: None,
        };
    };
    let mut item = current.clone();
    item.in_flight = None;
    item.updated_at = now;
    let fresh = current.version == ticket.version;
    let mut document = None;
    let copy = copy_after(ticket, outcome);
    match outcome {
        AttemptOutcome::Applied {
            replace_local_with, ..
        } if fresh => {
            mark_synced(&mut item);
            if item.operation != SyncOperation::Delete {
                document = replace_local_with.clone().map(DocumentWrite::Upsert);
            }
        }
        AttemptOutcome::Applied { .. } => relearn(&mut item, view_after(ticket.operation), now),
        AttemptOutcome::FoundAs { assigned, .. } => {
            let rename = Rename::new(&ticket.key, assigned);
            item.id = rename.to.id.clone();
            rename.rewrite_own(&mut item.payload);
            // Sent nothing of the local state: it goes now, to the new id.
            if item.status == SyncStatus::Syncing {
                item.status = SyncStatus::Pending;
            }
            relearn(&mut item, ServerView::Present, now);
            if item.status != SyncStatus::Synced {
                item.operation_id = crate::ids::OperationId::generate();
                item.next_attempt_at = Some(later(Some(now), item.not_before).unwrap_or(now));
            }
            return FinishPlan {
                queue: QueueWrite::Put(item),
                document: None,
                copy,
                stale: !fresh,
                rename: Some(rename),
            };
        }
        AttemptOutcome::AppliedAs {
            assigned,
            replace_local_with,
            ..
        } => {
            let rename = Rename::new(&ticket.key, assigned);
            item.id = rename.to.id.clone();
            rename.rewrite_own(&mut item.payload);
            if fresh {
                mark_synced(&mut item);
                if item.operation != SyncOperation::Delete {
                    document = replace_local_with.clone().map(DocumentWrite::Upsert);
                }
            } else {
                relearn(&mut item, view_after(ticket.operation), now);
                // The create's key was kept for it (to find a lost answer);
                // the change saved since is a new request to the server.
                item.operation_id = crate::ids::OperationId::generate();
            }
            return FinishPlan {
                queue: QueueWrite::Put(item),
                document,
                copy,
                stale: !fresh,
                rename: Some(rename),
            };
        }
        // A 404 alone proves nothing (a wrong route answers it too), so the
        // server's state becomes unknown: the re-create fetches first, and
        // parks if the fetch finds the record. The 404 is recorded (not as
        // a failure): it marks the re-create, which checks its own work.
        AttemptOutcome::NotFound => {
            relearn(&mut item, ServerView::Unknown, now);
            if item.status != SyncStatus::Synced {
                item.last_error = Some(
                    "the server answered the update \"not found\": the record is re-created after a \
                     check"
                        .to_owned(),
                );
                item.last_error_kind = Some(ErrorKind::NotFound);
                item.last_error_http_status = Some(404);
            }
        }
        AttemptOutcome::Failed {
            kind,
            message,
            http_status,
            possibly_applied,
            next_attempt_at,
            not_before,
        } => {
            item.possibly_applied |= *possibly_applied;
            item.not_before = later(item.not_before, *not_before);
            if fresh {
                item.status = SyncStatus::Failed;
                item.retry_count = item.retry_count.saturating_add(1);
                item.last_error = Some(message.clone());
                item.last_error_kind = Some(*kind);
                item.last_error_http_status = *http_status;
                item.next_attempt_at = *next_attempt_at;
            }
            item.next_attempt_at = item
                .next_attempt_at
                .map(|at| later(Some(at), item.not_before).unwrap_or(at));
        }
        AttemptOutcome::Released { possibly_applied } => {
            item.possibly_applied |= *possibly_applied;
            if fresh {
                item.status = SyncStatus::Pending;
                item.next_attempt_at = Some(later(Some(now), item.not_before).unwrap_or(now));
            }
        }
        // A newer change meanwhile is ready as saved: it is looked at anew.
        AttemptOutcome::Held { reason, until } => {
            if fresh {
                item.status = SyncStatus::Pending;
                item.last_error = Some(reason.clone());
                item.last_error_kind = None;
                item.last_error_http_status = None;
                item.next_attempt_at = Some(later(Some(*until), item.not_before).unwrap_or(*until));
            }
        }
    }
    FinishPlan {
        queue: QueueWrite::Put(item),
        document,
        copy,
        stale: !fresh,
        rename: None,
    }
}

/// What the server holds after an attempt that reported `outcome`: the
/// document written (the server's answer, the resolver's choice, or the
/// payload sent) with the server's version after an applied create or
/// update; nothing after an applied delete or a "not found"; unknown (the
/// copy is forgotten) after a failure that may have applied; unchanged
/// after any other failure.
fn copy_after(ticket: &AttemptTicket, outcome: &AttemptOutcome) -> CopyWrite {
    match outcome {
        AttemptOutcome::Applied { .. } if ticket.operation == SyncOperation::Delete => CopyWrite::Remove,
        AttemptOutcome::Applied {
            replace_local_with,
            server_version,
        } => CopyWrite::Put(ServerCopy {
            data: replace_local_with
                .clone()
                .unwrap_or_else(|| ticket.payload.clone()),
            version: server_version.clone(),
        }),
        AttemptOutcome::AppliedAs { .. } if ticket.operation == SyncOperation::Delete => CopyWrite::Remove,
        AttemptOutcome::AppliedAs {
            assigned,
            replace_local_with,
            server_version,
        } => CopyWrite::Put(ServerCopy {
            data: replace_local_with.clone().unwrap_or_else(|| {
                let mut data = ticket.payload.clone();
                Rename::new(&ticket.key, assigned).rewrite_own(&mut data);
                data
            }),
            version: server_version.clone(),
        }),
        AttemptOutcome::FoundAs { copy, .. } => CopyWrite::Put(copy.clone()),
        AttemptOutcome::NotFound => CopyWrite::Remove,
        // The request may have applied: what the server holds is no longer
        // known. A patch or a merge against the old copy could leave the
        // server with a state nobody saved, so it is forgotten.
        AttemptOutcome::Failed {
            possibly_applied: true,
            ..
        }
        | AttemptOutcome::Released {
            possibly_applied: true,
        } => CopyWrite::Remove,
        AttemptOutcome::Failed { .. } | AttemptOutcome::Released { .. } | AttemptOutcome::Held { .. } => {
            CopyWrite::Keep
        }
    }
}

/// The later of two optional times.
fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Recomputes the item's operation now that the server's state is known
/// for sure; an item with nothing left to send becomes synced.
pub(crate) fn relearn(item: &mut SyncQueueItem, known: ServerView, now: Timestamp) {
    match operation_for(Desired::of(item.operation), known) {
        Some((operation, possibly_applied)) => {
            item.operation = operation;
            item.possibly_applied = possibly_applied;
            if item.status == SyncStatus::Syncing {
                item.status = SyncStatus::Pending;
                item.next_attempt_at = Some(later(Some(now), item.not_before).unwrap_or(now));
            }
        }
        None => mark_synced(item),
    }
}

fn mark_synced(item: &mut SyncQueueItem) {
    item.status = SyncStatus::Synced;
    item.possibly_applied = false;
    item.next_attempt_at = None;
    item.not_before = None;
    item.last_error = None;
    item.last_error_kind = None;
    item.last_error_http_status = None;
}

/// Recovers an item left in flight by a process that stopped mid-attempt.
///
/// The request may have reached the server, so the item is flagged
/// `possibly_applied` (a create will check before posting) and becomes
/// eligible at once (a server's `Retry-After` still holds). `None` when the
/// item was not in flight.
#[must_use]
pub fn recover_interrupted(item: &SyncQueueItem, now: Timestamp) -> Option<SyncQueueItem> {
    item.in_flight?;
    let mut recovered = item.clone();
    recovered.in_flight = None;
    recovered.possibly_applied = true;
    if recovered.status == SyncStatus::Syncing {
        recovered.status = SyncStatus::Pending;
    }
    recovered.next_attempt_at = later(Some(now), recovered.not_before);
    recovered.updated_at = now;
    Some(recovered)
}

/// Makes a failed item eligible at the start of a new sync pass: waits from
/// backoff end early, but a server's `Retry-After` still holds. Items parked
/// by a permanent error stay parked. `None` when nothing changes.
#[must_use]
pub fn rearm_for_pass(item: &SyncQueueItem, now: Timestamp) -> Option<SyncQueueItem> {
    let earliest = later(Some(now), item.not_before);
    let eligible = item.status == SyncStatus::Failed
        && item.in_flight.is_none()
        && item.last_error_kind != Some(ErrorKind::Permanent)
        && item.next_attempt_at.is_none_or(|at| Some(at) > earliest);
    eligible.then(|| {
        let mut rearmed = item.clone();
        rearmed.next_attempt_at = earliest;
        rearmed
    })
}

/// Makes a failed item eligible now at the app's explicit request, parked
/// or not, and lifts a server's `Retry-After` (the app decided to try).
/// `None` when the item is not failed or is in flight.
#[must_use]
pub fn retry_now(item: &SyncQueueItem, now: Timestamp) -> Option<SyncQueueItem> {
    let eligible = item.status == SyncStatus::Failed && item.in_flight.is_none();
    eligible.then(|| {
        let mut rearmed = item.clone();
        rearmed.next_attempt_at = Some(now);
        rearmed.not_before = None;
        rearmed.updated_at = now;
        rearmed
    })
}

/// Whether an item waits for a record it refers to: pending, not in flight,
/// held by an [`AttemptOutcome::Held`] (a reason with no error kind) until
/// a time after `now`.
#[must_use]
pub fn is_held(item: &SyncQueueItem, now: Timestamp) -> bool {
    item.status == SyncStatus::Pending
        && item.in_flight.is_none()
        && item.last_error.is_some()
        && item.last_error_kind.is_none()
        && item.next_attempt_at.is_some_and(|at| at > now)
}

/// The app's retry of one item: a failed item as [`retry_now`], or an
/// item held for a record it refers to ([`is_held`]), looked at again now
/// (the app retried that record, or wants it tried). `None` otherwise.
#[must_use]
pub fn retry_one(item: &SyncQueueItem, now: Timestamp) -> Option<SyncQueueItem> {
    if let Some(retried) = retry_now(item, now) {
        return Some(retried);
    }
    is_held(item, now).then(|| {
        let mut woken = item.clone();
        woken.next_attempt_at = Some(later(Some(now), item.not_before).unwrap_or(now));
        woken.updated_at = now;
        woken
    })
}
