//! Sending one request: its target (method, route, headers, the line that
//! names it in errors), the exchange within the time limits, and the retry
//! after a 401.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use sync_core::{ApiError, EntityName, ErrorKind, OperationId, RecordId};

use crate::adapter::HttpSyncApiAdapter;
use crate::error::classify_transport;
use crate::shape::{RequestKind, RequestShape, Route};
use crate::url::{encode_query_value, encode_segment};

/// A request's method and path, and its line for errors and logs.
pub(crate) struct Target {
    pub(crate) method: Method,
    /// Relative to the base URL, query included.
    pub(crate) path: String,
    /// The method and the path without the query (it may carry secrets)
    /// and with the record id replaced by `{id}` (ids are personal data in
    /// many apps), such as `PUT /tasks/{id}`.
    pub(crate) line: String,
    /// Headers for this kind of request only.
    pub(crate) headers: HeaderMap,
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

/// The headers the shape declares for one kind of request.
pub(crate) fn kind_headers(shape: &RequestShape, kind: RequestKind) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &shape.spec(kind).headers {
        // Checked by the builder.
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

/// A response that arrived in full.
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl HttpSyncApiAdapter {
    /// Where a request of `kind` for `entity` (and `id`) goes, with its
    /// headers, and how errors name it.
    pub(crate) fn target(
        &self,
        shape: &RequestShape,
        kind: RequestKind,
        entity: &EntityName,
        id: Option<&RecordId>,
    ) -> Result<Target, ApiError> {
        let spec = shape.spec(kind);
        // A create's id goes into a template that names it (`PUT
        // /{entity}/{id}` creates); a route function gets `None` for a
        // create, as documented.
        let id = match &spec.route {
            Route::Template(template) if template.contains("{id}") => id,
            Route::Custom(_) if kind != RequestKind::Create => id,
            _ => None,
        };
        if matches!(spec.route, Route::Template(_)) {
            // Many servers resolve `%2E%2E` as `..`: no encoding keeps these
            // inside their entity's path, so they are refused.
            let dot = |value: &str| value == "." || value == "..";
            if dot(entity.as_str()) || id.is_some_and(|id| dot(id.as_str())) {
                return Err(ApiError::new(
                    ErrorKind::Permanent,
                    "the entity name or id \".\" or \"..\" cannot be sent as a URL path segment: \
                     rename it, or configure a route that sends it in the query string",
                ));
            }
        }
        let rendered = spec.route.render(kind, entity, id);
        let shown = match (rendered.shown, id) {
            (Some(shown), _) => without_query(&shown).to_owned(),
            (None, None) => without_query(&rendered.path).to_owned(),
            (None, Some(id)) => redact_id(without_query(&rendered.path), id.as_str()),
        };
        let method = spec.method.to_http();
        Ok(Target {
            line: format!("{method} {shown}"),
            method,
            path: rendered.path,
            headers: kind_headers(shape, kind),
        })
    }

    /// Sends one request, retrying once after a 401 if an auth hook can
    /// refresh; returns the response whatever its status.
    pub(crate) async fn send(
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
        let Target {
            method,
            path,
            line,
            headers: extra_headers,
        } = target;
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
            // The app's own Content-Type (a vendor media type) stands too.
            if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            // This kind of request's own headers, such as `Prefer` on writes.
            for (name, value) in extra_headers {
                headers.insert(name.clone(), value.clone());
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
}
