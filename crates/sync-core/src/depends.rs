//! Dependency order: records that refer to each other reach the server
//! parent first.
//!
//! The app declares its references (`tasks.project_id → projects`). A
//! change to a record that refers to a parent whose create has not reached
//! the server waits for it ([`gate_for_parent`]): while the parent's
//! attempt is out, and, when the parent failed, until the parent is sent
//! again (a parked parent holds its dependants, with the reason in their
//! items). Declarations are checked once ([`References::new`]): a cycle
//! (including an entity referring to itself) is refused, since no order
//! could send a parent first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::SyncOperation;
use crate::clock::Timestamp;
use crate::error::ValidationError;
use crate::ids::{EntityName, RecordId, RecordKey};
use crate::model::{JsonObject, SyncQueueItem, SyncStatus};
use crate::rename::ReferringField;

/// One declared reference: documents of `entity` name a record of
/// `parent` in their field `field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The referring (child) entity.
    pub entity: EntityName,
    /// The field holding the parent's id (a string or an integer).
    pub field: String,
    /// The entity referred to.
    pub parent: EntityName,
}

/// Every declared reference, checked: no cycles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Per child entity, its (field, parent) pairs.
    by_entity: BTreeMap<EntityName, Vec<(String, EntityName)>>,
}

impl References {
    /// Checks the declarations.
    ///
    /// # Errors
    /// [`ValidationError::Empty`] for an empty field name;
    /// [`ValidationError::ReferenceCycle`] when the references form a
    /// cycle (an entity referring to itself included).
    pub fn new(declared: impl IntoIterator<Item = Reference>) -> Result<Self, ValidationError> {
        let mut by_entity: BTreeMap<EntityName, Vec<(String, EntityName)>> = BTreeMap::new();
        for reference in declared {
            if reference.field.is_empty() {
                return Err(ValidationError::Empty {
                    what: "reference field",
                });
            }
            let fields = by_entity.entry(reference.entity).or_default();
            if !fields.contains(&(reference.field.clone(), reference.parent.clone())) {
                fields.push((reference.field, reference.parent));
            }
        }
        let references = Self { by_entity };
        if let Some(path) = references.cycle() {
            return Err(ValidationError::ReferenceCycle { path });
        }
        Ok(references)
    }

    /// Whether nothing is declared.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_entity.is_empty()
    }

    /// A cycle among the declarations, as `a.field → b.field → a`.
    fn cycle(&self) -> Option<String> {
        // Depth-first search from each entity, over its parents.
        fn visit(
            references: &References,
            entity: &EntityName,
            path: &mut Vec<(EntityName, String)>,
            done: &mut BTreeSet<EntityName>,
        ) -> Option<String> {
            if let Some(start) = path.iter().position(|(on_path, _)| on_path == entity) {
                let mut text: Vec<String> = path[start..]
                    .iter()
                    .map(|(entity, field)| format!("{entity}.{field}"))
                    .collect();
                text.push(entity.to_string());
                return Some(text.join(" → "));
            }
            if done.contains(entity) {
                return None;
            }
            for (field, parent) in references.by_entity.get(entity).into_iter().flatten() {
                path.push((entity.clone(), field.clone()));
                let found = visit(references, parent, path, done);
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            done.insert(entity.clone());
            None
        }
        let mut done = BTreeSet::new();
        self.by_entity
            .keys()
            .find_map(|entity| visit(self, entity, &mut Vec::new(), &mut done))
    }

    /// The declared fields of other entities that refer to `parent`: what
    /// a rename of one of its records rewrites ([`crate::rename`]).
    #[must_use]
    pub fn referring_to(&self, parent: &EntityName) -> Vec<ReferringField> {
        self.by_entity
            .iter()
            .flat_map(|(entity, fields)| {
                fields
                    .iter()
                    .filter(move |(_, to)| to == parent)
                    .map(move |(field, _)| ReferringField {
                        entity: entity.clone(),
                        field: field.clone(),
                    })
            })
            .collect()
    }

    /// Whether `field` of `entity`'s documents is a declared reference.
    #[must_use]
    pub fn is_declared(&self, entity: &EntityName, field: &str) -> bool {
        self.by_entity
            .get(entity)
            .is_some_and(|fields| fields.iter().any(|(declared, _)| declared == field))
    }

    /// Whether `entity` has records referring to it (it is a parent in a
    /// declaration).
    #[must_use]
    pub fn is_parent(&self, entity: &EntityName) -> bool {
        self.by_entity
            .values()
            .any(|fields| fields.iter().any(|(_, parent)| parent == entity))
    }

    /// The parents a document of `entity` refers to: the declared fields
    /// holding a string or an integer that is a valid id (others, such as
    /// `null`, refer to nothing).
    #[must_use]
    pub fn parents(&self, entity: &EntityName, document: &JsonObject) -> Vec<RecordKey> {
        let Some(fields) = self.by_entity.get(entity) else {
            return Vec::new();
        };
        fields
            .iter()
            .filter_map(|(field, parent)| {
                let id = id_in(document, field)?;
                Some(RecordKey::new(parent.clone(), id))
            })
            .collect()
    }
}

/// The id a document names in `field`: a string or an integer that is a
/// valid record id (anything else, such as `null`, names nothing).
#[must_use]
pub fn id_in(document: &JsonObject, field: &str) -> Option<RecordId> {
    let id = match document.get(field)? {
        Value::String(text) => text.clone(),
        Value::Number(number) if number.is_i64() || number.is_u64() => number.to_string(),
        _ => return None,
    };
    id.parse().ok()
}

/// Whether a parent's delete must wait for the deletes of records that
/// refer to it, queued outside its page (`children`: their items, not
/// synced): yes while any is queued; a moment while they are on their
/// way, until a failed one's next attempt, and long while one is parked
/// (the app must retry or discard it). `None` without such deletes.
#[must_use]
pub fn gate_for_children(
    parent: &RecordKey,
    children: &[SyncQueueItem],
    now: Timestamp,
    delays: HoldDelays,
) -> Option<Hold> {
    if children.is_empty() {
        return None;
    }
    let parked = children.iter().filter(|item| item.is_parked()).count();
    let mut until = now.saturating_add(if parked > 0 { delays.long } else { delays.short });
    if parked == 0
        && let Some(next) = children
            .iter()
            .filter(|item| item.status == SyncStatus::Failed && item.in_flight.is_none())
            .filter_map(|item| item.next_attempt_at)
            .min()
    {
        until = until.max(next);
    }
    let state = if parked > 0 {
        format!(", {parked} of them parked: retry or discard them")
    } else {
        String::new()
    };
    Some(Hold {
        reason: format!(
            "waiting for the deletes of {} records that refer to {}/{} to reach the server first{state}",
            children.len(),
            parent.entity,
            parent.id
        ),
        until,
    })
}

/// How long a change waits before it looks at its parent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldDelays {
    /// While the parent's create is pending or out: it is about to land.
    pub short: Duration,
    /// While the parent is parked: it waits for the app.
    pub long: Duration,
}

/// A change that must wait for its parent: why, and until when it is not
/// claimed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The reason, kept in the item's `last_error`.
    pub reason: String,
    /// When the change is looked at again.
    pub until: Timestamp,
}

/// Whether a change to a record referring to `parent` must wait, given the
/// parent's queue item (found through the parent's id, or the server's id
/// it was renamed to): yes while the parent's create has not reached the
/// server (pending, out, or failed), `None` when the parent has no create
/// waiting (no item, synced, or an update or delete: the server holds it).
///
/// A change that still names a parent by its temporary id never goes: the
/// server knows no such id. It waits while the parent's create is on its
/// way (the rename then rewrites the change, which is claimed again with
/// the server's id), and long when the parent was renamed without this
/// change (a reference declared since) or has no create waiting (deleted
/// or discarded before it reached the server): the app must save it
/// again or point it elsewhere.
#[must_use]
pub fn gate_for_parent(
    parent: &RecordKey,
    parent_item: Option<&SyncQueueItem>,
    now: Timestamp,
    delays: HoldDelays,
) -> Option<Hold> {
    let creating = |item: &SyncQueueItem| {
        item.operation == SyncOperation::Create
            && !(item.status == SyncStatus::Synced && item.in_flight.is_none())
    };
    if parent.id.is_temporary() {
        let hold = |reason: String, wait: Duration| Hold {
            reason,
            until: now.saturating_add(wait),
        };
        match parent_item {
            // Renamed, and this change was not rewritten with it (a field
            // declared since, or a nested one): it cannot go as it is.
            Some(item) if item.id != parent.id => {
                return Some(hold(
                    format!(
                        "names {}/{}, which the server has named {} since: save this record again (a save \
                         replaces the temporary ids it names) or point it at the new id",
                        parent.entity, parent.id, item.id
                    ),
                    delays.long,
                ));
            }
            Some(item) if creating(item) => {}
            _ => {
                return Some(hold(
                    format!(
                        "refers to {}/{}, which has a temporary id and no create waiting to reach the \
                         server (deleted or discarded first?): point this record at another one, or \
                         delete it",
                        parent.entity, parent.id
                    ),
                    delays.long,
                ));
            }
        }
    }
    let item = parent_item?;
    if !creating(item) {
        return None;
    }
    let (state, wait) = if item.is_parked() {
        let status = item
            .last_error_http_status
            .map_or_else(String::new, |status| format!(", HTTP {status}"));
        (
            format!("is parked (refused for good{status}): retry or discard it"),
            delays.long,
        )
    } else if item.status == SyncStatus::Failed {
        ("failed and waits to be sent again".to_owned(), delays.short)
    } else {
        ("is on its way".to_owned(), delays.short)
    };
    let mut until = now.saturating_add(wait);
    if let Some(next) = item
        .next_attempt_at
        .filter(|_| !item.is_parked() && item.in_flight.is_none())
    {
        until = until.max(next);
    }
    Some(Hold {
        reason: format!(
            "waiting for {}/{} to reach the server first: its create {state}",
            parent.entity, parent.id
        ),
        until,
    })
}

#[cfg(test)]
mod tests;
