//! The errors of starting and resuming a server, and of seeding it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a [`crate::ReferenceServer`] could not start, resume or take
/// seeded records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be bound: the port is taken, or not ours to
    /// take.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The data file exists but could not be read.
    #[error("cannot read the data file {}: {source}", path.display())]
    ReadDataFile {
        /// The data file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The data file is not what this server writes: a JSON object mapping
    /// each collection name to an array of objects, each with a unique
    /// string or number `"id"`. The file is left as it is.
    #[error("the data file {} is not valid: {reason}", path.display())]
    InvalidDataFile {
        /// The data file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// The stamp field or the soft-delete field cannot work: it is empty,
    /// `"id"`, or both are the same.
    #[error("invalid field {field:?}: {reason}")]
    InvalidField {
        /// The field as given.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Records given to [`crate::ReferenceServer::seed`] are not JSON
    /// objects with a usable `"id"`; none was stored.
    #[error("invalid records: {reason}")]
    InvalidRecords {
        /// Which record, and what is wrong.
        reason: String,
    },
    /// The data file could not be written.
    #[error("cannot write the data file {}: {source}", path.display())]
    WriteDataFile {
        /// The data file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The path prefix holds characters that need percent-encoding, or an
    /// empty segment.
    #[error("invalid path prefix {prefix:?}: use plain segments such as /api/v2")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
    },
}
