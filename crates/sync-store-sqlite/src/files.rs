//! The store's files: created owner-only, and the exclusive lock beside the
//! database that keeps a second process (or engine) out.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sync_core::{StoreError, StoreErrorKind};

use crate::error::map_io;

/// The mode of every file of a store on Unix: read and write for the owner
/// only, since the files hold the app's documents.
#[cfg(unix)]
const OWNER_ONLY: u32 = 0o600;

/// Creates the file if missing, owner-only (0600) on Unix whatever the
/// umask; an existing file is only opened, to check that it can be written.
/// Returns whether this call created it: only then may a failed open
/// remove it (another process may have created it a moment before).
pub(crate) fn create_owner_only(path: &Path) -> Result<bool, StoreError> {
    let context = || format!("opening {}", path.display());
    let mut create = OpenOptions::new();
    create.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, OWNER_ONLY);
    match create.open(path) {
        // The umask may have taken bits away: set the mode exactly.
        Ok(file) => restrict(&file)
            .map(|()| true)
            .map_err(|error| map_io(error, &context())),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(|_| false)
            .map_err(|error| map_io(error, &context())),
        Err(error) => Err(map_io(error, &context())),
    }
}

/// Sets an open file's mode to owner-only.
#[cfg(unix)]
fn restrict(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(OWNER_ONLY))
}

/// Sets an open file's mode to owner-only (nothing to do off Unix).
#[cfg(not(unix))]
fn restrict(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Takes group and other access away from a database known to be ours and
/// its companion files (SQLite creates `-wal` and `-shm` with the
/// database's mode), so a file created by an older version or copied in is
/// no more open than a new one. Best effort: a file owned by another user
/// cannot be changed, and stays usable.
#[cfg(unix)]
pub(crate) fn tighten(database: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        if let Ok(metadata) = std::fs::metadata(&name)
            && metadata.permissions().mode() & 0o777 != OWNER_ONLY
        {
            let _ = std::fs::set_permissions(&name, std::fs::Permissions::from_mode(OWNER_ONLY));
        }
    }
}

/// Nothing to tighten off Unix.
#[cfg(not(unix))]
pub(crate) fn tighten(_database: &Path) {}

/// Takes the exclusive lock beside the database, waiting up to `timeout`.
pub(crate) async fn acquire_lock(database: &Path, timeout: Duration) -> Result<File, StoreError> {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    create_owner_only(&path)?;
    let file = File::options()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| map_io(error, &format!("opening {}", path.display())))?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::new(
                    StoreErrorKind::InUse,
                    format!(
                        "{} is open in another process or engine (it holds {}): close that one first, \
                         or give each engine its own database file",
                        database.display(),
                        path.display()
                    ),
                ));
            }
            Err(TryLockError::Error(error)) => {
                return Err(map_io(error, &format!("locking {}", path.display())));
            }
        }
    }
}
