-- Items that may be ready, oldest first: claiming the next page is an index
-- scan that never visits items in flight, synced or parked.
-- Covering the timers too: items waiting out a backoff are skipped inside
-- the index, without reading their rows.
CREATE INDEX queue_ready ON queue (created_at, seq, next_attempt_at, not_before)
    WHERE in_flight IS NULL AND status IN ('pending', 'failed') AND next_attempt_at IS NOT NULL;

-- The earliest timer among waiting items: when to look again.
CREATE INDEX queue_next_attempt ON queue (next_attempt_at)
    WHERE in_flight IS NULL AND status IN ('pending', 'failed') AND next_attempt_at IS NOT NULL;

-- Items in flight (recovered at start-up) and by status (failed items at a
-- new pass, synced items for clear_synced, counts).
CREATE INDEX queue_in_flight ON queue (seq) WHERE in_flight IS NOT NULL;
CREATE INDEX queue_by_status ON queue (status, seq);

-- Documents of one entity, most recently updated first.
CREATE INDEX records_by_updated ON records (entity, updated_at DESC, id);
