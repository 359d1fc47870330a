//! The binary: prints its URL, serves, refuses bad arguments.
//!
//! A test binary of its own, so it never runs beside the lifecycle tests:
//! a child process holds copies of the parent's sockets between fork and
//! exec, and a listener closed by `stop` in that moment would still accept
//! connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

// Only `send` and `send_with` are used here; the rest serves the other
// test binary.
#[allow(dead_code)]
#[path = "reference_server/client.rs"]
mod client;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use sync_reference_server::IDEMPOTENCY_KEY;

use crate::client::{send, send_with};

const BINARY: &str = env!("CARGO_BIN_EXE_sync-reference-server");

/// Kills the child however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_its_url_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db.json");
    let mut child = Running(
        Command::new(BINARY)
            .args(["--port", "0", "--prefix", "/api", "--data"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    // The first line is written once the port is bound. The reader is kept
    // until the end, so the pipe stays open.
    let (first_line, _stdout) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        (line, reader)
    })
    .await
    .unwrap();
    let url = first_line
        .trim()
        .strip_prefix("sync-reference-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"));
    let (authority, prefix) = url.split_once('/').unwrap();
    assert_eq!(prefix, "api");
    let addr: SocketAddr = authority.parse().unwrap();

    assert_eq!(send(addr, "GET", "/api/health", None).await.status, 200);
    assert_eq!(
        send(addr, "POST", "/api/tasks", Some(r#"{"id":"1"}"#))
            .await
            .status,
        201
    );
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&data).unwrap()).unwrap();
    assert_eq!(file, serde_json::json!({"tasks": [{"id": "1"}]}));
    drop(child);
}

#[test]
fn the_binary_refuses_bad_arguments_and_files() {
    let output = Command::new(BINARY).args(["--port", "nope"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db.json");
    std::fs::write(&data, "not json").unwrap();
    let output = Command::new(BINARY)
        .arg("--port")
        .arg("0")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not valid"));

    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--prefix",
        "--ignore-idempotency-keys",
        "--assign-ids",
        "--delayed-apply",
        "--apply-delay",
        "--dialect",
    ] {
        assert!(help.contains(flag), "{flag} missing from the help");
    }
}

#[tokio::test]
async fn the_binary_can_ignore_idempotency_keys_and_apply_late() {
    let mut child = Running(
        Command::new(BINARY)
            .args(["--port", "0", "--ignore-idempotency-keys"])
            .args([
                "--delayed-apply",
                "1",
                "--apply-delay",
                "200",
                "--fault-seed",
                "4",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    // The banner up to its last line, then the reader is kept so the pipe
    // stays open.
    let (banner, _stdout) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut banner = String::new();
        while !banner.ends_with("Ctrl-C to stop\n") {
            let mut line = String::new();
            assert_ne!(reader.read_line(&mut line).unwrap(), 0, "banner cut: {banner:?}");
            banner.push_str(&line);
        }
        (banner, reader)
    })
    .await
    .unwrap();
    assert!(banner.contains("idempotency keys ignored"), "{banner}");
    assert!(
        banner.contains("fault mode: seed 4, applying writes 200 ms late"),
        "{banner}"
    );
    let authority = banner
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("sync-reference-server listening on http://"))
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"));
    let addr: SocketAddr = authority.parse().unwrap();

    let key = [(IDEMPOTENCY_KEY, "op-1")];
    let started = std::time::Instant::now();
    let created = send_with(addr, "POST", "/tasks", &key, Some(r#"{"id":"1"}"#)).await;
    assert_eq!(created.status, 201);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200), "held");
    let repeat = send_with(addr, "POST", "/tasks", &key, Some(r#"{"id":"1"}"#)).await;
    assert_eq!(repeat.status, 409, "not replayed");
    drop(child);
}

#[tokio::test]
async fn the_binary_speaks_the_postgrest_dialect_when_asked() {
    let mut child = Running(
        Command::new(BINARY)
            .args(["--port", "0", "--dialect", "postgrest"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (banner, _stdout) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut banner = String::new();
        while !banner.ends_with("Ctrl-C to stop\n") {
            let mut line = String::new();
            assert_ne!(reader.read_line(&mut line).unwrap(), 0, "banner cut: {banner:?}");
            banner.push_str(&line);
        }
        (banner, reader)
    })
    .await
    .unwrap();
    assert!(banner.contains("PostgREST dialect"), "{banner}");
    let authority = banner
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("sync-reference-server listening on http://"))
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"));
    let addr: SocketAddr = authority.parse().unwrap();

    let represent = [("Prefer", "return=representation")];
    let created = send_with(addr, "POST", "/tasks", &represent, Some(r#"{"id":"7"}"#)).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json(), serde_json::json!([{"id": "7"}]));
    let patched = send_with(addr, "PATCH", "/tasks?id=eq.7", &represent, Some(r#"{"a":1}"#)).await;
    assert_eq!(patched.json(), serde_json::json!([{"id": "7", "a": 1}]));
    assert_eq!(send(addr, "GET", "/tasks/7", None).await.status, 404);
    drop(child);
}
