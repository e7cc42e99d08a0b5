-- KPI layer, experiments family (docs/metrics.md#experiments): A/B tests, conversion by variant with a
-- two-proportion z-test against the control. An exposure is any event whose props carry a non-empty
-- `experiment` and `variant` (a user is in the variant of its first exposure to that experiment);
-- an experiment's goal is the event type named by props.goal on its earliest exposure that names one,
-- else `purchase`, and must be signup, onboarding_completed, trial_started, subscription_started,
-- purchase or a custom.* type. A user converts with a goal event at or after its first exposure.
-- kpi_experiment_users is one row per experiment and exposed user; kpi_experiments one row per
-- experiment and variant: users exposed and converted, the conversion rate, the control's figures
-- (the variant named 'control', else the first variant in alphabetical order), the z score of the
-- difference with the pooled standard error, and its two-sided p-value erfc(|z| / sqrt(2)), which
-- is 1 - erf(|z| / sqrt(2)) without the rounding loss for small p. First times and distinct users
-- do not change with a resent event, so the views read without FINAL. Rates are NULL when their
-- denominator is 0; z and p are NULL for the control and when the pooled rate is 0% or 100%.
CREATE VIEW IF NOT EXISTS kpi_experiment_users AS
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
                    FROM events
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

CREATE VIEW IF NOT EXISTS kpi_experiments AS
SELECT
    experiment,
    variant,
    goal,
    control_variant,
    toUInt8(variant = control_variant) AS is_control,
    exposed_users,
    converted_users,
    if(exposed_users = 0, NULL, converted_users * 100 / exposed_users) AS conversion_pct,
    control_exposed_users,
    control_converted_users,
    if(control_exposed_users = 0, NULL, control_converted_users * 100 / control_exposed_users) AS control_conversion_pct,
    if(is_control = 1 OR control_converted_users = 0, NULL,
       (conversion_pct - control_conversion_pct) * 100 / control_conversion_pct) AS lift_pct,
    (converted_users + control_converted_users) / (exposed_users + control_exposed_users) AS pooled_rate,
    pooled_rate * (1 - pooled_rate) * (1 / exposed_users + 1 / control_exposed_users) AS pooled_variance,
    if(is_control = 1 OR pooled_variance <= 0, NULL,
       (converted_users / exposed_users - control_converted_users / control_exposed_users) / sqrt(pooled_variance)) AS z_score,
    if(z_score IS NULL, NULL, erfc(abs(z_score) / sqrt(2))) AS p_value,
    multi_variant_users
FROM
(
    SELECT
        experiment,
        variant,
        goal,
        exposed_users,
        converted_users,
        multi_variant_users,
        first_value(variant) OVER by_control AS control_variant,
        first_value(exposed_users) OVER by_control AS control_exposed_users,
        first_value(converted_users) OVER by_control AS control_converted_users
    FROM
    (
        SELECT experiment, variant, any(goal) AS goal, count() AS exposed_users, sum(converted) AS converted_users,
               countIf(variants_seen > 1) AS multi_variant_users
        FROM kpi_experiment_users
        GROUP BY experiment, variant
    )
    WINDOW by_control AS (PARTITION BY experiment ORDER BY lower(variant) != 'control', variant
                          ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
