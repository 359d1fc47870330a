//! Requests to answers: routing, the collection operations in either
//! dialect, ETags and `If-Match`, idempotency keys, the bearer check, the
//! fault mode, the request log and the data file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, ETAG, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::body::ReplyBody;
use crate::conditional::{IfMatch, etag};
use crate::config::{Dialect, IdempotencyMode};
use crate::fault::{self, Fault, FaultPlan, FaultState};
use crate::log::RequestRecord;
use crate::route::{RouteError, Target, route};
use crate::store::{Collections, Snapshot, Undo, id_key};
use crate::{patch, persist};

/// The request header naming a write's idempotency key (matched
/// case-insensitively, as every header name).
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The response header set to `true` on an answer replayed for a repeated
/// idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// [`IDEMPOTENT_REPLAYED`] in the lower-case form `HeaderName` requires.
const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// PostgREST's preferences header (RFC 7240), read for
/// `return=representation`.
const PREFER: HeaderName = HeaderName::from_static("prefer");

/// The media types a `PATCH` is accepted in (RFC 5789's `Accept-Patch`).
const ACCEPT_PATCH: HeaderName = HeaderName::from_static("accept-patch");

/// The largest request body accepted, so one request cannot exhaust memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

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
    log: Vec<RequestRecord>,
    /// The token requests to collections must carry, when required.
    bearer: Option<String>,
    /// The fault plan in force, if any.
    faults: Option<FaultState>,
    /// Faults injected so far, by [`Fault::name`].
    fault_counts: BTreeMap<String, u64>,
}

/// The service's error for [`Fault::LoseResponse`]: hyper closes the
/// connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("injected fault: the response is lost")]
pub(crate) struct LostResponse;

#[derive(Debug, Clone)]
struct Replay {
    status: StatusCode,
    body: Bytes,
    /// The answer's headers beyond `Content-Type` (its `ETag`).
    headers: Vec<(HeaderName, HeaderValue)>,
    id: Option<String>,
}

/// An answer before it becomes a response.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Bytes,
    /// Headers beyond `Content-Type`.
    headers: Vec<(HeaderName, HeaderValue)>,
    replayed: bool,
}

impl Reply {
    fn json(status: StatusCode, value: &Value) -> Self {
        let body = serde_json::to_vec(value)
            .map(Bytes::from)
            // A `Value` always serialises; this only keeps the code panic-free.
            .unwrap_or_else(|_| Bytes::from_static(b"{\"error\":\"the answer could not be serialised\"}"));
        Self {
            status,
            body,
            headers: Vec::new(),
            replayed: false,
        }
    }

    /// An answer without a body (and so without `Content-Type`).
    fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: Bytes::new(),
            headers: Vec::new(),
            replayed: false,
        }
    }

    fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self::json(status, &json!({ "error": message.into() }))
    }

    /// An error shaped as PostgREST's: `code` is a PostgreSQL SQLSTATE or
    /// a `PGRST` code.
    fn postgrest_error(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        details: Option<String>,
    ) -> Self {
        Self::json(
            status,
            &json!({ "code": code, "details": details, "hint": null, "message": message.into() }),
        )
    }

    /// With `ETag` set to the record version's tag.
    fn with_etag(mut self, version: u64) -> Self {
        // Digits and quotes: always a valid header value.
        if let Ok(value) = HeaderValue::try_from(etag(version)) {
            self.headers.push((ETAG, value));
        }
        self
    }

    fn precondition_failed(collection: &str, id: &str, current: Option<u64>) -> Self {
        match current {
            // The current tag goes along, so the client can fetch or retry
            // knowingly.
            Some(version) => Self::error(
                StatusCode::PRECONDITION_FAILED,
                format!(
                    "If-Match does not match the current ETag {} of record {id:?} in {collection:?}; nothing was changed",
                    etag(version)
                ),
            )
            .with_etag(version),
            None => Self::error(
                StatusCode::PRECONDITION_FAILED,
                format!("If-Match cannot match: there is no record {id:?} in {collection:?}"),
            ),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::error(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(collection: &str, id: &str) -> Self {
        Self::error(
            StatusCode::NOT_FOUND,
            format!("no record {id:?} in {collection:?}"),
        )
    }

    fn method_not_allowed(method: &Method, allow: &'static str) -> Self {
        Self {
            headers: vec![(ALLOW, HeaderValue::from_static(allow))],
            ..Self::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed here; allowed: {allow}"),
            )
        }
    }

    /// The answer to a request that `fault` was decided for, refused by it
    /// or not.
    fn refusal(fault: &Fault) -> Option<Self> {
        match fault {
            Fault::Status(status) => Some(Self::error(*status, format!("injected fault: {status}"))),
            Fault::RetryAfter { status, seconds } => Some(Self {
                headers: vec![(RETRY_AFTER, HeaderValue::from(*seconds))],
                ..Self::error(
                    *status,
                    format!("injected fault: {status}, retry after {seconds} s"),
                )
            }),
            _ => None,
        }
    }

    /// The response, its body broken as `fault` says (the refusing faults
    /// and the delays were dealt with before).
    fn into_response(self, fault: Option<&Fault>) -> Result<Response<ReplyBody>, LostResponse> {
        // A 204 has no body to break (hyper sends none whatever it is
        // given), so the body faults leave it whole.
        let fault = fault.filter(|fault| {
            self.status != StatusCode::NO_CONTENT
                || matches!(
                    fault,
                    Fault::LoseResponse | Fault::Delay(_) | Fault::DelayedApply(_)
                )
        });
        let typed = !self.body.is_empty()
            || matches!(
                fault,
                Some(Fault::MalformedJson | Fault::JsonArray | Fault::HugeBody { .. })
            );
        let body = match fault {
            Some(Fault::LoseResponse) => return Err(LostResponse),
            Some(Fault::ResetMidBody) => ReplyBody::cut(self.body),
            Some(Fault::MalformedJson) => {
                let mut body = self.body;
                // Without its closing brace (or bracket) no object (or
                // array) is valid JSON.
                body.truncate(body.len().saturating_sub(1));
                ReplyBody::full(if body.is_empty() {
                    Bytes::from_static(b"{")
                } else {
                    body
                })
            }
            Some(Fault::JsonArray) => ReplyBody::full(Bytes::from_static(b"[1,2,3]")),
            Some(Fault::HugeBody { bytes }) => ReplyBody::padding(*bytes),
            Some(Fault::Trickle { interval }) => ReplyBody::trickle(self.body, *interval),
            Some(Fault::Delay(_) | Fault::DelayedApply(_) | Fault::Status(_) | Fault::RetryAfter { .. })
            | None => ReplyBody::full(self.body),
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if typed {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        if self.replayed {
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        Ok(response)
    }
}

/// What a request to a collection asks for.
#[derive(Debug)]
enum Operation {
    List,
    Fetch(String),
    Create,
    Replace(String),
    Patch(String),
    Delete(String),
}

impl Operation {
    fn of(dialect: Dialect, method: &Method, id: Option<String>) -> Result<Self, Reply> {
        match (method, id) {
            (&Method::GET, None) => Ok(Self::List),
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

    fn has_body(&self) -> bool {
        matches!(self, Self::Create | Self::Replace(_) | Self::Patch(_))
    }

    fn is_write(&self) -> bool {
        matches!(
            self,
            Self::Create | Self::Replace(_) | Self::Patch(_) | Self::Delete(_)
        )
    }

    /// The record whose version an `If-Match` is compared with: the one
    /// an update or delete addresses. A create addresses the collection
    /// and a read changes nothing, so neither is conditional.
    fn conditional_id(&self) -> Option<&str> {
        match self {
            Self::Replace(id) | Self::Patch(id) | Self::Delete(id) => Some(id),
            Self::List | Self::Fetch(_) | Self::Create => None,
        }
    }

    /// The record addressed, as the fault plan sees it: for a create, the
    /// body's `"id"` when it has a usable one.
    fn record_id(&self, body: &[u8]) -> Option<String> {
        match self {
            Self::List => None,
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

/// A change made, before it is answered.
#[derive(Debug)]
enum Written {
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
    fn reply(self, dialect: Dialect, represent: bool) -> Reply {
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

/// A PostgREST answer about at most one row: with `represent`, `status`
/// and the rows as a JSON array; otherwise `minimal` and no body.
fn rows(status: StatusCode, minimal: StatusCode, represent: bool, row: Option<Map<String, Value>>) -> Reply {
    if represent {
        Reply::json(
            status,
            &Value::Array(row.map(Value::Object).into_iter().collect()),
        )
    } else {
        Reply::empty(minimal)
    }
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
                        "no such route: use /{collection}, /{collection}/{id}, /{collection}?id={id} or /health"
                    }
                    Dialect::PostgRest => {
                        "no such route: use /{collection}, /{collection}?id=eq.{id} or /health"
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
            Ok(Target::Collection { name, id }) => {
                return self
                    .collection_request(&parts.method, &parts.headers, body, name, id)
                    .await;
            }
        };
        reply.into_response(None)
    }

    async fn collection_request(
        self: &Arc<Self>,
        method: &Method,
        headers: &HeaderMap,
        body: Incoming,
        collection: String,
        id: Option<String>,
    ) -> Result<Response<ReplyBody>, LostResponse> {
        let received_at = Instant::now();
        let mut record = RequestRecord {
            method: method.clone(),
            collection,
            id: id.clone(),
            idempotency_key: None,
            status: StatusCode::OK,
            applied: false,
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
            let operation = Operation::of(self.dialect, method, id)?;
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
            Operation::List => {
                return Reply::json(StatusCode::OK, &Value::Array(collections.list(&collection)));
            }
            Operation::Fetch(id) => return fetch(dialect, collections, &collection, &id),
            Operation::Create => create(dialect, collections, &collection, &body, record),
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

/// The idempotency key, if sent; a present but unusable one is refused
/// rather than ignored, since ignoring it would give up the protection the
/// client asked for.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Reply> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() => Ok(Some(key.to_owned())),
        _ => Err(Reply::bad_request(
            "the Idempotency-Key header must be non-empty visible ASCII",
        )),
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, Reply> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body exceeds {MAX_BODY_BYTES} bytes"),
        )),
        Err(_) => Err(Reply::bad_request("the request body broke off")),
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Reply> {
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

/// Whether `Prefer` asks for `return=representation` (RFC 7240: a list of
/// preferences, each `token[=value]` with optional `;` parameters).
fn wants_representation(headers: &HeaderMap) -> bool {
    headers
        .get_all(PREFER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| {
            let preference = preference.split_once(';').map_or(preference, |(head, _)| head);
            let (name, value) = preference.split_once('=').unwrap_or((preference, ""));
            name.trim().eq_ignore_ascii_case("return")
                && value
                    .trim()
                    .trim_matches('"')
                    .eq_ignore_ascii_case("representation")
        })
}

/// Refuses a `PATCH` body in a media type the dialect does not read; a
/// missing `Content-Type` is taken for JSON, as for the other writes.
fn check_patch_type(dialect: Dialect, headers: &HeaderMap) -> Result<(), Reply> {
    let accepted: &[&str] = match dialect {
        Dialect::Rest => &["application/merge-patch+json", "application/json"],
        // PostgREST sets the columns given; a merge patch means something
        // else, so it is refused rather than misread.
        Dialect::PostgRest => &["application/json"],
    };
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let media_type = value
        .to_str()
        .ok()
        .map(|text| text.split_once(';').map_or(text, |(head, _)| head).trim());
    if media_type.is_some_and(|media_type| {
        accepted
            .iter()
            .any(|accepted| accepted.eq_ignore_ascii_case(media_type))
    }) {
        return Ok(());
    }
    let list = accepted.join(", ");
    let mut refusal = Reply::error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("a PATCH body must be one of: {list}"),
    );
    if let Ok(value) = HeaderValue::try_from(list) {
        refusal.headers.push((ACCEPT_PATCH, value));
    }
    Err(refusal)
}

fn fetch(dialect: Dialect, collections: &Collections, collection: &str, id: &str) -> Reply {
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

fn create(
    dialect: Dialect,
    collections: &mut Collections,
    collection: &str,
    body: &[u8],
    record: &mut RequestRecord,
) -> Result<(Written, Undo), Reply> {
    let mut object = parse_object(body)?;
    let id = match object.get("id") {
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
    let undo = collections.insert(collection, &id, object.clone());
    let version = collections.version(collection, &id).unwrap_or_default();
    Ok((Written::Created { object, version }, undo))
}

fn replace(
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
        Some(_) => {}
    }
    update(collections, collection, id, object)
}

/// A `PATCH`: a JSON Merge Patch in the REST dialect, the columns to set
/// in the PostgREST one. Either way the id stays as stored.
fn patch(
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
        Dialect::Rest => patch::merge(&mut object, changes),
        Dialect::PostgRest => patch::set_columns(&mut object, changes),
    }
    update(collections, collection, id, object)
}

/// Stores `object` as record `id`'s new content, under a new version.
fn update(
    collections: &mut Collections,
    collection: &str,
    id: &str,
    object: Map<String, Value>,
) -> Result<(Written, Undo), Reply> {
    let undo = collections
        .replace(collection, id, object.clone())
        .ok_or_else(|| Reply::not_found(collection, id))?;
    let version = collections.version(collection, id).unwrap_or_default();
    Ok((Written::Updated { object, version }, undo))
}

fn delete(
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
