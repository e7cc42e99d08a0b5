-- Funnel figures over funnel_steps, for BI tools: users who reached each step, the conversion
-- from the step before and from the entry step, the drop-off, and the median time from the
-- step before. funnel_conversion covers all time; funnel_daily groups attempts by the UTC day
-- they entered the funnel (step 1), so a user counts on each day they started an attempt.
CREATE VIEW IF NOT EXISTS funnel_conversion AS
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
    SELECT funnel, step_index, any(step_name) AS step_name, uniqExact(user_id) AS users,
           median(since_previous_s) AS median_since_previous_s
    FROM funnel_steps FINAL
    GROUP BY funnel, step_index
)
WINDOW by_step AS (PARTITION BY funnel ORDER BY step_index ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

CREATE VIEW IF NOT EXISTS funnel_daily AS
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
           any(step_name) AS step_name, uniqExact(user_id) AS users, median(since_previous_s) AS median_since_previous_s
    FROM funnel_steps FINAL
    GROUP BY funnel, day, step_index
)
WINDOW by_step AS (PARTITION BY funnel, day ORDER BY step_index ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
