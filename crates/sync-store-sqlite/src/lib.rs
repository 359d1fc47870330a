//! The storage layer: local documents and the durable sync queue on SQLite.
//!
//! This crate will implement [`sync_core::SyncStore`] on sqlx. It exports
//! nothing yet: until it does, use `sync_testkit::MemoryStore`, which
//! implements the same trait in memory.
#![deny(missing_docs)]
