-- Valid, normalised events. ReplacingMergeTree on (user_id, ts, event_id) folds a resent
-- event into one row (read with FINAL for exact counts); the sort key serves per-user
-- timelines, the skip index on type serves per-type-by-day scans, months partition the data.
CREATE TABLE IF NOT EXISTS events
(
    event_id    String,
    type        LowCardinality(String),
    user_id     String,
    ts          DateTime64(3, 'UTC'),
    props       String CODEC(ZSTD(1)),
    context     String CODEC(ZSTD(1)),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX type_idx type TYPE set(256) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (user_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000
