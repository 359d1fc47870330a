//! Test support for the offline sync engine's layers.
//!
//! - [`MemoryStore`]: an in-memory [`sync_core::SyncStore`] built on the
//!   same pure decisions as the real store, for tests of upper layers.
//! - [`conformance`]: behaviour every store must show, as async checks that
//!   any implementation's tests can run.
//! - [`FakeAdapter`] and [`FakeMonitor`]: the network seams in memory, with
//!   scriptable faults, for engine tests.
#![deny(missing_docs)]

pub mod conformance;
mod fakes;
mod memory_store;

pub use fakes::{FakeAdapter, FakeMonitor, FakeRequest, Fault};
pub use memory_store::MemoryStore;
