//! A server that assigns ids itself answers a create with a record under
//! another id. The adapter says so, as a permanent error that was applied,
//! instead of counting the create done: every later change would go to an
//! id the server does not have, and re-create the record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use serde_json::{Value, json};
use sync_core::{EntityName, ErrorKind, JsonObject, OperationId, RecordId, SyncApiAdapter};
use sync_net::{HttpSyncApiAdapter, RequestShape};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

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
