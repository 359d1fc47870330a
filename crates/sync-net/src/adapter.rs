//! [`HttpSyncApiAdapter`]: the default [`SyncApiAdapter`], REST over hyper.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, IF_MATCH, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue};
use sync_core::{
    ApiError, CreatedLookup, EntityName, ErrorKind, JsonObject, OperationId, RecordId, ServerCopy,
    SyncApiAdapter, WriteAnswer, WriteKind, WriteRequest,
};

use crate::answers::{captive_portal, no_row_matched};
use crate::assigned;
use crate::client::{self, HttpClient, Trust};
use crate::error::NetError;
use crate::exchange::{Response, Target};
use crate::pull::PullStrategy;
use crate::shape::{AnswerShape, RequestKind, RequestShape};
use crate::url::BaseUrl;

/// Supplies per-request headers (such as `Authorization`) and refreshes
/// credentials when the server answers 401.
///
/// On a 401 the adapter calls [`AuthHook::refresh`] once and retries the
/// request once with fresh headers; a second 401 is a permanent error.
///
/// Each call is bounded by
/// [`HttpSyncApiAdapterBuilder::auth_hook_timeout`] (default 30 s): a hook
/// that does not return in time fails the request with a transient
/// [`ApiError`] (nothing was sent, so nothing was applied), and the engine
/// retries it later, so a hung hook can never hang a sync.
#[async_trait]
pub trait AuthHook: Send + Sync {
    /// Headers to add to the next request.
    ///
    /// # Errors
    /// An [`ApiError`] (typically `Permanent`) when no credentials can be
    /// had; the request is not sent.
    async fn headers(&self) -> Result<HeaderMap, ApiError>;

    /// Renews the credentials after a 401.
    ///
    /// # Errors
    /// An [`ApiError`] when renewal fails; it is returned for the request.
    async fn refresh(&self) -> Result<(), ApiError>;
}

/// Maps an entity and an optional id to a path (with an optional query),
/// relative to the base URL; it must start with `/`. Use
/// [`crate::encode_segment`] and [`crate::encode_query_value`] on the parts.
pub type PathBuilder = dyn Fn(&EntityName, Option<&RecordId>) -> String + Send + Sync;

/// The default `Idempotency-Key` header name.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

pub(crate) struct Config {
    pub(crate) base: BaseUrl,
    pub(crate) default_headers: HeaderMap,
    pub(crate) request_timeout: Duration,
    pub(crate) auth: Option<Arc<dyn AuthHook>>,
    pub(crate) auth_hook_timeout: Duration,
    /// The shape of every entity without one of its own.
    pub(crate) shape: Arc<RequestShape>,
    /// Entities with a shape of their own.
    pub(crate) entity_shapes: std::collections::HashMap<String, Arc<RequestShape>>,
    /// Entities pulled, with their strategies.
    pub(crate) pulls: std::collections::HashMap<String, PullStrategy>,
    pub(crate) idempotency_header: Option<HeaderName>,
    pub(crate) max_response_bytes: usize,
    pub(crate) include_response_body: bool,
}

/// REST adapter: `POST /{entity}`, `PUT /{entity}/{id}`,
/// `DELETE /{entity}/{id}`, `GET /{entity}/{id}`, JSON bodies, an
/// `Idempotency-Key` on every write, errors classified for the engine.
///
/// # Answers
///
/// - **Create and update**: any 2xx status means the server applied the
///   change. A JSON object in the body is returned as the server's copy of
///   the record; any other body (`OK`, `Created`, `[]`, a JSON string,
///   nothing, a 204) returns `Ok(None)`, so the change counts as applied
///   and the local document is kept as it is. The exception is a 2xx
///   answer that is a web page (`Content-Type: text/html` and a body
///   starting with markup; a plain `OK` typed `text/html` is an
///   acknowledgement): a JSON API does not answer a write with a page, but
///   a captive portal on a plain-HTTP link does, so it is a transient
///   (possibly applied) error, retried.
/// - **Delete**: any 2xx, 404 or 410 is done.
/// - **Fetch** (`GET`, to check a create or to resolve a conflict): 404 and
///   410 mean no record; a 2xx must carry the record as a JSON object.
///   An HTML page (`text/html`, a captive portal's) is a transient error;
///   any other 2xx body is a [`ErrorKind::Permanent`] error, not applied:
///   it is the answer of a wrong route, and asking again would get the
///   same answer.
/// - Other statuses are classified for the engine: 408, 425, 429 and 5xx
///   transient (with `Retry-After`), 409 and 412 conflict, 404 and 410 not
///   found (permanent on a create: the collection's route is missing), a
///   401 after one refresh through the [`AuthHook`] and anything else
///   permanent.
///
/// # Server-assigned ids
///
/// A record created under a temporary id ([`RecordId::temporary`]) is
/// posted without it as its id, and with it in the shape's local-id field
/// when one is set ([`RequestShape::local_id_field`]); the id in the
/// answer's record (the shape's id field) is returned as
/// [`WriteAnswer::assigned_id`], and the engine renames the record. Such
/// a create needs a collection route: one whose template holds `{id}` is
/// refused, nothing sent. [`SyncApiAdapter::find_created`] finds the
/// record by the local-id field when the answer to its create was lost.
///
/// Cloning is cheap and shares the connection pool.
///
/// # Cancel safety
///
/// Every method is cancel-safe in tokio's sense for the adapter itself:
/// dropping its future drops the request and leaves the adapter and its
/// pool usable. A write whose future is dropped may or may not have
/// reached the server, as with any request cut off; the engine counts it
/// as possibly applied.
#[derive(Clone)]
pub struct HttpSyncApiAdapter {
    pub(crate) client: HttpClient,
    pub(crate) config: Arc<Config>,
}

impl fmt::Debug for HttpSyncApiAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Default headers may hold credentials: never print them.
        f.debug_struct("HttpSyncApiAdapter")
            .field("base", &self.config.base)
            .finish_non_exhaustive()
    }
}

/// Builds an [`HttpSyncApiAdapter`]; every setting has a default, and a bad
/// one is reported by [`HttpSyncApiAdapterBuilder::build`].
#[must_use]
pub struct HttpSyncApiAdapterBuilder {
    base_url: String,
    default_headers: Vec<(String, String)>,
    request_timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    auth: Option<Arc<dyn AuthHook>>,
    auth_hook_timeout: Duration,
    shape: RequestShape,
    entity_shapes: Vec<(String, RequestShape)>,
    pulls: Vec<(String, PullStrategy)>,
    idempotency_header: Option<String>,
    trust: Trust,
    root_certificates: Vec<Vec<u8>>,
    max_response_bytes: usize,
    include_response_body: bool,
}

impl HttpSyncApiAdapter {
    /// A builder for the API at `base_url` (e.g. `https://host/api/v2`).
    pub fn builder(base_url: impl Into<String>) -> HttpSyncApiAdapterBuilder {
        HttpSyncApiAdapterBuilder {
            base_url: base_url.into(),
            default_headers: Vec::new(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("offline-sync/", env!("CARGO_PKG_VERSION")).to_owned(),
            auth: None,
            auth_hook_timeout: Duration::from_secs(30),
            shape: RequestShape::rest(),
            entity_shapes: Vec::new(),
            pulls: Vec::new(),
            idempotency_header: Some(IDEMPOTENCY_KEY.to_owned()),
            trust: Trust::default(),
            root_certificates: Vec::new(),
            max_response_bytes: 8 * 1024 * 1024,
            include_response_body: false,
        }
    }
}

impl HttpSyncApiAdapterBuilder {
    /// Adds a header sent with every request. An `Accept` given here
    /// replaces the adapter's own `application/json`.
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.default_headers.push((name.into(), value.into()));
        self
    }

    /// The time limit for a whole request, response body included.
    /// Default 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The time limit for opening a connection. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` header. Default `offline-sync/<version>`.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Supplies per-request credentials and refreshes them on 401. Default:
    /// none.
    pub fn auth(mut self, hook: impl AuthHook + 'static) -> Self {
        self.auth = Some(Arc::new(hook));
        self
    }

    /// The time limit for each call of the auth hook ([`AuthHook::headers`]
    /// before every request, [`AuthHook::refresh`] after a 401). A call
    /// that takes longer fails the request with a transient [`ApiError`],
    /// retried later like a timeout; the hook's future is dropped. Default
    /// 30 s.
    pub fn auth_hook_timeout(mut self, timeout: Duration) -> Self {
        self.auth_hook_timeout = timeout;
        self
    }

    /// Replaces the routes of every request of every entity without a
    /// shape of its own. Default [`crate::default_path`]. A shorthand for a
    /// [`RequestShape::route_fn`] that ignores the request kind.
    pub fn path_builder(
        mut self,
        builder: impl Fn(&EntityName, Option<&RecordId>) -> String + Send + Sync + 'static,
    ) -> Self {
        self.shape = self.shape.route_fn(move |_, entity, id| builder(entity, id));
        self
    }

    /// How every entity without a shape of its own is spoken to (methods,
    /// routes, headers per request, the answers meaning "absent" and
    /// "already exists", body, answer, id field). Default
    /// [`RequestShape::rest`]; the presets name the servers they fit. It
    /// replaces the default shape whole, routes included: call
    /// [`Self::path_builder`] after it, not before.
    pub fn shape(mut self, shape: RequestShape) -> Self {
        self.shape = shape;
        self
    }

    /// How one entity is spoken to, overriding [`Self::shape`] (and
    /// [`Self::path_builder`]) for it; given twice, the last one counts.
    pub fn entity_shape(mut self, entity: impl Into<String>, shape: RequestShape) -> Self {
        self.entity_shapes.push((entity.into(), shape));
        self
    }

    /// How the server's changes to `entity` are pulled (a change feed, a
    /// filtered list or a snapshot: see [`PullStrategy`]); given twice, the
    /// last one counts. [`HttpSyncApiAdapter::pulled_entities`] lists the
    /// entities declared. Default: none (a pull of an entity without one
    /// is a permanent error).
    pub fn pull(mut self, entity: impl Into<String>, strategy: impl Into<PullStrategy>) -> Self {
        self.pulls.push((entity.into(), strategy.into()));
        self
    }

    /// The header carrying each change's operation id, or `None` to send
    /// none. Default `Idempotency-Key`.
    pub fn idempotency_header(mut self, name: Option<&str>) -> Self {
        self.idempotency_header = name.map(str::to_owned);
        self
    }

    /// Trusts an extra root certificate (PEM or DER), such as your own CA.
    pub fn add_root_certificate(mut self, certificate: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(certificate.into());
        self
    }

    /// Whether to trust the Mozilla root program (webpki-roots). Default
    /// `true`; with `false`, only the roots added here are trusted.
    pub fn use_webpki_roots(mut self, enabled: bool) -> Self {
        self.trust.webpki_roots = enabled;
        self
    }

    /// The largest response body read. Default 8 MiB.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Whether error messages carry the first 200 bytes of the server's
    /// answer (control characters blanked). Default `false`.
    ///
    /// Servers often echo the payload or other personal data in their
    /// error answers, and apps ship `last_error` to logs and telemetry, so
    /// by default an error names only its kind, the HTTP status, the method
    /// and the path, with the record id replaced by `{id}` (`permanent
    /// error on PUT /tasks/{id} (HTTP 422): HTTP 422 Unprocessable
    /// Entity`). Turn this on while developing against a server, or when
    /// its answers are known to hold nothing personal.
    pub fn include_response_body_in_errors(mut self, enabled: bool) -> Self {
        self.include_response_body = enabled;
        self
    }

    /// Checks the settings and builds the adapter.
    ///
    /// # Errors
    /// [`NetError`] naming the setting that cannot work.
    pub fn build(mut self) -> Result<HttpSyncApiAdapter, NetError> {
        let base = BaseUrl::parse(&self.base_url)?;
        let mut default_headers = HeaderMap::new();
        let header = |name: &str, value: &str| -> Result<(HeaderName, HeaderValue), NetError> {
            let invalid = |reason: &str| NetError::InvalidHeader {
                name: name.to_owned(),
                reason: reason.to_owned(),
            };
            let header_name = HeaderName::try_from(name).map_err(|_| invalid("not a valid header name"))?;
            let mut header_value = HeaderValue::try_from(value)
                .map_err(|_| invalid("the value has characters a header cannot carry"))?;
            header_value.set_sensitive(true);
            Ok((header_name, header_value))
        };
        let (name, value) = header(USER_AGENT.as_str(), &self.user_agent)?;
        default_headers.insert(name, value);
        for (name, value) in &self.default_headers {
            let (name, value) = header(name, value)?;
            default_headers.append(name, value);
        }
        let idempotency_header = self
            .idempotency_header
            .as_deref()
            .map(|name| {
                HeaderName::try_from(name).map_err(|_| NetError::InvalidHeader {
                    name: name.to_owned(),
                    reason: "not a valid header name".into(),
                })
            })
            .transpose()?;
        for certificate in &self.root_certificates {
            self.trust
                .extra_roots
                .extend(client::parse_certificates(certificate)?);
        }
        let bad_shape = |entity: Option<&str>, reason: String| NetError::InvalidShape {
            entity: entity.map(str::to_owned),
            reason,
        };
        self.shape.check().map_err(|reason| bad_shape(None, reason))?;
        let mut entity_shapes = std::collections::HashMap::new();
        for (entity, shape) in self.entity_shapes {
            EntityName::new(entity.as_str()).map_err(|error| bad_shape(Some(&entity), error.to_string()))?;
            shape.check().map_err(|reason| bad_shape(Some(&entity), reason))?;
            entity_shapes.insert(entity, Arc::new(shape));
        }
        let pulls = crate::pull::checked(self.pulls)?;
        let client = client::build(&self.trust, self.connect_timeout)?;
        Ok(HttpSyncApiAdapter {
            client,
            config: Arc::new(Config {
                base,
                default_headers,
                request_timeout: self.request_timeout,
                auth: self.auth,
                auth_hook_timeout: self.auth_hook_timeout,
                shape: Arc::new(self.shape),
                entity_shapes,
                pulls,
                idempotency_header,
                max_response_bytes: self.max_response_bytes,
                include_response_body: self.include_response_body,
            }),
        })
    }
}

impl HttpSyncApiAdapter {
    /// The shape `entity` is spoken to with.
    pub(crate) fn shape_of(&self, entity: &EntityName) -> &RequestShape {
        self.config
            .entity_shapes
            .get(entity.as_str())
            .unwrap_or(&self.config.shape)
    }

    /// Sends a create or an update of `request.data`, conditional on
    /// `request.version` and patching from `request.base` when the shape
    /// says so.
    async fn send_write(
        &self,
        kind: RequestKind,
        request: WriteRequest<'_>,
    ) -> Result<WriteAnswer, ApiError> {
        let WriteRequest {
            entity,
            id,
            data,
            base,
            version,
            operation_id,
            ..
        } = request;
        let shape = self.shape_of(entity);
        let mut target = self.target(shape, kind, entity, Some(id))?;
        // A record under a temporary id, for the server to name.
        let temporary = kind == RequestKind::Create && id.is_temporary();
        let created;
        let document = if temporary {
            if let Some(error) = assigned::id_route_refusal(shape, &target.line) {
                return Err(error);
            }
            created = assigned::created_document(shape, data, id);
            &created
        } else {
            data
        };
        let (body, patch) = shape.write_body(kind, document, base);
        // The app's own Content-Type stands.
        if patch && !self.config.default_headers.contains_key(CONTENT_TYPE) {
            target.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/merge-patch+json"),
            );
        }
        if kind == RequestKind::Update {
            Self::condition(&mut target, version);
        }
        let body = serde_json::to_vec(&body).map_err(|error| {
            ApiError::new(
                ErrorKind::Permanent,
                format!("the payload cannot be serialised: {error}"),
            )
            .with_request(target.line.as_str())
        })?;
        let response = self
            .send(&target, Some(Bytes::from(body)), Some(operation_id))
            .await?;
        if !response.status.is_success() || self.declared_absent(shape, kind, &response) {
            return Err(self.refusal(shape, kind, &response, &target.line));
        }
        // A JSON API does not answer a write with a web page; a captive
        // portal or a proxy's login page on a plain-HTTP link does, and
        // counting that as applied would lose the change.
        if let Some(error) = captive_portal(&response, &target.line, true) {
            return Err(error);
        }
        if temporary {
            return Ok(assigned::created_answer(shape, &response, data, id));
        }
        Self::write_answer(shape, kind, &response, data, id, &target.line)
    }

    /// Whether a success answer is one the shape declares "absent" (a
    /// create never is).
    fn declared_absent(&self, shape: &RequestShape, kind: RequestKind, response: &Response) -> bool {
        kind != RequestKind::Create
            && shape
                .spec(kind)
                .absent
                .iter()
                .any(|answer| answer.matches(response.status.as_u16(), &response.body))
    }

    /// Makes the request conditional on the server's version of the
    /// record (`If-Match`), when one is known. Versions come from the
    /// server's own headers or, for a version field, are quoted text; one
    /// a header cannot carry is not sent (the write is then unconditional).
    fn condition(target: &mut Target, version: Option<&str>) {
        if let Some(value) = version.and_then(|version| HeaderValue::try_from(version).ok()) {
            target.headers.insert(IF_MATCH, value);
        }
    }

    async fn send_delete(
        &self,
        entity: &EntityName,
        id: &RecordId,
        version: Option<&str>,
        operation_id: &OperationId,
    ) -> Result<(), ApiError> {
        let shape = self.shape_of(entity);
        let mut target = self.target(shape, RequestKind::Delete, entity, Some(id))?;
        Self::condition(&mut target, version);
        let response = self.send(&target, None, Some(operation_id)).await?;
        if !response.status.is_success() || self.declared_absent(shape, RequestKind::Delete, &response) {
            return Err(self.refusal(shape, RequestKind::Delete, &response, &target.line));
        }
        // An array-shaped API answers a delete that matched no row with an
        // empty array.
        if shape.answer == AnswerShape::FirstOfArray
            && matches!(serde_json::from_slice::<serde_json::Value>(&response.body), Ok(serde_json::Value::Array(rows)) if rows.is_empty())
        {
            return Err(no_row_matched(&response, &target.line));
        }
        Ok(())
    }
}

#[async_trait]
impl SyncApiAdapter for HttpSyncApiAdapter {
    async fn create(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        let request = WriteRequest {
            kind: WriteKind::Create,
            entity,
            id,
            data,
            base: None,
            version: None,
            operation_id,
        };
        self.send_write(RequestKind::Create, request)
            .await
            .map(|answer| answer.record)
    }

    async fn update(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        let request = WriteRequest {
            kind: WriteKind::Update,
            entity,
            id,
            data,
            base: None,
            version: None,
            operation_id,
        };
        self.send_write(RequestKind::Update, request)
            .await
            .map(|answer| answer.record)
    }

    async fn delete(
        &self,
        entity: &EntityName,
        id: &RecordId,
        operation_id: &OperationId,
    ) -> Result<(), ApiError> {
        self.send_delete(entity, id, None, operation_id).await
    }

    async fn fetch_remote(&self, entity: &EntityName, id: &RecordId) -> Result<Option<JsonObject>, ApiError> {
        Ok(self.fetch_copy(entity, id).await?.map(|copy| copy.data))
    }

    /// Updates and deletes carry `If-Match` with the base's version when
    /// one is known (a 412 answer is a `Conflict` error, not applied), and
    /// a merge-patch shape sends only what changed since the base.
    async fn write(&self, request: WriteRequest<'_>) -> Result<WriteAnswer, ApiError> {
        match request.kind {
            WriteKind::Create => {
                let create = WriteRequest {
                    base: None,
                    version: None,
                    ..request
                };
                self.send_write(RequestKind::Create, create).await
            }
            WriteKind::Update => self.send_write(RequestKind::Update, request).await,
            _ => self
                .send_delete(request.entity, request.id, request.version, request.operation_id)
                .await
                .map(|()| WriteAnswer::default()),
        }
    }

    /// Looks the record up by the shape's local-id field
    /// ([`RequestShape::local_id_field`], through
    /// [`RequestShape::lookup_route`]): `Unsupported` without one. Several
    /// records found is a permanent error, possibly applied (the server
    /// created the record more than once).
    async fn find_created(
        &self,
        entity: &EntityName,
        temporary: &RecordId,
        operation_id: &OperationId,
    ) -> Result<CreatedLookup, ApiError> {
        // A read: no idempotency key.
        let _ = operation_id;
        self.lookup_created(entity, temporary).await
    }

    async fn fetch_copy(&self, entity: &EntityName, id: &RecordId) -> Result<Option<ServerCopy>, ApiError> {
        let shape = self.shape_of(entity);
        let target = self.target(shape, RequestKind::Fetch, entity, Some(id))?;
        let response = self.send(&target, None, None).await?;
        if !response.status.is_success() || self.declared_absent(shape, RequestKind::Fetch, &response) {
            let error = self.refusal(shape, RequestKind::Fetch, &response, &target.line);
            return match error.kind() {
                ErrorKind::NotFound => Ok(None),
                _ => Err(error),
            };
        }
        self.fetch_answer(shape, &response, &target.line)
    }
}
