-- KPI layer, support family (docs/metrics.md#support): first response and resolution times, reopen,
-- net resolution and one-touch rates, and the backlog, from the ticket_* events (read FINAL: a
-- resent event counts once) grouped by props.ticket_id. kpi_tickets is one row per ticket that was
-- opened: its times in seconds from its opening, and whether it is resolved now (its last
-- ticket_resolved came after its last ticket_reopened). The internal view kpi_support_periods
-- computes the figures once for every UTC day and for all time at once (GROUPING SETS; all_time
-- tells its rows apart); kpi_support_daily and kpi_support are its rows of each period, and are
-- what BI tools should read. kpi_support_daily puts each ticket on the UTC day of each step: opened,
-- first response, and (final) resolution; its backlog is the number of tickets open at the end of
-- the day (opened or reopened and not resolved since: the running sum of the days' changes), and it
-- has a row for every day from the first to the last day with a ticket event. kpi_support covers
-- all time, its backlog being the tickets open now. Rates come with their numerators and
-- denominators and are NULL when the denominator is 0; times are NULL with no ticket to time (and
-- so are kpi_support's time sums, where a day's are 0).
CREATE VIEW IF NOT EXISTS kpi_tickets AS
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
    FROM events FINAL
    WHERE type IN ('ticket_opened', 'ticket_first_response', 'ticket_resolved', 'ticket_reopened')
    GROUP BY ticket_id
    HAVING countIf(type = 'ticket_opened') > 0
);

CREATE VIEW IF NOT EXISTS kpi_support_periods AS
SELECT
    day,
    grouping(day) = 1 AS all_time,
    countIf(step = 'opened') AS tickets_opened,
    countIf(step = 'responded') AS first_responses,
    sumIf(seconds, step = 'responded') AS first_response_s_sum,
    if(first_responses = 0, NULL, first_response_s_sum / first_responses) AS first_response_mean_s,
    if(first_responses = 0, NULL, quantileExactInclusiveIf(0.5)(seconds, step = 'responded')) AS first_response_median_s,
    if(first_responses = 0, NULL, quantileExactInclusiveIf(0.9)(seconds, step = 'responded')) AS first_response_p90_s,
    countIf(step = 'resolved') AS tickets_resolved,
    sumIf(seconds, step = 'resolved') AS resolution_s_sum,
    if(tickets_resolved = 0, NULL, resolution_s_sum / tickets_resolved) AS resolution_mean_s,
    if(tickets_resolved = 0, NULL, quantileExactInclusiveIf(0.5)(seconds, step = 'resolved')) AS resolution_median_s,
    if(tickets_resolved = 0, NULL, quantileExactInclusiveIf(0.9)(seconds, step = 'resolved')) AS resolution_p90_s,
    countIf(step = 'resolved' AND reopened = 1) AS resolved_after_reopen,
    if(tickets_resolved = 0, NULL, resolved_after_reopen * 100 / tickets_resolved) AS reopen_pct,
    if(tickets_resolved = 0, NULL, (tickets_resolved - resolved_after_reopen) * 100 / tickets_resolved) AS net_resolution_pct,
    countIf(step = 'resolved' AND one_touch = 1) AS one_touch_resolutions,
    if(tickets_resolved = 0, NULL, one_touch_resolutions * 100 / tickets_resolved) AS one_touch_pct,
    countIf(step = 'reopen') AS reopens,
    countIf(step = 'opened' AND reopened = 1) AS tickets_reopened,
    countIf(step = 'opened' AND open_now = 1) AS tickets_open_now,
    countIf(step = 'opened' AND awaiting_response = 1) AS awaiting_first_response,
    sum(backlog_change) AS backlog_net_change
FROM
(
    -- Each ticket once, on the day it was opened, with its state now: ever reopened, open, never answered.
    SELECT toDate(opened_at) AS day, 'opened' AS step, 0. AS seconds, toUInt8(reopens > 0) AS reopened,
           toUInt8(0) AS one_touch, toUInt8(resolved = 0) AS open_now,
           toUInt8(resolved = 0 AND first_response_at IS NULL) AS awaiting_response, toInt8(0) AS backlog_change
    FROM kpi_tickets
    UNION ALL
    SELECT toDate(assumeNotNull(first_response_at)), 'responded', assumeNotNull(first_response_s), 0, 0, 0, 0, 0
    FROM kpi_tickets
    WHERE first_response_at IS NOT NULL
    UNION ALL
    SELECT toDate(assumeNotNull(resolved_at)), 'resolved', assumeNotNull(resolution_s), toUInt8(reopens > 0), one_touch, 0, 0, 0
    FROM kpi_tickets
    WHERE resolved_at IS NOT NULL
    UNION ALL
    -- A ticket's events in order: opened or reopened leaves it open, resolved closes it; each change
    -- of state moves the backlog by +1 or -1 on the event's day, and each reopening counts as one.
    SELECT toDate(step_event.1), if(step_event.2 = 'ticket_reopened', 'reopen', 'change'), 0., 0, 0, 0, 0, step_event.3
    FROM
    (
        SELECT arraySort(groupArray((ts, type))) AS steps,
               arrayMap(s -> toInt8(s.2 != 'ticket_resolved'), steps) AS open_after,
               arrayMap((now, before) -> now - before, open_after, arrayPushFront(arrayPopBack(open_after), toInt8(0))) AS changes
        FROM events FINAL
        WHERE type IN ('ticket_opened', 'ticket_resolved', 'ticket_reopened')
        GROUP BY JSONExtractString(props, 'ticket_id')
        HAVING countIf(type = 'ticket_opened') > 0
    )
    ARRAY JOIN arrayZip(arrayMap(s -> s.1, steps), arrayMap(s -> toString(s.2), steps), changes) AS step_event
    WHERE step_event.3 != 0 OR step_event.2 = 'ticket_reopened'
    UNION ALL
    -- Every day from the first to the last with a ticket event, so the backlog has no gaps.
    SELECT first_day + offset, 'day', 0., 0, 0, 0, 0, 0
    FROM
    (
        SELECT min(toDate(ts)) AS first_day, max(toDate(ts)) AS last_day
        FROM events
        WHERE type IN ('ticket_opened', 'ticket_first_response', 'ticket_resolved', 'ticket_reopened')
        HAVING count() > 0
    )
    ARRAY JOIN range(toUInt32(dateDiff('day', first_day, last_day) + 1)) AS offset
)
GROUP BY GROUPING SETS ((day), ());

-- The backlog is a level: a day's is the running sum of the changes up to it.
CREATE VIEW IF NOT EXISTS kpi_support_daily AS
SELECT
    * EXCEPT (all_time, tickets_reopened, tickets_open_now, awaiting_first_response, backlog_net_change),
    toUInt64(sum(backlog_net_change) OVER (ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS backlog
FROM kpi_support_periods
WHERE NOT all_time;

-- Over all time a time sum with no ticket to time is NULL, like the times.
CREATE VIEW IF NOT EXISTS kpi_support AS
SELECT
    * EXCEPT (day, all_time, tickets_open_now, awaiting_first_response, backlog_net_change)
    REPLACE (if(first_responses = 0, NULL, first_response_s_sum) AS first_response_s_sum,
             if(tickets_resolved = 0, NULL, resolution_s_sum) AS resolution_s_sum),
    tickets_open_now AS backlog,
    awaiting_first_response
FROM kpi_support_periods
WHERE all_time
