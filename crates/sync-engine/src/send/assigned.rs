//! Sending a record created under a temporary id
//! ([`sync_core::RecordId::temporary`]): the server gives it its id.
//!
//! - A first create posts the record without the temporary id and takes
//!   the server's id from its answer ([`sync_core::rename::assigned_id`]);
//!   the store renames the record with the outcome.
//! - A create that may have been applied already (its answer was lost)
//!   first finds what it made: by the temporary id the create sent
//!   ([`SyncApiAdapter::find_created`]), or, when the adapter cannot look
//!   it up, by posting again with the same idempotency key, which the
//!   server must answer with the record it created the first time. Found
//!   holding the local state, that is the outcome; otherwise the record is
//!   renamed with what the server holds (`AttemptOutcome::FoundAs`) and
//!   the local state goes to the server's id as an ordinary update at the
//!   next claim, under a key of its own (a server replaying keys would
//!   answer the create's key with the create's answer again).
//! - A delete of such a record is renamed the same way, then deleted.

use serde_json::Value;
use sync_core::answer::answer_replaces_document;
use sync_core::rename::{AssignedId, OWN_ID_FIELD, ReferringField, assigned_id};
use sync_core::{
    ApiError, AttemptOutcome, CreatedLookup, ErrorKind, JsonObject, SendPlan, ServerCopy, SyncOperation,
    WriteAnswer, WriteKind,
};

use super::{Requests, Sent};

/// A create or delete of a record whose id is temporary.
pub(super) async fn send_temporary(requests: &Requests<'_>, referring: Vec<ReferringField>) -> Sent {
    let ticket = requests.ticket;
    match (ticket.operation, ticket.plan) {
        (SyncOperation::Create, SendPlan::Create) => post(requests, referring).await,
        (SyncOperation::Create, _) => match find(requests, referring.clone()).await {
            Ok(Some((assigned, copy))) => found(requests, assigned, copy),
            Ok(None) => post(requests, referring).await,
            Err(Unsupported) => match posted(requests, referring).await {
                Ok((assigned, answer)) => found(requests, assigned, answered_copy(answer)),
                Err(refused) => refused.into_sent(),
            },
            Err(Failed(sent)) => sent,
        },
        (SyncOperation::Delete, _) => match find(requests, referring.clone()).await {
            Ok(Some((assigned, copy))) => Sent::Applied(AttemptOutcome::FoundAs { assigned, copy }),
            // Never created: nothing to delete.
            Ok(None) => Sent::Applied(AttemptOutcome::Applied {
                replace_local_with: None,
                server_version: None,
            }),
            Err(Unsupported) => match posted(requests, referring).await {
                Ok((assigned, answer)) => Sent::Applied(AttemptOutcome::FoundAs {
                    assigned,
                    copy: answered_copy(answer),
                }),
                Err(refused) => refused.into_sent(),
            },
            Err(Failed(sent)) => sent,
        },
        _ => Sent::Failed(
            ApiError::new(
                ErrorKind::Permanent,
                "an update of a record whose id is still temporary: the server has no such id (the record's \
                 create has not been confirmed); retry the item, which creates it first",
            )
            .with_possibly_applied(false),
        ),
    }
}

/// Why [`find`] found nothing to go on.
enum NotFound {
    /// The adapter cannot look records up by temporary id.
    Unsupported,
    /// The lookup failed (the attempt ends with this).
    Failed(Sent),
}
use NotFound::{Failed, Unsupported};

/// The record an earlier create made, with its copy, if the server holds
/// one.
async fn find(
    requests: &Requests<'_>,
    referring: Vec<ReferringField>,
) -> Result<Option<(AssignedId, ServerCopy)>, NotFound> {
    let ticket = requests.ticket;
    match requests
        .adapter
        .find_created(&ticket.key.entity, &ticket.key.id, &ticket.operation_id)
        .await
    {
        Ok(CreatedLookup::Found { id, copy }) => match assigned_id(Some(&id), referring) {
            Ok(assigned) => Ok(Some((assigned, copy))),
            Err(refusal) => Err(Failed(refused(refusal))),
        },
        Ok(CreatedLookup::Absent) => Ok(None),
        Ok(CreatedLookup::Unsupported) => Err(Unsupported),
        // The earlier create may still have applied.
        Err(error) => Err(Failed(Sent::Failed(error.with_possibly_applied(true)))),
        Ok(_) => Err(Unsupported),
    }
}

/// The body a create sends: the payload without its temporary id.
fn sent_body(requests: &Requests<'_>) -> JsonObject {
    let mut body = requests.ticket.payload.clone();
    if body
        .get(OWN_ID_FIELD)
        .and_then(Value::as_str)
        .is_some_and(|id| id == requests.ticket.key.id.as_str())
    {
        body.remove(OWN_ID_FIELD);
    }
    body
}

/// Whether a record holds every field sent, with the value sent.
fn holds_all_sent(record: &JsonObject, sent: &JsonObject) -> bool {
    sent.iter().all(|(field, value)| record.get(field) == Some(value))
}

/// What the server holds, from an answer to a create (empty when the
/// answer held no record: a base that patches every field).
fn answered_copy(answer: WriteAnswer) -> ServerCopy {
    ServerCopy {
        data: answer.record.unwrap_or_default(),
        version: answer.version,
    }
}

/// The park for an answer whose id cannot be taken.
fn refused(refusal: sync_core::rename::AssignedIdRefusal) -> Sent {
    Sent::Failed(ApiError::new(ErrorKind::Permanent, refusal.message()).with_possibly_applied(true))
}

/// Why a post gave no id.
enum NotPosted {
    /// The server answered "already exists": a unique field of the record
    /// (the local-id field, perhaps) names a record it holds.
    Exists(ApiError),
    /// The attempt ends with this.
    Ended(Sent),
}

impl NotPosted {
    fn into_sent(self) -> Sent {
        match self {
            Self::Exists(error) => exists(&error),
            Self::Ended(sent) => sent,
        }
    }
}

/// The park for an "already exists" answer no lookup explains.
fn exists(error: &ApiError) -> Sent {
    Sent::Failed(
        ApiError::new(
            ErrorKind::Permanent,
            "the server answered \"already exists\" to the create of a record whose id it assigns, and no \
             lookup by the temporary id finds the record: another unique field of the record clashes with \
             a record it holds; change the record, then retry the item",
        )
        .with_status(error.status().unwrap_or(409))
        .with_possibly_applied(false),
    )
}

/// Posts the record; its id from the answer.
async fn posted(
    requests: &Requests<'_>,
    referring: Vec<ReferringField>,
) -> Result<(AssignedId, WriteAnswer), NotPosted> {
    let payload = &requests.ticket.payload;
    match requests.write(WriteKind::Create, payload, None, None).await {
        Ok(answer) => match assigned_id(answer.assigned_id.as_ref(), referring) {
            Ok(assigned) => Ok((assigned, answer)),
            Err(refusal) => Err(NotPosted::Ended(refused(refusal))),
        },
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Err(NotPosted::Exists(error)),
        Err(error) => Err(NotPosted::Ended(Sent::Failed(error))),
    }
}

/// A create: posted, then renamed with the outcome. An "already exists"
/// answer (a server keeping the local-id field unique) is the record an
/// earlier create made: found.
async fn post(requests: &Requests<'_>, referring: Vec<ReferringField>) -> Sent {
    match posted(requests, referring.clone()).await {
        Ok((assigned, answer)) => applied_as(requests, assigned, answer.record, answer.version),
        Err(NotPosted::Exists(error)) => match find(requests, referring).await {
            Ok(Some((assigned, copy))) => found(requests, assigned, copy),
            Ok(None) | Err(Unsupported) => exists(&error),
            Err(Failed(sent)) => sent,
        },
        Err(NotPosted::Ended(sent)) => sent,
    }
}

/// The record an earlier create made (found by the lookup, or answered
/// again): done when it holds the local state, else renamed with what it
/// holds, the local state to follow as an update.
fn found(requests: &Requests<'_>, assigned: AssignedId, copy: ServerCopy) -> Sent {
    if holds_all_sent(&copy.data, &sent_body(requests)) {
        return applied_as(requests, assigned, Some(copy.data), copy.version);
    }
    Sent::Applied(AttemptOutcome::FoundAs { assigned, copy })
}

/// The outcome of a create the server applied under `assigned`: its
/// answer becomes the document when it is the record.
fn applied_as(
    requests: &Requests<'_>,
    assigned: AssignedId,
    record: Option<JsonObject>,
    server_version: Option<String>,
) -> Sent {
    let sent = sent_body(requests);
    let replace_local_with = record.filter(|record| answer_replaces_document(record, &sent, &assigned.id));
    Sent::Applied(AttemptOutcome::AppliedAs {
        assigned,
        replace_local_with,
        server_version,
    })
}
