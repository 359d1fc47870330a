//! The headers and the body of a request to a collection, read before the
//! lock is taken.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::IDEMPOTENCY_KEY;
use crate::config::Dialect;
use crate::reply::Reply;

/// PostgREST's preferences header (RFC 7240), read for
/// `return=representation`.
const PREFER: HeaderName = HeaderName::from_static("prefer");

/// The media types a `PATCH` is accepted in (RFC 5789's `Accept-Patch`).
const ACCEPT_PATCH: HeaderName = HeaderName::from_static("accept-patch");

/// The largest request body accepted, so one request cannot exhaust memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The idempotency key, if sent; a present but unusable one is refused
/// rather than ignored, since ignoring it would give up the protection the
/// client asked for.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Reply> {
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

pub(super) async fn read_body(body: Incoming) -> Result<Bytes, Reply> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body exceeds {MAX_BODY_BYTES} bytes"),
        )),
        Err(_) => Err(Reply::bad_request("the request body broke off")),
    }
}

/// Whether `Prefer` asks for `return=representation` (RFC 7240: a list of
/// preferences, each `token[=value]` with optional `;` parameters).
pub(super) fn wants_representation(headers: &HeaderMap) -> bool {
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
pub(super) fn check_patch_type(dialect: Dialect, headers: &HeaderMap) -> Result<(), Reply> {
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
