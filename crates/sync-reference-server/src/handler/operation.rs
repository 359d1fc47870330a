//! What a request to a collection asks for: its operation, read from the
//! method, the route and the query.

use http::{Method, StatusCode};
use serde_json::Value;

use crate::changes::{self, FeedQuery};
use crate::config::Dialect;
use crate::listing::{self, ListQuery};
use crate::reply::Reply;
use crate::store::id_key;

/// What a request to a collection asks for.
#[derive(Debug)]
pub(super) enum Operation {
    List(ListQuery),
    /// A page of the change feed.
    Changes(FeedQuery),
    Fetch(String),
    Create,
    Replace(String),
    Patch(String),
    Delete(String),
}

impl Operation {
    /// What `method` asks of the collection, `id` the record addressed
    /// (`None` for the feed) and `feed` whether the path is the change
    /// feed's; the list and feed parameters are read from `query`.
    pub(super) fn of(
        dialect: Dialect,
        method: &Method,
        id: Option<String>,
        feed: bool,
        query: Option<&str>,
    ) -> Result<Self, Reply> {
        if feed {
            if method == Method::GET {
                return changes::parse(query)
                    .map(Self::Changes)
                    .map_err(Reply::bad_request);
            }
            if dialect == Dialect::PostgRest {
                return Err(Reply::method_not_allowed(method, "GET"));
            }
            // In the REST dialect, the record `changes`.
        }
        let list = match dialect {
            Dialect::Rest if method == Method::GET && id.is_none() => {
                listing::parse_rest(query).map_err(Reply::bad_request)?
            }
            Dialect::Rest => ListQuery::default(),
            Dialect::PostgRest => listing::parse_postgrest(query).map_err(|message| {
                Reply::postgrest_error(StatusCode::BAD_REQUEST, "PGRST100", message, None)
            })?,
        };
        if dialect == Dialect::PostgRest && !(method == Method::GET && id.is_none()) && !list.is_plain() {
            return Err(Reply::postgrest_error(
                StatusCode::BAD_REQUEST,
                "PGRST100",
                "lookups, range filters, order, offset and limit apply to a list (GET without id=eq.) only",
                None,
            ));
        }
        match (method, id) {
            (&Method::GET, None) => Ok(Self::List(list)),
            (&Method::GET, Some(id)) => Ok(Self::Fetch(id)),
            (&Method::POST, None) => Ok(Self::Create),
            (&Method::PATCH, Some(id)) => Ok(Self::Patch(id)),
            (&Method::DELETE, Some(id)) => Ok(Self::Delete(id)),
            (method, id) => match dialect {
                Dialect::Rest => match (method, id) {
                    (&Method::PUT, Some(id)) => Ok(Self::Replace(id)),
                    (method, None) => Err(Reply::method_not_allowed(method, "GET, POST")),
                    (method, Some(_)) => Err(Reply::method_not_allowed(method, "GET, PUT, PATCH, DELETE")),
                },
                Dialect::PostgRest => Err(postgrest_refusal(method, id.is_some())),
            },
        }
    }

    pub(super) fn has_body(&self) -> bool {
        matches!(self, Self::Create | Self::Replace(_) | Self::Patch(_))
    }

    pub(super) fn is_write(&self) -> bool {
        matches!(
            self,
            Self::Create | Self::Replace(_) | Self::Patch(_) | Self::Delete(_)
        )
    }

    /// The record whose version an `If-Match` is compared with: the one
    /// an update or delete addresses. A create addresses the collection
    /// and a read changes nothing, so neither is conditional.
    pub(super) fn conditional_id(&self) -> Option<&str> {
        match self {
            Self::Replace(id) | Self::Patch(id) | Self::Delete(id) => Some(id),
            Self::List(_) | Self::Changes(_) | Self::Fetch(_) | Self::Create => None,
        }
    }

    /// The record addressed, as the fault plan sees it: for a create, the
    /// body's `"id"` when it has a usable one.
    pub(super) fn record_id(&self, body: &[u8]) -> Option<String> {
        match self {
            Self::List(_) | Self::Changes(_) => None,
            Self::Fetch(id) | Self::Replace(id) | Self::Patch(id) | Self::Delete(id) => Some(id.clone()),
            Self::Create => match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(object)) => object.get("id").and_then(id_key),
                _ => None,
            },
        }
    }
}

/// The PostgREST dialect's answer to a method and filter it does not take.
fn postgrest_refusal(method: &Method, filtered: bool) -> Reply {
    match (method, filtered) {
        // What PostgreSQL with pg-safeupdate answers a statement without
        // a WHERE clause: a whole table is never changed by accident.
        (&Method::PATCH, false) => Reply::postgrest_error(
            StatusCode::BAD_REQUEST,
            "21000",
            "UPDATE requires a WHERE clause",
            Some("add the filter id=eq.{id}".to_owned()),
        ),
        (&Method::DELETE, false) => Reply::postgrest_error(
            StatusCode::BAD_REQUEST,
            "21000",
            "DELETE requires a WHERE clause",
            Some("add the filter id=eq.{id}".to_owned()),
        ),
        (&Method::POST, true) => Reply::postgrest_error(
            StatusCode::BAD_REQUEST,
            "PGRST100",
            "a POST takes no filter: the row's id goes in the body",
            None,
        ),
        (method, _) => Reply::method_not_allowed(method, "GET, POST, PATCH, DELETE"),
    }
}

/// What a request to a collection addresses, as routed.
#[derive(Debug)]
pub(super) struct Address<'a> {
    pub(super) collection: String,
    /// The record; `None` for a list or the feed.
    pub(super) id: Option<String>,
    /// Whether the path is the change feed's.
    pub(super) feed: bool,
    /// The raw query string.
    pub(super) query: Option<&'a str>,
}
