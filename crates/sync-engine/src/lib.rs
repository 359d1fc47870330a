//! The orchestration layer: saves, sync passes, retries and watch streams on
//! tokio, built only on the traits of [`sync_core`].
//!
//! It exports nothing yet.
#![deny(missing_docs)]
