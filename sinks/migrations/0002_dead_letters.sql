-- Input the pipeline refused, byte for byte, with the reason. letter_id is stable for a
-- replayed refusal (source record and line, or file and line), so replays fold into one row.
CREATE TABLE IF NOT EXISTS dead_letters
(
    letter_id     String,
    dlq_topic     LowCardinality(String),
    dlq_partition UInt32,
    dlq_offset    UInt64,
    failed_at     DateTime64(3, 'UTC'),
    reason        LowCardinality(String),
    errors        Array(String),
    source        String,
    raw           String CODEC(ZSTD(1)),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY letter_id
SETTINGS non_replicated_deduplication_window = 1000
