//! Requests to answers: routing, the collection operations in either
//! dialect, ETags and `If-Match`, idempotency keys, the bearer check, the
//! fault mode, the request log and the data file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::body::ReplyBody;
use crate::conditional::IfMatch;
use crate::config::{Dialect, IdempotencyMode};
use crate::fault::{self, Fault, FaultPlan, FaultState};
use crate::log::RequestRecord;
use crate::persist;
use crate::reply::{LostResponse, Reply};
use crate::route::{RouteError, Target, route};
use crate::store::{Collections, Snapshot};
use crate::writes::{create, delete, feed, fetch, list, patch, replace};

mod admin;
mod operation;
mod request;

use operation::{Address, Operation};
use request::{check_patch_type, idempotency_key, read_body, wants_representation};

pub(crate) use admin::SeedError;

/// The request header naming a write's idempotency key (matched
/// case-insensitively, as every header name).
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The response header set to `true` on an answer replayed for a repeated
/// idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// The state every connection shares, behind one lock: a change, its write
/// to the data file, its idempotency record and its log entry happen
/// together, so no request sees half of another.
#[derive(Debug)]
pub(crate) struct Shared {
    prefix: String,
    dialect: Dialect,
    data_file: Option<PathBuf>,
    state: Mutex<State>,
    /// How many [`Fault::DelayedApply`] requests are held, not yet handled.
    delayed: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct State {
    collections: Collections,
    /// Idempotency key → the answer of the request that took effect with it.
    replays: HashMap<String, Replay>,
    /// Whether `replays` is used.
    idempotency: IdempotencyMode,
    /// Whether creates get their ids from the server.
    assigned_ids: bool,
    log: Vec<RequestRecord>,
    /// The token requests to collections must carry, when required.
    bearer: Option<String>,
    /// The fault plan in force, if any.
    faults: Option<FaultState>,
    /// Faults injected so far, by [`Fault::name`].
    fault_counts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
struct Replay {
    status: StatusCode,
    body: Bytes,
    /// The answer's headers beyond `Content-Type` (its `ETag`).
    headers: Vec<(HeaderName, HeaderValue)>,
    id: Option<String>,
}

impl Shared {
    pub(crate) fn new(
        prefix: String,
        dialect: Dialect,
        data_file: Option<PathBuf>,
        collections: Collections,
    ) -> Self {
        Self {
            prefix,
            dialect,
            data_file,
            state: Mutex::new(State {
                collections,
                ..State::default()
            }),
            delayed: watch::Sender::new(0),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub(crate) fn data_file(&self) -> Option<&std::path::Path> {
        self.data_file.as_deref()
    }

    pub(crate) fn record_version(&self, collection: &str, id: &str) -> Option<u64> {
        self.lock().collections.version(collection, id)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something ever did, the
        // state is still whole (every change is one call), so keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.lock().collections.snapshot()
    }

    pub(crate) fn request_log(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    pub(crate) fn clear_request_log(&self) {
        self.lock().log.clear();
    }

    pub(crate) fn set_faults(&self, plan: Option<FaultPlan>) {
        self.lock().faults = plan.map(FaultState::new);
    }

    pub(crate) fn fault_counts(&self) -> BTreeMap<String, u64> {
        self.lock().fault_counts.clone()
    }

    pub(crate) fn require_bearer(&self, token: Option<String>) {
        self.lock().bearer = token;
    }

    pub(crate) fn set_idempotency(&self, mode: IdempotencyMode) {
        self.lock().idempotency = mode;
    }

    pub(crate) fn idempotency(&self) -> IdempotencyMode {
        self.lock().idempotency
    }

    pub(crate) fn set_assigned_ids(&self, assign: bool) {
        self.lock().assigned_ids = assign;
    }

    pub(crate) fn assigned_ids(&self) -> bool {
        self.lock().assigned_ids
    }

    pub(crate) fn last_assigned_id(&self, collection: &str) -> u64 {
        self.lock().collections.last_assigned_id(collection)
    }

    pub(crate) fn records(&self, collection: &str) -> Vec<Value> {
        self.lock().collections.records(collection)
    }

    pub(crate) fn record_count(&self, collection: &str) -> usize {
        self.lock().collections.record_count(collection)
    }

    pub(crate) fn delayed_applies_pending(&self) -> usize {
        *self.delayed.borrow()
    }

    pub(crate) async fn wait_for_delayed_applies(&self) {
        let mut pending = self.delayed.subscribe();
        // The sender lives in `self`, so the wait cannot fail.
        let _settled = pending.wait_for(|count| *count == 0).await;
    }

    /// Answers one request, or (for [`Fault::LoseResponse`]) fails so that
    /// the connection is closed without an answer.
    pub(crate) async fn handle(
        self: &Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ReplyBody>, LostResponse> {
        let (parts, body) = request.into_parts();
        let reply = match route(&self.prefix, self.dialect, parts.uri.path(), parts.uri.query()) {
            Err(RouteError::NotFound) => Reply::error(
                StatusCode::NOT_FOUND,
                match self.dialect {
                    Dialect::Rest => {
                        "no such route: use /{collection}, /{collection}/{id}, /{collection}?id={id}, /{collection}/changes or /health"
                    }
                    Dialect::PostgRest => {
                        "no such route: use /{collection}, /{collection}?id=eq.{id}, /{collection}/changes or /health"
                    }
                },
            ),
            Err(RouteError::BadRequest(message)) => match self.dialect {
                Dialect::Rest => Reply::bad_request(message),
                Dialect::PostgRest => {
                    Reply::postgrest_error(StatusCode::BAD_REQUEST, "PGRST100", message, None)
                }
            },
            Ok(Target::Health) if parts.method == Method::GET => {
                Reply::json(StatusCode::OK, &json!({ "status": "ok" }))
            }
            Ok(Target::Health) => Reply::method_not_allowed(&parts.method, "GET"),
            Ok(Target::Collection { name, id, feed }) => {
                // The feed is read with `GET`; other methods there address
                // the record `changes` (REST) or are refused (PostgREST).
                let id = if feed && parts.method == Method::GET {
                    None
                } else {
                    id
                };
                let address = Address {
                    collection: name,
                    id,
                    feed,
                    query: parts.uri.query(),
                };
                return self
                    .collection_request(&parts.method, &parts.headers, body, address)
                    .await;
            }
            Ok(Target::PurgeTombstones { collection }) => {
                self.purge_request(&parts.method, &parts.headers, &collection, parts.uri.query())
            }
        };
        reply.into_response(None)
    }

    async fn collection_request(
        self: &Arc<Self>,
        method: &Method,
        headers: &HeaderMap,
        body: Incoming,
        address: Address<'_>,
    ) -> Result<Response<ReplyBody>, LostResponse> {
        let received_at = Instant::now();
        let Address {
            collection,
            id,
            feed,
            query,
        } = address;
        let mut record = RequestRecord {
            method: method.clone(),
            collection,
            id: id.clone(),
            idempotency_key: None,
            status: StatusCode::OK,
            applied: false,
            change: None,
            record: None,
            replayed: false,
            fault: None,
            received_at,
            handled_at: received_at,
        };
        let prepared = async {
            let key = match (idempotency_key(headers), self.idempotency()) {
                (Ok(key), _) => Ok(key),
                // Ignored headers are not checked.
                (Err(_), IdempotencyMode::Ignore) => Ok(None),
                (Err(refusal), IdempotencyMode::Replay) => Err(refusal),
            };
            if let Ok(key) = &key {
                record.idempotency_key.clone_from(key);
            }
            self.authorize(headers)?;
            let key = key?;
            let operation = Operation::of(self.dialect, method, id, feed, query)?;
            let if_match = match operation.conditional_id() {
                Some(_) => IfMatch::from_headers(headers).map_err(Reply::bad_request)?,
                // Not a conditional request: the header is not even read.
                None => None,
            };
            if let Operation::Patch(_) = operation {
                check_patch_type(self.dialect, headers)?;
            }
            let represent = self.dialect == Dialect::PostgRest && wants_representation(headers);
            // The body is read before taking the lock, so a slow client
            // never holds up the others.
            let body = if operation.has_body() {
                read_body(body).await?
            } else {
                Bytes::new()
            };
            Ok::<_, Reply>(Prepared {
                key,
                operation,
                body,
                if_match,
                represent,
            })
        }
        .await;
        // The lock is held in a block of its own: a guard may not live
        // across an await.
        let decided = {
            let mut state = self.lock();
            let fault = match &prepared {
                Ok(prepared) => state.faults.as_mut().and_then(|faults| {
                    faults.decide(fault::Operation {
                        method: method.clone(),
                        collection: record.collection.clone(),
                        id: prepared.operation.record_id(&prepared.body),
                        key: prepared.key.clone(),
                    })
                }),
                Err(_) => None,
            };
            if let Some(fault) = &fault {
                *state.fault_counts.entry(fault.name().to_owned()).or_default() += 1;
            }
            match (fault, prepared) {
                (Some(Fault::DelayedApply(delay)), Ok(prepared)) => Err((delay, prepared, record)),
                (fault, prepared) => Ok(self.conclude(&mut state, prepared, fault, record)),
            }
        };
        let (reply, fault) = match decided {
            Ok(handled) => handled,
            Err((delay, prepared, record)) => self.handle_later(delay, prepared, record).await,
        };
        if let Some(Fault::Delay(delay)) = fault {
            tokio::time::sleep(delay).await;
        }
        reply.into_response(fault.as_ref())
    }

    /// Handles a [`Fault::DelayedApply`] request after `delay`, in a task
    /// of its own so that it is handled even if the connection closes and
    /// hyper drops the request's future meanwhile.
    async fn handle_later(
        self: &Arc<Self>,
        delay: Duration,
        prepared: Prepared,
        record: RequestRecord,
    ) -> (Reply, Option<Fault>) {
        let held = Held::new(Arc::clone(self));
        let handled = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let shared = &held.0;
            let mut state = shared.lock();
            shared.conclude(&mut state, Ok(prepared), Some(Fault::DelayedApply(delay)), record)
        })
        .await;
        // A join error means the task was cancelled with its runtime (it
        // cannot panic), so there is no one left to answer anyway.
        handled.unwrap_or_else(|_| {
            (
                Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server shut down before handling the request",
                ),
                None,
            )
        })
    }

    /// Handles a prepared request under the lock (refused by `fault`, or
    /// executed) and logs it; returns the answer and the fault to break it
    /// with.
    fn conclude(
        &self,
        state: &mut State,
        prepared: Result<Prepared, Reply>,
        fault: Option<Fault>,
        mut record: RequestRecord,
    ) -> (Reply, Option<Fault>) {
        record.handled_at = Instant::now();
        let reply = match prepared {
            Ok(prepared) => match fault.as_ref().and_then(Reply::refusal) {
                Some(refusal) => {
                    // A refused create still names the record it was for.
                    if record.id.is_none() {
                        record.id = prepared.operation.record_id(&prepared.body);
                    }
                    refusal
                }
                None => self.execute(state, prepared, &mut record),
            },
            Err(reply) => reply,
        };
        record.status = reply.status;
        record.fault.clone_from(&fault);
        state.log.push(record);
        (reply, fault)
    }

    /// Refuses a request without the bearer token, when one is required.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Reply> {
        let state = self.lock();
        let Some(token) = &state.bearer else {
            return Ok(());
        };
        let sent = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
        match sent.and_then(|sent| sent.strip_prefix(b"Bearer ")) {
            Some(sent) if sent == token.as_bytes() => Ok(()),
            _ => Err(Reply {
                headers: vec![(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                ..Reply::error(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong bearer token in the Authorization header",
                )
            }),
        }
    }

    /// Performs one operation under the lock, filling in `record`.
    ///
    /// This is the moment a write is applied, also for one a
    /// [`Fault::DelayedApply`] held: its `If-Match` is compared with the
    /// record as it is now, not as it was when the request arrived.
    fn execute(&self, state: &mut State, prepared: Prepared, record: &mut RequestRecord) -> Reply {
        let Prepared {
            key,
            operation,
            body,
            if_match,
            represent,
        } = prepared;
        let collection = record.collection.clone();
        // Keys are remembered for writes only, and only when honoured.
        let key = key.filter(|_| operation.is_write() && state.idempotency == IdempotencyMode::Replay);
        if let Some(replay) = key.as_ref().and_then(|key| state.replays.get(key)) {
            // The stored answer as it was, without checking `If-Match`
            // again: the write it answers took effect, and the record has
            // moved on since, maybe through that very write.
            record.replayed = true;
            if record.id.is_none() {
                record.id.clone_from(&replay.id);
            }
            return Reply {
                status: replay.status,
                body: replay.body.clone(),
                headers: replay.headers.clone(),
                replayed: true,
            };
        }
        let assign = state.assigned_ids;
        let collections = &mut state.collections;
        if let (Some(condition), Some(id)) = (&if_match, operation.conditional_id()) {
            // Before the body is looked at: a precondition is evaluated
            // before the request's content (RFC 9110 §13.2.2).
            let current = collections.version(&collection, id);
            if !condition.matches(current) {
                return Reply::precondition_failed(&collection, id, current);
            }
        }
        let dialect = self.dialect;
        let changed = match operation {
            Operation::List(query) => return list(collections, &collection, &query),
            Operation::Changes(query) => return feed(collections, &collection, query),
            Operation::Fetch(id) => return fetch(dialect, collections, &collection, &id),
            Operation::Create => create(dialect, assign, collections, &collection, &body, record),
            Operation::Replace(id) => replace(collections, &collection, &id, &body),
            Operation::Patch(id) => patch(dialect, represent, collections, &collection, &id, &body),
            Operation::Delete(id) => delete(dialect, represent, collections, &collection, &id),
        };
        let (written, undo) = match changed {
            Ok(done) => done,
            Err(refused) => return refused,
        };
        if let Some(path) = &self.data_file
            && let Err(error) = persist::save(path, collections)
        {
            // Undone, so memory never holds what the file does not: a
            // restart must not lose a change a client saw succeed.
            collections.undo(undo);
            return Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the change was not applied: the data file could not be written: {error}"),
            );
        }
        record.applied = true;
        record.change = Some(collections.feed_bounds(&collection).1);
        record.record = record
            .id
            .as_deref()
            .and_then(|id| collections.get(&collection, id))
            .map(|object| Value::Object(object.clone()));
        let reply = written.reply(dialect, represent);
        if let Some(key) = key {
            // Only changes that took effect are remembered: a refused request
            // changed nothing, so sending it again is safe and may succeed
            // (an update refused with 404, re-sent as a create with the same
            // key, must create).
            state.replays.insert(
                key,
                Replay {
                    status: reply.status,
                    body: reply.body.clone(),
                    headers: reply.headers.clone(),
                    id: record.id.clone(),
                },
            );
        }
        reply
    }
}

/// A request to a collection, read and ready to be handled.
#[derive(Debug)]
struct Prepared {
    key: Option<String>,
    operation: Operation,
    body: Bytes,
    /// The `If-Match` precondition of an update or delete.
    if_match: Option<IfMatch>,
    /// Whether a PostgREST client asked for the rows back
    /// (`Prefer: return=representation`); always `false` in the REST
    /// dialect.
    represent: bool,
}

/// Counts one [`Fault::DelayedApply`] request as held while it lives.
#[derive(Debug)]
struct Held(Arc<Shared>);

impl Held {
    fn new(shared: Arc<Shared>) -> Self {
        shared.delayed.send_modify(|count| *count += 1);
        Self(shared)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0
            .delayed
            .send_modify(|count| *count = count.saturating_sub(1));
    }
}
