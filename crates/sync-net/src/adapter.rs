//! [`HttpSyncApiAdapter`]: the default [`SyncApiAdapter`], REST over hyper.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use sync_core::{ApiError, EntityName, ErrorKind, JsonObject, OperationId, RecordId, SyncApiAdapter};

use crate::client::{self, HttpClient, Trust};
use crate::error::{NetError, classify_status, classify_transport, excerpt, parse_retry_after};
use crate::url::{BaseUrl, default_path, encode_query_value, encode_segment};

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

struct Config {
    base: BaseUrl,
    default_headers: HeaderMap,
    request_timeout: Duration,
    auth: Option<Arc<dyn AuthHook>>,
    auth_hook_timeout: Duration,
    path_builder: Arc<PathBuilder>,
    default_routes: bool,
    idempotency_header: Option<HeaderName>,
    max_response_bytes: usize,
    include_response_body: bool,
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
/// Cloning is cheap and shares the connection pool.
#[derive(Clone)]
pub struct HttpSyncApiAdapter {
    client: HttpClient,
    config: Arc<Config>,
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
    path_builder: Option<Arc<PathBuilder>>,
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
            path_builder: None,
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

    /// Replaces the default routes. Default [`default_path`].
    pub fn path_builder(
        mut self,
        builder: impl Fn(&EntityName, Option<&RecordId>) -> String + Send + Sync + 'static,
    ) -> Self {
        self.path_builder = Some(Arc::new(builder));
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
        let client = client::build(&self.trust, self.connect_timeout)?;
        Ok(HttpSyncApiAdapter {
            client,
            config: Arc::new(Config {
                base,
                default_headers,
                request_timeout: self.request_timeout,
                auth: self.auth,
                auth_hook_timeout: self.auth_hook_timeout,
                default_routes: self.path_builder.is_none(),
                path_builder: self.path_builder.unwrap_or_else(|| Arc::new(default_path)),
                idempotency_header,
                max_response_bytes: self.max_response_bytes,
                include_response_body: self.include_response_body,
            }),
        })
    }
}

/// A request's method and path, and its line for errors and logs.
struct Target {
    method: Method,
    /// Relative to the base URL, query included.
    path: String,
    /// The method and the path without the query (it may carry secrets)
    /// and with the record id replaced by `{id}` (ids are personal data in
    /// many apps), such as `PUT /tasks/{id}`.
    line: String,
}

/// What stands for the record id in request lines.
const ID_PLACEHOLDER: &str = "{id}";

/// Ids this short are replaced only where they make up a whole path
/// segment: inside a longer segment they would match unrelated text (the
/// id `1` in `/v1`).
const MIN_ID_INSIDE_SEGMENT: usize = 4;

/// `path` without its query string.
fn without_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// `path` (from a path builder of the app's own) with `id` replaced by
/// [`ID_PLACEHOLDER`], as it stands, percent-encoded or raw: every path
/// segment equal to it, and for ids of [`MIN_ID_INSIDE_SEGMENT`] bytes or
/// more every occurrence (`/notes/{id}.json`). Replacing too much only
/// makes the line less precise; leaving the id would leak it.
fn redact_id(path: &str, id: &str) -> String {
    let forms = [encode_segment(id), encode_query_value(id), id.to_owned()];
    let mut redacted = path
        .split('/')
        .map(|segment| {
            if forms.iter().any(|form| form == segment) {
                ID_PLACEHOLDER
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    for form in &forms {
        if form.len() >= MIN_ID_INSIDE_SEGMENT {
            redacted = redacted.replace(form.as_str(), ID_PLACEHOLDER);
        }
    }
    redacted
}

/// Whether the answer is a web page: typed `text/html` and starting with
/// markup. Many frameworks type a plain `OK` as `text/html` too (Express's
/// `res.send`, Flask, Django, PHP): that is an acknowledgement, not a page.
fn is_html_page(headers: &HeaderMap, body: &[u8]) -> bool {
    let typed_html = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().to_ascii_lowercase().starts_with("text/html"));
    let markup = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body)
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|first| *first == b'<');
    typed_html && markup
}

/// The transient error for a 2xx answer that is a web page (see
/// [`is_html_page`]), `None` for any other answer.
fn captive_portal(response: &Response, line: &str, possibly_applied: bool) -> Option<ApiError> {
    if !is_html_page(&response.headers, &response.body) {
        return None;
    }
    let status = response.status.as_u16();
    Some(
        ApiError::new(
            ErrorKind::Transient,
            format!(
                "HTTP {status} with an HTML page: a captive portal or a proxy's login page? Not \
                 counted as an answer of the API; retried"
            ),
        )
        .with_status(status)
        .with_request(line)
        .with_possibly_applied(possibly_applied),
    )
}

/// A response that arrived in full.
struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl HttpSyncApiAdapter {
    /// Where a request for `entity` (and `id`) goes, and how errors name it.
    fn target(&self, method: Method, entity: &EntityName, id: Option<&RecordId>) -> Result<Target, ApiError> {
        if self.config.default_routes {
            // Many servers resolve `%2E%2E` as `..`: no encoding keeps these
            // inside their entity's path, so they are refused.
            let dot = |value: &str| value == "." || value == "..";
            if dot(entity.as_str()) || id.is_some_and(|id| dot(id.as_str())) {
                return Err(ApiError::new(
                    ErrorKind::Permanent,
                    "the entity name or id \".\" or \"..\" cannot be sent as a URL path segment: \
                     rename it, or configure a path builder that sends it in the query string",
                ));
            }
        }
        let path = (self.config.path_builder)(entity, id);
        let shown = match id {
            None => without_query(&path).to_owned(),
            // The default route ends with the id and holds it nowhere else.
            Some(_) if self.config.default_routes => {
                format!("{}/{ID_PLACEHOLDER}", default_path(entity, None))
            }
            Some(id) => redact_id(without_query(&path), id.as_str()),
        };
        Ok(Target {
            line: format!("{method} {shown}"),
            method,
            path,
        })
    }

    /// Sends one request, retrying once after a 401 if an auth hook can
    /// refresh; returns the response whatever its status.
    async fn send(
        &self,
        target: &Target,
        body: Option<Bytes>,
        operation_id: Option<&OperationId>,
    ) -> Result<Response, ApiError> {
        let response = self.send_once(target, body.clone(), operation_id).await?;
        if response.status != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(auth) = &self.config.auth else {
            return Ok(response);
        };
        self.bounded_hook("refresh()", &target.line, auth.refresh())
            .await?;
        self.send_once(target, body, operation_id).await
    }

    async fn send_once(
        &self,
        target: &Target,
        body: Option<Bytes>,
        operation_id: Option<&OperationId>,
    ) -> Result<Response, ApiError> {
        let Target { method, path, line } = target;
        let uri = self
            .config
            .base
            .join(path)
            .map_err(|reason| ApiError::new(ErrorKind::Permanent, reason).with_request(line.as_str()))?;
        let mut request = Request::builder().method(method.clone()).uri(uri);
        if let Some(headers) = request.headers_mut() {
            headers.extend(self.config.default_headers.clone());
            // The app's own `Accept` (a vendor or versioned media type)
            // stands; JSON otherwise.
            if !headers.contains_key(ACCEPT) {
                headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            }
            if body.is_some() {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            if let (Some(name), Some(id)) = (&self.config.idempotency_header, operation_id)
                && let Ok(value) = HeaderValue::try_from(id.as_str())
            {
                headers.insert(name.clone(), value);
            }
            if let Some(auth) = &self.config.auth {
                let mut extra = self.bounded_hook("headers()", line, auth.headers()).await?;
                for value in extra.values_mut() {
                    value.set_sensitive(true);
                }
                headers.extend(extra);
            }
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|error| {
                ApiError::new(ErrorKind::Permanent, format!("cannot build the request: {error}"))
                    .with_request(line.as_str())
            })?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| classify_transport(&error, line))?;
            let (parts, body) = response.into_parts();
            let collected = Limited::new(body, self.config.max_response_bytes).collect().await.map_err(|error| {
                let too_large = error.downcast_ref::<http_body_util::LengthLimitError>().is_some();
                let message = if too_large {
                    format!(
                        "the response is larger than {} bytes: raise max_response_bytes or fix the server",
                        self.config.max_response_bytes
                    )
                } else {
                    format!("the response body broke off: {error}")
                };
                ApiError::new(ErrorKind::Transient, message).with_status(parts.status.as_u16()).with_request(line.as_str())
            })?;
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body: collected.to_bytes(),
            })
        };
        match tokio::time::timeout(self.config.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::new(
                ErrorKind::Transient,
                format!(
                    "no complete response within {} ms; the server may have applied the request",
                    self.config.request_timeout.as_millis()
                ),
            )
            .with_request(line.as_str())),
        }
    }

    /// Runs a call of the auth hook within its time limit.
    async fn bounded_hook<T>(
        &self,
        call: &str,
        line: &str,
        hook: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let limit = self.config.auth_hook_timeout;
        tokio::time::timeout(limit, hook).await.unwrap_or_else(|_| {
            Err(ApiError::new(
                ErrorKind::Transient,
                format!(
                    "the auth hook's {call} did not return within {} ms, so the request was not \
                     sent with its credentials and nothing was applied (raise auth_hook_timeout if \
                     getting credentials takes longer)",
                    limit.as_millis()
                ),
            )
            .with_request(line)
            .with_possibly_applied(false))
        })
    }

    /// Appends the start of a response body to an error message, when the
    /// app opted in ([`HttpSyncApiAdapterBuilder::include_response_body_in_errors`]).
    fn append_body(&self, message: &mut String, body: &[u8]) {
        if self.config.include_response_body && !body.iter().all(u8::is_ascii_whitespace) {
            message.push_str(": ");
            message.push_str(&excerpt(body));
        }
    }

    /// The error for a non-success response: its status, and the start of
    /// its body only when the app opted in.
    fn status_error(&self, response: &Response, line: &str) -> ApiError {
        let status = response.status.as_u16();
        let (kind, possibly_applied) = classify_status(status).unwrap_or((ErrorKind::Permanent, false));
        let reason = response.status.canonical_reason().unwrap_or("unknown status");
        let mut message = format!("HTTP {status} {reason}");
        self.append_body(&mut message, &response.body);
        let mut error = ApiError::new(kind, message)
            .with_status(status)
            .with_request(line)
            .with_possibly_applied(possibly_applied);
        if kind == ErrorKind::Transient
            && let Some(delay) = response
                .headers
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now()))
        {
            error = error.with_retry_after(delay);
        }
        error
    }

    /// The server's data from a success response to a write: its JSON
    /// object, or `None` for any other body.
    ///
    /// A 2xx status means the server accepted the change, whatever it
    /// answered with: many servers send `OK`, `Created`, `[]`, a JSON
    /// string or nothing at all. Treating such an answer as a failure would
    /// resend an applied change forever, so it counts as applied and the
    /// local document is kept as it is.
    fn write_answer(response: &Response) -> Option<JsonObject> {
        match serde_json::from_slice::<serde_json::Value>(&response.body) {
            Ok(serde_json::Value::Object(object)) => Some(object),
            _ => None,
        }
    }

    /// The record from a success response to a fetch: it must be a JSON
    /// object.
    ///
    /// Anything else (an empty body, text, an array) is a server or route
    /// that does not follow the contract, such as a web app's catch-all page
    /// answering 200 at the record's path. Sending the same `GET` again
    /// would get the same answer, so it is a permanent error (the item is
    /// parked with this message) rather than a transient one retried
    /// forever. Nothing was written, so it was not applied.
    fn fetch_answer(&self, response: &Response, line: &str) -> Result<JsonObject, ApiError> {
        // A captive portal's page, not the API's answer: ask again later
        // rather than park the item (nothing was written).
        if let Some(error) = captive_portal(response, line, false) {
            return Err(error);
        }
        let found = match serde_json::from_slice::<serde_json::Value>(&response.body) {
            Ok(serde_json::Value::Object(object)) => return Ok(object),
            _ if response.body.iter().all(u8::is_ascii_whitespace) => "an empty body".to_owned(),
            Ok(other) => format!("JSON that is {}", sync_core::model::json_type_name(&other)),
            Err(_) => "a body that is not JSON".to_owned(),
        };
        let mut message = format!(
            "the server answered a fetch with {found}: it must answer with the record as a JSON \
             object (check the route and the base URL)"
        );
        self.append_body(&mut message, &response.body);
        Err(ApiError::new(ErrorKind::Permanent, message)
            .with_status(response.status.as_u16())
            .with_request(line)
            .with_possibly_applied(false))
    }

    async fn write(
        &self,
        target: &Target,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        let body = serde_json::to_vec(data).map_err(|error| {
            ApiError::new(
                ErrorKind::Permanent,
                format!("the payload cannot be serialised: {error}"),
            )
            .with_request(target.line.as_str())
        })?;
        let response = self
            .send(target, Some(Bytes::from(body)), Some(operation_id))
            .await?;
        if !response.status.is_success() {
            return Err(self.status_error(&response, &target.line));
        }
        // A JSON API does not answer a write with a web page; a captive
        // portal or a proxy's login page on a plain-HTTP link does, and
        // counting that as applied would lose the change.
        if let Some(error) = captive_portal(&response, &target.line, true) {
            return Err(error);
        }
        Ok(Self::write_answer(&response))
    }
}

#[async_trait]
impl SyncApiAdapter for HttpSyncApiAdapter {
    async fn create(
        &self,
        entity: &EntityName,
        _id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        let target = self.target(Method::POST, entity, None)?;
        self.write(&target, data, operation_id).await.map_err(|error| {
            // A missing collection route is a configuration problem, not a
            // missing record.
            if error.kind() == ErrorKind::NotFound {
                ApiError::new(
                    ErrorKind::Permanent,
                    format!("{}: check the base URL and routes", error.message()),
                )
                .with_status(error.status().unwrap_or(404))
                .with_request(error.request().unwrap_or_default().to_owned())
            } else {
                error
            }
        })
    }

    async fn update(
        &self,
        entity: &EntityName,
        id: &RecordId,
        data: &JsonObject,
        operation_id: &OperationId,
    ) -> Result<Option<JsonObject>, ApiError> {
        let target = self.target(Method::PUT, entity, Some(id))?;
        self.write(&target, data, operation_id).await
    }

    async fn delete(
        &self,
        entity: &EntityName,
        id: &RecordId,
        operation_id: &OperationId,
    ) -> Result<(), ApiError> {
        let target = self.target(Method::DELETE, entity, Some(id))?;
        let response = self.send(&target, None, Some(operation_id)).await?;
        // Gone already is what was asked.
        if response.status.is_success() || matches!(response.status.as_u16(), 404 | 410) {
            return Ok(());
        }
        Err(self.status_error(&response, &target.line))
    }

    async fn fetch_remote(&self, entity: &EntityName, id: &RecordId) -> Result<Option<JsonObject>, ApiError> {
        let target = self.target(Method::GET, entity, Some(id))?;
        let response = self.send(&target, None, None).await?;
        if matches!(response.status.as_u16(), 404 | 410) {
            return Ok(None);
        }
        if !response.status.is_success() {
            return Err(self.status_error(&response, &target.line));
        }
        self.fetch_answer(&response, &target.line).map(Some)
    }
}
