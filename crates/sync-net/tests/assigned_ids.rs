//! Server-assigned ids. A record created under a temporary id is posted
//! without it as its id (and with it in the shape's local-id field), and
//! the id the server answers with is handed to the engine; a create whose
//! answer was lost is found again by the local-id field (`find_created`,
//! in `assigned_ids/lookup.rs`).
//!
//! A server that assigns ids itself and answers the create of an ordinary
//! id with a record under another id gets a permanent error that was
//! applied, instead of the create counted done: every later change would
//! go to an id the server does not have, and re-create the record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

#[path = "assigned_ids/lookup.rs"]
mod lookup;

use serde_json::{Value, json};
use sync_core::{
    EntityName, ErrorKind, JsonObject, OperationId, RecordId, SyncApiAdapter, WriteAnswer, WriteKind,
    WriteRequest,
};
use sync_net::{AnswerShape, HttpMethod, HttpSyncApiAdapter, RequestKind, RequestShape};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn object(value: Value) -> JsonObject {
    value.as_object().cloned().unwrap()
}

async fn create_answered(
    answer: Value,
    shape: RequestShape,
) -> Result<Option<JsonObject>, sync_core::ApiError> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer))
        .mount(&server)
        .await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(shape)
        .build()
        .unwrap();
    let entity: EntityName = "tasks".parse().unwrap();
    let id: RecordId = "a1".parse().unwrap();
    adapter
        .create(
            &entity,
            &id,
            &object(json!({"id": "a1", "title": "secret-title"})),
            &OperationId::new("op").unwrap(),
        )
        .await
}

#[tokio::test]
async fn a_create_answered_under_another_id_is_a_permanent_applied_error() {
    for answer in [
        json!({"id": 17, "title": "secret-title"}),
        json!({"id": "srv-9", "title": "secret-title"}),
        json!({"id": null, "title": "secret-title"}),
    ] {
        let error = create_answered(answer.clone(), RequestShape::rest())
            .await
            .expect_err("another id");
        assert_eq!(error.kind(), ErrorKind::Permanent, "{answer}");
        assert!(error.possibly_applied(), "the server stored it: {answer}");
        assert_eq!(error.status(), Some(201));
        let message = error.to_string();
        assert!(message.contains("assigns ids itself"), "{message}");
        // It says how to configure server-assigned ids.
        assert!(message.contains("create(entity, data)"), "{message}");
        assert!(message.contains("temporary id"), "{message}");
        assert!(message.contains("RequestShape::local_id_field"), "{message}");
        for secret in ["secret-title", "17", "srv-9", "a1"] {
            assert!(!message.contains(secret), "{secret} in {message}");
        }
    }
}

#[tokio::test]
async fn a_create_answered_under_its_own_id_or_none_is_applied() {
    for answer in [
        json!({"id": "a1", "title": "secret-title", "at": 1}),
        json!({"title": "secret-title"}),
        json!({"ok": true}),
    ] {
        assert!(
            create_answered(answer.clone(), RequestShape::rest())
                .await
                .is_ok(),
            "{answer}"
        );
    }
    // A shape whose id field is another one: only that field counts.
    let keyed = RequestShape::rest().id_field("key");
    assert!(
        create_answered(json!({"id": 17, "key": "a1"}), keyed.clone())
            .await
            .is_ok(),
        "the id field is `key`"
    );
    assert!(create_answered(json!({"key": "b2"}), keyed).await.is_err());
}

fn tasks() -> EntityName {
    "tasks".parse().unwrap()
}

/// A server answering every request with `answer`, and an adapter for it.
async fn serving(answer: ResponseTemplate, shape: RequestShape) -> (MockServer, HttpSyncApiAdapter) {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(answer)
        .mount(&server)
        .await;
    let adapter = HttpSyncApiAdapter::builder(server.uri())
        .shape(shape)
        .build()
        .unwrap();
    (server, adapter)
}

/// The create of `data` under `id`, through the engine's entry point.
async fn create(
    adapter: &HttpSyncApiAdapter,
    id: &RecordId,
    data: &JsonObject,
) -> Result<WriteAnswer, sync_core::ApiError> {
    adapter
        .write(WriteRequest {
            kind: WriteKind::Create,
            entity: &tasks(),
            id,
            data,
            base: None,
            version: None,
            operation_id: &OperationId::new("op-1").unwrap(),
        })
        .await
}

/// A local document under a temporary id.
fn temporary_document() -> (RecordId, JsonObject) {
    let temporary = RecordId::temporary();
    let data = object(json!({"id": temporary.as_str(), "title": "secret-title", "done": false}));
    (temporary, data)
}

async fn sent_bodies(server: &MockServer) -> Vec<Value> {
    let requests: Vec<Request> = server.received_requests().await.unwrap();
    requests
        .iter()
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_temporary_create_posts_no_id_and_carries_the_local_id_field() {
    let (temporary, data) = temporary_document();
    let answer =
        ResponseTemplate::new(201).set_body_json(json!({"id": 17, "title": "secret-title", "done": false}));
    let (server, adapter) = serving(answer.clone(), RequestShape::rest().local_id_field("client ref")).await;
    create(&adapter, &temporary, &data).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method.as_str(), "POST");
    assert_eq!(requests[0].url.path(), "/tasks");
    assert_eq!(
        requests[0].headers.get("idempotency-key").unwrap(),
        "op-1",
        "the key still goes, for servers that honour it"
    );
    assert_eq!(
        sent_bodies(&server).await,
        [json!({"title": "secret-title", "done": false, "client ref": temporary.as_str()})]
    );
    // Without a local-id field: no id, nothing else added. json-server's
    // string ids do not bring the id back.
    let (server, adapter) = serving(answer, RequestShape::json_server()).await;
    create(&adapter, &temporary, &data).await.unwrap();
    assert_eq!(
        sent_bodies(&server).await,
        [json!({"title": "secret-title", "done": false})]
    );
}

#[tokio::test]
async fn the_assigned_id_is_returned_as_the_server_wrote_it_and_the_record_adopted() {
    let (temporary, data) = temporary_document();
    for id in [json!(17), json!("a3f9")] {
        let record = json!({"id": id.clone(), "title": "secret-title", "done": false, "createdAt": 5});
        let answer = ResponseTemplate::new(201)
            .insert_header("ETag", "\"v1\"")
            .set_body_json(record.clone());
        let (_server, adapter) = serving(answer, RequestShape::rest()).await;
        let answer = create(&adapter, &temporary, &data).await.unwrap();
        assert_eq!(answer.assigned_id, Some(id.clone()), "unchanged: {id}");
        assert_eq!(
            answer.record,
            Some(object(record)),
            "the record, under the server's id"
        );
        assert_eq!(answer.version.as_deref(), Some("\"v1\""));
    }
}

#[tokio::test]
async fn the_id_is_read_where_the_shape_says_the_record_is() {
    let (temporary, data) = temporary_document();
    let record = json!({"id": 9, "title": "secret-title", "done": false});
    let cases = [
        (RequestShape::directus(), json!({"data": record.clone()})),
        (RequestShape::postgrest(), json!([record.clone()])),
        (
            RequestShape::rest().id_field("pk"),
            json!({"pk": 9, "id": 3, "title": "secret-title", "done": false}),
        ),
    ];
    for (shape, body) in cases {
        let (_server, adapter) = serving(ResponseTemplate::new(201).set_body_json(body.clone()), shape).await;
        let answer = create(&adapter, &temporary, &data).await.unwrap();
        assert_eq!(answer.assigned_id, Some(json!(9)), "{body}");
    }
}

#[tokio::test]
async fn a_status_answer_gives_its_id_but_is_not_adopted() {
    let (temporary, data) = temporary_document();
    let answer = ResponseTemplate::new(201).set_body_json(json!({"id": 17, "status": "created"}));
    let (_server, adapter) = serving(answer, RequestShape::rest()).await;
    let answer = create(&adapter, &temporary, &data).await.unwrap();
    assert_eq!(answer.assigned_id, Some(json!(17)));
    assert_eq!(answer.record, None, "it lacks the fields sent");
    // A record that echoes another temporary id in the local-id field is
    // not this one.
    let other =
        json!({"id": 17, "title": "secret-title", "done": false, "ref": RecordId::temporary().as_str()});
    let (_server, adapter) = serving(
        ResponseTemplate::new(201).set_body_json(other),
        RequestShape::rest().local_id_field("ref"),
    )
    .await;
    assert_eq!(create(&adapter, &temporary, &data).await.unwrap().record, None);
}

#[tokio::test]
async fn an_answer_without_an_id_is_applied_with_none_assigned() {
    let (temporary, data) = temporary_document();
    let answers = [
        ResponseTemplate::new(201).set_body_json(json!({"title": "secret-title", "done": false})),
        ResponseTemplate::new(201).set_body_json(json!({"id": null, "title": "secret-title", "done": false})),
        ResponseTemplate::new(201).set_body_json(json!({"ok": true})),
        ResponseTemplate::new(201).set_body_string("Created"),
        ResponseTemplate::new(204),
    ];
    for template in answers {
        let (_server, adapter) = serving(template, RequestShape::rest()).await;
        let answer = create(&adapter, &temporary, &data).await.expect("applied");
        assert_eq!(answer.assigned_id, None);
        assert_eq!(answer.record, None);
    }
    // A shape that reads nothing from write answers reads no id either.
    let (_server, adapter) = serving(
        ResponseTemplate::new(201).set_body_json(json!({"id": 17, "title": "secret-title", "done": false})),
        RequestShape::rest().answer(AnswerShape::Nothing),
    )
    .await;
    assert_eq!(
        create(&adapter, &temporary, &data).await.unwrap(),
        WriteAnswer::default()
    );
}

#[tokio::test]
async fn a_create_route_naming_the_id_is_refused_for_a_temporary_id_and_nothing_is_sent() {
    let shape = RequestShape::rest()
        .method(RequestKind::Create, HttpMethod::Put)
        .route(RequestKind::Create, "/{entity}/{id}");
    let (server, adapter) = serving(ResponseTemplate::new(201), shape.clone()).await;
    let (temporary, data) = temporary_document();
    let error = create(&adapter, &temporary, &data).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Permanent);
    assert!(!error.possibly_applied());
    let message = error.to_string();
    assert!(
        message.contains("collection route for server-assigned ids"),
        "{message}"
    );
    assert!(!message.contains(temporary.as_str()), "{message}");
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "nothing sent"
    );
    // The same shape serves ordinary ids.
    let ordinary: RecordId = "a1".parse().unwrap();
    create(&adapter, &ordinary, &object(json!({"id": "a1"})))
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.path(), "/tasks/a1");
    // With a local-id field, the shape is meant for server-assigned ids:
    // refused when built.
    let error = HttpSyncApiAdapter::builder(server.uri())
        .entity_shape("tasks", shape.local_id_field("client_ref"))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("needs a collection route"), "{error}");
}

#[tokio::test]
async fn an_ordinary_create_answered_with_its_id_is_unchanged() {
    let record = json!({"id": "a1", "title": "t", "at": 1});
    let (_server, adapter) = serving(
        ResponseTemplate::new(201).set_body_json(record.clone()),
        RequestShape::rest(),
    )
    .await;
    let id: RecordId = "a1".parse().unwrap();
    let answer = create(&adapter, &id, &object(json!({"id": "a1", "title": "t"})))
        .await
        .unwrap();
    assert_eq!(answer.assigned_id, None, "an ordinary id is never assigned");
    assert_eq!(answer.record, Some(object(record)));
}
