//! The network layer: the REST adapter on hyper and the connectivity probe.
//!
//! This crate will implement [`sync_core::SyncApiAdapter`] and
//! [`sync_core::ConnectivityMonitor`]. It exports nothing yet.
#![deny(missing_docs)]
