//! The filtered list: its requests in both dialects, ties across pages,
//! rows moving in and out of a tie, soft deletes, versions, envelopes and
//! every bad answer.

use serde_json::{Value, json};
use sync_core::{PullAnswer, PulledChange};
use sync_net::{HttpSyncApiAdapter, ListDialect, PullStrategy, RequestShape, VersionSource};
use wiremock::{MockServer, ResponseTemplate};

use crate::support::{
    Dialect, ListServer, SECRET, answering, assert_permanent, builder, cursor, drain, ids, lines, page, pull,
};

fn list_dialect(dialect: Dialect) -> ListDialect {
    match dialect {
        Dialect::JsonServer => ListDialect::JsonServer,
        Dialect::PostgRest => ListDialect::PostgRest,
    }
}

fn filtered(server: &MockServer, dialect: Dialect) -> HttpSyncApiAdapter {
    builder(server)
        .pull(
            "tasks",
            PullStrategy::filtered_list("updated_at").dialect(list_dialect(dialect)),
        )
        .build()
        .unwrap()
}

fn rows(pairs: &[(&str, i64)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(id, at)| json!({"id": id, "updated_at": at, "title": SECRET}))
        .collect()
}

#[tokio::test]
async fn filtered_list_requests_in_the_json_server_dialect() {
    let (server, _) = ListServer::start(
        Dialect::JsonServer,
        rows(&[("a", 10), ("b", 20), ("c", 20), ("d", 30)]),
    )
    .await;
    let pages = drain(&filtered(&server, Dialect::JsonServer), None, 2).await;
    assert_eq!(ids(&pages), ["a", "b", "c", "d"]);
    assert_eq!(
        lines(&server).await,
        [
            "GET /tasks?_sort=updated_at,id&_start=0&_limit=2",
            "GET /tasks?updated_at_gte=20&_sort=updated_at,id&_start=0&_limit=3",
            "GET /tasks?updated_at_gte=30&_sort=updated_at,id&_start=0&_limit=3",
        ]
    );
    assert!(pages.iter().all(|page| !page.listing));
    // The last page held only the anchor: the stored cursor stands.
    assert_eq!(pages[2].cursor, None);
    assert!(pages[2].changes.is_empty());
}

#[tokio::test]
async fn filtered_list_requests_in_the_postgrest_dialect() {
    let (server, _) = ListServer::start(
        Dialect::PostgRest,
        rows(&[("a", 10), ("b", 20), ("c", 20), ("d", 30)]),
    )
    .await;
    let pages = drain(&filtered(&server, Dialect::PostgRest), None, 2).await;
    assert_eq!(ids(&pages), ["a", "b", "c", "d"]);
    assert_eq!(
        lines(&server).await,
        [
            "GET /tasks?order=updated_at.asc,id.asc&offset=0&limit=2",
            "GET /tasks?updated_at=gte.20&order=updated_at.asc,id.asc&offset=0&limit=3",
            "GET /tasks?updated_at=gte.30&order=updated_at.asc,id.asc&offset=0&limit=3",
        ]
    );
}

#[tokio::test]
async fn string_timestamps_are_encoded_in_the_postgrest_filter() {
    let stamp = "2024-05-01T10:00:00.250+00:00";
    let (server, _) = ListServer::start(
        Dialect::PostgRest,
        vec![
            json!({"id": "a", "updated_at": stamp}),
            json!({"id": "b", "updated_at": stamp}),
        ],
    )
    .await;
    let adapter = filtered(&server, Dialect::PostgRest);
    let first = page(&adapter, None, 1).await;
    assert_eq!(ids(std::slice::from_ref(&first)), ["a"]);
    let second = page(&adapter, first.cursor.as_ref(), 1).await;
    assert_eq!(ids(&[second]), ["b"]);
    assert_eq!(
        lines(&server).await[1],
        "GET /tasks?updated_at=gte.2024-05-01T10%3A00%3A00.250%2B00%3A00&order=updated_at.asc,id.asc&offset=0&limit=2"
    );
}

#[tokio::test]
async fn ties_spanning_pages_are_read_once_each() {
    let mut pairs = Vec::new();
    let names: Vec<String> = (0..15).map(|index| format!("r{index:02}")).collect();
    for (index, name) in names.iter().enumerate() {
        // Seven rows at 10, three at 20, five at 30.
        let at = match index {
            0..7 => 10,
            7..10 => 20,
            _ => 30,
        };
        pairs.push((name.as_str(), at));
    }
    for dialect in [Dialect::JsonServer, Dialect::PostgRest] {
        for limit in [1, 2, 3, 7, 20] {
            let (server, _) = ListServer::start(dialect, rows(&pairs)).await;
            let pages = drain(&filtered(&server, dialect), None, limit).await;
            assert_eq!(ids(&pages), names, "{dialect:?}, {limit} a page");
        }
    }
    // Within a tie, the offset moves on by the rows read, the anchor
    // included again.
    let (server, _) = ListServer::start(Dialect::JsonServer, rows(&pairs[..7])).await;
    drain(&filtered(&server, Dialect::JsonServer), None, 3).await;
    assert_eq!(
        lines(&server).await,
        [
            "GET /tasks?_sort=updated_at,id&_start=0&_limit=3",
            "GET /tasks?updated_at_gte=10&_sort=updated_at,id&_start=2&_limit=4",
            "GET /tasks?updated_at_gte=10&_sort=updated_at,id&_start=5&_limit=4",
        ]
    );
}

#[tokio::test]
async fn a_server_capping_pages_at_the_limit_is_paged_through() {
    let pairs = [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("d", 4),
        ("e", 5),
        ("f", 5),
        ("g", 5),
    ];
    for dialect in [Dialect::JsonServer, Dialect::PostgRest] {
        let (server, _) = ListServer::capped(dialect, rows(&pairs), 3).await;
        let pages = drain(&filtered(&server, dialect), None, 3).await;
        assert_eq!(ids(&pages), ["a", "b", "c", "d", "e", "f", "g"], "{dialect:?}");
    }
}

#[tokio::test]
async fn a_row_leaving_the_tie_skips_no_other_row() {
    let pairs = [("a", 10), ("b", 10), ("c", 10), ("d", 10), ("e", 10), ("f", 10)];
    for dialect in [Dialect::JsonServer, Dialect::PostgRest] {
        let (server, list) = ListServer::start(dialect, rows(&pairs)).await;
        let adapter = filtered(&server, dialect);
        let first = page(&adapter, None, 2).await;
        assert_eq!(ids(std::slice::from_ref(&first)), ["a", "b"]);
        // `a` is edited on the server: it leaves the tie at 10, so `b` is
        // now its first row, and skipping the two rows read would skip `c`.
        list.set("a", "updated_at", json!(50));
        let rest = drain(&adapter, first.cursor, 2).await;
        assert_eq!(ids(&rest), ["b", "c", "d", "e", "f", "a"], "{dialect:?}");
    }
    let (server, list) = ListServer::start(Dialect::JsonServer, rows(&pairs)).await;
    let adapter = filtered(&server, Dialect::JsonServer);
    let first = page(&adapter, None, 2).await;
    list.set("a", "updated_at", json!(50));
    page(&adapter, first.cursor.as_ref(), 2).await;
    assert_eq!(
        lines(&server).await[1..],
        [
            "GET /tasks?updated_at_gte=10&_sort=updated_at,id&_start=1&_limit=3",
            // The anchor was not the first row: the tie again from its start.
            "GET /tasks?updated_at_gte=10&_sort=updated_at,id&_start=0&_limit=2",
        ]
    );
}

#[tokio::test]
async fn a_row_joining_the_tie_before_the_anchor_is_read() {
    let (server, list) =
        ListServer::start(Dialect::JsonServer, rows(&[("a", 10), ("c", 10), ("d", 10)])).await;
    let adapter = filtered(&server, Dialect::JsonServer);
    let first = page(&adapter, None, 2).await;
    assert_eq!(ids(std::slice::from_ref(&first)), ["a", "c"]);
    list.rows
        .lock()
        .unwrap()
        .push(json!({"id": "b", "updated_at": 10}));
    let rest = drain(&adapter, first.cursor, 2).await;
    assert_eq!(ids(&rest), ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn a_tie_emptied_under_the_anchor_starts_over_from_its_value() {
    let (server, list) = ListServer::start(Dialect::JsonServer, rows(&[("a", 10), ("b", 10)])).await;
    let adapter = filtered(&server, Dialect::JsonServer);
    let first = page(&adapter, None, 5).await;
    list.rows.lock().unwrap().clear();
    let empty = page(&adapter, first.cursor.as_ref(), 5).await;
    assert!(empty.changes.is_empty() && !empty.more);
    // The next pull starts at the tie's value, with no anchor to check.
    page(&adapter, empty.cursor.as_ref(), 5).await;
    assert_eq!(
        lines(&server).await[3],
        "GET /tasks?updated_at_gte=10&_sort=updated_at,id&_start=0&_limit=5"
    );
}

#[tokio::test]
async fn soft_deleted_rows_are_tombstones_and_versions_come_from_the_shape() {
    let (server, _) = ListServer::start(
        Dialect::JsonServer,
        vec![
            json!({"id": "a", "at": 1, "deleted_at": null, "rev": 4}),
            json!({"id": "b", "at": 2, "deleted_at": "2024-05-01T10:00:00Z"}),
            json!({"id": "c", "at": 3, "deleted_at": false}),
            json!({"id": "d", "at": 4, "deleted_at": true}),
            json!({"id": "e", "at": 5, "deleted_at": 0}),
            json!({"id": "f", "at": 6, "deleted_at": 1_714_557_600}),
            json!({"id": "g", "at": 7, "deleted_at": ""}),
            json!({"id": "h", "at": 8}),
        ],
    )
    .await;
    let adapter = builder(&server)
        .entity_shape(
            "tasks",
            RequestShape::rest().version(VersionSource::Field("rev".into())),
        )
        .pull(
            "tasks",
            PullStrategy::filtered_list("at").soft_delete("deleted_at"),
        )
        .build()
        .unwrap();
    let pages = drain(&adapter, None, 10).await;
    assert_eq!(ids(&pages), ["a", "-b", "c", "-d", "e", "-f", "g", "h"]);
    let PulledChange::Upsert { version, .. } = &pages[0].changes[0] else {
        panic!("an upsert")
    };
    assert_eq!(version.as_deref(), Some("\"4\""));
    let PulledChange::Upsert { version, .. } = &pages[0].changes[2] else {
        panic!("an upsert")
    };
    assert_eq!(version, &None);
}

#[tokio::test]
async fn envelopes_id_fields_and_routes_follow_the_entity_shape() {
    let server =
        answering(ResponseTemplate::new(200).set_body_json(json!({"data": [{"key": 5, "at": 1}]}))).await;
    let adapter = builder(&server)
        .entity_shape("tasks", RequestShape::rest().id_field("key"))
        .pull(
            "tasks",
            PullStrategy::filtered_list("at")
                .items("/data")
                .route("/v2/{entity}/list?select=*"),
        )
        .build()
        .unwrap();
    assert_eq!(ids(&[page(&adapter, None, 10).await]), ["5"]);
    assert_eq!(
        lines(&server).await,
        ["GET /v2/tasks/list?select=*&_sort=at,key&_start=0&_limit=10"]
    );
    // Django REST framework's collection route; Directus's `/data`.
    for (shape, items, line) in [
        (
            RequestShape::django_rest_framework(),
            Some("/data"),
            "GET /tasks/?_sort=at,id&_start=0&_limit=10",
        ),
        (
            RequestShape::directus(),
            None,
            "GET /tasks?_sort=at,id&_start=0&_limit=10",
        ),
    ] {
        let server =
            answering(ResponseTemplate::new(200).set_body_json(json!({"data": [{"id": "x", "at": 1}]})))
                .await;
        let mut list = PullStrategy::filtered_list("at");
        if let Some(items) = items {
            list = list.items(items);
        }
        let adapter = builder(&server)
            .entity_shape("tasks", shape)
            .pull("tasks", list)
            .build()
            .unwrap();
        assert_eq!(ids(&[page(&adapter, None, 10).await]), ["x"]);
        assert_eq!(lines(&server).await, [line]);
    }
}

#[tokio::test]
async fn bad_filtered_answers_are_permanent_errors() {
    let row = |id: Value, at: Value| json!({"id": id, "updated_at": at, "title": SECRET});
    let cases = [
        (
            None,
            Dialect::JsonServer,
            json!(SECRET).to_string() + "x",
            "not JSON",
        ),
        (
            None,
            Dialect::JsonServer,
            json!({"rows": [SECRET]}).to_string(),
            "the rows are an object",
        ),
        (
            None,
            Dialect::JsonServer,
            json!([SECRET]).to_string(),
            "index 0 is a string",
        ),
        (
            None,
            Dialect::JsonServer,
            json!([{"updated_at": 1, "title": SECRET}]).to_string(),
            "has no \"id\"",
        ),
        (
            None,
            Dialect::JsonServer,
            json!([row(json!(1.5), json!(1))]).to_string(),
            "not an integer",
        ),
        (
            None,
            Dialect::JsonServer,
            json!([{"id": "a", "title": SECRET}]).to_string(),
            "has no \"updated_at\"",
        ),
        (
            None,
            Dialect::JsonServer,
            json!([row(json!("a"), json!(true))]).to_string(),
            "is a boolean",
        ),
        (
            None,
            Dialect::PostgRest,
            json!([row(json!("a"), json!(null))]).to_string(),
            "is null",
        ),
        (
            None,
            Dialect::JsonServer,
            json!([row(json!("a"), json!("2024-05-01"))]).to_string(),
            "matches numbers only",
        ),
        (
            None,
            Dialect::JsonServer,
            json!([row(json!("a"), json!(1.5))]).to_string(),
            "parseInt",
        ),
        (
            None,
            Dialect::JsonServer,
            json!([row(json!("a"), json!(20)), row(json!("b"), json!(10))]).to_string(),
            "index 1 goes backwards",
        ),
        (
            None,
            Dialect::PostgRest,
            json!([row(json!("a"), json!(10)), row(json!("b"), json!("11"))]).to_string(),
            "of another type",
        ),
        (
            None,
            Dialect::JsonServer,
            json!([row(json!("a"), json!(10)), row(json!("a"), json!(10))]).to_string(),
            "repeats the row before it",
        ),
        (
            Some(r#"{"id":"b","n":1,"t":20}"#),
            Dialect::JsonServer,
            json!([row(json!("b"), json!(20)), row(json!("c"), json!(10))]).to_string(),
            "goes backwards",
        ),
        (
            Some(r#"{"id":"b","n":1,"t":20}"#),
            Dialect::PostgRest,
            json!([row(json!("b"), json!(20)), row(json!("c"), json!("21"))]).to_string(),
            "of another type",
        ),
    ];
    for (from, dialect, body, reason) in cases {
        let server = answering(ResponseTemplate::new(200).set_body_raw(body, "application/json")).await;
        let from = from.map(cursor);
        assert_permanent(pull(&filtered(&server, dialect), from.as_ref(), 10).await, reason);
    }
}

#[tokio::test]
async fn a_server_ignoring_the_offset_is_an_error_not_a_loop() {
    let body = json!([{"id": "a", "updated_at": 10}, {"id": "b", "updated_at": 10}]);
    let server = answering(ResponseTemplate::new(200).set_body_json(body)).await;
    let adapter = filtered(&server, Dialect::JsonServer);
    let first = page(&adapter, None, 2).await;
    assert!(first.more);
    assert_permanent(pull(&adapter, first.cursor.as_ref(), 2).await, "made no progress");
}

#[tokio::test]
async fn a_cursor_of_another_strategy_loads_the_entity_again() {
    let server = answering(ResponseTemplate::new(200).set_body_json(json!([]))).await;
    let adapter = filtered(&server, Dialect::JsonServer);
    for text in ["1042", r#"{"t":true,"n":0}"#] {
        assert_eq!(
            pull(&adapter, Some(&cursor(text)), 10).await.unwrap(),
            PullAnswer::CursorExpired
        );
    }
    assert!(lines(&server).await.is_empty());
}
