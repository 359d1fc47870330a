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
//! - logs every request addressed to a collection
//!   ([`ReferenceServer::request_log`], [`ReferenceServer::applied_requests`]),
//!   so a test can count how often each change took effect;
//! - goes down and comes back on the same port with its state
//!   ([`ReferenceServer::stop`], [`ReferenceServer::resume`]): while down,
//!   connections are refused, exactly as when the API is unreachable;
//! - shows its state for comparison with the local store
//!   ([`ReferenceServer::snapshot`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sync_reference_server::Error> {
//! use sync_reference_server::{ReferenceServer, ServerConfig};
//!
//! let server = ReferenceServer::start(ServerConfig::new().with_prefix("/api")).await?;
//! println!("serving {}", server.base_url());
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

pub use config::ServerConfig;
pub use error::Error;
pub use fault::{Fault, FaultPlan};
pub use handler::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
pub use log::RequestRecord;
pub use server::ReferenceServer;
pub use store::Snapshot;
