//! Server-assigned ids in SQLite (`sync_core::rename`): the aliases a
//! rename leaves, and the row moves and reference rewrites it makes, all
//! inside the writer's transaction for the create's outcome.

use std::collections::{BTreeSet, HashMap};

use sqlx::{AssertSqlSafe, Row, SqliteConnection};
use sync_core::attempt::finish_attempt;
use sync_core::coalesce::{DocumentWrite, QueueWrite};
use sync_core::rename::{Alias, Rename, refused_rename};
use sync_core::{
    EntityName, FinishResult, FinishedAttempt, JsonObject, LocalRecord, RecordId, RecordKey, StoreError,
    StoreEvent, SyncQueueItem, Timestamp,
};

use crate::changes::Changes;
use crate::error::{corrupt_row, map_sqlx};
use crate::queries;
use crate::rows::{self, CHUNK, KeyState, item_from_row, record_from_row};
use crate::writer::{WorkResult, Writer};

/// The aliases of the temporary ids among `ids` (none for ids never
/// renamed), one statement per chunk.
pub(crate) async fn load_aliases(
    connection: &mut SqliteConnection,
    ids: &[RecordId],
) -> Result<HashMap<RecordId, Alias>, StoreError> {
    let mut aliases = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT temporary_id, entity, id, value FROM id_aliases WHERE temporary_id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(id.as_str());
        }
        let found = query
            .fetch_all(&mut *connection)
            .await
            .map_err(|error| map_sqlx(error, "reading id aliases"))?;
        for row in &found {
            let (temporary, alias) = alias_from_row(row)?;
            aliases.insert(temporary, alias);
        }
    }
    Ok(aliases)
}

fn alias_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<(RecordId, Alias), StoreError> {
    let get_err = |error| map_sqlx(error, "reading an id alias");
    let text = |name: &str| row.try_get::<String, _>(name).map_err(get_err);
    let corrupt = |e| corrupt_row("id alias", e);
    let temporary: RecordId = text("temporary_id")?.parse().map_err(corrupt)?;
    let alias = Alias {
        entity: text("entity")?.parse().map_err(corrupt)?,
        id: text("id")?.parse().map_err(corrupt)?,
        value: serde_json::from_str(&text("value")?).map_err(|e| corrupt_row("id alias", e))?,
    };
    Ok((temporary, alias))
}

/// Moves the record's rows from the temporary key to the server's, and
/// records the alias: whatever the new key held is replaced (the caller
/// checked it may be: `sync_core::rename::check_target`); the queue row
/// keeps its place in the queue. Returns the document that was under the
/// temporary key, if any, for the caller to write under the new one.
/// When a document is written there (`answer_adopted`, or the one moved),
/// the new key's row is overwritten rather than deleted, so it keeps the
/// mark of a listing that showed it (a pull's copy of this very record).
pub(crate) async fn move_rows(
    connection: &mut SqliteConnection,
    rename: &Rename,
    answer_adopted: bool,
    now: Timestamp,
) -> Result<Option<LocalRecord>, StoreError> {
    let (from, to) = (&rename.from, &rename.to);
    let moved = sqlx::query(queries::RECORD)
        .bind(from.entity.as_str())
        .bind(from.id.as_str())
        .fetch_optional(&mut *connection)
        .await
        .map_err(|error| map_sqlx(error, "reading the renamed record"))?
        .as_ref()
        .map(record_from_row)
        .transpose()?;
    let replaced: &[&str] = if answer_adopted || moved.is_some() {
        &["queue", "server_copies"]
    } else {
        &["records", "queue", "server_copies"]
    };
    for table in replaced {
        rows::delete_keys(connection, table, &[to]).await?;
    }
    rows::delete_keys(connection, "records", &[from]).await?;
    rows::delete_keys(connection, "server_copies", &[from]).await?;
    sqlx::query("UPDATE queue SET id = ?3 WHERE entity = ?1 AND id = ?2")
        .bind(from.entity.as_str())
        .bind(from.id.as_str())
        .bind(to.id.as_str())
        .execute(&mut *connection)
        .await
        .map_err(|error| map_sqlx(error, "renaming a queue item"))?;
    sqlx::query(
        "INSERT OR REPLACE INTO id_aliases (temporary_id, entity, id, value, renamed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(from.id.as_str())
    .bind(to.entity.as_str())
    .bind(to.id.as_str())
    .bind(rename.value.to_string())
    .bind(now.as_millis())
    .execute(&mut *connection)
    .await
    .map_err(|error| map_sqlx(error, "recording an id alias"))?;
    Ok(moved)
}

/// The documents and queue items of `entity` that may name the temporary
/// id (their JSON text holds it; the caller checks the declared fields).
/// A temporary id is 36 random characters, so the text search finds the
/// records that refer to it and nothing else, at the cost of one scan of
/// the entity per rename.
pub(crate) async fn naming(
    connection: &mut SqliteConnection,
    entity: &sync_core::EntityName,
    temporary: &RecordId,
) -> Result<(Vec<(RecordKey, JsonObject)>, Vec<SyncQueueItem>), StoreError> {
    let records = sqlx::query(
        "SELECT entity, id, data, created_at, updated_at FROM records WHERE entity = ?1 AND instr(data, ?2) > 0",
    )
    .bind(entity.as_str())
    .bind(temporary.as_str())
    .fetch_all(&mut *connection)
    .await
    .map_err(|error| map_sqlx(error, "finding records that refer to a renamed one"))?
    .iter()
    .map(|row| record_from_row(row).map(|record| (RecordKey::new(record.entity, record.id), record.data)))
    .collect::<Result<Vec<_>, _>>()?;
    let items = sqlx::query(queries::QUEUE_ITEMS_NAMING)
        .bind(entity.as_str())
        .bind(temporary.as_str())
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| map_sqlx(error, "finding changes that refer to a renamed record"))?
        .iter()
        .map(item_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((records, items))
}

impl Writer {
    /// Applies one [`sync_core::AttemptOutcome::AppliedAs`] or `FoundAs`: the rename, unless the
    /// new id is taken (the create then parks, renaming nothing), and the
    /// outcome under the new key, with every declared reference to the
    /// temporary id rewritten.
    pub(crate) async fn finish_renamed(
        &mut self,
        finished: &FinishedAttempt,
        now: Timestamp,
    ) -> WorkResult<Vec<FinishResult>> {
        let FinishedAttempt { ticket, outcome } = finished;
        let Some(assigned) = outcome.assigned() else {
            return self.finish_plain(std::slice::from_ref(finished), now).await;
        };
        let to = RecordKey::new(ticket.key.entity.clone(), assigned.id.clone());
        let mut changes = Changes::default();
        self.load(&mut changes, &[&ticket.key, &to], true).await?;
        let current = changes.state(&ticket.key).item.clone();
        self.statements.add(1);
        let there = sqlx::query(queries::RECORD)
            .bind(to.entity.as_str())
            .bind(to.id.as_str())
            .fetch_optional(&mut self.connection)
            .await
            .map_err(|error| map_sqlx(error, "reading the record under the server's id"))?
            .as_ref()
            .map(record_from_row)
            .transpose()?;
        if let Some(parked) = refused_rename(
            current.as_ref(),
            ticket,
            outcome,
            changes.state(&to).item.as_ref(),
            there.as_ref().map(|record| &record.data),
        ) {
            let parked = FinishedAttempt {
                ticket: ticket.clone(),
                outcome: parked,
            };
            return self.finish_plain(std::slice::from_ref(&parked), now).await;
        }
        let plan = finish_attempt(current.as_ref(), ticket, outcome, now);
        let Some(rename) = plan.rename.clone() else {
            // The attempt was given up on: nothing is learned or moved.
            return self.finish_plain(std::slice::from_ref(finished), now).await;
        };
        self.statements.add(8);
        let moved = move_rows(&mut self.connection, &rename, plan.document.is_some(), now).await?;
        let mut changes = Changes::default();
        changes.events.push(StoreEvent::Renamed {
            from: rename.from.clone(),
            to: rename.to.clone(),
        });
        changes.events.push(StoreEvent::Record {
            key: rename.from.clone(),
            record: None,
        });
        changes.events.push(StoreEvent::QueueItem {
            key: rename.from.clone(),
            item: None,
        });
        *changes.state(&rename.to) = KeyState {
            item: current.map(|mut item| {
                item.id = rename.to.id.clone();
                item
            }),
            document_created_at: moved.as_ref().map(|record| record.created_at),
        };
        changes.queue(&rename.to, plan.queue);
        let document = match (plan.document, moved) {
            (Some(document), _) => Some(document),
            (None, Some(record)) => {
                let mut data = record.data;
                rename.rewrite_own(&mut data);
                Some(DocumentWrite::Upsert(data))
            }
            (None, None) => None,
        };
        if let Some(document) = document {
            changes.document(&rename.to, document, now);
        }
        changes.copy(&rename.to, plan.copy);
        let entities: BTreeSet<&EntityName> = rename.referring.iter().map(|field| &field.entity).collect();
        for entity in entities {
            self.statements.add(2);
            let (records, items) = naming(&mut self.connection, entity, &rename.from.id).await?;
            let keys: Vec<&RecordKey> = records
                .iter()
                .map(|(key, _)| key)
                .filter(|key| !changes.states.contains_key(*key))
                .collect();
            let mut loaded = Changes::default();
            self.load(&mut loaded, &keys, true).await?;
            // Keep the states this rename already changed.
            for (key, state) in loaded.states {
                changes.states.entry(key).or_insert(state);
            }
            for (key, mut data) in records {
                if rename.rewrite_references(&key.entity, &mut data) {
                    changes.document(&key, DocumentWrite::Upsert(data), now);
                }
            }
            for item in items {
                if let Some(rewritten) = rename.rewrite_queued(&item, now) {
                    changes.queue(&item.key(), QueueWrite::Put(rewritten));
                }
            }
        }
        changes.write(&mut self.connection, &self.statements).await?;
        let result = if plan.stale {
            FinishResult::Stale
        } else {
            FinishResult::Current
        };
        Ok((vec![result], changes.events))
    }
}

impl crate::SqliteStore {
    /// The key a temporary id was renamed to (`sync_core::rename`), if it
    /// was; no read for any other id.
    pub(crate) async fn renamed(&self, key: &RecordKey) -> Result<Option<RecordKey>, StoreError> {
        if !key.id.is_temporary() {
            return Ok(None);
        }
        self.statements.add(1);
        let id = sqlx::query_scalar::<_, String>(queries::RESOLVE_ALIAS)
            .bind(key.id.as_str())
            .bind(key.entity.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(|error| self.read_error(error, "reading an id alias"))?;
        id.map(|id| {
            id.parse()
                .map(|id| RecordKey::new(key.entity.clone(), id))
                .map_err(|e| crate::error::corrupt_row("id alias", e))
        })
        .transpose()
    }
}
