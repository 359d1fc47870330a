//! Base URLs, request paths and percent-encoding.
//!
//! Entity names and record ids become single path segments: every byte
//! outside RFC 3986's unreserved set is percent-encoded, so no id can climb
//! out of its entity's path (`../admin` becomes `..%2Fadmin`, one segment).
//! The ids `.` and `..` themselves are refused by the adapter's default
//! routes, since some servers resolve even `%2E%2E` as `..`.

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use sync_core::{EntityName, RecordId};

use crate::error::NetError;

/// Percent-encodes `value` for use as one path segment.
///
/// Keeps `A-Z a-z 0-9 - . _ ~`; encodes everything else, UTF-8 byte by
/// byte. The segments `.` and `..` are encoded entirely (`%2E`, `%2E%2E`)
/// so they are never treated as dot segments.
///
/// ```
/// assert_eq!(sync_net::encode_segment("a b/c?d#e%"), "a%20b%2Fc%3Fd%23e%25");
/// assert_eq!(sync_net::encode_segment(".."), "%2E%2E");
/// assert_eq!(sync_net::encode_segment("né"), "n%C3%A9");
/// ```
#[must_use]
pub fn encode_segment(value: &str) -> String {
    if value == "." || value == ".." {
        return "%2E".repeat(value.len());
    }
    encode(value)
}

/// Percent-encodes `value` for use as a query-string value (same rules as
/// [`encode_segment`], so `&`, `=`, `+` and `#` are encoded).
#[must_use]
pub fn encode_query_value(value: &str) -> String {
    encode(value)
}

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The reference's routes: `/{entity}` for create, `/{entity}/{id}` for
/// update, delete and fetch; both parts percent-encoded.
#[must_use]
pub fn default_path(entity: &EntityName, id: Option<&RecordId>) -> String {
    match id {
        None => format!("/{}", encode_segment(entity.as_str())),
        Some(id) => format!(
            "/{}/{}",
            encode_segment(entity.as_str()),
            encode_segment(id.as_str())
        ),
    }
}

/// An `http` or `https` base URL with an optional path prefix, such as
/// `https://host/api/v2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The prefix without a trailing slash: `""` or `/api/v2`.
    prefix: String,
}

impl BaseUrl {
    pub(crate) fn parse(text: &str) -> Result<Self, NetError> {
        let invalid = |reason: &str| NetError::InvalidBaseUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = text.parse().map_err(|_| invalid("not a valid URL"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("missing scheme: start with https://"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(invalid("the scheme must be http or https"));
        }
        if scheme == Scheme::HTTPS && !cfg!(feature = "rustls") {
            return Err(invalid(
                "https needs the `rustls` feature, which is off in this build",
            ));
        }
        let authority = uri.authority().cloned().ok_or_else(|| invalid("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid(
                "credentials in the URL are not allowed: use an auth hook or default headers",
            ));
        }
        if uri.query().is_some() {
            return Err(invalid(
                "a query string is not allowed in the base URL: use a path builder",
            ));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            scheme,
            authority,
            prefix,
        })
    }

    /// The full URI for `path` (which starts with `/` and may carry a query).
    ///
    /// The reasons never quote the path: it may hold a record id, and the
    /// adapter's request line names it with the id left out.
    pub(crate) fn join(&self, path: &str) -> Result<Uri, String> {
        if !path.starts_with('/') {
            return Err("the path builder's path must start with '/'".to_owned());
        }
        let path_and_query: PathAndQuery = format!("{}{path}", self.prefix).parse().map_err(|_| {
            "the path builder's path is not a valid URL path: percent-encode its parts with \
             encode_segment and encode_query_value"
                .to_owned()
        })?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|error| format!("cannot build a URL from the path builder's path: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_escape() {
        for (raw, encoded) in [
            ("../x", "..%2Fx"),
            ("..", "%2E%2E"),
            (".", "%2E"),
            ("a/b", "a%2Fb"),
            ("a?b", "a%3Fb"),
            ("a#b", "a%23b"),
            ("100%", "100%25"),
            ("a b", "a%20b"),
            ("ünï", "%C3%BCn%C3%AF"),
            ("plain-id_1.2~", "plain-id_1.2~"),
        ] {
            assert_eq!(encode_segment(raw), encoded, "{raw}");
        }
        assert_eq!(encode_query_value("a&b=c+d"), "a%26b%3Dc%2Bd");
    }

    #[test]
    fn base_urls_keep_their_prefix() {
        let base = BaseUrl::parse("https://api.example.com/api/v2/").unwrap();
        let uri = base.join("/tasks/1?x=y").unwrap();
        assert_eq!(uri.to_string(), "https://api.example.com/api/v2/tasks/1?x=y");
        let bare = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            bare.join("/tasks").unwrap().to_string(),
            "http://127.0.0.1:8080/tasks"
        );
    }

    #[test]
    fn bad_base_urls_and_paths_are_rejected() {
        for bad in [
            "",
            "ftp://x",
            "/relative",
            "https://u:p@host",
            "https://host/?q=1",
            "not a url",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
        let base = BaseUrl::parse("https://host").unwrap();
        assert!(base.join("tasks").is_err());
        assert!(base.join("/a b").is_err());
    }
}
