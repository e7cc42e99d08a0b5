-- KPI layer, satisfaction family (docs/metrics.md#satisfaction): NPS, CSAT, CES and the support
-- CSAT response rate, from survey_response events (read FINAL: a resent answer counts once).
-- kpi_survey_responses is one row per answer, its score placed on its scale (NPS 0-10; CSAT 1-5 and
-- CES 1-7 unless props.scale_min/scale_max say otherwise, as the contract has it), with its NPS
-- bucket and whether a CSAT answer is "satisfied" (the top two points of its scale: 4-5 of 1-5).
-- The internal view kpi_satisfaction_periods computes the figures once for every UTC day the
-- answers were given and for all time at once (GROUPING SETS; all_time tells its rows apart);
-- kpi_satisfaction_daily and kpi_satisfaction are its rows of each period, and are what BI tools
-- should read. Each rate comes with its numerator and denominator, so a BI tool filtering by day
-- sums those and divides again; a rate is NULL when its denominator is 0.
CREATE VIEW IF NOT EXISTS kpi_survey_responses AS
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
    FROM events FINAL
    WHERE type = 'survey_response'
);

CREATE VIEW IF NOT EXISTS kpi_satisfaction_periods AS
SELECT
    day,
    grouping(day) = 1 AS all_time,
    countIf(kind = 'nps') AS nps_responses,
    countIf(nps_bucket = 'promoter') AS nps_promoters,
    countIf(nps_bucket = 'passive') AS nps_passives,
    countIf(nps_bucket = 'detractor') AS nps_detractors,
    if(nps_responses = 0, NULL, (toInt64(nps_promoters) - toInt64(nps_detractors)) * 100 / nps_responses) AS nps,
    countIf(kind = 'csat') AS csat_responses,
    countIf(kind = 'csat' AND satisfied = 1) AS csat_satisfied,
    if(csat_responses = 0, NULL, csat_satisfied * 100 / csat_responses) AS csat_pct,
    sumIf(score, kind = 'csat') AS csat_score_sum,
    if(csat_responses = 0, NULL, csat_score_sum / csat_responses) AS csat_mean_score,
    countIf(kind = 'csat' AND ticket_id != '') AS support_csat_responses,
    countIf(kind = 'csat' AND ticket_id != '' AND satisfied = 1) AS support_csat_satisfied,
    if(support_csat_responses = 0, NULL, support_csat_satisfied * 100 / support_csat_responses) AS support_csat_pct,
    countIf(kind = 'ces') AS ces_responses,
    sumIf(score, kind = 'ces') AS ces_score_sum,
    if(ces_responses = 0, NULL, ces_score_sum / ces_responses) AS ces_mean_score,
    countIf(kind = 'resolution') AS ticket_resolutions,
    if(ticket_resolutions = 0, NULL, support_csat_responses * 100 / ticket_resolutions) AS support_csat_response_pct
FROM
(
    SELECT day, kind, score, ticket_id, nps_bucket, satisfied FROM kpi_survey_responses
    UNION ALL
    SELECT toDate(ts) AS day, 'resolution' AS kind, 0. AS score, '' AS ticket_id, '' AS nps_bucket, toUInt8(0) AS satisfied
    FROM events FINAL
    WHERE type = 'ticket_resolved'
)
GROUP BY GROUPING SETS ((day), ());

CREATE VIEW IF NOT EXISTS kpi_satisfaction_daily AS
SELECT * EXCEPT (all_time) FROM kpi_satisfaction_periods WHERE NOT all_time;

CREATE VIEW IF NOT EXISTS kpi_satisfaction AS
SELECT * EXCEPT (day, all_time) FROM kpi_satisfaction_periods WHERE all_time
