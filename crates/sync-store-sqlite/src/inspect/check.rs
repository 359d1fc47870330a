//! The checks before a file is inspected: that it exists, is a SQLite
//! database, is ours and has a schema this build knows. Each only reads.

use std::io::Read;
use std::path::Path;

use sqlx::SqliteConnection;
use sync_core::{StoreError, StoreErrorKind};

use super::Layout;
use crate::error::map_sqlx;
use crate::schema::{APPLICATION_ID, SCHEMA_VERSION};

/// The first 16 bytes of every SQLite 3 database.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses a path that is no readable SQLite file, reading only its header.
pub(super) fn check_file(path: &Path) -> Result<(), StoreError> {
    let shown = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::new(
                StoreErrorKind::Invalid,
                format!(
                    "{shown} does not exist: pass the path of the app's database file \
                     (offline_sync.db by default)"
                ),
            ));
        }
        Err(error) => return Err(unreadable(path, error)),
    };
    if metadata.is_dir() {
        return Err(StoreError::new(
            StoreErrorKind::Invalid,
            format!("{shown} is a directory: pass the database file inside it (offline_sync.db by default)"),
        ));
    }
    let mut header = [0_u8; 16];
    let read = std::fs::File::open(path)
        .and_then(|mut file| read_prefix(&mut file, &mut header))
        .map_err(|error| unreadable(path, error))?;
    if read == 0 {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "{shown} is empty, not a sync database: check the path (an app that never opened \
                 its store has no data to inspect)"
            ),
        ));
    }
    if read < header.len() || &header != SQLITE_HEADER {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "{shown} is not a SQLite database (its header is wrong): check the path, or the file \
                 was damaged in transfer; copy it again from the device"
            ),
        ));
    }
    Ok(())
}

/// The companion file of `database` with `suffix` (`-wal`, `-shm`).
pub(super) fn companion(database: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    std::path::PathBuf::from(name)
}

/// Reads as much of `buffer` as the file holds.
fn read_prefix(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn unreadable(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::new(
        StoreErrorKind::ReadOnly,
        format!(
            "{} cannot be read ({error}): check its permissions, or run as the user that owns it",
            path.display()
        ),
    )
    .with_source(error)
}

/// Names the file in an error, and says what to do when it is damaged.
pub(super) fn explain(error: StoreError, path: &Path) -> StoreError {
    let advice = match error.kind() {
        StoreErrorKind::Corrupt => {
            "the file is damaged (or was copied while the app was writing it without its -wal file): \
             copy it again together with its -wal file, or restore it from a backup"
        }
        StoreErrorKind::Busy => "the app kept the database locked: try again in a moment",
        _ => "",
    };
    let message = if advice.is_empty() {
        format!("{}: {}", path.display(), error.message())
    } else {
        format!("{}: {}; {advice}", path.display(), error.message())
    };
    StoreError::new(error.kind(), message).with_source(error)
}

async fn scalar(
    connection: &mut SqliteConnection,
    sql: &'static str,
    path: &Path,
) -> Result<i64, StoreError> {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(connection)
        .await
        .map_err(|error| explain(map_sqlx(error, "reading the schema"), path))
}

/// Reads the schema's marks and tables; refuses a foreign or newer file.
pub(super) async fn layout(connection: &mut SqliteConnection, path: &Path) -> Result<Layout, StoreError> {
    let shown = path.display();
    let application_id = scalar(connection, "PRAGMA application_id", path).await?;
    let version = scalar(connection, "PRAGMA user_version", path).await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut *connection)
            .await
            .map_err(|error| explain(map_sqlx(error, "reading the schema"), path))?;
    let has = |name: &str| tables.iter().any(|table| table == name);
    if application_id != APPLICATION_ID && application_id != 0 {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "{shown} is a SQLite database of another application (application_id {application_id:#x}), \
                 not a sync database: check the path (the app's file is offline_sync.db by default)"
            ),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::new(
            StoreErrorKind::SchemaTooNew,
            format!(
                "{shown} has schema version {version}, written by a newer version of the sync library \
                 (this inspector knows up to {SCHEMA_VERSION}): use the inspector built with the app's \
                 version; the file was left untouched"
            ),
        ));
    }
    if !has("records") || !has("queue") || version < 1 {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "{shown} is a SQLite database but not a sync database (it has no records and queue \
                 tables): check the path (the app's file is offline_sync.db by default)"
            ),
        ));
    }
    Ok(Layout {
        version,
        http_status: version >= 4,
        server_copies: has("server_copies"),
        pull_state: has("pull_state"),
        aliases: has("id_aliases"),
    })
}
