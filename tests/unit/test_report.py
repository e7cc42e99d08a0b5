"""``pulse report`` (ops/report.py, ops/report_html.py) on a simulator run loaded into an embedded engine.

The report's figures are compared with the simulator's ground truth (counts exactly, rates to 4
decimals) over the run's whole window, its chart series with the views they come from, a
sub-period with the period rule of docs/metrics.md (sum the parts, divide again), the JSON keys with
a pinned set, and the HTML page in headless Chromium: every chart must have drawn data marks. The
screenshot is kept as a test artefact in tests/artifacts/report.png. No Kafka.

chdb opens one engine directory per process at a time: the module's engine is module-scoped and
closed at the end (tests/unit/kpi_views.py).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from ops.cli import _parser
from ops.reader import QueryResult
from ops.report import build_report, format_table
from ops.report_html import render_html
from producers.simulator import Simulation, SimulationConfig, simulate
from tests.unit.kpi_views import engine_fixture, load_simulation, rows

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CONFIG = SimulationConfig(customers=300, days=45, seed=3)  # 2025-11-01 to 2025-12-15

engine = engine_fixture("report")

KEYS = {
    "period": ["from", "to", "days"],
    "acquisition": ["visits", "signups", "new_customers", "spend", "cac"],
    "activation": ["signups", "onboarded", "onboarding_completion_pct", "trials", "trial_conversions",
                   "trial_to_paid_pct", "signup_abandonment_pct", "repeat_use_adoption_pct",
                   "intended_use_adoption_pct"],
    "engagement": ["dau_avg", "mau", "stickiness_pct", "visits", "bounces", "bounce_pct"],
    "revenue": ["revenue", "gross_revenue", "orders", "average_order_value"],
    "retention": ["churned_users", "scored_users", "churn_tiers"],
    "satisfaction": ["nps", "nps_responses", "csat_pct", "csat_responses", "ces", "ces_responses"],
    "support": ["tickets_opened", "tickets_resolved", "first_response_median_s"],
    "charts": ["daily_actives", "nps_trend", "funnels", "retention_cohorts", "churn_tiers"],
}  # fmt: skip
SERIES_KEYS = {
    "daily_actives": {"day", "dau"},
    "nps_trend": {"day", "nps", "responses"},
    "funnels": {"funnel", "steps"},
    "retention_cohorts": {"cohort", "period", "pct", "users"},
    "churn_tiers": {"tier", "users"},
}
CHARTS = set(SERIES_KEYS)
TIERS = ("low", "medium", "high", "churned")


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(CONFIG)


@pytest.fixture(scope="module")
def db(engine: Client, simulation: Simulation) -> Client:
    load_simulation(engine, simulation)
    return engine


def _query(db: Client) -> Any:
    def query(sql: str) -> QueryResult:
        result = db.query(sql)
        return QueryResult(list(result.column_names), [list(row) for row in result.result_rows])

    return query


def _window(simulation: Simulation) -> tuple[date, date]:
    config = simulation.truth.config
    first = datetime.fromtimestamp(config.start_ms / 1000, UTC).date()
    return first, first + timedelta(days=config.days - 1)


@pytest.fixture(scope="module")
def report(db: Client, simulation: Simulation) -> dict[str, Any]:
    """The report over the simulation's whole window."""
    return build_report(_query(db), *_window(simulation))


# --- figures against the truth ----------------------------------------------------------------


def test_the_window_is_the_simulations(report: dict[str, Any]) -> None:
    assert report["period"] == {"from": "2025-11-01", "to": "2025-12-15", "days": 45}


def test_acquisition_activation_and_engagement_equal_the_truth(report: dict[str, Any],
                                                               simulation: Simulation) -> None:  # fmt: skip
    totals = simulation.truth.totals
    spend = sum(totals["marketing_spend"].values())
    acq = report["acquisition"]
    assert (acq["visits"], acq["signups"], acq["new_customers"]) == (
        totals["visits"], totals["signups"], totals["paying_customers"])  # fmt: skip
    assert acq["spend"] == round(spend, 2)
    assert acq["cac"] == round(spend / totals["paying_customers"], 2)
    act = report["activation"]
    assert (act["signups"], act["onboarded"], act["trials"], act["trial_conversions"]) == (
        totals["signups"], totals["onboarding_completions"], totals["trials"], totals["trial_conversions"])  # fmt: skip
    assert act["onboarding_completion_pct"] == round(totals["onboarding_completions"] * 100 / totals["signups"], 4)
    assert act["trial_to_paid_pct"] == round(totals["trial_conversions"] * 100 / totals["trials"], 4)
    outcomes = totals["signup_outcomes"]
    assert outcomes["abandoned"] > 0 and outcomes["finished"] > 0
    settled = outcomes["abandoned"] + outcomes["finished"]
    assert act["signup_abandonment_pct"] == round(outcomes["abandoned"] * 100 / settled, 4)
    assert act["repeat_use_adoption_pct"] == round(totals["repeat_users"] * 100 / totals["product_users"], 4)
    assert act["intended_use_adoption_pct"] == round(totals["intended_use_users"] * 100 / totals["product_users"], 4)
    eng = report["engagement"]
    assert (eng["visits"], eng["bounces"]) == (totals["visits"], totals["bounces"])
    assert eng["bounce_pct"] == round(totals["bounce_rate"] * 100, 4)


def test_revenue_satisfaction_support_and_churn_equal_the_truth(report: dict[str, Any],
                                                                simulation: Simulation) -> None:  # fmt: skip
    totals = simulation.truth.totals
    rev = report["revenue"]
    assert rev["revenue"] == totals["revenue"]
    assert rev["orders"] == totals["events_by_type"]["purchase"]
    assert rev["average_order_value"] == round(totals["revenue"] / totals["events_by_type"]["purchase"], 2)
    sat = report["satisfaction"]
    assert (sat["nps_responses"], sat["csat_responses"], sat["ces_responses"]) == (
        totals["nps_responses"], totals["csat_responses"], totals["ces_responses"])  # fmt: skip
    assert sat["nps"] == round(totals["nps"], 4)
    assert sat["csat_pct"] == round(totals["csat"], 4)
    assert sat["ces"] == round(totals["ces"], 4)
    assert report["support"]["tickets_opened"] == totals["tickets_opened"]
    churn = totals["churn"]
    ret = report["retention"]
    assert ret["churned_users"] == churn["churned_users"] == ret["churn_tiers"]["churned"]
    assert ret["scored_users"] == sum(ret["churn_tiers"].values()) == totals["users"]


# --- figures against the views ----------------------------------------------------------------


def test_the_chart_series_are_the_views(report: dict[str, Any], db: Client) -> None:
    charts = report["charts"]
    dau = rows(db, "SELECT toString(day) AS day, dau FROM kpi_engagement_daily ORDER BY day")
    assert charts["daily_actives"] == dau
    nps = rows(db, "SELECT toString(day) AS day, round(nps, 4) AS nps, nps_responses AS responses "
                   "FROM kpi_satisfaction_daily WHERE nps_responses > 0 ORDER BY day")  # fmt: skip
    assert charts["nps_trend"] == nps
    funnels: dict[str, list[dict[str, Any]]] = {}
    for row in rows(db, "SELECT funnel, step_name AS step, users FROM funnel_conversion ORDER BY funnel, step_index"):
        funnels.setdefault(row.pop("funnel"), []).append(row)
    assert charts["funnels"] == [{"funnel": name, "steps": steps} for name, steps in sorted(funnels.items())]
    cohorts = rows(db, "SELECT toString(cohort) AS cohort, periods_since_signup AS period, round(retention_pct, 4) "
                       "AS pct, cohort_users AS users FROM kpi_cohort_retention WHERE period_kind = 'week' "
                       "AND period_start <= '2025-12-15' ORDER BY cohort, period")  # fmt: skip
    assert charts["retention_cohorts"] == cohorts
    tiers = dict(db.query("SELECT tier, count() FROM churn_scores FINAL GROUP BY tier").result_rows)
    assert charts["churn_tiers"] == [{"tier": t, "users": tiers.get(t, 0)} for t in TIERS]
    for name in CHARTS:
        assert charts[name], f"the simulation has data for {name}"
    median = db.query("SELECT quantileExactInclusive(0.5)(first_response_s) FROM kpi_tickets "
                      "WHERE first_response_s IS NOT NULL").result_rows[0][0]  # fmt: skip
    assert report["support"]["first_response_median_s"] == round(median, 3)


def test_a_period_sums_the_parts_of_its_days(db: Client, report: dict[str, Any]) -> None:
    """Two halves add up to the whole; a half's NPS is recomputed from its answers, not averaged over days."""
    first = build_report(_query(db), date(2025, 11, 1), date(2025, 11, 30))
    second = build_report(_query(db), date(2025, 12, 1), date(2025, 12, 15))
    assert (first["period"]["days"], second["period"]["days"]) == (30, 15)
    for section, key in [("acquisition", "signups"), ("acquisition", "visits"), ("revenue", "orders"),
                         ("satisfaction", "nps_responses"), ("support", "tickets_opened")]:  # fmt: skip
        assert first[section][key] + second[section][key] == report[section][key], key
    assert round(first["revenue"]["revenue"] + second["revenue"]["revenue"], 2) == report["revenue"]["revenue"]
    answers = rows(db, "SELECT nps_bucket FROM kpi_survey_responses WHERE kind = 'nps' "
                       "AND day BETWEEN '2025-11-01' AND '2025-11-30'")  # fmt: skip
    buckets = [answer["nps_bucket"] for answer in answers]
    expected = (buckets.count("promoter") - buckets.count("detractor")) * 100 / len(buckets)
    assert first["satisfaction"]["nps"] == round(expected, 4)
    assert [point["day"] for point in first["charts"]["daily_actives"]][-1] == "2025-11-30"


def test_the_default_period_is_the_last_30_days_up_to_the_newest_event(db: Client) -> None:
    query = _query(db)
    assert build_report(query)["period"] == {"from": "2025-11-16", "to": "2025-12-15", "days": 30}
    assert build_report(query, start=date(2025, 12, 1))["period"] == {"from": "2025-12-01", "to": "2025-12-15",
                                                                       "days": 15}  # fmt: skip
    assert build_report(query, end=date(2025, 11, 30))["period"]["from"] == "2025-11-01"
    with pytest.raises(ValueError, match="after it ends"):
        build_report(query, date(2025, 12, 2), date(2025, 12, 1))


# --- shapes -----------------------------------------------------------------------------------


def test_the_json_keys_are_stable(report: dict[str, Any]) -> None:
    assert list(report) == list(KEYS)
    for section, keys in KEYS.items():
        assert list(report[section]) == keys, section
    assert list(report["retention"]["churn_tiers"]) == list(TIERS)
    for name, keys in SERIES_KEYS.items():
        assert all(set(point) == keys for point in report["charts"][name]), name
    assert all(set(step) == {"step", "users"} for f in report["charts"]["funnels"] for step in f["steps"])
    assert orjson.loads(orjson.dumps(report)) == report  # JSON-able as it is


def test_the_table_shows_the_figures(report: dict[str, Any]) -> None:
    table = format_table(report)
    print(table)
    for text in ["2025-11-01 .. 2025-12-15", "Signups", "1,708", "4,450.07", "38.46 %", "20.00 %", "17.10 %",
                 "5,130.00", "10.26", "90.00 %", "4.74", "45m 00s", "Churn tier now: churned"]:  # fmt: skip
        assert text in table, text
    labelled = [line for line in table.splitlines() if line.startswith("  ")]
    assert len({len(line) for line in labelled}) == 1, "figures right-aligned in one column"


def test_the_cli_parses_report() -> None:
    args = _parser().parse_args(["report", "--from", "2025-11-01", "--to", "2025-11-30", "--json", "--html", "r.html"])
    assert (args.start, args.end, args.json, str(args.html)) == (date(2025, 11, 1), date(2025, 11, 30), True, "r.html")
    assert _parser().parse_args(["report"]).start is None


# --- the HTML page ----------------------------------------------------------------------------


class Charts(HTMLParser):
    """Per ``figure.chart``: its data marks (elements with class ``mark``) and whether it says "no data"."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, int]] = {}
        self._current: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag == "figure" and "chart" in classes:
            self._current, self._depth = found.get("data-chart") or "?", 0
            self.charts[self._current] = {"marks": 0, "no_data": 0, "svg": 0}
        if self._current is None:
            return
        if tag == "figure":
            self._depth += 1
        chart = self.charts[self._current]
        chart["svg"] += tag == "svg"
        chart["marks"] += "mark" in classes and tag in {"rect", "path", "circle"}
        chart["no_data"] += "no-data" in classes

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure" and self._current is not None:
            self._depth -= 1
            if self._depth == 0:
                self._current = None


def charts_of(page: str) -> dict[str, dict[str, int]]:
    parser = Charts()
    parser.feed(page)
    return parser.charts


def test_the_page_is_self_contained_with_every_chart(report: dict[str, Any]) -> None:
    page = render_html(report)
    assert "<script" not in page.lower() and "src=" not in page and "href=" not in page and "@import" not in page
    assert "url(" not in page
    charts = charts_of(page)
    assert set(charts) == CHARTS
    assert all(chart["marks"] and chart["svg"] and not chart["no_data"] for chart in charts.values()), charts


def test_an_empty_series_says_no_data(report: dict[str, Any]) -> None:
    empty = copy.deepcopy(report)
    empty["charts"] = {"daily_actives": [], "nps_trend": [], "funnels": [], "retention_cohorts": [],
                       "churn_tiers": [{"tier": t, "users": 0} for t in TIERS]}  # fmt: skip
    charts = charts_of(render_html(empty))
    assert set(charts) == CHARTS
    assert all(chart["no_data"] and not chart["marks"] for chart in charts.values()), charts


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must run the HTML report test (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium); required in CI")
    return found


def test_chromium_renders_every_chart_with_data(report: dict[str, Any], tmp_path: Path) -> None:
    chromium = _chromium()
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    shot = tmp_path / "report.png"
    common = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
              f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    charts = charts_of(dom)
    assert set(charts) == CHARTS, dom[:500]
    for name, chart in charts.items():
        assert chart["svg"] and chart["marks"] > 0 and not chart["no_data"], f"{name}: {chart}"
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "report.png")
    shutil.copyfile(page, ARTIFACTS / "report.html")
    print(f"screenshot of the report: {ARTIFACTS / 'report.png'}")
