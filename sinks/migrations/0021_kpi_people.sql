-- KPI layer, people (docs/identity.md): every KPI view that counts or groups users now counts
-- people. The *_by_person views are events, sessions and churn scores with user_id replaced by
-- person_id (the id an event carried, resolved through person_links: itself unless merged), so
-- the views below keep their names, columns and queries and only read from those instead of the
-- tables; views that never read user_id are unchanged. An anonymous visit followed by a signup is
-- one visitor, one conversion, one adopter; a late identify re-attributes history on the next read.
CREATE OR REPLACE VIEW events_by_person AS
SELECT * REPLACE (person_id AS user_id), feature, utm_source, utm_medium, campaign, amount FROM events;

CREATE OR REPLACE VIEW events_final_by_person AS
SELECT * REPLACE (person_id AS user_id), feature, utm_source, utm_medium, campaign, amount FROM events FINAL;

CREATE OR REPLACE VIEW sessions_final_by_person AS
SELECT * REPLACE (person_id AS user_id) FROM sessions FINAL;

-- A person whose anonymous id was scored before the merge has a row under each id: the latest wins
-- (versions grow with event time, see stream_jobs/churn_job.py), one row per person.
CREATE OR REPLACE VIEW churn_scores_final_by_person AS
SELECT
    person AS user_id,
    argMax(s, v) AS score,
    argMax(t, v) AS tier,
    argMax(r, v) AS reasons,
    argMax(at, v) AS ts,
    max(v) AS version
FROM (SELECT person_id AS person, score AS s, tier AS t, reasons AS r, ts AS at, version AS v FROM churn_scores FINAL)
GROUP BY person;

CREATE OR REPLACE VIEW kpi_survey_responses AS
SELECT
    event_id,
    user_id,
    ts,
    toDate(ts) AS day,
    kind,
    score,
    scale_min,
    scale_max,
    (score - scale_min) * 100 / (scale_max - scale_min) AS score_pct,
    ticket_id,
    multiIf(kind != 'nps', '', score >= 9, 'promoter', score >= 7, 'passive', 'detractor') AS nps_bucket,
    toUInt8(kind = 'csat' AND score >= scale_max - 1) AS satisfied
FROM
(
    SELECT
        event_id,
        user_id,
        ts,
        JSONExtractString(props, 'kind') AS kind,
        JSONExtractFloat(props, 'score') AS score,
        if(kind != 'nps' AND JSONHas(props, 'scale_min'), JSONExtractFloat(props, 'scale_min'),
           if(kind = 'nps', 0., 1.)) AS scale_min,
        if(kind != 'nps' AND JSONHas(props, 'scale_max'), JSONExtractFloat(props, 'scale_max'),
           multiIf(kind = 'nps', 10., kind = 'csat', 5., 7.)) AS scale_max,
        JSONExtractString(props, 'ticket_id') AS ticket_id
    FROM events_final_by_person
    WHERE type = 'survey_response'
);

CREATE OR REPLACE VIEW kpi_tickets AS
SELECT
    ticket_id,
    user_id,
    opened_at,
    first_response_at,
    first_resolved_at,
    resolved_at,
    reopens,
    dateDiff('millisecond', opened_at, first_response_at) / 1000 AS first_response_s,
    dateDiff('millisecond', opened_at, resolved_at) / 1000 AS resolution_s,
    toUInt8(resolved_at IS NOT NULL) AS resolved,
    toUInt8(resolved_at IS NOT NULL AND reopens = 0 AND first_response_at IS NOT NULL) AS one_touch,
    multiIf(resolved_at IS NOT NULL, 'resolved', reopens > 0, 'reopened', 'open') AS status
FROM
(
    SELECT
        JSONExtractString(props, 'ticket_id') AS ticket_id,
        argMinIf(user_id, ts, type = 'ticket_opened') AS user_id,
        minIf(ts, type = 'ticket_opened') AS opened_at,
        minIf(toNullable(ts), type = 'ticket_first_response') AS first_response_at,
        minIf(toNullable(ts), type = 'ticket_resolved') AS first_resolved_at,
        maxIf(toNullable(ts), type = 'ticket_resolved') AS last_resolved_at,
        maxIf(toNullable(ts), type = 'ticket_reopened') AS last_reopened_at,
        if(last_reopened_at IS NULL OR last_resolved_at > last_reopened_at, last_resolved_at, NULL) AS resolved_at,
        countIf(type = 'ticket_reopened') AS reopens
    FROM events_final_by_person
    WHERE type IN ('ticket_opened', 'ticket_first_response', 'ticket_resolved', 'ticket_reopened')
    GROUP BY ticket_id
    HAVING countIf(type = 'ticket_opened') > 0
);

CREATE OR REPLACE VIEW kpi_sessions AS
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
FROM sessions_final_by_person
WHERE deleted = 0;

CREATE OR REPLACE VIEW kpi_engagement_daily AS
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
        SELECT *
        FROM
        (
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
                FROM events_by_person
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

CREATE OR REPLACE VIEW kpi_user_months AS
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
    FROM events_by_person
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
    GROUP BY user_id, month
);

CREATE OR REPLACE VIEW kpi_engagement AS
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
        FROM events_by_person
        GROUP BY user_id
    )
) AS people
CROSS JOIN (SELECT * EXCEPT (day, all_time) FROM kpi_session_periods WHERE all_time) AS all_sessions;

CREATE OR REPLACE VIEW kpi_session_sources AS
SELECT
    session_id,
    user_id,
    start,
    toDate(start) AS day,
    coalesce(nullIf(utm_source, ''), nullIf(domain(coalesce(referrer, '')), ''), nullIf(referrer, ''),
             '(direct)') AS source,
    coalesce(nullIf(utm_medium, ''),
             multiIf(coalesce(utm_source, '') != '', '(none)',
                     coalesce(referrer, '') != '', 'referral', '(none)')) AS medium,
    coalesce(nullIf(utm_campaign, ''), '(none)') AS campaign,
    page_views,
    toUInt8(page_views > 0) AS visit
FROM sessions_final_by_person
WHERE deleted = 0;

CREATE OR REPLACE VIEW kpi_traffic_periods AS
SELECT
    day,
    grouping(day) = 1 AS all_time,
    source,
    medium,
    campaign,
    count() AS sessions,
    countIf(visit = 1) AS visits,
    uniqExactIf(user_id, visit = 1) AS visitors,
    sum(page_views) AS page_views
FROM kpi_session_sources
GROUP BY GROUPING SETS ((day, source, medium, campaign), (source, medium, campaign));

CREATE OR REPLACE VIEW kpi_conversions AS
SELECT
    user_id,
    step.1 AS conversion,
    assumeNotNull(step.2) AS ts,
    toDate(ts) AS day,
    revenue_cents / 100 AS revenue,
    arrayMap(v -> (v.2, v.3, v.4), arrayFilter(v -> v.1 <= ts, visits)) AS touch_path,
    length(touch_path) AS touches,
    if(touches = 0, '(no visit)', touch_path[1].1) AS first_touch_source,
    if(touches = 0, '(none)', touch_path[1].2) AS first_touch_medium,
    if(touches = 0, '(none)', touch_path[1].3) AS first_touch_campaign,
    if(touches = 0, '(no visit)', touch_path[-1].1) AS last_touch_source,
    if(touches = 0, '(none)', touch_path[-1].2) AS last_touch_medium,
    if(touches = 0, '(none)', touch_path[-1].3) AS last_touch_campaign
FROM
(
    SELECT
        user_id,
        arraySort(groupArrayIf((ts, source, medium, campaign), kind = 'visit')) AS visits,
        minIf(toNullable(ts), kind = 'signup') AS signup_at,
        minIf(toNullable(ts), kind = 'subscription_started') AS subscription_at,
        minIf(toNullable(ts), kind = 'purchase') AS customer_at,
        sumIf(cents, kind = 'purchase') - sumIf(cents, kind = 'refund') AS revenue_cents
    FROM
    (
        SELECT user_id, start AS ts, 'visit' AS kind, source, medium, campaign, toInt64(0) AS cents
        FROM kpi_session_sources
        WHERE visit = 1
        UNION ALL
        SELECT user_id, ts, toString(type) AS kind, '' AS source, '' AS medium, '' AS campaign,
               if(type IN ('purchase', 'refund'), toInt64(round(amount * 100)), 0) AS cents
        FROM events_final_by_person
        WHERE type IN ('signup', 'subscription_started', 'purchase', 'refund')
    )
    GROUP BY user_id
    HAVING signup_at IS NOT NULL OR subscription_at IS NOT NULL OR customer_at IS NOT NULL
)
ARRAY JOIN [('signup', signup_at), ('subscription', subscription_at), ('customer', customer_at)] AS step
WHERE step.2 IS NOT NULL;

CREATE OR REPLACE VIEW kpi_acquisition_periods AS
SELECT
    day,
    grouping(day) = 1 AS all_time,
    countIf(part = 'visit') AS visits,
    uniqExactIf(cityHash64(user_id), part = 'visit') AS visitors,
    countIf(part = 'signup') AS signups,
    countIf(part = 'subscription') AS subscriptions,
    countIf(part = 'customer') AS new_customers,
    sumIf(cents, part = 'spend') / 100 AS spend,
    if(signups = 0, NULL, spend / signups) AS cost_per_signup,
    if(new_customers = 0, NULL, spend / new_customers) AS cac,
    sumIf(cents, part = 'revenue') / 100 AS revenue,
    if(new_customers = 0, NULL, revenue / new_customers) AS clv,
    if(spend = 0 OR new_customers = 0, NULL, clv / cac) AS clv_cac_ratio,
    if(spend = 0, NULL, (revenue - spend) * 100 / spend) AS roi_pct
FROM
(
    SELECT day, 'visit' AS part, user_id, toInt64(0) AS cents FROM kpi_session_sources WHERE visit = 1
    UNION ALL
    SELECT toDate(ts) AS day, 'revenue' AS part, user_id,
           if(type = 'refund', -1, 1) * toInt64(round(amount * 100)) AS cents
    FROM events_final_by_person
    WHERE type IN ('purchase', 'refund')
    UNION ALL
    SELECT day, conversion AS part, user_id, toInt64(0) AS cents FROM kpi_conversions
    UNION ALL
    SELECT day, 'spend' AS part, '' AS user_id, toInt64(round(spend * 100)) AS cents FROM kpi_marketing_spend_daily
)
GROUP BY GROUPING SETS ((day), ());

CREATE OR REPLACE VIEW kpi_cohort_retention AS
SELECT
    period_kind,
    cohort,
    periods_since_signup,
    if(period_kind = 'week', addWeeks(cohort, periods_since_signup), addMonths(cohort, periods_since_signup)) AS period_start,
    count() AS cohort_users,
    countIf(retained = 1) AS retained_users,
    if(cohort_users = 0, NULL, retained_users * 100 / cohort_users) AS retention_pct
FROM
(
    SELECT kind.1 AS period_kind, kind.2 AS cohort, periods_since_signup, toUInt8(has(kind.3, periods_since_signup)) AS retained
    FROM
    (
        SELECT
            [('week', toMonday(signup_day),
              arrayMap(d -> toUInt32(intDiv(dateDiff('day', toMonday(signup_day), d), 7)),
                       arrayFilter(d -> d >= toMonday(signup_day), weeks)),
              toUInt32(intDiv(dateDiff('day', toMonday(signup_day), toMonday(last_day)), 7))),
             ('month', toStartOfMonth(signup_day),
              arrayMap(d -> toUInt32(dateDiff('month', toStartOfMonth(signup_day), d)),
                       arrayFilter(d -> d >= toStartOfMonth(signup_day), months)),
              toUInt32(dateDiff('month', toStartOfMonth(signup_day), toStartOfMonth(last_day))))] AS kinds
        FROM
        (
            SELECT
                user_id,
                toDate(minIf(ts, type = 'signup')) AS signup_day,
                countIf(type = 'signup') AS signups,
                groupUniqArray(toMonday(ts)) AS weeks,
                groupUniqArray(toStartOfMonth(ts)) AS months,
                max(max(toDate(ts))) OVER () AS last_day
            FROM events_by_person
            WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                           'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
               OR startsWith(type, 'custom.')
            GROUP BY user_id
        )
        WHERE signups > 0 AND last_day >= signup_day
    )
    ARRAY JOIN kinds AS kind
    ARRAY JOIN range(kind.4 + 1) AS periods_since_signup
)
GROUP BY period_kind, cohort, periods_since_signup;

CREATE OR REPLACE VIEW kpi_mrr_daily AS
SELECT
    day,
    toUInt64(sum(sum(subscriber_change)) OVER by_day) AS subscribers,
    sum(sum(mrr_change)) OVER by_day / 100 AS mrr,
    sum(new_cents) / 100 AS new_mrr,
    sum(expansion_cents) / 100 AS expansion_mrr,
    sum(contraction_cents) / 100 AS contraction_mrr,
    sum(churned_cents) / 100 AS churned_mrr
FROM
(
    SELECT
        toDate(step.1) AS day,
        toInt64(step.2) - toInt64(step.3) AS subscriber_change,
        step.4 - step.5 AS mrr_change,
        if(step.2 AND NOT step.3, step.4, 0) AS new_cents,
        if(step.2 AND step.3 AND step.4 > step.5, step.4 - step.5, 0) AS expansion_cents,
        if(step.2 AND step.3 AND step.4 < step.5, step.5 - step.4, 0) AS contraction_cents,
        if(step.3 AND NOT step.2, step.5, 0) AS churned_cents
    FROM
    (
        SELECT
            arraySort(groupUniqArray((ts, type = 'subscription_cancelled',
                                  if(type = 'subscription_cancelled', 0, toInt64(round(JSONExtractFloat(props, 'mrr') * 100))), event_id)))
                AS changes,
            arrayMap(c -> NOT c.2, changes) AS active_after,
            arrayMap(c -> if(c.2, toInt64(0), c.3), changes) AS mrr_after,
            arrayPushFront(arrayPopBack(active_after), 0) AS active_before,
            arrayPushFront(arrayPopBack(mrr_after), toInt64(0)) AS mrr_before
        FROM events_by_person
        WHERE type IN ('subscription_started', 'subscription_changed', 'subscription_cancelled')
        GROUP BY user_id
    )
    ARRAY JOIN arrayZip(arrayMap(c -> c.1, changes), active_after, active_before, mrr_after, mrr_before) AS step
    UNION ALL
    SELECT first_day + offset, 0, 0, 0, 0, 0, 0
    FROM
    (
        SELECT minIf(toDate(ts), type != 'purchase') AS first_day, max(toDate(ts)) AS last_day
        FROM events_by_person
        WHERE type IN ('subscription_started', 'subscription_changed', 'subscription_cancelled', 'purchase')
        HAVING countIf(type != 'purchase') > 0
    )
    ARRAY JOIN range(toUInt32(dateDiff('day', first_day, last_day) + 1)) AS offset
)
GROUP BY day
WINDOW by_day AS (ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

CREATE OR REPLACE VIEW kpi_retention_monthly AS
SELECT
    month,
    countIf(at_start) AS customers_start,
    countIf(at_end) AS customers_end,
    countIf(at_end AND NOT at_start) AS customers_new,
    countIf(at_start AND NOT at_end) AS customers_lost,
    if(customers_start = 0, NULL, (customers_end - customers_new) * 100 / customers_start) AS retention_pct,
    if(customers_start = 0, NULL, customers_lost * 100 / customers_start) AS churn_pct,
    if(customers_lost = 0, NULL, customers_start / customers_lost) AS lifespan_months,
    sum(cancellations) AS cancellations,
    sumIf(mrr_start_cents, at_start) / 100 AS mrr_start,
    sumIf(mrr_end_cents, at_end) / 100 AS mrr_end,
    sumIf(mrr_end_cents, at_end AND NOT at_start) / 100 AS mrr_new,
    sumIf(mrr_end_cents - mrr_start_cents, at_start AND at_end AND mrr_end_cents > mrr_start_cents) / 100 AS mrr_expansion,
    sumIf(mrr_start_cents - mrr_end_cents, at_start AND at_end AND mrr_end_cents < mrr_start_cents) / 100 AS mrr_contraction,
    sumIf(mrr_start_cents, at_start AND NOT at_end) / 100 AS mrr_churned,
    if(mrr_start = 0, NULL, mrr_churned * 100 / mrr_start) AS mrr_churn_pct,
    if(mrr_start = 0, NULL, (mrr_churned + mrr_contraction - mrr_expansion) * 100 / mrr_start) AS net_mrr_churn_pct,
    if(mrr_start = 0, NULL, (mrr_start - mrr_churned - mrr_contraction + mrr_expansion) * 100 / mrr_start)
        AS net_revenue_retention_pct
FROM
(
    SELECT
        month,
        arrayFilter(c -> c.1 < toDateTime64(month, 3, 'UTC'), changes) AS before_start,
        arrayFilter(c -> c.1 < toDateTime64(addMonths(month, 1), 3, 'UTC'), changes) AS before_end,
        notEmpty(before_start) AND NOT before_start[-1].2 AS at_start,
        notEmpty(before_end) AND NOT before_end[-1].2 AS at_end,
        if(at_start, before_start[-1].3, 0) AS mrr_start_cents,
        if(at_end, before_end[-1].3, 0) AS mrr_end_cents,
        arrayCount(c -> c.2 AND c.1 >= toDateTime64(month, 3, 'UTC'), before_end) AS cancellations
    FROM
    (
        SELECT changes, assumeNotNull(first_month_at) AS first_month_at, last_month_at
        FROM
        (
            SELECT changes, min(first_at) OVER () AS first_month_at, max(last_at) OVER () AS last_month_at
            FROM
            (
                SELECT
                    user_id,
                    arraySort(groupUniqArrayIf((ts, type = 'subscription_cancelled',
                                            if(type = 'subscription_cancelled', 0,
                                               toInt64(round(JSONExtractFloat(props, 'mrr') * 100))), event_id),
                                           type != 'purchase')) AS changes,
                    minIf(toNullable(ts), type != 'purchase') AS first_at,
                    max(ts) AS last_at
                FROM events_by_person
                WHERE type IN ('subscription_started', 'subscription_changed', 'subscription_cancelled', 'purchase')
                GROUP BY user_id
            )
        )
        WHERE notEmpty(changes)
    )
    ARRAY JOIN arrayMap(m -> addMonths(toStartOfMonth(first_month_at), m),
                        range(toUInt32(dateDiff('month', toStartOfMonth(first_month_at), toStartOfMonth(last_month_at)) + 1)))
        AS month
)
GROUP BY month;

CREATE OR REPLACE VIEW kpi_subscriptions AS
SELECT
    countIf(notEmpty(changes) AND NOT changes[-1].2) AS subscribers,
    sumIf(changes[-1].3, notEmpty(changes) AND NOT changes[-1].2) / 100 AS mrr,
    countIf(arrayExists(c -> NOT c.2, changes)) AS customers_ever,
    countIf(arrayExists(c -> c.2, changes)) AS cancelled_customers,
    sum(arrayCount(c -> c.2, changes)) AS cancellations
FROM
(
    SELECT
        arraySort(groupUniqArray((ts, type = 'subscription_cancelled',
                              if(type = 'subscription_cancelled', 0, toInt64(round(JSONExtractFloat(props, 'mrr') * 100))), event_id)))
            AS changes
    FROM events_by_person
    WHERE type IN ('subscription_started', 'subscription_changed', 'subscription_cancelled')
    GROUP BY user_id
);

CREATE OR REPLACE VIEW kpi_churned_users AS
SELECT
    user_id,
    ts AS churned_at,
    if(reasons[1] = 'subscription cancelled', 'cancelled', 'inactive') AS cause,
    reasons
FROM (SELECT user_id, tier, ts, reasons FROM churn_scores_final_by_person)
WHERE tier = 'churned';

CREATE OR REPLACE VIEW kpi_churn AS
SELECT
    count() AS scored_users,
    countIf(tier = 'churned') AS churned_users,
    countIf(tier = 'churned' AND reasons[1] = 'subscription cancelled') AS churned_cancelled,
    countIf(tier = 'churned' AND reasons[1] != 'subscription cancelled') AS churned_inactive,
    if(scored_users = 0, NULL, churned_users * 100 / scored_users) AS churned_pct
FROM (SELECT user_id, tier, reasons FROM churn_scores_final_by_person);

CREATE OR REPLACE VIEW kpi_orders AS
SELECT
    order_id,
    user_id,
    ordered_at,
    toDate(ordered_at) AS day,
    amount_cents / 100 AS amount,
    refunds,
    refunded_cents / 100 AS refunded_amount,
    (amount_cents - refunded_cents) / 100 AS net_amount,
    toUInt8(refunds > 0) AS refunded
FROM
(
    SELECT
        order_id,
        argMinIf(user_id, ts, type = 'purchase') AS user_id,
        minIf(ts, type = 'purchase') AS ordered_at,
        sumIf(cents, type = 'purchase') AS amount_cents,
        countIf(type = 'refund') AS refunds,
        sumIf(cents, type = 'refund') AS refunded_cents
    FROM
    (
        SELECT user_id, ts, type, any(JSONExtractString(props, 'order_id')) AS order_id,
               any(toInt64(round(JSONExtractFloat(props, 'amount') * 100))) AS cents
        FROM events_by_person
        WHERE type IN ('purchase', 'refund')
        GROUP BY user_id, ts, event_id, type
    )
    GROUP BY order_id
    HAVING countIf(type = 'purchase') > 0
);

CREATE OR REPLACE VIEW kpi_revenue_periods AS
SELECT
    toDate(ts) AS day,
    toStartOfMonth(ts) AS month,
    multiIf(grouping(day) = 0, 'day', grouping(month) = 0, 'month', 'all') AS period,
    countIf(type = 'purchase') AS orders,
    sumIf(cents, type = 'purchase') / 100 AS gross_revenue,
    countIf(type = 'refund') AS refunds,
    sumIf(cents, type = 'refund') / 100 AS refunded_amount,
    (sumIf(cents, type = 'purchase') - sumIf(cents, type = 'refund')) / 100 AS revenue,
    uniqExactIf(user_id, type = 'purchase') AS paying_customers,
    if(orders = 0, NULL, revenue / orders) AS average_order_value,
    if(paying_customers = 0, NULL, orders / paying_customers) AS purchase_frequency,
    if(paying_customers = 0, NULL, revenue / paying_customers) AS customer_value,
    toUInt64(arrayCount(n -> n > 1, mapValues(sumMapIf(map(user_id, toUInt64(1)), type = 'purchase'))))
        AS repeat_customers,
    if(paying_customers = 0, NULL, repeat_customers * 100 / paying_customers) AS repeat_purchase_pct
FROM
(
    SELECT user_id, ts, type, any(toInt64(round(JSONExtractFloat(props, 'amount') * 100))) AS cents
    FROM events_by_person
    WHERE type IN ('purchase', 'refund')
    GROUP BY user_id, ts, event_id, type
)
GROUP BY GROUPING SETS ((day), (month), ());

CREATE OR REPLACE VIEW kpi_clv_cohorts AS
SELECT
    cohort,
    count() AS customers,
    sum(purchases) AS orders,
    sum(net_cents) / 100 AS revenue,
    toUInt32(dateDiff('month', cohort, any(last_month)) + 1) AS months_observed,
    if(orders = 0, NULL, revenue / orders) AS average_order_value,
    orders / customers / months_observed AS purchase_frequency,
    revenue / customers / months_observed AS customer_value,
    (SELECT if(sum(customers_lost) = 0, NULL, sum(customers_start) / sum(customers_lost)) FROM kpi_retention_monthly)
        AS lifespan_months,
    customer_value * lifespan_months AS clv
FROM
(
    SELECT
        toStartOfMonth(assumeNotNull(first_purchase_at)) AS cohort,
        purchases,
        net_cents,
        toStartOfMonth(max(last_at) OVER ()) AS last_month
    FROM
    (
        SELECT
            minIf(toNullable(ts), type = 'purchase') AS first_purchase_at,
            countIf(type = 'purchase') AS purchases,
            sumIf(cents, type = 'purchase') - sumIf(cents, type = 'refund') AS net_cents,
            max(ts) AS last_at
        FROM
        (
            SELECT user_id, ts, type, any(toInt64(round(JSONExtractFloat(props, 'amount') * 100))) AS cents
            FROM events_by_person
            WHERE type IN ('purchase', 'refund')
            GROUP BY user_id, ts, event_id, type
        )
        GROUP BY user_id
    )
    WHERE purchases > 0
)
GROUP BY cohort;

CREATE OR REPLACE VIEW kpi_activation_users AS
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
    FROM events_by_person
    WHERE type IN ('page_view', 'signup', 'onboarding_step', 'onboarding_completed', 'trial_started',
                   'subscription_started', 'purchase')
    GROUP BY user_id
);

CREATE OR REPLACE VIEW kpi_feature_adoption_daily AS
SELECT day, feature, feature_users, active_users,
       if(active_users = 0, NULL, feature_users * 100 / active_users) AS feature_adoption_pct
FROM
(
    SELECT toDate(ts) AS day, toString(events_by_person.feature) AS feature, uniqExact(cityHash64(user_id)) AS feature_users
    FROM events_by_person
    WHERE type = 'feature_used'
    GROUP BY day, feature
) AS used
INNER JOIN
(
    SELECT toDate(ts) AS day, uniqExact(cityHash64(user_id)) AS active_users
    FROM events_by_person
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
    GROUP BY day
) AS active USING (day);

CREATE OR REPLACE VIEW kpi_feature_adoption_monthly AS
SELECT month, feature, feature_users, active_users,
       if(active_users = 0, NULL, feature_users * 100 / active_users) AS feature_adoption_pct
FROM
(
    SELECT toStartOfMonth(ts) AS month, toString(events_by_person.feature) AS feature, uniqExact(cityHash64(user_id)) AS feature_users
    FROM events_by_person
    WHERE type = 'feature_used'
    GROUP BY month, feature
) AS used
INNER JOIN
(
    SELECT toStartOfMonth(ts) AS month, uniqExact(cityHash64(user_id)) AS active_users
    FROM events_by_person
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
    GROUP BY month
) AS active USING (month);

CREATE OR REPLACE VIEW kpi_feature_adoption AS
SELECT feature, feature_users, active_users,
       if(active_users = 0, NULL, feature_users * 100 / active_users) AS feature_adoption_pct
FROM
(
    SELECT toString(events_by_person.feature) AS feature, uniqExact(cityHash64(user_id)) AS feature_users
    FROM events_by_person
    WHERE type = 'feature_used'
    GROUP BY feature
) AS used
CROSS JOIN
(
    SELECT uniqExact(cityHash64(user_id)) AS active_users
    FROM events_by_person
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
) AS active;

CREATE OR REPLACE VIEW kpi_experiment_users AS
SELECT
    experiment,
    user_id,
    variant,
    exposed_at,
    variants_seen,
    goal,
    converted_at,
    dateDiff('millisecond', exposed_at, converted_at) / 1000 AS time_to_goal_s,
    toUInt8(converted_at IS NOT NULL) AS converted
FROM
(
    SELECT
        experiment, user_id, variant, exposed_at, variants_seen, goal,
        arrayMap(g -> g.2, arrayFilter(g -> g.1 = goal AND g.2 >= exposed_at, goal_events)) AS goal_times,
        if(empty(goal_times), NULL, toNullable(arrayMin(goal_times))) AS converted_at
    FROM
    (
        SELECT
            experiment, user_id, variant, exposed_at, variants_seen, goal_events,
            argMinIf(named_goal, named_goal_at, named_goal != '') OVER (PARTITION BY experiment) AS first_named_goal,
            if(first_named_goal = '', 'purchase', first_named_goal) AS goal
        FROM
        (
            SELECT
                user_id,
                experiment,
                arrayFilter(e -> e.1 = experiment, exposures) AS mine,
                mine[1].2 AS variant,
                mine[1].3 AS exposed_at,
                length(arrayDistinct(arrayMap(e -> e.2, mine))) AS variants_seen,
                arrayFirst(e -> e.4 != '', mine) AS named,
                named.4 AS named_goal,
                named.3 AS named_goal_at,
                goal_events
            FROM
            (
                SELECT
                    user_id,
                    arraySort(e -> e.3, groupArrayIf((experiment, variant, ts, goal), experiment != '' AND variant != ''))
                        AS exposures,
                    groupArrayIf((toString(type), ts), type IN ('signup', 'onboarding_completed', 'trial_started',
                                 'subscription_started', 'purchase') OR startsWith(type, 'custom.')) AS goal_events
                FROM
                (
                    SELECT
                        user_id, type, ts,
                        if(position(props, '"experiment"') > 0, JSONExtractString(props, 'experiment'), '') AS experiment,
                        if(experiment != '', JSONExtractString(props, 'variant'), '') AS variant,
                        if(experiment != '', JSONExtractString(props, 'goal'), '') AS goal
                    FROM events_by_person
                    WHERE position(props, '"experiment"') > 0
                       OR type IN ('signup', 'onboarding_completed', 'trial_started', 'subscription_started', 'purchase')
                       OR startsWith(type, 'custom.')
                )
                GROUP BY user_id
                HAVING notEmpty(exposures)
            )
            ARRAY JOIN arrayDistinct(arrayMap(e -> e.1, exposures)) AS experiment
        )
    )
);

CREATE OR REPLACE VIEW kpi_signup_abandonment_users AS
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
    FROM events_by_person
    WHERE type IN ('signup_started', 'signup')
    GROUP BY user_id
    HAVING countIf(type = 'signup_started') > 0
) AS starters
CROSS JOIN (SELECT max(ts) AS newest_at FROM events_by_person) AS newest;

CREATE OR REPLACE VIEW kpi_product_adoption_users AS
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
    FROM events_by_person
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
    GROUP BY user_id
)
