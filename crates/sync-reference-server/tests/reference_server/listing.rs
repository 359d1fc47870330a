//! Filtered, sorted and paged lists: json-server's parameters in the REST
//! dialect, PostgREST's in its own.

use serde_json::{Value, json};
use sync_reference_server::{Dialect, ReferenceServer, ServerConfig};

use crate::client::{send, start};

async fn list(server: &ReferenceServer, target: &str) -> Vec<Value> {
    let reply = send(server.addr(), "GET", target, None).await;
    assert_eq!(
        reply.status,
        200,
        "{target}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json().as_array().unwrap().clone()
}

/// The lists' ids, as their text.
async fn ids(server: &ReferenceServer, target: &str) -> Vec<String> {
    list(server, target)
        .await
        .iter()
        .map(|record| match &record["id"] {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn records() -> Vec<Value> {
    vec![
        json!({"id": "10", "n": 5, "s": "b"}),
        json!({"id": "2", "n": 1, "s": "d"}),
        json!({"id": "a", "n": 9.5, "s": "a"}),
        json!({"id": "9", "n": 5, "s": "c"}),
        json!({"id": "b", "s": "e"}),
        json!({"id": 3, "n": "7"}),
    ]
}

#[tokio::test]
async fn rest_lists_filter_sort_and_page() {
    let server = start().await;
    server.seed("tasks", records()).unwrap();

    // Without parameters, as before: every record in insertion order.
    assert_eq!(ids(&server, "/tasks").await, ["10", "2", "a", "9", "b", "3"]);
    // json-server's own parameters (starting with `_`) are ignored.
    assert_eq!(ids(&server, "/tasks?_page=1&_embed=x").await.len(), 6);

    // Numbers compare numerically, strings (`"7"` of record 3) byte by
    // byte; a missing field never matches.
    assert_eq!(ids(&server, "/tasks?n_gte=5").await, ["10", "a", "9", "3"]);
    assert_eq!(ids(&server, "/tasks?n_gt=5").await, ["a", "3"]);
    assert_eq!(ids(&server, "/tasks?n_lte=5&n_gt=1").await, ["10", "9"]);
    assert_eq!(ids(&server, "/tasks?n_lt=5").await, ["2"]);
    // Strings compare byte by byte.
    assert_eq!(ids(&server, "/tasks?s_gt=b&s_lte=d").await, ["2", "9"]);
    assert_eq!(ids(&server, "/tasks?n_gte=7").await, ["a", "3"], "\"7\" >= \"7\"");
    // Ids of digits compare as numbers, before the others.
    assert_eq!(ids(&server, "/tasks?id_gte=3").await, ["10", "a", "9", "b", "3"]);
    assert_eq!(ids(&server, "/tasks?id_lt=a").await, ["10", "2", "9", "3"]);

    // Sorts: ascending, `-` descending, ties in insertion order.
    assert_eq!(
        ids(&server, "/tasks?_sort=id").await,
        ["2", "3", "9", "10", "a", "b"]
    );
    assert_eq!(
        ids(&server, "/tasks?_sort=-id").await,
        ["b", "a", "10", "9", "3", "2"]
    );
    assert_eq!(
        ids(&server, "/tasks?_sort=n").await,
        ["b", "2", "10", "9", "a", "3"]
    );
    assert_eq!(
        ids(&server, "/tasks?_sort=n,-id").await,
        ["b", "2", "10", "9", "a", "3"]
    );
    assert_eq!(
        ids(&server, "/tasks?_sort=n,id").await,
        ["b", "2", "9", "10", "a", "3"]
    );
    assert_eq!(
        ids(&server, "/tasks?_sort=-n,s").await,
        ["3", "a", "10", "9", "2", "b"]
    );

    // Offset and limit, after the filter and the sort.
    assert_eq!(
        ids(&server, "/tasks?_sort=id&_start=2&_limit=3").await,
        ["9", "10", "a"]
    );
    assert_eq!(ids(&server, "/tasks?_start=4").await, ["b", "3"]);
    assert_eq!(ids(&server, "/tasks?_limit=0").await, Vec::<String>::new());
    assert_eq!(ids(&server, "/tasks?_start=10").await, Vec::<String>::new());
    assert_eq!(
        ids(&server, "/tasks?n_gte=1&_sort=-id&_start=1&_limit=2").await,
        ["10", "9"]
    );

    for bad in ["_limit=x", "_start=-1", "_sort=", "_gte=1"] {
        let reply = send(server.addr(), "GET", &format!("/tasks?{bad}"), None).await;
        assert_eq!(reply.status, 400, "{bad}");
        assert!(!reply.error().is_empty());
    }
    // A record addressed by query ignores the list's parameters.
    let reply = send(server.addr(), "GET", "/tasks?id=9&_limit=x", None).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn rest_lookups_keep_the_records_whose_field_holds_the_value() {
    let server = start().await;
    server.seed("tasks", records()).unwrap();
    server
        .seed(
            "flags",
            [
                json!({"id": "t", "done": true, "ref": "a b&c"}),
                json!({"id": "f", "done": false, "ref": "x"}),
                json!({"id": "o", "done": {"nested": true}}),
            ],
        )
        .unwrap();

    // A string by its text, a number by its decimal text.
    assert_eq!(ids(&server, "/tasks?s=c").await, ["9"]);
    assert_eq!(ids(&server, "/tasks?n=5").await, ["10", "9"]);
    assert_eq!(ids(&server, "/tasks?n=9.5").await, ["a"]);
    assert_eq!(ids(&server, "/tasks?n=7").await, ["3"], "the string \"7\"");
    assert_eq!(ids(&server, "/tasks?n=5.0").await, Vec::<String>::new());
    // Several are ANDed, and go with ranges, sorts and pages.
    assert_eq!(ids(&server, "/tasks?n=5&s=b").await, ["10"]);
    assert_eq!(ids(&server, "/tasks?n=5&s=c&s=b").await, Vec::<String>::new());
    assert_eq!(ids(&server, "/tasks?n=5&id_gte=10").await, ["10"]);
    assert_eq!(ids(&server, "/tasks?n=5&_sort=id").await, ["9", "10"]);
    assert_eq!(
        ids(&server, "/tasks?n=5&_sort=id&_start=1&_limit=1").await,
        ["10"]
    );
    assert_eq!(ids(&server, "/tasks?n=5&_limit=1").await, ["10"]);
    // None: an empty array, not a 404.
    for target in [
        "/tasks?s=zzz",
        "/tasks?missing=1",
        "/tasks?unknown=1",
        "/nothing?s=c",
    ] {
        let reply = send(server.addr(), "GET", target, None).await;
        assert_eq!(reply.status, 200, "{target}");
        assert_eq!(reply.json(), json!([]), "{target}");
    }
    // Booleans by their text; values are form-decoded; objects never match.
    assert_eq!(ids(&server, "/flags?done=true").await, ["t"]);
    assert_eq!(ids(&server, "/flags?done=false").await, ["f"]);
    assert_eq!(ids(&server, "/flags?ref=a+b%26c").await, ["t"]);
    assert_eq!(
        ids(&server, "/flags?done=%7B%22nested%22%3Atrue%7D").await,
        Vec::<String>::new()
    );
    // `id` still addresses one record.
    assert_eq!(
        send(server.addr(), "GET", "/tasks?id=9&s=zzz", None).await.json(),
        json!({"id": "9", "n": 5, "s": "c"})
    );
    // Lookups belong to lists: writes ignore them, as before.
    let reply = send(server.addr(), "POST", "/flags?ref=x", Some(r#"{"id":"p"}"#)).await;
    assert_eq!(reply.status, 201);
    assert_eq!(server.record_count("flags"), 4);
}

#[tokio::test]
async fn postgrest_lists_filter_order_and_page() {
    let server = ReferenceServer::start(ServerConfig::new().with_dialect(Dialect::PostgRest))
        .await
        .unwrap();
    server.seed("tasks", records()).unwrap();

    assert_eq!(ids(&server, "/tasks").await, ["10", "2", "a", "9", "b", "3"]);
    assert_eq!(ids(&server, "/tasks?n=gte.5").await, ["10", "a", "9", "3"]);
    assert_eq!(ids(&server, "/tasks?select=*&n=lte.5&n=gt.1").await, ["10", "9"]);
    assert_eq!(ids(&server, "/tasks?s=gt.b&s=lte.d").await, ["2", "9"]);
    assert_eq!(ids(&server, "/tasks?n=lt.5").await, ["2"]);
    assert_eq!(ids(&server, "/tasks?id=gt.9").await, ["10", "a", "b"]);
    assert_eq!(
        ids(&server, "/tasks?order=id").await,
        ["2", "3", "9", "10", "a", "b"]
    );
    assert_eq!(
        ids(&server, "/tasks?order=id.desc").await,
        ["b", "a", "10", "9", "3", "2"]
    );
    assert_eq!(
        ids(&server, "/tasks?order=n.desc,s.asc").await,
        ["3", "a", "10", "9", "2", "b"]
    );
    assert_eq!(
        ids(&server, "/tasks?order=id.asc&offset=2&limit=3").await,
        ["9", "10", "a"]
    );
    assert_eq!(ids(&server, "/tasks?n=gte.1&limit=1").await, ["10"]);
    // The row filter is unchanged.
    assert_eq!(
        list(&server, "/tasks?id=eq.9").await,
        [json!({"id": "9", "n": 5, "s": "c"})]
    );
    // Lookups on other columns: `eq.`.
    assert_eq!(ids(&server, "/tasks?n=eq.5").await, ["10", "9"]);
    assert_eq!(ids(&server, "/tasks?n=eq.5&s=eq.c").await, ["9"]);
    assert_eq!(ids(&server, "/tasks?n=eq.5&order=id.desc&limit=1").await, ["10"]);
    assert_eq!(ids(&server, "/tasks?s=eq.zzz").await, Vec::<String>::new());

    for bad in ["order=id.up", "limit=x", "offset=-1", "n=like.5"] {
        let reply = send(server.addr(), "GET", &format!("/tasks?{bad}"), None).await;
        assert_eq!(reply.status, 400, "{bad}");
        assert_eq!(reply.json()["code"], "PGRST100", "{bad}");
    }
}

/// The pull of a filtered-list client: `updated_at >= last`, sorted by
/// (updated_at, id), an offset within the tie at `last`.
#[tokio::test]
async fn stamp_ordered_pages_with_ties_match_a_full_sort() {
    let server = ReferenceServer::start(ServerConfig::new().with_stamp_field("updated_at"))
        .await
        .unwrap();
    // Three runs of ties, ids mixing numbers and strings.
    for (value, ids) in [(1_000, 0..7), (2_000, 7..9), (3_000, 9..20)] {
        server.pin_stamp(Some(value));
        let records: Vec<Value> = ids
            .rev()
            .map(|n| {
                if n % 2 == 0 {
                    json!({"id": n})
                } else {
                    json!({"id": format!("k{n}")})
                }
            })
            .collect();
        server.seed("tasks", records).unwrap();
    }
    server.pin_stamp(None);
    let all = list(&server, "/tasks").await;
    assert!(all.iter().all(|record| record["updated_at"].is_u64()));
    let mut expected = ids(&server, "/tasks").await;
    expected.sort_by_key(|id| {
        let record = all
            .iter()
            .find(|record| match &record["id"] {
                Value::String(text) => text == id,
                other => &other.to_string() == id,
            })
            .unwrap();
        let numeric = id.bytes().all(|byte| byte.is_ascii_digit());
        (
            record["updated_at"].as_u64().unwrap(),
            !numeric,
            if numeric { format!("{id:0>20}") } else { id.clone() },
        )
    });
    // The general sort agrees with the index (`n` is absent: no decider).
    assert_eq!(ids(&server, "/tasks?_sort=updated_at,n,id").await, expected);
    assert_eq!(ids(&server, "/tasks?_sort=updated_at,id").await, expected);

    // Page through as a client would, 3 at a time.
    let mut pulled = Vec::new();
    let (mut since, mut offset) = (0_u64, 0_usize);
    loop {
        let target = format!("/tasks?updated_at_gte={since}&_sort=updated_at,id&_start={offset}&_limit=3");
        let page = list(&server, &target).await;
        if page.is_empty() {
            break;
        }
        for record in &page {
            let value = record["updated_at"].as_u64().unwrap();
            if value == since {
                offset += 1;
            } else {
                (since, offset) = (value, 1);
            }
        }
        pulled.extend(page);
    }
    let pulled: Vec<String> = pulled
        .iter()
        .map(|record| match &record["id"] {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(pulled, expected);
    assert_eq!(pulled.len(), 20);

    // A lookup of the stamp field, served from its index.
    assert_eq!(
        ids(&server, "/tasks?updated_at=2000&_sort=updated_at,id").await,
        ["8", "k7"]
    );
    assert_eq!(
        ids(
            &server,
            "/tasks?updated_at=2000&updated_at_gt=2000&_sort=updated_at,id"
        )
        .await,
        Vec::<String>::new()
    );

    // Bounds on both sides.
    assert_eq!(
        ids(
            &server,
            "/tasks?updated_at_gt=1000&updated_at_lt=3000&_sort=updated_at,id"
        )
        .await,
        ["8", "k7"]
    );
}
