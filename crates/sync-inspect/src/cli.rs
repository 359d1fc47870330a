//! The command line: commands, arguments and options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Inspect and repair an offline sync database (offline_sync.db).
///
/// Read-only commands (status, queue, show, export) work on a copied file
/// and beside a running app without disturbing it. Writing commands (retry,
/// discard) need the app closed: they refuse while it holds the file.
#[derive(Debug, Parser)]
#[command(name = "offline-sync", version, about, long_about)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// The database file (the app's offline_sync.db, or a copy of it).
    pub(crate) file: PathBuf,
    /// Print JSON for scripts instead of tables.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Counts per entity and status, the oldest unsynced item's age, parked
    /// items, pull cursors, file size and schema version.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// The queue items, oldest first.
    Queue {
        #[command(flatten)]
        common: Common,
        /// Only failed items (parked ones included).
        #[arg(long)]
        failed: bool,
        /// Only parked items (failed for good, waiting for a retry or a new change).
        #[arg(long)]
        parked: bool,
        /// Only items of this entity.
        #[arg(long, value_name = "ENTITY")]
        entity: Option<String>,
    },
    /// One record: its document, queue item, last error and server copy.
    Show {
        #[command(flatten)]
        common: Common,
        /// The record's entity (collection).
        entity: String,
        /// The record's id.
        id: String,
    },
    /// JSON lines of documents and queue items, for a bug report. Without
    /// --with-payloads, documents' data and queue payloads are left out.
    Export {
        #[command(flatten)]
        common: Common,
        /// Include documents' data and queue payloads (they may hold
        /// personal data).
        #[arg(long)]
        with_payloads: bool,
    },
    /// Makes a failed item (parked or not) eligible now, or every failed
    /// item with --all-failed. Needs the app closed.
    Retry {
        #[command(flatten)]
        common: Common,
        /// The record's entity.
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        entity: Option<String>,
        /// The record's id.
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        id: Option<String>,
        /// Retry every failed item.
        #[arg(long)]
        all_failed: bool,
    },
    /// Drops a record's queued change (not one being sent): the document
    /// stays as last saved, or with --revert goes back to the copy the
    /// server last confirmed, where one is known. Needs the app closed.
    Discard {
        #[command(flatten)]
        common: Common,
        /// The record's entity.
        entity: String,
        /// The record's id.
        id: String,
        /// Put the document back to the server's last confirmed copy.
        #[arg(long)]
        revert: bool,
    },
}

impl Command {
    /// The options every command takes.
    pub(crate) fn common(&self) -> &Common {
        match self {
            Self::Status { common }
            | Self::Queue { common, .. }
            | Self::Show { common, .. }
            | Self::Export { common, .. }
            | Self::Retry { common, .. }
            | Self::Discard { common, .. } => common,
        }
    }
}
