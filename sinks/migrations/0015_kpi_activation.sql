-- KPI layer, activation family (docs/metrics.md#activation): visitor-to-signup conversion, signup
-- abandonment, onboarding completion and time, trial-to-paid conversion, time to convert, and
-- feature adoption. kpi_activation_users is one row per user with a page view or an activation
-- event: when each step was first reached, in order (a step only counts at or after the one it
-- follows: onboarding after the signup, a paid subscription within 60 days of the trial's start,
-- a first purchase or subscription after the signup), and the times between. The internal view
-- kpi_activation_periods computes the figures once for every UTC day and for all time (GROUPING
-- SETS; all_time marks the all-time row); kpi_activation_daily and kpi_activation are its rows, and
-- are what BI tools should read. A day's figures put each user on the day of the step its cohort
-- starts from: the first page view for the visitor figures, the signup for onboarding and
-- conversion, the trial's start for trial-to-paid; a cohort's later steps count on that day
-- whenever they happen, so every column sums over days.
-- kpi_feature_adoption_daily / _monthly / kpi_feature_adoption give, per feature, the users who
-- used it over the active users (any product use, as pulse.contract.is_product_use) of the same
-- UTC day, calendar month or all time. These views read first times and distinct users, which a
-- resent event cannot change, so they read without FINAL. Rates come with their numerators and
-- denominators and are NULL when the denominator is 0; times are NULL with nobody to time.
CREATE VIEW IF NOT EXISTS kpi_activation_users AS
SELECT
    user_id,
    first_seen_at,
    signed_up_at,
    onboarding_started_at,
    onboarded_at,
    trial_started_at,
    trial_converted_at,
    converted_at,
    dateDiff('millisecond', first_seen_at, signed_up_at) / 1000 AS visit_to_signup_s,
    dateDiff('millisecond', signed_up_at, onboarded_at) / 1000 AS onboarding_s,
    dateDiff('millisecond', trial_started_at, trial_converted_at) / 1000 AS trial_to_paid_s,
    dateDiff('millisecond', signed_up_at, converted_at) / 1000 AS time_to_convert_s,
    toUInt8(first_seen_at IS NOT NULL AND signed_up_at >= first_seen_at) AS visitor_signed_up,
    toUInt8(onboarded_at IS NOT NULL) AS onboarded,
    toUInt8(trial_converted_at IS NOT NULL) AS trial_converted,
    toUInt8(converted_at IS NOT NULL) AS converted
FROM
(
    SELECT
        user_id,
        minIf(toNullable(ts), type = 'page_view') AS first_seen_at,
        minIf(toNullable(ts), type = 'signup') AS signed_up_at,
        minIf(toNullable(ts), type = 'trial_started') AS trial_started_at,
        groupArrayIf(ts, type IN ('onboarding_step', 'onboarding_completed')) AS onboarding_times,
        groupArrayIf(ts, type = 'onboarding_completed') AS onboarded_times,
        groupArrayIf(ts, type = 'subscription_started') AS subscription_times,
        groupArrayIf(ts, type IN ('subscription_started', 'purchase')) AS conversion_times,
        arrayFilter(t -> signed_up_at IS NOT NULL AND t >= assumeNotNull(signed_up_at), onboarding_times) AS started,
        arrayFilter(t -> signed_up_at IS NOT NULL AND t >= assumeNotNull(signed_up_at), onboarded_times) AS done,
        arrayFilter(t -> trial_started_at IS NOT NULL AND t >= assumeNotNull(trial_started_at)
                         AND t <= assumeNotNull(trial_started_at) + toIntervalDay(60), subscription_times) AS paid,
        arrayFilter(t -> signed_up_at IS NOT NULL AND t >= assumeNotNull(signed_up_at), conversion_times) AS bought,
        if(empty(started), NULL, toNullable(arrayMin(started))) AS onboarding_started_at,
        if(empty(done), NULL, toNullable(arrayMin(done))) AS onboarded_at,
        if(empty(paid), NULL, toNullable(arrayMin(paid))) AS trial_converted_at,
        if(empty(bought), NULL, toNullable(arrayMin(bought))) AS converted_at
    FROM events
    WHERE type IN ('page_view', 'signup', 'onboarding_step', 'onboarding_completed', 'trial_started',
                   'subscription_started', 'purchase')
    GROUP BY user_id
);

CREATE VIEW IF NOT EXISTS kpi_activation_periods AS
SELECT
    day,
    grouping(day) = 1 AS all_time,
    countIf(step = 'visit') AS visitors,
    countIf(step = 'visit' AND done = 1) AS visitors_signed_up,
    if(visitors = 0, NULL, visitors_signed_up * 100 / visitors) AS visitor_conversion_pct,
    sumIf(seconds, step = 'visit' AND done = 1) AS visit_to_signup_s_sum,
    if(visitors_signed_up = 0, NULL, visit_to_signup_s_sum / visitors_signed_up) AS visit_to_signup_mean_s,
    if(visitors_signed_up = 0, NULL, quantileExactInclusiveIf(0.5)(seconds, step = 'visit' AND done = 1)) AS visit_to_signup_median_s,
    countIf(step = 'signup') AS signups,
    countIf(step = 'onboarding_start') AS onboarding_started,
    countIf(step = 'signup' AND done = 1) AS onboarded,
    if(signups = 0, NULL, onboarded * 100 / signups) AS onboarding_completion_pct,
    if(onboarding_started = 0, NULL, onboarded * 100 / onboarding_started) AS onboarding_started_completion_pct,
    sumIf(seconds, step = 'signup' AND done = 1) AS onboarding_s_sum,
    if(onboarded = 0, NULL, onboarding_s_sum / onboarded) AS onboarding_mean_s,
    if(onboarded = 0, NULL, quantileExactInclusiveIf(0.5)(seconds, step = 'signup' AND done = 1)) AS onboarding_median_s,
    if(onboarded = 0, NULL, quantileExactInclusiveIf(0.9)(seconds, step = 'signup' AND done = 1)) AS onboarding_p90_s,
    countIf(step = 'conversion' AND done = 1) AS converted,
    if(signups = 0, NULL, converted * 100 / signups) AS signup_conversion_pct,
    sumIf(seconds, step = 'conversion' AND done = 1) AS time_to_convert_s_sum,
    if(converted = 0, NULL, time_to_convert_s_sum / converted) AS time_to_convert_mean_s,
    if(converted = 0, NULL, quantileExactInclusiveIf(0.5)(seconds, step = 'conversion' AND done = 1)) AS time_to_convert_median_s,
    if(converted = 0, NULL, quantileExactInclusiveIf(0.9)(seconds, step = 'conversion' AND done = 1)) AS time_to_convert_p90_s,
    countIf(step = 'trial') AS trials,
    countIf(step = 'trial' AND done = 1) AS trial_conversions,
    if(trials = 0, NULL, trial_conversions * 100 / trials) AS trial_to_paid_pct,
    sumIf(seconds, step = 'trial' AND done = 1) AS trial_to_paid_s_sum,
    if(trial_conversions = 0, NULL, trial_to_paid_s_sum / trial_conversions) AS trial_to_paid_mean_s,
    if(trial_conversions = 0, NULL, quantileExactInclusiveIf(0.5)(seconds, step = 'trial' AND done = 1)) AS trial_to_paid_median_s,
    if(trial_conversions = 0, NULL, quantileExactInclusiveIf(0.9)(seconds, step = 'trial' AND done = 1)) AS trial_to_paid_p90_s
FROM
(
    -- Each user once per cohort it is in, on the day the cohort starts: (day, step, done, seconds).
    SELECT assumeNotNull(cohort.1) AS day, cohort.2 AS step, cohort.3 AS done, ifNull(cohort.4, 0.) AS seconds
    FROM kpi_activation_users
    ARRAY JOIN arrayFilter(c -> c.1 IS NOT NULL, [
        (toDate(first_seen_at), 'visit', visitor_signed_up, visit_to_signup_s),
        (toDate(signed_up_at), 'signup', onboarded, onboarding_s),
        (if(onboarding_started_at IS NULL, NULL, toDate(signed_up_at)), 'onboarding_start', 1, NULL),
        (toDate(signed_up_at), 'conversion', converted, time_to_convert_s),
        (toDate(trial_started_at), 'trial', trial_converted, trial_to_paid_s)
    ]) AS cohort
)
GROUP BY GROUPING SETS ((day), ());

CREATE VIEW IF NOT EXISTS kpi_activation_daily AS
SELECT * EXCEPT (all_time) FROM kpi_activation_periods WHERE NOT all_time;

CREATE VIEW IF NOT EXISTS kpi_activation AS
SELECT * EXCEPT (day, all_time) FROM kpi_activation_periods WHERE all_time;

CREATE VIEW IF NOT EXISTS kpi_feature_adoption_daily AS
SELECT day, feature, feature_users, active_users,
       if(active_users = 0, NULL, feature_users * 100 / active_users) AS feature_adoption_pct
FROM
(
    SELECT toDate(ts) AS day, JSONExtractString(props, 'feature') AS feature, uniqExact(user_id) AS feature_users
    FROM events
    WHERE type = 'feature_used'
    GROUP BY day, feature
) AS used
INNER JOIN
(
    SELECT toDate(ts) AS day, uniqExact(user_id) AS active_users
    FROM events
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
    GROUP BY day
) AS active USING (day);

CREATE VIEW IF NOT EXISTS kpi_feature_adoption_monthly AS
SELECT month, feature, feature_users, active_users,
       if(active_users = 0, NULL, feature_users * 100 / active_users) AS feature_adoption_pct
FROM
(
    SELECT toStartOfMonth(ts) AS month, JSONExtractString(props, 'feature') AS feature, uniqExact(user_id) AS feature_users
    FROM events
    WHERE type = 'feature_used'
    GROUP BY month, feature
) AS used
INNER JOIN
(
    SELECT toStartOfMonth(ts) AS month, uniqExact(user_id) AS active_users
    FROM events
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
    GROUP BY month
) AS active USING (month);

CREATE VIEW IF NOT EXISTS kpi_feature_adoption AS
SELECT feature, feature_users, active_users,
       if(active_users = 0, NULL, feature_users * 100 / active_users) AS feature_adoption_pct
FROM
(
    SELECT JSONExtractString(props, 'feature') AS feature, uniqExact(user_id) AS feature_users
    FROM events
    WHERE type = 'feature_used'
    GROUP BY feature
) AS used
CROSS JOIN
(
    SELECT uniqExact(user_id) AS active_users
    FROM events
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
) AS active
