//! What a server's answer to a write means for the local document.
//!
//! Servers answer writes in their own shapes: the record (often with
//! fields of their own, such as a timestamp), an envelope
//! (`{"data": {...}}`), a status (`{"success": true}`), or another record
//! altogether. Only an answer that is the record may replace the local
//! document; anything else would overwrite what the user wrote with what
//! the server said about it.

use serde_json::Value;

use crate::ids::RecordId;
use crate::model::JsonObject;

/// The field that names a record in documents and answers.
pub const ID_FIELD: &str = "id";

/// Whether `answer` to a write of `sent` for record `id` is the record, and
/// so replaces the local document:
///
/// - it is not empty and not an echo of `sent` (nothing would change);
/// - its `id`, when it has one, is the record's (as a string, or as a
///   number written the same way: servers store numeric ids as numbers);
/// - it holds every field that was sent: an answer missing some is a
///   status, an envelope or a partial record, and adopting it would drop
///   the user's fields. A server's own fields on top are welcome.
#[must_use]
pub fn answer_replaces_document(answer: &JsonObject, sent: &JsonObject, id: &RecordId) -> bool {
    if answer.is_empty() || answer == sent {
        return false;
    }
    let same_record = match answer.get(ID_FIELD) {
        None => true,
        Some(Value::String(value)) => value == id.as_str(),
        Some(Value::Number(value)) => value.to_string() == id.as_str(),
        Some(_) => false,
    };
    same_record && sent.keys().all(|field| answer.contains_key(field))
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
    fn only_the_record_replaces_the_document() {
        let id: RecordId = "7".parse().unwrap();
        let sent = object(json!({"id": "7", "title": "a", "done": false}));
        let adopted = [
            json!({"id": "7", "title": "a", "done": false, "updatedAt": "2026-12-02"}),
            json!({"id": 7, "title": "a", "done": true}),
            json!({"title": "A", "done": false, "id": "7", "version": 3}),
        ];
        for answer in adopted {
            assert!(
                answer_replaces_document(&object(answer.clone()), &sent, &id),
                "{answer}"
            );
        }
        let refused = [
            json!({}),
            json!({"id": "7", "title": "a", "done": false}),
            json!({"success": true}),
            json!({"data": {"id": "7", "title": "a", "done": false}}),
            json!({"id": "8", "title": "a", "done": false}),
            json!({"id": 70, "title": "a", "done": false}),
            json!({"id": null, "title": "a", "done": false}),
            json!({"id": "7", "updatedAt": "2026-12-02"}),
        ];
        for answer in refused {
            assert!(
                !answer_replaces_document(&object(answer.clone()), &sent, &id),
                "{answer}"
            );
        }
        // A document without an id: the answer must still carry every
        // field sent.
        let sent = object(json!({"v": 1}));
        assert!(answer_replaces_document(
            &object(json!({"v": 1, "at": 2})),
            &sent,
            &id
        ));
        assert!(!answer_replaces_document(
            &object(json!({"ok": true})),
            &sent,
            &id
        ));
    }
}
