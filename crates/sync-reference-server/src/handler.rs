//! Requests to answers: routing, the collection operations, idempotency
//! keys, the bearer check, the fault mode, the request log and the data
//! file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::body::ReplyBody;
use crate::config::IdempotencyMode;
use crate::fault::{self, Fault, FaultPlan, FaultState};
use crate::log::RequestRecord;
use crate::persist;
use crate::route::{RouteError, Target, route};
use crate::store::{Collections, Snapshot, Undo, id_key};

/// The request header naming a write's idempotency key (matched
/// case-insensitively, as every header name).
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The response header set to `true` on an answer replayed for a repeated
/// idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// [`IDEMPOTENT_REPLAYED`] in the lower-case form `HeaderName` requires.
const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The largest request body accepted, so one request cannot exhaust memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The state every connection shares, behind one lock: a change, its write
/// to the data file, its idempotency record and its log entry happen
/// together, so no request sees half of another.
#[derive(Debug)]
pub(crate) struct Shared {
    prefix: String,
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

    fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self::json(status, &json!({ "error": message.into() }))
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
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
    Delete(String),
}

impl Operation {
    fn of(method: &Method, id: Option<String>) -> Result<Self, Reply> {
        match (method, id) {
            (&Method::GET, None) => Ok(Self::List),
            (&Method::GET, Some(id)) => Ok(Self::Fetch(id)),
            (&Method::POST, None) => Ok(Self::Create),
            (&Method::PUT, Some(id)) => Ok(Self::Replace(id)),
            (&Method::DELETE, Some(id)) => Ok(Self::Delete(id)),
            (method, None) => Err(Reply::method_not_allowed(method, "GET, POST")),
            (method, Some(_)) => Err(Reply::method_not_allowed(method, "GET, PUT, DELETE")),
        }
    }

    fn has_body(&self) -> bool {
        matches!(self, Self::Create | Self::Replace(_))
    }

    fn is_write(&self) -> bool {
        matches!(self, Self::Create | Self::Replace(_) | Self::Delete(_))
    }

    /// The record addressed, as the fault plan sees it: for a create, the
    /// body's `"id"` when it has a usable one.
    fn record_id(&self, body: &[u8]) -> Option<String> {
        match self {
            Self::List => None,
            Self::Fetch(id) | Self::Replace(id) | Self::Delete(id) => Some(id.clone()),
            Self::Create => match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(object)) => object.get("id").and_then(id_key),
                _ => None,
            },
        }
    }
}

impl Shared {
    pub(crate) fn new(prefix: String, data_file: Option<PathBuf>, collections: Collections) -> Self {
        Self {
            prefix,
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
        let reply = match route(&self.prefix, parts.uri.path(), parts.uri.query()) {
            Err(RouteError::NotFound) => Reply::error(
                StatusCode::NOT_FOUND,
                "no such route: use /{collection}, /{collection}/{id}, /{collection}?id={id} or /health",
            ),
            Err(RouteError::BadRequest(message)) => Reply::bad_request(message),
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
            let operation = Operation::of(method, id)?;
            // The body is read before taking the lock, so a slow client
            // never holds up the others.
            let body = if operation.has_body() {
                read_body(body).await?
            } else {
                Bytes::new()
            };
            Ok::<_, Reply>(Prepared { key, operation, body })
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
            Ok(Prepared { key, operation, body }) => match fault.as_ref().and_then(Reply::refusal) {
                Some(refusal) => {
                    // A refused create still names the record it was for.
                    if record.id.is_none() {
                        record.id = operation.record_id(&body);
                    }
                    refusal
                }
                None => self.execute(state, operation, key, &body, &mut record),
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
    fn execute(
        &self,
        state: &mut State,
        operation: Operation,
        key: Option<String>,
        body: &[u8],
        record: &mut RequestRecord,
    ) -> Reply {
        let collection = record.collection.clone();
        // Keys are remembered for writes only, and only when honoured.
        let key = key.filter(|_| operation.is_write() && state.idempotency == IdempotencyMode::Replay);
        if let Some(replay) = key.as_ref().and_then(|key| state.replays.get(key)) {
            record.replayed = true;
            if record.id.is_none() {
                record.id.clone_from(&replay.id);
            }
            return Reply {
                status: replay.status,
                body: replay.body.clone(),
                headers: Vec::new(),
                replayed: true,
            };
        }
        let collections = &mut state.collections;
        let changed = match operation {
            Operation::List => {
                return Reply::json(StatusCode::OK, &Value::Array(collections.list(&collection)));
            }
            Operation::Fetch(id) => {
                return match collections.get(&collection, &id) {
                    Some(object) => Reply::json(StatusCode::OK, &Value::Object(object.clone())),
                    None => Reply::not_found(&collection, &id),
                };
            }
            Operation::Create => create(collections, &collection, body, record),
            Operation::Replace(id) => replace(collections, &collection, &id, body),
            Operation::Delete(id) => delete(collections, &collection, &id),
        };
        let (reply, undo) = match changed {
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

fn create(
    collections: &mut Collections,
    collection: &str,
    body: &[u8],
    record: &mut RequestRecord,
) -> Result<(Reply, Undo), Reply> {
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
        return Err(Reply::error(
            StatusCode::CONFLICT,
            format!("{collection:?} already holds a record {id:?}"),
        ));
    }
    let reply = Reply::json(StatusCode::CREATED, &Value::Object(object.clone()));
    let undo = collections.insert(collection, &id, object);
    Ok((reply, undo))
}

fn replace(
    collections: &mut Collections,
    collection: &str,
    id: &str,
    body: &[u8],
) -> Result<(Reply, Undo), Reply> {
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
    let reply = Reply::json(StatusCode::OK, &Value::Object(object.clone()));
    let undo = collections
        .replace(collection, id, object)
        .ok_or_else(|| Reply::not_found(collection, id))?;
    Ok((reply, undo))
}

fn delete(collections: &mut Collections, collection: &str, id: &str) -> Result<(Reply, Undo), Reply> {
    let (object, undo) = collections
        .remove(collection, id)
        .ok_or_else(|| Reply::not_found(collection, id))?;
    Ok((Reply::json(StatusCode::OK, &Value::Object(object)), undo))
}
