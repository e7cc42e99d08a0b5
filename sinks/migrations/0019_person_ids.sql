-- People, not ids (stream_jobs/identity.py). person_ids maps every id an event carried to the
-- person it belongs to: a row (id, id) when the id is first seen, and (id, person) when it is
-- merged into a person, which wins. person_links serves the merged ids to dictGet, so every
-- table keyed by user_id gains person_id, an ALIAS column computed on read: a late identify
-- re-attributes history at once, with no rewrite, and BI counts people without a join
-- (uniqExact(person_id)). The dictionary is keyed by the 64-bit hash of the id (a plain hash
-- table, several times faster per row than one keyed by strings). The sink reloads it after it
-- writes merges; the LIFETIME is the fallback for other writers.
CREATE TABLE IF NOT EXISTS person_ids
(
    id          String,
    person_id   String,
    ts          DateTime64(3, 'UTC'),
    merged      UInt8,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(merged)
ORDER BY id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE DICTIONARY IF NOT EXISTS person_links
(
    id_hash   UInt64,
    person_id String
)
PRIMARY KEY id_hash
SOURCE(CLICKHOUSE(QUERY 'SELECT cityHash64(id) AS id_hash, argMax(person_id, merged) AS person_id FROM person_ids WHERE merged = 1 GROUP BY id'))
LIFETIME(MIN 30 MAX 60)
LAYOUT(HASHED());

ALTER TABLE events ADD COLUMN IF NOT EXISTS person_id String ALIAS dictGetOrDefault('person_links', 'person_id', cityHash64(user_id), user_id);

ALTER TABLE sessions ADD COLUMN IF NOT EXISTS person_id String ALIAS dictGetOrDefault('person_links', 'person_id', cityHash64(user_id), user_id);

ALTER TABLE funnel_steps ADD COLUMN IF NOT EXISTS person_id String ALIAS dictGetOrDefault('person_links', 'person_id', cityHash64(user_id), user_id);

ALTER TABLE churn_scores ADD COLUMN IF NOT EXISTS person_id String ALIAS dictGetOrDefault('person_links', 'person_id', cityHash64(user_id), user_id);

-- The funnel figures count people: an attempt an anonymous visitor entered and the person went on
-- with after an identify counts once, at every step it reached.
CREATE OR REPLACE VIEW funnel_conversion AS
SELECT
    funnel,
    step_index,
    step_name,
    users,
    lagInFrame(users, 1, users) OVER by_step AS previous_users,
    if(previous_users = 0, 0, users / previous_users) AS step_conversion,
    previous_users - users AS drop_off,
    users / first_value(users) OVER by_step AS overall_conversion,
    median_since_previous_s
FROM
(
    SELECT funnel, step_index, any(step_name) AS step_name, uniqExact(person_id) AS users,
           median(since_previous_s) AS median_since_previous_s
    FROM funnel_steps FINAL
    GROUP BY funnel, step_index
)
WINDOW by_step AS (PARTITION BY funnel ORDER BY step_index ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

CREATE OR REPLACE VIEW funnel_daily AS
SELECT
    funnel,
    day,
    step_index,
    step_name,
    users,
    lagInFrame(users, 1, users) OVER by_step AS previous_users,
    if(previous_users = 0, 0, users / previous_users) AS step_conversion,
    previous_users - users AS drop_off,
    users / first_value(users) OVER by_step AS overall_conversion,
    median_since_previous_s
FROM
(
    SELECT funnel, toDate(ts - toIntervalMillisecond(toInt64(round(since_entry_s * 1000)))) AS day, step_index,
           any(step_name) AS step_name, uniqExact(person_id) AS users, median(since_previous_s) AS median_since_previous_s
    FROM funnel_steps FINAL
    GROUP BY funnel, day, step_index
)
WINDOW by_step AS (PARTITION BY funnel, day ORDER BY step_index ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
