//! The store's fixed queries. The hot ones name their index (`INDEXED BY`):
//! without `ANALYZE` statistics SQLite's planner may pick an index that
//! needs a sort, and the cost of a claim must not grow with the queue.

/// The queue columns, in the order `rows::bind_item` binds them.
macro_rules! queue_columns {
    () => {
        "entity, id, operation, payload, status, retry_count, created_at, updated_at, last_error, \
         last_error_kind, last_error_http_status, version, operation_id, possibly_applied, in_flight, \
         next_attempt_at, not_before"
    };
}
pub(crate) use queue_columns;

/// Ready items, oldest first: `?1` now, `?2` limit.
pub(crate) const CLAIM_READY: &str = concat!(
    "SELECT ",
    queue_columns!(),
    " FROM queue INDEXED BY queue_ready \
     WHERE in_flight IS NULL AND status IN ('pending', 'failed') AND next_attempt_at IS NOT NULL \
     AND next_attempt_at <= ?1 AND (not_before IS NULL OR not_before <= ?1) \
     ORDER BY created_at, seq LIMIT ?2"
);

/// The earliest timer among items waiting for one.
pub(crate) const NEXT_ATTEMPT_TIME: &str = "SELECT MIN(next_attempt_at) FROM queue INDEXED BY queue_next_attempt \
     WHERE in_flight IS NULL AND status IN ('pending', 'failed') AND next_attempt_at IS NOT NULL";

/// One entity's documents, most recently updated first: `?1` entity.
pub(crate) const RECORDS_OF_ENTITY: &str = "SELECT entity, id, data, created_at, updated_at \
     FROM records INDEXED BY records_by_updated WHERE entity = ?1 ORDER BY updated_at DESC, id";

/// The server's id a temporary id was renamed to: `?1` temporary id,
/// `?2` entity.
pub(crate) const RESOLVE_ALIAS: &str = "SELECT id FROM id_aliases WHERE temporary_id = ?1 AND entity = ?2";

/// Queue items whose payload holds a text: `?1` entity, `?2` the text.
pub(crate) const QUEUE_ITEMS_NAMING: &str = concat!(
    "SELECT ",
    queue_columns!(),
    " FROM queue WHERE entity = ?1 AND instr(payload, ?2) > 0"
);

/// The deletes of an entity not synced (or in flight), each with its
/// server copy's document, if any: `?1` entity.
pub(crate) const QUEUED_DELETES_WITH_COPIES: &str = concat!(
    "SELECT ",
    queue_columns!(),
    ", (SELECT c.data FROM server_copies c WHERE c.entity = queue.entity AND c.id = queue.id) AS copy \
     FROM queue WHERE entity = ?1 AND operation = 'delete' AND (status != 'synced' OR in_flight IS NOT NULL)"
);

/// One document by a temporary id, renamed or not, in one statement (one
/// snapshot: a rename committing in between cannot hide it): `?1`
/// entity, `?2` temporary id.
pub(crate) const RECORD_BY_TEMPORARY_ID: &str = "SELECT entity, id, data, created_at, updated_at FROM records \
     WHERE entity = ?1 AND id = COALESCE((SELECT a.id FROM id_aliases a WHERE a.temporary_id = ?2 AND a.entity = ?1), ?2)";

/// One queue item by a temporary id, renamed or not: as
/// [`RECORD_BY_TEMPORARY_ID`].
pub(crate) const QUEUE_ITEM_BY_TEMPORARY_ID: &str = concat!(
    "SELECT ",
    queue_columns!(),
    " FROM queue WHERE entity = ?1 AND id = \
     COALESCE((SELECT a.id FROM id_aliases a WHERE a.temporary_id = ?2 AND a.entity = ?1), ?2)"
);

/// One document: `?1` entity, `?2` id.
pub(crate) const RECORD: &str =
    "SELECT entity, id, data, created_at, updated_at FROM records WHERE entity = ?1 AND id = ?2";

/// One queue item: `?1` entity, `?2` id.
pub(crate) const QUEUE_ITEM: &str = concat!(
    "SELECT ",
    queue_columns!(),
    " FROM queue WHERE entity = ?1 AND id = ?2"
);

/// The whole queue in send order.
pub(crate) const QUEUE: &str = concat!(
    "SELECT ",
    queue_columns!(),
    " FROM queue INDEXED BY queue_by_created ORDER BY created_at, seq"
);

/// A page of items in flight: `?1` after seq, `?2` limit.
pub(crate) const PAGE_IN_FLIGHT: &str = concat!(
    "SELECT seq, ",
    queue_columns!(),
    " FROM queue INDEXED BY queue_in_flight WHERE in_flight IS NOT NULL AND seq > ?1 ORDER BY seq LIMIT ?2"
);

/// Items not in flight whose timer lies beyond `?3` (candidates of a
/// rebase after the clock moved back), after seq `?1`, at most `?2`. Not a
/// hot query (it runs when the clock moved back): it may sort the few
/// candidates the index finds.
pub(crate) const PAGE_TIMERS_BEYOND: &str = concat!(
    "SELECT seq, ",
    queue_columns!(),
    " FROM queue INDEXED BY queue_next_attempt \
     WHERE next_attempt_at IS NOT NULL AND next_attempt_at > ?3 AND in_flight IS NULL \
     AND status IN ('pending', 'failed') AND seq > ?1 ORDER BY seq LIMIT ?2"
);

/// A page of failed items not in flight: `?1` after seq, `?2` limit.
pub(crate) const PAGE_FAILED: &str = concat!(
    "SELECT seq, ",
    queue_columns!(),
    " FROM queue INDEXED BY queue_by_status \
     WHERE status = 'failed' AND in_flight IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2"
);

/// Removes synced items.
pub(crate) const CLEAR_SYNCED: &str =
    "DELETE FROM queue INDEXED BY queue_by_status WHERE status = 'synced' AND in_flight IS NULL";

/// Items by status.
pub(crate) const COUNTS: &str = "SELECT status, COUNT(*) AS n FROM queue GROUP BY status";

/// One record's server copy: `?1` entity, `?2` id.
pub(crate) const SERVER_COPY: &str =
    "SELECT entity, id, data, version FROM server_copies WHERE entity = ?1 AND id = ?2";

/// One entity's pull state: `?1` entity.
pub(crate) const PULL_STATE: &str =
    "SELECT cursor, generation, listing_generation, listing_started_at FROM pull_state WHERE entity = ?1";

/// Stores one entity's pull state: `?1` entity, `?2` cursor, `?3`
/// generation, `?4` the listing's generation, `?5` when it started.
pub(crate) const PUT_PULL_STATE: &str = "INSERT INTO pull_state \
     (entity, cursor, generation, listing_generation, listing_started_at) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (entity) DO UPDATE SET cursor = excluded.cursor, generation = excluded.generation, \
     listing_generation = excluded.listing_generation, listing_started_at = excluded.listing_started_at";

/// A page of what a sweep looks at: the records of entity `?1` after id
/// `?2` whose mark is not generation `?3`, at most `?4`, in id order, with
/// their queue items (`q.*`: the queue's own column names; the record's are
/// renamed).
pub(crate) const SWEEP_CANDIDATES: &str = "SELECT r.id AS record_id, r.pulled_in AS pulled_in, \
     r.created_at AS document_created_at, q.seq IS NOT NULL AS has_item, q.* \
     FROM records r INDEXED BY sqlite_autoindex_records_1 \
     LEFT JOIN queue q ON q.entity = r.entity AND q.id = r.id \
     WHERE r.entity = ?1 AND r.id > ?2 AND r.pulled_in IS NOT ?3 ORDER BY r.id LIMIT ?4";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::{Connection, Row, SqliteConnection};

    use super::*;

    /// Every query of the store, planned against the real schema: each hot
    /// one is an index scan with no sort and no table scan.
    #[tokio::test]
    async fn hot_queries_are_index_scans_without_sorting() {
        let mut connection = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        crate::schema::migrate(&mut connection, crate::schema::SCHEMA_VERSION)
            .await
            .unwrap();
        let cases = [
            (CLAIM_READY, "queue_ready"),
            (NEXT_ATTEMPT_TIME, "queue_next_attempt"),
            (RECORDS_OF_ENTITY, "records_by_updated"),
            (RECORD, "sqlite_autoindex_records_1"),
            (QUEUE_ITEM, "sqlite_autoindex_queue_1"),
            (QUEUE, "queue_by_created"),
            (PAGE_IN_FLIGHT, "queue_in_flight"),
            (PAGE_FAILED, "queue_by_status"),
            (CLEAR_SYNCED, "queue_by_status"),
            (COUNTS, "queue_by_status"),
            (PULL_STATE, "PRIMARY KEY"),
            (SWEEP_CANDIDATES, "sqlite_autoindex_records_1"),
        ];
        for (sql, index) in cases {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind(1)
                .bind(2)
                .fetch_all(&mut connection)
                .await
                .unwrap();
            let plan: Vec<String> = rows.iter().map(|row| row.get::<String, _>("detail")).collect();
            let text = plan.join(" | ");
            assert!(text.contains(index), "{sql}\n  does not use {index}: {text}");
            assert!(!text.contains("TEMP B-TREE"), "{sql}\n  sorts: {text}");
            let table_scan = plan
                .iter()
                .any(|step| step.starts_with("SCAN") && !step.contains("INDEX"));
            assert!(!table_scan, "{sql}\n  scans the table: {text}");
        }
    }
}
