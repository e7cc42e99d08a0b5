-- KPI layer, revenue family (docs/metrics.md#revenue): revenue net of refunds, average order value,
-- purchase frequency, customer value, repeat purchase rate and historical CLV, from purchase and
-- refund events. A resent event is a second row with the same (user_id, ts, event_id), the table's
-- sorting key: the views fold those by grouping on it, which reads only these event types, where
-- FINAL would merge the whole table on each read. Amounts are summed in cents (props.amount
-- rounded to the cent), in the one currency the amounts are in. An order is a purchase event; a
-- refund counts on the day it is made, so a past day's figures never change, and revenue is the
-- purchases minus the refunds. A paying customer of a period is a user with a purchase in it.
-- kpi_orders is one row per props.order_id with a purchase, its refunds netted. The internal view
-- kpi_revenue_periods computes the figures once for every UTC day, every calendar month and all
-- time at once (GROUPING SETS; its period column is 'day', 'month' or 'all'); kpi_revenue_daily,
-- kpi_revenue_monthly and kpi_revenue are its rows of each period, and are what BI tools should read.
-- kpi_clv_cohorts gives each cohort of customers (the month of their first purchase) its average
-- order value, purchases per customer per month observed, and the CLV: their product times the
-- customer lifespan of kpi_retention_monthly (migration 0013). Ratios are NULL when their
-- denominator is 0.
CREATE VIEW IF NOT EXISTS kpi_orders AS
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
        FROM events
        WHERE type IN ('purchase', 'refund')
        GROUP BY user_id, ts, event_id, type
    )
    GROUP BY order_id
    HAVING countIf(type = 'purchase') > 0
);

CREATE VIEW IF NOT EXISTS kpi_revenue_periods AS
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
    -- The customers with more than one purchase in the period: each one's purchases, counted by user.
    toUInt64(arrayCount(n -> n > 1, mapValues(sumMapIf(map(user_id, toUInt64(1)), type = 'purchase'))))
        AS repeat_customers,
    if(paying_customers = 0, NULL, repeat_customers * 100 / paying_customers) AS repeat_purchase_pct
FROM
(
    SELECT user_id, ts, type, any(toInt64(round(JSONExtractFloat(props, 'amount') * 100))) AS cents
    FROM events
    WHERE type IN ('purchase', 'refund')
    GROUP BY user_id, ts, event_id, type
)
GROUP BY GROUPING SETS ((day), (month), ());

CREATE VIEW IF NOT EXISTS kpi_revenue_daily AS
SELECT * EXCEPT (month, period, repeat_customers, repeat_purchase_pct) FROM kpi_revenue_periods WHERE period = 'day';

CREATE VIEW IF NOT EXISTS kpi_revenue_monthly AS
SELECT * EXCEPT (day, period) FROM kpi_revenue_periods WHERE period = 'month';

CREATE VIEW IF NOT EXISTS kpi_revenue AS
SELECT * EXCEPT (day, month, period) FROM kpi_revenue_periods WHERE period = 'all';

CREATE VIEW IF NOT EXISTS kpi_clv_cohorts AS
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
            FROM events
            WHERE type IN ('purchase', 'refund')
            GROUP BY user_id, ts, event_id, type
        )
        GROUP BY user_id
    )
    WHERE purchases > 0
)
GROUP BY cohort
