//! Performing one attempt through the adapter: the requests of its send
//! plan, then the outcome for the store.

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
/// when it sent a non-empty one other than the local copy, else the
/// resolver's choice when it differs from the local copy.
fn applied(server: Option<JsonObject>, resolved: Option<JsonObject>, local: &JsonObject) -> Sent {
    let replace_local_with = match server.filter(|data| !data.is_empty()) {
        // An echo of what was sent leaves the document as it is: rewriting
        // it would cost a store write per synced item for nothing.
        Some(data) if data == *local => None,
        Some(data) => Some(data),
        None => resolved.filter(|data| data != local),
    };
    Sent::Applied(AttemptOutcome::Applied { replace_local_with })
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
        SendPlan::Create => adapter
            .create(entity, id, local, &ticket.operation_id)
            .await
            .map(|data| (data, None)),
        SendPlan::CreateIfAbsent => match adapter.fetch_remote(entity, id).await {
            // An earlier attempt (ours) may have created it: send the local
            // state over it. The resolver is not asked, since the copy found
            // is most likely our own older write, not someone else's.
            Ok(Some(_)) => adapter
                .update(entity, id, local, &ticket.operation_id)
                .await
                .map(|data| (data, None)),
            Ok(None) => adapter
                .create(entity, id, local, &ticket.operation_id)
                .await
                .map(|data| (data, None)),
            Err(error) => Err(error),
        },
        SendPlan::Update => match resolver {
            None => adapter
                .update(entity, id, local, &ticket.operation_id)
                .await
                .map(|data| (data, None)),
            Some(resolver) => match adapter.fetch_remote(entity, id).await {
                Ok(None) => return Sent::NotFound,
                Ok(Some(remote)) => match resolver.resolve(local, &remote).await {
                    Ok(resolved) => adapter
                        .update(entity, id, &resolved, &ticket.operation_id)
                        .await
                        .map(|data| (data, Some(resolved))),
                    Err(error) => {
                        return Sent::Failed(sync_core::ApiError::new(
                            ErrorKind::Permanent,
                            error.to_string(),
                        ));
                    }
                },
                Err(error) => Err(error),
            },
        },
        SendPlan::Delete => adapter
            .delete(entity, id, &ticket.operation_id)
            .await
            .map(|()| (None, None)),
    };
    match result {
        Ok((server, resolved)) => applied(server, resolved, local),
        // An update (or the update of a checked create) found nothing.
        Err(error)
            if error.kind() == ErrorKind::NotFound
                && matches!(ticket.plan, SendPlan::Update | SendPlan::CreateIfAbsent) =>
        {
            Sent::NotFound
        }
        Err(error) => Sent::Failed(error),
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

    #[test]
    fn an_echo_of_the_local_copy_leaves_the_document_alone() {
        let local = object(json!({"id": "1", "title": "a"}));
        assert_eq!(replacement(applied(Some(local.clone()), None, &local)), None);
        assert_eq!(replacement(applied(Some(JsonObject::new()), None, &local)), None);
        assert_eq!(replacement(applied(None, None, &local)), None);
    }

    #[test]
    fn a_different_answer_or_resolution_replaces_the_document() {
        let local = object(json!({"id": "1", "title": "a"}));
        let server = object(json!({"id": "1", "title": "a", "updatedAt": "2026-11-25T00:00:00Z"}));
        assert_eq!(
            replacement(applied(Some(server.clone()), None, &local)),
            Some(server)
        );
        let merged = object(json!({"id": "1", "title": "merged"}));
        assert_eq!(
            replacement(applied(None, Some(merged.clone()), &local)),
            Some(merged.clone())
        );
        // The server echoing the merged copy we sent: keep the merge.
        assert_eq!(
            replacement(applied(Some(merged.clone()), Some(merged.clone()), &local)),
            Some(merged)
        );
    }
}
