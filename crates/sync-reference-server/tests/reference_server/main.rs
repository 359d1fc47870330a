//! The reference server over loopback HTTP/1.1: routes, errors,
//! idempotency keys, the request log, the data file and the on/off switch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod client;
mod idempotency;
mod lifecycle;
mod persistence;
mod routes;
