//! Conflict resolution: given the local document and the server's copy,
//! choose what to send.
//!
//! The engine asks a resolver before every update, with the server's
//! current copy. Whatever the resolver returns is sent and becomes the local
//! document too, so both sides agree afterwards. A create that finds the
//! record already on the server (after an attempt whose answer was lost)
//! is sent as an update without asking: the copy found is most likely our
//! own earlier write.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ResolveError;
use crate::model::JsonObject;

/// Chooses the document to send when the server already has a copy.
///
/// Implement it for custom merges; [`FnResolver`] wraps a closure.
///
/// # Cancel safety
///
/// The engine drops a resolution still going at its `attempt_timeout`
/// (the attempt fails, nothing is sent): a resolver must not leave shared
/// state half changed when its future is dropped. The built-in ones are
/// synchronous, so cancel-safe.
#[async_trait]
pub trait ConflictResolver: Send + Sync {
    /// Returns the document to send, given the local and remote copies.
    ///
    /// # Errors
    /// [`ResolveError`] when no document can be chosen; the engine then
    /// records the attempt as failed and leaves both copies untouched.
    async fn resolve(&self, local: &JsonObject, remote: &JsonObject) -> Result<JsonObject, ResolveError>;

    /// Returns the document to send, given the local and remote copies and
    /// the base: the copy the server last confirmed to this device, from
    /// which both sides changed (`None` when no copy is known). The engine
    /// calls this one; the default ignores the base and calls
    /// [`Self::resolve`].
    ///
    /// # Errors
    /// As [`Self::resolve`].
    async fn resolve_three_way(
        &self,
        local: &JsonObject,
        remote: &JsonObject,
        base: Option<&JsonObject>,
    ) -> Result<JsonObject, ResolveError> {
        let _ = base;
        self.resolve(local, remote).await
    }
}

/// A field-level three-way merge: every field this device changed since
/// the base (the copy the server last confirmed) keeps its local value,
/// every other field takes the server's; fields removed on one side stay
/// removed. Without a base, the local copy wins whole, like [`LocalWins`].
///
/// So two devices editing different fields of one record both keep their
/// edits, and a field both edited keeps this device's value.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeFields;

#[async_trait]
impl ConflictResolver for MergeFields {
    async fn resolve(&self, local: &JsonObject, _remote: &JsonObject) -> Result<JsonObject, ResolveError> {
        Ok(local.clone())
    }

    async fn resolve_three_way(
        &self,
        local: &JsonObject,
        remote: &JsonObject,
        base: Option<&JsonObject>,
    ) -> Result<JsonObject, ResolveError> {
        let Some(base) = base else {
            return Ok(local.clone());
        };
        let mut merged = remote.clone();
        let fields = local.keys().chain(base.keys());
        for field in fields {
            let (mine, before) = (local.get(field), base.get(field));
            if mine == before {
                continue; // unchanged here: the server's value stands
            }
            match mine {
                Some(value) => {
                    merged.insert(field.clone(), value.clone());
                }
                None => {
                    merged.remove(field);
                }
            }
        }
        Ok(merged)
    }
}

/// The local copy always wins.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalWins;

#[async_trait]
impl ConflictResolver for LocalWins {
    async fn resolve(&self, local: &JsonObject, _remote: &JsonObject) -> Result<JsonObject, ResolveError> {
        Ok(local.clone())
    }
}

/// The server's copy always wins; the local document is replaced by it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteWins;

#[async_trait]
impl ConflictResolver for RemoteWins {
    async fn resolve(&self, _local: &JsonObject, remote: &JsonObject) -> Result<JsonObject, ResolveError> {
        Ok(remote.clone())
    }
}

/// The copy with the later RFC 3339 timestamp in a field wins.
///
/// The field is `updatedAt` unless configured. When either side lacks the
/// field, or it is not a valid RFC 3339 string, the local copy wins: an
/// offline change is never silently dropped. Ties go to the local copy.
/// Timestamps with different UTC offsets are compared as instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWriteWins {
    field: String,
}

impl Default for LastWriteWins {
    fn default() -> Self {
        Self::new("updatedAt")
    }
}

impl LastWriteWins {
    /// Compares the timestamps in `field`.
    #[must_use]
    pub fn new(field: impl Into<String>) -> Self {
        Self { field: field.into() }
    }

    /// The compared field.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    fn timestamp(&self, document: &JsonObject) -> Option<OffsetDateTime> {
        let text = document.get(&self.field)?.as_str()?;
        OffsetDateTime::parse(text, &Rfc3339).ok()
    }

    /// The winner, without cloning: `true` when the remote copy wins.
    #[must_use]
    pub fn remote_wins(&self, local: &JsonObject, remote: &JsonObject) -> bool {
        match (self.timestamp(local), self.timestamp(remote)) {
            (Some(local), Some(remote)) => remote > local,
            _ => false,
        }
    }
}

#[async_trait]
impl ConflictResolver for LastWriteWins {
    async fn resolve(&self, local: &JsonObject, remote: &JsonObject) -> Result<JsonObject, ResolveError> {
        let winner = if self.remote_wins(local, remote) {
            remote
        } else {
            local
        };
        Ok(winner.clone())
    }
}

/// A resolver from a closure, for merges that need no I/O.
///
/// ```
/// use sync_core::conflict::{ConflictResolver, FnResolver};
/// use sync_core::JsonObject;
///
/// // Keep local fields, but take the server's `version` counter.
/// let merge = FnResolver::new(|local: &JsonObject, remote: &JsonObject| {
///     let mut merged = local.clone();
///     if let Some(version) = remote.get("version") {
///         merged.insert("version".into(), version.clone());
///     }
///     Ok(merged)
/// });
/// # let _: &dyn ConflictResolver = &merge;
/// ```
pub struct FnResolver<F> {
    resolve: F,
}

impl<F> FnResolver<F>
where
    F: Fn(&JsonObject, &JsonObject) -> Result<JsonObject, ResolveError> + Send + Sync,
{
    /// Wraps `resolve`, called as `resolve(local, remote)`.
    pub fn new(resolve: F) -> Self {
        Self { resolve }
    }
}

impl<F> fmt::Debug for FnResolver<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnResolver").finish_non_exhaustive()
    }
}

#[async_trait]
impl<F> ConflictResolver for FnResolver<F>
where
    F: Fn(&JsonObject, &JsonObject) -> Result<JsonObject, ResolveError> + Send + Sync,
{
    async fn resolve(&self, local: &JsonObject, remote: &JsonObject) -> Result<JsonObject, ResolveError> {
        (self.resolve)(local, remote)
    }
}

#[cfg(test)]
mod merge_tests {
    use serde_json::{Value, json};

    use super::*;

    fn object(value: Value) -> JsonObject {
        value.as_object().cloned().unwrap_or_default()
    }

    fn merge(local: Value, remote: Value, base: Option<Value>) -> Value {
        let (local, remote, base) = (object(local), object(remote), base.map(object));
        let future = MergeFields.resolve_three_way(&local, &remote, base.as_ref());
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(Ok(merged)) => Value::Object(merged),
            other => panic!("the merge did not finish: {other:?}"),
        }
    }

    use std::future::Future;

    #[test]
    fn each_side_keeps_the_fields_it_changed() {
        let base = json!({"id": "1", "title": "a", "done": false, "note": "n", "tag": "x"});
        // Here: title changed, note removed. There: done changed, a field added.
        let local = json!({"id": "1", "title": "A", "done": false, "tag": "x"});
        let remote = json!({"id": "1", "title": "a", "done": true, "note": "n", "tag": "x", "by": "server"});
        assert_eq!(
            merge(local, remote, Some(base)),
            json!({"id": "1", "title": "A", "done": true, "tag": "x", "by": "server"})
        );
        // Both changed one field: this device's value.
        assert_eq!(
            merge(json!({"t": 1}), json!({"t": 2}), Some(json!({"t": 0}))),
            json!({"t": 1})
        );
        // A field added here survives; without a base, the local copy wins.
        assert_eq!(
            merge(json!({"t": 0, "new": 1}), json!({"t": 2}), Some(json!({"t": 0}))),
            json!({"t": 2, "new": 1})
        );
        assert_eq!(merge(json!({"t": 1}), json!({"t": 2}), None), json!({"t": 1}));
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use serde_json::{Value, json};

    use super::*;

    /// Polls a future that never waits; the resolvers here do no I/O.
    fn ready<T>(future: impl Future<Output = T>) -> T {
        let mut future = pin!(future);
        match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("resolver future was not ready"),
        }
    }

    fn object(value: Value) -> JsonObject {
        crate::model::payload_from_value(value).unwrap()
    }

    fn lww(local: Value, remote: Value) -> Value {
        let resolved = ready(LastWriteWins::default().resolve(&object(local), &object(remote))).unwrap();
        Value::Object(resolved)
    }

    #[test]
    fn local_and_remote_wins() {
        let local = object(json!({"v": "local"}));
        let remote = object(json!({"v": "remote"}));
        assert_eq!(ready(LocalWins.resolve(&local, &remote)).unwrap(), local);
        assert_eq!(ready(RemoteWins.resolve(&local, &remote)).unwrap(), remote);
    }

    #[test]
    fn last_write_wins_picks_the_later_instant() {
        let older = json!({"v": "a", "updatedAt": "2024-01-01T10:00:00Z"});
        let newer = json!({"v": "b", "updatedAt": "2024-01-01T10:00:01Z"});
        assert_eq!(lww(older.clone(), newer.clone()), newer);
        assert_eq!(lww(newer.clone(), older), newer);
    }

    #[test]
    fn last_write_wins_compares_instants_across_offsets() {
        // 12:00+03:00 is 09:00Z: earlier than 10:00Z.
        let local = json!({"updatedAt": "2024-01-01T12:00:00+03:00", "v": "local"});
        let remote = json!({"updatedAt": "2024-01-01T10:00:00Z", "v": "remote"});
        assert_eq!(lww(local, remote.clone()), remote);
    }

    #[test]
    fn last_write_wins_keeps_local_on_ties_and_on_missing_or_invalid_timestamps() {
        let local = json!({"v": "local", "updatedAt": "2024-01-01T10:00:00Z"});
        for remote in [
            json!({"v": "remote", "updatedAt": "2024-01-01T10:00:00Z"}),
            json!({"v": "remote"}),
            json!({"v": "remote", "updatedAt": "yesterday"}),
            json!({"v": "remote", "updatedAt": 1_900_000_000}),
            json!({"v": "remote", "updatedAt": null}),
        ] {
            assert_eq!(lww(local.clone(), remote), local);
        }
        let no_local_time = json!({"v": "local"});
        let remote = json!({"v": "remote", "updatedAt": "2030-01-01T00:00:00Z"});
        assert_eq!(lww(no_local_time.clone(), remote), no_local_time);
    }

    #[test]
    fn last_write_wins_field_is_configurable() {
        let resolver = LastWriteWins::new("modified");
        assert_eq!(resolver.field(), "modified");
        let local = object(json!({"modified": "2024-01-01T00:00:00Z", "updatedAt": "2030-01-01T00:00:00Z"}));
        let remote = object(json!({"modified": "2024-06-01T00:00:00Z"}));
        assert!(resolver.remote_wins(&local, &remote));
    }

    #[test]
    fn closures_resolve_and_can_fail() {
        let failing =
            FnResolver::new(|_: &JsonObject, _: &JsonObject| Err(ResolveError::new("cannot merge")));
        let error = ready(failing.resolve(&JsonObject::new(), &JsonObject::new())).unwrap_err();
        assert_eq!(error.to_string(), "conflict resolution failed: cannot merge");
        assert!(format!("{failing:?}").contains("FnResolver"));
        let _boxed: Box<dyn ConflictResolver> = Box::new(failing);
    }
}
