//! Server-assigned ids, the create side: a record created under a
//! temporary id ([`RecordId::temporary`]) is posted without it as its id
//! (the server names the record), with it in the shape's local-id field
//! when one is set ([`RequestShape::local_id_field`]), and the id the
//! server answers with is handed to the engine
//! ([`WriteAnswer::assigned_id`]), which renames the record.

use http::header::ETAG;
use serde_json::Value;
use sync_core::{ApiError, ErrorKind, JsonObject, RecordId, WriteAnswer};

use crate::exchange::Response;
use crate::shape::{RequestShape, Route};

/// The document to post for the create of a record under `temporary`:
/// without the shape's id field when it holds the temporary id, and with
/// the temporary id in the local-id field, when the shape has one.
pub(crate) fn created_document(shape: &RequestShape, data: &JsonObject, temporary: &RecordId) -> JsonObject {
    let mut document = data.clone();
    if document.get(&shape.id_field).and_then(Value::as_str) == Some(temporary.as_str()) {
        document.remove(&shape.id_field);
    }
    if let Some(field) = &shape.lookup.local_id_field {
        document.insert(field.clone(), Value::String(temporary.as_str().to_owned()));
    }
    document
}

/// The refusal of a create under a temporary id whose route names the id
/// (`PUT /{entity}/{id}`): the server would get the temporary id in its
/// URL and keep it. `None` for a collection route (a route function gets
/// no id for a create).
pub(crate) fn id_route_refusal(shape: &RequestShape, line: &str) -> Option<ApiError> {
    match &shape.create.route {
        Route::Template(template) if template.contains("{id}") => Some(
            ApiError::new(
                ErrorKind::Permanent,
                "this record has a temporary id, for the server to assign its id, but the entity's \
                 create route names the id ({id}): the entity needs a collection route for \
                 server-assigned ids (such as POST /{entity}; RequestShape::route for \
                 RequestKind::Create). Nothing was sent",
            )
            .with_request(line)
            .with_possibly_applied(false),
        ),
        _ => None,
    }
}

/// The answer to the create of a record under `temporary` (`data` is the
/// local document): the id the server gave it, from the shape's id field
/// of the record where the shape says the record is, unchanged (a number
/// or a string as the server wrote it; `None` without a record, without
/// the field, or with `null` in it, and with [`crate::AnswerShape::Nothing`],
/// which reads nothing from answers to writes: the engine then parks the
/// create with a typed refusal). The record becomes the local document only when it is
/// the record: it holds that id and every field of `data` (but for the id
/// field, which held the temporary id, and the local-id field, which the
/// server need not echo).
///
/// Unlike the answer to the create of an ordinary id, an id other than
/// the one sent is no error here: it is the point.
pub(crate) fn created_answer(
    shape: &RequestShape,
    response: &Response,
    data: &JsonObject,
    temporary: &RecordId,
) -> WriteAnswer {
    let etag = response.headers.get(ETAG).and_then(|value| value.to_str().ok());
    let record = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|answer| shape.record_in(answer, false).ok().flatten());
    let assigned_id = record
        .as_ref()
        .and_then(|record| record.get(&shape.id_field))
        .filter(|id| !id.is_null())
        .cloned();
    let version = shape.version_in(etag, record.as_ref());
    let record =
        record.filter(|record| assigned_id.is_some() && is_the_record(shape, record, data, temporary));
    WriteAnswer {
        record,
        version,
        assigned_id,
    }
}

/// Whether `record`, which holds an assigned id, is the record created
/// from `data`: it holds every field of `data` but the id and local-id
/// fields, and its local-id field, if it echoes one, is `temporary`.
fn is_the_record(shape: &RequestShape, record: &JsonObject, data: &JsonObject, temporary: &RecordId) -> bool {
    let local_id_field = shape.lookup.local_id_field.as_deref();
    let echo_matches = local_id_field
        .and_then(|field| record.get(field))
        .is_none_or(|echo| echo.as_str() == Some(temporary.as_str()));
    echo_matches
        && data
            .keys()
            .filter(|field| **field != shape.id_field && Some(field.as_str()) != local_id_field)
            .all(|field| record.contains_key(field))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> JsonObject {
        match value {
            Value::Object(object) => object,
            _ => JsonObject::new(),
        }
    }

    #[test]
    fn the_document_posted_drops_the_temporary_id_and_carries_it_in_the_local_id_field() {
        let temporary = RecordId::temporary();
        let data = object(json!({"id": temporary.as_str(), "title": "a", "client_ref": "old"}));
        assert_eq!(
            created_document(&RequestShape::rest(), &data, &temporary),
            object(json!({"title": "a", "client_ref": "old"}))
        );
        assert_eq!(
            created_document(
                &RequestShape::rest().local_id_field("client_ref"),
                &data,
                &temporary
            ),
            object(json!({"title": "a", "client_ref": temporary.as_str()}))
        );
        // Another id field: only that one is the record's id.
        let keyed = object(json!({"key": temporary.as_str(), "id": 5}));
        assert_eq!(
            created_document(&RequestShape::rest().id_field("key"), &keyed, &temporary),
            object(json!({"id": 5}))
        );
        // An id field holding something else is the app's own field.
        let other = object(json!({"id": "x", "title": "a"}));
        assert_eq!(created_document(&RequestShape::rest(), &other, &temporary), other);
    }

    #[test]
    fn the_answer_is_adopted_only_when_it_is_the_record() {
        let temporary = RecordId::temporary();
        let shape = RequestShape::rest().local_id_field("ref");
        let data = object(json!({"id": temporary.as_str(), "title": "a"}));
        let adopted = [
            json!({"id": 7, "title": "a"}),
            json!({"id": "k", "title": "a", "ref": temporary.as_str(), "at": 1}),
        ];
        for answer in adopted {
            assert!(
                is_the_record(&shape, &object(answer.clone()), &data, &temporary),
                "{answer}"
            );
        }
        let refused = [
            json!({"id": 7}),
            json!({"id": 7, "title": "a", "ref": "tmp-other"}),
        ];
        for answer in refused {
            assert!(
                !is_the_record(&shape, &object(answer.clone()), &data, &temporary),
                "{answer}"
            );
        }
    }
}
