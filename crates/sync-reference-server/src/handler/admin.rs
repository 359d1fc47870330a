//! The administration of the change feed and of the stamp field: the
//! purge route and what the in-process handle calls beside requests.

use std::io;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::Shared;
use crate::changes;
use crate::persist;
use crate::reply::Reply;
use crate::store::{ASSIGNED_IDS_KEY, id_key};

/// What a purge did.
#[derive(Debug)]
pub(crate) struct Purged {
    /// How many deletions were forgotten.
    pub(crate) count: usize,
    /// The smallest `since` the feed answers from now on.
    pub(crate) oldest_cursor: u64,
    /// Whether the data file (which keeps soft-deleted records) was
    /// written, when it had to be.
    pub(crate) saved: io::Result<()>,
}

impl Shared {
    /// `POST /_admin/{collection}/purge-tombstones[?through={stamp}]`.
    pub(super) fn purge_request(
        &self,
        method: &Method,
        headers: &HeaderMap,
        collection: &str,
        query: Option<&str>,
    ) -> Reply {
        if method != Method::POST {
            return Reply::method_not_allowed(method, "POST");
        }
        if let Err(refusal) = self.authorize(headers) {
            return refusal;
        }
        let through = match changes::parse_through(query) {
            Ok(through) => through,
            Err(message) => return Reply::bad_request(message),
        };
        let purged = self.purge_tombstones(collection, through);
        match purged.saved {
            Ok(()) => Reply::json(
                StatusCode::OK,
                &json!({
                    "purged": purged.count,
                    "oldest_cursor": purged.oldest_cursor.to_string(),
                }),
            ),
            Err(error) => Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "{} deletions were forgotten, but the data file could not be written: {error}",
                    purged.count
                ),
            ),
        }
    }

    /// Forgets the deletions of `collection` up to change stamp `through`
    /// (`None`: all of them).
    pub(crate) fn purge_tombstones(&self, collection: &str, through: Option<u64>) -> Purged {
        let mut state = self.lock();
        let count = state
            .collections
            .purge_tombstones(collection, through.unwrap_or(u64::MAX));
        let saved = match &self.data_file {
            Some(path) if count > 0 => persist::save(path, &state.collections),
            _ => Ok(()),
        };
        let (oldest_cursor, _) = state.collections.feed_bounds(collection);
        Purged {
            count,
            oldest_cursor,
            saved,
        }
    }

    /// The smallest `since` the feed of `collection` answers, and its last
    /// change stamp.
    pub(crate) fn feed_bounds(&self, collection: &str) -> (u64, u64) {
        self.lock().collections.feed_bounds(collection)
    }

    pub(crate) fn pin_stamp(&self, value: Option<u64>) {
        self.lock().collections.pin_stamp(value);
    }

    /// Stores `records` in `collection` as writes would (created, or
    /// replaced when live), unlogged, then writes the data file once.
    /// `Err` says what is wrong; nothing is stored then.
    pub(crate) fn seed(&self, collection: &str, records: Vec<Value>) -> Result<usize, SeedError> {
        if collection == ASSIGNED_IDS_KEY {
            return Err(SeedError::Invalid(format!(
                "the collection name {ASSIGNED_IDS_KEY:?} is reserved (the data file keeps the last assigned ids under it)"
            )));
        }
        let mut objects = Vec::with_capacity(records.len());
        for (index, record) in records.into_iter().enumerate() {
            let Value::Object(object) = record else {
                return Err(SeedError::Invalid(format!("record {index} is not a JSON object")));
            };
            let Some(id) = object.get("id").and_then(id_key) else {
                return Err(SeedError::Invalid(format!(
                    "record {index} has no \"id\" that is a non-empty string or a number"
                )));
            };
            objects.push((id, object));
        }
        let mut state = self.lock();
        let count = objects.len();
        for (id, object) in objects {
            if state.collections.contains(collection, &id) {
                let _replaced = state.collections.replace(collection, &id, object);
            } else {
                let _inserted = state.collections.insert(collection, &id, object);
            }
        }
        if let Some(path) = &self.data_file {
            persist::save(path, &state.collections).map_err(SeedError::Save)?;
        }
        Ok(count)
    }
}

/// Why [`Shared::seed`] failed.
#[derive(Debug)]
pub(crate) enum SeedError {
    /// A record is not an object with a usable id; nothing was stored.
    Invalid(String),
    /// The records were stored, but the data file could not be written.
    Save(io::Error),
}
