//! The HTTP adapter against loopback wiremock servers: routes, encoding,
//! statuses, bodies, timeouts, auth refresh and idempotency keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue};
use serde_json::json;
use sync_core::{ApiError, EntityName, ErrorKind, JsonObject, OperationId, RecordId, SyncApiAdapter};
use sync_net::{AuthHook, HttpSyncApiAdapter, encode_query_value, encode_segment};
use wiremock::matchers::{any, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn entity(name: &str) -> EntityName {
    name.parse().unwrap()
}

fn id(value: &str) -> RecordId {
    value.parse().unwrap()
}

fn data() -> JsonObject {
    json!({ "title": "secret-payload-text", "done": false })
        .as_object()
        .cloned()
        .unwrap()
}

fn op(value: &str) -> OperationId {
    OperationId::new(value).unwrap()
}

fn adapter(server: &MockServer) -> HttpSyncApiAdapter {
    HttpSyncApiAdapter::builder(server.uri()).build().unwrap()
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

async fn answering(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(template).mount(&server).await;
    server
}

#[tokio::test]
async fn routes_follow_the_reference() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "1", "server": true })))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/tasks/1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "1" })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/tasks/1"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "1", "title": "remote" })))
        .mount(&server)
        .await;
    let adapter = adapter(&server);

    let created = adapter
        .create(&entity("tasks"), &id("1"), &data(), &op("op-1"))
        .await
        .unwrap();
    assert_eq!(created.unwrap()["server"], true);
    let updated = adapter
        .update(&entity("tasks"), &id("1"), &data(), &op("op-2"))
        .await
        .unwrap();
    assert_eq!(updated.unwrap()["id"], "1");
    adapter
        .delete(&entity("tasks"), &id("1"), &op("op-3"))
        .await
        .unwrap();
    let fetched = adapter.fetch_remote(&entity("tasks"), &id("1")).await.unwrap();
    assert_eq!(fetched.unwrap()["title"], "remote");

    let seen = requests(&server).await;
    let lines: Vec<String> = seen
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        lines,
        ["POST /tasks", "PUT /tasks/1", "DELETE /tasks/1", "GET /tasks/1"]
    );
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::Value::Object(data()),
        "the create sends the payload as JSON"
    );
    assert_eq!(seen[0].headers.get("content-type").unwrap(), "application/json");
    assert!(seen[2].body.is_empty() && seen[3].body.is_empty());
}

#[tokio::test]
async fn base_url_path_prefix_is_kept() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/tasks"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    let adapter = HttpSyncApiAdapter::builder(format!("{}/api/v2/", server.uri()))
        .build()
        .unwrap();
    assert_eq!(
        adapter
            .create(&entity("tasks"), &id("1"), &data(), &op("k"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn custom_path_builder_routes_with_a_query_string() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .path_builder(|entity, id| match (entity.as_str(), id) {
            ("tasks", Some(id)) => format!("/tasks?id={}", encode_query_value(id.as_str())),
            ("tasks", None) => "/tasks".to_owned(),
            ("profile", _) => "/v1/me".to_owned(),
            (_, id) => sync_net::default_path(entity, id),
        })
        .build()
        .unwrap();
    adapter
        .create(&entity("tasks"), &id("2"), &data(), &op("a"))
        .await
        .unwrap();
    adapter
        .update(&entity("tasks"), &id("2"), &data(), &op("b"))
        .await
        .unwrap();
    adapter
        .delete(&entity("tasks"), &id("2 & x"), &op("c"))
        .await
        .unwrap();
    adapter.fetch_remote(&entity("tasks"), &id("2")).await.unwrap();
    adapter
        .update(&entity("profile"), &id("me"), &data(), &op("d"))
        .await
        .unwrap();
    adapter
        .update(&entity("notes"), &id("7"), &data(), &op("e"))
        .await
        .unwrap();
    let lines: Vec<String> = requests(&server)
        .await
        .iter()
        .map(|r| {
            let query = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{} {}{query}", r.method, r.url.path())
        })
        .collect();
    assert_eq!(
        lines,
        [
            "POST /tasks",
            "PUT /tasks?id=2",
            "DELETE /tasks?id=2%20%26%20x",
            "GET /tasks?id=2",
            "PUT /v1/me",
            "PUT /notes/7"
        ]
    );
}

#[tokio::test]
async fn ids_cannot_escape_their_path_segment() {
    let server = answering(ResponseTemplate::new(200)).await;
    let adapter = adapter(&server);
    let ids = [
        "../x",
        "../../admin",
        "a/b",
        "a?b=c",
        "a#frag",
        "100%",
        "%2F",
        "a b",
        "ünïcödé",
        "😀",
        "a\\b",
    ];
    for raw in ids {
        adapter
            .update(&entity("tasks"), &id(raw), &data(), &op("k"))
            .await
            .unwrap();
    }
    let seen = requests(&server).await;
    assert_eq!(seen.len(), ids.len());
    for (raw, request) in ids.iter().zip(&seen) {
        let path = request.url.path();
        assert_eq!(path, format!("/tasks/{}", encode_segment(raw)), "{raw}");
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        assert_eq!(segments.len(), 2, "{raw} produced {path}");
        assert_eq!(segments[0], "tasks");
        assert_eq!(request.url.query(), None, "{raw}");
        assert_eq!(request.url.fragment(), None, "{raw}");
    }
    // Entity names are encoded the same way.
    adapter
        .create(&entity("a/b"), &id("1"), &data(), &op("k"))
        .await
        .unwrap();
    assert_eq!(requests(&server).await.last().unwrap().url.path(), "/a%2Fb");
}

#[tokio::test]
async fn dot_ids_are_refused_without_a_request() {
    let server = MockServer::start().await;
    let adapter = adapter(&server);
    for dots in [".", ".."] {
        let error = adapter
            .update(&entity("tasks"), &id(dots), &data(), &op("k"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Permanent);
        assert!(error.message().contains("configure a route"), "{error}");
        let error = adapter
            .create(&entity(dots), &id("1"), &data(), &op("k"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Permanent);
    }
    assert!(requests(&server).await.is_empty());
}

async fn update_answered(template: ResponseTemplate) -> Result<Option<JsonObject>, ApiError> {
    let server = answering(template).await;
    adapter(&server)
        .update(&entity("tasks"), &id("1"), &data(), &op("k"))
        .await
}

#[tokio::test]
async fn statuses_are_classified_for_the_engine() {
    let cases: [(u16, ErrorKind, bool); 18] = [
        (408, ErrorKind::Transient, false),
        (425, ErrorKind::Transient, false),
        (429, ErrorKind::Transient, false),
        (500, ErrorKind::Transient, true),
        (502, ErrorKind::Transient, true),
        (503, ErrorKind::Transient, true),
        (504, ErrorKind::Transient, true),
        (409, ErrorKind::Conflict, true),
        (412, ErrorKind::Conflict, false), // a refused precondition applied nothing
        (404, ErrorKind::NotFound, false),
        (410, ErrorKind::NotFound, false),
        (400, ErrorKind::Permanent, false),
        (401, ErrorKind::Permanent, false),
        (403, ErrorKind::Permanent, false),
        (405, ErrorKind::Permanent, false),
        (413, ErrorKind::Permanent, false),
        (422, ErrorKind::Permanent, false),
        (501, ErrorKind::Permanent, false),
    ];
    for (status, kind, possibly_applied) in cases {
        let error = update_answered(ResponseTemplate::new(status).set_body_string("{\"error\":\"nope\"}"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), kind, "HTTP {status}");
        assert_eq!(error.possibly_applied(), possibly_applied, "HTTP {status}");
        assert_eq!(error.status(), Some(status));
        assert_eq!(error.request(), Some("PUT /tasks/{id}"));
        assert!(
            !error.to_string().contains("nope"),
            "no body excerpt unless asked for: {error}"
        );
        assert!(
            !error.to_string().contains("secret-payload-text"),
            "no payload in errors: {error}"
        );
    }
}

#[tokio::test]
async fn retry_after_is_carried_in_both_formats() {
    let error = update_answered(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .await
        .unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let error = update_answered(ResponseTemplate::new(503).insert_header("retry-after", at.as_str()))
        .await
        .unwrap_err();
    let delay = error.retry_after().unwrap();
    assert!(
        delay > Duration::from_secs(100) && delay <= Duration::from_secs(120),
        "{delay:?}"
    );
    let error = update_answered(ResponseTemplate::new(503).insert_header("retry-after", "whenever"))
        .await
        .unwrap_err();
    assert_eq!(error.retry_after(), None);
}

#[tokio::test]
async fn response_bodies_object_empty_or_204() {
    let object = update_answered(ResponseTemplate::new(200).set_body_json(json!({ "v": 1 })))
        .await
        .unwrap();
    assert_eq!(object.unwrap()["v"], 1);
    assert_eq!(update_answered(ResponseTemplate::new(200)).await.unwrap(), None);
    assert_eq!(update_answered(ResponseTemplate::new(204)).await.unwrap(), None);
    assert_eq!(
        update_answered(ResponseTemplate::new(200).set_body_string("  \n"))
            .await
            .unwrap(),
        None
    );
}

/// 2xx bodies that are not a JSON object, as real servers send them.
const NON_OBJECT_BODIES: [&str; 9] = [
    "OK",
    "Created",
    "[]",
    "[1, 2]",
    "\"done\"",
    "null",
    "42",
    "",
    "{not json",
];

#[tokio::test]
async fn a_write_answered_2xx_with_a_non_object_body_is_applied() {
    for status in [200, 201, 202] {
        for body in NON_OBJECT_BODIES {
            let server = answering(ResponseTemplate::new(status).set_body_string(body)).await;
            let adapter = adapter(&server);
            let created = adapter
                .create(&entity("tasks"), &id("1"), &data(), &op("c"))
                .await;
            assert!(
                matches!(created, Ok(None)),
                "create answered {status} {body:?}: {created:?}"
            );
            let updated = adapter
                .update(&entity("tasks"), &id("1"), &data(), &op("u"))
                .await;
            assert!(
                matches!(updated, Ok(None)),
                "update answered {status} {body:?}: {updated:?}"
            );
            assert_eq!(requests(&server).await.len(), 2, "each sent once, not retried");
        }
    }
}

/// A captive portal on a plain-HTTP link answers a write with its login
/// page and 200: counted as applied, the change would be lost.
#[tokio::test]
async fn a_write_answered_2xx_with_an_html_page_is_not_counted_as_applied() {
    for content_type in ["text/html", "text/html; charset=utf-8", "TEXT/HTML"] {
        let server = answering(
            ResponseTemplate::new(200)
                .set_body_raw(b"<html>Sign in to the Wi-Fi</html>".to_vec(), content_type),
        )
        .await;
        let client = adapter(&server);
        for result in [
            client.create(&entity("tasks"), &id("1"), &data(), &op("c")).await,
            client.update(&entity("tasks"), &id("1"), &data(), &op("u")).await,
        ] {
            let error = result.unwrap_err();
            assert_eq!(
                (error.kind(), error.possibly_applied(), error.status()),
                (ErrorKind::Transient, true, Some(200)),
                "{content_type}: {error}"
            );
            assert!(error.message().contains("captive portal"), "{error}");
        }
        // Express's `res.send("OK")`, Flask and PHP type a plain
        // acknowledgement as HTML: that is applied.
        let server = answering(ResponseTemplate::new(200).set_body_raw(b"OK".to_vec(), content_type)).await;
        let created = adapter(&server)
            .create(&entity("tasks"), &id("1"), &data(), &op("c"))
            .await;
        assert!(matches!(created, Ok(None)), "{content_type} OK: {created:?}");
        // The check before a create, or a resolver's read: retried, not
        // parked, and nothing was written.
        let error = client.fetch_remote(&entity("tasks"), &id("1")).await.unwrap_err();
        assert_eq!(
            (error.kind(), error.possibly_applied()),
            (ErrorKind::Transient, false),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_fetch_answered_2xx_with_a_non_object_body_is_a_permanent_error() {
    for body in NON_OBJECT_BODIES {
        let server = answering(ResponseTemplate::new(200).set_body_string(body)).await;
        let error = adapter(&server)
            .fetch_remote(&entity("tasks"), &id("1"))
            .await
            .unwrap_err();
        assert_eq!(
            (error.kind(), error.possibly_applied(), error.status()),
            (ErrorKind::Permanent, false, Some(200)),
            "{body:?}: {error}"
        );
        assert!(
            error
                .message()
                .contains("must answer with the record where the request shape says it is"),
            "{body:?}: {error}"
        );
    }
}

#[tokio::test]
async fn a_huge_response_is_cut_off_with_a_clear_error() {
    let huge = format!("{{\"blob\":\"{}\"}}", "x".repeat(3 * 1024 * 1024));
    let server = answering(ResponseTemplate::new(200).set_body_string(huge)).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .max_response_bytes(1024 * 1024)
        .build()
        .unwrap();
    let error = adapter
        .update(&entity("tasks"), &id("1"), &data(), &op("k"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert!(error.message().contains("larger than 1048576 bytes"), "{error}");
}

#[tokio::test]
async fn not_found_and_gone_mean_absent_for_deletes_and_none_for_fetches() {
    for status in [404, 410] {
        let server = answering(ResponseTemplate::new(status)).await;
        let adapter = adapter(&server);
        // The engine decides whether that is done (a repeated delete) or
        // needs a fetch to confirm it (a wrong route answers 404 too).
        let error = adapter
            .delete(&entity("tasks"), &id("1"), &op("k"))
            .await
            .unwrap_err();
        assert_eq!(
            (error.kind(), error.possibly_applied(), error.status()),
            (ErrorKind::NotFound, false, Some(status))
        );
        assert_eq!(
            adapter.fetch_remote(&entity("tasks"), &id("1")).await.unwrap(),
            None
        );
        let error = adapter
            .create(&entity("tasks"), &id("1"), &data(), &op("k"))
            .await
            .unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::Permanent,
            "a missing collection route is a configuration error"
        );
        assert!(error.message().contains("check the base URL"), "{error}");
    }
}

#[tokio::test]
async fn a_slow_server_times_out_as_possibly_applied() {
    let server = answering(ResponseTemplate::new(200).set_delay(Duration::from_secs(3))).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = adapter
        .create(&entity("tasks"), &id("1"), &data(), &op("k"))
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind(), error.possibly_applied()),
        (ErrorKind::Transient, true)
    );
    assert!(error.message().contains("200 ms"), "{error}");
}

#[tokio::test]
async fn a_refused_connection_is_offline_and_not_applied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let adapter = HttpSyncApiAdapter::builder(format!("http://{address}"))
        .build()
        .unwrap();
    let error = adapter
        .create(&entity("tasks"), &id("1"), &data(), &op("k"))
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind(), error.possibly_applied()),
        (ErrorKind::Offline, false)
    );
    assert_eq!(error.request(), Some("POST /tasks"));
}

/// Personal data a server echoes back in its error answers.
const ECHOED: &str = "jane.doe@example.com";
/// A record id that is personal data itself (many apps key by e-mail or
/// account number).
const PERSONAL_ID: &str = "account-4711-jane";

/// A server answering `status` with a body that echoes [`ECHOED`].
async fn echoing(status: u16) -> MockServer {
    answering(ResponseTemplate::new(status).set_body_json(json!({
        "error": "invalid field",
        "value": ECHOED,
    })))
    .await
}

/// Every call of the adapter on the record [`PERSONAL_ID`], as errors.
async fn errors_of_every_call(adapter: &HttpSyncApiAdapter) -> Vec<ApiError> {
    let (tasks, record) = (entity("tasks"), id(PERSONAL_ID));
    vec![
        adapter
            .create(&tasks, &record, &data(), &op("c"))
            .await
            .unwrap_err(),
        adapter
            .update(&tasks, &record, &data(), &op("u"))
            .await
            .unwrap_err(),
        adapter.delete(&tasks, &record, &op("d")).await.unwrap_err(),
        adapter.fetch_remote(&tasks, &record).await.unwrap_err(),
    ]
}

#[tokio::test]
async fn errors_name_status_method_and_path_but_no_body_and_no_record_id() {
    let server = echoing(422).await;
    let errors = errors_of_every_call(&adapter(&server)).await;
    let lines: Vec<Option<&str>> = errors.iter().map(ApiError::request).collect();
    assert_eq!(
        lines,
        [
            Some("POST /tasks"),
            Some("PUT /tasks/{id}"),
            Some("DELETE /tasks/{id}"),
            Some("GET /tasks/{id}")
        ]
    );
    for error in &errors {
        let shown = format!("{error} | {error:?}");
        assert!(!shown.contains(ECHOED), "the body leaked: {shown}");
        assert!(!shown.contains(PERSONAL_ID), "the record id leaked: {shown}");
        assert!(!shown.contains("invalid field"), "the body leaked: {shown}");
        assert_eq!(error.kind(), ErrorKind::Permanent);
        assert_eq!(error.status(), Some(422));
        let text = error.to_string();
        for part in [
            "permanent",
            "HTTP 422 Unprocessable Entity",
            error.request().unwrap(),
        ] {
            assert!(text.contains(part), "{part:?} missing: {text}");
        }
    }
    assert_eq!(
        errors[1].to_string(),
        "permanent error on PUT /tasks/{id} (HTTP 422): HTTP 422 Unprocessable Entity"
    );

    // Nor when the answer is a success the adapter cannot use.
    let page = answering(ResponseTemplate::new(200).set_body_string(format!("<html>{ECHOED}</html>"))).await;
    let error = adapter(&page)
        .fetch_remote(&entity("tasks"), &id(PERSONAL_ID))
        .await
        .unwrap_err();
    let shown = format!("{error} | {error:?}");
    assert!(!shown.contains(ECHOED) && !shown.contains(PERSONAL_ID), "{shown}");

    // Nor when no answer came.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let refused = HttpSyncApiAdapter::builder(format!("http://{address}"))
        .build()
        .unwrap();
    let error = refused
        .update(&entity("tasks"), &id(PERSONAL_ID), &data(), &op("u"))
        .await
        .unwrap_err();
    assert_eq!(error.request(), Some("PUT /tasks/{id}"));
    assert!(!format!("{error} | {error:?}").contains(PERSONAL_ID), "{error:?}");
}

#[tokio::test]
async fn record_ids_are_left_out_of_custom_routes_too() {
    let server = echoing(400).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .path_builder(|entity: &EntityName, id: Option<&RecordId>| match id {
            None => format!("/v1/{}", encode_segment(entity.as_str())),
            Some(id) if entity.as_str() == "notes" => {
                format!("/v1/notes/{}.json", encode_segment(id.as_str()))
            }
            Some(id) => format!(
                "/v1/{}/{}/items?id={}",
                encode_segment(entity.as_str()),
                encode_segment(id.as_str()),
                encode_query_value(id.as_str())
            ),
        })
        .build()
        .unwrap();
    let errors = errors_of_every_call(&adapter).await;
    let lines: Vec<Option<&str>> = errors.iter().map(ApiError::request).collect();
    assert_eq!(
        lines,
        [
            Some("POST /v1/tasks"),
            Some("PUT /v1/tasks/{id}/items"),
            Some("DELETE /v1/tasks/{id}/items"),
            Some("GET /v1/tasks/{id}/items")
        ]
    );
    let error = adapter
        .update(&entity("notes"), &id(PERSONAL_ID), &data(), &op("u"))
        .await
        .unwrap_err();
    assert_eq!(error.request(), Some("PUT /v1/notes/{id}.json"));
    let spaced = adapter
        .update(&entity("notes"), &id("jane doe/1"), &data(), &op("u"))
        .await
        .unwrap_err();
    assert_eq!(spaced.request(), Some("PUT /v1/notes/{id}.json"));
}

#[tokio::test]
async fn a_bad_custom_path_is_reported_without_the_record_id() {
    let server = answering(ResponseTemplate::new(200)).await;
    for bad in [
        |id: &str| format!("tasks/{id}"),
        |id: &str| format!("/tasks/{id} unencoded"),
    ] {
        let adapter = HttpSyncApiAdapter::builder(server.uri())
            .path_builder(move |_: &EntityName, id: Option<&RecordId>| bad(id.map_or("", RecordId::as_str)))
            .build()
            .unwrap();
        let error = adapter
            .update(&entity("tasks"), &id(PERSONAL_ID), &data(), &op("u"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Permanent);
        assert!(!format!("{error} | {error:?}").contains(PERSONAL_ID), "{error}");
    }
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn the_response_body_is_in_errors_only_when_the_app_opts_in() {
    let server = echoing(422).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .include_response_body_in_errors(true)
        .build()
        .unwrap();
    for error in errors_of_every_call(&adapter).await {
        assert!(error.message().contains(ECHOED), "{error}");
        assert!(
            !error.to_string().contains(PERSONAL_ID),
            "the id stays out: {error}"
        );
    }
    let page = answering(ResponseTemplate::new(200).set_body_string(format!("<html>{ECHOED}</html>"))).await;
    let error = HttpSyncApiAdapter::builder(page.uri())
        .include_response_body_in_errors(true)
        .build()
        .unwrap()
        .fetch_remote(&entity("tasks"), &id("1"))
        .await
        .unwrap_err();
    assert!(error.message().contains(ECHOED), "{error}");
}

/// Hands out `stale` until refreshed, then `fresh`.
struct Tokens {
    refreshed: AtomicUsize,
}

#[async_trait]
impl AuthHook for Tokens {
    async fn headers(&self) -> Result<HeaderMap, ApiError> {
        let token = if self.refreshed.load(Ordering::SeqCst) > 0 {
            "fresh"
        } else {
            "stale"
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}-token")).unwrap(),
        );
        Ok(headers)
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        self.refreshed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Lets the test keep a handle on the hook given to the adapter.
struct Shared(Arc<Tokens>);

#[async_trait]
impl AuthHook for Shared {
    async fn headers(&self) -> Result<HeaderMap, ApiError> {
        self.0.headers().await
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        self.0.refresh().await
    }
}

fn tokens() -> Arc<Tokens> {
    Arc::new(Tokens {
        refreshed: AtomicUsize::new(0),
    })
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_once() {
    let server = MockServer::start().await;
    Mock::given(header("authorization", "Bearer fresh-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": true })))
        .mount(&server)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let tokens = tokens();
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .auth(Shared(Arc::clone(&tokens)))
        .build()
        .unwrap();
    let result = adapter
        .update(&entity("tasks"), &id("1"), &data(), &op("k"))
        .await
        .unwrap();
    assert_eq!(result.unwrap()["ok"], true);
    assert_eq!(tokens.refreshed.load(Ordering::SeqCst), 1);
    let seen = requests(&server).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].headers.get("idempotency-key"),
        seen[1].headers.get("idempotency-key")
    );
    // Fresh credentials now: no further refresh.
    adapter
        .update(&entity("tasks"), &id("1"), &data(), &op("k2"))
        .await
        .unwrap();
    assert_eq!(tokens.refreshed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_401_after_refresh_is_permanent_and_leaks_no_credentials() {
    let server = answering(ResponseTemplate::new(401)).await;
    let tokens = tokens();
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .auth(Shared(Arc::clone(&tokens)))
        .default_header("x-api-key", "super-secret-key")
        .build()
        .unwrap();
    let error = adapter
        .update(&entity("tasks"), &id("1"), &data(), &op("k"))
        .await
        .unwrap_err();
    assert_eq!((error.kind(), error.status()), (ErrorKind::Permanent, Some(401)));
    assert_eq!(tokens.refreshed.load(Ordering::SeqCst), 1, "refreshed once");
    assert_eq!(requests(&server).await.len(), 2, "retried once");
    let shown = format!("{error} {error:?} {adapter:?}");
    for secret in [
        "fresh-token",
        "stale-token",
        "super-secret-key",
        "secret-payload-text",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

/// An auth hook that never answers: `headers()`, or `refresh()` after a
/// 401, waits forever.
struct HungHook {
    hang_in_headers: bool,
}

#[async_trait]
impl AuthHook for HungHook {
    async fn headers(&self) -> Result<HeaderMap, ApiError> {
        if self.hang_in_headers {
            std::future::pending::<()>().await;
        }
        Ok(HeaderMap::new())
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_auth_hook_is_a_transient_error_at_its_time_limit() {
    // Nothing listens there, and nothing is sent: the hook is asked first.
    let nowhere = "http://127.0.0.1:9";
    for (limit, expected) in [
        (None, Duration::from_secs(30)),
        (Some(Duration::from_secs(5)), Duration::from_secs(5)),
    ] {
        let mut builder = HttpSyncApiAdapter::builder(nowhere).auth(HungHook {
            hang_in_headers: true,
        });
        if let Some(limit) = limit {
            builder = builder.auth_hook_timeout(limit);
        }
        let adapter = builder.build().unwrap();
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(24 * 3600),
            adapter.update(&entity("tasks"), &id("1"), &data(), &op("u")),
        )
        .await;
        let error = result.expect("the hung hook hung the request").unwrap_err();
        assert_eq!(started.elapsed(), expected, "{error}");
        assert_eq!(
            (error.kind(), error.possibly_applied()),
            (ErrorKind::Transient, false),
            "{error}"
        );
        assert_eq!(error.request(), Some("PUT /tasks/{id}"));
        assert!(error.message().contains("auth hook"), "{error}");
    }
}

#[tokio::test]
async fn a_hung_refresh_after_a_401_is_a_transient_error_at_its_time_limit() {
    let server = answering(ResponseTemplate::new(401)).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .auth(HungHook {
            hang_in_headers: false,
        })
        .auth_hook_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        adapter.update(&entity("tasks"), &id("1"), &data(), &op("u")),
    )
    .await;
    let error = result.expect("the hung refresh hung the request").unwrap_err();
    assert_eq!(
        (error.kind(), error.possibly_applied()),
        (ErrorKind::Transient, false),
        "{error}"
    );
    assert!(error.message().contains("200 ms"), "{error}");
    assert_eq!(requests(&server).await.len(), 1, "not sent again");
}

#[tokio::test]
async fn writes_carry_a_stable_idempotency_key_and_reads_none() {
    let server = answering(ResponseTemplate::new(200).set_body_json(json!({}))).await;
    let adapter = adapter(&server);
    let key = OperationId::generate();
    adapter
        .create(&entity("tasks"), &id("1"), &data(), &key)
        .await
        .unwrap();
    adapter
        .create(&entity("tasks"), &id("1"), &data(), &key)
        .await
        .unwrap();
    adapter
        .update(&entity("tasks"), &id("1"), &data(), &op("u-1"))
        .await
        .unwrap();
    adapter
        .delete(&entity("tasks"), &id("1"), &op("d-1"))
        .await
        .unwrap();
    adapter.fetch_remote(&entity("tasks"), &id("1")).await.unwrap();
    let keys: Vec<Option<String>> = requests(&server)
        .await
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        keys,
        [
            Some(key.to_string()),
            Some(key.to_string()),
            Some("u-1".to_owned()),
            Some("d-1".to_owned()),
            None
        ]
    );
}

#[tokio::test]
async fn the_idempotency_header_can_be_renamed_or_turned_off() {
    let server = answering(ResponseTemplate::new(200)).await;
    let renamed = HttpSyncApiAdapter::builder(server.uri())
        .idempotency_header(Some("X-Request-Id"))
        .build()
        .unwrap();
    renamed
        .update(&entity("tasks"), &id("1"), &data(), &op("r-1"))
        .await
        .unwrap();
    let off = HttpSyncApiAdapter::builder(server.uri())
        .idempotency_header(None)
        .build()
        .unwrap();
    off.update(&entity("tasks"), &id("1"), &data(), &op("o-1"))
        .await
        .unwrap();
    let seen = requests(&server).await;
    assert_eq!(seen[0].headers.get("x-request-id").unwrap(), "r-1");
    assert!(seen[0].headers.get("idempotency-key").is_none());
    assert!(
        seen[1].headers.get("idempotency-key").is_none() && seen[1].headers.get("x-request-id").is_none()
    );
}

#[tokio::test]
async fn default_headers_and_user_agent_are_sent() {
    let server = answering(ResponseTemplate::new(200)).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .default_header("x-tenant", "acme")
        .user_agent("field-app/2.1")
        .build()
        .unwrap();
    adapter
        .update(&entity("tasks"), &id("1"), &data(), &op("k"))
        .await
        .unwrap();
    let seen = requests(&server).await;
    assert_eq!(seen[0].headers.get("x-tenant").unwrap(), "acme");
    assert_eq!(seen[0].headers.get("user-agent").unwrap(), "field-app/2.1");
    assert_eq!(seen[0].headers.get("accept").unwrap(), "application/json");
}

/// Issue 13: the adapter replaced an app's own `Accept` (a vendor media
/// type such as JSON:API's, or a versioned one) with `application/json`.
#[tokio::test]
async fn the_apps_own_accept_header_is_kept() {
    let server = answering(ResponseTemplate::new(200)).await;
    let client = HttpSyncApiAdapter::builder(server.uri())
        .default_header("accept", "application/vnd.api+json")
        .build()
        .unwrap();
    client
        .update(&entity("tasks"), &id("1"), &data(), &op("k"))
        .await
        .unwrap();
    client.fetch_remote(&entity("tasks"), &id("1")).await.ok();
    for request in requests(&server).await {
        let accepts: Vec<_> = request.headers.get_all("accept").iter().collect();
        assert_eq!(
            accepts,
            ["application/vnd.api+json"],
            "{} {}",
            request.method,
            request.url
        );
    }
}

#[test]
fn bad_settings_are_reported_by_build() {
    for url in [
        "",
        "ftp://host",
        "https://user:pass@host",
        "https://host?token=1",
        "relative/path",
    ] {
        let error = HttpSyncApiAdapter::builder(url).build().unwrap_err();
        assert!(
            matches!(error, sync_net::NetError::InvalidBaseUrl { .. }),
            "{url}: {error}"
        );
    }
    let error = HttpSyncApiAdapter::builder("https://host")
        .default_header("bad header", "v")
        .build()
        .unwrap_err();
    assert!(
        matches!(error, sync_net::NetError::InvalidHeader { .. }),
        "{error}"
    );
    let error = HttpSyncApiAdapter::builder("https://host")
        .default_header("x-ok", "line\nbreak")
        .build()
        .unwrap_err();
    assert!(
        matches!(error, sync_net::NetError::InvalidHeader { .. }),
        "{error}"
    );
    let error = HttpSyncApiAdapter::builder("https://host")
        .add_root_certificate(Vec::new())
        .build()
        .unwrap_err();
    assert!(
        matches!(error, sync_net::NetError::InvalidCertificate(_)),
        "{error}"
    );
    let error = HttpSyncApiAdapter::builder("https://host")
        .add_root_certificate("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
        .build()
        .unwrap_err();
    assert!(
        matches!(error, sync_net::NetError::InvalidCertificate(_)),
        "{error}"
    );
}
