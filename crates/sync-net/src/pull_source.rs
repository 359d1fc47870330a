//! [`PullSource`] for [`HttpSyncApiAdapter`]: the request each
//! [`PullStrategy`] sends, through the adapter's exchange (auth hook and
//! its 401 retry, time limits, `max_response_bytes`), and the errors of
//! its answers. Reading the answers is `pull_answers.rs`.

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde_json::Value;
use sync_core::{ApiError, EntityName, ErrorKind, PullAnswer, PullPage, PullRequest, PullSource};

use crate::adapter::HttpSyncApiAdapter;
use crate::answers::captive_portal;
use crate::error::classify_status;
use crate::exchange::{Response, Target, kind_headers};
use crate::pull::{ChangeFeed, FilteredList, ListDialect, Paging, PullStrategy, Snapshot};
use crate::pull_answers::{Filtered, feed_page, filtered_page, snapshot_page};
use crate::pull_cursor::{ListCursor, decode_position, value_text};
use crate::shape::{RequestKind, RequestShape, Route};
use crate::url::encode_query_value;

/// Query parameters, names and values already percent-encoded.
type Query = Vec<(String, String)>;

impl HttpSyncApiAdapter {
    /// The entities with a declared [`PullStrategy`], sorted by name: the
    /// ones to declare to the engine as pulled.
    ///
    /// ```
    /// use sync_net::{HttpSyncApiAdapter, PullStrategy};
    ///
    /// let adapter = HttpSyncApiAdapter::builder("https://api.example.com")
    ///     .pull("tasks", PullStrategy::change_feed())
    ///     .pull("notes", PullStrategy::snapshot())
    ///     .build()?;
    /// let pulled = adapter.pulled_entities();
    /// let names: Vec<&str> = pulled.iter().map(|name| name.as_str()).collect();
    /// assert_eq!(names, ["notes", "tasks"]);
    /// # Ok::<(), sync_net::NetError>(())
    /// ```
    #[must_use]
    pub fn pulled_entities(&self) -> Vec<EntityName> {
        // Checked by the builder.
        let mut names: Vec<EntityName> = self
            .config
            .pulls
            .keys()
            .filter_map(|name| EntityName::new(name.as_str()).ok())
            .collect();
        names.sort();
        names
    }

    /// A pull's `GET`: the route (a template, or the entity's collection
    /// route), the query appended, the shape's fetch headers.
    fn pull_target(
        shape: &RequestShape,
        template: Option<&str>,
        entity: &EntityName,
        query: &Query,
    ) -> Result<Target, ApiError> {
        let route = match (template, &shape.create.route) {
            (Some(template), _) => Route::Template(template.to_owned()),
            (None, Route::Template(create)) if !create.contains("{id}") => Route::Template(create.clone()),
            (None, Route::Custom(route)) => Route::Custom(route.clone()),
            (None, Route::Template(_)) => Route::Template("/{entity}".to_owned()),
        };
        if let Route::Template(template) = &route
            && template
                .split('?')
                .next()
                .unwrap_or_default()
                .contains("{entity}")
            && matches!(entity.as_str(), "." | "..")
        {
            return Err(ApiError::new(
                ErrorKind::Permanent,
                "the entity name \".\" or \"..\" cannot be sent as a URL path segment: rename it, or \
                 configure a pull route that sends it in the query string",
            ));
        }
        let mut path = route.render(RequestKind::Create, entity, None).path;
        let line = format!("GET {}", path.split('?').next().unwrap_or_default());
        for (name, value) in query {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(name);
            path.push('=');
            path.push_str(value);
        }
        Ok(Target {
            method: Method::GET,
            path,
            line,
            headers: kind_headers(shape, RequestKind::Fetch),
        })
    }

    /// Sends a pull's `GET`. A read applies nothing, whatever happens.
    async fn pull_get(&self, target: &Target) -> Result<Response, ApiError> {
        self.send(target, None, None)
            .await
            .map_err(|error| error.with_possibly_applied(false))
    }

    /// The error for a pull's answer that is not a success: 404 and 410
    /// name a missing route, statuses worth retrying keep their kind
    /// (with `Retry-After`), anything else is permanent; `None` for a
    /// success that is the API's answer (not a captive portal's page).
    fn pull_refusal(&self, response: &Response, line: &str) -> Option<ApiError> {
        let status = response.status.as_u16();
        match classify_status(status) {
            None => captive_portal(response, line, false),
            Some((ErrorKind::Transient, _)) => {
                Some(self.status_error(response, line).with_possibly_applied(false))
            }
            Some(_) => {
                let reason = response.status.canonical_reason().unwrap_or("unknown status");
                let hint = if matches!(status, 404 | 410) {
                    ": the pull route is missing: check the base URL and the entity's pull strategy"
                } else {
                    ""
                };
                let mut message = format!("HTTP {status} {reason}{hint}");
                self.append_body(&mut message, &response.body);
                Some(
                    ApiError::new(ErrorKind::Permanent, message)
                        .with_status(status)
                        .with_request(line)
                        .with_possibly_applied(false),
                )
            }
        }
    }

    async fn pull_feed(
        &self,
        feed: &ChangeFeed,
        shape: &RequestShape,
        request: PullRequest<'_>,
    ) -> Result<PullAnswer, ApiError> {
        let mut query = vec![(
            encode_query_value(&feed.limit_param),
            request.limit.max(1).to_string(),
        )];
        if let Some(cursor) = request.cursor {
            query.push((
                encode_query_value(&feed.cursor_param),
                encode_query_value(cursor.as_str()),
            ));
        }
        let target = Self::pull_target(shape, Some(&feed.route), request.entity, &query)?;
        let response = self.pull_get(&target).await?;
        if response.status == StatusCode::GONE && request.cursor.is_some() {
            return Ok(PullAnswer::CursorExpired);
        }
        if let Some(error) = self.pull_refusal(&response, &target.line) {
            return Err(error);
        }
        feed_page(&response.body, request.cursor)
            .map(PullAnswer::Page)
            .map_err(|reason| unusable("change feed", &response, &target.line, &reason))
    }

    async fn pull_filtered(
        &self,
        list: &FilteredList,
        shape: &RequestShape,
        request: PullRequest<'_>,
    ) -> Result<PullAnswer, ApiError> {
        let from = match request.cursor {
            None => None,
            Some(cursor) => match ListCursor::decode(cursor) {
                Some(from) => Some(from),
                // Not this strategy's cursor: load the entity again.
                None => return Ok(PullAnswer::CursorExpired),
            },
        };
        let mut page = self.filtered_get(list, shape, request, from.as_ref()).await?;
        if page == Filtered::AnchorLost
            && let Some(from) = &from
        {
            // The tie moved under the anchor: read it again from its start.
            let restart = ListCursor {
                t: from.t.clone(),
                anchor: None,
                n: 0,
            };
            page = self.filtered_get(list, shape, request, Some(&restart)).await?;
        }
        let Filtered::Page(page) = page else {
            return Err(ApiError::new(
                ErrorKind::Permanent,
                "the filtered list lost its place twice in one pull",
            ));
        };
        if page.more && page.cursor.as_ref() == request.cursor {
            return Err(ApiError::new(
                ErrorKind::Permanent,
                "the filtered list made no progress: a full page ended where the last one did (does the \
                 server ignore the offset parameter, or its sort order?)",
            ));
        }
        Ok(PullAnswer::Page(page))
    }

    /// One request of a filtered list from `from`.
    async fn filtered_get(
        &self,
        list: &FilteredList,
        shape: &RequestShape,
        request: PullRequest<'_>,
        from: Option<&ListCursor>,
    ) -> Result<Filtered, ApiError> {
        let limit = request.limit.max(1);
        let query = filtered_query(list, &shape.id_field, from, limit);
        let target = Self::pull_target(shape, list.route.as_deref(), request.entity, &query)?;
        let response = self.pull_get(&target).await?;
        if let Some(error) = self.pull_refusal(&response, &target.line) {
            return Err(error);
        }
        filtered_page(&response.body, list, shape, from, limit)
            .map_err(|reason| unusable("filtered list", &response, &target.line, &reason))
    }

    async fn pull_snapshot(
        &self,
        snapshot: &Snapshot,
        shape: &RequestShape,
        request: PullRequest<'_>,
    ) -> Result<PullAnswer, ApiError> {
        let first = match snapshot.paging {
            Paging::Offset => 0,
            Paging::PageNumber { .. } => 1,
        };
        let position = match request.cursor {
            None => first,
            Some(cursor) => match decode_position(cursor, first) {
                Some(position) => position,
                None => return Ok(PullAnswer::CursorExpired),
            },
        };
        let query = snapshot_query(snapshot, &shape.id_field, position, request.limit.max(1));
        let target = Self::pull_target(shape, snapshot.route.as_deref(), request.entity, &query)?;
        let response = self.pull_get(&target).await?;
        // A page past the last (Django REST framework's 404 {"detail":
        // "Invalid page."}); a wrong route's page is no JSON.
        if response.status == StatusCode::NOT_FOUND
            && request.cursor.is_some()
            && serde_json::from_slice::<Value>(&response.body).is_ok()
        {
            return Ok(PullAnswer::Page(PullPage {
                changes: Vec::new(),
                cursor: None,
                more: false,
                listing: true,
            }));
        }
        if let Some(error) = self.pull_refusal(&response, &target.line) {
            return Err(error);
        }
        snapshot_page(&response.body, snapshot, shape, position)
            .map(PullAnswer::Page)
            .map_err(|reason| unusable("snapshot", &response, &target.line, &reason))
    }
}

/// The permanent error for an answer that cannot be used; the reason names
/// what was wrong, never what the answer held.
fn unusable(strategy: &str, response: &Response, line: &str, reason: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Permanent,
        format!("the {strategy} answer cannot be used, nothing of it was applied: {reason}"),
    )
    .with_status(response.status.as_u16())
    .with_request(line)
    .with_possibly_applied(false)
}

/// A filtered list's query from `from`: with an anchor, from the anchor
/// on, one row more than the page.
fn filtered_query(list: &FilteredList, id_field: &str, from: Option<&ListCursor>, limit: usize) -> Query {
    let updated = encode_query_value(&list.updated_field);
    let id = encode_query_value(id_field);
    let (filter, skip, take) = match from {
        None => (None, 0, limit),
        Some(from) => {
            let value = encode_query_value(&value_text(&from.t));
            match from.anchor {
                Some(_) => (Some(value), from.n.saturating_sub(1), limit.saturating_add(1)),
                None => (Some(value), 0, limit),
            }
        }
    };
    let mut query = Query::new();
    match list.dialect {
        ListDialect::PostgRest => {
            if let Some(value) = filter {
                query.push((updated.clone(), format!("gte.{value}")));
            }
            query.push(("order".to_owned(), format!("{updated}.asc,{id}.asc")));
            query.push(("offset".to_owned(), skip.to_string()));
            query.push(("limit".to_owned(), take.to_string()));
        }
        ListDialect::JsonServer => {
            if let Some(value) = filter {
                query.push((format!("{updated}_gte"), value));
            }
            query.push(("_sort".to_owned(), format!("{updated},{id}")));
            query.push(("_start".to_owned(), skip.to_string()));
            query.push(("_limit".to_owned(), take.to_string()));
        }
    }
    query
}

/// A snapshot's query at `position`.
fn snapshot_query(snapshot: &Snapshot, id_field: &str, position: u64, limit: usize) -> Query {
    let key = encode_query_value(snapshot.sort_key.as_deref().unwrap_or(id_field));
    match (&snapshot.paging, snapshot.dialect) {
        (Paging::PageNumber { page, size }, _) => vec![
            (encode_query_value(page), position.to_string()),
            (encode_query_value(size), limit.to_string()),
        ],
        (Paging::Offset, ListDialect::PostgRest) => vec![
            ("order".to_owned(), format!("{key}.asc")),
            ("offset".to_owned(), position.to_string()),
            ("limit".to_owned(), limit.to_string()),
        ],
        (Paging::Offset, ListDialect::JsonServer) => vec![
            ("_sort".to_owned(), key),
            ("_start".to_owned(), position.to_string()),
            ("_limit".to_owned(), limit.to_string()),
        ],
    }
}

/// Pulls through the strategy declared for the entity
/// ([`crate::HttpSyncApiAdapterBuilder::pull`]).
///
/// Failed requests are classified as for writes and fetches (offline,
/// transient with `Retry-After`, a 401 retried once after the auth hook's
/// refresh) but never possibly applied: a pull only reads. A 404 or 410
/// names a missing route (permanent), except a 410 to a change feed's
/// request with a cursor ([`PullAnswer::CursorExpired`]) and a snapshot's
/// page past the last. An answer that breaks the strategy's rules is a
/// permanent error saying what was wrong, and nothing of it is applied.
#[async_trait]
impl PullSource for HttpSyncApiAdapter {
    async fn pull(&self, request: PullRequest<'_>) -> Result<PullAnswer, ApiError> {
        let Some(strategy) = self.config.pulls.get(request.entity.as_str()) else {
            return Err(ApiError::new(
                ErrorKind::Permanent,
                format!(
                    "no pull strategy is declared for the entity {:?}: declare one with \
                     HttpSyncApiAdapterBuilder::pull (PullStrategy::change_feed, filtered_list or snapshot)",
                    request.entity.as_str()
                ),
            ));
        };
        let shape = self.shape_of(request.entity);
        match strategy {
            PullStrategy::ChangeFeed(feed) => self.pull_feed(feed, shape, request).await,
            PullStrategy::FilteredList(list) => self.pull_filtered(list, shape, request).await,
            PullStrategy::Snapshot(snapshot) => self.pull_snapshot(snapshot, shape, request).await,
        }
    }
}
