//! The reference server over loopback HTTP/1.1: routes, errors, ETags and
//! `If-Match`, `PATCH`, the PostgREST dialect, idempotency keys (honoured
//! or ignored), the request log, the data file, the on/off switch, the
//! fault mode (delayed applies included), the bearer check, the change
//! feed, filtered lists, the stamp field and soft deletes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

mod assigned_ids;
mod auth;
mod changes;
mod client;
mod delayed_apply;
mod etags;
mod faults;
mod idempotency;
mod ignored_keys;
mod lifecycle;
mod listing;
mod patch;
mod persistence;
mod postgrest;
mod routes;
mod soft_delete;
