-- The HTTP status of the last failed attempt's answer, beside its message
-- and kind (NULL when that attempt got no answer, and whenever
-- last_error is NULL), so a UI can tell a refused change (403) from an
-- invalid one (422) without reading the message. Existing items have none.
ALTER TABLE queue ADD COLUMN last_error_http_status INTEGER
    CHECK (last_error_http_status BETWEEN 0 AND 65535);
