//! The optional data file: read once at start, replaced after every change.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::store::{Collections, StoreOptions};

/// The collections in `path`, versioned and stamped after `base`; empty
/// when the file does not exist yet.
pub(crate) fn load(path: &Path, base: u64, options: StoreOptions) -> Result<Collections, Error> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(Collections::new(base, options));
        }
        Err(source) => {
            return Err(Error::ReadDataFile {
                path: path.to_owned(),
                source,
            });
        }
    };
    Collections::from_file_text(&text, base, options).map_err(|reason| Error::InvalidDataFile {
        path: path.to_owned(),
        reason,
    })
}

/// Replaces `path` with the collections, atomically: a reader (or a crash)
/// sees the old file or the new one, never a mix.
pub(crate) fn save(path: &Path, collections: &Collections) -> io::Result<()> {
    let text = collections.to_file_text().map_err(io::Error::other)?;
    let temp = temp_path(path);
    let result = write_synced(&temp, &text).and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: a leftover temp file is harmless, the error is what matters.
        let _ignored = fs::remove_file(&temp);
    }
    result
}

fn write_synced(path: &Path, text: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(text)?;
    // On disk before the rename makes it the data file.
    file.sync_all()
}

/// `dir/.name.tmp` beside the data file: the same directory, so the rename
/// stays on one file system and is atomic.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_else(|| "data.json".as_ref()));
    name.push(".tmp");
    path.with_file_name(name)
}
