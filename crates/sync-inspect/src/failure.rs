//! What a failed command prints and its exit code.

use sync_core::{StoreError, StoreErrorKind};

/// The file was refused or could not be read or written.
pub(crate) const EXIT_ERROR: u8 = 1;
/// An app holds the file: a writing command refused.
pub(crate) const EXIT_IN_USE: u8 = 3;
/// The record or item asked for is not there, or has nothing to do.
pub(crate) const EXIT_NOT_FOUND: u8 = 4;

/// A message saying what is wrong and what to do, and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    /// A failure with `code`.
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        let code = if error.kind() == StoreErrorKind::InUse {
            EXIT_IN_USE
        } else {
            EXIT_ERROR
        };
        Self::new(code, error.message())
    }
}

impl From<sync_core::ValidationError> for Failure {
    fn from(error: sync_core::ValidationError) -> Self {
        Self::new(EXIT_ERROR, format!("{error}: check the entity name and id"))
    }
}
