-- Churn-risk scores as the worker publishes them (stream_jobs/churn_job.py): a row per change of
-- a user's score, tier or reasons; the highest version is the user's score now. Read with FINAL.
CREATE TABLE IF NOT EXISTS churn_scores
(
    user_id     String,
    score       Float64,
    tier        LowCardinality(String),
    reasons     Array(String),
    ts          DateTime64(3, 'UTC'),
    version     UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY user_id
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per rise of a user's tier. The id is derived from the user, the new tier and the event
-- time of the rise, so a replayed record (after a kill or a rebalance) merges into the same row;
-- emitted_at is the wall clock of the worker that emitted it (a re-emission's, once merged).
CREATE TABLE IF NOT EXISTS churn_alerts
(
    alert_id    String,
    user_id     String,
    old_tier    LowCardinality(String),
    new_tier    LowCardinality(String),
    score       Float64,
    reasons     Array(String),
    ts          DateTime64(3, 'UTC'),
    emitted_at  DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY alert_id
SETTINGS non_replicated_deduplication_window = 1000
