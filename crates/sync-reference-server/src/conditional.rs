//! ETags and `If-Match`: writes applied only to the version the client
//! saw (RFC 9110 §8.8.3, §13.1.1).

use http::header::IF_MATCH;
use http::{HeaderMap, HeaderValue};

/// The `ETag` of a record at `version`: a strong entity tag, quoted.
pub(crate) fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// An `If-Match` precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IfMatch {
    /// `*`: any current record.
    Any,
    /// The strong entity tags listed, without their quotes. Weak ones are
    /// left out: `If-Match` compares strongly, so they never match.
    Tags(Vec<String>),
}

impl IfMatch {
    /// The precondition the request's `If-Match` fields state, `None`
    /// without one; `Err` says why a field cannot be read.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, String> {
        let fields: Vec<&HeaderValue> = headers.get_all(IF_MATCH).iter().collect();
        if fields.is_empty() {
            return Ok(None);
        }
        let malformed = || "If-Match must be \"*\" or a list of quoted entity tags such as \"3\"".to_owned();
        let mut texts = Vec::with_capacity(fields.len());
        for field in fields {
            texts.push(field.to_str().map_err(|_| malformed())?.trim());
        }
        if texts.contains(&"*") {
            // `*` stands alone (the grammar is `"*" / #entity-tag`).
            return if texts.len() == 1 {
                Ok(Some(Self::Any))
            } else {
                Err(malformed())
            };
        }
        let mut tags = Vec::new();
        for text in texts {
            parse_tags(text, &mut tags).ok_or_else(malformed)?;
        }
        Ok(Some(Self::Tags(tags)))
    }

    /// Whether the precondition holds for a record at `version` (`None`:
    /// no such record, which nothing matches, not even `*`).
    pub(crate) fn matches(&self, version: Option<u64>) -> bool {
        let Some(version) = version else {
            return false;
        };
        match self {
            Self::Any => true,
            Self::Tags(tags) => {
                let current = version.to_string();
                tags.contains(&current)
            }
        }
    }
}

/// Adds the strong tags of one field value (`"1", W/"2" ,"3"`) to `tags`;
/// `None` when the value is not such a list. Empty elements are allowed,
/// as RFC 9110 §5.6.1.2 asks of recipients.
fn parse_tags(text: &str, tags: &mut Vec<String>) -> Option<()> {
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(());
        }
        let (weak, tagged) = match rest.strip_prefix("W/") {
            Some(tagged) => (true, tagged),
            None => (false, rest),
        };
        let (tag, after) = tagged.strip_prefix('"')?.split_once('"')?;
        // etagc: any visible character but the quote (obs-text was
        // already refused by `to_str`).
        if !tag
            .bytes()
            .all(|byte| byte == 0x21 || (0x23..=0x7e).contains(&byte))
        {
            return None;
        }
        if !weak {
            tags.push(tag.to_owned());
        }
        rest = after.trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use http::header::IF_MATCH;
    use http::{HeaderMap, HeaderValue};

    use super::{IfMatch, etag};

    fn parse(values: &[&str]) -> Result<Option<IfMatch>, String> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IF_MATCH, HeaderValue::from_str(value).unwrap());
        }
        IfMatch::from_headers(&headers)
    }

    fn tags(list: &[&str]) -> Result<Option<IfMatch>, String> {
        Ok(Some(IfMatch::Tags(
            list.iter().map(|tag| (*tag).to_owned()).collect(),
        )))
    }

    #[test]
    fn etags_are_strong_and_quoted() {
        assert_eq!(etag(7), "\"7\"");
    }

    #[test]
    fn if_match_lists_are_read() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&["*"]), Ok(Some(IfMatch::Any)));
        assert_eq!(parse(&[" * "]), Ok(Some(IfMatch::Any)));
        assert_eq!(parse(&["\"1\""]), tags(&["1"]));
        assert_eq!(parse(&["\"1\", \"2\""]), tags(&["1", "2"]));
        assert_eq!(parse(&["\"1\",\"2\" ,, \"a,b\""]), tags(&["1", "2", "a,b"]));
        assert_eq!(parse(&["\"1\"", "\"2\""]), tags(&["1", "2"]));
        // Weak tags never match under the strong comparison If-Match uses.
        assert_eq!(parse(&["W/\"1\", \"2\""]), tags(&["2"]));
        assert_eq!(parse(&[""]), tags(&[]));
        for bad in [
            "1",
            "\"1",
            "\"1\" \"2\"",
            "\"1\"x",
            "w/\"1\"",
            "*, \"1\"",
            "\"a b\"",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
        assert!(parse(&["*", "\"1\""]).is_err());
    }

    #[test]
    fn if_match_compares_with_the_current_version() {
        assert!(IfMatch::Any.matches(Some(3)));
        assert!(!IfMatch::Any.matches(None));
        let listed = parse(&["\"1\", \"3\""]).unwrap().unwrap();
        assert!(listed.matches(Some(3)));
        assert!(!listed.matches(Some(2)));
        assert!(!listed.matches(None));
        let weak = parse(&["W/\"3\""]).unwrap().unwrap();
        assert!(!weak.matches(Some(3)));
    }
}
