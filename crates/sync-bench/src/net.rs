//! `cargo xtask bench net`: sequential creates through the HTTP adapter
//! against a bare hyper client sending the same POSTs over keep-alive, both
//! to the same loopback server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use sync_core::{OperationId, SyncApiAdapter};
use sync_net::HttpSyncApiAdapter;
use tokio::net::TcpListener;

use crate::report::{Report, Row, Target};

/// A loopback server answering every request with `201` and the request's
/// body, as the reference server (and the reference's json-server) echo
/// the stored object; the counter holds how many requests it answered.
pub(crate) async fn server() -> Result<(SocketAddr, Arc<AtomicU64>), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let counter = Arc::clone(&counter);
                    async move {
                        let body = request.into_body().collect().await.map(|body| body.to_bytes());
                        counter.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(201)
                                .header("content-type", "application/json")
                                .body(Full::new(body.unwrap_or_default()))
                                .unwrap_or_default(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    Ok((address, requests))
}

fn payload(index: usize) -> serde_json::Map<String, serde_json::Value> {
    let value = json!({ "title": format!("task {index}"), "done": false, "notes": "n".repeat(150) });
    value.as_object().cloned().unwrap_or_default()
}

async fn through_adapter(address: SocketAddr, count: usize) -> Result<f64, String> {
    let adapter = HttpSyncApiAdapter::builder(format!("http://{address}"))
        .build()
        .map_err(|e| e.to_string())?;
    let entity = "tasks".parse().map_err(|_| "entity")?;
    let started = Instant::now();
    for index in 0..count {
        let id = sync_core::RecordId::from(index as u64);
        adapter
            .create(&entity, &id, &payload(index), &OperationId::generate())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

pub(crate) async fn bare_hyper(address: SocketAddr, count: usize, nodelay: bool) -> Result<f64, String> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(nodelay);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let uri: http::Uri = format!("http://{address}/tasks").parse().map_err(|_| "uri")?;
    let started = Instant::now();
    for index in 0..count {
        let body = serde_json::to_vec(&payload(index)).map_err(|e| e.to_string())?;
        let request = Request::post(uri.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("idempotency-key", OperationId::generate().as_str())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let _: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

pub(crate) async fn run(report: &mut Report, smoke: bool) -> Result<(), String> {
    let count = if smoke { 100 } else { 10_000 };
    eprintln!("net benchmarks ({count} sequential creates to a loopback server)");
    let (address, _) = server().await?;
    // Warm both paths, then take the best of three interleaved runs.
    through_adapter(address, count / 10).await?;
    bare_hyper(address, count / 10, true).await?;
    let (mut adapter, mut bare, mut bare_defaults) = (0f64, 0f64, 0f64);
    for _ in 0..3 {
        adapter = adapter.max(through_adapter(address, count).await?);
        bare = bare.max(bare_hyper(address, count, true).await?);
        bare_defaults = bare_defaults.max(bare_hyper(address, count, false).await?);
    }
    let sizes = format!("{count} POSTs, ~200 B bodies, keep-alive");
    report.row(Row {
        scenario: "net: sequential creates".into(),
        sizes: sizes.clone(),
        engine: adapter,
        baseline_name: "bare hyper client, TCP_NODELAY as the adapter".into(),
        baseline: bare,
        unit: "requests/s",
        target: Some(Target::RatioAtLeast(0.9)),
    });
    // The adapter sets TCP_NODELAY so that a body larger than one segment is
    // never held back by Nagle waiting for a delayed ACK on a real network;
    // on loopback that costs a little, shown here for the record.
    report.row(Row {
        scenario: "net: sequential creates".into(),
        sizes,
        engine: adapter,
        baseline_name: "bare hyper client, hyper defaults (Nagle on)".into(),
        baseline: bare_defaults,
        unit: "requests/s",
        target: None,
    });
    Ok(())
}
