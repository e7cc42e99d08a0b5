-- The audit trail of `pulse forget` (GDPR/CCPA erasure, sinks/erasure.py): one row per erasure, with
-- no personal data: the request's own reference (a ticket number), how many ids the person had and
-- how many rows each table lost. The ids themselves are gone with their rows.
CREATE TABLE IF NOT EXISTS erasures
(
    erasure_id   String,
    requested_at DateTime64(3, 'UTC'),
    completed_at DateTime64(3, 'UTC'),
    reference    String,
    ids          UInt32,
    rows_removed Map(String, UInt64)
)
ENGINE = ReplacingMergeTree
ORDER BY erasure_id
SETTINGS non_replicated_deduplication_window = 1000
