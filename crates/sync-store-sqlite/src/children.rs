//! The deletes a parent's delete waits for (`sync_core::depends`): queued
//! deletes of the records that refer to it.

use sqlx::Row;
use sync_core::depends::id_in;
use sync_core::{EntityName, JsonObject, RecordId, StoreError, SyncQueueItem};

use crate::SqliteStore;
use crate::queries;
use crate::rows::item_from_row;

impl SqliteStore {
    /// The queued deletes of `entity` whose document (the server's copy,
    /// else the delete's payload) names `parent` in `field`. The deletes of
    /// one entity waiting at once are few; each document is matched here.
    pub(crate) async fn child_deletes(
        &self,
        entity: &EntityName,
        field: &str,
        parent: &RecordId,
    ) -> Result<Vec<SyncQueueItem>, StoreError> {
        self.statements.add(1);
        let rows = sqlx::query(queries::QUEUED_DELETES_WITH_COPIES)
            .bind(entity.as_str())
            .fetch_all(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "reading queued deletes"))?;
        let mut found = Vec::new();
        for row in &rows {
            let item = item_from_row(row)?;
            let copy: Option<String> = row
                .try_get("copy")
                .map_err(|error| self.read_error(error, "reading a server copy"))?;
            let copy: Option<JsonObject> = copy.and_then(|text| serde_json::from_str(&text).ok());
            let document = copy.as_ref().unwrap_or(&item.payload);
            if id_in(document, field).as_ref() == Some(parent) {
                found.push(item);
            }
        }
        Ok(found)
    }
}
