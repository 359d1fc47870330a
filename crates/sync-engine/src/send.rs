//! Performing one attempt through the adapter: the requests of its send
//! plan, then the outcome for the store.
//!
//! Updates and deletes carry the copy the server last confirmed
//! ([`sync_core::ServerCopy`]), so an adapter can make them conditional
//! (`If-Match`). A server that changed the record since answers 412: the
//! engine fetches its current copy and sends again over it, after asking
//! the resolver (three-way, with the base) when one is configured. With a
//! version known, an update with a resolver takes one request when nobody
//! else changed the record, instead of a `GET` and a `PUT`.

mod assigned;

use sync_core::answer::answer_replaces_document;
use sync_core::{
    ApiError, AttemptOutcome, AttemptTicket, ConflictResolver, ErrorKind, JsonObject, SendPlan, ServerCopy,
    SyncApiAdapter, WriteAnswer, WriteKind, WriteRequest,
};

/// What the requests of one attempt produced.
pub(crate) enum Sent {
    /// The server applied the change.
    Applied(AttemptOutcome),
    /// The server has no such record (an update answered 404).
    NotFound,
    /// A request failed.
    Failed(ApiError),
}

/// The document to keep locally, if it must change: the server's answer
/// when it is the record ([`answer_replaces_document`]: not an envelope, a
/// status or another record), else the resolver's choice when it differs
/// from the local copy.
fn applied(
    server: WriteAnswer,
    resolved: Option<JsonObject>,
    local: &JsonObject,
    id: &sync_core::RecordId,
) -> Sent {
    let sent = resolved.as_ref().unwrap_or(local);
    let replace_local_with = match server.record {
        Some(answer) if answer_replaces_document(&answer, sent, id) => Some(answer),
        // An echo of what was sent leaves the document as it is (no store
        // write per synced item for nothing); any other answer is not the
        // record and is not adopted.
        _ => resolved.filter(|data| data != local),
    };
    Sent::Applied(AttemptOutcome::Applied {
        replace_local_with,
        server_version: server.version,
    })
}

/// A GET found the record, then its update (or delete) was answered 404:
/// the two answers contradict each other, so the 404 proves nothing (the
/// route or method differs from the adapter's: a server that only knows
/// `PATCH`, ids compared as numbers). Re-creating the record would put a
/// copy on the server per edit, and counting the delete as done would
/// leave the record on the server; the attempt parks instead, with the
/// record held to be on the server.
fn contradiction(error: &ApiError, operation: &str) -> Sent {
    let request = error.request().unwrap_or(operation);
    Sent::Failed(
        ApiError::new(
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

/// Whether the server refused a conditional write because the record
/// changed since the base (412).
fn precondition_failed(error: &ApiError) -> bool {
    error.kind() == ErrorKind::Conflict && error.status() == Some(412)
}

/// The result of the requests, before it becomes an outcome: the server's
/// answer and the resolver's choice, if any.
type Answer = Result<(WriteAnswer, Option<JsonObject>), ApiError>;

/// One attempt's requests for `ticket`.
struct Requests<'a> {
    adapter: &'a dyn SyncApiAdapter,
    resolver: Option<&'a dyn ConflictResolver>,
    ticket: &'a AttemptTicket,
}

/// The attempt parks: a record re-created after a 404 cannot be found by
/// the server's routes, so every edit would make another copy. Nothing is
/// posted again for this record until a GET finds it.
fn unfindable() -> Sent {
    Sent::Failed(
        ApiError::new(
            ErrorKind::Permanent,
            "the server accepted a create of this record, yet a GET of it finds nothing: its routes \
             or id comparison differ from the adapter's (numeric ids on json-server? use its preset), \
             and every edit would make another copy; nothing more is created until a GET finds the \
             record: fix the request shape, then retry the item",
        )
        .with_status(404)
        .with_possibly_applied(true),
    )
}

/// The attempt parks: the server refused, with 412, the version it had
/// just served, so it does not check `If-Match` the way it gives versions
/// (or another client wrote in between, which a retry settles).
fn refused_twice(error: &ApiError) -> Sent {
    Sent::Failed(
        ApiError::new(
            ErrorKind::Permanent,
            "the server refused with 412 the version it had just served: it does not check \
             If-Match the way it gives versions (set the request shape's version source to None), \
             or another client wrote in between; retry the item",
        )
        .with_status(error.status().unwrap_or(412))
        .with_request(error.request().unwrap_or("the write").to_owned())
        .with_possibly_applied(false),
    )
}

impl Requests<'_> {
    async fn write(
        &self,
        kind: WriteKind,
        data: &JsonObject,
        base: Option<&JsonObject>,
        version: Option<&str>,
    ) -> Result<WriteAnswer, ApiError> {
        self.adapter
            .write(WriteRequest {
                kind,
                entity: &self.ticket.key.entity,
                id: &self.ticket.key.id,
                data,
                base,
                version,
                operation_id: &self.ticket.operation_id,
            })
            .await
    }

    async fn fetch(&self) -> Result<Option<ServerCopy>, ApiError> {
        self.adapter
            .fetch_copy(&self.ticket.key.entity, &self.ticket.key.id)
            .await
    }

    /// The document the server last confirmed to this device: the base of
    /// a patch of this device's own changes, and of a three-way merge.
    fn own_base(&self) -> Option<&JsonObject> {
        self.ticket.base.as_ref().map(|copy| &copy.data)
    }

    fn own_version(&self) -> Option<&str> {
        self.ticket.base.as_ref().and_then(|copy| copy.version.as_deref())
    }

    /// Updates a record the server holds (a GET found `found`, or a create
    /// was answered "already exists"): this device's changes, over the
    /// version found; a 404 then contradicts the earlier answer.
    async fn update_found(&self, found: Option<&ServerCopy>) -> Result<Answer, Sent> {
        let version = found.and_then(|copy| copy.version.as_deref());
        match self
            .write(WriteKind::Update, &self.ticket.payload, self.own_base(), version)
            .await
        {
            Err(error) if error.kind() == ErrorKind::NotFound => Err(contradiction(&error, "update")),
            updated => Ok(updated.map(|answer| (answer, None))),
        }
    }

    /// Creates the record; an "already exists" answer means the server
    /// holds it after all (an earlier attempt whose answer was lost, a
    /// server that ignores idempotency keys), so the local state is sent as
    /// an update.
    ///
    /// Should that update be answered "not found", the server contradicts
    /// itself; a GET decides: found, the update route is wrong (parked, as
    /// after any GET that found the record); absent, the "already exists"
    /// was about something else (another unique field): a conflict retried
    /// the first time, parked, possibly applied, when it happens again.
    async fn create(&self) -> Result<Answer, Sent> {
        let exists = match self
            .write(WriteKind::Create, &self.ticket.payload, None, None)
            .await
        {
            Err(error) if error.kind() == ErrorKind::AlreadyExists => error,
            created => return Ok(created.map(|answer| (answer, None))),
        };
        match self
            .write(WriteKind::Update, &self.ticket.payload, self.own_base(), None)
            .await
        {
            Err(error) if error.kind() == ErrorKind::NotFound => match self.fetch().await {
                Ok(Some(_)) => Err(contradiction(&error, "update")),
                // Once, it may be a passing state of the server: retried,
                // checking first. Again, asking once more would not change
                // it: parked.
                Ok(None) => Err(Sent::Failed(
                    ApiError::new(
                        if self.ticket.retry_count == 0 {
                            ErrorKind::Conflict
                        } else {
                            ErrorKind::Permanent
                        },
                        format!(
                            "{}, yet an update and a GET find no such record: the server's \"already \
                             exists\" is about something else (another unique field?); check the \
                             record and the request shape's already-exists answers",
                            exists.message()
                        ),
                    )
                    .with_status(exists.status().unwrap_or(409))
                    .with_request(exists.request().unwrap_or("the create").to_owned())
                    .with_possibly_applied(true),
                )),
                Err(fetch_error) => Ok(Err(fetch_error.with_possibly_applied(true))),
            },
            updated => Ok(updated.map(|answer| (answer, None))),
        }
    }

    /// Re-creates a record an update was told is gone, after a GET found
    /// nothing, then checks that the server can find what it just created:
    /// a server that cannot (ids stored as numbers but looked up as text,
    /// routes that differ) would get a copy per edit, each "re-created"
    /// after a 404. Parked instead.
    async fn create_checked(&self) -> Result<Answer, Sent> {
        let created = self.create().await?;
        if created.is_err() {
            return Ok(created);
        }
        match self.fetch().await {
            Ok(Some(_)) => Ok(created),
            Ok(None) => Err(unfindable()),
            Err(error) => Ok(Err(error.with_possibly_applied(true))),
        }
    }

    /// Updates the record. With a version known, the update goes out
    /// conditionally at once; without one, a resolver needs the server's
    /// copy first. A 412 means the server changed the record since the
    /// base: fetch, resolve (or let the local copy win without a
    /// resolver), send again over the copy fetched.
    async fn update(&self) -> Result<Answer, Sent> {
        let version = self.own_version();
        if self.resolver.is_some() && version.is_none() {
            return self.resolve_and_update().await;
        }
        match self
            .write(WriteKind::Update, &self.ticket.payload, self.own_base(), version)
            .await
        {
            Err(error) if precondition_failed(&error) => self.resolve_and_update().await,
            updated => Ok(updated.map(|answer| (answer, None))),
        }
    }

    /// Fetches the server's copy, resolves against it (three-way, with the
    /// base), and sends the result over its version: a patch from the copy
    /// fetched to the resolution, or, without a resolver, of this device's
    /// own changes (fields others changed stand).
    async fn resolve_and_update(&self) -> Result<Answer, Sent> {
        let local = &self.ticket.payload;
        let remote = match self.fetch().await {
            Ok(Some(remote)) => remote,
            Ok(None) => return Err(Sent::NotFound),
            Err(error) => return Ok(Err(error)),
        };
        let version = remote.version.as_deref();
        let (resolved, sent) = match self.resolver {
            None => (
                None,
                self.write(WriteKind::Update, local, self.own_base(), version)
                    .await,
            ),
            Some(resolver) => match resolver
                .resolve_three_way(local, &remote.data, self.own_base())
                .await
            {
                Ok(resolved) => {
                    let sent = self
                        .write(WriteKind::Update, &resolved, Some(&remote.data), version)
                        .await;
                    (Some(resolved), sent)
                }
                Err(error) => {
                    return Err(Sent::Failed(ApiError::new(
                        ErrorKind::Permanent,
                        error.to_string(),
                    )));
                }
            },
        };
        match sent {
            Err(error) if error.kind() == ErrorKind::NotFound => Err(contradiction(&error, "update")),
            Err(error) if precondition_failed(&error) => Err(refused_twice(&error)),
            updated => Ok(updated.map(|answer| (answer, resolved))),
        }
    }

    /// Deletes the record, conditionally when a version is known (a 412:
    /// the server changed it since; the delete goes out again over the
    /// copy fetched). A "not found" answer counts as done when it repeats
    /// a delete that may have applied; otherwise a GET must confirm it,
    /// since a wrong route answers 404 too.
    async fn delete(&self) -> Result<Answer, Sent> {
        let nothing = JsonObject::new();
        let mut result = self
            .write(WriteKind::Delete, &nothing, None, self.own_version())
            .await;
        if let Err(error) = &result
            && precondition_failed(error)
        {
            result = match self.fetch().await {
                Ok(Some(current)) => {
                    match self
                        .write(WriteKind::Delete, &nothing, None, current.version.as_deref())
                        .await
                    {
                        Err(error) if precondition_failed(&error) => return Err(refused_twice(&error)),
                        deleted => deleted,
                    }
                }
                Ok(None) => Ok(WriteAnswer::default()),
                Err(fetch_error) => Err(fetch_error),
            };
        }
        match result {
            Err(error) if error.kind() == ErrorKind::NotFound => {
                if self.ticket.plan == SendPlan::RepeatDelete {
                    return Ok(Ok((WriteAnswer::default(), None)));
                }
                match self.fetch().await {
                    Ok(None) => Ok(Ok((WriteAnswer::default(), None))),
                    Ok(Some(_)) => Err(contradiction(&error, "delete")),
                    Err(fetch_error) => Ok(Err(fetch_error)),
                }
            }
            deleted => Ok(deleted.map(|_| (WriteAnswer::default(), None))),
        }
    }
}

/// Sends `ticket` according to its plan. `referring` are the declared
/// references to the ticket's entity, rewritten when a record created
/// under a temporary id takes the server's id.
pub(crate) async fn send(
    adapter: &dyn SyncApiAdapter,
    resolver: Option<&dyn ConflictResolver>,
    ticket: &AttemptTicket,
    referring: Vec<sync_core::rename::ReferringField>,
) -> Sent {
    let requests = Requests {
        adapter,
        resolver,
        ticket,
    };
    if ticket.key.id.is_temporary() {
        return assigned::send_temporary(&requests, referring).await;
    }
    let result = match ticket.plan {
        SendPlan::Create => requests.create().await,
        SendPlan::CreateIfAbsent => match requests.fetch().await {
            // An earlier attempt (ours) may have created it: send the local
            // state over it. The resolver is not asked, since the copy found
            // is most likely our own older write, not someone else's.
            Ok(Some(found)) => requests.update_found(Some(&found)).await,
            Ok(None) if ticket.parked_for_not_found => Err(unfindable()),
            Ok(None) if ticket.after_not_found => requests.create_checked().await,
            Ok(None) => requests.create().await,
            Err(error) => Ok(Err(error)),
        },
        SendPlan::Update => requests.update().await,
        SendPlan::Delete | SendPlan::RepeatDelete => requests.delete().await,
    };
    match result {
        Err(decided) => decided,
        Ok(Ok((server, resolved))) => applied(server, resolved, &ticket.payload, &ticket.key.id),
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

    fn answered(record: JsonObject) -> WriteAnswer {
        WriteAnswer {
            record: Some(record),
            version: None,
            assigned_id: None,
        }
    }

    fn replacement(sent: Sent) -> Option<JsonObject> {
        match sent {
            Sent::Applied(AttemptOutcome::Applied {
                replace_local_with, ..
            }) => replace_local_with,
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
            let sent = send(&server, resolver, &ticket(plan), Vec::new()).await;
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
                replacement(applied(answered(object(answer.clone())), None, &local, &one())),
                None,
                "{answer}"
            );
        }
        // Not adopted, the resolver's merge still is.
        let merged = object(json!({"id": "1", "title": "merged"}));
        assert_eq!(
            replacement(applied(
                answered(object(json!({"ok": true}))),
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
            replacement(applied(answered(local.clone()), None, &local, &one())),
            None
        );
        assert_eq!(
            replacement(applied(answered(JsonObject::new()), None, &local, &one())),
            None
        );
        assert_eq!(
            replacement(applied(WriteAnswer::default(), None, &local, &one())),
            None
        );
    }

    #[test]
    fn a_different_answer_or_resolution_replaces_the_document() {
        let local = object(json!({"id": "1", "title": "a"}));
        let server = object(json!({"id": "1", "title": "a", "updatedAt": "2026-11-25T00:00:00Z"}));
        assert_eq!(
            replacement(applied(answered(server.clone()), None, &local, &one())),
            Some(server)
        );
        let merged = object(json!({"id": "1", "title": "merged"}));
        assert_eq!(
            replacement(applied(
                WriteAnswer::default(),
                Some(merged.clone()),
                &local,
                &one()
            )),
            Some(merged.clone())
        );
        // The server echoing the merged copy we sent: keep the merge.
        assert_eq!(
            replacement(applied(
                answered(merged.clone()),
                Some(merged.clone()),
                &local,
                &one()
            )),
            Some(merged)
        );
    }
}
