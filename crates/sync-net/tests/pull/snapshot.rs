//! The snapshot: offset paging in both dialects, page numbers with Django
//! REST framework's answers, the end of a listing, soft deletes and every
//! bad answer.

use serde_json::{Value, json};
use sync_core::PullAnswer;
use sync_net::{HttpSyncApiAdapter, ListDialect, PullStrategy, RequestShape, Snapshot};
use wiremock::matchers::query_param;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    Dialect, ListServer, SECRET, answering, assert_permanent, builder, cursor, drain, ids, lines, page, pull,
};

fn snapshot(server: &MockServer, strategy: Snapshot) -> HttpSyncApiAdapter {
    builder(server).pull("tasks", strategy).build().unwrap()
}

fn rows(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|id| json!({"id": id, "title": SECRET}))
        .collect()
}

/// Django REST framework's paged answer.
fn drf_page(names: &[&str], next: Option<u64>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "count": 3,
        "next": next.map(|page| format!("http://testserver/tasks/?page={page}&page_size=2")),
        "previous": null,
        "results": rows(names),
    }))
}

#[tokio::test]
async fn offset_paging_in_the_json_server_dialect_ends_at_an_empty_page() {
    let (server, _) = ListServer::start(Dialect::JsonServer, rows(&["c", "a", "b"])).await;
    let pages = drain(&snapshot(&server, PullStrategy::snapshot()), None, 2).await;
    assert_eq!(ids(&pages), ["a", "b", "c"]);
    // One row fewer than asked does not end the listing: servers cap pages.
    let cursors: Vec<Option<&str>> = pages
        .iter()
        .map(|page| page.cursor.as_ref().map(|cursor| cursor.as_str()))
        .collect();
    assert_eq!(cursors, [Some("2"), Some("3"), None]);
    assert_eq!(
        pages.iter().map(|page| page.more).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert!(pages.iter().all(|page| page.listing));
    assert_eq!(
        lines(&server).await,
        [
            "GET /tasks?_sort=id&_start=0&_limit=2",
            "GET /tasks?_sort=id&_start=2&_limit=2",
            "GET /tasks?_sort=id&_start=3&_limit=2",
        ]
    );
}

#[tokio::test]
async fn offset_paging_in_the_postgrest_dialect_with_a_sort_key() {
    let (server, _) = ListServer::start(
        Dialect::PostgRest,
        vec![json!({"id": "x", "seq": 2}), json!({"id": "y", "seq": 1})],
    )
    .await;
    let strategy = PullStrategy::snapshot()
        .dialect(ListDialect::PostgRest)
        .sort_key("seq");
    let pages = drain(&snapshot(&server, strategy), None, 5).await;
    assert_eq!(ids(&pages), ["y", "x"]);
    assert_eq!(
        lines(&server).await,
        [
            "GET /tasks?order=seq.asc&offset=0&limit=5",
            "GET /tasks?order=seq.asc&offset=2&limit=5",
        ]
    );
}

#[tokio::test]
async fn page_numbers_follow_the_next_link_of_django_rest_framework() {
    let server = MockServer::start().await;
    Mock::given(query_param("page", "1"))
        .respond_with(drf_page(&["a", "b"], Some(2)))
        .mount(&server)
        .await;
    Mock::given(query_param("page", "2"))
        .respond_with(drf_page(&["c"], None))
        .mount(&server)
        .await;
    let adapter = builder(&server)
        .entity_shape("tasks", RequestShape::django_rest_framework())
        .pull(
            "tasks",
            PullStrategy::snapshot()
                .page_numbers("page", "page_size")
                .items("/results")
                .next("/next"),
        )
        .build()
        .unwrap();
    let pages = drain(&adapter, None, 2).await;
    assert_eq!(ids(&pages), ["a", "b", "c"]);
    assert_eq!(pages[0].cursor, Some(cursor("2")));
    assert!(pages[0].more && !pages[1].more && pages[1].cursor.is_none());
    assert_eq!(
        lines(&server).await,
        ["GET /tasks/?page=1&page_size=2", "GET /tasks/?page=2&page_size=2"]
    );
}

/// json-server 1.0's `_page` envelope: `next` is a page number, and a page
/// past the last answers the last page again.
#[tokio::test]
async fn json_server_pages_end_at_their_null_next() {
    let envelope = |names: &[&str], next: Option<u64>| {
        ResponseTemplate::new(200).set_body_json(json!({
            "first": 1, "prev": null, "next": next, "last": 2, "pages": 2, "items": 3, "data": rows(names),
        }))
    };
    let server = MockServer::start().await;
    Mock::given(query_param("_page", "1"))
        .respond_with(envelope(&["a", "b"], Some(2)))
        .mount(&server)
        .await;
    Mock::given(query_param("_page", "2"))
        .respond_with(envelope(&["c"], None))
        .mount(&server)
        .await;
    let strategy = PullStrategy::snapshot()
        .page_numbers("_page", "_per_page")
        .items("/data")
        .next("/next");
    let pages = drain(&snapshot(&server, strategy), None, 2).await;
    assert_eq!(ids(&pages), ["a", "b", "c"]);
    assert_eq!(
        lines(&server).await,
        ["GET /tasks?_page=1&_per_page=2", "GET /tasks?_page=2&_per_page=2"]
    );
}

#[tokio::test]
async fn a_404_past_the_last_page_ends_the_listing() {
    let server = MockServer::start().await;
    Mock::given(query_param("page", "1"))
        .respond_with(drf_page(&["a", "b"], Some(2)))
        .mount(&server)
        .await;
    Mock::given(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"detail": "Invalid page."})))
        .mount(&server)
        .await;
    // Without the next link, the page after the last is asked for.
    let adapter = snapshot(
        &server,
        PullStrategy::snapshot()
            .page_numbers("page", "page_size")
            .items("/results"),
    );
    let pages = drain(&adapter, None, 2).await;
    assert_eq!(ids(&pages), ["a", "b"]);
    assert_eq!(pages.len(), 2);
    assert!(pages[1].listing && !pages[1].more && pages[1].changes.is_empty());
}

#[tokio::test]
async fn a_404_that_is_no_page_past_the_end_is_an_error() {
    // A wrong route's 404 is no JSON; on the first page it is no end either.
    let html = ResponseTemplate::new(404).set_body_raw("<h1>Not Found</h1>", "text/html");
    let server = answering(html).await;
    let adapter = snapshot(&server, PullStrategy::snapshot());
    assert_permanent(pull(&adapter, Some(&cursor("4")), 2).await, "HTTP 404");
    let server = answering(ResponseTemplate::new(404).set_body_json(json!({"detail": "Not found."}))).await;
    let adapter = snapshot(&server, PullStrategy::snapshot());
    assert_permanent(pull(&adapter, None, 2).await, "pull route is missing");
}

#[tokio::test]
async fn soft_deleted_rows_of_a_snapshot_are_tombstones() {
    let server = answering(ResponseTemplate::new(200).set_body_json(json!({"items": [
        {"id": 1, "gone": false},
        {"id": 2, "gone": true},
        {"id": 3},
    ]})))
    .await;
    let adapter = snapshot(
        &server,
        PullStrategy::snapshot().items("/items").soft_delete("gone"),
    );
    let first = page(&adapter, None, 3).await;
    assert_eq!(ids(&[first]), ["1", "-2", "3"]);
}

#[tokio::test]
async fn bad_snapshot_answers_are_permanent_errors() {
    let drf = || {
        PullStrategy::snapshot()
            .page_numbers("page", "page_size")
            .items("/results")
            .next("/next")
    };
    let cases = [
        (
            drf(),
            json!({"results": rows(&["a"])}),
            "no next-page link at /next",
        ),
        (
            drf(),
            json!({"results": rows(&["a"]), "next": true}),
            "at /next is a boolean",
        ),
        (
            drf(),
            json!({"results": [], "next": "http://x/?page=3"}),
            "an empty page links to a next page",
        ),
        (
            drf(),
            json!({"results": {"a": SECRET}, "next": null}),
            "array of rows at /results",
        ),
        (drf(), json!({"next": null}), "no value at /results"),
        (
            PullStrategy::snapshot(),
            json!([{"title": SECRET}]),
            "index 0 has no \"id\"",
        ),
        (
            PullStrategy::snapshot(),
            json!({"rows": rows(&["a"])}),
            "the rows are an object",
        ),
    ];
    for (strategy, body, reason) in cases {
        let server = answering(ResponseTemplate::new(200).set_body_json(body)).await;
        assert_permanent(pull(&snapshot(&server, strategy), None, 2).await, reason);
    }
}

#[tokio::test]
async fn a_cursor_that_is_no_position_loads_the_entity_again() {
    let server = answering(ResponseTemplate::new(200).set_body_json(json!([]))).await;
    for (strategy, text) in [
        (PullStrategy::snapshot(), "abc"),
        (PullStrategy::snapshot(), r#"{"id":"x","n":1,"t":5}"#),
        (PullStrategy::snapshot().page_numbers("page", "size"), "0"),
    ] {
        let adapter = snapshot(&server, strategy);
        assert_eq!(
            pull(&adapter, Some(&cursor(text)), 10).await.unwrap(),
            PullAnswer::CursorExpired
        );
    }
    assert!(lines(&server).await.is_empty());
}
