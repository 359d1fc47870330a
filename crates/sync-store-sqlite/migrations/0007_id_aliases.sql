-- Server-assigned ids (sync_core::rename): a record created under a
-- temporary id is renamed to the id the server gave it, in the same
-- transaction as its create's outcome. The temporary id keeps resolving to
-- the new one: reads and saves that still name it land on the renamed
-- record. Temporary ids are random (128 bits), so one names one record
-- whatever its entity.
CREATE TABLE id_aliases (
    temporary_id TEXT    NOT NULL PRIMARY KEY,
    entity       TEXT    NOT NULL,
    id           TEXT    NOT NULL, -- the server's id
    value        TEXT    NOT NULL, -- the server's id as JSON (a number or a string)
    renamed_at   INTEGER NOT NULL  -- ms since the Unix epoch
) WITHOUT ROWID;
