//! Answers before they become responses: statuses, JSON bodies, the
//! headers beyond `Content-Type`, and the faults that break them.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, ETAG, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::body::ReplyBody;
use crate::conditional::etag;
use crate::fault::Fault;

/// [`crate::IDEMPOTENT_REPLAYED`] in the lower-case form `HeaderName` requires.
const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The service's error for [`Fault::LoseResponse`]: hyper closes the
/// connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("injected fault: the response is lost")]
pub(crate) struct LostResponse;

/// An answer before it becomes a response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    /// Headers beyond `Content-Type`.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) replayed: bool,
}

impl Reply {
    pub(crate) fn json(status: StatusCode, value: &Value) -> Self {
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

    /// An answer with a JSON body already written out.
    pub(crate) fn json_text(status: StatusCode, body: Vec<u8>) -> Self {
        Self {
            status,
            body: Bytes::from(body),
            headers: Vec::new(),
            replayed: false,
        }
    }

    /// An answer without a body (and so without `Content-Type`).
    pub(crate) fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: Bytes::new(),
            headers: Vec::new(),
            replayed: false,
        }
    }

    pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self::json(status, &json!({ "error": message.into() }))
    }

    /// An error shaped as PostgREST's: `code` is a PostgreSQL SQLSTATE or
    /// a `PGRST` code.
    pub(crate) fn postgrest_error(
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
    pub(crate) fn with_etag(mut self, version: u64) -> Self {
        // Digits and quotes: always a valid header value.
        if let Ok(value) = HeaderValue::try_from(etag(version)) {
            self.headers.push((ETAG, value));
        }
        self
    }

    pub(crate) fn precondition_failed(collection: &str, id: &str, current: Option<u64>) -> Self {
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

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::error(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(collection: &str, id: &str) -> Self {
        Self::error(
            StatusCode::NOT_FOUND,
            format!("no record {id:?} in {collection:?}"),
        )
    }

    pub(crate) fn method_not_allowed(method: &Method, allow: &'static str) -> Self {
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
    pub(crate) fn refusal(fault: &Fault) -> Option<Self> {
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
    pub(crate) fn into_response(self, fault: Option<&Fault>) -> Result<Response<ReplyBody>, LostResponse> {
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

/// A PostgREST answer about at most one row: with `represent`, `status`
/// and the rows as a JSON array; otherwise `minimal` and no body.
pub(crate) fn rows(
    status: StatusCode,
    minimal: StatusCode,
    represent: bool,
    row: Option<Map<String, Value>>,
) -> Reply {
    if represent {
        Reply::json(
            status,
            &Value::Array(row.map(Value::Object).into_iter().collect()),
        )
    } else {
        Reply::empty(minimal)
    }
}
