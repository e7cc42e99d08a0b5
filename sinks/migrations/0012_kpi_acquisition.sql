-- KPI layer, acquisition family (docs/metrics.md#acquisition): traffic by source, ad and email
-- engagement (impressions, clicks, CTR, opens), marketing spend, conversions and revenue attributed
-- to sources (first touch, last touch, linear), CAC, historical CLV:CAC and campaign ROI. Sources are
-- read FINAL (a resent event counts once; sessions also WHERE deleted = 0, a merged session's
-- retracted id). A session's source, medium and campaign are its utm_* tags; without utm_source a
-- referrer's host is the source with medium 'referral', and without either it is '(direct)' /
-- '(none)'. A visit is a session with a page view. A user's conversions are their first signup
-- ('signup'), first subscription_started ('subscription') and first purchase ('customer', the new
-- paying customer); a conversion's touches are the user's visits that started at or before it, and
-- its revenue is the user's net revenue to date (purchases minus refunds). Money is summed in cents.
-- Each rate comes with its numerator and denominator and is NULL when the denominator is 0.
-- Figures asked for at two grains are written once, in an internal view that gives every grain at
-- once by GROUPING SETS: kpi_traffic_periods, kpi_campaign_engagement_periods, kpi_attribution_periods
-- and kpi_acquisition_periods (per day, and all time: all_time = 1) and kpi_channel_returns (per
-- channel and campaign, and per channel: all_campaigns = 1). The public views (kpi_traffic_daily and
-- kpi_traffic, ..., kpi_campaign_roi and kpi_cac) are filters over them; BI tools should read those.
CREATE VIEW IF NOT EXISTS kpi_session_sources AS
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
FROM sessions FINAL
WHERE deleted = 0;

CREATE VIEW IF NOT EXISTS kpi_traffic_periods AS
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

CREATE VIEW IF NOT EXISTS kpi_traffic_daily AS
SELECT * EXCEPT (all_time) FROM kpi_traffic_periods WHERE NOT all_time;

CREATE VIEW IF NOT EXISTS kpi_traffic AS
SELECT * EXCEPT (day, all_time) FROM kpi_traffic_periods WHERE all_time;

CREATE VIEW IF NOT EXISTS kpi_campaign_engagement_periods AS
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
        coalesce(nullIf(JSONExtractString(context, 'utm_source'), ''), '(none)') AS source,
        coalesce(nullIf(JSONExtractString(context, 'utm_medium'), ''), '(none)') AS medium,
        JSONExtractString(props, 'campaign') AS campaign
    FROM events FINAL
    WHERE type IN ('ad_impression', 'ad_click', 'email_sent', 'email_opened', 'email_clicked')
)
GROUP BY GROUPING SETS ((day, source, medium, campaign), (source, medium, campaign));

CREATE VIEW IF NOT EXISTS kpi_campaign_engagement_daily AS
SELECT * EXCEPT (all_time) FROM kpi_campaign_engagement_periods WHERE NOT all_time;

CREATE VIEW IF NOT EXISTS kpi_campaign_engagement AS
SELECT * EXCEPT (day, all_time) FROM kpi_campaign_engagement_periods WHERE all_time;

CREATE VIEW IF NOT EXISTS kpi_marketing_spend_daily AS
SELECT
    toDate(ts) AS day,
    JSONExtractString(props, 'channel') AS channel,
    coalesce(nullIf(JSONExtractString(props, 'campaign'), ''), '(none)') AS campaign,
    count() AS spend_entries,
    sum(toInt64(round(JSONExtractFloat(props, 'amount') * 100))) / 100 AS spend
FROM events FINAL
WHERE type = 'marketing_spend'
GROUP BY day, channel, campaign;

CREATE VIEW IF NOT EXISTS kpi_conversions AS
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
               if(type IN ('purchase', 'refund'), toInt64(round(JSONExtractFloat(props, 'amount') * 100)), 0) AS cents
        FROM events FINAL
        WHERE type IN ('signup', 'subscription_started', 'purchase', 'refund')
    )
    GROUP BY user_id
    HAVING signup_at IS NOT NULL OR subscription_at IS NOT NULL OR customer_at IS NOT NULL
)
ARRAY JOIN [('signup', signup_at), ('subscription', subscription_at), ('customer', customer_at)] AS step
WHERE step.2 IS NOT NULL;

CREATE VIEW IF NOT EXISTS kpi_attribution_periods AS
SELECT
    day,
    grouping(day) = 1 AS all_time,
    model,
    conversion,
    credit.1 AS source,
    credit.2 AS medium,
    credit.3 AS campaign,
    sum(credit.4) AS conversions,
    sum(credit.4 * user_revenue) AS revenue
FROM
(
    SELECT
        day,
        conversion,
        revenue AS user_revenue,
        if(touches = 0, [('(no visit)', '(none)', '(none)')], touch_path) AS path,
        model,
        multiIf(model = 'first_touch', [(path[1].1, path[1].2, path[1].3, 1.)],
                model = 'last_touch', [(path[-1].1, path[-1].2, path[-1].3, 1.)],
                arrayMap(p -> (p.1, p.2, p.3, 1 / length(path)), path)) AS credits
    FROM kpi_conversions
    ARRAY JOIN ['first_touch', 'last_touch', 'linear'] AS model
)
ARRAY JOIN credits AS credit
GROUP BY GROUPING SETS ((day, model, conversion, source, medium, campaign), (model, conversion, source, medium, campaign));

CREATE VIEW IF NOT EXISTS kpi_attribution_daily AS
SELECT * EXCEPT (all_time) FROM kpi_attribution_periods WHERE NOT all_time;

CREATE VIEW IF NOT EXISTS kpi_attribution AS
SELECT * EXCEPT (day, all_time) FROM kpi_attribution_periods WHERE all_time;

CREATE VIEW IF NOT EXISTS kpi_channel_returns AS
SELECT
    model,
    channel,
    campaign,
    grouping(campaign) = 1 AS all_campaigns,
    sum(spend_part) AS spend,
    sum(signup_part) AS signups,
    if(signups = 0, NULL, spend / signups) AS cost_per_signup,
    sum(customer_part) AS new_customers,
    if(new_customers = 0, NULL, spend / new_customers) AS cac,
    sum(revenue_part) AS revenue,
    if(new_customers = 0, NULL, revenue / new_customers) AS clv,
    if(spend = 0 OR new_customers = 0, NULL, clv / cac) AS clv_cac_ratio,
    if(spend = 0, NULL, (revenue - spend) * 100 / spend) AS roi_pct
FROM
(
    SELECT model, source AS channel, campaign, 0. AS spend_part,
           if(conversion = 'signup', conversions, 0.) AS signup_part,
           if(conversion = 'customer', conversions, 0.) AS customer_part,
           if(conversion = 'customer', revenue, 0.) AS revenue_part
    FROM kpi_attribution
    WHERE conversion IN ('signup', 'customer')
    UNION ALL
    SELECT model, channel, campaign, spend_part, 0. AS signup_part, 0. AS customer_part, 0. AS revenue_part
    FROM
    (
        SELECT channel, campaign, sum(toInt64(round(spend * 100))) / 100 AS spend_part
        FROM kpi_marketing_spend_daily
        GROUP BY channel, campaign
    )
    ARRAY JOIN ['first_touch', 'last_touch', 'linear'] AS model
)
GROUP BY GROUPING SETS ((model, channel, campaign), (model, channel));

CREATE VIEW IF NOT EXISTS kpi_campaign_roi AS
SELECT * EXCEPT (all_campaigns) FROM kpi_channel_returns WHERE NOT all_campaigns;

CREATE VIEW IF NOT EXISTS kpi_cac AS
SELECT * EXCEPT (campaign, all_campaigns) FROM kpi_channel_returns WHERE all_campaigns;

CREATE VIEW IF NOT EXISTS kpi_acquisition_periods AS
SELECT
    day,
    grouping(day) = 1 AS all_time,
    countIf(part = 'visit') AS visits,
    uniqExactIf(user_id, part = 'visit') AS visitors,
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
           if(type = 'refund', -1, 1) * toInt64(round(JSONExtractFloat(props, 'amount') * 100)) AS cents
    FROM events FINAL
    WHERE type IN ('purchase', 'refund')
    UNION ALL
    SELECT day, conversion AS part, user_id, toInt64(0) AS cents FROM kpi_conversions
    UNION ALL
    SELECT day, 'spend' AS part, '' AS user_id, toInt64(round(spend * 100)) AS cents FROM kpi_marketing_spend_daily
)
GROUP BY GROUPING SETS ((day), ());

CREATE VIEW IF NOT EXISTS kpi_acquisition_daily AS
SELECT * EXCEPT (all_time, clv, clv_cac_ratio, roi_pct) FROM kpi_acquisition_periods WHERE NOT all_time;

CREATE VIEW IF NOT EXISTS kpi_acquisition AS
SELECT * EXCEPT (day, all_time) FROM kpi_acquisition_periods WHERE all_time
