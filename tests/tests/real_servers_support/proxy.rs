//! A loopback HTTP proxy that loses answers: it forwards every request to
//! the server, waits for the server's answer (so the server has applied a
//! write), then, for a share of the writes, closes the connection instead
//! of answering, as a link that drops at the worst moment does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::chaos_support::Rng;

/// One request that went through the proxy.
#[derive(Debug, Clone)]
pub(crate) struct Passed {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) status: u16,
    /// Whether the answer was lost on the way back.
    pub(crate) lost: bool,
    /// The server's answer to a `POST` that succeeded, as JSON (lost or
    /// not): the record created, to see the ids a server assigned.
    pub(crate) created: Option<serde_json::Value>,
}

struct State {
    /// `http://host:port`, without a path.
    upstream: String,
    loss_percent: AtomicU64,
    rng: Mutex<Rng>,
    log: Mutex<Vec<Passed>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The proxy; it stops when dropped.
pub(crate) struct LossyProxy {
    address: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

/// The error that makes hyper close the connection without an answer.
#[derive(Debug)]
struct AnswerLost;

impl std::fmt::Display for AnswerLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("answer lost on purpose")
    }
}

impl std::error::Error for AnswerLost {}

impl LossyProxy {
    /// A proxy to `upstream` (`http://host:port`) losing `loss_percent` %
    /// of the answers to writes, chosen by `seed`.
    pub(crate) async fn start(upstream: &str, loss_percent: u64, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            loss_percent: AtomicU64::new(loss_percent),
            rng: Mutex::new(Rng::new(seed)),
            log: Mutex::new(Vec::new()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = service_fn(move |request| forward(Arc::clone(&state), request));
                    // An error here is the lost answer itself: the
                    // connection closes without a response.
                    let _closed = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { address, state, task }
    }

    /// `http://127.0.0.1:port`.
    pub(crate) fn origin(&self) -> String {
        format!("http://{}", self.address)
    }

    pub(crate) fn set_loss_percent(&self, percent: u64) {
        self.state.loss_percent.store(percent, Ordering::SeqCst);
    }

    pub(crate) fn log(&self) -> Vec<Passed> {
        self.state.log.lock().unwrap().clone()
    }

    pub(crate) fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |path| path.as_str().to_owned());
    let mut upstream = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONNECTION {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match state.client.request(upstream.body(Full::new(body))?).await {
        Ok(answer) => answer,
        Err(error) => {
            let mut failed = Response::new(Full::new(Bytes::from(format!("proxy: {error}"))));
            *failed.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(failed);
        }
    };
    let (mut answer_parts, answer_body) = answer.into_parts();
    let answer_body = answer_body.collect().await?.to_bytes();
    let write = matches!(
        parts.method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let lost = write && {
        let percent = state.loss_percent.load(Ordering::SeqCst);
        state.rng.lock().unwrap().below(100) < percent
    };
    let created = (parts.method == Method::POST && answer_parts.status.is_success())
        .then(|| serde_json::from_slice(&answer_body).ok())
        .flatten();
    state.log.lock().unwrap().push(Passed {
        method: parts.method,
        path,
        status: answer_parts.status.as_u16(),
        lost,
        created,
    });
    if lost {
        return Err(Box::new(AnswerLost));
    }
    // The body was read whole: hyper sets its length.
    answer_parts.headers.remove(http::header::TRANSFER_ENCODING);
    answer_parts.headers.remove(http::header::CONTENT_LENGTH);
    answer_parts.headers.remove(http::header::CONNECTION);
    Ok(Response::from_parts(answer_parts, Full::new(answer_body)))
}
