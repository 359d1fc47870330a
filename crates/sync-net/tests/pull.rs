//! Pulls through `HttpSyncApiAdapter` against loopback wiremock servers:
//! each strategy's requests (exact query strings), paging with cursors,
//! ties in filtered lists across pages, soft deletes, 410, and every bad
//! answer as a permanent error that quotes nothing of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a panic is the failure report.

#[path = "pull/feed.rs"]
mod feed;
#[path = "pull/filtered.rs"]
mod filtered;
#[path = "pull/snapshot.rs"]
mod snapshot;
#[path = "pull/support.rs"]
mod support;
