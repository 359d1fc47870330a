//! Dependency order inside a pass ([`PageOrder`]): a ticket whose parent
//! (a declared reference, `sync_core::depends`) is created by a ticket of
//! the same page waits for that attempt to end, even with several requests
//! out; a parent delete waits for its children's deletes in the page; and
//! a ticket whose parent's create has not reached the server otherwise is
//! held (`AttemptOutcome::Held`), as `sync_core::depends::gate_for_parent`
//! decides; a parent delete whose children's deletes are queued outside
//! the page is held too (`gate_for_children`).
//!
//! Pages are sent one after the other, so a page's attempts have all ended
//! before the next page's start; the creates a page applied are remembered
//! until their outcomes are recorded, so the next page does not take them
//! for creates still out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sync_core::depends::{Hold, HoldDelays, gate_for_children, gate_for_parent};
use sync_core::rename::stray_temporary_ids;
use sync_core::{AttemptOutcome, AttemptTicket, RecordKey, SyncOperation};

use crate::shared::Shared;

/// What to do with a ticket now.
pub(crate) enum Gate {
    /// Send it.
    Go,
    /// A ticket of this page must end first: look again when one does.
    Wait,
    /// Do not send it: it waits for a record outside this page.
    Hold(Hold),
}

/// The tickets of one page, for dependency order.
pub(crate) struct PageOrder<'a> {
    shared: &'a Shared,
    /// Tickets of the page that have not ended, by key, with their operation.
    unfinished: HashMap<RecordKey, SyncOperation>,
    /// Parents named by each unfinished delete of the page (from the copy
    /// the server last confirmed, else its payload).
    deletes: HashMap<RecordKey, Vec<RecordKey>>,
    /// Creates applied in the last page, outcomes maybe not recorded yet:
    /// on the server, whatever the store still says.
    applied_before: HashSet<RecordKey>,
    /// Creates applied in this page.
    applied: HashSet<RecordKey>,
    /// Deletes applied in this page (their outcomes not yet recorded).
    deletes_ended: HashSet<RecordKey>,
}

impl<'a> PageOrder<'a> {
    pub(crate) fn new(
        shared: &'a Shared,
        tickets: &[AttemptTicket],
        applied_before: HashSet<RecordKey>,
    ) -> Self {
        let references = &shared.references;
        // Without references nothing waits: the page keeps no books.
        let tickets = if references.is_empty() { &[][..] } else { tickets };
        let mut deletes = HashMap::new();
        for ticket in tickets
            .iter()
            .filter(|ticket| ticket.operation == SyncOperation::Delete)
        {
            let document = ticket.base.as_ref().map_or(&ticket.payload, |base| &base.data);
            let parents = references.parents(&ticket.key.entity, document);
            if !parents.is_empty() {
                deletes.insert(ticket.key.clone(), parents);
            }
        }
        Self {
            shared,
            unfinished: tickets
                .iter()
                .map(|ticket| (ticket.key.clone(), ticket.operation))
                .collect(),
            deletes,
            applied_before,
            applied: HashSet::new(),
            deletes_ended: HashSet::new(),
        }
    }

    /// The creates this page applied, for the next page.
    pub(crate) fn into_applied(self) -> HashSet<RecordKey> {
        self.applied
    }

    /// Whether any ticket can depend on another (references declared).
    pub(crate) fn active(&self) -> bool {
        !self.shared.references.is_empty()
    }

    /// Records that `key`'s ticket ended, applied or not.
    pub(crate) fn ended(&mut self, key: &RecordKey, operation: SyncOperation, outcome: &AttemptOutcome) {
        self.unfinished.remove(key);
        self.deletes.remove(key);
        if operation == SyncOperation::Delete
            && matches!(
                outcome,
                AttemptOutcome::Applied { .. } | AttemptOutcome::AppliedAs { .. }
            )
        {
            self.deletes_ended.insert(key.clone());
        }
        if operation == SyncOperation::Create
            && matches!(
                outcome,
                AttemptOutcome::Applied { .. } | AttemptOutcome::AppliedAs { .. }
            )
        {
            self.applied.insert(key.clone());
        }
    }

    /// What to do with `ticket` now.
    pub(crate) async fn gate(&self, ticket: &AttemptTicket) -> Gate {
        // What may post the payload: creates and updates, and the delete of
        // a record under a temporary id, which may post its create again
        // to learn the id to delete (`send/assigned.rs`).
        let posts = ticket.operation != SyncOperation::Delete || ticket.key.id.is_temporary();
        if posts && let Some(hold) = self.stray_temporary_id(ticket).await {
            return Gate::Hold(hold);
        }
        if !self.active() {
            return Gate::Go;
        }
        if ticket.operation == SyncOperation::Delete {
            // A parent's delete waits for its children's deletes.
            let child_out = self
                .deletes
                .iter()
                .any(|(child, parents)| child != &ticket.key && parents.contains(&ticket.key));
            if child_out {
                return Gate::Wait;
            }
            // And for those queued outside this page.
            if let Some(hold) = self.children_deleted_elsewhere(ticket).await {
                return Gate::Hold(hold);
            }
            if !posts {
                return Gate::Go;
            }
        }
        let now = self.shared.clock.now();
        for parent in self
            .shared
            .references
            .parents(&ticket.key.entity, &ticket.payload)
        {
            // A parent named by a temporary id is looked up in the store
            // (renamed or not): the ticket must not go with that id.
            let renamable = parent.id.is_temporary();
            if parent == ticket.key
                || (!renamable && (self.applied.contains(&parent) || self.applied_before.contains(&parent)))
            {
                continue;
            }
            if self.unfinished.get(&parent) == Some(&SyncOperation::Create) {
                return Gate::Wait;
            }
            let parent_item = match self.shared.store.queue_item(&parent).await {
                Ok(item) => item,
                Err(error) => {
                    // Unknown: waiting is safe, sending might not be.
                    tracing::warn!(kind = %error.kind(), "reading a parent's queue item failed");
                    return Gate::Hold(Hold {
                        reason: format!(
                            "waiting for {}/{}: its state could not be read",
                            parent.entity, parent.id
                        ),
                        until: now.saturating_add(self.delays().short),
                    });
                }
            };
            if let Some(hold) = gate_for_parent(&parent, parent_item.as_ref(), now, self.delays()) {
                return Gate::Hold(hold);
            }
        }
        Gate::Go
    }

    /// The hold of a change naming a temporary id where no rename rewrites
    /// it (`sync_core::rename::stray_temporary_ids`): an undeclared field,
    /// or inside a nested value. The record's own temporary id (the
    /// local-id field of an answer adopted after its rename) is not one.
    async fn stray_temporary_id(&self, ticket: &AttemptTicket) -> Option<Hold> {
        let references = &self.shared.references;
        let entity = &ticket.key.entity;
        let stray = stray_temporary_ids(&ticket.payload, |field| references.is_declared(entity, field));
        for (path, id) in stray {
            if id == ticket.key.id {
                continue;
            }
            let own = RecordKey::new(entity.clone(), id);
            if matches!(self.shared.store.resolve_id(&own).await, Ok(resolved) if resolved == ticket.key.id) {
                continue;
            }
            return Some(Hold {
                reason: format!(
                    "holds a temporary id in {path}, where no rename rewrites it (not a declared reference, \
                     or inside a nested value): the server would get an id it does not know; declare the \
                     reference, or save the record with the server's id (resolve_id)"
                ),
                until: self.shared.clock.now().saturating_add(self.delays().long),
            });
        }
        None
    }

    /// The hold of a parent's delete while deletes of records that refer
    /// to it are queued outside this page (not sent beside it, not ended
    /// in it).
    async fn children_deleted_elsewhere(&self, ticket: &AttemptTicket) -> Option<Hold> {
        let references = &self.shared.references;
        if !references.is_parent(&ticket.key.entity) {
            return None;
        }
        let now = self.shared.clock.now();
        let mut children = Vec::new();
        for referring in references.referring_to(&ticket.key.entity) {
            match self
                .shared
                .store
                .queued_child_deletes(&referring.entity, &referring.field, &ticket.key.id)
                .await
            {
                Ok(found) => children.extend(found.into_iter().filter(|item| {
                    let key = item.key();
                    !self.unfinished.contains_key(&key) && !self.deletes_ended.contains(&key)
                })),
                Err(error) => {
                    // Unknown: waiting is safe, sending might not be.
                    tracing::warn!(kind = %error.kind(), "reading queued deletes failed");
                    return Some(Hold {
                        reason: format!(
                            "waiting for the deletes of records that refer to {}/{}: they could not be read",
                            ticket.key.entity, ticket.key.id
                        ),
                        until: now.saturating_add(self.delays().short),
                    });
                }
            }
        }
        gate_for_children(&ticket.key, &children, now, self.delays())
    }

    /// How long held tickets wait: a moment while a parent is on its way;
    /// past the pass's horizon while it is parked, so the pass ends and
    /// auto-sync looks again later.
    fn delays(&self) -> HoldDelays {
        let policy = &self.shared.policy;
        let horizon = policy
            .base_delay()
            .saturating_mul(policy.max_retries().saturating_add(1));
        HoldDelays {
            short: Duration::from_millis(100),
            long: horizon.saturating_mul(2).max(Duration::from_secs(60)),
        }
    }

    /// The outcome of a ticket held for good in this page (a page-mate it
    /// waited for can no longer end).
    pub(crate) fn held_here(&self) -> AttemptOutcome {
        AttemptOutcome::Held {
            reason: "waiting for a record it refers to, sent in the same pass, whose attempt did not end"
                .to_owned(),
            until: self.shared.clock.now().saturating_add(self.delays().short),
        }
    }
}

/// The outcome of a held ticket.
pub(crate) fn held(hold: Hold) -> AttemptOutcome {
    AttemptOutcome::Held {
        reason: hold.reason,
        until: hold.until,
    }
}
