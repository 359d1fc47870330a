//! The collection operations, applied to the store under the server's
//! lock: list, the change feed, fetch, create, replace (`PUT`), patch and
//! delete, with the refusals each dialect gives.

use http::StatusCode;
use serde_json::{Map, Value};

use crate::changes::{self, FeedQuery, FeedRefusal};
use crate::config::Dialect;
use crate::listing::{self, ListQuery};
use crate::log::RequestRecord;
use crate::patch as merge;
use crate::reply::{Reply, rows};
use crate::store::{Collections, Undo, id_key};

/// A change made, before it is answered.
#[derive(Debug)]
pub(crate) enum Written {
    Created {
        object: Map<String, Value>,
        version: u64,
    },
    Updated {
        object: Map<String, Value>,
        version: u64,
    },
    Deleted {
        object: Map<String, Value>,
    },
}

impl Written {
    /// The answer to the change, as `dialect` shapes it; `represent` is
    /// PostgREST's `Prefer: return=representation`.
    pub(crate) fn reply(self, dialect: Dialect, represent: bool) -> Reply {
        match (dialect, self) {
            (Dialect::Rest, Self::Created { object, version }) => {
                Reply::json(StatusCode::CREATED, &Value::Object(object)).with_etag(version)
            }
            (Dialect::Rest, Self::Updated { object, version }) => {
                Reply::json(StatusCode::OK, &Value::Object(object)).with_etag(version)
            }
            (Dialect::Rest, Self::Deleted { object }) => Reply::json(StatusCode::OK, &Value::Object(object)),
            (Dialect::PostgRest, Self::Created { object, version }) => {
                rows(StatusCode::CREATED, StatusCode::CREATED, represent, Some(object)).with_etag(version)
            }
            (Dialect::PostgRest, Self::Updated { object, version }) => {
                rows(StatusCode::OK, StatusCode::NO_CONTENT, represent, Some(object)).with_etag(version)
            }
            (Dialect::PostgRest, Self::Deleted { object }) => {
                rows(StatusCode::OK, StatusCode::NO_CONTENT, represent, Some(object))
            }
        }
    }
}

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(Reply::bad_request(format!(
            "the body must be a JSON object, not {}",
            json_type_name(&other)
        ))),
        // serde_json's message gives the position, never the content.
        Err(error) => Err(Reply::bad_request(format!("the body is not JSON: {error}"))),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const BAD_ID: &str = "\"id\" must be a non-empty string or a number";

/// A list's answer: the records the query selects, as a JSON array (in
/// either dialect).
pub(crate) fn list(collections: &Collections, collection: &str, query: &ListQuery) -> Reply {
    let rows = listing::run(collections, collection, query);
    let mut out = Vec::with_capacity(2 + rows.len() * 128);
    out.push(b'[');
    for (index, row) in rows.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        if serde_json::to_writer(&mut out, row).is_err() {
            return unserialisable();
        }
    }
    out.push(b']');
    Reply::json_text(StatusCode::OK, out)
}

/// A page of the change feed, or its refusal (`410` for an expired
/// cursor, in either dialect).
pub(crate) fn feed(collections: &Collections, collection: &str, query: FeedQuery) -> Reply {
    match changes::page(collections, collection, query) {
        Ok(page) => Reply::json_text(StatusCode::OK, page),
        Err(FeedRefusal::Expired) => Reply::error(StatusCode::GONE, "cursor expired"),
        Err(FeedRefusal::Serialize(error)) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page could not be written out: {error}"),
        ),
    }
}

/// Stored objects always serialise; this only keeps the code panic-free.
fn unserialisable() -> Reply {
    Reply::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the answer could not be serialised",
    )
}

pub(crate) fn fetch(dialect: Dialect, collections: &Collections, collection: &str, id: &str) -> Reply {
    let found = collections.get_versioned(collection, id);
    match (dialect, found) {
        (Dialect::Rest, Some((object, version))) => {
            Reply::json(StatusCode::OK, &Value::Object(object.clone())).with_etag(version)
        }
        (Dialect::Rest, None) => Reply::not_found(collection, id),
        (Dialect::PostgRest, Some((object, version))) => {
            rows(StatusCode::OK, StatusCode::OK, true, Some(object.clone())).with_etag(version)
        }
        // A filter that matches no row is an empty result, not an error.
        (Dialect::PostgRest, None) => rows(StatusCode::OK, StatusCode::OK, true, None),
    }
}

/// A `POST`: the record is stored under the body's `"id"`, or one the
/// server makes up when it has none; when `assign` (the assigned-ids
/// mode), under the collection's next assigned id, and a body with an
/// `"id"` is refused.
pub(crate) fn create(
    dialect: Dialect,
    assign: bool,
    collections: &mut Collections,
    collection: &str,
    body: &[u8],
    record: &mut RequestRecord,
) -> Result<(Written, Undo), Reply> {
    let mut object = parse_object(body)?;
    let id = match object.get("id") {
        // `null` is no id, as a client's serialiser writes a missing one.
        None | Some(Value::Null) if assign => {
            let id = collections.assign_id(collection);
            object.insert("id".to_owned(), Value::from(id));
            id.to_string()
        }
        Some(_) if assign => return Err(id_refused(dialect, collection)),
        None | Some(Value::Null) => {
            let id = collections.generate_id(collection);
            object.insert("id".to_owned(), Value::String(id.clone()));
            id
        }
        Some(value) => id_key(value).ok_or_else(|| Reply::bad_request(BAD_ID))?,
    };
    record.id = Some(id.clone());
    if collections.contains(collection, &id) {
        return Err(match dialect {
            Dialect::Rest => Reply::error(
                StatusCode::CONFLICT,
                format!("{collection:?} already holds a record {id:?}"),
            ),
            // What PostgreSQL says through PostgREST, word for word but
            // for the names.
            Dialect::PostgRest => Reply::postgrest_error(
                StatusCode::CONFLICT,
                "23505",
                format!("duplicate key value violates unique constraint \"{collection}_pkey\""),
                Some(format!("Key (id)=({id}) already exists.")),
            ),
        });
    }
    // A soft-deleted record of that id is brought back.
    let (object, version, undo) = collections.insert(collection, &id, object);
    Ok((Written::Created { object, version }, undo))
}

/// The refusal of a create that names its record on a server that
/// assigns ids: most likely a client sending its own temporary id.
fn id_refused(dialect: Dialect, collection: &str) -> Reply {
    match dialect {
        Dialect::Rest => Reply::bad_request(format!(
            "the server assigns ids: a create (POST /{collection}) must not carry an \"id\"; \
             the answer holds the id assigned"
        )),
        // What PostgreSQL says through PostgREST of an identity column
        // `GENERATED ALWAYS`.
        Dialect::PostgRest => Reply::postgrest_error(
            StatusCode::BAD_REQUEST,
            "428C9",
            "cannot insert a non-DEFAULT value into column \"id\"",
            Some(
                "Column \"id\" is an identity column defined as GENERATED ALWAYS: the server assigns ids."
                    .to_owned(),
            ),
        ),
    }
}

pub(crate) fn replace(
    collections: &mut Collections,
    collection: &str,
    id: &str,
    body: &[u8],
) -> Result<(Written, Undo), Reply> {
    let mut object = parse_object(body)?;
    let Some(existing) = collections.get(collection, id) else {
        return Err(Reply::not_found(collection, id));
    };
    match object.get("id") {
        None | Some(Value::Null) => {
            // Keep the id as the record was created with it (a number stays
            // a number).
            let stored_id = existing
                .get("id")
                .cloned()
                .unwrap_or_else(|| Value::String(id.to_owned()));
            object.insert("id".to_owned(), stored_id);
        }
        // Refused rather than rewritten: a mismatch is a client bug worth
        // seeing.
        Some(value) if id_key(value).as_deref() != Some(id) => {
            return Err(Reply::bad_request(
                "the body's \"id\" differs from the id addressed",
            ));
        }
        // The same id (a number or its decimal string): the stored form
        // is kept, as a patch keeps it, so a number stays a number.
        Some(_) => {
            if let Some(stored_id) = existing.get("id") {
                object.insert("id".to_owned(), stored_id.clone());
            }
        }
    }
    update(collections, collection, id, object)
}

/// A `PATCH`: a JSON Merge Patch in the REST dialect, the columns to set
/// in the PostgREST one. Either way the id stays as stored.
pub(crate) fn patch(
    dialect: Dialect,
    represent: bool,
    collections: &mut Collections,
    collection: &str,
    id: &str,
    body: &[u8],
) -> Result<(Written, Undo), Reply> {
    let mut changes = parse_object(body)?;
    let Some(existing) = collections.get(collection, id) else {
        return Err(match dialect {
            Dialect::Rest => Reply::not_found(collection, id),
            // No row matched the filter: nothing to update, which PostgREST
            // does not count as an error.
            Dialect::PostgRest => rows(StatusCode::OK, StatusCode::NO_CONTENT, represent, None),
        });
    };
    match changes.remove("id") {
        None => {}
        // Merge Patch's null would remove the id; PostgREST's would set it
        // to NULL: either way the record would lose its key.
        Some(Value::Null) => return Err(Reply::bad_request("a patch cannot remove the record's \"id\"")),
        // The same id (a number or its decimal string) is no change, and
        // the stored form is kept.
        Some(value) if id_key(&value).as_deref() == Some(id) => {}
        Some(_) => {
            return Err(Reply::bad_request(
                "the patch's \"id\" differs from the id addressed: a patch cannot change a record's id",
            ));
        }
    }
    let mut object = existing.clone();
    match dialect {
        Dialect::Rest => merge::merge(&mut object, changes),
        Dialect::PostgRest => merge::set_columns(&mut object, changes),
    }
    update(collections, collection, id, object)
}

/// Stores `object` as record `id`'s new content, under a new version (the
/// stamp field set, when there is one).
fn update(
    collections: &mut Collections,
    collection: &str,
    id: &str,
    object: Map<String, Value>,
) -> Result<(Written, Undo), Reply> {
    let (object, version, undo) = collections
        .replace(collection, id, object)
        .ok_or_else(|| Reply::not_found(collection, id))?;
    Ok((Written::Updated { object, version }, undo))
}

pub(crate) fn delete(
    dialect: Dialect,
    represent: bool,
    collections: &mut Collections,
    collection: &str,
    id: &str,
) -> Result<(Written, Undo), Reply> {
    let Some((object, undo)) = collections.remove(collection, id) else {
        return Err(match dialect {
            Dialect::Rest => Reply::not_found(collection, id),
            Dialect::PostgRest => rows(StatusCode::OK, StatusCode::NO_CONTENT, represent, None),
        });
    };
    Ok((Written::Deleted { object }, undo))
}
