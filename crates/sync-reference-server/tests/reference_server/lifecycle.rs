//! Start, stop, resume and shut down: down means connections are refused,
//! up again means the same port and the same data.

use std::io::ErrorKind;

use serde_json::json;
use sync_reference_server::{Error, IDEMPOTENCY_KEY, ReferenceServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{read_response, send, send_with, start, write_request};

async fn assert_refused(addr: std::net::SocketAddr) {
    match TcpStream::connect(addr).await {
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}"),
        Ok(_) => panic!("{addr} accepted a connection while down"),
    }
}

/// Connects until refused, yielding in between so the server's tasks run;
/// bounded by progress, not by a clock.
async fn wait_until_refused(addr: std::net::SocketAddr) {
    loop {
        match TcpStream::connect(addr).await {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => return,
            // Queued in the backlog of a listener that was closed meanwhile.
            Err(error) if error.kind() == ErrorKind::ConnectionReset => tokio::task::yield_now().await,
            Err(error) => panic!("{error}"),
            Ok(_) => tokio::task::yield_now().await,
        }
    }
}

#[tokio::test]
async fn stop_refuses_connections_and_resume_serves_the_same_data_on_the_same_port() {
    let server = start().await;
    let addr = server.addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(server.url(), format!("http://127.0.0.1:{}", addr.port()));
    assert_eq!(server.base_url(), server.url());
    assert!(server.is_online());
    let key = [(IDEMPOTENCY_KEY, "op")];
    let created = send_with(addr, "POST", "/tasks", &key, Some(r#"{"id":"1","v":1}"#)).await;
    assert_eq!(created.status, 201);

    server.stop().await;
    assert!(!server.is_online());
    assert_refused(addr).await;
    // The data stays readable while down, and stopping twice is harmless.
    assert_eq!(server.snapshot()["tasks"]["1"], json!({"id": "1", "v": 1}));
    server.stop().await;
    assert_refused(addr).await;

    server.resume().await.unwrap();
    assert!(server.is_online());
    assert_eq!(server.addr(), addr);
    let reply = send(addr, "GET", "/tasks/1", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"id": "1", "v": 1}));
    // Idempotency keys survive too: a retry after the outage is replayed.
    let retry = send_with(addr, "POST", "/tasks", &key, Some(r#"{"id":"1","v":1}"#)).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.body, created.body);
    assert_eq!(server.applied_requests().len(), 1);
    // Resuming twice is harmless; it goes down and up again as often as
    // needed.
    server.resume().await.unwrap();
    for _ in 0..3 {
        server.stop().await;
        assert_refused(addr).await;
        server.resume().await.unwrap();
        assert_eq!(send(addr, "GET", "/health", None).await.status, 200);
    }
    server.shutdown().await;
    assert_refused(addr).await;
}

#[tokio::test]
async fn stop_closes_idle_keep_alive_connections() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    write_request(&mut stream, "GET", "/health", &[], None).await;
    let reply = read_response(&mut stream).await;
    assert_eq!(reply.status, 200);
    assert_ne!(
        reply.header("connection"),
        Some("close"),
        "the connection is kept alive"
    );

    server.stop().await;
    // The server closed its end: end of stream (or a reset), never a hang.
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest).await {
        Ok(read) => assert_eq!(read, 0, "unexpected bytes after stop"),
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}"),
    }
    server.resume().await.unwrap();
    assert_eq!(send(server.addr(), "GET", "/health", None).await.status, 200);
}

#[tokio::test]
async fn a_request_in_progress_is_answered_before_going_down() {
    let server = start().await;
    let addr = server.addr();
    let body = r#"{"id":"late"}"#;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` comes when the handler starts reading the body: from
    // here the request is in progress, whatever the scheduling.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed before 100 Continue"
        );
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );

    let stopping = tokio::spawn(async move {
        server.stop().await;
        server
    });
    // The listener closes first; the request in progress is still answered.
    wait_until_refused(addr).await;
    stream.write_all(body.as_bytes()).await.unwrap();
    let reply = read_response(&mut stream).await;
    assert_eq!(reply.status, 201);
    let server = stopping.await.unwrap();
    assert!(!server.is_online());
    assert_eq!(server.snapshot()["tasks"]["late"], json!({"id": "late"}));
}

#[tokio::test]
async fn a_taken_port_is_a_bind_error() {
    let server = start().await;
    let result = ReferenceServer::start(ServerConfig::new().with_port(server.addr().port())).await;
    match result {
        Err(Error::Bind { addr, .. }) => assert_eq!(addr, server.addr()),
        other => panic!("expected Bind, got {other:?}"),
    }
    assert!(matches!(
        ReferenceServer::start(ServerConfig::new().with_prefix("/a b")).await,
        Err(Error::InvalidPrefix { .. })
    ));
}

#[tokio::test]
async fn dropping_the_server_closes_the_port() {
    let server = start().await;
    let addr = server.addr();
    drop(server);
    // Dropping does not wait; the listener goes once the serving task sees
    // the signal.
    wait_until_refused(addr).await;
}
