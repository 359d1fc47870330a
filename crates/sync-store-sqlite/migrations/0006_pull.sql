-- Pulls: the server's changes coming down (sync_core::pull). One row per
-- pulled entity, written in the same transaction as the page it follows, so
-- a crash leaves either the page applied with its state or neither. An
-- entity never pulled has no row (its state is the default: no cursor, no
-- listing yet).
CREATE TABLE pull_state (
    entity             TEXT    NOT NULL PRIMARY KEY,
    cursor             TEXT,             -- the server's cursor as issued; NULL: from the beginning
    generation         INTEGER NOT NULL  -- the latest full listing's generation (0: none yet)
        CHECK (generation >= 0),
    listing_generation INTEGER,          -- the full listing in progress, if one is
    listing_started_at INTEGER,          -- when it started, ms since the Unix epoch
    CHECK ((listing_generation IS NULL) = (listing_started_at IS NULL))
) WITHOUT ROWID;

-- The generation of the full listing that last showed each record (NULL:
-- none did, such as a record saved on this device). The sweep at a
-- listing's end looks at the records of the entity not marked with its
-- generation. Existing records have none. No index: only sweeps read it,
-- once per listing, and an index would cost every write of a record.
ALTER TABLE records ADD COLUMN pulled_in INTEGER;
