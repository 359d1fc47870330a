//! Typed collections: [`OfflineSyncEngine::collection`] gives a
//! [`Collection<T>`], the engine's save, read and watch calls for one entity
//! over a serde type, with each record's id taken from the value itself.
//!
//! Reads never let one bad document fail a whole list: a stored document
//! that no longer deserializes into `T` (saved untyped, by an older version
//! of the app, or pulled from a server with another shape) is listed apart
//! as [`Unreadable`], with its id and serde's message.

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sync_core::{BoxStream, EntityName, JsonObject, RecordId, SavedChange, SyncOperation, ValidationError};
use tokio_stream::StreamExt;

use crate::engine::OfflineSyncEngine;
use crate::error::SyncError;
use crate::ids::Created;

mod records;

use records::read;
pub use records::{TypedRecords, Unreadable};

/// The field a collection reads ids from unless told otherwise.
const DEFAULT_ID_FIELD: &str = "id";

impl OfflineSyncEngine {
    /// A typed handle on the entity `entity`: save, update, delete, get,
    /// list and watch values of `T`, each record's id read from the value's
    /// `id` field (see [`Collection::id_field`] to use another field).
    ///
    /// The name is checked once, here. The handle is cheap to clone and
    /// shares this engine (it keeps the engine alive like any clone of it).
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for an invalid entity name (empty, too long,
    /// or with a control character).
    ///
    /// # Examples
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use tokio_stream::StreamExt;
    /// # use std::sync::Arc;
    /// # use sync_engine::OfflineSyncEngine;
    /// # use sync_testkit::{FakeAdapter, FakeMonitor, MemoryStore};
    ///
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// struct Task {
    ///     id: String,
    ///     title: String,
    ///     done: bool,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let engine = OfflineSyncEngine::builder(
    /// #     Arc::new(MemoryStore::new()),
    /// #     Arc::new(FakeAdapter::new()),
    /// #     Arc::new(FakeMonitor::new(false)),
    /// # )
    /// # .build()
    /// # .await?;
    /// let tasks = engine.collection::<Task>("tasks")?;
    ///
    /// // Saved locally under the id "1", taken from the value.
    /// let milk = Task { id: "1".into(), title: "Buy milk".into(), done: false };
    /// tasks.save(&milk).await?;
    /// tasks.save(&Task { done: true, ..milk.clone() }).await?;
    /// assert_eq!(tasks.get("1").await?.map(|task| task.done), Some(true));
    ///
    /// // Lists and watch streams give the readable values and, apart, the
    /// // documents that no longer deserialize into `Task`.
    /// let all = tasks.all().await?;
    /// assert_eq!(all.records.len(), 1);
    /// assert!(all.unreadable.is_empty());
    ///
    /// let mut watched = tasks.watch();
    /// let now = watched.next().await.ok_or("the stream starts with the current list")?;
    /// assert_eq!(now.records[0].title, "Buy milk");
    ///
    /// tasks.delete("1").await?;
    /// assert_eq!(tasks.get("1").await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn collection<T>(&self, entity: &str) -> Result<Collection<T>, SyncError> {
        Ok(Collection {
            engine: self.clone(),
            entity: EntityName::new(entity)?,
            id_field: Arc::from(DEFAULT_ID_FIELD),
            _values: PhantomData,
        })
    }
}

/// One entity's records as values of `T`, from
/// [`OfflineSyncEngine::collection`].
///
/// Every record's id is its value's id field (`id` unless
/// [`Collection::id_field`] names another), which must serialize to a
/// string or an integer (used as its decimal string). Values must
/// serialize to JSON objects.
///
/// Cloning is cheap (an engine handle, the name and the id field) and
/// clones share the engine.
pub struct Collection<T> {
    engine: OfflineSyncEngine,
    entity: EntityName,
    id_field: Arc<str>,
    // `fn() -> T`: the handle holds no `T`, so it is `Send`, `Sync` and
    // `Clone` whatever `T` is.
    _values: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            entity: self.entity.clone(),
            id_field: Arc::clone(&self.id_field),
            _values: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("entity", &self.entity)
            .field("id_field", &self.id_field)
            .field("type", &type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T> Collection<T> {
    /// Reads ids from `field` instead. Default: `"id"`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use sync_engine::OfflineSyncEngine;
    /// # use sync_testkit::{FakeAdapter, FakeMonitor, MemoryStore};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Ticket {
    ///     number: u64,
    ///     subject: String,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let engine = OfflineSyncEngine::builder(
    /// #     Arc::new(MemoryStore::new()),
    /// #     Arc::new(FakeAdapter::new()),
    /// #     Arc::new(FakeMonitor::new(false)),
    /// # )
    /// # .build()
    /// # .await?;
    /// let tickets = engine.collection::<Ticket>("tickets")?.id_field("number");
    /// tickets.save(&Ticket { number: 42, subject: "Printer".into() }).await?;
    /// assert!(engine.get_record("tickets", "42").await?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn id_field(mut self, field: impl Into<String>) -> Self {
        self.id_field = Arc::from(field.into());
        self
    }

    /// The entity this collection reads and writes.
    #[must_use]
    pub fn entity(&self) -> &EntityName {
        &self.entity
    }

    /// The engine behind this collection, for the untyped calls (a
    /// record's queue item or status stream, say).
    #[must_use]
    pub fn engine(&self) -> &OfflineSyncEngine {
        &self.engine
    }
}

impl<T: Serialize + DeserializeOwned> Collection<T> {
    /// The id `value` is saved under: its id field, a string or an integer
    /// written in decimal.
    ///
    /// # Errors
    /// [`SyncError::Invalid`]: [`ValidationError::PayloadNotObject`] when
    /// `value` does not serialize to a JSON object,
    /// [`ValidationError::InvalidIdField`] when the id field is missing,
    /// null or of another type, and the record id errors (empty, too long,
    /// control character) for the id itself; [`SyncError::Json`] when
    /// serialization fails.
    pub fn id_of(&self, value: &T) -> Result<RecordId, SyncError> {
        self.to_document(value).map(|(id, _)| id)
    }

    /// Saves `value` locally (document and queue item in one transaction)
    /// under the id read from it; the engine decides what reaches the
    /// server. With no local trace of the record (no document, no queue
    /// item) it is a create; otherwise the engine's coalescing makes it
    /// what the server needs: an update of a record the server holds,
    /// still a create while the first create is unsent. This is the call
    /// for "create or edit".
    ///
    /// Cancel safety: cancel-safe. The value is checked and serialized
    /// before anything is written; then this is one call to
    /// [`OfflineSyncEngine::save`], which is cancel-safe: dropped before it
    /// returns, the change is saved in full or not at all, and saving the
    /// same value again is harmless.
    ///
    /// # Errors
    /// As [`Collection::id_of`] (nothing is saved), plus those of
    /// [`OfflineSyncEngine::save`].
    pub async fn save(&self, value: &T) -> Result<SavedChange, SyncError> {
        self.write(value, SyncOperation::Create).await
    }

    /// Saves `value` as a new record: refused, with nothing saved, when a
    /// document with its id exists locally already (use
    /// [`Collection::save`] to edit it). For forms that create, where a
    /// clash of ids is a mistake to show rather than an edit to make. The
    /// check reads the local document just before the save: a save of the
    /// same id by another task in between is not detected.
    ///
    /// Cancel safety: cancel-safe, as [`Collection::save`] (the check only
    /// reads).
    ///
    /// # Errors
    /// [`SyncError::Invalid`] with [`ValidationError::RecordExists`] when
    /// the record exists locally; as [`Collection::save`] otherwise.
    pub async fn create(&self, value: &T) -> Result<SavedChange, SyncError> {
        let (id, _) = self.to_document(value)?;
        if self
            .engine
            .get_record(self.entity.as_str(), id.as_str())
            .await?
            .is_some()
        {
            return Err(SyncError::Invalid(ValidationError::RecordExists));
        }
        self.write(value, SyncOperation::Create).await
    }

    /// Saves `value` as a new record whose id the server assigns
    /// ([`OfflineSyncEngine::create`]): its id field must be missing or
    /// null (a null one is left out). The record gets a temporary id,
    /// returned in [`Created`], which the server's replaces once the
    /// create is applied; reads and saves by either id find it. Give the
    /// type an optional id (`id: Option<u64>`) so the record reads back
    /// before the server has named it.
    ///
    /// Cancel safety: cancel-safe, as [`Collection::save`].
    ///
    /// # Errors
    /// [`SyncError::Invalid`] with [`ValidationError::IdForServerToAssign`]
    /// when the value holds an id, or
    /// [`ValidationError::PayloadNotObject`]; nothing is saved. As
    /// [`OfflineSyncEngine::create`] otherwise.
    pub async fn create_new(&self, value: &T) -> Result<Created, SyncError> {
        let mut document = sync_core::model::payload_from_value(serde_json::to_value(value)?)?;
        let field: &str = &self.id_field;
        match document.get(field) {
            None => {}
            Some(Value::Null) => {
                document.remove(field);
            }
            Some(_) => {
                return Err(ValidationError::IdForServerToAssign {
                    field: field.to_owned(),
                }
                .into());
            }
        }
        self.engine
            .create(self.entity.as_str(), Value::Object(document))
            .await
    }

    /// As [`Collection::save`], stating that the server already holds the
    /// record: use it for a record this device has not seen (not pulled,
    /// never saved here), so the engine sends an update instead of a
    /// create. For a record the device knows, it does what
    /// [`Collection::save`] does.
    ///
    /// Cancel safety: cancel-safe, as [`Collection::save`].
    ///
    /// # Errors
    /// As [`Collection::save`].
    pub async fn update(&self, value: &T) -> Result<SavedChange, SyncError> {
        self.write(value, SyncOperation::Update).await
    }

    /// Deletes the record `id` locally and queues its deletion (nothing
    /// is sent for a record whose create was never sent). `id` is written
    /// with `Display`: a string, or an integer id in decimal.
    ///
    /// Cancel safety: cancel-safe: one call to [`OfflineSyncEngine::save`]
    /// (see [`Collection::save`]).
    ///
    /// # Errors
    /// [`SyncError::Invalid`] for an invalid id (nothing is saved), plus
    /// those of [`OfflineSyncEngine::save`].
    pub async fn delete(&self, id: impl fmt::Display) -> Result<SavedChange, SyncError> {
        let id = id.to_string();
        self.engine
            .save(
                self.entity.as_str(),
                &id,
                Value::Object(JsonObject::new()),
                SyncOperation::Delete,
            )
            .await
    }

    /// The local document `id` as `T`; `None` when there is none. `id` is
    /// written with `Display`: a string, or an integer id in decimal.
    ///
    /// Cancel safety: cancel-safe: one read through
    /// [`OfflineSyncEngine::get_record`]; dropping it loses nothing.
    ///
    /// # Errors
    /// [`SyncError::Json`] naming the record when its document does not
    /// deserialize into `T` ([`Collection::all`] lists it as
    /// [`Unreadable`]); [`SyncError::Invalid`] for an invalid id;
    /// [`SyncError::Store`] if the store fails.
    pub async fn get(&self, id: impl fmt::Display) -> Result<Option<T>, SyncError> {
        let id = id.to_string();
        match self.engine.get_record(self.entity.as_str(), &id).await? {
            None => Ok(None),
            Some(record) => match read::<T>(record) {
                Ok(value) => Ok(Some(value)),
                Err(unreadable) => Err(SyncError::Json(serde::de::Error::custom(format_args!(
                    "record {:?} of {:?} does not deserialize into {}: {}",
                    unreadable.id.as_str(),
                    self.entity.as_str(),
                    type_name::<T>(),
                    unreadable.error
                )))),
            },
        }
    }

    /// Every local document of the collection, most recently updated
    /// first: those that deserialize into `T` in
    /// [`TypedRecords::records`], the others in
    /// [`TypedRecords::unreadable`] (one bad document never fails the
    /// list).
    ///
    /// Cancel safety: cancel-safe: one read through
    /// [`OfflineSyncEngine::get_records`]; dropping it loses nothing.
    ///
    /// # Errors
    /// [`SyncError::Store`] if the store fails.
    pub async fn all(&self) -> Result<TypedRecords<T>, SyncError> {
        Ok(TypedRecords::read(
            self.engine.get_records(self.entity.as_str()).await?,
        ))
    }

    /// The collection's contents, now and after changes, as
    /// [`Collection::all`] gives them; values come as
    /// [`OfflineSyncEngine::watch_records`] sends them (bursts coalesced,
    /// the latest list always delivered). The stream ends when the engine
    /// closes.
    #[must_use]
    pub fn watch(&self) -> BoxStream<TypedRecords<T>>
    where
        T: Send + 'static,
    {
        match self.engine.watch_records(self.entity.as_str()) {
            Ok(lists) => Box::pin(lists.map(TypedRecords::read)),
            // `watch_records` only checks the entity name, and this one
            // was checked when the collection was made: never taken.
            Err(error) => {
                tracing::error!(%error, entity = %self.entity, "a collection's watch was refused");
                Box::pin(tokio_stream::empty())
            }
        }
    }

    async fn write(&self, value: &T, operation: SyncOperation) -> Result<SavedChange, SyncError> {
        let (id, document) = self.to_document(value)?;
        self.engine
            .save(
                self.entity.as_str(),
                id.as_str(),
                Value::Object(document),
                operation,
            )
            .await
    }

    /// `value` as a JSON object, with the id read from it.
    fn to_document(&self, value: &T) -> Result<(RecordId, JsonObject), SyncError> {
        let document = sync_core::model::payload_from_value(serde_json::to_value(value)?)?;
        let id = id_in(&document, &self.id_field)?;
        Ok((RecordId::new(id)?, document))
    }
}

/// The id in `document`'s `field`: a string as it is, an integer in
/// decimal.
fn id_in(document: &JsonObject, field: &str) -> Result<String, ValidationError> {
    let found = match document.get(field) {
        Some(Value::String(id)) => return Ok(id.clone()),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => return Ok(number.to_string()),
        Some(Value::Number(_)) => "a fractional number",
        Some(other) => sync_core::model::json_type_name(other),
        None => "missing",
    };
    Err(ValidationError::InvalidIdField {
        field: field.to_owned(),
        found,
    })
}
