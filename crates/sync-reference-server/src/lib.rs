//! The reference REST server: what the demo and the end-to-end tests sync
//! against, the counterpart of the Flutter reference's json-server.
//!
//! It keeps named collections of JSON objects keyed by string id, in memory
//! and optionally in a JSON file, and serves them over HTTP/1.1 on
//! `127.0.0.1` (paths relative to an optional prefix such as `/api`):
//!
//! | request | answer |
//! |---|---|
//! | `POST /{collection}` with a JSON object | `201` and the stored object; `409` if its id exists |
//! | `GET /{collection}` | `200` and the objects in insertion order |
//! | `GET /{collection}/{id}` | `200` and the object, or `404` |
//! | `PUT /{collection}/{id}` with a JSON object | `200` and the stored object, or `404` |
//! | `DELETE /{collection}/{id}` | `200` and the deleted object, or `404` |
//! | `GET /health` | `200` and `{"status":"ok"}` |
//!
//! `/{collection}?id={id}` addresses a record as `/{collection}/{id}` does;
//! path segments and query values are percent-decoded. Bodies that are not
//! JSON objects get `400`, other methods `405`; every error body is a JSON
//! object with an `"error"` message.
//!
//! For testing the sync engine's promises it also:
//!
//! - honours `Idempotency-Key` on writes: a request that took effect is
//!   remembered with its answer, and a repeat of the key gets that answer
//!   again (with `Idempotent-Replayed: true`) without being applied twice;
//!   or, with [`IdempotencyMode::Ignore`] ([`ServerConfig::with_idempotency`],
//!   [`ReferenceServer::set_idempotency`]), ignores it as json-server and
//!   most real APIs do, so that only the client can prevent a duplicate
//!   (a repeated create of an existing id gets `409`);
//! - logs every request addressed to a collection
//!   ([`ReferenceServer::request_log`], [`ReferenceServer::applied_requests`]),
//!   so a test can count how often each change took effect, and under
//!   which idempotency key, in either mode;
//! - goes down and comes back on the same port with its state
//!   ([`ReferenceServer::stop`], [`ReferenceServer::resume`]): while down,
//!   connections are refused, exactly as when the API is unreachable;
//! - shows its state for comparison with the local store
//!   ([`ReferenceServer::snapshot`]);
//! - injects faults into answers by a seeded, reproducible [`FaultPlan`]
//!   ([`ServerConfig::with_faults`], [`ReferenceServer::set_faults`]), each
//!   faulted request logged with its [`RequestRecord::fault`] and counted
//!   ([`ReferenceServer::fault_counts`]);
//! - requires a bearer token when asked ([`ServerConfig::with_bearer_token`],
//!   [`ReferenceServer::require_bearer`]): a request to a collection without
//!   `Authorization: Bearer {token}` gets `401` with a JSON error, is logged
//!   and is neither applied nor faulted (`/health` stays open).
//!
//! ## Faults
//!
//! Decided per request to a collection (never `/health`); "handled" means
//! the request is applied exactly as without the fault (idempotency key
//! remembered, logged with `applied` as usual) and only the answer breaks:
//!
//! | [`Fault`] | handled | what the client sees |
//! |---|---|---|
//! | `LoseResponse` | yes | the connection closed before any byte of an answer |
//! | `ResetMidBody` | yes | status and headers with the full `Content-Length`, part of the body, then the close |
//! | `Delay(d)` | yes | the whole answer, `d` late |
//! | `Status(s)` | **no** | `s` with `{"error": "..."}` |
//! | `RetryAfter { status, seconds }` | **no** | `status` with `Retry-After: {seconds}` and a JSON error |
//! | `MalformedJson` | yes | the earned status, `application/json`, the body minus its last byte |
//! | `JsonArray` | yes | the earned status and `[1,2,3]` |
//! | `HugeBody { bytes }` | yes | the earned status and exactly `bytes` bytes of `{"padding":"xxx…"}`, streamed |
//! | `Trickle { interval }` | yes | the true answer, its body one byte per `interval` |
//! | `DelayedApply(d)` | yes, `d` late | nothing for `d`, then the true answer; the request is handled after `d` even if the client hung up meanwhile ([`ReferenceServer::wait_for_delayed_applies`]) |
//!
//! A plan picks faults by record id ([`FaultPlan::for_id`]), in bursts
//! ([`FaultPlan::burst`]), for the first attempts of every operation
//! ([`FaultPlan::first_attempts`]) or at random ([`FaultPlan::with_random`]);
//! every choice but the burst's is a pure function of the seed and the
//! request (method, collection, id, idempotency key, and how many times
//! that operation was seen), so the same requests get the same faults in
//! any arrival order.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sync_reference_server::Error> {
//! use http::{Method, StatusCode};
//! use sync_reference_server::{Fault, FaultPlan, ReferenceServer, ServerConfig};
//!
//! let server = ReferenceServer::start(ServerConfig::new().with_prefix("/api")).await?;
//! println!("serving {}", server.base_url());
//! // The first send of every write loses its answer; then a 503 in ten.
//! server.set_faults(Some(
//!     FaultPlan::seeded(42)
//!         .only_methods(&[Method::POST, Method::PUT, Method::DELETE])
//!         .first_attempts(1, Fault::LoseResponse)
//!         .with_random(Fault::Status(StatusCode::SERVICE_UNAVAILABLE), 0.1)
//!         .max_faults_per_request_key(3),
//! ));
//! server.stop().await; // the API is down: connections are refused
//! server.resume().await?; // and back, same port, same data
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod body;
mod config;
mod error;
mod fault;
mod handler;
mod log;
mod persist;
mod route;
mod server;
mod store;

pub use config::{IdempotencyMode, ServerConfig};
pub use error::Error;
pub use fault::{Fault, FaultPlan};
pub use handler::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
pub use log::RequestRecord;
pub use server::ReferenceServer;
pub use store::Snapshot;
