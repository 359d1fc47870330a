//! The storage layer: local documents and the durable sync queue in one
//! SQLite file, through sqlx.
//!
//! [`SqliteStore`] implements [`sync_core::SyncStore`]. It decides nothing
//! itself: every save applies `sync_core::coalesce::plan_save` and every
//! attempt outcome applies `sync_core::attempt::finish_attempt`, inside one
//! transaction each, so the rules tested in sync-core are the rules on disk.
//!
//! ```no_run
//! # async fn example() -> Result<(), sync_core::StoreError> {
//! use sync_store_sqlite::{Durability, SqliteStoreOptions};
//!
//! // The default (`Durability::Full`) survives a power cut; `Normal` only
//! // an app crash, for faster commits.
//! let store = SqliteStoreOptions::in_dir("/var/lib/my-app")
//!     .durability(Durability::Normal)
//!     .open()
//!     .await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod changes;
mod children;
mod diagnostics;
mod discard;
mod error;
mod files;
pub mod inspect;
mod options;
mod pull;
mod pull_rows;
mod queries;
mod renames;
mod rows;
mod schema;
mod store;
mod writer;

pub use diagnostics::Diagnostics;
pub use options::{DEFAULT_FILE_NAME, Durability, SqliteStoreOptions};
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;
