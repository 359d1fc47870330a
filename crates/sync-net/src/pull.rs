//! [`PullStrategy`]: how the adapter reads one entity's changes from the
//! server, declared per entity with
//! [`HttpSyncApiAdapterBuilder::pull`](crate::HttpSyncApiAdapterBuilder::pull).
//!
//! Three strategies, for three kinds of server:
//!
//! - [`ChangeFeed`]: the server publishes its changes, tombstones included,
//!   after a cursor it issues (`GET /{entity}/changes?limit=N&since=C`).
//!   The best one: exact, cheap, deletes included.
//! - [`FilteredList`]: the server has only a list endpoint with an
//!   updated-at field and filters (json-server, PostgREST and the like).
//!   Deletes are seen only as soft deletes (a field marking the row).
//! - [`Snapshot`]: the server has only a paged list. Every pull lists the
//!   whole entity; at the end of the listing the engine removes the local
//!   records it did not show (unless a local change to them is pending).
//!
//! The requests each strategy sends are in the rustdoc of its type; how
//! the answers are read, in `pull_answers.rs`.

use std::collections::HashMap;

use crate::error::NetError;

/// The query-string dialect of a list endpoint.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListDialect {
    /// json-server 1.0 (`{field}_gte=X`, `_sort=a,b`, `_start=N`,
    /// `_limit=N`), the default. json-server compares `_gte` numerically
    /// only (a row whose value is a string never matches, and the value in
    /// the query goes through `parseInt`), so a filtered list in this
    /// dialect needs an updated-at field holding integers (such as
    /// milliseconds since the epoch): any other value is refused with a
    /// permanent error rather than missing every later change in silence.
    #[default]
    JsonServer,
    /// PostgREST (`{field}=gte.X`, `order=a.asc,b.asc`, `offset=N`,
    /// `limit=N`).
    PostgRest,
}

/// How the adapter reads one entity's changes; declared with
/// [`HttpSyncApiAdapterBuilder::pull`](crate::HttpSyncApiAdapterBuilder::pull).
///
/// Build one with [`PullStrategy::change_feed`],
/// [`PullStrategy::filtered_list`] or [`PullStrategy::snapshot`] and the
/// chained methods of the type they return.
///
/// ```
/// use sync_net::{HttpSyncApiAdapter, ListDialect, PullStrategy};
///
/// let adapter = HttpSyncApiAdapter::builder("https://api.example.com")
///     // GET /tasks/changes?limit=100&since=<cursor>
///     .pull("tasks", PullStrategy::change_feed())
///     // GET /notes?order=updated_at.asc,id.asc&offset=0&limit=100
///     .pull(
///         "notes",
///         PullStrategy::filtered_list("updated_at")
///             .dialect(ListDialect::PostgRest)
///             .soft_delete("deleted_at"),
///     )
///     // GET /tags/?page=1&page_size=100 answering {"results": [...], "next": ...}
///     .pull(
///         "tags",
///         PullStrategy::snapshot()
///             .page_numbers("page", "page_size")
///             .items("/results")
///             .next("/next"),
///     )
///     .build()?;
/// assert_eq!(adapter.pulled_entities().len(), 3);
/// # Ok::<(), sync_net::NetError>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullStrategy {
    /// The server's own change feed.
    ChangeFeed(ChangeFeed),
    /// A list filtered on an updated-at field.
    FilteredList(FilteredList),
    /// A full listing at every pull.
    Snapshot(Snapshot),
}

impl PullStrategy {
    /// A change feed at `/{entity}/changes`; see [`ChangeFeed`].
    #[must_use]
    pub fn change_feed() -> ChangeFeed {
        ChangeFeed {
            route: "/{entity}/changes".to_owned(),
            limit_param: "limit".to_owned(),
            cursor_param: "since".to_owned(),
        }
    }

    /// A list filtered on `updated_field`, in the json-server dialect; see
    /// [`FilteredList`].
    #[must_use]
    pub fn filtered_list(updated_field: impl Into<String>) -> FilteredList {
        FilteredList {
            updated_field: updated_field.into(),
            soft_delete: None,
            dialect: ListDialect::JsonServer,
            items: None,
            route: None,
        }
    }

    /// A full listing paged by offset, in the json-server dialect; see
    /// [`Snapshot`].
    #[must_use]
    pub fn snapshot() -> Snapshot {
        Snapshot {
            paging: Paging::Offset,
            dialect: ListDialect::JsonServer,
            sort_key: None,
            items: None,
            next: None,
            soft_delete: None,
            route: None,
        }
    }

    /// Checks the settings; the reason names the one that cannot work.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            Self::ChangeFeed(feed) => {
                check_route(&feed.route)?;
                check_name("limit parameter", &feed.limit_param)?;
                check_name("cursor parameter", &feed.cursor_param)
            }
            Self::FilteredList(list) => {
                check_name("updated-at field", &list.updated_field)?;
                check_optional_name("soft-delete field", list.soft_delete.as_deref())?;
                check_pointer("items", list.items.as_deref())?;
                list.route.as_deref().map_or(Ok(()), check_route)
            }
            Self::Snapshot(snapshot) => {
                if let Paging::PageNumber { page, size } = &snapshot.paging {
                    check_name("page parameter", page)?;
                    check_name("page size parameter", size)?;
                }
                check_optional_name("sort key", snapshot.sort_key.as_deref())?;
                check_optional_name("soft-delete field", snapshot.soft_delete.as_deref())?;
                check_pointer("items", snapshot.items.as_deref())?;
                check_pointer("next", snapshot.next.as_deref())?;
                snapshot.route.as_deref().map_or(Ok(()), check_route)
            }
        }
    }
}

/// A change feed: `GET {route}?limit={n}[&since={cursor}]`, by default
/// `GET /{entity}/changes?limit=100&since=1042` (the cursor
/// percent-encoded, left out on the first pull).
///
/// The server answers `200` with
///
/// ```json
/// {"changes": [{"op": "upsert", "id": "t1", "data": {"title": "a"}, "version": "\"3\""},
///              {"op": "delete", "id": "t2"}],
///  "cursor": "1042", "more": false}
/// ```
///
/// `id` is a string or an integer; `data` an object (an upsert's
/// document); `version` an optional string (sent back in `If-Match`);
/// `cursor` a string or a number, required unless the page is empty and
/// `more` false; `more` optional (default `false`): whether another page
/// follows at once. `410 Gone` to a request with a cursor means the server
/// forgot it (its tombstones were purged): the engine then loads the
/// entity again from scratch. An answer that breaks these rules (not JSON,
/// an unknown `op`, a change without a valid id, an upsert without a
/// document, `more` without a new cursor, a numeric cursor going
/// backwards) is a permanent error, and nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeFeed {
    pub(crate) route: String,
    pub(crate) limit_param: String,
    pub(crate) cursor_param: String,
}

impl ChangeFeed {
    /// The feed's route relative to the base URL, with the `{entity}`
    /// placeholder (percent-encoded): default `/{entity}/changes`. It may
    /// hold a fixed query (`/sync?entity={entity}`); the limit and the
    /// cursor are appended to it.
    #[must_use]
    pub fn route(mut self, template: impl Into<String>) -> Self {
        self.route = template.into();
        self
    }

    /// The query parameter carrying the page size. Default `limit`.
    #[must_use]
    pub fn limit_param(mut self, name: impl Into<String>) -> Self {
        self.limit_param = name.into();
        self
    }

    /// The query parameter carrying the cursor. Default `since`.
    #[must_use]
    pub fn cursor_param(mut self, name: impl Into<String>) -> Self {
        self.cursor_param = name.into();
        self
    }
}

impl From<ChangeFeed> for PullStrategy {
    fn from(feed: ChangeFeed) -> Self {
        Self::ChangeFeed(feed)
    }
}

/// A list filtered on an updated-at field, for servers with only a list
/// endpoint: rows come in `(updated, id)` order, and the cursor (opaque to
/// the engine, made by the adapter) holds the last row's updated-at value
/// and id, and how many rows sharing that value were read.
///
/// Requests, with `{u}` the updated-at field, `{id}` the entity shape's
/// id field and `N` the engine's page size:
///
/// | dialect | first pull | later pulls |
/// |---|---|---|
/// | [`ListDialect::JsonServer`] | `?_sort={u},{id}&_start=0&_limit=N` | `?{u}_gte={t}&_sort={u},{id}&_start={n-1}&_limit={N+1}` |
/// | [`ListDialect::PostgRest`] | `?order={u}.asc,{id}.asc&offset=0&limit=N` | `?{u}=gte.{t}&order={u}.asc,{id}.asc&offset={n-1}&limit={N+1}` |
///
/// where `t` is the last row's updated-at value and `n` how many rows with
/// that value were read. A later pull asks for the rows from the last one
/// read (the anchor) on: when the anchor is the first row answered, the
/// `n - 1` rows skipped are exactly the ones read before it. When it is
/// not (a row read before left the tie, its updated-at having changed, or
/// one joined it), the tie is read again from its start
/// (`_start=0`/`offset=0`, in the same pull): rows may come twice, none is
/// skipped. (Skipping `n` rows without the anchor would skip an unread
/// row every time a row read before moved on.) More pages follow while
/// the server answers full pages of `N` rows or more, the anchor counted
/// (so a server capping pages at `N` is still paged through).
///
/// A row whose soft-delete field ([`Self::soft_delete`]) is set (`true`, a
/// non-empty string, a number other than 0, a timestamp; anything but
/// `null`, `false`, `0`, `""` or no field) is a tombstone; any other row
/// is an upsert of the row as it stands, its version from the shape's
/// [`VersionSource::Field`](crate::VersionSource::Field) if it names one.
/// A row that is hard-deleted is never seen: use soft deletes, a change
/// feed or a snapshot for that.
///
/// What the adapter cannot see: a row written after a pull with an
/// updated-at value at or before the last one read (a clock coarser than
/// the writes, transactions committing out of order), when it lands
/// before the anchor while another row leaves (the anchor then keeps its
/// place). Values are compared as numbers, or as text for strings (use
/// one fixed format, such as ISO 8601 in UTC); ids are never compared,
/// the server's order among rows with the same value is taken as it is
/// (json-server orders strings with `localeCompare`, PostgreSQL with the
/// column's collation, and neither is byte order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredList {
    pub(crate) updated_field: String,
    pub(crate) soft_delete: Option<String>,
    pub(crate) dialect: ListDialect,
    pub(crate) items: Option<String>,
    pub(crate) route: Option<String>,
}

impl FilteredList {
    /// The field marking a deleted row (such as `deleted` or
    /// `deleted_at`). Default: none.
    #[must_use]
    pub fn soft_delete(mut self, field: impl Into<String>) -> Self {
        self.soft_delete = Some(field.into());
        self
    }

    /// The query-string dialect. Default [`ListDialect::JsonServer`].
    #[must_use]
    pub fn dialect(mut self, dialect: ListDialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Where the rows are in the answer, as a JSON pointer (RFC 6901) such
    /// as `/items` for an envelope. Default: the entity shape's answer
    /// pointer if it has one ([`AnswerShape::Pointer`](crate::AnswerShape::Pointer),
    /// Directus's `/data`), else the whole answer.
    #[must_use]
    pub fn items(mut self, pointer: impl Into<String>) -> Self {
        self.items = Some(pointer.into());
        self
    }

    /// The list's route relative to the base URL, with the `{entity}`
    /// placeholder; it may hold a fixed query. Default: the route where
    /// the entity's shape creates records (`/{entity}`, `/{entity}/` for
    /// Django REST framework, `/{entity}/records` for PocketBase).
    #[must_use]
    pub fn route(mut self, template: impl Into<String>) -> Self {
        self.route = Some(template.into());
        self
    }
}

impl From<FilteredList> for PullStrategy {
    fn from(list: FilteredList) -> Self {
        Self::FilteredList(list)
    }
}

/// How a snapshot pages through the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Paging {
    /// By offset, in the snapshot's dialect.
    Offset,
    /// By page number (from 1), with these parameters.
    PageNumber { page: String, size: String },
}

/// A full listing of the entity at every pull, for servers with neither
/// a change feed nor an updated-at filter: every page is part of the
/// listing, and when its last page is applied the engine removes the local
/// records it did not show (unless a local change to them is pending).
///
/// Requests, with `N` the engine's page size and `{key}` the sort key
/// (default the entity shape's id field):
///
/// | paging | request |
/// |---|---|
/// | by offset, [`ListDialect::JsonServer`] (default) | `?_sort={key}&_start={offset}&_limit=N` |
/// | by offset, [`ListDialect::PostgRest`] | `?order={key}.asc&offset={offset}&limit=N` |
/// | by page number ([`Self::page_numbers`]) | `?{page}={p}&{size}=N`, `p` from 1 |
///
/// The cursor is the next offset or page number, as text. The listing
/// ends when the [`Self::next`] link is `null`, or without one at the
/// first empty page: a page with fewer rows than asked never ends it, as
/// servers cap page sizes and a listing that ends early would remove local
/// records. A `404` with a JSON body to a later page (Django REST
/// framework's answer to a page past the last) is an empty last page.
///
/// Rows written or deleted on the server during a listing may shift the
/// pages: a row can come twice, or be missed and its local copy removed
/// until the next listing shows it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub(crate) paging: Paging,
    pub(crate) dialect: ListDialect,
    pub(crate) sort_key: Option<String>,
    pub(crate) items: Option<String>,
    pub(crate) next: Option<String>,
    pub(crate) soft_delete: Option<String>,
    pub(crate) route: Option<String>,
}

impl Snapshot {
    /// The query-string dialect of offset paging. Default
    /// [`ListDialect::JsonServer`].
    #[must_use]
    pub fn dialect(mut self, dialect: ListDialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Pages by page number, from 1, with these query parameters (Django
    /// REST framework: `page` and `page_size`, the latter only with the
    /// view's `page_size_query_param` set). No sort parameter is sent: the
    /// server's list must have a stable order of its own.
    #[must_use]
    pub fn page_numbers(mut self, page_param: impl Into<String>, size_param: impl Into<String>) -> Self {
        self.paging = Paging::PageNumber {
            page: page_param.into(),
            size: size_param.into(),
        };
        self
    }

    /// The field offset paging sorts on; it must be unique and stable.
    /// Default: the entity shape's id field.
    #[must_use]
    pub fn sort_key(mut self, field: impl Into<String>) -> Self {
        self.sort_key = Some(field.into());
        self
    }

    /// Where the rows are in the answer, as a JSON pointer (`/results` for
    /// Django REST framework). Default: the entity shape's answer pointer
    /// if it has one, else the whole answer.
    #[must_use]
    pub fn items(mut self, pointer: impl Into<String>) -> Self {
        self.items = Some(pointer.into());
        self
    }

    /// Where the link to the next page is in the answer, as a JSON pointer
    /// (`/next` for Django REST framework's URL and json-server's page
    /// number): `null` ends the listing, and an answer without it is an
    /// error. Default: none (the listing ends at the first empty page).
    ///
    /// Needed with json-server's `_page` and `_per_page`: it answers a page
    /// past the last with the last page again, never an empty one.
    #[must_use]
    pub fn next(mut self, pointer: impl Into<String>) -> Self {
        self.next = Some(pointer.into());
        self
    }

    /// The field marking a deleted row, as for
    /// [`FilteredList::soft_delete`]. Default: none.
    #[must_use]
    pub fn soft_delete(mut self, field: impl Into<String>) -> Self {
        self.soft_delete = Some(field.into());
        self
    }

    /// The list's route, as for [`FilteredList::route`].
    #[must_use]
    pub fn route(mut self, template: impl Into<String>) -> Self {
        self.route = Some(template.into());
        self
    }
}

impl From<Snapshot> for PullStrategy {
    fn from(snapshot: Snapshot) -> Self {
        Self::Snapshot(snapshot)
    }
}

/// Checks the declared strategies and keys them by entity name; given
/// twice, the last one counts.
pub(crate) fn checked(pulls: Vec<(String, PullStrategy)>) -> Result<HashMap<String, PullStrategy>, NetError> {
    let mut checked = HashMap::new();
    for (entity, strategy) in pulls {
        let bad = |reason: String| NetError::InvalidShape {
            entity: Some(entity.clone()),
            reason: format!("pull strategy: {reason}"),
        };
        sync_core::EntityName::new(entity.as_str()).map_err(|error| bad(error.to_string()))?;
        strategy.check().map_err(bad)?;
        checked.insert(entity, strategy);
    }
    Ok(checked)
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("the {what} {name:?} holds control characters"));
    }
    Ok(())
}

fn check_optional_name(what: &str, name: Option<&str>) -> Result<(), String> {
    name.map_or(Ok(()), |name| check_name(what, name))
}

fn check_pointer(what: &str, pointer: Option<&str>) -> Result<(), String> {
    match pointer {
        Some(pointer) if !pointer.is_empty() && !pointer.starts_with('/') => Err(format!(
            "the {what} pointer {pointer:?} must start with '/' (RFC 6901)"
        )),
        _ => Ok(()),
    }
}

/// A pull route: starts with `/`, holds `{entity}` or nothing in braces.
fn check_route(template: &str) -> Result<(), String> {
    if !template.starts_with('/') {
        return Err(format!("the route {template:?} must start with '/'"));
    }
    if template.contains('#') {
        return Err(format!("the route {template:?} must not hold a fragment ('#')"));
    }
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(length) = rest[start..].find('}') else {
            return Err(format!("the route {template:?} has an unclosed '{{'"));
        };
        let placeholder = &rest[start..=start + length];
        if placeholder != "{entity}" {
            return Err(format!(
                "the route {template:?} has the placeholder {placeholder}: a pull route knows only {{entity}}"
            ));
        }
        rest = &rest[start + length + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let cases: [(PullStrategy, &str); 8] = [
            (
                PullStrategy::change_feed().route("changes").into(),
                "must start with '/'",
            ),
            (
                PullStrategy::change_feed().route("/{entity}/{id}").into(),
                "knows only {entity}",
            ),
            (PullStrategy::change_feed().route("/{entity").into(), "unclosed"),
            (
                PullStrategy::change_feed().cursor_param("").into(),
                "cursor parameter is empty",
            ),
            (
                PullStrategy::filtered_list("").into(),
                "updated-at field is empty",
            ),
            (
                PullStrategy::filtered_list("at").items("data").into(),
                "items pointer \"data\" must start with '/'",
            ),
            (
                PullStrategy::snapshot().page_numbers("page", "").into(),
                "page size parameter is empty",
            ),
            (PullStrategy::snapshot().next("next").into(), "next pointer"),
        ];
        for (strategy, reason) in cases {
            let error = strategy.check().unwrap_err();
            assert!(error.contains(reason), "{error}");
        }
        assert_eq!(PullStrategy::from(PullStrategy::change_feed()).check(), Ok(()));
        assert_eq!(
            PullStrategy::from(PullStrategy::filtered_list("updated_at").route("/v1/{entity}?x=1")).check(),
            Ok(())
        );
    }
}
