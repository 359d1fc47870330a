//! Error types shared by every layer.
//!
//! Each error carries a kind the caller can branch on ([`ErrorKind`],
//! [`StoreErrorKind`]) and a message that says what to do next. Errors never
//! carry payloads or credentials.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// Boxed source error, kept for `source()` chains.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Input that was rejected before anything was written.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// An entity name or record id was empty.
    #[error("{what} must not be empty: pass at least one character")]
    Empty {
        /// Which value: `"entity name"` or `"record id"`.
        what: &'static str,
    },
    /// An entity name or record id was longer than the limit.
    #[error("{what} is {len} bytes long, over the {max}-byte limit: use a shorter value")]
    TooLong {
        /// Which value.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// An entity name or record id contained a control character or NUL.
    #[error(
        "{what} contains the control character U+{code:04X} at byte {position}: remove control characters (NUL included)"
    )]
    ControlCharacter {
        /// Which value.
        what: &'static str,
        /// Byte offset of the character.
        position: usize,
        /// The character's code point.
        code: u32,
    },
    /// A payload was valid JSON but not an object.
    #[error(
        "payload must be a JSON object, found {found}: wrap the value in an object such as {{\"value\": ...}}"
    )]
    PayloadNotObject {
        /// The JSON type found: `"an array"`, `"a string"`, `"null"`, ...
        found: &'static str,
    },
    /// The pull page size was zero.
    #[error("pull_page_size must be at least 1: set it to the number of changes one request may carry")]
    ZeroPullPageSize,
    /// A server's pull cursor was unusable.
    #[error(
        "the server's pull cursor is unusable ({reason}): the server must issue a non-empty cursor of at most 4096 printable bytes"
    )]
    InvalidCursor {
        /// Why.
        reason: &'static str,
    },
    /// A payload was larger than the configured limit.
    #[error(
        "payload is {size} bytes, over the {max}-byte limit: store large blobs elsewhere and sync a reference to them"
    )]
    PayloadTooLarge {
        /// Its serialised size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A string did not name a known sync operation.
    #[error("unknown sync operation {0:?}: expected \"create\", \"update\" or \"delete\"")]
    UnknownOperation(String),
    /// A string did not name a known sync status.
    #[error("unknown sync status {0:?}: expected \"pending\", \"syncing\", \"synced\" or \"failed\"")]
    UnknownStatus(String),
    /// A string did not name a known error kind.
    #[error(
        "unknown error kind {0:?}: expected \"offline\", \"transient\", \"permanent\", \"conflict\" or \"not_found\""
    )]
    UnknownErrorKind(String),
    /// An operation id was empty, too long or not visible ASCII.
    #[error("operation id must be 1 to 128 visible ASCII characters: use OperationId::generate()")]
    InvalidOperationId,
    /// The engine was configured to send zero items at a time.
    #[error("concurrency must be at least 1: one item at a time keeps the queue's order")]
    ZeroConcurrency,
    /// A retry policy was configured with zero attempts per run.
    #[error("max_retries must be at least 1: every sync pass needs one attempt")]
    ZeroMaxRetries,
    /// A value saved through a typed collection had no usable id: its id
    /// field was missing or null, or held something other than a string or
    /// an integer.
    #[error(
        "the id field {field:?} is {found}: give the value a string or integer {field:?} field, \
         or point the collection at the field that holds the id (id_field)"
    )]
    InvalidIdField {
        /// The id field's name (`"id"` unless the collection names another).
        field: String,
        /// What was there: `"missing"`, `"null"`, `"a boolean"`, `"a
        /// fractional number"`, `"an array"` or `"an object"`.
        found: &'static str,
    },
    /// A create of a record whose id a local document has already.
    #[error("a record with this id exists already: save it to edit it, or give the new record another id")]
    RecordExists,
    /// A record created for the server to name (`create`) already holds
    /// an id of its own in `field`.
    #[error(
        "a record whose id the server assigns must not hold an id of its own in {field:?}: leave the field \
         out (the server's id replaces the temporary one), or save the record under its own id"
    )]
    IdForServerToAssign {
        /// The id field found in the document.
        field: String,
    },
    /// Declared references form a cycle (`path` names the entities, each
    /// referring to the next): no order could send a parent first.
    #[error(
        "the references declared form a cycle ({path}): each record must reach the server after the ones \
         it refers to, which a cycle makes impossible; declare references from children to parents only"
    )]
    ReferenceCycle {
        /// The entities of the cycle, `a.field → b → ... → a`.
        path: String,
    },
}

/// How a failed remote call should be treated. The engine branches on this.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The server could not be reached (connection refused, DNS, no route).
    /// The request never left, so it cannot have been applied.
    Offline,
    /// A temporary failure (timeout, reset, 408, 425, 429, 5xx): retry later.
    Transient,
    /// The server rejected the request (other 4xx): retrying the same
    /// payload will fail again, so the item is parked until it changes.
    Permanent,
    /// The server reported a conflict (409, 412): fetch, resolve, retry.
    Conflict,
    /// The server has no such record (an update answered 404 or 410): the
    /// engine checks with a fetch, then re-creates it from the local state.
    /// A delete answered so is done when it repeats one that may have
    /// applied, and checked with a fetch otherwise.
    NotFound,
    /// A create was refused because the server already holds a record with
    /// this id (a 409 by default; a request shape can declare its own
    /// answer, such as a 400 with a code in the body). The server has the
    /// record, so the engine updates it instead, in the same attempt.
    AlreadyExists,
}

impl ErrorKind {
    /// Whether retrying the same request can succeed.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        !matches!(self, Self::Permanent | Self::NotFound | Self::AlreadyExists)
    }

    /// The lowercase name used in storage and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Conflict => "conflict",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorKind {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "offline" => Ok(Self::Offline),
            "transient" => Ok(Self::Transient),
            "permanent" => Ok(Self::Permanent),
            "conflict" => Ok(Self::Conflict),
            "not_found" => Ok(Self::NotFound),
            "already_exists" => Ok(Self::AlreadyExists),
            other => Err(ValidationError::UnknownErrorKind(other.to_owned())),
        }
    }
}

/// A failed call to the app's API, classified for the engine.
///
/// Build one with [`ApiError::new`] and the `with_*` methods. The message and
/// the request line must never contain payloads or credentials.
#[derive(Debug, thiserror::Error)]
pub struct ApiError {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    retry_after: Option<Duration>,
    request: Option<String>,
    possibly_applied: bool,
    #[source]
    source: Option<BoxError>,
}

impl ApiError {
    /// A new error of `kind`.
    ///
    /// Whether the server may have applied the request defaults from the
    /// kind: `Offline` and `Permanent` were not applied; `Transient` and
    /// `Conflict` may have been (a timeout can hide a success, and a 409 on
    /// a create usually means the record exists); `AlreadyExists` means the
    /// server holds the record.
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            retry_after: None,
            request: None,
            possibly_applied: matches!(
                kind,
                ErrorKind::Transient | ErrorKind::Conflict | ErrorKind::AlreadyExists
            ),
            source: None,
        }
    }

    /// Records the HTTP status code.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Records the server's `Retry-After` delay.
    #[must_use]
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Records the method and path, such as `POST /tasks` (no query secrets).
    #[must_use]
    pub fn with_request(mut self, request: impl Into<String>) -> Self {
        self.request = Some(request.into());
        self
    }

    /// Overrides whether the server may have applied the request.
    #[must_use]
    pub fn with_possibly_applied(mut self, possibly_applied: bool) -> Self {
        self.possibly_applied = possibly_applied;
        self
    }

    /// Keeps the underlying error for `source()`.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The classification.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable reason.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status, when there was a response.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The server's requested delay before the next attempt.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The method and path of the failed request.
    #[must_use]
    pub fn request(&self) -> Option<&str> {
        self.request.as_deref()
    }

    /// Whether the server may have applied the request before failing.
    #[must_use]
    pub fn possibly_applied(&self) -> bool {
        self.possibly_applied
    }

    /// Whether retrying can succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error", self.kind)?;
        if let Some(request) = &self.request {
            write!(f, " on {request}")?;
        }
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(delay) = self.retry_after {
            write!(f, "; server asked to retry after {} s", delay.as_secs())?;
        }
        Ok(())
    }
}

/// What went wrong in a store, for callers that branch.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The database stayed locked by another connection past the busy timeout.
    Busy,
    /// Another process or engine holds this database open for syncing.
    InUse,
    /// The disk or the database's page limit is full.
    Full,
    /// The file is not a database or is damaged.
    Corrupt,
    /// The file or its directory cannot be written.
    ReadOnly,
    /// The database was written by a newer version of this library.
    SchemaTooNew,
    /// Input was rejected before anything was written.
    Invalid,
    /// The store has been closed.
    Closed,
    /// The record's change is being sent (an attempt is out and may be
    /// applied): the call was refused, nothing changed; try again once
    /// the attempt reports back.
    InFlight,
    /// Any other I/O or database failure.
    Other,
}

impl StoreErrorKind {
    /// Whether the same call can succeed later without any change: the
    /// database was busy, or another process had it open.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Busy | Self::InUse | Self::InFlight)
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Busy => "database busy",
            Self::InUse => "database in use",
            Self::Full => "disk full",
            Self::Corrupt => "database corrupt",
            Self::ReadOnly => "database read-only",
            Self::SchemaTooNew => "schema too new",
            Self::Invalid => "invalid input",
            Self::Closed => "store closed",
            Self::InFlight => "change in flight",
            Self::Other => "storage error",
        })
    }
}

/// A failed store operation. Nothing was written when this is returned.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl StoreError {
    /// A new error of `kind` with a message saying what to do next.
    #[must_use]
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Keeps the underlying error for `source()`.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The classification.
    #[must_use]
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The human-readable reason.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl StoreError {
    /// The [`ValidationError`] this error carries when the store refused a
    /// change as invalid (a payload over its size limit, say), so upper
    /// layers can report it as bad input; otherwise the error itself.
    ///
    /// # Errors
    /// `self`, unchanged, when it does not carry a validation error.
    pub fn into_validation_error(self) -> Result<ValidationError, Self> {
        match self.source {
            Some(source) if self.kind == StoreErrorKind::Invalid => {
                match source.downcast::<ValidationError>() {
                    Ok(invalid) => Ok(*invalid),
                    Err(source) => Err(Self {
                        source: Some(source),
                        ..self
                    }),
                }
            }
            source => Err(Self { source, ..self }),
        }
    }
}

impl From<ValidationError> for StoreError {
    fn from(error: ValidationError) -> Self {
        Self::new(StoreErrorKind::Invalid, error.to_string()).with_source(error)
    }
}

/// A conflict resolver could not produce a document to send.
#[derive(Debug, thiserror::Error)]
#[error("conflict resolution failed: {message}")]
pub struct ResolveError {
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl ResolveError {
    /// A new error with a message saying what went wrong.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// Keeps the underlying error for `source()`.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
}

/// Any error from this crate's seams.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; nothing was written.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The app's API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A conflict resolver failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_error_inside_a_store_error_can_be_taken_back_out() {
        let store: StoreError = ValidationError::PayloadTooLarge { size: 10, max: 5 }.into();
        assert!(matches!(
            store.into_validation_error(),
            Ok(ValidationError::PayloadTooLarge { size: 10, max: 5 })
        ));
        let other = StoreError::new(StoreErrorKind::Full, "disk full");
        let back = other.into_validation_error().unwrap_err();
        assert_eq!(back.kind(), StoreErrorKind::Full);
        assert_eq!(back.message(), "disk full");
    }

    #[test]
    fn possibly_applied_defaults_follow_the_kind() {
        assert!(!ApiError::new(ErrorKind::Offline, "refused").possibly_applied());
        assert!(!ApiError::new(ErrorKind::Permanent, "400").possibly_applied());
        assert!(ApiError::new(ErrorKind::Transient, "timeout").possibly_applied());
        assert!(ApiError::new(ErrorKind::Conflict, "409").possibly_applied());
        assert!(
            !ApiError::new(ErrorKind::Transient, "429")
                .with_possibly_applied(false)
                .possibly_applied()
        );
    }

    #[test]
    fn api_error_display_names_request_status_and_retry_after() {
        let error = ApiError::new(ErrorKind::Transient, "service unavailable")
            .with_status(503)
            .with_request("POST /tasks")
            .with_retry_after(Duration::from_secs(7));
        assert_eq!(
            error.to_string(),
            "transient error on POST /tasks (HTTP 503): service unavailable; server asked to retry after 7 s"
        );
        assert!(error.is_retryable());
        assert!(!ApiError::new(ErrorKind::Permanent, "bad").is_retryable());
    }

    #[test]
    fn error_kind_round_trips_through_its_name() {
        for kind in [
            ErrorKind::Offline,
            ErrorKind::Transient,
            ErrorKind::Permanent,
            ErrorKind::Conflict,
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
        ] {
            assert_eq!(kind.as_str().parse::<ErrorKind>().unwrap(), kind);
        }
        assert_eq!(
            "nope".parse::<ErrorKind>(),
            Err(ValidationError::UnknownErrorKind("nope".into()))
        );
    }

    #[test]
    fn validation_becomes_invalid_store_error_with_source() {
        let error = StoreError::from(ValidationError::InvalidOperationId);
        assert_eq!(error.kind(), StoreErrorKind::Invalid);
        assert!(error.source().is_some());
        assert!(error.to_string().starts_with("invalid input: operation id"));
    }
}
