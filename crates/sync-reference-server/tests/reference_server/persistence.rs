//! The data file: survives a restart, refuses a damaged file, and a change
//! that cannot be written is not made.

use std::fs;

use serde_json::{Value, json};
use sync_reference_server::{Error, IDEMPOTENCY_KEY, ReferenceServer, ServerConfig};

use crate::client::{send, send_with};

#[tokio::test]
async fn the_data_survives_a_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.json");
    let config = ServerConfig::new().with_data_file(&path);

    let server = ReferenceServer::start(config.clone()).await.unwrap();
    assert!(!path.exists(), "nothing is written before the first change");
    let addr = server.addr();
    for body in [
        r#"{"id":"z","v":1}"#,
        r#"{"id":3,"v":2}"#,
        r#"{"id":"a/b","v":3}"#,
    ] {
        assert_eq!(send(addr, "POST", "/tasks", Some(body)).await.status, 201);
    }
    let _ = send(addr, "POST", "/notes", Some(r#"{"id":"n","text":"é"}"#)).await;
    let _ = send(addr, "PUT", "/tasks/z", Some(r#"{"v":10}"#)).await;
    let _ = send(addr, "DELETE", "/tasks/a%2Fb", None).await;
    let list_before = send(addr, "GET", "/tasks", None).await.json();
    let snapshot_before = server.snapshot();
    server.shutdown().await;

    // The file is plain JSON in json-server's db.json shape, with no temp
    // file left beside it.
    let file: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        file,
        json!({
            "notes": [{"id": "n", "text": "é"}],
            "tasks": [{"id": "z", "v": 10}, {"id": 3, "v": 2}],
        })
    );
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["db.json"]);

    let server = ReferenceServer::start(config).await.unwrap();
    assert_eq!(server.snapshot(), snapshot_before);
    let addr = server.addr();
    assert_eq!(send(addr, "GET", "/tasks", None).await.json(), list_before);
    assert_eq!(
        send(addr, "GET", "/tasks/3", None).await.json(),
        json!({"id": 3, "v": 2})
    );
    // A taken id is still taken; new records go to the end.
    assert_eq!(
        send(addr, "POST", "/tasks", Some(r#"{"id":"z"}"#)).await.status,
        409
    );
    let _ = send(addr, "POST", "/tasks", Some(r#"{"id":"new"}"#)).await;
    let ids: Vec<Value> = send(addr, "GET", "/tasks", None)
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["id"].clone())
        .collect();
    assert_eq!(ids, [json!("z"), json!(3), json!("new")]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_damaged_data_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("truncated", r#"{"tasks": [{"id": "1"#),
        ("empty", ""),
        ("top level array", "[]"),
        ("collection not an array", r#"{"tasks": {"id": "1"}}"#),
        ("record not an object", r#"{"tasks": [1]}"#),
        ("record without id", r#"{"tasks": [{"v": 1}]}"#),
        ("boolean id", r#"{"tasks": [{"id": true}]}"#),
        ("duplicate id", r#"{"tasks": [{"id": "1"}, {"id": 1}]}"#),
    ];
    for (name, text) in cases {
        let path = dir.path().join(format!("{name}.json"));
        fs::write(&path, text).unwrap();
        let result = ReferenceServer::start(ServerConfig::new().with_data_file(&path)).await;
        match result {
            Err(Error::InvalidDataFile {
                path: reported,
                reason,
            }) => {
                assert_eq!(reported, path, "{name}");
                assert!(!reason.is_empty(), "{name}");
                let message = Error::InvalidDataFile {
                    path: reported,
                    reason,
                }
                .to_string();
                assert!(message.contains(&format!("{name}.json")), "{message}");
            }
            other => panic!("{name}: expected InvalidDataFile, got {other:?}"),
        }
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            text,
            "{name}: the file was changed"
        );
    }

    // A directory cannot be read as a file.
    let result = ReferenceServer::start(ServerConfig::new().with_data_file(dir.path())).await;
    assert!(
        matches!(result, Err(Error::ReadDataFile { .. })),
        "expected ReadDataFile, got {result:?}"
    );
}

#[tokio::test]
async fn a_change_that_cannot_be_written_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fs::create_dir(&data_dir).unwrap();
    let path = data_dir.join("db.json");
    let server = ReferenceServer::start(ServerConfig::new().with_data_file(&path))
        .await
        .unwrap();
    let addr = server.addr();
    assert_eq!(
        send(addr, "POST", "/tasks", Some(r#"{"id":"1","v":1}"#))
            .await
            .status,
        201
    );
    let before = server.snapshot();

    // Without its directory the file cannot be replaced (even for root).
    fs::remove_dir_all(&data_dir).unwrap();
    let key = [(IDEMPOTENCY_KEY, "k")];
    for (method, target, body) in [
        ("POST", "/tasks", Some(r#"{"id":"2"}"#)),
        ("PUT", "/tasks/1", Some(r#"{"v":2}"#)),
        ("DELETE", "/tasks/1", None),
    ] {
        let reply = send_with(addr, method, target, &key, body).await;
        assert_eq!(reply.status, 500, "{method}");
        assert!(reply.error().contains("not applied"), "{method}");
        assert_eq!(server.snapshot(), before, "{method} changed memory");
    }
    assert_eq!(
        send(addr, "GET", "/tasks", None).await.json(),
        json!([{"id": "1", "v": 1}])
    );
    assert_eq!(server.applied_requests().len(), 1);

    // Once the file can be written again, the same key applies the change:
    // a failed write was not remembered.
    fs::create_dir(&data_dir).unwrap();
    let reply = send_with(addr, "DELETE", "/tasks/1", &key, None).await;
    assert_eq!(reply.status, 200);
    assert!(server.snapshot().is_empty());
    let file: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(file, json!({}));
}
