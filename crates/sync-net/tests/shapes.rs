//! Request shapes against loopback wiremock servers answering as the real
//! servers do (their answers are recorded in `tests/servers/README.md`):
//! each preset's methods, routes and headers, and how its answers are read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use serde_json::{Value, json};
use sync_core::{EntityName, ErrorKind, JsonObject, OperationId, RecordId, SyncApiAdapter};
use sync_net::{
    AnswerMatch, AnswerShape, BodyShape, HttpMethod, HttpSyncApiAdapter, IdType, NetError, RequestKind,
    RequestShape,
};
use wiremock::matchers::{any, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn entity(name: &str) -> EntityName {
    name.parse().unwrap()
}

fn id(value: &str) -> RecordId {
    value.parse().unwrap()
}

fn object(value: Value) -> JsonObject {
    value.as_object().cloned().unwrap()
}

fn op() -> OperationId {
    OperationId::new("op-1").unwrap()
}

fn shaped(server: &MockServer, shape: RequestShape) -> HttpSyncApiAdapter {
    HttpSyncApiAdapter::builder(server.uri())
        .shape(shape)
        .build()
        .unwrap()
}

async fn answering(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(template).mount(&server).await;
    server
}

/// Method, path and query of a request, as `PATCH /tasks?id=eq.1`.
fn line(request: &Request) -> String {
    match request.url.query() {
        Some(query) => format!("{} {}?{query}", request.method, request.url.path()),
        None => format!("{} {}", request.method, request.url.path()),
    }
}

/// One create, update, delete and fetch of record `7` through `shape`.
async fn every_request(shape: RequestShape) -> Vec<Request> {
    let server = answering(ResponseTemplate::new(200).set_body_json(json!({}))).await;
    let adapter = shaped(&server, shape);
    let (tasks, seven, data) = (entity("tasks"), id("7"), object(json!({"id": "7"})));
    // The answers do not matter here, only the requests.
    let _ = adapter.create(&tasks, &seven, &data, &op()).await;
    let _ = adapter.update(&tasks, &seven, &data, &op()).await;
    let _ = adapter.delete(&tasks, &seven, &op()).await;
    let _ = adapter.fetch_remote(&tasks, &seven).await;
    server.received_requests().await.unwrap()
}

#[tokio::test]
async fn every_preset_sends_its_own_methods_and_routes() {
    let cases = [
        (
            RequestShape::rest(),
            ["POST /tasks", "PUT /tasks/7", "DELETE /tasks/7", "GET /tasks/7"],
        ),
        (
            RequestShape::json_server(),
            ["POST /tasks", "PUT /tasks/7", "DELETE /tasks/7", "GET /tasks/7"],
        ),
        (
            RequestShape::django_rest_framework(),
            [
                "POST /tasks/",
                "PUT /tasks/7/",
                "DELETE /tasks/7/",
                "GET /tasks/7/",
            ],
        ),
        (
            RequestShape::pocketbase(),
            [
                "POST /tasks/records",
                "PATCH /tasks/records/7",
                "DELETE /tasks/records/7",
                "GET /tasks/records/7",
            ],
        ),
        (
            RequestShape::directus(),
            ["POST /tasks", "PATCH /tasks/7", "DELETE /tasks/7", "GET /tasks/7"],
        ),
        (
            RequestShape::postgrest(),
            [
                "POST /tasks",
                "PATCH /tasks?id=eq.7",
                "DELETE /tasks?id=eq.7",
                "GET /tasks?id=eq.7",
            ],
        ),
    ];
    for (shape, expected) in cases {
        let requests = every_request(shape).await;
        let lines: Vec<String> = requests.iter().map(line).collect();
        assert_eq!(lines, expected);
    }
}

/// PostgREST needs `Prefer: return=representation` on writes to answer the
/// row; a header meant for one kind of request rides on no other, and the
/// app's own `Accept` is kept.
#[tokio::test]
async fn headers_of_a_request_kind_ride_on_that_kind_only() {
    let shape = RequestShape::postgrest().header(RequestKind::Fetch, "Accept-Profile", "api");
    let server = answering(ResponseTemplate::new(200).set_body_json(json!([]))).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(shape)
        .default_header("Accept", "application/vnd.pgrst.object+json")
        .build()
        .unwrap();
    let (tasks, seven, data) = (entity("tasks"), id("7"), object(json!({"id": "7"})));
    let _ = adapter.create(&tasks, &seven, &data, &op()).await;
    let _ = adapter.fetch_remote(&tasks, &seven).await;
    let requests = server.received_requests().await.unwrap();
    let header = |request: &Request, name: &str| {
        request
            .headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header(&requests[0], "prefer").as_deref(),
        Some("return=representation")
    );
    assert_eq!(header(&requests[0], "accept-profile"), None);
    assert_eq!(header(&requests[1], "prefer"), None);
    assert_eq!(header(&requests[1], "accept-profile").as_deref(), Some("api"));
    for request in &requests {
        assert_eq!(
            header(request, "accept").as_deref(),
            Some("application/vnd.pgrst.object+json")
        );
    }
}

#[tokio::test]
async fn directus_answers_are_unwrapped_and_its_403_means_absent() {
    let record = json!({"id": "7", "title": "a", "date_created": "2026-12-02T18:00:00Z"});
    let server = answering(ResponseTemplate::new(200).set_body_json(json!({"data": record}))).await;
    let adapter = shaped(&server, RequestShape::directus());
    let (tasks, seven) = (entity("tasks"), id("7"));
    let sent = object(json!({"id": "7", "title": "a"}));
    let created = adapter.create(&tasks, &seven, &sent, &op()).await.unwrap();
    assert_eq!(created, Some(object(record.clone())));
    assert_eq!(
        adapter.fetch_remote(&tasks, &seven).await.unwrap(),
        Some(object(record))
    );

    let forbidden = json!({"errors": [{"message": "You don't have permission to access this.", "extensions": {"code": "FORBIDDEN"}}]});
    let server = answering(ResponseTemplate::new(403).set_body_json(forbidden)).await;
    let adapter = shaped(&server, RequestShape::directus());
    assert_eq!(adapter.fetch_remote(&tasks, &seven).await.unwrap(), None);
    let error = adapter.update(&tasks, &seven, &sent, &op()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    // A 403 to a delete may be a token without the right: never "done".
    let error = adapter.delete(&tasks, &seven, &op()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permanent, "{error}");

    let taken = json!({"errors": [{"message": "Value for field \"id\" in collection \"tasks\" has to be unique.", "extensions": {"code": "RECORD_NOT_UNIQUE"}}]});
    let server = answering(ResponseTemplate::new(400).set_body_json(taken)).await;
    let error = shaped(&server, RequestShape::directus())
        .create(&tasks, &seven, &sent, &op())
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind(), error.possibly_applied()),
        (ErrorKind::AlreadyExists, true),
        "{error}"
    );
    // Directus answers a PATCH of a missing record 204 without a body (a
    // real update answers 200 with the record).
    let server = answering(ResponseTemplate::new(204)).await;
    let error = shaped(&server, RequestShape::directus())
        .update(&tasks, &seven, &sent, &op())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    // ... but a 204 to a delete is done (Directus 11 answers it either way).
    shaped(&server, RequestShape::directus())
        .delete(&tasks, &seven, &op())
        .await
        .unwrap();
    // A 403 without Directus's code is a real refusal, not "absent".
    let server = answering(ResponseTemplate::new(403)).await;
    let error = shaped(&server, RequestShape::directus())
        .delete(&tasks, &seven, &op())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permanent, "{error}");
}

/// Django answers a route it does not know with an HTML 404 and DRF a
/// missing record with `{"detail": ...}`: only the second is "absent".
#[tokio::test]
async fn drf_tells_a_missing_record_from_a_wrong_route() {
    let (tasks, seven) = (entity("tasks"), id("7"));
    let sent = object(json!({"id": "7"}));
    let server = answering(
        ResponseTemplate::new(404).set_body_json(json!({"detail": "No Task matches the given query."})),
    )
    .await;
    let adapter = shaped(&server, RequestShape::django_rest_framework());
    assert_eq!(adapter.fetch_remote(&tasks, &seven).await.unwrap(), None);
    assert_eq!(
        adapter.delete(&tasks, &seven, &op()).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let server = answering(ResponseTemplate::new(404).set_body_raw(
        "<h1>Not Found</h1><p>The requested resource was not found.</p>",
        "text/html",
    ))
    .await;
    let adapter = shaped(&server, RequestShape::django_rest_framework());
    for error in [
        adapter.fetch_remote(&tasks, &seven).await.unwrap_err(),
        adapter.delete(&tasks, &seven, &op()).await.unwrap_err(),
        adapter.update(&tasks, &seven, &sent, &op()).await.unwrap_err(),
    ] {
        assert_eq!(error.kind(), ErrorKind::Permanent, "{error}");
        assert!(
            error.message().contains("does not declare as \"absent\""),
            "{error}"
        );
    }

    let server = answering(
        ResponseTemplate::new(400).set_body_json(json!({"id": ["task with this id already exists."]})),
    )
    .await;
    let error = shaped(&server, RequestShape::django_rest_framework())
        .create(&tasks, &seven, &sent, &op())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AlreadyExists, "{error}");
    let server =
        answering(ResponseTemplate::new(400).set_body_json(json!({"title": ["This field is required."]})))
            .await;
    let error = shaped(&server, RequestShape::django_rest_framework())
        .create(&tasks, &seven, &sent, &op())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permanent, "{error}");
}

#[tokio::test]
async fn pocketbase_absent_and_taken_answers() {
    let (tasks, id15) = (entity("tasks"), id("abcdefghij12345"));
    let sent = object(json!({"id": "abcdefghij12345"}));
    let wrong_route = json!({"data": {}, "message": "Missing collection context.", "status": 404});
    let server = answering(ResponseTemplate::new(404).set_body_json(wrong_route)).await;
    let error = shaped(&server, RequestShape::pocketbase())
        .fetch_remote(&tasks, &id15)
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::Permanent,
        "a wrong route proves nothing: {error}"
    );
    let missing = json!({"data": {}, "message": "The requested resource wasn't found.", "status": 404});
    let server = answering(ResponseTemplate::new(404).set_body_json(missing)).await;
    let adapter = shaped(&server, RequestShape::pocketbase());
    assert_eq!(adapter.fetch_remote(&tasks, &id15).await.unwrap(), None);
    assert_eq!(
        adapter
            .update(&tasks, &id15, &sent, &op())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let taken = json!({"data": {"id": {"code": "validation_not_unique", "message": "Value must be unique."}}, "message": "Failed to create record.", "status": 400});
    let server = answering(ResponseTemplate::new(400).set_body_json(taken)).await;
    let error = shaped(&server, RequestShape::pocketbase())
        .create(&tasks, &id15, &sent, &op())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AlreadyExists, "{error}");
}

/// PostgREST answers arrays; with `return=representation`, an empty one to
/// an update or delete means no row matched.
#[tokio::test]
async fn postgrest_arrays_hold_the_row_or_say_it_is_absent() {
    let (tasks, seven) = (entity("tasks"), id("7"));
    let sent = object(json!({"id": "7", "title": "a"}));
    let row = json!({"id": "7", "title": "a", "updated_at": "2026-12-02"});
    let server = answering(ResponseTemplate::new(200).set_body_json(json!([row]))).await;
    let adapter = shaped(&server, RequestShape::postgrest());
    assert_eq!(
        adapter.update(&tasks, &seven, &sent, &op()).await.unwrap(),
        Some(object(row.clone()))
    );
    adapter.delete(&tasks, &seven, &op()).await.unwrap();
    assert_eq!(
        adapter.fetch_remote(&tasks, &seven).await.unwrap(),
        Some(object(row.clone()))
    );

    let server = answering(ResponseTemplate::new(200).set_body_json(json!([]))).await;
    let adapter = shaped(&server, RequestShape::postgrest());
    assert_eq!(adapter.fetch_remote(&tasks, &seven).await.unwrap(), None);
    for error in [
        adapter.update(&tasks, &seven, &sent, &op()).await.unwrap_err(),
        adapter.delete(&tasks, &seven, &op()).await.unwrap_err(),
    ] {
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    }

    let server = answering(ResponseTemplate::new(200).set_body_json(json!([row, row]))).await;
    let error = shaped(&server, RequestShape::postgrest())
        .fetch_remote(&tasks, &seven)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permanent, "{error}");
    assert!(error.message().contains("array of 2 rows"), "{error}");

    let server = answering(ResponseTemplate::new(409).set_body_json(json!({"code": "23505"}))).await;
    let error = shaped(&server, RequestShape::postgrest())
        .create(&tasks, &seven, &sent, &op())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AlreadyExists, "{error}");
}

/// json-server matches the id in a URL as a string, so a numeric id in the
/// body would be stored as a number never found again: it goes as a
/// string, and the local document keeps its number.
#[tokio::test]
async fn json_server_ids_go_as_strings() {
    let server = answering(ResponseTemplate::new(201).set_body_json(json!({"id": "7", "title": "a"}))).await;
    let adapter = shaped(&server, RequestShape::json_server());
    let sent = object(json!({"id": 7, "title": "a"}));
    let answer = adapter
        .create(&entity("tasks"), &id("7"), &sent, &op())
        .await
        .unwrap();
    assert_eq!(answer, Some(sent));
    let requests = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body, json!({"id": "7", "title": "a"}));
}

/// An answer that is not the record (a status, an envelope the shape does
/// not name, another record, one without the id the document has) is
/// never adopted as the local document.
#[tokio::test]
async fn only_the_record_itself_is_adopted() {
    let sent = object(json!({"id": "7", "title": "a"}));
    for answer in [
        json!({"success": true}),
        json!({"data": {"id": "7", "title": "a"}}),
        json!({"id": "8", "title": "a"}),
        json!({"title": "a", "at": 1}),
        json!([{"id": "7", "title": "a"}]),
    ] {
        let server = answering(ResponseTemplate::new(200).set_body_json(answer.clone())).await;
        let adopted = shaped(&server, RequestShape::rest())
            .update(&entity("tasks"), &id("7"), &sent, &op())
            .await
            .unwrap();
        assert_eq!(adopted, None, "{answer}");
    }
    let server = answering(ResponseTemplate::new(200).set_body_json(json!({"ok": 1}))).await;
    let adopted = shaped(&server, RequestShape::rest().answer(AnswerShape::Nothing))
        .update(&entity("tasks"), &id("7"), &sent, &op())
        .await
        .unwrap();
    assert_eq!(adopted, None);
}

#[tokio::test]
async fn wrapped_bodies_and_chained_settings() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"item": {"key": "7", "v": 2}})))
        .mount(&server)
        .await;
    let shape = RequestShape::rest()
        .method(RequestKind::Update, HttpMethod::Patch)
        .route(RequestKind::Update, "/v2/{entity}/{id}")
        .body(BodyShape::Wrapped("item".into()))
        .answer(AnswerShape::Pointer("/item".into()))
        .id_field("key")
        .id_type(IdType::AsSent);
    let adapter = shaped(&server, shape);
    let sent = object(json!({"key": "7", "v": 1}));
    let adopted = adapter
        .update(&entity("tasks"), &id("7"), &sent, &op())
        .await
        .unwrap();
    assert_eq!(adopted, Some(object(json!({"key": "7", "v": 2}))));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(line(&requests[0]), "PATCH /v2/tasks/7");
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body, json!({"item": {"key": "7", "v": 1}}));
}

#[tokio::test]
async fn an_entity_shape_overrides_the_default_for_that_entity_only() {
    let server = answering(ResponseTemplate::new(200).set_body_json(json!({}))).await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .entity_shape("notes", RequestShape::pocketbase())
        .build()
        .unwrap();
    let sent = object(json!({"id": "7"}));
    adapter
        .update(&entity("tasks"), &id("7"), &sent, &op())
        .await
        .unwrap();
    adapter
        .update(&entity("notes"), &id("7"), &sent, &op())
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let lines: Vec<String> = requests.iter().map(line).collect();
    assert_eq!(lines, ["PUT /tasks/7", "PATCH /notes/records/7"]);
}

#[test]
fn a_shape_that_cannot_work_is_refused_at_build() {
    let error = HttpSyncApiAdapter::builder("http://127.0.0.1:1")
        .entity_shape(
            "notes",
            RequestShape::rest().route(RequestKind::Delete, "/{entity}"),
        )
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, NetError::InvalidShape { entity: Some(name), .. } if name == "notes"),
        "{error}"
    );
    assert!(error.to_string().contains("must hold {id}"), "{error}");
    let error = HttpSyncApiAdapter::builder("http://127.0.0.1:1")
        .shape(RequestShape::rest().absent_answers([RequestKind::Create], [AnswerMatch::status(404)]))
        .build()
        .unwrap_err();
    assert!(
        matches!(error, NetError::InvalidShape { entity: None, .. }),
        "{error}"
    );
}

/// Servers that create with `PUT /{entity}/{id}` (CouchDB-style) name the
/// id in the create's route; the app's own Content-Type stands.
#[tokio::test]
async fn a_create_route_may_name_the_id_and_the_apps_content_type_stands() {
    let server = answering(ResponseTemplate::new(201)).await;
    let shape = RequestShape::rest()
        .method(RequestKind::Create, HttpMethod::Put)
        .route(RequestKind::Create, "/{entity}/{id}");
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(shape)
        .default_header("Content-Type", "application/vnd.api+json")
        .build()
        .unwrap();
    adapter
        .create(&entity("tasks"), &id("a b"), &object(json!({"id": "a b"})), &op())
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(line(&requests[0]), "PUT /tasks/a%20b");
    assert_eq!(
        requests[0].headers.get("content-type").unwrap(),
        "application/vnd.api+json"
    );
}
