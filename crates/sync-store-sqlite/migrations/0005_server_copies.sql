-- The copy of each record the server last confirmed (issue 13): the base
-- of conditional writes (its version goes out as If-Match), of merge
-- patches and of three-way conflict resolution. One row per record the
-- server is known to hold, written with the attempt outcome that taught
-- it; removed once the server is known not to hold the record.
CREATE TABLE server_copies (
    entity  TEXT NOT NULL,
    id      TEXT NOT NULL,
    data    TEXT NOT NULL, -- a JSON object
    version TEXT,          -- the server's ETag or version field, if it gave one
    PRIMARY KEY (entity, id)
) WITHOUT ROWID;
