-- Sessions as the worker publishes them: a row per change, the highest version wins and a
-- deleted row retracts a session that was merged into another. Read with FINAL.
CREATE TABLE IF NOT EXISTS sessions
(
    session_id           String,
    user_id              String,
    start                DateTime64(3, 'UTC'),
    end                  DateTime64(3, 'UTC'),
    duration_ms          UInt64,
    events               UInt32,
    page_views           UInt32,
    bounce               Bool,
    entry_path           Nullable(String),
    exit_path            Nullable(String),
    utm_source           Nullable(String),
    utm_medium           Nullable(String),
    utm_campaign         Nullable(String),
    utm_term             Nullable(String),
    utm_content          Nullable(String),
    referrer             Nullable(String),
    device               Nullable(String),
    first_touch_source   Nullable(String),
    first_touch_medium   Nullable(String),
    first_touch_campaign Nullable(String),
    first_touch_referrer Nullable(String),
    is_first             Bool,
    closed               Bool,
    deleted              UInt8,
    version              UInt64,
    inserted_at          DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version, deleted)
ORDER BY (user_id, session_id)
SETTINGS non_replicated_deduplication_window = 1000
