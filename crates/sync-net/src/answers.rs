//! Reading the server's answers: errors for statuses, the record in an
//! answer, and the captive portal's page that is no answer at all.

use std::time::SystemTime;

use http::HeaderMap;
use http::header::{CONTENT_TYPE, ETAG, RETRY_AFTER};
use serde_json::Value;
use sync_core::{ApiError, ErrorKind, JsonObject, RecordId, ServerCopy, WriteAnswer};

use crate::adapter::HttpSyncApiAdapter;
use crate::error::{classify_status, excerpt, parse_retry_after};
use crate::exchange::Response;
use crate::shape::{AnswerMatch, RequestKind, RequestShape};

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
pub(crate) fn captive_portal(response: &Response, line: &str, possibly_applied: bool) -> Option<ApiError> {
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

/// An array-shaped API's empty array to an update or delete: no record
/// matched, so the record is absent (nothing was applied).
pub(crate) fn no_row_matched(response: &Response, line: &str) -> ApiError {
    let status = response.status.as_u16();
    ApiError::new(
        ErrorKind::NotFound,
        format!("HTTP {status} with an empty array: no record matched"),
    )
    .with_status(status)
    .with_request(line)
    .with_possibly_applied(false)
}

impl HttpSyncApiAdapter {
    /// Appends the start of a response body to an error message, when the
    /// app opted in ([`crate::HttpSyncApiAdapterBuilder::include_response_body_in_errors`]).
    pub(crate) fn append_body(&self, message: &mut String, body: &[u8]) {
        if self.config.include_response_body && !body.iter().all(u8::is_ascii_whitespace) {
            message.push_str(": ");
            message.push_str(&excerpt(body));
        }
    }

    /// The error for a non-success response: its status, and the start of
    /// its body only when the app opted in.
    pub(crate) fn status_error(&self, response: &Response, line: &str) -> ApiError {
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

    /// The error for a refused request of `kind`, read with the entity's
    /// shape: an answer it declares as "already exists" (creates) or
    /// "absent" (other requests) gets that kind; a 404 or 410 it does not
    /// declare proves nothing about the record (a wrong route answers it
    /// too), so it is permanent; anything else is classified by status.
    pub(crate) fn refusal(
        &self,
        shape: &RequestShape,
        kind: RequestKind,
        response: &Response,
        line: &str,
    ) -> ApiError {
        let status = response.status.as_u16();
        let spec = shape.spec(kind);
        let declared = |answers: &[AnswerMatch]| {
            answers
                .iter()
                .any(|answer| answer.matches(status, &response.body))
        };
        let reason = response.status.canonical_reason().unwrap_or("unknown status");
        let with_body = |mut message: String| {
            self.append_body(&mut message, &response.body);
            message
        };
        if status == 412 {
            // A conditional write refused: nothing was applied.
            return ApiError::new(
                ErrorKind::Conflict,
                with_body(format!(
                    "HTTP {status} {reason}: the record changed on the server since this device's copy"
                )),
            )
            .with_status(status)
            .with_request(line)
            .with_possibly_applied(false);
        }
        if kind == RequestKind::Create && declared(&spec.already_exists) {
            return ApiError::new(
                ErrorKind::AlreadyExists,
                with_body(format!(
                    "HTTP {status} {reason}: the server already holds a record with this id"
                )),
            )
            .with_status(status)
            .with_request(line)
            .with_possibly_applied(true);
        }
        if kind != RequestKind::Create && declared(&spec.absent) {
            return ApiError::new(
                ErrorKind::NotFound,
                with_body(format!("HTTP {status} {reason}: the server has no such record")),
            )
            .with_status(status)
            .with_request(line)
            .with_possibly_applied(false);
        }
        if matches!(status, 404 | 410) {
            let hint = if kind == RequestKind::Create {
                "the collection's route is missing: check the base URL and routes".to_owned()
            } else {
                format!(
                    "an answer the request shape does not declare as \"absent\" for a {kind}, so it \
                     proves nothing about the record (a wrong route answers it too): check the base \
                     URL, the routes and the shape's absent answers"
                )
            };
            return ApiError::new(
                ErrorKind::Permanent,
                with_body(format!("HTTP {status} {reason}: {hint}")),
            )
            .with_status(status)
            .with_request(line)
            .with_possibly_applied(false);
        }
        self.status_error(response, line)
    }

    /// The record in a success response to a write of `sent` for record
    /// `id`, to adopt as the local document: only when it is that record,
    /// where the shape says it is ([`RequestShape::adoptable`]).
    ///
    /// A 2xx status means the server accepted the change, whatever it
    /// answered with: many servers send `OK`, `Created`, `[]`, a JSON
    /// string, a status object or nothing at all. Treating such an answer
    /// as a failure would resend an applied change forever, so it counts as
    /// applied and the local document is kept as it is. The exception is an
    /// array-shaped API's empty array to an update or delete (PostgREST's
    /// `200 []` with `Prefer: return=representation`): no row matched, so
    /// the record is absent.
    ///
    /// A create of an ordinary id answered with a record under another id
    /// (a server that assigns ids itself) is a permanent error, applied
    /// (a create under a temporary id is read by
    /// [`crate::assigned::created_answer`] instead): adopting nothing
    /// and carrying on would send every later change to an id the server
    /// does not have, and re-create the record once more.
    pub(crate) fn write_answer(
        shape: &RequestShape,
        kind: RequestKind,
        response: &Response,
        sent: &JsonObject,
        id: &RecordId,
        line: &str,
    ) -> Result<WriteAnswer, ApiError> {
        let etag = response.headers.get(ETAG).and_then(|value| value.to_str().ok());
        let Ok(answer) = serde_json::from_slice::<Value>(&response.body) else {
            return Ok(WriteAnswer {
                record: None,
                version: shape.version_in(etag, None),
                assigned_id: None,
            });
        };
        match shape.record_in(answer, false) {
            Ok(Some(record)) if kind == RequestKind::Create && shape.names_another_record(&record, id) => {
                Err(another_id(response, line))
            }
            Ok(Some(record)) => Ok(WriteAnswer {
                version: shape.version_in(etag, Some(&record)),
                record: shape.adoptable(record, sent, id),
                assigned_id: None,
            }),
            Ok(None) if kind != RequestKind::Create => Err(no_row_matched(response, line)),
            Ok(None) | Err(_) => Ok(WriteAnswer {
                record: None,
                version: shape.version_in(etag, None),
                assigned_id: None,
            }),
        }
    }

    /// The record in a success response to a fetch, where the shape says
    /// it is; `None` when the answer says there is none (an empty array).
    ///
    /// Anything else (an empty body, text, an array where an object
    /// belongs) is a server or route that does not follow the shape, such
    /// as a web app's catch-all page answering 200 at the record's path.
    /// Sending the same `GET` again would get the same answer, so it is a
    /// permanent error (the item is parked with this message) rather than a
    /// transient one retried forever. Nothing was written, so it was not
    /// applied.
    pub(crate) fn fetch_answer(
        &self,
        shape: &RequestShape,
        response: &Response,
        line: &str,
    ) -> Result<Option<ServerCopy>, ApiError> {
        // A captive portal's page, not the API's answer: ask again later
        // rather than park the item (nothing was written).
        if let Some(error) = captive_portal(response, line, false) {
            return Err(error);
        }
        let etag = response.headers.get(ETAG).and_then(|value| value.to_str().ok());
        let found = match serde_json::from_slice::<Value>(&response.body) {
            Ok(answer) => match shape.record_in(answer, true) {
                Ok(record) => {
                    return Ok(record.map(|data| ServerCopy {
                        version: shape.version_in(etag, Some(&data)),
                        data,
                    }));
                }
                Err(found) => found,
            },
            _ if response.body.iter().all(u8::is_ascii_whitespace) => "an empty body".to_owned(),
            Err(_) => "a body that is not JSON".to_owned(),
        };
        let mut message = format!(
            "the server answered a fetch with {found}: it must answer with the record where the \
             request shape says it is (check the route, the base URL and the shape)"
        );
        self.append_body(&mut message, &response.body);
        Err(ApiError::new(ErrorKind::Permanent, message)
            .with_status(response.status.as_u16())
            .with_request(line)
            .with_possibly_applied(false))
    }
}

/// The error for a create the server stored under an id of its own. The ids
/// stay out of the message (record ids are personal data in many apps).
fn another_id(response: &Response, line: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Permanent,
        "the server answered this create with another id than the record's: it assigns ids itself, \
         and this record was saved with an id of its own. The record now exists on the server under \
         the server's id; retrying would create it again. For server-assigned ids, create such records \
         with the engine's create(entity, data): they get a temporary id, which the server's id \
         replaces when the create is applied; to survive lost answers, also set the shape's local-id \
         field (RequestShape::local_id_field). Otherwise make the server keep the id it is sent (give \
         records ids of your own, such as UUIDs), or configure the id field the server answers with \
         (RequestShape::id_field) if it is another field than the record's id",
    )
    .with_status(response.status.as_u16())
    .with_request(line)
    .with_possibly_applied(true)
}
