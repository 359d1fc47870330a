//! Performing one attempt through the adapter: the requests of its send
//! plan, then the outcome for the store.

use sync_core::answer::answer_replaces_document;
use sync_core::{
    AttemptOutcome, AttemptTicket, ConflictResolver, ErrorKind, JsonObject, SendPlan, SyncApiAdapter,
};

/// What the requests of one attempt produced.
pub(crate) enum Sent {
    /// The server applied the change.
    Applied(AttemptOutcome),
    /// The server has no such record (an update answered 404).
    NotFound,
    /// A request failed.
    Failed(sync_core::ApiError),
}

/// The document to keep locally, if it must change: the server's answer
/// when it is the record ([`answer_replaces_document`]: not an envelope, a
/// status or another record), else the resolver's choice when it differs
/// from the local copy.
fn applied(
    server: Option<JsonObject>,
    resolved: Option<JsonObject>,
    local: &JsonObject,
    id: &sync_core::RecordId,
) -> Sent {
    let sent = resolved.as_ref().unwrap_or(local);
    let replace_local_with = match server {
        Some(answer) if answer_replaces_document(&answer, sent, id) => Some(answer),
        // An echo of what was sent leaves the document as it is (no store
        // write per synced item for nothing); any other answer is not the
        // record and is not adopted.
        _ => resolved.filter(|data| data != local),
    };
    Sent::Applied(AttemptOutcome::Applied { replace_local_with })
}

/// A GET found the record, then its update (or delete) was answered 404:
/// the two answers contradict each other, so the 404 proves nothing (the
/// route or method differs from the adapter's: a server that only knows
/// `PATCH`, ids compared as numbers). Re-creating the record would put a
/// copy on the server per edit, and counting the delete as done would
/// leave the record on the server; the attempt parks instead, with the
/// record held to be on the server.
fn contradiction(error: &sync_core::ApiError, operation: &str) -> Sent {
    let request = error.request().unwrap_or(operation);
    Sent::Failed(
        sync_core::ApiError::new(
            ErrorKind::Permanent,
            format!(
                "the server holds the record (a GET found it) but answered {} to {request}: its \
                 {operation} route or method differs from the adapter's (PATCH only? ids compared \
                 as numbers? a request shape that declares the wrong \"absent\" answer?). Nothing \
                 was re-created or counted as done; fix the route, then retry the item",
                error
                    .status()
                    .map_or_else(|| "\"not found\"".to_owned(), |status| status.to_string()),
            ),
        )
        .with_status(error.status().unwrap_or(404))
        .with_request(request)
        .with_possibly_applied(true),
    )
}

/// The result of the requests, before it becomes an outcome: the server's
/// answer and the resolver's choice, if any.
type Answer = Result<(Option<JsonObject>, Option<JsonObject>), sync_core::ApiError>;

/// `PUT`s the local state of a record the server holds (a GET found it, or
/// a create was answered "already exists"); a 404 then contradicts the
/// earlier answer.
async fn update_found(adapter: &dyn SyncApiAdapter, ticket: &AttemptTicket) -> Result<Answer, Sent> {
    let (entity, id) = (&ticket.key.entity, &ticket.key.id);
    match adapter
        .update(entity, id, &ticket.payload, &ticket.operation_id)
        .await
    {
        Err(error) if error.kind() == ErrorKind::NotFound => Err(contradiction(&error, "update")),
        updated => Ok(updated.map(|data| (data, None))),
    }
}

/// `POST`s the record; an "already exists" answer means the server holds
/// it after all (an earlier attempt whose answer was lost, a server that
/// ignores idempotency keys), so the local state is sent as an update.
///
/// Should that update be answered "not found", the server contradicts
/// itself; a GET decides: found, the update route is wrong (parked, as
/// after any GET that found the record); absent, the "already exists" was
/// about something else (another unique field, a record deleted since),
/// so the attempt fails as a conflict, possibly applied, and the next one
/// checks before it creates.
async fn create(adapter: &dyn SyncApiAdapter, ticket: &AttemptTicket) -> Result<Answer, Sent> {
    let (entity, id) = (&ticket.key.entity, &ticket.key.id);
    let exists = match adapter
        .create(entity, id, &ticket.payload, &ticket.operation_id)
        .await
    {
        Err(error) if error.kind() == ErrorKind::AlreadyExists => error,
        created => return Ok(created.map(|data| (data, None))),
    };
    match adapter
        .update(entity, id, &ticket.payload, &ticket.operation_id)
        .await
    {
        Err(error) if error.kind() == ErrorKind::NotFound => match adapter.fetch_remote(entity, id).await {
            Ok(Some(_)) => Err(contradiction(&error, "update")),
            Ok(None) => Ok(Err(sync_core::ApiError::new(
                ErrorKind::Conflict,
                format!(
                    "{}, yet an update found no such record: the server's \"already exists\" was \
                     about something else; retried, checking first",
                    exists.message()
                ),
            )
            .with_status(exists.status().unwrap_or(409))
            .with_request(exists.request().unwrap_or("the create").to_owned())
            .with_possibly_applied(true))),
            Err(fetch_error) => Ok(Err(fetch_error.with_possibly_applied(true))),
        },
        updated => Ok(updated.map(|data| (data, None))),
    }
}

/// `DELETE`s the record. A "not found" answer counts as done when it
/// repeats a delete that may have applied; otherwise a GET must confirm
/// it, since a wrong route answers 404 too.
async fn delete(adapter: &dyn SyncApiAdapter, ticket: &AttemptTicket) -> Result<Answer, Sent> {
    let (entity, id) = (&ticket.key.entity, &ticket.key.id);
    match adapter.delete(entity, id, &ticket.operation_id).await {
        Err(error) if error.kind() == ErrorKind::NotFound => {
            if ticket.plan == SendPlan::RepeatDelete {
                return Ok(Ok((None, None)));
            }
            match adapter.fetch_remote(entity, id).await {
                Ok(None) => Ok(Ok((None, None))),
                Ok(Some(_)) => Err(contradiction(&error, "delete")),
                Err(fetch_error) => Ok(Err(fetch_error)),
            }
        }
        deleted => Ok(deleted.map(|()| (None, None))),
    }
}

/// Sends `ticket` according to its plan.
pub(crate) async fn send(
    adapter: &dyn SyncApiAdapter,
    resolver: Option<&dyn ConflictResolver>,
    ticket: &AttemptTicket,
) -> Sent {
    let (entity, id) = (&ticket.key.entity, &ticket.key.id);
    let local = &ticket.payload;
    let result = match ticket.plan {
        SendPlan::Create => create(adapter, ticket).await,
        SendPlan::CreateIfAbsent => match adapter.fetch_remote(entity, id).await {
            // An earlier attempt (ours) may have created it: send the local
            // state over it. The resolver is not asked, since the copy found
            // is most likely our own older write, not someone else's.
            Ok(Some(_)) => update_found(adapter, ticket).await,
            Ok(None) => create(adapter, ticket).await,
            Err(error) => Ok(Err(error)),
        },
        SendPlan::Update => match resolver {
            None => Ok(adapter
                .update(entity, id, local, &ticket.operation_id)
                .await
                .map(|data| (data, None))),
            Some(resolver) => match adapter.fetch_remote(entity, id).await {
                Ok(None) => return Sent::NotFound,
                Ok(Some(remote)) => match resolver.resolve(local, &remote).await {
                    Ok(resolved) => match adapter.update(entity, id, &resolved, &ticket.operation_id).await {
                        Err(error) if error.kind() == ErrorKind::NotFound => {
                            Err(contradiction(&error, "update"))
                        }
                        updated => Ok(updated.map(|data| (data, Some(resolved)))),
                    },
                    Err(error) => {
                        return Sent::Failed(sync_core::ApiError::new(
                            ErrorKind::Permanent,
                            error.to_string(),
                        ));
                    }
                },
                Err(error) => Ok(Err(error)),
            },
        },
        SendPlan::Delete | SendPlan::RepeatDelete => delete(adapter, ticket).await,
    };
    match result {
        Err(decided) => decided,
        Ok(Ok((server, resolved))) => applied(server, resolved, local, id),
        // An update (or the update of a checked create) found nothing.
        Ok(Err(error))
            if error.kind() == ErrorKind::NotFound
                && matches!(ticket.plan, SendPlan::Update | SendPlan::CreateIfAbsent) =>
        {
            Sent::NotFound
        }
        Ok(Err(error)) => Sent::Failed(error),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: serde_json::Value) -> JsonObject {
        match value {
            serde_json::Value::Object(object) => object,
            _ => JsonObject::new(),
        }
    }

    fn replacement(sent: Sent) -> Option<JsonObject> {
        match sent {
            Sent::Applied(AttemptOutcome::Applied { replace_local_with }) => replace_local_with,
            _ => Some(object(json!({"unexpected": true}))),
        }
    }

    /// A server whose GET finds every record and whose update route
    /// answers 404 (json-server comparing a numeric id as a string, a
    /// server that only knows PATCH).
    #[derive(Default)]
    struct FoundThenNotFound {
        creates: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SyncApiAdapter for FoundThenNotFound {
        async fn create(
            &self,
            _: &sync_core::EntityName,
            _: &sync_core::RecordId,
            _: &JsonObject,
            _: &sync_core::OperationId,
        ) -> Result<Option<JsonObject>, sync_core::ApiError> {
            self.creates.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(None)
        }
        async fn update(
            &self,
            _: &sync_core::EntityName,
            _: &sync_core::RecordId,
            _: &JsonObject,
            _: &sync_core::OperationId,
        ) -> Result<Option<JsonObject>, sync_core::ApiError> {
            Err(sync_core::ApiError::new(ErrorKind::NotFound, "HTTP 404")
                .with_status(404)
                .with_request("PUT /tasks/{id}"))
        }
        async fn delete(
            &self,
            _: &sync_core::EntityName,
            _: &sync_core::RecordId,
            _: &sync_core::OperationId,
        ) -> Result<(), sync_core::ApiError> {
            Ok(())
        }
        async fn fetch_remote(
            &self,
            _: &sync_core::EntityName,
            _: &sync_core::RecordId,
        ) -> Result<Option<JsonObject>, sync_core::ApiError> {
            Ok(Some(object(json!({"id": "1"}))))
        }
    }

    fn ticket(plan: SendPlan) -> AttemptTicket {
        let change =
            sync_core::LocalChange::new("tasks", "1", json!({"id": "1"}), sync_core::SyncOperation::Create)
                .unwrap();
        let sync_core::coalesce::QueueWrite::Put(item) = sync_core::coalesce::plan_save(
            None,
            false,
            change,
            sync_core::coalesce::SaveContext::at(sync_core::Timestamp::from_millis(1)),
        )
        .queue
        else {
            unreachable!("a first save queues its change")
        };
        let (_, mut ticket) =
            sync_core::attempt::begin_attempt(&item, sync_core::Timestamp::from_millis(1)).unwrap();
        ticket.plan = plan;
        ticket
    }

    /// Issue 13: a GET that found the record and an update answered 404
    /// contradict each other; trusting the 404 re-created the record (a
    /// copy on the server per edit) or, on a server refusing the create,
    /// left a create "surely not applied" that a later delete then dropped.
    #[tokio::test]
    async fn a_404_after_a_get_found_the_record_parks_instead_of_re_creating() {
        let server = FoundThenNotFound::default();
        let resolver = sync_core::RemoteWins;
        for (plan, resolver) in [
            (SendPlan::CreateIfAbsent, None),
            (SendPlan::Update, Some(&resolver as &dyn ConflictResolver)),
        ] {
            let sent = send(&server, resolver, &ticket(plan)).await;
            let Sent::Failed(error) = sent else {
                panic!("{plan:?}: not a failure");
            };
            assert_eq!(
                (error.kind(), error.possibly_applied(), error.status()),
                (ErrorKind::Permanent, true, Some(404)),
                "{plan:?}: {error}"
            );
            assert!(error.message().contains("a GET found it"), "{error}");
            assert!(!error.to_string().contains("/1"), "no record id: {error}");
        }
        assert_eq!(server.creates.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    fn one() -> sync_core::RecordId {
        "1".parse().unwrap()
    }

    /// Issue 13: an answer that is not the record (a status, an envelope,
    /// another record, a partial one) replaced the local document.
    #[test]
    fn an_answer_that_is_not_the_record_is_not_adopted() {
        let local = object(json!({"id": "1", "title": "a"}));
        for answer in [
            json!({"success": true}),
            json!({"data": {"id": "1", "title": "a", "at": 2}}),
            json!({"id": "2", "title": "a", "at": 2}),
            json!({"id": "1", "at": 2}),
        ] {
            assert_eq!(
                replacement(applied(Some(object(answer.clone())), None, &local, &one())),
                None,
                "{answer}"
            );
        }
        // Not adopted, the resolver's merge still is.
        let merged = object(json!({"id": "1", "title": "merged"}));
        assert_eq!(
            replacement(applied(
                Some(object(json!({"ok": true}))),
                Some(merged.clone()),
                &local,
                &one()
            )),
            Some(merged)
        );
    }

    #[test]
    fn an_echo_of_the_local_copy_leaves_the_document_alone() {
        let local = object(json!({"id": "1", "title": "a"}));
        assert_eq!(
            replacement(applied(Some(local.clone()), None, &local, &one())),
            None
        );
        assert_eq!(
            replacement(applied(Some(JsonObject::new()), None, &local, &one())),
            None
        );
        assert_eq!(replacement(applied(None, None, &local, &one())), None);
    }

    #[test]
    fn a_different_answer_or_resolution_replaces_the_document() {
        let local = object(json!({"id": "1", "title": "a"}));
        let server = object(json!({"id": "1", "title": "a", "updatedAt": "2026-11-25T00:00:00Z"}));
        assert_eq!(
            replacement(applied(Some(server.clone()), None, &local, &one())),
            Some(server)
        );
        let merged = object(json!({"id": "1", "title": "merged"}));
        assert_eq!(
            replacement(applied(None, Some(merged.clone()), &local, &one())),
            Some(merged.clone())
        );
        // The server echoing the merged copy we sent: keep the merge.
        assert_eq!(
            replacement(applied(
                Some(merged.clone()),
                Some(merged.clone()),
                &local,
                &one()
            )),
            Some(merged)
        );
    }
}
