-- Local documents: one row per record, keyed by (entity, id).
CREATE TABLE records (
    entity     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    data       TEXT    NOT NULL, -- a JSON object
    created_at INTEGER NOT NULL, -- ms since the Unix epoch
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (entity, id)
) WITHOUT ROWID;

-- The sync queue: at most one item per record (changes are coalesced).
-- `seq` is the insertion order, breaking ties between equal `created_at`.
CREATE TABLE queue (
    seq              INTEGER PRIMARY KEY,
    entity           TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    operation        TEXT    NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    payload          TEXT    NOT NULL, -- a JSON object
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'syncing', 'synced', 'failed')),
    retry_count      INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    last_error       TEXT,
    last_error_kind  TEXT,
    version          INTEGER NOT NULL,
    operation_id     TEXT    NOT NULL,
    possibly_applied INTEGER NOT NULL,
    in_flight        INTEGER,          -- the attempt id while an attempt is out
    next_attempt_at  INTEGER,
    not_before       INTEGER,
    UNIQUE (entity, id)
);

-- The whole queue in send order.
CREATE INDEX queue_by_created ON queue (created_at, seq);
