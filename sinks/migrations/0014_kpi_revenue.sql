-- KPI layer, revenue family (docs/metrics.md#revenue): revenue net of refunds, average order value,
-- purchase frequency, customer value, repeat purchase rate and historical CLV, from purchase and
-- refund events. A resent event is a second row with the same (user_id, ts, event_id), the table's
-- sorting key: the views fold those by grouping on it, which reads only these event types, where
-- FINAL would merge the whole table on each read. Amounts are summed in cents (props.amount
-- rounded to the cent), in the one currency the amounts are in. An order is a purchase event; a
-- refund counts on the day it is made, so a past day's figures never change, and revenue is the
-- purchases minus the refunds. A paying customer of a period is a user with a purchase in it.
-- kpi_orders is one row per props.order_id with a purchase, its refunds netted. kpi_revenue_daily
-- and kpi_revenue_monthly group by UTC day and calendar month, kpi_revenue covers all time.
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

CREATE VIEW IF NOT EXISTS kpi_revenue_daily AS
SELECT
    toDate(ts) AS day,
    countIf(type = 'purchase') AS orders,
    sumIf(cents, type = 'purchase') / 100 AS gross_revenue,
    countIf(type = 'refund') AS refunds,
    sumIf(cents, type = 'refund') / 100 AS refunded_amount,
    (sumIf(cents, type = 'purchase') - sumIf(cents, type = 'refund')) / 100 AS revenue,
    uniqExactIf(user_id, type = 'purchase') AS paying_customers,
    if(orders = 0, NULL, revenue / orders) AS average_order_value,
    if(paying_customers = 0, NULL, orders / paying_customers) AS purchase_frequency,
    if(paying_customers = 0, NULL, revenue / paying_customers) AS customer_value
FROM
(
    SELECT user_id, ts, type, any(toInt64(round(JSONExtractFloat(props, 'amount') * 100))) AS cents
    FROM events
    WHERE type IN ('purchase', 'refund')
    GROUP BY user_id, ts, event_id, type
)
GROUP BY day;

CREATE VIEW IF NOT EXISTS kpi_revenue_monthly AS
SELECT
    month,
    sum(purchases) AS orders,
    sum(purchase_cents) / 100 AS gross_revenue,
    sum(user_refunds) AS refunds,
    sum(refund_cents) / 100 AS refunded_amount,
    (sum(purchase_cents) - sum(refund_cents)) / 100 AS revenue,
    countIf(purchases > 0) AS paying_customers,
    if(orders = 0, NULL, revenue / orders) AS average_order_value,
    if(paying_customers = 0, NULL, orders / paying_customers) AS purchase_frequency,
    if(paying_customers = 0, NULL, revenue / paying_customers) AS customer_value,
    countIf(purchases > 1) AS repeat_customers,
    if(paying_customers = 0, NULL, repeat_customers * 100 / paying_customers) AS repeat_purchase_pct
FROM
(
    SELECT
        toStartOfMonth(ts) AS month,
        countIf(type = 'purchase') AS purchases,
        sumIf(cents, type = 'purchase') AS purchase_cents,
        countIf(type = 'refund') AS user_refunds,
        sumIf(cents, type = 'refund') AS refund_cents
    FROM
    (
        SELECT user_id, ts, type, any(toInt64(round(JSONExtractFloat(props, 'amount') * 100))) AS cents
        FROM events
        WHERE type IN ('purchase', 'refund')
        GROUP BY user_id, ts, event_id, type
    )
    GROUP BY month, user_id
)
GROUP BY month;

CREATE VIEW IF NOT EXISTS kpi_revenue AS
SELECT
    sum(purchases) AS orders,
    sum(purchase_cents) / 100 AS gross_revenue,
    sum(user_refunds) AS refunds,
    sum(refund_cents) / 100 AS refunded_amount,
    (sum(purchase_cents) - sum(refund_cents)) / 100 AS revenue,
    countIf(purchases > 0) AS paying_customers,
    if(orders = 0, NULL, revenue / orders) AS average_order_value,
    if(paying_customers = 0, NULL, orders / paying_customers) AS purchase_frequency,
    if(paying_customers = 0, NULL, revenue / paying_customers) AS customer_value,
    countIf(purchases > 1) AS repeat_customers,
    if(paying_customers = 0, NULL, repeat_customers * 100 / paying_customers) AS repeat_purchase_pct
FROM
(
    SELECT
        countIf(type = 'purchase') AS purchases,
        sumIf(cents, type = 'purchase') AS purchase_cents,
        countIf(type = 'refund') AS user_refunds,
        sumIf(cents, type = 'refund') AS refund_cents
    FROM
    (
        SELECT user_id, ts, type, any(toInt64(round(JSONExtractFloat(props, 'amount') * 100))) AS cents
        FROM events
        WHERE type IN ('purchase', 'refund')
        GROUP BY user_id, ts, event_id, type
    )
    GROUP BY user_id
);

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
