//! The reference server over loopback HTTP/1.1: routes, errors,
//! idempotency keys, the request log, the data file, the on/off switch, the
//! fault mode and the bearer check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod auth;
mod client;
mod faults;
mod idempotency;
mod lifecycle;
mod persistence;
mod routes;
