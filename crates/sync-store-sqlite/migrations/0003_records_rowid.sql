-- Documents move to a rowid table. A WITHOUT ROWID table keeps whole rows in
-- index-style pages, where a row over about 1 KiB (of a 4 KiB page) spills
-- into an overflow page of its own: a 1 KiB document took 4.7 KiB on disk.
-- A rowid table keeps rows of up to about 4 KiB inline.
CREATE TABLE records_v3 (
    entity     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    data       TEXT    NOT NULL, -- a JSON object
    created_at INTEGER NOT NULL, -- ms since the Unix epoch
    updated_at INTEGER NOT NULL,
    UNIQUE (entity, id)
);

INSERT INTO records_v3 (entity, id, data, created_at, updated_at)
    SELECT entity, id, data, created_at, updated_at FROM records;

-- Its index goes with it.
DROP TABLE records;

ALTER TABLE records_v3 RENAME TO records;

-- Documents of one entity, most recently updated first.
CREATE INDEX records_by_updated ON records (entity, updated_at DESC, id);
