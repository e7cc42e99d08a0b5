"""``pulse report``: the KPIs of a period, read from the ``kpi_*`` views, as one JSON-able dict.

Every figure of a period comes from the daily views by the rule of docs/metrics.md ("Column
conventions"): the parts of the ``*_daily`` rows of the period are summed and divided again, never
a mean of daily rates. Medians are taken over the period's rows of ``kpi_tickets``. Churn tiers and
churned users are the latest churn score of each user (``churn_scores FINAL``), so "now", not the
period. The period is ``[start, end]`` in UTC days; by default the 30 days up to the newest event.

:func:`build_report` takes ``query``, a function from SQL to :class:`ops.reader.QueryResult`, so
the CLI passes the configured ClickHouse (``lambda sql: run_query(settings, sql)``) and the tests an
embedded engine. :func:`format_table` renders the dict for a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from ops.reader import QueryResult

Query = Callable[[str], QueryResult]

DEFAULT_DAYS = 30
TIERS = ("low", "medium", "high", "churned")

NEWEST_DAY = "SELECT toDate(max(ts)) AS day, count() AS events FROM events"

# Each section: one query over the period, {start} and {end} quoted ISO dates.
ACQUISITION = """
SELECT sum(visits) AS visits, sum(signups) AS signups, sum(new_customers) AS new_customers, sum(spend) AS spend
FROM kpi_acquisition_daily WHERE day BETWEEN {start} AND {end}"""

ACTIVATION = """
SELECT sum(signups) AS signups, sum(onboarded) AS onboarded, sum(trials) AS trials,
       sum(trial_conversions) AS trial_conversions
FROM kpi_activation_daily WHERE day BETWEEN {start} AND {end}"""

# Cohorts of the period's days: the signup starters, the users first seen.
SIGNUP_ABANDONMENT = """
SELECT sum(signup_abandoned) AS signup_abandoned, sum(signup_settled) AS signup_settled
FROM kpi_signup_abandonment_daily WHERE day BETWEEN {start} AND {end}"""

PRODUCT_ADOPTION = """
SELECT sum(users) AS users, sum(repeat_users) AS repeat_users, sum(intended_use_users) AS intended_use_users
FROM kpi_product_adoption_daily WHERE day BETWEEN {start} AND {end}"""

ENGAGEMENT = """
SELECT avg(dau) AS dau_avg, argMax(mau, day) AS mau, sum(visits) AS visits, sum(bounces) AS bounces
FROM kpi_engagement_daily WHERE day BETWEEN {start} AND {end}"""

REVENUE = """
SELECT sum(revenue) AS revenue, sum(gross_revenue) AS gross_revenue, sum(orders) AS orders
FROM kpi_revenue_daily WHERE day BETWEEN {start} AND {end}"""

CHURNED_IN_PERIOD = """
SELECT count() AS churned_users FROM kpi_churned_users WHERE toDate(churned_at) BETWEEN {start} AND {end}"""

SATISFACTION = """
SELECT sum(nps_responses) AS nps_responses, sum(nps_promoters) AS nps_promoters,
       sum(nps_detractors) AS nps_detractors, sum(csat_responses) AS csat_responses,
       sum(csat_satisfied) AS csat_satisfied, sum(ces_responses) AS ces_responses, sum(ces_score_sum) AS ces_score_sum
FROM kpi_satisfaction_daily WHERE day BETWEEN {start} AND {end}"""

SUPPORT = """
SELECT sum(tickets_opened) AS tickets_opened, sum(tickets_resolved) AS tickets_resolved
FROM kpi_support_daily WHERE day BETWEEN {start} AND {end}"""

FIRST_RESPONSE_MEDIAN = """
SELECT quantileExactInclusiveIf(0.5)(first_response_s, first_response_s IS NOT NULL) AS median_s,
       countIf(first_response_s IS NOT NULL) AS responses
FROM kpi_tickets WHERE toDate(opened_at) BETWEEN {start} AND {end}"""

# Chart series.
DAILY_ACTIVES = """
SELECT day, dau FROM kpi_engagement_daily WHERE day BETWEEN {start} AND {end} ORDER BY day"""

NPS_TREND = """
SELECT day, nps, nps_responses FROM kpi_satisfaction_daily
WHERE day BETWEEN {start} AND {end} AND nps_responses > 0 ORDER BY day"""

# Attempts that entered the funnel (step 1) in the period, each user once per step (as funnel_daily
# counts a day, over the whole period: summing funnel_daily's days would count a user once per day).
FUNNELS = """
SELECT funnel, step_index, any(step_name) AS step, uniqExact(user_id) AS users
FROM funnel_steps FINAL
WHERE toDate(ts - toIntervalMillisecond(toInt64(round(since_entry_s * 1000)))) BETWEEN {start} AND {end}
GROUP BY funnel, step_index ORDER BY funnel, step_index"""

RETENTION_COHORTS = """
SELECT cohort, periods_since_signup AS period, retention_pct AS pct, cohort_users
FROM kpi_cohort_retention
WHERE period_kind = 'week' AND cohort BETWEEN toMonday({start}) AND {end} AND period_start <= {end}
ORDER BY cohort, period"""

CHURN_TIERS = "SELECT tier, count() AS users FROM churn_scores FINAL GROUP BY tier"


def _rows(query: Query, sql: str, start: date, end: date) -> list[dict[str, Any]]:
    result = query(sql.format(start=f"toDate('{start.isoformat()}')", end=f"toDate('{end.isoformat()}')"))
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def _one(query: Query, sql: str, start: date, end: date) -> dict[str, Any]:
    [row] = _rows(query, sql, start, end)
    return row


def _num(value: Any) -> float:
    """A figure as a float, 0 for NULL (the sum of no rows): HTTP answers may carry numbers as text."""
    return 0.0 if value is None else float(value)


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


def _ratio(numerator: float, denominator: float, scale: float = 1.0, digits: int = 4) -> float | None:
    """``numerator * scale / denominator``, rounded; None when the denominator is 0 (docs/metrics.md)."""
    return None if not denominator else round(numerator * scale / denominator, digits)


def _day(value: Any) -> str:
    return str(value)[:10]


def default_period(query: Query, start: date | None, end: date | None) -> tuple[date, date]:
    """``[start, end]``, missing ends filled: ``end`` the newest event's day (today without events),
    ``start`` 29 days before ``end`` (30 days in all)."""
    if end is None:
        newest = query(NEWEST_DAY)
        end = date.fromisoformat(_day(newest.rows[0][0])) if newest.rows and _int(newest.rows[0][1]) else None
        end = end or date.today()
        if start is not None and start > end:
            end = start
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise ValueError(f"the period starts ({start}) after it ends ({end})")
    return start, end


def build_report(query: Query, start: date | None = None, end: date | None = None) -> dict[str, Any]:
    """The KPIs of ``[start, end]`` (UTC days, both included) and the chart series, with stable keys."""
    start, end = default_period(query, start, end)
    acq = _one(query, ACQUISITION, start, end)
    act = _one(query, ACTIVATION, start, end)
    signup = _one(query, SIGNUP_ABANDONMENT, start, end)
    adoption = _one(query, PRODUCT_ADOPTION, start, end)
    eng = _one(query, ENGAGEMENT, start, end)
    rev = _one(query, REVENUE, start, end)
    sat = _one(query, SATISFACTION, start, end)
    sup = _one(query, SUPPORT, start, end)
    median = _one(query, FIRST_RESPONSE_MEDIAN, start, end)
    churned = _one(query, CHURNED_IN_PERIOD, start, end)
    tiers = {row["tier"]: _int(row["users"]) for row in _rows(query, CHURN_TIERS, start, end)}
    funnels: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(query, FUNNELS, start, end):
        funnels.setdefault(row["funnel"], []).append({"step": row["step"], "users": _int(row["users"])})

    daily = [{"day": _day(row["day"]), "dau": _int(row["dau"])} for row in _rows(query, DAILY_ACTIVES, start, end)]
    nps_trend = [
        {"day": _day(row["day"]), "nps": round(_num(row["nps"]), 4), "responses": _int(row["nps_responses"])}
        for row in _rows(query, NPS_TREND, start, end)
    ]
    cohorts = [
        {"cohort": _day(row["cohort"]), "period": _int(row["period"]), "pct": round(_num(row["pct"]), 4),
         "users": _int(row["cohort_users"])}
        for row in _rows(query, RETENTION_COHORTS, start, end)
    ]  # fmt: skip

    spend, new_customers = _num(acq["spend"]), _int(acq["new_customers"])
    dau_avg = None if eng["dau_avg"] is None else round(_num(eng["dau_avg"]), 4)
    mau = _int(eng["mau"])
    revenue, orders = _num(rev["revenue"]), _int(rev["orders"])
    nps_responses = _int(sat["nps_responses"])
    return {
        "period": {"from": start.isoformat(), "to": end.isoformat(), "days": (end - start).days + 1},
        "acquisition": {
            "visits": _int(acq["visits"]),
            "signups": _int(acq["signups"]),
            "new_customers": new_customers,
            "spend": round(spend, 2),
            "cac": _ratio(spend, new_customers, digits=2),
        },
        "activation": {
            "signups": _int(act["signups"]),
            "onboarded": _int(act["onboarded"]),
            "onboarding_completion_pct": _ratio(_num(act["onboarded"]), _num(act["signups"]), 100),
            "trials": _int(act["trials"]),
            "trial_conversions": _int(act["trial_conversions"]),
            "trial_to_paid_pct": _ratio(_num(act["trial_conversions"]), _num(act["trials"]), 100),
            "signup_abandonment_pct": _ratio(_num(signup["signup_abandoned"]), _num(signup["signup_settled"]), 100),
            "repeat_use_adoption_pct": _ratio(_num(adoption["repeat_users"]), _num(adoption["users"]), 100),
            "intended_use_adoption_pct": _ratio(_num(adoption["intended_use_users"]), _num(adoption["users"]), 100),
        },
        "engagement": {
            "dau_avg": dau_avg,
            "mau": mau,
            "stickiness_pct": _ratio(dau_avg or 0.0, mau, 100),
            "visits": _int(eng["visits"]),
            "bounces": _int(eng["bounces"]),
            "bounce_pct": _ratio(_num(eng["bounces"]), _num(eng["visits"]), 100),
        },
        "revenue": {
            "revenue": round(revenue, 2),
            "gross_revenue": round(_num(rev["gross_revenue"]), 2),
            "orders": orders,
            "average_order_value": _ratio(revenue, orders, digits=2),
        },
        "retention": {
            "churned_users": _int(churned["churned_users"]),
            "scored_users": sum(tiers.values()),
            "churn_tiers": {tier: tiers.get(tier, 0) for tier in TIERS},
        },
        "satisfaction": {
            "nps": _ratio(_num(sat["nps_promoters"]) - _num(sat["nps_detractors"]), nps_responses, 100),
            "nps_responses": nps_responses,
            "csat_pct": _ratio(_num(sat["csat_satisfied"]), _num(sat["csat_responses"]), 100),
            "csat_responses": _int(sat["csat_responses"]),
            "ces": _ratio(_num(sat["ces_score_sum"]), _num(sat["ces_responses"])),
            "ces_responses": _int(sat["ces_responses"]),
        },
        "support": {
            "tickets_opened": _int(sup["tickets_opened"]),
            "tickets_resolved": _int(sup["tickets_resolved"]),
            "first_response_median_s": None if not _int(median["responses"]) else round(_num(median["median_s"]), 3),
        },
        "charts": {
            "daily_actives": daily,
            "nps_trend": nps_trend,
            "funnels": [{"funnel": name, "steps": steps} for name, steps in sorted(funnels.items())],
            "retention_cohorts": cohorts,
            "churn_tiers": [{"tier": tier, "users": tiers.get(tier, 0)} for tier in TIERS],
        },
    }


# --- the terminal -----------------------------------------------------------------------------

SECTIONS: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    ("Acquisition", "acquisition", [("visits", "Visits", "int"), ("signups", "Signups", "int"),
                                    ("new_customers", "New customers", "int"), ("spend", "Marketing spend", "money"),
                                    ("cac", "CAC (spend / new customer)", "money")]),
    ("Activation", "activation", [("onboarding_completion_pct", "Onboarding completion", "pct"),
                                  ("trial_to_paid_pct", "Trial to paid", "pct"),
                                  ("signup_abandonment_pct", "Signup abandonment", "pct"),
                                  ("repeat_use_adoption_pct", "Product adoption (repeat use)", "pct"),
                                  ("intended_use_adoption_pct", "Product adoption (intended use)", "pct")]),
    ("Engagement", "engagement", [("dau_avg", "DAU (daily average)", "float"), ("mau", "MAU (last day)", "int"),
                                  ("stickiness_pct", "Stickiness (DAU / MAU)", "pct"),
                                  ("bounce_pct", "Bounce rate", "pct")]),
    ("Revenue", "revenue", [("revenue", "Revenue (net of refunds)", "money"), ("orders", "Orders", "int"),
                            ("average_order_value", "Average order value", "money")]),
    ("Retention", "retention", [("churned_users", "Churned in the period", "int")]),
    ("Satisfaction", "satisfaction", [("nps", "NPS", "float"), ("csat_pct", "CSAT", "pct"),
                                      ("ces", "CES (mean score)", "float")]),
    ("Support", "support", [("tickets_opened", "Tickets opened", "int"),
                            ("first_response_median_s", "First response (median)", "duration")]),
]  # fmt: skip


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "int":
        return f"{value:,}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "pct":
        return f"{value:.2f} %"
    if kind == "duration":
        minutes, seconds = divmod(round(value), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"
    return f"{value:,.2f}"


def format_table(report: dict[str, Any]) -> str:
    """The report as aligned text: one block per section, labels left, figures right."""
    period = report["period"]
    lines = [f"Customer Pulse KPIs {period['from']} .. {period['to']} ({period['days']} days, UTC)"]
    rows: list[tuple[str, str] | str] = []
    for title, key, figures in SECTIONS:
        rows.append(title)
        rows.extend((label, _fmt(report[key][name], kind)) for name, label, kind in figures)
    tiers = report["retention"]["churn_tiers"]
    at = rows.index("Satisfaction")
    rows[at:at] = [(f"Churn tier now: {tier}", _fmt(tiers[tier], "int")) for tier in TIERS]
    width = max(len(row[0]) for row in rows if isinstance(row, tuple))
    value_width = max(len(row[1]) for row in rows if isinstance(row, tuple))
    for row in rows:
        if isinstance(row, str):
            lines += ["", row]
        else:
            lines.append(f"  {row[0]:<{width}}  {row[1]:>{value_width}}")
    return "\n".join(lines)
