//! Records whose id the server assigns (`sync_core::rename`): created
//! under a temporary id, renamed to the server's when their create is
//! applied, and found by either id afterwards.

use serde_json::Value;
use sync_core::{EntityName, LocalChange, RecordId, RecordKey, SavedChange, SyncOperation, ValidationError};

use crate::engine::OfflineSyncEngine;
use crate::error::SyncError;

/// A record created for the server to name.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// Its temporary id (`tmp-` and 32 hex digits): use it like any id.
    /// Once the server has named the record, reads, saves, retries and
    /// discards given this id act on the record under the server's id,
    /// and [`OfflineSyncEngine::resolve_id`] gives that id.
    pub id: RecordId,
    /// The save, as [`OfflineSyncEngine::save`] returns it (for
    /// [`OfflineSyncEngine::wait_for_sync`]).
    pub saved: SavedChange,
}

impl OfflineSyncEngine {
    /// Creates a record whose id the server assigns: it is saved at once
    /// under a fresh temporary id ([`RecordId::temporary`]), and works
    /// offline like any record (reads, watches, updates, deletes). When
    /// its create is applied, the server's id (from the answer, where the
    /// adapter's request shape says the id is) replaces the temporary one
    /// everywhere in one transaction: the document, the queue item and
    /// changes saved since, and the declared references to it
    /// ([`crate::OfflineSyncEngineBuilder::reference`]) in other
    /// documents and queued changes. Records that refer to it wait to be
    /// sent until then. `data` holds no id field: the server gives it.
    ///
    /// Cancel safety: as [`OfflineSyncEngine::save`].
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad entity name or payload, or a
    /// payload with an `id` field
    /// ([`ValidationError::IdForServerToAssign`]); nothing is saved.
    /// [`SyncError::Store`] if the store fails.
    pub async fn create(&self, entity: &str, data: Value) -> Result<Created, SyncError> {
        if data.get(sync_core::rename::OWN_ID_FIELD).is_some() {
            return Err(ValidationError::IdForServerToAssign {
                field: sync_core::rename::OWN_ID_FIELD.to_owned(),
            }
            .into());
        }
        let id = RecordId::temporary();
        let change = LocalChange::new(entity, id.as_str(), data, SyncOperation::Create)?;
        let saved = self.save_change(change).await?;
        Ok(Created { id, saved })
    }

    /// The id a record goes by now: the server's id for a temporary id
    /// whose record the server has named; otherwise `id` itself.
    ///
    /// Cancel safety: cancel-safe (a read).
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for a bad name; [`SyncError::Store`].
    pub async fn resolve_id(&self, entity: &str, id: &str) -> Result<RecordId, SyncError> {
        let key = RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?);
        Ok(self.shared.store.resolve_id(&key).await?)
    }

    /// The key of `entity`/`id` now: a renamed temporary id gives the
    /// server's id.
    pub(crate) async fn current_key(&self, entity: &str, id: &str) -> Result<RecordKey, SyncError> {
        let key = RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?);
        if !key.id.is_temporary() {
            return Ok(key);
        }
        let id = self.shared.store.resolve_id(&key).await?;
        Ok(RecordKey::new(key.entity, id))
    }

    /// Makes the items held for `parent` (for any record, with `None`)
    /// eligible now: the app retried what they wait for. Returns how many.
    /// Without declared references nothing is ever held, and nothing is
    /// read.
    pub(crate) async fn wake_held(&self, parent: Option<&RecordKey>) -> Result<u64, SyncError> {
        let references = &self.shared.references;
        if references.is_empty() {
            return Ok(0);
        }
        let now = self.shared.clock.now();
        let mut woken = 0;
        for item in self.shared.store.queue().await? {
            if !sync_core::attempt::is_held(&item, now) {
                continue;
            }
            if let Some(parent) = parent
                && !references.parents(&item.entity, &item.payload).contains(parent)
            {
                continue;
            }
            if self.shared.store.retry(&item.key(), now).await? {
                woken += 1;
            }
        }
        Ok(woken)
    }
}
