//! The errors of starting and resuming a server.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a [`crate::ReferenceServer`] could not start or resume.
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
    /// The path prefix holds characters that need percent-encoding, or an
    /// empty segment.
    #[error("invalid path prefix {prefix:?}: use plain segments such as /api/v2")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
    },
}
