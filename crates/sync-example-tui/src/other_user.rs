//! [`OtherUser`]: someone else changing a task on the server, through a
//! plain hyper client of their own (not the engine), so the change can
//! only reach this app by the engine's pull.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// The name the other user signs their edits with.
pub const OTHER_USER_NAME: &str = "Sam";

/// Why another user's edit did not reach the server.
#[derive(Debug, thiserror::Error)]
pub enum OtherUserError {
    /// The server could not be reached (it is down).
    #[error("cannot reach the server: {0}")]
    Connect(#[from] std::io::Error),
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
    /// The server answered with an error status (`404`: it does not have
    /// the task yet).
    #[error("the server answered {0}")]
    Status(StatusCode),
    /// The server's answer was not a JSON object.
    #[error("the server's answer is not a JSON object")]
    NotAnObject,
}

/// Another user's HTTP client for the reference server at one address.
#[derive(Debug, Clone)]
pub struct OtherUser {
    addr: SocketAddr,
    edits: u32,
}

impl OtherUser {
    /// A client for the server at `addr`.
    #[must_use]
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, edits: 0 }
    }

    /// Reads task `id` from the server and writes it back with a new title
    /// (`{title} ({name}'s edit {n})`) by `PUT`. Returns the new title.
    ///
    /// # Errors
    /// [`OtherUserError`]: the server is down, does not have the task, or
    /// answered something else than a JSON object.
    pub async fn retitle(&mut self, id: &str) -> Result<String, OtherUserError> {
        let path = format!("/tasks/{}", sync_facade::encode_segment(id));
        let mut task = match self.send(Method::GET, &path, None).await? {
            Value::Object(task) => task,
            _ => return Err(OtherUserError::NotAnObject),
        };
        let title = task.get("title").and_then(Value::as_str).unwrap_or_default();
        let base = title
            .split_once(&format!(" ({OTHER_USER_NAME}'s edit"))
            .map_or(title, |(base, _)| base);
        self.edits += 1;
        let new_title = format!("{base} ({OTHER_USER_NAME}'s edit {})", self.edits);
        task.insert("title".into(), Value::String(new_title.clone()));
        self.send(Method::PUT, &path, Some(Value::Object(task))).await?;
        Ok(new_title)
    }

    /// One request on a connection of its own; the answer's JSON body.
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, OtherUserError> {
        let stream = TcpStream::connect(self.addr).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        driver.abort();
        if !status.is_success() {
            return Err(OtherUserError::Status(status));
        }
        serde_json::from_slice(&bytes).map_err(|_| OtherUserError::NotAnObject)
    }
}
