-- KPI layer, engagement family (docs/metrics.md#engagement): active users (DAU, WAU, MAU), stickiness,
-- new and returning users, the power-user curve, and the session figures (events, pages and
-- duration per visit, bounce rate). A user is active on a UTC day with at least one product use
-- (the types of pulse.contract.PRODUCT_USE_TYPES, and custom.* events): emails, ads, surveys,
-- tickets, failed payments, refunds and cancellations do not make anyone active. New users are
-- active for the first time; returning users are active and were active on an earlier day. These
-- count distinct users and days, which a resent event cannot change, so they read events without FINAL.
-- kpi_sessions is one row per session (sessions FINAL, retracted ones left out); a visit is a
-- session with at least one page view (the others are back-office bursts: an email sent, an
-- agent's reply, a renewal charge). kpi_engagement_daily has a row for every UTC day from the first
-- to the last day with product use or a session: DAU, and WAU and MAU over the 7 and 30 days
-- ending that day (rolling windows), with sessions on the day they started. kpi_user_months is
-- one row per user and calendar month with product use; kpi_engagement_monthly counts the month's
-- active users and kpi_power_users its histogram of active days. kpi_engagement covers all time.
-- Rates come with their numerators and denominators and are NULL when the denominator is 0.
-- The session figures are written once, in the internal kpi_session_periods (a row per day and one
-- for all time, by GROUPING SETS); kpi_engagement_daily and kpi_engagement take them from it, and BI
-- tools should read those public views, not kpi_session_periods. The user figures are each view's
-- own: the daily ones come from rolling windows over the days, which GROUPING SETS cannot give.
CREATE VIEW IF NOT EXISTS kpi_sessions AS
SELECT
    session_id,
    user_id,
    start,
    end,
    toDate(start) AS day,
    duration_ms / 1000 AS duration_s,
    events,
    page_views,
    toUInt8(page_views > 0) AS visit,
    toUInt8(bounce) AS bounce,
    toUInt8(page_views = 1) AS single_page,
    toUInt8(page_views > 0 AND start = minIf(start, page_views > 0) OVER (PARTITION BY user_id)) AS first_visit,
    toUInt8(is_first) AS is_first
FROM sessions FINAL
WHERE deleted = 0;

CREATE VIEW IF NOT EXISTS kpi_session_periods AS
SELECT
    day,
    grouping(day) = 1 AS all_time,
    count() AS sessions,
    countIf(visit = 1) AS visits,
    sumIf(events, visit = 1) AS visit_events,
    if(visits = 0, NULL, visit_events / visits) AS events_per_visit,
    sumIf(page_views, visit = 1) AS visit_page_views,
    if(visits = 0, NULL, visit_page_views / visits) AS pages_per_visit,
    sumIf(duration_s, visit = 1) AS visit_duration_s_sum,
    if(visits = 0, NULL, visit_duration_s_sum / visits) AS visit_duration_mean_s,
    if(visits = 0, NULL, quantileExactInclusiveIf(0.5)(duration_s, visit = 1)) AS visit_duration_median_s,
    countIf(bounce = 1) AS bounces,
    if(visits = 0, NULL, bounces * 100 / visits) AS bounce_pct,
    countIf(single_page = 1) AS single_page_visits,
    if(visits = 0, NULL, single_page_visits * 100 / visits) AS single_page_pct,
    countIf(first_visit = 1) AS first_visits,
    countIf(first_visit = 1 AND bounce = 1) AS first_visit_bounces,
    if(first_visits = 0, NULL, first_visit_bounces * 100 / first_visits) AS first_visit_bounce_pct
FROM kpi_sessions
GROUP BY GROUPING SETS ((day), ());

CREATE VIEW IF NOT EXISTS kpi_engagement_daily AS
SELECT
    day,
    dau,
    wau,
    mau,
    if(mau = 0, NULL, dau * 100 / mau) AS stickiness_pct,
    new_users,
    toUInt64(dau - new_users) AS returning_users,
    sessions,
    visits,
    visit_events,
    events_per_visit,
    visit_page_views,
    pages_per_visit,
    visit_duration_s_sum,
    visit_duration_mean_s,
    visit_duration_median_s,
    bounces,
    bounce_pct,
    single_page_visits,
    single_page_pct,
    first_visits,
    first_visit_bounces,
    first_visit_bounce_pct
FROM
(
    SELECT
        *,
        toUInt64(sum(wau_change) OVER running) AS wau,
        toUInt64(sum(mau_change) OVER running) AS mau,
        max(if(dau > 0 OR sessions > 0, day, toDate(0))) OVER () AS last_day
    FROM
    (
        -- A day without product use has dau 0 (and the session figures of kpi_session_periods),
        -- a day without sessions has 0 sessions and NULL rates, as have the days WITH FILL adds.
        SELECT *
        FROM
        (
            -- Each user's active days d, in order, after the previous one p (1970-01-01 before the
            -- first): active on d, new on the first; the 7-day window ending on a day covers the user
            -- from d to d + 6, which starts adding 1 where p's [p, p + 6] stopped (from p + 7, or d)
            -- and stops at d + 7; the same for 30 days.
            SELECT
                change.1 AS day,
                sum(change.2) AS dau,
                sum(change.3) AS new_users,
                sum(change.4) AS wau_change,
                sum(change.5) AS mau_change
            FROM
            (
                SELECT
                    arraySort(groupUniqArray(toDate(ts))) AS days,
                    arrayPushFront(arrayPopBack(days), toDate(0)) AS previous
                FROM events
                WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed',
                               'feature_used', 'trial_started', 'subscription_started', 'subscription_changed',
                               'purchase')
                   OR startsWith(type, 'custom.')
                GROUP BY user_id
            )
            ARRAY JOIN arrayFlatten(arrayMap((d, p, i) -> [
                (d, toUInt8(1), toUInt8(i = 1), toInt8(0), toInt8(0)),
                (greatest(d, p + 7), toUInt8(0), toUInt8(0), toInt8(1), toInt8(0)),
                (d + 7, toUInt8(0), toUInt8(0), toInt8(-1), toInt8(0)),
                (greatest(d, p + 30), toUInt8(0), toUInt8(0), toInt8(0), toInt8(1)),
                (d + 30, toUInt8(0), toUInt8(0), toInt8(0), toInt8(-1))
            ], days, previous, arrayEnumerate(days))) AS change
            GROUP BY day
        ) AS activity
        FULL JOIN (SELECT * EXCEPT (all_time) FROM kpi_session_periods WHERE NOT all_time) AS per_day USING (day)
        ORDER BY day WITH FILL
    )
    WINDOW running AS (ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
WHERE day <= last_day;

CREATE VIEW IF NOT EXISTS kpi_user_months AS
SELECT
    user_id,
    month,
    active_days,
    first_active_day,
    last_active_day,
    toUInt8(month = min(month) OVER (PARTITION BY user_id)) AS new
FROM
(
    SELECT
        user_id,
        toStartOfMonth(ts) AS month,
        uniqExact(toDate(ts)) AS active_days,
        min(toDate(ts)) AS first_active_day,
        max(toDate(ts)) AS last_active_day
    FROM events
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
    GROUP BY user_id, month
);

CREATE VIEW IF NOT EXISTS kpi_engagement_monthly AS
SELECT
    month,
    count() AS active_users,
    countIf(new = 1) AS new_users,
    toUInt64(active_users - new_users) AS returning_users,
    sum(active_days) AS active_user_days,
    active_user_days / active_users AS active_days_mean,
    if(active_users = 0, NULL, quantileExactInclusive(0.5)(active_days)) AS active_days_median
FROM kpi_user_months
GROUP BY month;

CREATE VIEW IF NOT EXISTS kpi_power_users AS
SELECT
    month,
    active_days,
    count() AS users,
    any(month_users) AS active_users,
    users * 100 / active_users AS users_pct,
    toUInt64(sum(count()) OVER (PARTITION BY month ORDER BY active_days DESC
                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS users_at_least
FROM (SELECT month, active_days, count() OVER (PARTITION BY month) AS month_users FROM kpi_user_months)
GROUP BY month, active_days;

CREATE VIEW IF NOT EXISTS kpi_engagement AS
SELECT *
FROM
(
    SELECT
        count() AS users,
        countIf(days > 0) AS active_users,
        countIf(days > 1) AS returning_users,
        sum(days) AS active_user_days
    FROM
    (
        SELECT uniqExactIf(toDate(ts), type IN ('page_view', 'signup', 'login', 'onboarding_step',
                                                'onboarding_completed', 'feature_used', 'trial_started',
                                                'subscription_started', 'subscription_changed', 'purchase')
                                       OR startsWith(type, 'custom.')) AS days
        FROM events
        GROUP BY user_id
    )
) AS people
CROSS JOIN (SELECT * EXCEPT (day, all_time) FROM kpi_session_periods WHERE all_time) AS all_sessions
