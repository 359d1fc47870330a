//! The read-only commands: status, queue, show, export. Each opens the file
//! with `Inspection` (read-only, no lock, nothing created or changed).

use std::io::Write as _;
use std::path::Path;

use serde_json::json;
use sync_core::{EntityName, RecordId, RecordKey, Timestamp};
use sync_store_sqlite::inspect::{ExportLine, Inspection, QueueFilter, Status};

use crate::failure::{EXIT_NOT_FOUND, Failure};
use crate::table::{Table, pairs};
use crate::{json, text};

/// `offline-sync status`.
pub(crate) async fn status(file: &Path, as_json: bool) -> Result<String, Failure> {
    let mut inspection = Inspection::open(file).await?;
    let status = inspection.status().await;
    inspection.close().await;
    let status = status?;
    let now = Timestamp::now();
    if as_json {
        return Ok(json::pretty(&json::status(
            &file.display().to_string(),
            &status,
            now,
        )));
    }
    Ok(status_text(file, &status, now))
}

fn status_text(file: &Path, status: &Status, now: Timestamp) -> String {
    let total = &status.total;
    let in_queue = total.pending + total.syncing + total.synced + total.failed;
    let oldest = status.oldest_unsynced.as_ref().map_or_else(
        || "none".to_owned(),
        |oldest| {
            format!(
                "{}/{} ({}), queued {} ({})",
                oldest.entity,
                oldest.id,
                oldest.status,
                text::ago(oldest.created_at, now),
                oldest.created_at
            )
        },
    );
    let mut out = pairs(&[
        ("file", file.display().to_string()),
        (
            "size",
            format!(
                "{} (database {}, wal {})",
                text::bytes(status.database_bytes.saturating_add(status.wal_bytes)),
                text::bytes(status.database_bytes),
                text::bytes(status.wal_bytes)
            ),
        ),
        ("schema version", status.schema_version.to_string()),
        ("documents", total.records.to_string()),
        (
            "queue",
            format!(
                "{in_queue} items: {} pending, {} syncing, {} synced, {} failed",
                total.pending, total.syncing, total.synced, total.failed
            ),
        ),
        ("parked", status.parked.to_string()),
        ("in flight", status.in_flight.to_string()),
        ("oldest unsynced", oldest),
    ]);
    let mut entities = Table::new(&[
        "ENTITY",
        "DOCUMENTS",
        "PENDING",
        "SYNCING",
        "SYNCED",
        "FAILED",
        "PARKED",
    ]);
    for entity in &status.entities {
        entities.row(vec![
            entity.entity.clone(),
            entity.records.to_string(),
            entity.pending.to_string(),
            entity.syncing.to_string(),
            entity.synced.to_string(),
            entity.failed.to_string(),
            entity.parked.to_string(),
        ]);
    }
    out.push('\n');
    out.push_str(&entities.render());
    out.push('\n');
    if status.pull_cursors.is_empty() {
        out.push_str("pull cursors: none (nothing pulled yet)\n");
    } else {
        let mut cursors = Table::new(&["PULLED ENTITY", "CURSOR", "GENERATION", "LISTING IN PROGRESS"]);
        for row in &status.pull_cursors {
            cursors.row(vec![
                row.entity.clone(),
                row.cursor
                    .clone()
                    .unwrap_or_else(|| "(from the start)".to_owned()),
                row.generation.to_string(),
                match (row.listing_generation, row.listing_started_at) {
                    (Some(generation), Some(started)) => format!("#{generation} since {started}"),
                    _ => "-".to_owned(),
                },
            ]);
        }
        out.push_str(&cursors.render());
    }
    out
}

/// `offline-sync queue`.
pub(crate) async fn queue(
    file: &Path,
    as_json: bool,
    failed: bool,
    parked: bool,
    entity: Option<String>,
) -> Result<String, Failure> {
    let filter = QueueFilter::all().failed(failed).parked(parked).entity(entity);
    let mut inspection = Inspection::open(file).await?;
    let items = inspection.queue(&filter).await;
    inspection.close().await;
    let items = items?;
    if as_json {
        let items: Vec<_> = items.iter().map(|item| json::item(item, false)).collect();
        return Ok(json::pretty(&json!(items)));
    }
    if items.is_empty() {
        return Ok("no queue items match\n".to_owned());
    }
    let mut table = Table::new(&[
        "ENTITY",
        "ID",
        "OPERATION",
        "STATUS",
        "ATTEMPTS",
        "LAST ERROR",
        "NEXT ATTEMPT",
        "UPDATED",
    ]);
    for item in &items {
        table.row(vec![
            item.entity.to_string(),
            item.id.to_string(),
            item.operation.to_string(),
            text::state(item),
            item.retry_count.to_string(),
            text::last_error(item),
            text::next_attempt(item),
            item.updated_at.to_string(),
        ]);
    }
    Ok(table.render())
}

/// Parses the key given on the command line.
pub(crate) fn parse_key(entity: &str, id: &str) -> Result<RecordKey, Failure> {
    Ok(RecordKey::new(EntityName::new(entity)?, RecordId::new(id)?))
}

/// `offline-sync show`.
pub(crate) async fn show(file: &Path, as_json: bool, entity: &str, id: &str) -> Result<String, Failure> {
    let key = parse_key(entity, id)?;
    let mut inspection = Inspection::open(file).await?;
    let detail = inspection.record_detail(&key).await;
    inspection.close().await;
    let detail = detail?;
    if detail.record.is_none() && detail.item.is_none() && detail.server_copy.is_none() {
        return Err(Failure::new(
            EXIT_NOT_FOUND,
            format!(
                "{key} is not in {}: no document, queue item or server copy (check the entity and id; \
                 `offline-sync queue` lists the items)",
                file.display()
            ),
        ));
    }
    if as_json {
        return Ok(json::pretty(&json!({
            "entity": key.entity,
            "id": key.id,
            "document": detail.record.as_ref().map(|record| json::record(record, true)),
            "queueItem": detail.item.as_ref().map(|item| json::item(item, true)),
            "serverCopy": detail.server_copy.as_ref().map(json::copy),
        })));
    }
    let now = Timestamp::now();
    let mut lines = vec![("record", key.to_string())];
    match &detail.record {
        Some(record) => {
            lines.push((
                "document",
                serde_json::Value::Object(record.data.clone()).to_string(),
            ));
            lines.push((
                "saved",
                format!("{} (created {})", record.updated_at, record.created_at),
            ));
        }
        None => lines.push((
            "document",
            "none (deleted locally, or never saved here)".to_owned(),
        )),
    }
    match &detail.item {
        Some(item) => {
            lines.push((
                "queue item",
                format!(
                    "{} {}, {} failed attempts",
                    item.operation,
                    text::state(item),
                    item.retry_count
                ),
            ));
            lines.push(("last error", text::last_error(item)));
            lines.push(("next attempt", text::next_attempt(item)));
            lines.push((
                "queued",
                format!("{} ({})", item.created_at, text::ago(item.created_at, now)),
            ));
            lines.push(("updated", item.updated_at.to_string()));
            lines.push(("operation id", item.operation_id.to_string()));
            lines.push(("version", item.version.to_string()));
            lines.push(("possibly applied", item.possibly_applied.to_string()));
            lines.push((
                "payload",
                serde_json::Value::Object(item.payload.clone()).to_string(),
            ));
        }
        None => lines.push(("queue item", "none (nothing to send)".to_owned())),
    }
    match &detail.server_copy {
        Some(copy) => {
            lines.push((
                "server version",
                copy.version.clone().unwrap_or_else(|| "(none given)".to_owned()),
            ));
            lines.push((
                "server copy",
                serde_json::Value::Object(copy.data.clone()).to_string(),
            ));
        }
        None => lines.push(("server copy", "none known".to_owned())),
    }
    Ok(pairs(&lines))
}

/// `offline-sync export`: JSON lines to standard output as they are read.
/// The first line describes the file; then one line per document, then
/// one per queue item.
pub(crate) async fn export(file: &Path, with_payloads: bool) -> Result<String, Failure> {
    let mut inspection = Inspection::open(file).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let header = json!({
        "type": "export",
        "file": file.display().to_string(),
        "schemaVersion": inspection.schema_version(),
        "withPayloads": with_payloads,
        "exportedAt": Timestamp::now(),
    });
    let written = writeln!(out, "{header}");
    let result = match written {
        Ok(()) => {
            inspection
                .export(|line| {
                    let value = match line {
                        ExportLine::Record(record) => {
                            let mut value = json::record(&record, with_payloads);
                            tag(&mut value, "document");
                            value
                        }
                        ExportLine::Item(item) => {
                            let mut value = json::item(&item, with_payloads);
                            tag(&mut value, "queueItem");
                            value
                        }
                    };
                    writeln!(out, "{value}")
                })
                .await
        }
        Err(error) => Err(sync_core::StoreError::new(
            sync_core::StoreErrorKind::Other,
            format!("could not write the export ({error})"),
        )),
    };
    inspection.close().await;
    result?;
    out.flush().map_err(|error| {
        Failure::new(
            crate::failure::EXIT_ERROR,
            format!("could not write the export ({error})"),
        )
    })?;
    Ok(String::new())
}

/// Puts `"type": kind` first in an exported line.
fn tag(value: &mut serde_json::Value, kind: &str) {
    if let serde_json::Value::Object(map) = value {
        let mut tagged = serde_json::Map::new();
        tagged.insert("type".into(), json!(kind));
        tagged.append(map);
        *map = tagged;
    }
}
