-- KPI layer, activation family continued (docs/metrics.md#activation): signup abandonment (ACT-10) and
-- product adoption (ACT-4). kpi_signup_abandonment_users is one row per user with a signup_started:
-- its first start, the first signup at or after it, and the outcome: finished (that signup came
-- within 24 hours of the start, both ends included), abandoned (it did not, and the newest event of
-- the table is more than 24 hours after the start) or in progress (the 24 hours have not passed at
-- the newest event: not counted as abandoned yet). The internal view kpi_signup_abandonment_periods
-- counts them per UTC day of the first start (the cohort) and for all time (GROUPING SETS; all_time
-- marks the all-time row); the abandonment rate is over the starters whose outcome is known.
-- kpi_product_adoption_users is one row per user with product use (the types of
-- pulse.contract.PRODUCT_USE_TYPES, and custom.*, as the engagement views): its first and last use,
-- its first payment (purchase or subscription_started), whether it is a repeat user (product use on
-- two UTC days or more, 000:397) and whether it used the product for its intended use (paid, and a
-- feature_used at or after the first payment, 001:836). kpi_product_adoption_periods counts them
-- per UTC day of the first use (the cohort) and for all time. Each user counts in one cohort, so a
-- month is the sum of its days. The public views kpi_signup_abandonment_daily, kpi_signup_abandonment,
-- kpi_product_adoption_daily and kpi_product_adoption are the rows of the *_periods views, and are
-- what BI tools should read. These views read first and last times, which a resent event cannot
-- change, so they read events without FINAL (the newest event included). Rates come with their numerators and denominators and are NULL when
-- the denominator is 0.
CREATE VIEW IF NOT EXISTS kpi_signup_abandonment_users AS
SELECT
    user_id,
    started_at,
    signed_up_at,
    dateDiff('millisecond', started_at, signed_up_at) / 1000 AS signup_s,
    toUInt8(signed_up_at IS NOT NULL AND assumeNotNull(signed_up_at) <= started_at + toIntervalDay(1)) AS finished,
    toUInt8(finished = 0 AND newest_at > started_at + toIntervalDay(1)) AS abandoned,
    toUInt8(finished = 0 AND abandoned = 0) AS in_progress
FROM
(
    SELECT
        user_id,
        minIf(ts, type = 'signup_started') AS started_at,
        arrayFilter(t -> t >= started_at, groupArrayIf(ts, type = 'signup')) AS signups,
        if(empty(signups), NULL, toNullable(arrayMin(signups))) AS signed_up_at
    FROM events
    WHERE type IN ('signup_started', 'signup')
    GROUP BY user_id
    HAVING countIf(type = 'signup_started') > 0
) AS starters
CROSS JOIN (SELECT max(ts) AS newest_at FROM events) AS newest;

CREATE VIEW IF NOT EXISTS kpi_signup_abandonment_periods AS
SELECT
    toDate(started_at) AS day,
    grouping(day) = 1 AS all_time,
    count() AS signup_starters,
    sum(finished) AS signup_finished,
    sum(abandoned) AS signup_abandoned,
    sum(in_progress) AS signup_in_progress,
    signup_finished + signup_abandoned AS signup_settled,
    if(signup_settled = 0, NULL, signup_abandoned * 100 / signup_settled) AS signup_abandonment_pct
FROM kpi_signup_abandonment_users
GROUP BY GROUPING SETS ((day), ());

CREATE VIEW IF NOT EXISTS kpi_signup_abandonment_daily AS
SELECT * EXCEPT (all_time) FROM kpi_signup_abandonment_periods WHERE NOT all_time;

CREATE VIEW IF NOT EXISTS kpi_signup_abandonment AS
SELECT * EXCEPT (day, all_time) FROM kpi_signup_abandonment_periods WHERE all_time;

CREATE VIEW IF NOT EXISTS kpi_product_adoption_users AS
SELECT
    user_id,
    first_used_at,
    last_used_at,
    paid_at,
    toUInt8(toDate(first_used_at) < toDate(last_used_at)) AS repeat_user,
    toUInt8(paid_at IS NOT NULL AND last_feature_at >= assumeNotNull(paid_at)) AS intended_use
FROM
(
    SELECT
        user_id,
        min(ts) AS first_used_at,
        max(ts) AS last_used_at,
        minIf(toNullable(ts), type IN ('purchase', 'subscription_started')) AS paid_at,
        maxIf(ts, type = 'feature_used') AS last_feature_at  -- 1970-01-01 without any: before every payment
    FROM events
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
    GROUP BY user_id
);

CREATE VIEW IF NOT EXISTS kpi_product_adoption_periods AS
SELECT
    toDate(first_used_at) AS day,
    grouping(day) = 1 AS all_time,
    count() AS users,
    sum(repeat_user) AS repeat_users,
    if(users = 0, NULL, repeat_users * 100 / users) AS repeat_use_adoption_pct,
    sum(intended_use) AS intended_use_users,
    if(users = 0, NULL, intended_use_users * 100 / users) AS intended_use_adoption_pct
FROM kpi_product_adoption_users
GROUP BY GROUPING SETS ((day), ());

CREATE VIEW IF NOT EXISTS kpi_product_adoption_daily AS
SELECT * EXCEPT (all_time) FROM kpi_product_adoption_periods WHERE NOT all_time;

CREATE VIEW IF NOT EXISTS kpi_product_adoption AS
SELECT * EXCEPT (day, all_time) FROM kpi_product_adoption_periods WHERE all_time
