//! The request log: what each request to a collection did.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::Value;

use crate::fault::Fault;

/// One request addressed to a collection, as the server handled it.
///
/// Every such request is logged, reads and refused writes included, in the
/// order the server handled them (a [`Fault::DelayedApply`] request when it
/// is finally handled); a change that took effect has `applied` set, so
/// counting applied entries counts how often each change reached the data,
/// whatever the [`crate::IdempotencyMode`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestRecord {
    /// The request method.
    pub method: Method,
    /// The collection, decoded.
    pub collection: String,
    /// The record: from the path or the query (the `id=eq.` filter in the
    /// PostgREST dialect), or for a create the id it was stored under
    /// (given or generated). `None` for a listing.
    pub id: Option<String>,
    /// The `Idempotency-Key` header, when sent.
    pub idempotency_key: Option<String>,
    /// The status answered.
    pub status: StatusCode,
    /// Whether the request changed the data: a create, update or delete
    /// that succeeded (and, with a data file, was written to it).
    pub applied: bool,
    /// The change stamp the write took in its collection's change feed,
    /// when it was applied ([`crate::ReferenceServer::change_stamp`]): the
    /// log's applied writes, read with [`Self::record`], are the history
    /// of every record, so a test can tell what the server held as of any
    /// feed cursor.
    pub change: Option<u64>,
    /// When the write was applied: the record as it left it (what `GET`
    /// answered right after), `None` when it deleted it (soft deletes
    /// included).
    pub record: Option<Value>,
    /// Whether the answer was replayed for a repeated idempotency key,
    /// without applying the request again.
    pub replayed: bool,
    /// The fault injected into the answer, if the fault plan chose one.
    /// With a fault the `status` is the one answered or, for
    /// [`Fault::LoseResponse`] and [`Fault::ResetMidBody`], the one that was
    /// lost with the answer (or cut off after its head).
    pub fault: Option<Fault>,
    /// When the request reached the server (its head was read).
    pub received_at: Instant,
    /// When the server handled it: applied or refused the change, or
    /// answered the read. Right after [`Self::received_at`] but for the
    /// body's upload and a [`Fault::DelayedApply`], whose request is
    /// handled after its delay, whether or not its client is still
    /// connected.
    pub handled_at: Instant,
}

impl RequestRecord {
    /// How long after it arrived the request was handled:
    /// `handled_at - received_at`.
    #[must_use]
    pub fn handled_after(&self) -> Duration {
        self.handled_at.saturating_duration_since(self.received_at)
    }
}
