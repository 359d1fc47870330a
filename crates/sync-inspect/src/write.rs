//! The writing commands: retry (and discard). They open the store itself,
//! which takes its lock, so they refuse while an app holds the file; the
//! changes are made by the store's own `SyncStore` methods, decided by
//! sync-core as when the app makes them.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sync_core::{DiscardOutcome, RecordKey, StoreErrorKind, SyncStatus, SyncStore, Timestamp};
use sync_store_sqlite::inspect::Inspection;
use sync_store_sqlite::{SCHEMA_VERSION, SqliteStore, SqliteStoreOptions};

use crate::failure::{EXIT_ERROR, EXIT_IN_USE, EXIT_NOT_FOUND, Failure};
use crate::json;
use crate::read::parse_key;

/// How long a writing command waits for an app to let go of the file.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Opens the store for writing, after the read-only checks: a missing,
/// foreign, damaged or newer file is refused untouched, and an older one
/// too (opening would upgrade it, which its app might not read).
async fn open_for_writing(file: &Path) -> Result<SqliteStore, Failure> {
    let inspection = Inspection::open(file).await?;
    let version = inspection.schema_version();
    inspection.close().await;
    if version < SCHEMA_VERSION {
        return Err(Failure::new(
            EXIT_ERROR,
            format!(
                "{} has schema version {version}, older than this inspector's {SCHEMA_VERSION}: writing \
                 would upgrade it, and the app that wrote it could no longer open it; use the inspector \
                 built with the app's version (read-only commands work on it); the file was left untouched",
                file.display()
            ),
        ));
    }
    let options = SqliteStoreOptions::new(file).busy_timeout(LOCK_WAIT);
    match options.open().await {
        Ok(store) => {
            // The lock proves no attempt is out: items a stopped app left
            // in flight are recovered (possibly applied), as the app does
            // when it starts, so they can be retried or discarded.
            if let Err(error) = store.recover_interrupted(Timestamp::now()).await {
                store.close().await;
                return Err(error.into());
            }
            Ok(store)
        }
        Err(error) if error.kind() == StoreErrorKind::InUse => Err(Failure::new(
            EXIT_IN_USE,
            format!(
                "{} is open in an app (it holds {}.lock): close the app first, then run this command \
                 again; nothing was changed (read-only commands such as `status` and `queue` work while \
                 the app runs)",
                file.display(),
                file.display()
            ),
        )),
        Err(error) => Err(error.into()),
    }
}

/// `offline-sync retry FILE ENTITY ID`.
pub(crate) async fn retry_one(file: &Path, as_json: bool, entity: &str, id: &str) -> Result<String, Failure> {
    let key = parse_key(entity, id)?;
    let store = open_for_writing(file).await?;
    let key = renamed(&store, key).await;
    let before = store.queue_item(&key).await;
    let retried = match &before {
        Ok(Some(item)) if item.status == SyncStatus::Failed => store.retry(&key, Timestamp::now()).await,
        _ => Ok(false),
    };
    store.close().await;
    let before = before?;
    if !retried? {
        let why = match before {
            None => "has no queue item (nothing to send)".to_owned(),
            Some(item) if item.in_flight.is_some() => {
                format!("is {} with an attempt out, not failed", item.status)
            }
            Some(item) => format!("is {}, not failed", item.status),
        };
        return Err(Failure::new(
            EXIT_NOT_FOUND,
            format!(
                "{key} {why}: nothing to retry (`offline-sync queue --failed` lists failed items); \
                 nothing was changed"
            ),
        ));
    }
    if as_json {
        return Ok(json::pretty(
            &json!({ "retried": 1, "entity": key.entity, "id": key.id }),
        ));
    }
    Ok(format!("retried {key}: it will be sent at the app's next sync\n"))
}

/// `offline-sync retry FILE --all-failed`.
pub(crate) async fn retry_all(file: &Path, as_json: bool) -> Result<String, Failure> {
    let store = open_for_writing(file).await?;
    let retried = store.retry_failed(Timestamp::now()).await;
    store.close().await;
    let retried = retried?;
    if as_json {
        return Ok(json::pretty(&json!({ "retried": retried })));
    }
    Ok(match retried {
        0 => "no failed items: nothing to retry\n".to_owned(),
        n => format!("retried {n} failed items: they will be sent at the app's next sync\n"),
    })
}

/// `offline-sync discard FILE ENTITY ID [--revert]`.
pub(crate) async fn discard(
    file: &Path,
    as_json: bool,
    entity: &str,
    id: &str,
    revert: bool,
) -> Result<String, Failure> {
    let key = parse_key(entity, id)?;
    let store = open_for_writing(file).await?;
    let key = renamed(&store, key).await;
    let outcome = store.discard(&key, revert, Timestamp::now()).await;
    store.close().await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) if error.kind() == StoreErrorKind::InFlight => {
            return Err(Failure::new(
                EXIT_ERROR,
                format!("{key}: {}; nothing was changed", error.message()),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    if outcome == DiscardOutcome::NothingQueued {
        return Err(Failure::new(
            EXIT_NOT_FOUND,
            format!("{key} has no change waiting to be sent: nothing to discard; nothing was changed"),
        ));
    }
    let name = match outcome {
        DiscardOutcome::Reverted => "reverted",
        DiscardOutcome::Removed => "removed",
        _ => "dropped",
    };
    if as_json {
        return Ok(json::pretty(&json!({
            "entity": key.entity,
            "id": key.id,
            "outcome": name,
        })));
    }
    Ok(format!("discarded {key}: {outcome}\n"))
}

/// The key a temporary id the server has named since goes by; the key
/// itself otherwise (or when the alias cannot be read: the command then
/// reports what it finds under the id given).
async fn renamed(store: &SqliteStore, key: RecordKey) -> RecordKey {
    match store.resolve_id(&key).await {
        Ok(id) => RecordKey::new(key.entity, id),
        Err(_) => key,
    }
}
