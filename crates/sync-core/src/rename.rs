//! Server-assigned ids: a record created offline under a temporary id
//! ([`RecordId::temporary`]) takes the id the server gave it when its
//! create is applied.
//!
//! The rename is part of the attempt's outcome
//! ([`AttemptOutcome::AppliedAs`]), so it lands in the same transaction
//! as the rest of it: the local document, the queue item (and any change
//! saved since), the server copy, an alias from the temporary id to the
//! new one, and every declared reference to the record in other
//! documents and queued payloads. Before it lands, the answer's id is
//! checked ([`assigned_id`]) and so is the place it goes to
//! ([`check_target`]); a refusal parks the create, possibly applied, and
//! renames nothing.

use std::collections::HashMap;

use serde_json::Value;

use crate::attempt::{AttemptOutcome, AttemptTicket, SendPlan};
use crate::clock::Timestamp;
use crate::error::ErrorKind;
use crate::ids::{EntityName, OperationId, RecordId, RecordKey};
use crate::model::{JsonObject, LocalChange, SyncOperation, SyncQueueItem, SyncStatus};

/// The field of a document that holds the record's own id, rewritten by a
/// rename when it holds the temporary id.
pub const OWN_ID_FIELD: &str = crate::answer::ID_FIELD;

/// A declared reference to the renamed record's entity: documents of
/// `entity` hold a parent's id in `field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferringField {
    /// The referring (child) entity.
    pub entity: EntityName,
    /// The field holding the parent's id.
    pub field: String,
}

/// The id the server gave a record created under a temporary id, with
/// what a rename needs.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignedId {
    /// The server's id.
    pub id: RecordId,
    /// The id as the server wrote it (a number for an auto-increment key):
    /// the form written into documents and payloads.
    pub value: Value,
    /// The fields of other entities that refer to this record's entity
    /// (declared references), rewritten from the temporary id to this one.
    pub referring: Vec<ReferringField>,
}

/// Why the id in a create's answer cannot replace the temporary one.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignedIdRefusal {
    /// The answer holds no id.
    Missing,
    /// The answer's id is not a string or an integer, is not a valid
    /// record id, or is itself a temporary id.
    Invalid,
    /// Another local record has this id and changes of its own not yet
    /// on the server.
    Clash,
}

impl AssignedIdRefusal {
    /// What went wrong and what to do, without the ids (they are personal
    /// data in many apps).
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => {
                "the server applied the create of a record with a temporary id but its answer holds no id \
                 where the request shape says it is: nothing was renamed; make the server answer a \
                 create with the record (or set the shape's id field and answer location), then retry \
                 the item, which looks the record up before posting again"
            }
            Self::Invalid => {
                "the server applied the create of a record with a temporary id but answered with an id \
                 that is not a valid record id (not a string or an integer, empty, too long, a control \
                 character, or a temporary id): nothing was renamed; fix the server's answer, then retry \
                 the item, which looks the record up before posting again"
            }
            Self::Clash => {
                "the server applied the create of a record with a temporary id and answered with an id \
                 another local record already has: nothing was renamed; look at both records (discard or \
                 delete the one that is wrong), then retry the item"
            }
        }
    }

    /// Why `item` was parked, when a refusal of the server's id parked it:
    /// for apps that show or handle these cases apart.
    #[must_use]
    pub fn of_item(item: &SyncQueueItem) -> Option<Self> {
        let error = item.last_error.as_deref()?;
        [Self::Missing, Self::Invalid, Self::Clash]
            .into_iter()
            .find(|refusal| error.contains(refusal.message()))
    }

    /// The outcome that parks the create: permanent, possibly applied (the
    /// server said it applied it), so a retry looks the record up first.
    #[must_use]
    pub fn outcome(self) -> AttemptOutcome {
        AttemptOutcome::Failed {
            kind: ErrorKind::Permanent,
            message: self.message().to_owned(),
            http_status: None,
            possibly_applied: true,
            next_attempt_at: None,
            not_before: None,
        }
    }
}

/// The text of an id as a server writes it: a string, or an integer.
#[must_use]
pub fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) if number.is_i64() || number.is_u64() => Some(number.to_string()),
        _ => None,
    }
}

/// The server's id in an answer (`None`: the answer holds none), checked.
///
/// # Errors
/// [`AssignedIdRefusal::Missing`] without an id (`null` included);
/// [`AssignedIdRefusal::Invalid`] for an id that is not a string or an
/// integer, fails [`RecordId`]'s rules, or is itself temporary (a server
/// echoing the id it was sent).
pub fn assigned_id(
    answer_id: Option<&Value>,
    referring: Vec<ReferringField>,
) -> Result<AssignedId, AssignedIdRefusal> {
    let value = match answer_id {
        None | Some(Value::Null) => return Err(AssignedIdRefusal::Missing),
        Some(value) => value,
    };
    let id: RecordId = id_text(value)
        .and_then(|text| text.parse().ok())
        .ok_or(AssignedIdRefusal::Invalid)?;
    if id.is_temporary() {
        return Err(AssignedIdRefusal::Invalid);
    }
    Ok(AssignedId {
        id,
        value: value.clone(),
        referring,
    })
}

/// Whether a record created under `temporary` may take the server's id,
/// given what the store holds under that id:
///
/// - nothing, or a synced item with no document (a record deleted
///   earlier): yes;
/// - a queue item with something to send: no, that record's changes would
///   be lost ([`AssignedIdRefusal::Clash`]);
/// - a document with nothing to send: yes when it is this very record,
///   brought by a pull before the create's answer: it holds `temporary`
///   in a top-level field (the local-id field the server keeps), or the
///   create may have been applied by an earlier attempt whose answer was
///   lost (`after_lost_answer`: the window in which a pull can bring it);
///   otherwise no, it is another record the server named the same.
///
/// # Errors
/// [`AssignedIdRefusal::Clash`].
pub fn check_target(
    existing_item: Option<&SyncQueueItem>,
    existing_document: Option<&JsonObject>,
    temporary: &RecordId,
    after_lost_answer: bool,
) -> Result<(), AssignedIdRefusal> {
    if existing_item.is_some_and(|item| item.status != SyncStatus::Synced || item.in_flight.is_some()) {
        return Err(AssignedIdRefusal::Clash);
    }
    match existing_document {
        Some(document)
            if !after_lost_answer
                && !document
                    .values()
                    .any(|value| value.as_str() == Some(temporary.as_str())) =>
        {
            Err(AssignedIdRefusal::Clash)
        }
        _ => Ok(()),
    }
}

/// The outcome to record instead of `outcome` when its rename is refused
/// ([`check_target`]): the park of [`AssignedIdRefusal::outcome`]. `None`
/// when `outcome` renames nothing, when the item no longer carries the
/// ticket's attempt (nothing is applied then), or when the new id is free.
/// `target_item` and `target_document` are what the store holds under the
/// server's id. A store calls this before [`crate::attempt::finish_attempt`].
#[must_use]
pub fn refused_rename(
    current: Option<&SyncQueueItem>,
    ticket: &AttemptTicket,
    outcome: &AttemptOutcome,
    target_item: Option<&SyncQueueItem>,
    target_document: Option<&JsonObject>,
) -> Option<AttemptOutcome> {
    outcome.assigned()?;
    current.filter(|item| item.in_flight == Some(ticket.attempt))?;
    let after_lost_answer = ticket.plan != SendPlan::Create;
    check_target(target_item, target_document, &ticket.key.id, after_lost_answer)
        .err()
        .map(AssignedIdRefusal::outcome)
}

/// A rename to apply with an attempt's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Rename {
    /// The record under its temporary id.
    pub from: RecordKey,
    /// The record under the server's id.
    pub to: RecordKey,
    /// The server's id as written into documents and payloads.
    pub value: Value,
    /// The declared references to rewrite.
    pub referring: Vec<ReferringField>,
}

impl Rename {
    /// The rename of `from` to the assigned id.
    #[must_use]
    pub fn new(from: &RecordKey, assigned: &AssignedId) -> Self {
        Self {
            from: from.clone(),
            to: RecordKey::new(from.entity.clone(), assigned.id.clone()),
            value: assigned.value.clone(),
            referring: assigned.referring.clone(),
        }
    }

    /// The record's own document (or payload) with its id field moved to
    /// the new id, when it held the temporary one; `true` when it changed.
    pub fn rewrite_own(&self, document: &mut JsonObject) -> bool {
        rewrite_field(document, OWN_ID_FIELD, &self.from.id, &self.value)
    }

    /// A document of `entity` with its references to the temporary id
    /// moved to the new one; `true` when any changed.
    pub fn rewrite_references(&self, entity: &EntityName, document: &mut JsonObject) -> bool {
        let mut changed = false;
        for referring in self
            .referring
            .iter()
            .filter(|referring| &referring.entity == entity)
        {
            changed |= rewrite_field(document, &referring.field, &self.from.id, &self.value);
        }
        changed
    }

    /// A queued change of another record whose payload referred to the
    /// renamed one, after the rewrite; `None` when it did not refer to it.
    ///
    /// A rewritten payload is a new version of the change: an attempt out
    /// with the old payload finishes stale and the item is sent again. It
    /// takes a new idempotency key (the server may have applied the old
    /// payload under the old one), except a create under a temporary id,
    /// whose key is how a lost answer is found again.
    ///
    /// A synced item is left alone: it was sent, and sending it again would
    /// redo what the server has (a synced delete made an update would bring
    /// the record back); a change that named a temporary id never goes
    /// (`crate::depends::gate_for_parent`).
    #[must_use]
    pub fn rewrite_queued(&self, item: &SyncQueueItem, now: Timestamp) -> Option<SyncQueueItem> {
        if item.status == SyncStatus::Synced && item.in_flight.is_none() {
            return None;
        }
        let mut rewritten = item.clone();
        if !self.rewrite_references(&item.entity, &mut rewritten.payload) {
            return None;
        }
        rewritten.version = rewritten.version.saturating_add(1);
        rewritten.updated_at = now;
        if !(item.operation == SyncOperation::Create && item.id.is_temporary()) {
            rewritten.operation_id = OperationId::generate();
        }
        if rewritten.status == SyncStatus::Syncing {
            rewritten.status = SyncStatus::Pending;
            rewritten.next_attempt_at = Some(now);
        }
        Some(rewritten)
    }
}

/// What a renamed temporary id became: kept by the store, so the old id
/// keeps resolving ([`crate::SyncStore::resolve_id`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    /// The record's entity.
    pub entity: EntityName,
    /// The server's id.
    pub id: RecordId,
    /// The server's id as written into documents.
    pub value: Value,
}

impl Alias {
    /// The alias a rename leaves.
    #[must_use]
    pub fn of(rename: &Rename) -> Self {
        Self {
            entity: rename.to.entity.clone(),
            id: rename.to.id.clone(),
            value: rename.value.clone(),
        }
    }
}

/// The temporary ids a change names: its own id, and top-level string
/// fields holding one. A store looks up their aliases before the save
/// ([`apply_aliases`]).
#[must_use]
pub fn temporary_ids_in(change: &LocalChange) -> Vec<RecordId> {
    let mut ids: Vec<RecordId> = change
        .payload
        .values()
        .filter_map(Value::as_str)
        .filter(|text| RecordId::is_temporary_text(text))
        .filter_map(|text| text.parse::<RecordId>().ok())
        .collect();
    if change.key.id.is_temporary() {
        ids.push(change.key.id.clone());
    }
    ids
}

/// A change saved after renames it did not know of (the app still holds a
/// temporary id): its key moves to the server's id when its own id was
/// renamed, and every top-level field holding a renamed temporary id gets
/// the server's id, except a field other than `id` holding the record's
/// own (the local-id field the server keeps). Temporary ids are random and never sent, so one in a
/// field can only mean that record. `aliases` maps temporary ids to what
/// they became.
#[must_use]
pub fn apply_aliases(mut change: LocalChange, aliases: &HashMap<RecordId, Alias>) -> LocalChange {
    if aliases.is_empty() {
        return change;
    }
    if let Some(alias) = aliases.get(&change.key.id)
        && alias.entity == change.key.entity
    {
        change.key = RecordKey::new(alias.entity.clone(), alias.id.clone());
    }
    for (field, value) in &mut change.payload {
        let renamed = value
            .as_str()
            .filter(|text| RecordId::is_temporary_text(text))
            .and_then(|text| text.parse::<RecordId>().ok())
            .and_then(|id| aliases.get(&id));
        let Some(alias) = renamed else { continue };
        // The record's own temporary id outside its id field is the
        // local-id field the server keeps (`client_ref`): left as it is,
        // as the rename leaves it.
        let own = alias.entity == change.key.entity && alias.id == change.key.id;
        if field == OWN_ID_FIELD || !own {
            *value = alias.value.clone();
        }
    }
    change
}

/// The temporary ids a document names where no rename would rewrite them:
/// in a top-level field `declared` does not accept (not a declared
/// reference, not the id field), or anywhere inside a nested object or
/// array. Each comes with where it is (`field`, `field/0/sub`). The engine
/// never sends such a change as it is: the server would get an id it
/// does not know.
#[must_use]
pub fn stray_temporary_ids(
    document: &JsonObject,
    declared: impl Fn(&str) -> bool,
) -> Vec<(String, RecordId)> {
    fn walk(value: &Value, path: &str, found: &mut Vec<(String, RecordId)>) {
        match value {
            Value::String(text) if RecordId::is_temporary_text(text) => {
                if let Ok(id) = text.parse::<RecordId>() {
                    found.push((path.to_owned(), id));
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}/{index}"), found);
                }
            }
            Value::Object(fields) => {
                for (field, item) in fields {
                    walk(item, &format!("{path}/{field}"), found);
                }
            }
            _ => {}
        }
    }
    // Most documents hold none: look first, name the paths only then.
    fn holds_one(value: &Value) -> bool {
        match value {
            Value::String(text) => RecordId::is_temporary_text(text),
            Value::Array(items) => items.iter().any(holds_one),
            Value::Object(fields) => fields.values().any(holds_one),
            _ => false,
        }
    }
    let mut found = Vec::new();
    for (field, value) in document {
        match value {
            Value::String(_) if field == OWN_ID_FIELD || declared(field) => {}
            _ if holds_one(value) => walk(value, field, &mut found),
            _ => {}
        }
    }
    found
}

/// Moves `document[field]` from `from` to `to` when it holds `from` (as a
/// string); `true` when it changed.
fn rewrite_field(document: &mut JsonObject, field: &str, from: &RecordId, to: &Value) -> bool {
    match document.get_mut(field) {
        Some(value) if value.as_str() == Some(from.as_str()) => {
            *value = to.clone();
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
