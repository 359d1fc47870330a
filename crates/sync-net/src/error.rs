//! Configuration errors, and the classification of failed requests into
//! the kinds the engine branches on.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use sync_core::{ApiError, ErrorKind};

/// A setting that cannot work; reported by `build()`.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The base URL is not an absolute `http(s)` URL.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value is invalid.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request shape cannot work.
    #[error("invalid request shape{}: {reason}", entity.as_ref().map(|name| format!(" for entity {name:?}")).unwrap_or_default())]
    InvalidShape {
        /// The entity it was given for; `None` for the default shape.
        entity: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// A root certificate could not be parsed.
    #[error("invalid root certificate: {0}: pass a PEM or DER encoded X.509 certificate")]
    InvalidCertificate(String),
    /// TLS could not be set up.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// A connectivity option is invalid, or none was configured.
    #[error("invalid connectivity check option: {0}")]
    InvalidCheckOption(String),
}

/// The kind of a response status, and whether the server may have applied
/// the request anyway; `None` for success.
pub(crate) fn classify_status(status: u16) -> Option<(ErrorKind, bool)> {
    match status {
        200..=299 => None,
        // The server refused to process it: nothing was applied.
        429 | 408 | 425 => Some((ErrorKind::Transient, false)),
        // A gateway or the server failed mid-way: it may have applied it.
        500 | 502 | 503 | 504 => Some((ErrorKind::Transient, true)),
        409 | 412 => Some((ErrorKind::Conflict, true)),
        404 | 410 => Some((ErrorKind::NotFound, false)),
        _ => Some((ErrorKind::Permanent, false)),
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A short, printable excerpt of a response body for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > MAX {
        clean.push('…');
    }
    clean
}

/// Whether `error` or any of its sources is a TLS failure.
#[cfg(not(feature = "rustls"))]
fn is_tls(_error: &(dyn StdError + 'static)) -> bool {
    false
}

/// Whether `error` or any of its sources is a TLS failure.
///
/// An `io::Error` wrapping another error reports that error's *source* as
/// its own, skipping the wrapped error itself (and hyper-rustls wraps the
/// handshake's `io::Error`, which wraps the `rustls::Error`, in one more),
/// so wrapped errors are followed through `get_ref` first.
#[cfg(feature = "rustls")]
fn is_tls(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<rustls::Error>() {
            return true;
        }
        current = match error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => error.source(),
        };
    }
    false
}

/// Classifies a transport failure (no response).
pub(crate) fn classify_transport(error: &hyper_util::client::legacy::Error, request: &str) -> ApiError {
    // Only a failure while connecting is a handshake failure: a TLS error
    // on an established connection may come after the request went out.
    if error.is_connect() && is_tls(error) {
        // Nothing was sent: the handshake failed. A captive portal looks
        // like this too, so it is retried like being offline, not parked.
        return ApiError::new(
            ErrorKind::Offline,
            format!(
                "TLS handshake failed ({}): the server's certificate is not trusted; add its root \
                 certificate to the adapter if it is your own server",
                source_chain(error)
            ),
        )
        .with_request(request);
    }
    if error.is_connect() {
        return ApiError::new(
            ErrorKind::Offline,
            format!(
                "could not connect ({}): the server is unreachable",
                source_chain(error)
            ),
        )
        .with_request(request);
    }
    ApiError::new(
        ErrorKind::Transient,
        format!(
            "the connection failed mid-request ({}); it may have been applied",
            source_chain(error)
        ),
    )
    .with_request(request)
}

/// The messages of an error and its sources, joined.
pub(crate) fn source_chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error.source();
    while let Some(error) = current {
        let text = error.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(classify_status(200), None);
        assert_eq!(classify_status(204), None);
        for status in [408, 425, 429] {
            assert_eq!(
                classify_status(status),
                Some((ErrorKind::Transient, false)),
                "{status}"
            );
        }
        for status in [500, 502, 503, 504] {
            assert_eq!(
                classify_status(status),
                Some((ErrorKind::Transient, true)),
                "{status}"
            );
        }
        assert_eq!(classify_status(409), Some((ErrorKind::Conflict, true)));
        assert_eq!(classify_status(412), Some((ErrorKind::Conflict, true)));
        assert_eq!(classify_status(404), Some((ErrorKind::NotFound, false)));
        for status in [400, 401, 403, 405, 413, 422, 501, 505, 302] {
            assert_eq!(
                classify_status(status),
                Some((ErrorKind::Permanent, false)),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        // Wed, 21 Oct 2015 07:28:00 GMT is 1445412480.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn excerpts_are_short_and_printable() {
        assert_eq!(excerpt(b"{\"error\":\n\"bad\"}"), "{\"error\": \"bad\"}");
        let long = vec![b'x'; 500];
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(&[0xff, b'a']), "\u{fffd}a");
    }
}
