-- KPI layer, retention family (docs/metrics.md#retention): cohort retention, customer churn and
-- retention rates, customer lifespan, MRR and its movements, MRR churn, net revenue retention, and
-- the users the churn job calls churned. A resent event is a second row with the same (user_id, ts,
-- event_id), the table's sorting key: these views read sets (distinct weeks, distinct subscription
-- events with their event_id), which it cannot change, so they read events without FINAL, which
-- would merge the whole table on each read.
-- kpi_cohort_retention puts each user with a signup in the calendar week (Monday) and month of
-- their first signup and counts, for every week or month since, those with product use in it (the
-- types of pulse.contract.PRODUCT_USE_TYPES, and custom.*), up to the period of the latest product
-- use in the table. A customer is a user with a subscription: their latest subscription_started or
-- subscription_changed is not followed by a subscription_cancelled; their MRR is props.mrr of that
-- event, summed in cents. kpi_mrr_daily gives the subscribers and MRR at the end of each UTC day and
-- the day's gross MRR movements, for every day from the first subscription event to the last
-- subscription or purchase event; kpi_retention_monthly compares each calendar month's customers at
-- its start and at its end; kpi_subscriptions is now. kpi_churned_users and kpi_churn read the
-- latest churn_scores row of each user (FINAL). Rates come with their numerators and denominators
-- and are NULL when the denominator is 0.
CREATE VIEW IF NOT EXISTS kpi_cohort_retention AS
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
            FROM events
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

CREATE VIEW IF NOT EXISTS kpi_mrr_daily AS
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
    -- Each subscription event of a user, in time order (a cancellation last among events of the same
    -- millisecond): whether the user is a customer after it and their MRR then, against before it.
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
        FROM events
        WHERE type IN ('subscription_started', 'subscription_changed', 'subscription_cancelled')
        GROUP BY user_id
    )
    ARRAY JOIN arrayZip(arrayMap(c -> c.1, changes), active_after, active_before, mrr_after, mrr_before) AS step
    UNION ALL
    -- Every day from the first subscription event to the last subscription or purchase event.
    SELECT first_day + offset, 0, 0, 0, 0, 0, 0
    FROM
    (
        SELECT minIf(toDate(ts), type != 'purchase') AS first_day, max(toDate(ts)) AS last_day
        FROM events
        WHERE type IN ('subscription_started', 'subscription_changed', 'subscription_cancelled', 'purchase')
        HAVING countIf(type != 'purchase') > 0
    )
    ARRAY JOIN range(toUInt32(dateDiff('day', first_day, last_day) + 1)) AS offset
)
GROUP BY day
WINDOW by_day AS (ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

CREATE VIEW IF NOT EXISTS kpi_retention_monthly AS
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
                FROM events
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

CREATE VIEW IF NOT EXISTS kpi_subscriptions AS
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
    FROM events
    WHERE type IN ('subscription_started', 'subscription_changed', 'subscription_cancelled')
    GROUP BY user_id
);

CREATE VIEW IF NOT EXISTS kpi_churned_users AS
SELECT
    user_id,
    ts AS churned_at,
    if(reasons[1] = 'subscription cancelled', 'cancelled', 'inactive') AS cause,
    reasons
FROM (SELECT user_id, tier, ts, reasons FROM churn_scores FINAL)
WHERE tier = 'churned';

CREATE VIEW IF NOT EXISTS kpi_churn AS
SELECT
    count() AS scored_users,
    countIf(tier = 'churned') AS churned_users,
    countIf(tier = 'churned' AND reasons[1] = 'subscription cancelled') AS churned_cancelled,
    countIf(tier = 'churned' AND reasons[1] != 'subscription cancelled') AS churned_inactive,
    if(scored_users = 0, NULL, churned_users * 100 / scored_users) AS churned_pct
FROM (SELECT user_id, tier, reasons FROM churn_scores FINAL)
