//! Conditional writes and merge patches against loopback wiremock servers:
//! versions read from `ETag`s (or a field), sent back as `If-Match`, a 412
//! reported as a conflict that applied nothing, and patches of what changed
//! since the server's copy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

use serde_json::{Value, json};
use sync_core::{
    EntityName, ErrorKind, JsonObject, OperationId, RecordId, ServerCopy, SyncApiAdapter, WriteKind,
    WriteRequest,
};
use sync_net::{BodyShape, HttpSyncApiAdapter, RequestShape, VersionSource};
use wiremock::matchers::{any, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn object(value: Value) -> JsonObject {
    value.as_object().cloned().unwrap()
}

fn tasks() -> EntityName {
    "tasks".parse().unwrap()
}

fn seven() -> RecordId {
    "7".parse().unwrap()
}

fn op() -> OperationId {
    OperationId::new("op-1").unwrap()
}

fn request<'a>(
    kind: WriteKind,
    data: &'a JsonObject,
    copy: Option<&'a ServerCopy>,
    ids: &'a (EntityName, RecordId, OperationId),
) -> WriteRequest<'a> {
    WriteRequest {
        kind,
        entity: &ids.0,
        id: &ids.1,
        data,
        base: copy.map(|copy| &copy.data),
        version: copy.and_then(|copy| copy.version.as_deref()),
        operation_id: &ids.2,
    }
}

async fn adapter_for(server: &MockServer, shape: RequestShape) -> HttpSyncApiAdapter {
    HttpSyncApiAdapter::builder(server.uri())
        .shape(shape)
        .build()
        .unwrap()
}

#[tokio::test]
async fn versions_are_read_from_etags_and_sent_back_as_if_match() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("ETag", "\"5\"")
                .set_body_json(json!({"id": "7", "v": 2})),
        )
        .mount(&server)
        .await;
    let adapter = adapter_for(&server, RequestShape::rest()).await;
    let ids = (tasks(), seven(), op());
    let data = object(json!({"id": "7", "v": 2}));
    let base = ServerCopy {
        data: object(json!({"id": "7", "v": 1})),
        version: Some("\"4\"".into()),
    };
    let answer = adapter
        .write(request(WriteKind::Update, &data, Some(&base), &ids))
        .await
        .unwrap();
    assert_eq!(answer.version.as_deref(), Some("\"5\""));
    adapter
        .write(request(WriteKind::Delete, &JsonObject::new(), Some(&base), &ids))
        .await
        .unwrap();
    // A create is never conditional; without a version, nothing is sent.
    adapter
        .write(request(WriteKind::Create, &data, Some(&base), &ids))
        .await
        .unwrap();
    adapter
        .write(request(WriteKind::Update, &data, None, &ids))
        .await
        .unwrap();
    let fetched = adapter.fetch_copy(&tasks(), &seven()).await.unwrap().unwrap();
    assert_eq!(fetched.version.as_deref(), Some("\"5\""));
    let requests = server.received_requests().await.unwrap();
    let if_match: Vec<Option<String>> = requests
        .iter()
        .map(|request| {
            request
                .headers
                .get("if-match")
                .map(|value| value.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        if_match,
        [
            Some("\"4\"".to_owned()),
            Some("\"4\"".to_owned()),
            None,
            None,
            None
        ]
    );
}

#[tokio::test]
async fn a_412_is_a_conflict_that_applied_nothing() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(412).set_body_json(json!({"error": "precondition failed"})))
        .mount(&server)
        .await;
    let adapter = adapter_for(&server, RequestShape::rest()).await;
    let ids = (tasks(), seven(), op());
    let data = object(json!({"id": "7"}));
    let base = ServerCopy {
        data: data.clone(),
        version: Some("\"1\"".into()),
    };
    for kind in [WriteKind::Update, WriteKind::Delete] {
        let error = adapter
            .write(request(kind, &data, Some(&base), &ids))
            .await
            .unwrap_err();
        assert_eq!(
            (error.kind(), error.possibly_applied(), error.status()),
            (ErrorKind::Conflict, false, Some(412)),
            "{error}"
        );
        assert!(error.message().contains("changed on the server"), "{error}");
    }
}

#[tokio::test]
async fn weak_etags_and_a_version_field() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("ETag", "W/\"5\"")
                .set_body_json(json!({"id": "7", "rev": 9})),
        )
        .mount(&server)
        .await;
    let ids = (tasks(), seven(), op());
    let data = object(json!({"id": "7"}));
    let weak = adapter_for(&server, RequestShape::rest()).await;
    let answer = weak
        .write(request(WriteKind::Update, &data, None, &ids))
        .await
        .unwrap();
    assert_eq!(answer.version, None, "a weak tag never matches If-Match");
    let field = adapter_for(
        &server,
        RequestShape::rest().version(VersionSource::Field("rev".into())),
    )
    .await;
    let answer = field
        .write(request(WriteKind::Update, &data, None, &ids))
        .await
        .unwrap();
    assert_eq!(answer.version.as_deref(), Some("\"9\""));
}

#[tokio::test]
async fn a_merge_patch_sends_only_what_changed_since_the_servers_copy() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "7", "title": "b", "done": true, "by": "x"})),
        )
        .mount(&server)
        .await;
    let shape = RequestShape::rest()
        .method(sync_net::RequestKind::Update, sync_net::HttpMethod::Patch)
        .body(BodyShape::MergePatch);
    let adapter = adapter_for(&server, shape).await;
    let ids = (tasks(), seven(), op());
    let base = ServerCopy {
        data: object(json!({"id": "7", "title": "a", "done": true, "note": "n"})),
        version: None,
    };
    let data = object(json!({"id": "7", "title": "b", "done": true}));
    let answer = adapter
        .write(request(WriteKind::Update, &data, Some(&base), &ids))
        .await
        .unwrap();
    assert_eq!(
        answer.record,
        Some(object(json!({"id": "7", "title": "b", "done": true, "by": "x"})))
    );
    let requests = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body, json!({"title": "b", "note": null}));
    assert_eq!(
        requests[0].headers.get("content-type").unwrap(),
        "application/merge-patch+json"
    );
}
