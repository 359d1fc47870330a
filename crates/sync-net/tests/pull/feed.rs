//! The change feed: its requests, its pages, 410 and every bad answer;
//! how failed requests are classified; the declared strategies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use sync_core::{ApiError, ErrorKind, PullAnswer, PulledChange};
use sync_net::{AuthHook, HttpSyncApiAdapter, NetError, PullStrategy};
use wiremock::matchers::{header, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{SECRET, answering, assert_permanent, builder, cursor, lines, page, pull};

fn feed(server: &MockServer) -> HttpSyncApiAdapter {
    builder(server)
        .pull("tasks", PullStrategy::change_feed())
        .build()
        .unwrap()
}

fn object(value: Value) -> sync_core::JsonObject {
    value.as_object().cloned().unwrap()
}

#[tokio::test]
async fn feed_requests_carry_the_limit_and_the_encoded_cursor() {
    let server = answering(ResponseTemplate::new(200).set_body_json(json!({
        "changes": [
            {"op": "upsert", "id": "t1", "data": {"title": "a"}, "version": "\"3\""},
            {"op": "upsert", "id": 7, "data": {"title": "b"}},
            {"op": "delete", "id": "t2"},
        ],
        "cursor": "1042",
        "more": true,
    })))
    .await;
    let adapter = feed(&server);
    let first = page(&adapter, None, 50).await;
    assert_eq!(
        first.changes,
        vec![
            PulledChange::Upsert {
                id: "t1".parse().unwrap(),
                data: object(json!({"title": "a"})),
                version: Some("\"3\"".to_owned()),
            },
            PulledChange::Upsert {
                id: "7".parse().unwrap(),
                data: object(json!({"title": "b"})),
                version: None,
            },
            PulledChange::Tombstone {
                id: "t2".parse().unwrap()
            },
        ]
    );
    assert_eq!(first.cursor, Some(cursor("1042")));
    assert!(first.more);
    assert!(!first.listing);
    page(&adapter, Some(&cursor("a b/c+d&e")), 50).await;
    assert_eq!(
        lines(&server).await,
        [
            "GET /tasks/changes?limit=50",
            "GET /tasks/changes?limit=50&since=a%20b%2Fc%2Bd%26e",
        ]
    );
}

#[tokio::test]
async fn feed_routes_and_parameters_are_configurable() {
    let server =
        answering(ResponseTemplate::new(200).set_body_json(json!({"changes": [], "cursor": 9}))).await;
    let adapter = builder(&server)
        .pull(
            "tasks",
            PullStrategy::change_feed()
                .route("/sync/{entity}/feed?v=2")
                .limit_param("n")
                .cursor_param("after"),
        )
        .build()
        .unwrap();
    let page = page(&adapter, Some(&cursor("5")), 0).await;
    assert_eq!(
        page.cursor,
        Some(cursor("9")),
        "a numeric cursor is its decimal text"
    );
    assert_eq!(lines(&server).await, ["GET /sync/tasks/feed?v=2&n=1&after=5"]);
}

#[tokio::test]
async fn an_empty_last_page_may_leave_the_cursor_out() {
    let server = answering(ResponseTemplate::new(200).set_body_json(json!({"changes": []}))).await;
    let page = page(&feed(&server), Some(&cursor("5")), 10).await;
    assert_eq!(page.cursor, None);
    assert!(page.changes.is_empty() && !page.more);
}

#[tokio::test]
async fn gone_with_a_cursor_expires_it_and_without_one_is_an_error() {
    let server = answering(ResponseTemplate::new(410)).await;
    let adapter = feed(&server);
    assert_eq!(
        pull(&adapter, Some(&cursor("17")), 10).await.unwrap(),
        PullAnswer::CursorExpired
    );
    let error = assert_permanent(pull(&adapter, None, 10).await, "HTTP 410");
    assert_eq!(error.status(), Some(410));
    assert!(error.to_string().contains("GET /tasks/changes"), "{error}");
}

#[tokio::test]
async fn bad_feed_answers_are_permanent_errors() {
    let upsert = |extra: Value| {
        let mut change = json!({"op": "upsert", "id": "t1", "data": {"title": SECRET}});
        for (key, value) in extra.as_object().unwrap() {
            change[key] = value.clone();
        }
        change
    };
    let page_of = |change: Value| json!({"changes": [change], "cursor": "2"});
    let cases: Vec<(String, &str)> = vec![
        (format!("<html>{SECRET}</html>"), "not JSON"),
        (json!([{"id": SECRET}]).to_string(), "the answer is an array"),
        (json!({"cursor": "2"}).to_string(), "has no \"changes\""),
        (
            json!({"changes": {"a": SECRET}}).to_string(),
            "\"changes\" is an object",
        ),
        (page_of(json!(SECRET)).to_string(), "index 0 is a string"),
        (
            page_of(upsert(json!({"op": "replace"}))).to_string(),
            "unknown \"op\"",
        ),
        (
            page_of(upsert(json!({"op": 1}))).to_string(),
            "\"op\" that is a number",
        ),
        (
            page_of(json!({"id": "t1", "data": {"title": SECRET}})).to_string(),
            "has no \"op\"",
        ),
        (page_of(json!({"op": "delete"})).to_string(), "has no \"id\""),
        (
            page_of(upsert(json!({"id": null}))).to_string(),
            "\"id\" that is null",
        ),
        (page_of(upsert(json!({"id": 1.5}))).to_string(), "not an integer"),
        (
            page_of(upsert(json!({"id": true}))).to_string(),
            "\"id\" that is a boolean",
        ),
        (
            page_of(upsert(json!({"id": ""}))).to_string(),
            "not a valid record id",
        ),
        (
            page_of(upsert(json!({"id": "a\u{0}b"}))).to_string(),
            "not a valid record id",
        ),
        (
            page_of(upsert(json!({"id": "x".repeat(300)}))).to_string(),
            "not a valid record id",
        ),
        (
            page_of(json!({"op": "upsert", "id": "t1"})).to_string(),
            "upsert without \"data\"",
        ),
        (
            page_of(upsert(json!({"data": [SECRET]}))).to_string(),
            "\"data\" is an array",
        ),
        (
            page_of(upsert(json!({"version": 3}))).to_string(),
            "\"version\" that is a number",
        ),
        (
            json!({"changes": [], "cursor": ""}).to_string(),
            "\"cursor\" is unusable",
        ),
        (
            json!({"changes": [], "cursor": "a\nb"}).to_string(),
            "\"cursor\" is unusable",
        ),
        (
            json!({"changes": [], "cursor": "x".repeat(5000)}).to_string(),
            "\"cursor\" is unusable",
        ),
        (
            json!({"changes": [], "cursor": ["1"]}).to_string(),
            "\"cursor\" is an array",
        ),
        (
            json!({"changes": [], "cursor": "3", "more": "yes"}).to_string(),
            "\"more\" is a string",
        ),
        (
            json!({"changes": [], "more": true}).to_string(),
            "without a \"cursor\"",
        ),
        (
            json!({"changes": [upsert(json!({}))]}).to_string(),
            "has no \"cursor\"",
        ),
        (
            json!({"changes": [upsert(json!({}))], "cursor": "10", "more": true}).to_string(),
            "no progress",
        ),
        (
            json!({"changes": [upsert(json!({}))], "cursor": "9"}).to_string(),
            "went backwards (9 after 10)",
        ),
        (
            json!({"changes": [upsert(json!({}))], "cursor": 9}).to_string(),
            "went backwards",
        ),
    ];
    for (body, reason) in cases {
        let server =
            answering(ResponseTemplate::new(200).set_body_raw(body.clone(), "application/json")).await;
        let error = assert_permanent(pull(&feed(&server), Some(&cursor("10")), 10).await, reason);
        assert_eq!(error.status(), Some(200), "{body}");
    }
    // The same cursor without more is no progress but no loop either, and
    // cursors that are not numbers are never compared.
    for (body, sent) in [
        (json!({"changes": [], "cursor": "10"}), "10"),
        (json!({"changes": [], "cursor": "b", "more": true}), "c"),
    ] {
        let server = answering(ResponseTemplate::new(200).set_body_json(body)).await;
        page(&feed(&server), Some(&cursor(sent)), 10).await;
    }
}

#[tokio::test]
async fn failed_pulls_are_classified_and_never_possibly_applied() {
    let cases = [
        (
            ResponseTemplate::new(503).insert_header("Retry-After", "7"),
            ErrorKind::Transient,
            Some(Duration::from_secs(7)),
        ),
        (ResponseTemplate::new(500), ErrorKind::Transient, None),
        (
            ResponseTemplate::new(429).insert_header("Retry-After", "3"),
            ErrorKind::Transient,
            Some(Duration::from_secs(3)),
        ),
        (ResponseTemplate::new(404), ErrorKind::Permanent, None),
        (ResponseTemplate::new(403), ErrorKind::Permanent, None),
        (ResponseTemplate::new(409), ErrorKind::Permanent, None),
        (ResponseTemplate::new(401), ErrorKind::Permanent, None),
        (
            ResponseTemplate::new(200).set_body_raw("<html><body>Log in</body></html>", "text/html"),
            ErrorKind::Transient,
            None,
        ),
    ];
    for (template, kind, retry_after) in cases {
        let server = answering(template).await;
        let error = pull(&feed(&server), None, 10).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{error}");
        assert_eq!(error.retry_after(), retry_after, "{error}");
        assert!(!error.possibly_applied(), "{error}");
    }
    let error = pull(&feed(&answering(ResponseTemplate::new(404)).await), None, 10)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("pull route is missing"), "{error}");
}

/// Stale credentials until refreshed; counts the refreshes.
struct Tokens(Arc<AtomicUsize>);

#[async_trait]
impl AuthHook for Tokens {
    async fn headers(&self) -> Result<HeaderMap, ApiError> {
        let token = if self.0.load(Ordering::SeqCst) > 0 {
            "Bearer fresh"
        } else {
            "Bearer stale"
        };
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static(token));
        Ok(headers)
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_401_refreshes_the_credentials_once_and_pulls_again() {
    let server = MockServer::start().await;
    Mock::given(header("authorization", "Bearer fresh"))
        .and(query_param("limit", "10"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"changes": []})))
        .mount(&server)
        .await;
    Mock::given(header("authorization", "Bearer stale"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let refreshed = Arc::new(AtomicUsize::new(0));
    let adapter = builder(&server)
        .auth(Tokens(Arc::clone(&refreshed)))
        .pull("tasks", PullStrategy::change_feed())
        .build()
        .unwrap();
    page(&adapter, None, 10).await;
    assert_eq!(refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(lines(&server).await.len(), 2);
}

#[tokio::test]
async fn an_entity_without_a_strategy_is_refused_without_a_request() {
    let server = answering(ResponseTemplate::new(200)).await;
    let adapter = builder(&server).build().unwrap();
    assert_permanent(
        pull(&adapter, None, 10).await,
        "no pull strategy is declared for the entity \"tasks\"",
    );
    assert!(lines(&server).await.is_empty());
}

#[tokio::test]
async fn declared_strategies_are_checked_and_listed() {
    let adapter = HttpSyncApiAdapter::builder("http://127.0.0.1:9")
        .pull("tasks", PullStrategy::snapshot())
        .pull("notes", PullStrategy::filtered_list("updated_at"))
        .pull("tasks", PullStrategy::change_feed())
        .build()
        .unwrap();
    let names: Vec<String> = adapter
        .pulled_entities()
        .iter()
        .map(|name| name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["notes", "tasks"]);
    let bad = [
        (
            "tasks",
            PullStrategy::from(PullStrategy::change_feed().route("tasks/changes")),
            "must start with '/'",
        ),
        (
            "",
            PullStrategy::from(PullStrategy::change_feed()),
            "must not be empty",
        ),
        (
            "tasks",
            PullStrategy::from(PullStrategy::snapshot().items("results")),
            "must start with '/'",
        ),
    ];
    for (name, strategy, reason) in bad {
        match HttpSyncApiAdapter::builder("http://127.0.0.1:9")
            .pull(name, strategy)
            .build()
        {
            Err(NetError::InvalidShape {
                entity,
                reason: found,
            }) => {
                assert_eq!(entity.as_deref(), Some(name));
                assert!(found.contains(reason), "{found}");
            }
            other => panic!("{other:?}"),
        }
    }
}
