//! Maps sqlx and I/O failures to [`StoreError`] kinds callers can branch on,
//! with messages that say what to do next.

use std::io;

use sync_core::{StoreError, StoreErrorKind};

// SQLite primary result codes (https://www.sqlite.org/rescode.html).
const SQLITE_PERM: i32 = 3;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// The kind and advice for a SQLite result code.
fn classify_code(code: i32) -> (StoreErrorKind, &'static str) {
    match code & 0xff {
        SQLITE_BUSY | SQLITE_LOCKED => (
            StoreErrorKind::Busy,
            "another connection kept the database locked past the busy timeout: retry, or raise busy_timeout",
        ),
        SQLITE_FULL => (
            StoreErrorKind::Full,
            "the disk (or the configured max_page_count) is full: free space, then retry; nothing was written",
        ),
        SQLITE_CORRUPT | SQLITE_NOTADB => (
            StoreErrorKind::Corrupt,
            "the file is not a sync database or is damaged: restore it from a backup, or move it away to start empty",
        ),
        SQLITE_READONLY | SQLITE_PERM | SQLITE_CANTOPEN => (
            StoreErrorKind::ReadOnly,
            "the database file or its directory cannot be written: check that the directory exists and is writable",
        ),
        SQLITE_IOERR => (
            StoreErrorKind::Other,
            "the disk reported an I/O error: check the device, then retry",
        ),
        _ => (StoreErrorKind::Other, "unexpected database error"),
    }
}

/// Maps an I/O error to a store error while `context` was being done.
pub(crate) fn map_io(error: io::Error, context: &str) -> StoreError {
    let (kind, advice) = match error.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => (
            StoreErrorKind::ReadOnly,
            "the database file or its directory is not writable: fix the permissions or choose a writable directory",
        ),
        io::ErrorKind::Unsupported => (
            StoreErrorKind::Other,
            "the filesystem does not support file locks: put the database on a local disk",
        ),
        io::ErrorKind::NotFound => (
            StoreErrorKind::ReadOnly,
            "the directory does not exist: create it first, or choose another",
        ),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            (StoreErrorKind::Full, "the disk is full: free space, then retry")
        }
        io::ErrorKind::IsADirectory => (
            StoreErrorKind::Invalid,
            "the database path is a directory: pass a file path, or use SqliteStoreOptions::in_dir",
        ),
        _ => (StoreErrorKind::Other, "an I/O error occurred"),
    };
    StoreError::new(kind, format!("{context}: {advice}")).with_source(error)
}

/// Maps a sqlx error to a store error while `context` was being done.
pub(crate) fn map_sqlx(error: sqlx::Error, context: &str) -> StoreError {
    let (kind, advice) = match &error {
        sqlx::Error::Database(database) => {
            let code = database
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .unwrap_or(0);
            classify_code(code)
        }
        sqlx::Error::Io(io) => {
            let kind = io.kind();
            return map_io(io::Error::new(kind, error.to_string()), context);
        }
        sqlx::Error::PoolClosed => (StoreErrorKind::Closed, "the store was closed: open it again"),
        sqlx::Error::WorkerCrashed => (
            StoreErrorKind::Closed,
            "the database connection's worker stopped unexpectedly: open the store again",
        ),
        sqlx::Error::PoolTimedOut => (
            StoreErrorKind::Busy,
            "every read connection stayed busy: retry, or raise read_connections",
        ),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) | sqlx::Error::Decode(_) => (
            StoreErrorKind::Corrupt,
            "a stored row could not be read: the file may have been edited by hand or damaged",
        ),
        _ => (StoreErrorKind::Other, "unexpected database error"),
    };
    StoreError::new(kind, format!("{context}: {advice}")).with_source(error)
}

/// A stored value that does not decode: the file was damaged or edited.
pub(crate) fn corrupt_row(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!(
            "a stored {what} could not be read ({detail}): the file may have been edited by hand or damaged"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_codes_map_by_their_primary_code() {
        // SQLITE_BUSY_SNAPSHOT = 517, SQLITE_IOERR_WRITE = 778, SQLITE_READONLY_DBMOVED = 1032.
        assert_eq!(classify_code(517).0, StoreErrorKind::Busy);
        assert_eq!(classify_code(778).0, StoreErrorKind::Other);
        assert_eq!(classify_code(1032).0, StoreErrorKind::ReadOnly);
        assert_eq!(classify_code(SQLITE_FULL).0, StoreErrorKind::Full);
        assert_eq!(classify_code(SQLITE_NOTADB).0, StoreErrorKind::Corrupt);
    }

    #[test]
    fn io_errors_say_what_to_do() {
        let error = map_io(
            io::Error::from(io::ErrorKind::PermissionDenied),
            "creating /x/offline_sync.db",
        );
        assert_eq!(error.kind(), StoreErrorKind::ReadOnly);
        assert!(
            error.to_string().contains("choose a writable directory"),
            "{error}"
        );
        let error = map_io(io::Error::from(io::ErrorKind::IsADirectory), "opening /x");
        assert_eq!(error.kind(), StoreErrorKind::Invalid);
        assert!(error.to_string().contains("is a directory"), "{error}");
    }
}
