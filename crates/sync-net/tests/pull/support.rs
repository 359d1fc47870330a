//! What the pull tests share: pulls and their pages, request lines, and a
//! list server answering json-server's and PostgREST's list queries from
//! rows the test can change between pulls.

use std::cmp::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sync_core::{
    ApiError, EntityName, ErrorKind, PullAnswer, PullCursor, PullPage, PullRequest, PullSource, PulledChange,
};
use sync_net::{HttpSyncApiAdapter, HttpSyncApiAdapterBuilder};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The text every bad answer carries in its rows: no error may quote it.
pub(crate) const SECRET: &str = "secret-payload-text";

pub(crate) fn entity(name: &str) -> EntityName {
    name.parse().unwrap()
}

pub(crate) fn cursor(text: &str) -> PullCursor {
    PullCursor::new(text).unwrap()
}

pub(crate) fn builder(server: &MockServer) -> HttpSyncApiAdapterBuilder {
    HttpSyncApiAdapter::builder(server.uri())
}

/// One pull of `tasks`.
pub(crate) async fn pull(
    adapter: &HttpSyncApiAdapter,
    from: Option<&PullCursor>,
    limit: usize,
) -> Result<PullAnswer, ApiError> {
    let tasks = entity("tasks");
    adapter
        .pull(PullRequest {
            entity: &tasks,
            cursor: from,
            limit,
        })
        .await
}

/// One pull of `tasks` that must give a page.
pub(crate) async fn page(adapter: &HttpSyncApiAdapter, from: Option<&PullCursor>, limit: usize) -> PullPage {
    match pull(adapter, from, limit).await.unwrap() {
        PullAnswer::Page(page) => page,
        other => panic!("a page, not {other:?}"),
    }
}

/// Pulls `tasks` from `from` until no more pages follow; the pages.
pub(crate) async fn drain(
    adapter: &HttpSyncApiAdapter,
    from: Option<PullCursor>,
    limit: usize,
) -> Vec<PullPage> {
    let mut pages = Vec::new();
    let mut at = from;
    for _ in 0..100 {
        let page = page(adapter, at.as_ref(), limit).await;
        if page.cursor.is_some() {
            at.clone_from(&page.cursor);
        }
        let more = page.more;
        pages.push(page);
        if !more {
            return pages;
        }
    }
    panic!("no end after 100 pages");
}

/// The ids of the changes of `pages`, in order, tombstones marked `-`.
pub(crate) fn ids(pages: &[PullPage]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|page| &page.changes)
        .map(|change| match change {
            PulledChange::Upsert { id, .. } => id.as_str().to_owned(),
            PulledChange::Tombstone { id } => format!("-{}", id.as_str()),
        })
        .collect()
}

/// A permanent error that applied nothing and quotes no row.
pub(crate) fn assert_permanent(result: Result<PullAnswer, ApiError>, reason: &str) -> ApiError {
    let error = match result {
        Err(error) => error,
        Ok(answer) => panic!("an error saying {reason:?}, not {answer:?}"),
    };
    assert_eq!(error.kind(), ErrorKind::Permanent, "{error}");
    assert!(!error.possibly_applied(), "{error}");
    assert!(error.to_string().contains(reason), "{reason:?} in {error}");
    assert!(!error.to_string().contains(SECRET), "{error}");
    error
}

/// Method, path and query of each request the server received.
pub(crate) async fn lines(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| match request.url.query() {
            Some(query) => format!("{} {}?{query}", request.method, request.url.path()),
            None => format!("{} {}", request.method, request.url.path()),
        })
        .collect()
}

/// A server answering every request with `template`.
pub(crate) async fn answering(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

/// How the list server reads queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    JsonServer,
    PostgRest,
}

/// A list endpoint over rows the test holds: range filters on one field
/// (`{f}_gte` / `{f}=gte.`), a sort on several (`_sort=a,b` /
/// `order=a.asc,b.asc`), an offset and a limit. Values compare as numbers
/// or as text, ids as text.
#[derive(Clone)]
pub(crate) struct ListServer {
    pub(crate) rows: Arc<Mutex<Vec<Value>>>,
    dialect: Dialect,
    /// The most rows a page holds, whatever the limit asked.
    cap: usize,
}

impl ListServer {
    pub(crate) async fn start(dialect: Dialect, rows: Vec<Value>) -> (MockServer, Self) {
        Self::capped(dialect, rows, usize::MAX).await
    }

    /// A server answering at most `cap` rows a page.
    pub(crate) async fn capped(dialect: Dialect, rows: Vec<Value>, cap: usize) -> (MockServer, Self) {
        let list = Self {
            rows: Arc::new(Mutex::new(rows)),
            dialect,
            cap,
        };
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::method("GET"))
            .respond_with(list.clone())
            .mount(&server)
            .await;
        (server, list)
    }

    /// Sets a field of the row with this id.
    pub(crate) fn set(&self, id: &str, field: &str, value: Value) {
        let mut rows = self.rows.lock().unwrap();
        let row = rows.iter_mut().find(|row| row["id"] == id).unwrap();
        row[field] = value;
    }
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().unwrap().total_cmp(&b.as_f64().unwrap()),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// A query's value as the row's type reads it.
fn typed(text: &str, like: &Value) -> Value {
    match like {
        Value::Number(_) => text.parse::<f64>().map_or(Value::Null, |number| json!(number)),
        _ => Value::String(text.to_owned()),
    }
}

impl Respond for ListServer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut rows = self.rows.lock().unwrap().clone();
        let (mut sort, mut start, mut limit) = (Vec::new(), 0, usize::MAX);
        for (key, value) in request.url.query_pairs() {
            let (key, value) = (key.into_owned(), value.into_owned());
            let filter = match self.dialect {
                Dialect::JsonServer => key
                    .strip_suffix("_gte")
                    .map(|field| (field.to_owned(), value.clone())),
                Dialect::PostgRest => value
                    .strip_prefix("gte.")
                    .map(|bound| (key.clone(), bound.to_owned())),
            };
            if let Some((field, bound)) = filter {
                rows.retain(|row| {
                    let value = &row[field.as_str()];
                    compare(value, &typed(&bound, value)) != Ordering::Less
                });
                continue;
            }
            match (self.dialect, key.as_str()) {
                (Dialect::JsonServer, "_sort") => sort = value.split(',').map(str::to_owned).collect(),
                (Dialect::PostgRest, "order") => {
                    sort = value
                        .split(',')
                        .map(|key| key.trim_end_matches(".asc").to_owned())
                        .collect();
                }
                (Dialect::JsonServer, "_start") | (Dialect::PostgRest, "offset") => {
                    start = value.parse().unwrap()
                }
                (Dialect::JsonServer, "_limit") | (Dialect::PostgRest, "limit") => {
                    limit = value.parse().unwrap()
                }
                _ => {}
            }
        }
        rows.sort_by(|a, b| {
            sort.iter()
                .map(|field| compare(&a[field.as_str()], &b[field.as_str()]))
                .find(|order| order.is_ne())
                .unwrap_or(Ordering::Equal)
        });
        let page: Vec<Value> = rows.into_iter().skip(start).take(limit.min(self.cap)).collect();
        ResponseTemplate::new(200).set_body_json(page)
    }
}
