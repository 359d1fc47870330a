//! From a request's raw path and query to what it addresses.

use crate::config::Dialect;
use crate::listing::is_postgrest_list_param;
use crate::store::ASSIGNED_IDS_KEY;

/// What a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/health`.
    Health,
    /// `/{collection}`, `/{collection}/{id}` or `/{collection}?id={id}`
    /// ([`Dialect::Rest`]), or `/{collection}?id=eq.{id}`
    /// ([`Dialect::PostgRest`]), decoded. `feed` is set for
    /// `/{collection}/changes` without an `id` in the query: a `GET` of it
    /// is the change feed (other methods address the record `changes` in
    /// the REST dialect).
    Collection {
        name: String,
        id: Option<String>,
        feed: bool,
    },
    /// `/_admin/{collection}/purge-tombstones`.
    PurgeTombstones { collection: String },
}

/// Why a request addresses nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// No route has this shape.
    NotFound,
    /// The route exists but its address cannot be read.
    BadRequest(String),
}

/// The reserved name: `/health` is the health check, never a collection.
const HEALTH: &str = "health";

/// The reserved name of the administration routes.
const ADMIN: &str = "_admin";

/// The path segment after a collection that names its change feed.
const CHANGES: &str = "changes";

/// Routes `path` (raw, percent-encoded) and `query` under `prefix` (as
/// [`crate::config::normalize_prefix`] returns it), as `dialect` shapes
/// routes.
pub(crate) fn route(
    prefix: &str,
    dialect: Dialect,
    path: &str,
    query: Option<&str>,
) -> Result<Target, RouteError> {
    let rest = path.strip_prefix(prefix).ok_or(RouteError::NotFound)?;
    // `/api` and `/api/` are the prefix's root; `/apix` is not under it.
    let rest = rest.strip_prefix('/').ok_or(RouteError::NotFound)?;
    // One trailing slash is forgiven: `/tasks/` is `/tasks`.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err(RouteError::NotFound);
    }
    let decode_segment = |segment: &str| {
        percent_decode(segment, false)
            .ok_or_else(|| RouteError::BadRequest("the path is not valid percent-encoded UTF-8".to_owned()))
    };
    let name = decode_segment(segments[0])?;
    if name == ADMIN {
        return match segments.as_slice() {
            [_, collection, "purge-tombstones"] => Ok(Target::PurgeTombstones {
                collection: decode_segment(collection)?,
            }),
            _ => Err(RouteError::NotFound),
        };
    }
    // The data file keeps the last assigned ids under this name.
    if segments.len() > 2 || name == ASSIGNED_IDS_KEY {
        return Err(RouteError::NotFound);
    }
    let feed_path = segments.get(1) == Some(&CHANGES);
    if name == HEALTH {
        return if segments.len() == 1 {
            Ok(Target::Health)
        } else {
            Err(RouteError::NotFound)
        };
    }
    if dialect == Dialect::PostgRest {
        // PostgREST has no `/{table}/{id}`: rows are addressed by filters.
        // The change feed is this server's own route, with its own query.
        if feed_path {
            return Ok(Target::Collection {
                name,
                id: None,
                feed: true,
            });
        }
        if segments.len() > 1 {
            return Err(RouteError::NotFound);
        }
        let id = query.map(postgrest_id).transpose()?.flatten();
        return Ok(Target::Collection {
            name,
            id,
            feed: false,
        });
    }
    let path_id = segments
        .get(1)
        .map(|segment| decode_segment(segment))
        .transpose()?;
    let query_id = query.map(query_id).transpose()?.flatten();
    let feed = feed_path && query_id.is_none();
    let id = match (path_id, query_id) {
        (Some(path_id), Some(query_id)) if path_id != query_id => {
            return Err(RouteError::BadRequest(
                "the id in the path and the id in the query differ".to_owned(),
            ));
        }
        (path_id, query_id) => path_id.or(query_id),
    };
    Ok(Target::Collection { name, id, feed })
}

/// The `id` query parameter, decoded as a form value (`+` is a space).
/// Other parameters are ignored.
fn query_id(query: &str) -> Result<Option<String>, RouteError> {
    let bad = |what: &str| RouteError::BadRequest(what.to_owned());
    let mut found = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key =
            percent_decode(key, true).ok_or_else(|| bad("the query is not valid percent-encoded UTF-8"))?;
        if key != "id" {
            continue;
        }
        let value =
            percent_decode(value, true).ok_or_else(|| bad("the query is not valid percent-encoded UTF-8"))?;
        if value.is_empty() {
            return Err(bad("the id in the query is empty"));
        }
        if found.replace(value).is_some() {
            return Err(bad("the query holds more than one id"));
        }
    }
    Ok(found)
}

/// The row filter `id=eq.{id}` of a PostgREST query, decoded as a form
/// value. `select=*` is allowed (it is what PostgREST answers anyway), and
/// so are a list's parameters (range filters, `order`, `offset`,
/// `limit`: [`crate::listing`] reads them, and the handler refuses them
/// on anything but a list); any other parameter is refused rather than
/// ignored, since ignoring a filter would read or change rows the client
/// did not mean.
fn postgrest_id(query: &str) -> Result<Option<String>, RouteError> {
    let bad = |what: String| RouteError::BadRequest(what);
    let undecodable = || bad("the query is not valid percent-encoded UTF-8".to_owned());
    let mut found = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key, true).ok_or_else(undecodable)?;
        let value = percent_decode(value, true).ok_or_else(undecodable)?;
        if is_postgrest_list_param(&key, &value) {
            continue;
        }
        match key.as_str() {
            "id" => {
                let Some(id) = value.strip_prefix("eq.") else {
                    return Err(bad(format!(
                        "failed to parse filter ({value}): only id=eq.{{id}} is supported"
                    )));
                };
                if id.is_empty() {
                    return Err(bad("the id in the filter id=eq.{id} is empty".to_owned()));
                }
                if found.replace(id.to_owned()).is_some() {
                    return Err(bad("the query holds more than one id filter".to_owned()));
                }
            }
            "select" if value == "*" => {}
            "select" => {
                return Err(bad(format!("select={value} is not supported: only select=*")));
            }
            other => {
                return Err(bad(format!(
                    "the query parameter {other:?} is not supported: only the filters id=eq.{{id}}, {{column}}=eq.{{value}}, {{column}}=gte.{{value}} (gt, lte, lt), select=*, order, offset and limit"
                )));
            }
        }
    }
    Ok(found)
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); `None`
/// for a broken escape or a result that is not UTF-8.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'%' => {
                let high = hex_value(*bytes.get(index + 1)?)?;
                let low = hex_value(*bytes.get(index + 2)?)?;
                out.push((high << 4) | low);
                index += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                index += 1;
            }
            other => {
                out.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{RouteError, Target, percent_decode};
    use crate::config::Dialect;

    fn route(prefix: &str, path: &str, query: Option<&str>) -> Result<Target, RouteError> {
        super::route(prefix, Dialect::Rest, path, query)
    }

    fn postgrest(path: &str, query: Option<&str>) -> Result<Target, RouteError> {
        super::route("", Dialect::PostgRest, path, query)
    }

    fn collection(name: &str, id: Option<&str>) -> Result<Target, RouteError> {
        Ok(Target::Collection {
            name: name.to_owned(),
            id: id.map(str::to_owned),
            feed: false,
        })
    }

    fn feed(name: &str, id: Option<&str>) -> Result<Target, RouteError> {
        Ok(Target::Collection {
            name: name.to_owned(),
            id: id.map(str::to_owned),
            feed: true,
        })
    }

    #[test]
    fn paths_and_queries_address_records() {
        assert_eq!(route("", "/tasks", None), collection("tasks", None));
        assert_eq!(route("", "/tasks/", None), collection("tasks", None));
        assert_eq!(route("", "/tasks/7", None), collection("tasks", Some("7")));
        assert_eq!(route("", "/tasks", Some("id=7")), collection("tasks", Some("7")));
        assert_eq!(
            route("", "/tasks", Some("x=1&id=a+b%26c")),
            collection("tasks", Some("a b&c"))
        );
        assert_eq!(
            route("", "/tasks/7", Some("id=7")),
            collection("tasks", Some("7"))
        );
        assert_eq!(route("", "/tasks", Some("sort=up")), collection("tasks", None));
        assert_eq!(
            route("", "/my%20tasks/a%2Fb", None),
            collection("my tasks", Some("a/b"))
        );
        assert_eq!(route("", "/t/a+b", None), collection("t", Some("a+b")));
        assert_eq!(route("", "/health", None), Ok(Target::Health));
        assert_eq!(
            route("/api", "/api/tasks/1", None),
            collection("tasks", Some("1"))
        );
        assert_eq!(route("/api", "/api/health", None), Ok(Target::Health));
    }

    #[test]
    fn other_shapes_are_not_found() {
        for (prefix, path) in [
            ("", "/"),
            ("", "//"),
            ("", "/a//b"),
            ("", "/a/b/c"),
            ("", "/health/1"),
            ("/api", "/tasks"),
            ("/api", "/api"),
            ("/api", "/apix/tasks"),
            ("", "/_assigned_ids"),
            ("", "/_assigned_ids/1"),
        ] {
            assert_eq!(
                route(prefix, path, None),
                Err(RouteError::NotFound),
                "{prefix} {path}"
            );
        }
    }

    #[test]
    fn unreadable_addresses_are_bad_requests() {
        for (path, query) in [
            ("/t/%zz", None),
            ("/t/%4", None),
            ("/t/%FF", None),
            ("/t/1", Some("id=2")),
            ("/t", Some("id=1&id=2")),
            ("/t", Some("id=")),
            ("/t", Some("id=%")),
        ] {
            assert!(
                matches!(route("", path, query), Err(RouteError::BadRequest(_))),
                "{path} {query:?}"
            );
        }
    }

    #[test]
    fn postgrest_rows_are_addressed_by_the_id_filter() {
        assert_eq!(postgrest("/tasks", None), collection("tasks", None));
        assert_eq!(postgrest("/tasks", Some("select=*")), collection("tasks", None));
        assert_eq!(
            postgrest("/tasks", Some("id=eq.7")),
            collection("tasks", Some("7"))
        );
        assert_eq!(
            postgrest("/tasks", Some("select=*&id=eq.a%20b%26c")),
            collection("tasks", Some("a b&c"))
        );
        // The id may itself start with "eq.": only the first is the operator.
        assert_eq!(
            postgrest("/tasks", Some("id=eq.eq.1")),
            collection("tasks", Some("eq.1"))
        );
        assert_eq!(postgrest("/health", None), Ok(Target::Health));
        assert_eq!(postgrest("/tasks/7", None), Err(RouteError::NotFound));
        assert_eq!(postgrest("/tasks/7", Some("id=eq.7")), Err(RouteError::NotFound));
        for query in [
            "id=7",
            "id=neq.7",
            "id=in.(1,2)",
            "id=eq.",
            "id=eq.1&id=eq.2",
            "title=like.x",
            "select=id",
            "id=eq.%",
        ] {
            assert!(
                matches!(postgrest("/tasks", Some(query)), Err(RouteError::BadRequest(_))),
                "{query}"
            );
        }
        // A lookup by another column lists, alone or beside the id filter.
        assert_eq!(postgrest("/tasks", Some("title=eq.x")), collection("tasks", None));
        assert_eq!(
            postgrest("/tasks", Some("title=eq.x&id=eq.7")),
            collection("tasks", Some("7"))
        );
        // The REST dialect reads `id=eq.7` as the id "eq.7".
        assert_eq!(
            route("", "/tasks", Some("id=eq.7")),
            collection("tasks", Some("eq.7"))
        );
    }

    #[test]
    fn the_change_feed_and_the_admin_route() {
        assert_eq!(route("", "/tasks/changes", None), feed("tasks", Some("changes")));
        assert_eq!(
            route("/api", "/api/tasks/changes", Some("since=3&limit=5")),
            feed("tasks", Some("changes"))
        );
        // With an id in the query, the record `changes`.
        assert_eq!(
            route("", "/tasks/changes", Some("id=changes")),
            collection("tasks", Some("changes"))
        );
        assert_eq!(postgrest("/tasks/changes", Some("since=3")), feed("tasks", None));
        assert_eq!(
            postgrest(
                "/tasks",
                Some("updated_at=gte.5&order=updated_at.asc,id&offset=1&limit=2")
            ),
            collection("tasks", None)
        );
        assert_eq!(
            route("", "/_admin/my%20tasks/purge-tombstones", Some("through=4")),
            Ok(Target::PurgeTombstones {
                collection: "my tasks".to_owned()
            })
        );
        for path in [
            "/_admin",
            "/_admin/tasks",
            "/_admin/tasks/other",
            "/tasks/changes/1",
        ] {
            assert_eq!(route("", path, None), Err(RouteError::NotFound), "{path}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("n%C3%A9", false).as_deref(), Some("né"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%2e%2E", false).as_deref(), Some(".."));
        assert_eq!(percent_decode("%", false), None);
    }
}
