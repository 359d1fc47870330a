//! A minimal HTTP/1.1 client on a raw socket: requests go out byte for byte
//! as written (percent-encoding included) and connections stay in the
//! test's hands.

use std::net::SocketAddr;

use serde_json::Value;
use sync_reference_server::{ReferenceServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as received.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Checks the body is a JSON error object and returns its message.
    pub(crate) fn error(&self) -> String {
        let body = self.json();
        assert!(body.is_object(), "error body is not an object: {body}");
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {body}"))
            .to_owned()
    }
}

pub(crate) async fn start() -> ReferenceServer {
    ReferenceServer::start(ServerConfig::new()).await.unwrap()
}

/// One request on a fresh connection, closed after the answer.
pub(crate) async fn send(addr: SocketAddr, method: &str, target: &str, body: Option<&str>) -> Reply {
    send_with(addr, method, target, &[], body).await
}

/// As [`send`], with extra headers.
pub(crate) async fn send_with(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut all_headers = vec![("Connection", "close")];
    all_headers.extend_from_slice(headers);
    write_request(&mut stream, method, target, &all_headers, body).await;
    read_response(&mut stream).await
}

pub(crate) async fn write_request(
    stream: &mut TcpStream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) {
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        // JSON unless the test says otherwise.
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    stream.write_all(request.as_bytes()).await.unwrap();
}

/// Reads exactly one response (the server always sends a Content-Length,
/// but for a `204`, which has no body).
pub(crate) async fn read_response(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let head_end = loop {
        if let Some(position) = raw.windows(4).position(|window| window == b"\r\n\r\n") {
            break position;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "connection closed before a complete response head");
        raw.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse().unwrap())
        .or((status == 204).then_some(0))
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..read]);
    }
    assert_eq!(body.len(), length, "more bytes than Content-Length");
    Reply {
        status,
        headers,
        body,
    }
}

/// One request on a fresh connection; everything the server sent until it
/// closed the connection (a reset ends the reading as a close does).
pub(crate) async fn send_raw(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut all_headers = vec![("Connection", "close")];
    all_headers.extend_from_slice(headers);
    write_request(&mut stream, method, target, &all_headers, body).await;
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(read @ 1..) = stream.read(&mut chunk).await {
        received.extend_from_slice(&chunk[..read]);
    }
    received
}
