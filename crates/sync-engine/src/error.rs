//! The engine's error type.

use sync_core::{StoreError, ValidationError};

/// Why an engine call failed. Nothing was saved when a save returns this.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Bad input: an invalid entity name or id, or a payload that is not a
    /// JSON object.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The local store failed. (A change the store refused as invalid,
    /// such as a payload over its size limit, is [`SyncError::Invalid`].)
    #[error(transparent)]
    Store(StoreError),
    /// A typed value could not be turned into JSON, or a stored document
    /// into the requested type.
    #[error("JSON conversion failed: {0}: check that the type matches the stored documents")]
    Json(#[from] serde_json::Error),
    /// The engine was closed.
    #[error("the engine was closed: create a new one")]
    Closed,
    /// The sync run stopped before it could report: the engine was dropped
    /// mid-run, or the run hit a bug (a panic). Items it had claimed are
    /// reclaimed by the next run.
    #[error("the sync run stopped before it finished: run sync again")]
    Interrupted,
    /// Another live engine of this process already drives this store.
    #[error(
        "another engine of this process already drives this store: share that engine (clones are cheap) \
         or close it first"
    )]
    StoreInUse,
}

impl From<StoreError> for SyncError {
    fn from(error: StoreError) -> Self {
        match error.into_validation_error() {
            Ok(invalid) => Self::Invalid(invalid),
            Err(error) => Self::Store(error),
        }
    }
}
