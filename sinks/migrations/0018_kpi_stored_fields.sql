-- KPI layer, speed (docs/metrics.md#how-the-views-stay-fast): the props and context fields the
-- slowest views group or sum by, stored as columns of events, and those views reading them.
-- `pulse bench-views` showed where the time went on 10 million events: events is sorted by user, so
-- the rows of one type lie in every granule, and a view reading one field of props or context
-- decompressed the whole column and parsed every row's JSON; and counting distinct user ids as
-- strings cost several times more than the scan. So:
-- * MATERIALIZED columns, computed by ClickHouse on insert (the sink and every other writer insert
--   named columns and need not know them; SELECT * leaves them out, so BI tools see events as
--   before): feature (props.feature of feature_used), utm_source and utm_medium (context), campaign
--   (props.campaign of ad, email and marketing spend events) and amount (props.amount of purchases,
--   refunds, failed payments and marketing spend; 0 for other types). MATERIALIZE COLUMN computes
--   them for the rows stored before this migration (a mutation, once).
-- * Distinct users are counted as uniqExact(cityHash64(user_id)): exact unless two ids collide in
--   64 bits, which takes billions of users to become likely.
-- The views keep their names, columns and values (tests/unit/test_kpi_*.py pin them); only how they
-- compute changes.
ALTER TABLE events ADD COLUMN IF NOT EXISTS feature LowCardinality(String)
    MATERIALIZED if(type = 'feature_used', JSONExtractString(props, 'feature'), '');

ALTER TABLE events ADD COLUMN IF NOT EXISTS utm_source LowCardinality(String)
    MATERIALIZED JSONExtractString(context, 'utm_source');

ALTER TABLE events ADD COLUMN IF NOT EXISTS utm_medium LowCardinality(String)
    MATERIALIZED JSONExtractString(context, 'utm_medium');

ALTER TABLE events ADD COLUMN IF NOT EXISTS campaign LowCardinality(String)
    MATERIALIZED if(type IN ('ad_impression', 'ad_click', 'email_sent', 'email_opened', 'email_clicked', 'marketing_spend'),
                    JSONExtractString(props, 'campaign'), '');

ALTER TABLE events ADD COLUMN IF NOT EXISTS amount Float64
    MATERIALIZED if(type IN ('purchase', 'refund', 'payment_failed', 'marketing_spend'), JSONExtractFloat(props, 'amount'), 0);

ALTER TABLE events MATERIALIZE COLUMN feature;

ALTER TABLE events MATERIALIZE COLUMN utm_source;

ALTER TABLE events MATERIALIZE COLUMN utm_medium;

ALTER TABLE events MATERIALIZE COLUMN campaign;

ALTER TABLE events MATERIALIZE COLUMN amount;

CREATE OR REPLACE VIEW kpi_feature_adoption_daily AS
SELECT day, feature, feature_users, active_users,
       if(active_users = 0, NULL, feature_users * 100 / active_users) AS feature_adoption_pct
FROM
(
    SELECT toDate(ts) AS day, toString(events.feature) AS feature, uniqExact(cityHash64(user_id)) AS feature_users
    FROM events
    WHERE type = 'feature_used'
    GROUP BY day, feature
) AS used
INNER JOIN
(
    SELECT toDate(ts) AS day, uniqExact(cityHash64(user_id)) AS active_users
    FROM events
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
    SELECT toStartOfMonth(ts) AS month, toString(events.feature) AS feature, uniqExact(cityHash64(user_id)) AS feature_users
    FROM events
    WHERE type = 'feature_used'
    GROUP BY month, feature
) AS used
INNER JOIN
(
    SELECT toStartOfMonth(ts) AS month, uniqExact(cityHash64(user_id)) AS active_users
    FROM events
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
    SELECT toString(events.feature) AS feature, uniqExact(cityHash64(user_id)) AS feature_users
    FROM events
    WHERE type = 'feature_used'
    GROUP BY feature
) AS used
CROSS JOIN
(
    SELECT uniqExact(cityHash64(user_id)) AS active_users
    FROM events
    WHERE type IN ('page_view', 'signup', 'login', 'onboarding_step', 'onboarding_completed', 'feature_used',
                   'trial_started', 'subscription_started', 'subscription_changed', 'purchase')
       OR startsWith(type, 'custom.')
) AS active;

CREATE OR REPLACE VIEW kpi_campaign_engagement_periods AS
SELECT
    day,
    grouping(day) = 1 AS all_time,
    source,
    medium,
    campaign,
    countIf(type = 'ad_impression') AS ad_impressions,
    countIf(type = 'ad_click') AS ad_clicks,
    if(ad_impressions = 0, NULL, ad_clicks * 100 / ad_impressions) AS ad_ctr_pct,
    countIf(type = 'email_sent') AS emails_sent,
    countIf(type = 'email_opened') AS emails_opened,
    countIf(type = 'email_clicked') AS emails_clicked,
    if(emails_sent = 0, NULL, emails_opened * 100 / emails_sent) AS email_open_pct,
    if(emails_sent = 0, NULL, emails_clicked * 100 / emails_sent) AS email_click_pct,
    if(emails_opened = 0, NULL, emails_clicked * 100 / emails_opened) AS email_click_to_open_pct
FROM
(
    SELECT
        toDate(ts) AS day,
        type,
        if(utm_source = '', '(none)', toString(utm_source)) AS source,
        if(utm_medium = '', '(none)', toString(utm_medium)) AS medium,
        toString(events.campaign) AS campaign
    FROM events FINAL
    WHERE type IN ('ad_impression', 'ad_click', 'email_sent', 'email_opened', 'email_clicked')
)
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
        FROM events FINAL
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
    FROM events FINAL
    WHERE type IN ('purchase', 'refund')
    UNION ALL
    SELECT day, conversion AS part, user_id, toInt64(0) AS cents FROM kpi_conversions
    UNION ALL
    SELECT day, 'spend' AS part, '' AS user_id, toInt64(round(spend * 100)) AS cents FROM kpi_marketing_spend_daily
)
GROUP BY GROUPING SETS ((day), ());
