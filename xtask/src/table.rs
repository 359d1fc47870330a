//! Renders the coalescing, pull and discard tables from sync-core's own decisions,
//! so the tables in `docs/queue-state-machine.md` can be checked against
//! the code.

use serde_json::json;
use sync_core::CopyWrite;
use sync_core::coalesce::{DocumentWrite, QueueWrite, SaveContext, plan_save};
use sync_core::discard::plan_discard;
use sync_core::pull::{PreparedMerge, PulledChange, plan_pulled};
use sync_core::{LocalChange, OperationId, SyncOperation, SyncQueueItem, SyncStatus, Timestamp};

/// An existing item: operation, status, possibly applied, in flight.
type ItemState = (SyncOperation, SyncStatus, bool, bool);

/// The rows of the table: a label, the existing item, whether a document exists.
const ROWS: [(&str, Option<ItemState>, bool); 14] = {
    use SyncOperation::{Create, Delete, Update};
    use SyncStatus::{Failed, Pending, Synced, Syncing};
    [
        ("no item, no document", None, false),
        ("no item, document (synced earlier)", None, true),
        (
            "create, never attempted",
            Some((Create, Pending, false, false)),
            true,
        ),
        (
            "create, failed, surely not applied",
            Some((Create, Failed, false, false)),
            true,
        ),
        (
            "create, possibly applied",
            Some((Create, Failed, true, false)),
            true,
        ),
        ("create, in flight", Some((Create, Syncing, false, true)), true),
        ("create, synced", Some((Create, Synced, false, false)), true),
        (
            "update, pending or failed",
            Some((Update, Pending, false, false)),
            true,
        ),
        ("update, in flight", Some((Update, Syncing, false, true)), true),
        ("update, synced", Some((Update, Synced, false, false)), true),
        (
            "delete, pending, not applied",
            Some((Delete, Pending, false, false)),
            false,
        ),
        (
            "delete, possibly applied",
            Some((Delete, Failed, true, false)),
            false,
        ),
        ("delete, in flight", Some((Delete, Syncing, false, true)), false),
        ("delete, synced", Some((Delete, Synced, false, false)), false),
    ]
};

fn item(
    operation: SyncOperation,
    status: SyncStatus,
    possibly_applied: bool,
    in_flight: bool,
) -> SyncQueueItem {
    SyncQueueItem {
        entity: sync_core::EntityName::new("tasks").unwrap_or_else(|_| unreachable!()),
        id: sync_core::RecordId::from(1u64),
        operation,
        payload: sync_core::JsonObject::new(),
        status,
        retry_count: 0,
        created_at: Timestamp::EPOCH,
        updated_at: Timestamp::EPOCH,
        last_error: None,
        last_error_kind: None,
        last_error_http_status: None,
        version: 1,
        operation_id: OperationId::generate(),
        possibly_applied,
        in_flight: in_flight.then(|| sync_core::AttemptId::from_u64(1)),
        next_attempt_at: Some(Timestamp::EPOCH),
        not_before: None,
    }
}

fn cell(existing: Option<&SyncQueueItem>, local_exists: bool, operation: SyncOperation) -> String {
    let Ok(change) = LocalChange::new("tasks", "1", json!({}), operation) else {
        unreachable!("a fixed, valid change")
    };
    let plan = plan_save(existing, local_exists, change, SaveContext::at(Timestamp::EPOCH));
    match plan.queue {
        QueueWrite::Put(item) => {
            let checked = match (item.operation, item.possibly_applied) {
                (SyncOperation::Create, true) => " (check first)",
                (SyncOperation::Delete, true) => " (404 = done)",
                _ => "",
            };
            let in_flight = if item.is_in_flight() {
                ", once the attempt out reports"
            } else {
                ""
            };
            format!("send {}{checked}{in_flight}", item.operation)
        }
        QueueWrite::Remove => "remove the entry".to_owned(),
        QueueWrite::Keep => "nothing to send".to_owned(),
    }
}

/// The table as Markdown.
pub(crate) fn coalescing_table() -> String {
    let mut out =
        String::from("| record before the change | + create | + update | + delete |\n|---|---|---|---|\n");
    for (label, state, local_exists) in ROWS {
        let existing = state
            .map(|(op, status, possibly_applied, in_flight)| item(op, status, possibly_applied, in_flight));
        let cells: Vec<String> = [
            SyncOperation::Create,
            SyncOperation::Update,
            SyncOperation::Delete,
        ]
        .into_iter()
        .map(|operation| cell(existing.as_ref(), local_exists, operation))
        .collect();
        out.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    out
}

/// One cell of the pull table: what an incoming change does.
fn pull_cell(
    existing: Option<&SyncQueueItem>,
    local_exists: bool,
    change: &PulledChange,
    merge: bool,
) -> String {
    let merge = merge.then(|| PreparedMerge {
        id: change.id().clone(),
        item_version: existing.map_or(0, |item| item.version),
        document: serde_json::Map::from_iter([("merged".to_owned(), json!(true))]),
    });
    let plan = plan_pulled(existing, local_exists, change, merge.as_ref(), Timestamp::EPOCH);
    let document = match (&plan.document, local_exists) {
        (Some(DocumentWrite::Upsert(data)), _) if data.contains_key("merged") => "document ← merge",
        (Some(DocumentWrite::Upsert(_)), _) => "document ← server's",
        (Some(DocumentWrite::Remove), _) => "document removed",
        (None, true) => "document kept",
        (None, false) => "no document",
    };
    let queue = match &plan.queue {
        QueueWrite::Put(item) if item.status == SyncStatus::Synced => "item synced".to_owned(),
        QueueWrite::Put(item) => {
            let checked = match (item.operation, item.possibly_applied) {
                (SyncOperation::Create, true) => " (check first)",
                (SyncOperation::Delete, true) => " (404 = done)",
                _ => "",
            };
            format!("item sends {}{checked}", item.operation)
        }
        QueueWrite::Remove => "item removed".to_owned(),
        QueueWrite::Keep => match existing {
            Some(item) if item.is_in_flight() => "the attempt out decides".to_owned(),
            Some(_) => "item unchanged".to_owned(),
            None => "no item".to_owned(),
        },
    };
    let copy = match plan.copy {
        CopyWrite::Keep => "base kept",
        CopyWrite::Put(_) => "base ← server's",
        CopyWrite::Remove => "base forgotten",
    };
    format!("{document}; {queue}; {copy}")
}

/// The pull table as Markdown: what an incoming server change does to a
/// record, by the record's queue item.
pub(crate) fn pull_table() -> String {
    let id = sync_core::RecordId::from(1u64);
    let upsert = PulledChange::Upsert {
        id: id.clone(),
        data: sync_core::JsonObject::new(),
        version: None,
    };
    let tombstone = PulledChange::Tombstone { id };
    let mut out = String::from(
        "| record before the pull | + upsert | + upsert, resolver merged | + tombstone |\n|---|---|---|---|\n",
    );
    for (label, state, local_exists) in ROWS {
        let existing = state
            .map(|(op, status, possibly_applied, in_flight)| item(op, status, possibly_applied, in_flight));
        let cells = [
            pull_cell(existing.as_ref(), local_exists, &upsert, false),
            pull_cell(existing.as_ref(), local_exists, &upsert, true),
            pull_cell(existing.as_ref(), local_exists, &tombstone, false),
        ];
        out.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    out
}

/// One cell of the discard table.
fn discard_cell(
    existing: Option<&SyncQueueItem>,
    local_exists: bool,
    copy_known: bool,
    revert: bool,
) -> String {
    let copy = copy_known.then(|| sync_core::ServerCopy {
        data: sync_core::JsonObject::new(),
        version: None,
    });
    let plan = match plan_discard(existing, copy.as_ref(), revert) {
        Ok(plan) => plan,
        Err(sync_core::DiscardRefusal::InFlight) => return "refused: an attempt is out".to_owned(),
        Err(_) => return "refused".to_owned(),
    };
    let document = match (&plan.document, local_exists) {
        (Some(DocumentWrite::Upsert(_)), _) => "document ← server's copy",
        (Some(DocumentWrite::Remove), _) => "document removed",
        (None, true) => "document kept",
        (None, false) => "no document",
    };
    let queue = match plan.queue {
        QueueWrite::Remove => "item removed",
        QueueWrite::Put(_) => "item rewritten",
        QueueWrite::Keep => "item unchanged",
    };
    format!("{document}; {queue}")
}

/// The discard table as Markdown: what discarding a record's queued change
/// does, by the record's queue item, with and without a confirmed server
/// copy kept.
pub(crate) fn discard_table() -> String {
    let mut out = String::from(
        "| record | discard | discard + revert, server copy kept | discard + revert, no copy kept |\n|---|---|---|---|\n",
    );
    for (label, state, local_exists) in ROWS {
        let existing = state
            .map(|(op, status, possibly_applied, in_flight)| item(op, status, possibly_applied, in_flight));
        let cells = [
            discard_cell(existing.as_ref(), local_exists, true, false),
            discard_cell(existing.as_ref(), local_exists, true, true),
            discard_cell(existing.as_ref(), local_exists, false, true),
        ];
        out.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    out
}

/// One cell of the rename table: what a create's answer under a
/// temporary id does, given what the store holds under the answer's id
/// and whether a newer change was saved while the create was out.
fn rename_cell(
    answer: Option<&serde_json::Value>,
    target: Option<&SyncQueueItem>,
    document: Option<Document>,
    newer: bool,
) -> String {
    use sync_core::rename::{assigned_id, check_target};
    use sync_core::{AttemptOutcome, RecordId};
    let assigned = match assigned_id(answer, Vec::new()) {
        Ok(assigned) => assigned,
        Err(refusal) => return format!("parked, possibly applied ({refusal:?}); nothing renamed"),
    };
    let temporary = RecordId::temporary();
    let there = document.map(|document| {
        let mut data = sync_core::JsonObject::new();
        data.insert("name".into(), json!("x"));
        if document == Document::ThisRecord {
            data.insert("client_ref".into(), json!(temporary.as_str()));
        }
        data
    });
    if let Err(refusal) = check_target(target, there.as_ref(), &temporary, false) {
        return format!("parked, possibly applied ({refusal:?}); nothing renamed");
    }
    let Ok(change) = LocalChange::new("tasks", temporary.as_str(), json!({}), SyncOperation::Create) else {
        unreachable!("a fixed, valid change")
    };
    let QueueWrite::Put(created) = plan_save(None, false, change, SaveContext::at(Timestamp::EPOCH)).queue
    else {
        unreachable!("a first save queues")
    };
    let Some((claimed, ticket)) = sync_core::attempt::begin_attempt(&created, Timestamp::EPOCH) else {
        unreachable!("a new item is ready")
    };
    let current = if newer {
        let Ok(change) = LocalChange::new(
            "tasks",
            created.id.as_str(),
            json!({"v": 2}),
            SyncOperation::Update,
        ) else {
            unreachable!("a fixed, valid change")
        };
        match plan_save(Some(&claimed), true, change, SaveContext::at(Timestamp::EPOCH)).queue {
            QueueWrite::Put(item) => item,
            _ => unreachable!("a save to a live item queues"),
        }
    } else {
        claimed
    };
    let outcome = AttemptOutcome::AppliedAs {
        assigned,
        replace_local_with: None,
        server_version: None,
    };
    let plan = sync_core::attempt::finish_attempt(Some(&current), &ticket, &outcome, Timestamp::EPOCH);
    let Some(rename) = plan.rename else {
        return "nothing changes".to_owned();
    };
    let item = match plan.queue {
        QueueWrite::Put(item) if item.status == SyncStatus::Synced => "item synced".to_owned(),
        QueueWrite::Put(item) => {
            let key = if item.operation_id == current.operation_id {
                "same key"
            } else {
                "new key"
            };
            format!("the newer change: send {} ({key})", item.operation)
        }
        _ => "item unchanged".to_owned(),
    };
    let replaced = if target.is_some() || there.is_some() {
        ", what was there replaced"
    } else {
        ""
    };
    format!("renamed to `{}`{replaced}; {item}", rename.to.id)
}

/// A document under the server's id, for the rename table.
#[derive(Clone, Copy, PartialEq)]
enum Document {
    /// A pulled copy of this very record: it holds the temporary id (the
    /// local-id field the server keeps).
    ThisRecord,
    /// Another record's.
    Another,
}

/// The rename table as Markdown.
pub(crate) fn rename_table() -> String {
    let answers: [(&str, Option<serde_json::Value>); 6] = [
        ("`17`", Some(json!(17))),
        ("`\"a1\"`", Some(json!("a1"))),
        ("no id", None),
        ("`null`", Some(serde_json::Value::Null)),
        ("`1.5` (not a string or integer)", Some(json!(1.5))),
        (
            "a temporary id",
            Some(json!(sync_core::RecordId::temporary().as_str())),
        ),
    ];
    let synced = item(SyncOperation::Update, SyncStatus::Synced, false, false);
    let pending = item(SyncOperation::Update, SyncStatus::Pending, false, false);
    let mut out = String::from(
        "| the answer's id | nothing under that id | a pulled copy of this record there (it holds the temporary id) | another synced record there | a record with changes to send there | nothing there, a newer change saved meanwhile |\n|---|---|---|---|---|---|\n",
    );
    for (label, answer) in answers {
        let cells = [
            rename_cell(answer.as_ref(), None, None, false),
            rename_cell(answer.as_ref(), Some(&synced), Some(Document::ThisRecord), false),
            rename_cell(answer.as_ref(), Some(&synced), Some(Document::Another), false),
            rename_cell(answer.as_ref(), Some(&pending), Some(Document::ThisRecord), false),
            rename_cell(answer.as_ref(), None, None, true),
        ];
        out.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_table_matches_the_code() {
        let path = crate::workspace_root().join("docs/queue-state-machine.md");
        let docs = std::fs::read_to_string(&path).unwrap();
        let table = super::coalescing_table();
        assert!(
            docs.contains(&table),
            "docs/queue-state-machine.md is out of date; paste `cargo xtask table`:\n{table}"
        );
        let discard = super::discard_table();
        assert!(
            docs.contains(&discard),
            "docs/queue-state-machine.md's discard table is out of date; paste `cargo xtask table`:\n{discard}"
        );
        let rename = super::rename_table();
        assert!(
            docs.contains(&rename),
            "docs/queue-state-machine.md's rename table is out of date; paste `cargo xtask table`:\n{rename}"
        );
        let pull = super::pull_table();
        assert!(
            docs.contains(&pull),
            "docs/queue-state-machine.md's pull table is out of date; paste `cargo xtask table`:\n{pull}"
        );
    }
}
