-- One row per funnel step an attempt reached (stream_jobs/funnels.py). The id names the funnel,
-- the user, the attempt and the step, so a replayed record adds nothing once merged; read with
-- FINAL (or count distinct step_id) for exact figures before a merge.
CREATE TABLE IF NOT EXISTS funnel_steps
(
    step_id          String,
    funnel           LowCardinality(String),
    user_id          String,
    attempt          UInt32,
    step_index       UInt8,
    step_name        LowCardinality(String),
    ts               DateTime64(3, 'UTC'),
    since_previous_s Float64,
    since_entry_s    Float64,
    event_id         String,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (user_id, funnel, step_id)
SETTINGS non_replicated_deduplication_window = 1000
