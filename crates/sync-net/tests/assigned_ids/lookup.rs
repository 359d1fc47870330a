//! `find_created`: the record a create under a temporary id made, found by
//! the shape's local-id field when the create's answer was lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use sync_core::{ApiError, CreatedLookup, ErrorKind, OperationId, RecordId, ServerCopy, SyncApiAdapter};
use sync_net::{AuthHook, HttpSyncApiAdapter, RequestKind, RequestShape, VersionSource};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::{object, tasks};

fn json_server() -> RequestShape {
    RequestShape::json_server().local_id_field("client_ref")
}

async fn server_answering(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

async fn find(adapter: &HttpSyncApiAdapter, temporary: &RecordId) -> Result<CreatedLookup, ApiError> {
    adapter
        .find_created(&tasks(), temporary, &OperationId::new("op-1").unwrap())
        .await
}

/// The lookup of a fresh temporary id against a server answering `answer`
/// (to every request), with `shape`; also the server and the id.
async fn lookup(
    answer: ResponseTemplate,
    shape: RequestShape,
) -> (Result<CreatedLookup, ApiError>, MockServer, RecordId) {
    let server = server_answering(answer).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(shape)
        .build()
        .unwrap();
    let temporary = RecordId::temporary();
    let found = find(&adapter, &temporary).await;
    (found, server, temporary)
}

/// A server's record created under `temporary`.
fn record(id: Value, temporary: &RecordId) -> Value {
    json!({"id": id, "title": "secret-title", "client_ref": temporary.as_str(), "rev": 3})
}

/// A list answer holding `records`, made when the temporary id is known.
type Answer = fn(&RecordId) -> Value;

/// The lookup against a server whose list answer is built from the
/// temporary id the adapter is given.
async fn lookup_listing(
    status: u16,
    answer: Answer,
    shape: RequestShape,
) -> (Result<CreatedLookup, ApiError>, Vec<Request>, RecordId) {
    let server = MockServer::start().await;
    let temporary = RecordId::temporary();
    Mock::given(wiremock::matchers::any())
        .respond_with(
            ResponseTemplate::new(status)
                .insert_header("ETag", "\"list-tag\"")
                .set_body_json(answer(&temporary)),
        )
        .mount(&server)
        .await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(shape)
        .build()
        .unwrap();
    let found = find(&adapter, &temporary).await;
    (found, server.received_requests().await.unwrap(), temporary)
}

#[tokio::test]
async fn one_record_is_found_with_its_id_and_copy() {
    let (found, requests, temporary) = lookup_listing(
        200,
        |temporary| json!([record(json!("a3f9"), temporary)]),
        json_server(),
    )
    .await;
    assert_eq!(
        found.unwrap(),
        CreatedLookup::Found {
            id: json!("a3f9"),
            copy: ServerCopy {
                data: object(record(json!("a3f9"), &temporary)),
                // The list's ETag is not the record's.
                version: None,
            },
        }
    );
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method.as_str(), "GET");
    assert_eq!(requests[0].url.path(), "/tasks");
    assert_eq!(
        requests[0].url.query(),
        Some(format!("client_ref={}", temporary.as_str()).as_str())
    );
    assert!(requests[0].headers.get("idempotency-key").is_none(), "a read");
    // A numeric id, and a version field.
    let (found, _, temporary) = lookup_listing(
        200,
        |temporary| json!([record(json!(17), temporary)]),
        json_server().version(VersionSource::Field("rev".into())),
    )
    .await;
    assert_eq!(
        found.unwrap(),
        CreatedLookup::Found {
            id: json!(17),
            copy: ServerCopy {
                data: object(record(json!(17), &temporary)),
                version: Some("\"3\"".to_owned()),
            },
        }
    );
}

#[tokio::test]
async fn no_record_is_absent() {
    let (found, ..) = lookup(ResponseTemplate::new(200).set_body_json(json!([])), json_server()).await;
    assert_eq!(found.unwrap(), CreatedLookup::Absent);
}

#[tokio::test]
async fn several_records_are_a_permanent_error_possibly_applied() {
    let (found, _, temporary) = lookup_listing(
        200,
        |temporary| json!([record(json!(1), temporary), record(json!(2), temporary)]),
        json_server(),
    )
    .await;
    let error = found.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permanent);
    assert!(error.possibly_applied());
    assert_eq!(error.status(), Some(200));
    let message = error.to_string();
    assert!(message.contains("several records"), "{message}");
    assert!(message.contains("ignores idempotency keys"), "{message}");
    assert!(message.contains("delete the others"), "{message}");
    for secret in [temporary.as_str(), "secret-title", "client_ref="] {
        assert!(!message.contains(secret), "{secret} in {message}");
    }
}

#[tokio::test]
async fn a_paginated_answer_is_read_at_the_results_pointer() {
    let shape = RequestShape::django_rest_framework()
        .local_id_field("client_ref")
        .lookup_results("/results");
    let (found, requests, temporary) = lookup_listing(
        200,
        |temporary| json!({"count": 1, "next": null, "results": [record(json!(5), temporary)]}),
        shape.clone(),
    )
    .await;
    match found.unwrap() {
        CreatedLookup::Found { id, copy } => {
            assert_eq!(id, json!(5));
            assert_eq!(copy.data, object(record(json!(5), &temporary)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(requests[0].url.path(), "/tasks/");
    let (found, ..) = lookup_listing(
        200,
        |_| json!({"count": 0, "next": null, "results": []}),
        shape.clone(),
    )
    .await;
    assert_eq!(found.unwrap(), CreatedLookup::Absent);
    // Without the pointer, the page object is no array.
    let (found, ..) = lookup_listing(
        200,
        |temporary| json!({"count": 1, "results": [record(json!(5), temporary)]}),
        RequestShape::django_rest_framework().local_id_field("client_ref"),
    )
    .await;
    let error = found.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permanent);
    assert!(error.to_string().contains("not an array"), "{error}");
}

#[tokio::test]
async fn without_a_local_id_field_the_lookup_is_unsupported_and_sends_nothing() {
    let (found, server, _) = lookup(
        ResponseTemplate::new(200).set_body_json(json!([])),
        RequestShape::rest(),
    )
    .await;
    assert_eq!(found.unwrap(), CreatedLookup::Unsupported);
    assert!(server.received_requests().await.unwrap().is_empty());
    // A shape of its own for the entity decides.
    let server = server_answering(ResponseTemplate::new(200).set_body_json(json!([]))).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(json_server())
        .entity_shape("tasks", RequestShape::rest())
        .build()
        .unwrap();
    assert_eq!(
        find(&adapter, &RecordId::temporary()).await.unwrap(),
        CreatedLookup::Unsupported
    );
}

#[tokio::test]
async fn refusals_are_classified_by_status() {
    let cases = [
        (404, ErrorKind::Permanent, "lookup route is missing"),
        (410, ErrorKind::Permanent, "lookup route is missing"),
        (500, ErrorKind::Transient, "HTTP 500"),
        (429, ErrorKind::Transient, "HTTP 429"),
        (403, ErrorKind::Permanent, "HTTP 403"),
        (401, ErrorKind::Permanent, "HTTP 401"),
    ];
    for (status, kind, text) in cases {
        let (found, _, temporary) = lookup(
            ResponseTemplate::new(status).set_body_string("secret-body"),
            json_server(),
        )
        .await;
        let error = found.unwrap_err();
        assert_eq!(error.kind(), kind, "{status}");
        assert_eq!(error.status(), Some(status));
        assert_eq!(error.request(), Some("GET /tasks"), "no query: it holds the id");
        let message = error.to_string();
        assert!(message.contains(text), "{message}");
        for secret in [temporary.as_str(), "secret-body"] {
            assert!(!message.contains(secret), "{secret} in {message}");
        }
    }
}

#[tokio::test]
async fn an_answer_that_is_no_list_is_a_permanent_error_naming_the_shape() {
    let answers = [
        ResponseTemplate::new(200).set_body_string("secret-text"),
        ResponseTemplate::new(200),
        ResponseTemplate::new(200).set_body_json(json!({"secret": "x"})),
        ResponseTemplate::new(200).set_body_json(json!(["secret"])),
    ];
    for answer in answers {
        let (found, ..) = lookup(answer, json_server()).await;
        let error = found.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Permanent);
        assert!(!error.possibly_applied());
        let message = error.to_string();
        assert!(message.contains("lookup route"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
    // Quoted when the app opted in.
    let server = server_answering(ResponseTemplate::new(200).set_body_string("secret-text")).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(json_server())
        .include_response_body_in_errors(true)
        .build()
        .unwrap();
    let error = find(&adapter, &RecordId::temporary()).await.unwrap_err();
    assert!(error.to_string().contains("secret-text"), "{error}");
}

#[tokio::test]
async fn a_captive_portal_page_is_transient() {
    let page = ResponseTemplate::new(200).set_body_raw("<html><body>Log in</body></html>", "text/html");
    let (found, ..) = lookup(page, json_server()).await;
    let error = found.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert!(error.to_string().contains("captive portal"), "{error}");
}

#[tokio::test]
async fn a_record_without_a_usable_id_is_a_permanent_error() {
    for id in [json!(null), json!(1.5), json!({"a": 1})] {
        let server = MockServer::start().await;
        let temporary = RecordId::temporary();
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([record(id.clone(), &temporary)])))
            .mount(&server)
            .await;
        let adapter = HttpSyncApiAdapter::builder(server.uri())
            .shape(json_server())
            .build()
            .unwrap();
        let error = find(&adapter, &temporary).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Permanent, "{id}");
        assert!(error.to_string().contains("no usable id"), "{error}");
    }
    let (found, ..) = lookup_listing(
        200,
        |temporary| json!([{"title": "t", "client_ref": temporary.as_str()}]),
        json_server(),
    )
    .await;
    assert!(found.unwrap_err().to_string().contains("no usable id"));
}

#[tokio::test]
async fn records_of_other_temporary_ids_mean_the_server_does_not_filter() {
    // A server ignoring the filter answers its whole list: taking its only
    // record for this one would rename the record to another's id.
    let (found, ..) = lookup(
        ResponseTemplate::new(200).set_body_json(json!([record(json!(1), &RecordId::temporary())])),
        json_server(),
    )
    .await;
    let error = found.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permanent);
    assert!(error.to_string().contains("does not filter"), "{error}");
}

/// json-server's filter also answers records without the field, and a
/// record a replacing update stripped of it has it no more: such records
/// are not this one, and are left out (before, they made every lookup of
/// the collection a permanent error, and every lost create parked).
#[tokio::test]
async fn records_without_the_field_are_not_this_one() {
    let temporary = RecordId::temporary();
    let (found, ..) = lookup(
        ResponseTemplate::new(200)
            .set_body_json(json!([{"id": 1, "title": "t"}, {"id": 2, "client_ref": null}])),
        json_server(),
    )
    .await;
    assert_eq!(found.unwrap(), CreatedLookup::Absent);
    let server = server_answering(ResponseTemplate::new(200).set_body_json(json!([
        {"id": 1, "title": "t"},
        record(json!(7), &temporary),
    ])))
    .await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(json_server())
        .build()
        .unwrap();
    match find(&adapter, &temporary).await.unwrap() {
        CreatedLookup::Found { id, .. } => assert_eq!(id, json!(7)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_field_name_and_the_value_are_encoded_as_query_parts() {
    let server = server_answering(ResponseTemplate::new(200).set_body_json(json!([]))).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(RequestShape::rest().local_id_field("client ref"))
        .build()
        .unwrap();
    // Any id is looked up as given; a temporary id needs no encoding.
    let odd: RecordId = "a b&c=d/é".parse().unwrap();
    assert_eq!(find(&adapter, &odd).await.unwrap(), CreatedLookup::Absent);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.path(), "/tasks");
    assert_eq!(
        requests[0].url.query(),
        Some("client%20ref=a%20b%26c%3Dd%2F%C3%A9")
    );
}

#[tokio::test]
async fn a_lookup_route_of_the_apps_own_is_followed() {
    let shape = RequestShape::postgrest()
        .local_id_field("client_ref")
        .lookup_route("/{entity}?client_ref=eq.{local_id}&select=*");
    let (found, requests, temporary) =
        lookup_listing(200, |temporary| json!([record(json!(4), temporary)]), shape).await;
    assert!(matches!(found.unwrap(), CreatedLookup::Found { .. }));
    assert_eq!(
        requests[0].url.query(),
        Some(format!("client_ref=eq.{}&select=*", temporary.as_str()).as_str())
    );
}

/// Hands out a bearer token, counting the calls.
struct Token {
    calls: AtomicUsize,
}

#[async_trait]
impl AuthHook for Token {
    async fn headers(&self) -> Result<HeaderMap, ApiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer lookup-token"));
        Ok(headers)
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

struct Shared(Arc<Token>);

#[async_trait]
impl AuthHook for Shared {
    async fn headers(&self) -> Result<HeaderMap, ApiError> {
        self.0.headers().await
    }

    async fn refresh(&self) -> Result<(), ApiError> {
        self.0.refresh().await
    }
}

#[tokio::test]
async fn the_lookup_carries_default_headers_fetch_headers_and_credentials() {
    let server = server_answering(ResponseTemplate::new(200).set_body_json(json!([]))).await;
    let token = Arc::new(Token {
        calls: AtomicUsize::new(0),
    });
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(json_server().header(RequestKind::Fetch, "X-Read", "yes"))
        .default_header("X-App", "tasks-app")
        .auth(Shared(Arc::clone(&token)))
        .build()
        .unwrap();
    find(&adapter, &RecordId::temporary()).await.unwrap();
    assert_eq!(token.calls.load(Ordering::SeqCst), 1);
    let requests = server.received_requests().await.unwrap();
    let headers = &requests[0].headers;
    assert_eq!(headers.get("authorization").unwrap(), "Bearer lookup-token");
    assert_eq!(headers.get("x-app").unwrap(), "tasks-app");
    assert_eq!(headers.get("x-read").unwrap(), "yes");
    assert_eq!(headers.get("accept").unwrap(), "application/json");
}
