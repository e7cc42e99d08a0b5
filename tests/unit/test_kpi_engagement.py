"""The engagement KPI views (migration 0011) on hand-made events and sessions, and on a simulation's truth.

Hand-made events go through the contract first, so the views are pinned on what the pipeline can
actually store; sessions are written as the sessions worker publishes them (a row per version, a
tombstone for a retracted one). Merges are stopped, so only the views' ``FINAL`` folds versions.
The simulation is loaded by ``devstack.offline_load`` into a database of its own in the same
engine, and every figure the ground truth knows is compared: exactly for counts, to 4 decimals
for rates. chdb opens one engine directory per process at a time: the module opens its own and
closes it when done.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from producers.simulator import SimulationConfig, simulate
from producers.simulator.truth import GroundTruth
from pulse.contract import PRODUCT_USE_TYPES
from sinks.clickhouse import connect
from tests.unit.kpi_views import (
    by_day,
    db_fixture,
    event,
    insert,
    load_simulation,
    one,
    open_engine,
    page,
    rows,
    shape_tests,
)

MIGRATION = Path(__file__).resolve().parents[2] / "sinks" / "migrations" / "0011_kpi_engagement.sql"
SESSION_COLUMNS = ["session_id", "user_id", "start", "end", "duration_ms", "events", "page_views", "bounce",
                   "is_first", "closed", "deleted", "version"]  # fmt: skip

SESSION_FIGURES = [
    "sessions", "visits", "visit_events", "events_per_visit", "visit_page_views", "pages_per_visit",
    "visit_duration_s_sum", "visit_duration_mean_s", "visit_duration_median_s",
    "bounces", "bounce_pct", "single_page_visits", "single_page_pct",
    "first_visits", "first_visit_bounces", "first_visit_bounce_pct",
]  # fmt: skip
VIEW_COLUMNS = {
    "kpi_sessions": [
        "session_id", "user_id", "start", "end", "day", "duration_s", "events", "page_views", "visit", "bounce",
        "single_page", "first_visit", "is_first",
    ],
    "kpi_engagement_daily": ["day", "dau", "wau", "mau", "stickiness_pct", "new_users", "returning_users",
                             *SESSION_FIGURES],
    "kpi_user_months": ["user_id", "month", "active_days", "first_active_day", "last_active_day", "new"],
    "kpi_engagement_monthly": ["month", "active_users", "new_users", "returning_users", "active_user_days",
                               "active_days_mean", "active_days_median"],
    "kpi_power_users": ["month", "active_days", "users", "active_users", "users_pct", "users_at_least"],
    "kpi_engagement": ["users", "active_users", "returning_users", "active_user_days", *SESSION_FIGURES],
}  # fmt: skip


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kpi_engagement_clickhouse")


@pytest.fixture(scope="module")
def engine(engine_dir: Path) -> Iterator[Client]:
    """Not :func:`~tests.unit.kpi_views.engine_fixture`: the simulation opens a second client on its directory."""
    with open_engine(engine_dir, "events", "sessions") as client:
        yield client


db = db_fixture("events", "sessions")


def session(session_id: str, user_id: str, start: str, minutes: float, events: int, page_views: int,
            version: int = 1, deleted: int = 0, is_first: bool = False) -> list[Any]:  # fmt: skip
    """A sessions row as the worker publishes it (bounce: one page view and nothing else)."""
    begin = datetime.fromisoformat(f"{start}+00:00")
    end = begin + timedelta(minutes=minutes)
    return [session_id, user_id, begin, end, round(minutes * 60_000), events, page_views,
            events == 1 and page_views == 1, is_first, True, deleted, version]  # fmt: skip


def daily(db: Client) -> dict[str, dict[str, Any]]:
    """The module's daily view, the one nearly every test reads, by day."""
    return by_day(db, "kpi_engagement_daily")


# --- shape --------------------------------------------------------------------------------

test_view_columns_are_stable, test_every_view_and_column_is_documented = shape_tests(VIEW_COLUMNS, "## Engagement")


def test_active_means_product_use_as_the_contract_says() -> None:
    """Every product-use filter in the migration lists exactly pulse.contract.PRODUCT_USE_TYPES, plus custom.*."""
    sql = MIGRATION.read_text()
    lists = re.findall(r"type IN \(([^)]*)\)\s*OR startsWith\(type, 'custom\.'\)", sql)
    assert len(lists) == 3
    assert all(set(re.findall(r"'([a-z_]+)'", found)) == PRODUCT_USE_TYPES for found in lists)


def test_without_data_the_all_time_view_gives_nulls_not_zeros(db: Client) -> None:
    for view in ("kpi_engagement_daily", "kpi_user_months", "kpi_engagement_monthly", "kpi_power_users"):
        assert rows(db, f"SELECT * FROM {view}") == []
    total = one(db, "SELECT * FROM kpi_engagement")
    assert total["users"] == total["active_users"] == total["sessions"] == total["visits"] == 0
    assert total["bounce_pct"] is None and total["pages_per_visit"] is None
    assert total["visit_duration_mean_s"] is None and total["visit_duration_median_s"] is None


# --- active users ---------------------------------------------------------------------------
#
# Product use by five users over May 2024 and the first of June (UTC):
#   a  login and feature_used on 05-01 (one day), page_view 05-08, custom.report_exported 05-31, page_view 06-01
#   b  email_opened 05-01, survey_response 05-02, ticket_opened 05-03 (none is product use), page_view 05-20
#   c  purchase 05-05, resent (a second row on disk)
#   d  subscription_cancelled 05-06 and email_opened 06-10: never active
#   e  signup 05-02 only: in the 7-day window until 05-08, in the 30-day window until 05-31


@pytest.fixture
def activity(db: Client) -> Client:
    purchase = event("purchase", "c", "2024-05-05 12:00:00", order_id="o1", amount=10.0)
    insert(db, [
        event("login", "a", "2024-05-01 09:00:00"),
        event("feature_used", "a", "2024-05-01 15:00:00", feature="reports"),
        page("a", "2024-05-08 10:00:00"),
        event("custom.report_exported", "a", "2024-05-31 23:59:59"),
        page("a", "2024-06-01 00:00:00"),
        event("email_opened", "b", "2024-05-01 08:00:00", campaign="digest"),
        event("survey_response", "b", "2024-05-02 08:00:00", kind="nps", score=9),
        event("ticket_opened", "b", "2024-05-03 08:00:00", ticket_id="t1"),
        page("b", "2024-05-20 18:00:00"),
        purchase,
        event("subscription_cancelled", "d", "2024-05-06 08:00:00"),
        event("email_opened", "d", "2024-06-10 08:00:00", campaign="digest"),
        event("signup", "e", "2024-05-02 07:00:00"),
    ])  # fmt: skip
    insert(db, [purchase])
    return db


def test_dau_wau_mau_over_rolling_windows(activity: Client) -> None:
    days = daily(activity)
    assert list(days) == [str(date(2024, 5, 1) + timedelta(days=n)) for n in range(32)]  # to 06-01, not 06-10
    figures = {day: (d["dau"], d["wau"], d["mau"]) for day, d in days.items()}
    assert {day: figures[day] for day in [
        "2024-05-01", "2024-05-02", "2024-05-05", "2024-05-08", "2024-05-09", "2024-05-11", "2024-05-12",
        "2024-05-15", "2024-05-20", "2024-05-26", "2024-05-27", "2024-05-30", "2024-05-31", "2024-06-01",
    ]} == {
        "2024-05-01": (1, 1, 1),  # a
        "2024-05-02": (1, 2, 2),  # e; a still in both windows
        "2024-05-05": (1, 3, 3),  # c (bought twice by the resend: once)
        "2024-05-08": (1, 3, 3),  # a again; e's last day in the 7-day window (05-02..05-08)
        "2024-05-09": (0, 2, 3),  # e out of the 7-day window
        "2024-05-11": (0, 2, 3),  # c's last day in it (05-05..05-11)
        "2024-05-12": (0, 1, 3),
        "2024-05-15": (0, 0, 3),  # a's 05-08 has left the 7-day window (05-09..05-15)
        "2024-05-20": (1, 1, 4),  # b: an email, a survey and a ticket before made nobody active
        "2024-05-26": (0, 1, 4),
        "2024-05-27": (0, 0, 4),
        "2024-05-30": (0, 0, 4),  # a's 05-01 leaves the 30-day window, but a's 05-08 keeps a in it
        "2024-05-31": (1, 1, 4),  # a (a custom event is product use); e's last day in the 30-day window
        "2024-06-01": (1, 1, 3),  # e out: 05-03..06-01
    }  # fmt: skip
    assert [days[day]["stickiness_pct"] for day in ("2024-05-01", "2024-05-05", "2024-05-20", "2024-06-01")] == \
        pytest.approx([100.0, 100 / 3, 25.0, 100 / 3])  # fmt: skip
    assert days["2024-05-09"]["stickiness_pct"] == 0.0
    # a reader's filter on the day must not cut the windows short
    one_day = one(activity, "SELECT dau, wau, mau FROM kpi_engagement_daily WHERE day = '2024-05-15'")
    assert one_day == {"dau": 0, "wau": 0, "mau": 3}


def test_a_sundays_wau_is_its_calendar_week(activity: Client) -> None:
    """Conflict 15 (000:1647): "last 7 days" is not "last week", except on the week's last day.

    The week of Monday 05-06 to Sunday 05-12 has one active user (a, on 05-08): the rolling WAU of
    Sunday 05-12 says so, while Saturday's also counts c, active on Sunday 05-05 of the week before.
    """
    assert date(2024, 5, 12).isoweekday() == 7
    wau = {str(r["day"]): r["wau"] for r in rows(activity, "SELECT day, wau FROM kpi_engagement_daily")}
    assert (wau["2024-05-11"], wau["2024-05-12"]) == (2, 1)


def test_returning_users_are_active_users_minus_new_users(activity: Client) -> None:
    """000:635: "the number of active users in a given timeframe [minus] the number of new users"."""
    days = daily(activity)
    split = {day: (d["dau"], d["new_users"], d["returning_users"]) for day, d in days.items() if d["dau"]}
    assert split == {
        "2024-05-01": (1, 1, 0), "2024-05-02": (1, 1, 0), "2024-05-05": (1, 1, 0), "2024-05-08": (1, 0, 1),
        "2024-05-20": (1, 1, 0), "2024-05-31": (1, 0, 1), "2024-06-01": (1, 0, 1),
    }  # fmt: skip


def test_monthly_active_users_and_the_power_user_curve(activity: Client) -> None:
    """001:686: users by the number of days they use the product in the month; a 31st and a 1st are two months."""
    monthly = rows(activity, "SELECT * FROM kpi_engagement_monthly ORDER BY month")
    months = {str(row.pop("month")): row for row in monthly}
    assert months == {
        "2024-05-01": {"active_users": 4, "new_users": 4, "returning_users": 0, "active_user_days": 6,
                       "active_days_mean": 1.5, "active_days_median": 1.0},
        "2024-06-01": {"active_users": 1, "new_users": 0, "returning_users": 1, "active_user_days": 1,
                       "active_days_mean": 1.0, "active_days_median": 1.0},
    }  # fmt: skip
    curve = [
        (str(r["month"]), r["active_days"], r["users"], r["active_users"], r["users_pct"], r["users_at_least"])
        for r in rows(activity, "SELECT * FROM kpi_power_users ORDER BY month, active_days")
    ]
    assert curve == [
        ("2024-05-01", 1, 3, 4, 75.0, 4),
        ("2024-05-01", 3, 1, 4, 25.0, 1),  # a: 05-01, 05-08, 05-31
        ("2024-06-01", 1, 1, 1, 100.0, 1),
    ]
    a = rows(activity, "SELECT * FROM kpi_user_months WHERE user_id = 'a' ORDER BY month")
    assert [(r["active_days"], str(r["first_active_day"]), str(r["last_active_day"]), r["new"]) for r in a] == [
        (3, "2024-05-01", "2024-05-31", 1),
        (1, "2024-06-01", "2024-06-01", 0),
    ]


def test_a_month_filtered_keeps_whether_the_user_is_new(activity: Client) -> None:
    june = rows(activity, "SELECT user_id, new FROM kpi_user_months WHERE month = '2024-06-01'")
    assert june == [{"user_id": "a", "new": 0}]


def test_all_time_users(activity: Client) -> None:
    total = one(activity, "SELECT users, active_users, returning_users, active_user_days FROM kpi_engagement")
    # d sent events but never used the product; a came back on other days; 4 + 1 + 1 + 1 active days
    assert total == {"users": 5, "active_users": 4, "returning_users": 1, "active_user_days": 7}


# --- sessions ---------------------------------------------------------------------------------
#
# 2024-05-01: s1 a 09:00, published twice (version 2: 20 min, 5 events, 3 pages); s2 b one page view
# (a bounce, b's first visit); s3 c 5 min, a page view and a signup (one page, but no bounce);
# s4 d an email sent (a session, no visit); s5 e retracted (merged into another session).
# 2024-05-02: s6 b one page view (a bounce, not b's first visit); s7 a 23:50 to 00:20 (on its start day).


@pytest.fixture
def visits(db: Client) -> Client:
    db.insert("sessions", [
        session("s1", "a", "2024-05-01 09:00:00", 10, 3, 2, version=1, is_first=True),
        session("s1", "a", "2024-05-01 09:00:00", 20, 5, 3, version=2, is_first=True),
        session("s2", "b", "2024-05-01 10:00:00", 0, 1, 1, is_first=True),
        session("s3", "c", "2024-05-01 11:00:00", 5, 2, 1),
        session("s4", "d", "2024-05-01 12:00:00", 0, 1, 0, is_first=True),
        session("s5", "e", "2024-05-01 13:00:00", 2, 2, 2, version=1),
        session("s5", "e", "2024-05-01 13:00:00", 2, 2, 2, version=2, deleted=1),
        session("s6", "b", "2024-05-02 09:00:00", 0, 1, 1, version=3),
        session("s7", "a", "2024-05-02 23:50:00", 30, 4, 4, version=3),
    ], column_names=SESSION_COLUMNS)  # fmt: skip
    return db


def test_sessions_are_folded_and_classified(visits: Client) -> None:
    found = {r.pop("session_id"): r for r in rows(visits, "SELECT * FROM kpi_sessions ORDER BY session_id")}
    fields = ["day", "duration_s", "events", "page_views", "visit", "bounce", "single_page", "first_visit"]
    assert {sid: tuple(str(r[f]) if f == "day" else r[f] for f in fields) for sid, r in found.items()} == {
        "s1": ("2024-05-01", 1200.0, 5, 3, 1, 0, 0, 1),
        "s2": ("2024-05-01", 0.0, 1, 1, 1, 1, 1, 1),
        "s3": ("2024-05-01", 300.0, 2, 1, 1, 0, 1, 1),
        "s4": ("2024-05-01", 0.0, 1, 0, 0, 0, 0, 0),
        "s6": ("2024-05-02", 0.0, 1, 1, 1, 1, 1, 0),
        "s7": ("2024-05-02", 1800.0, 4, 4, 1, 0, 0, 0),
    }


def test_a_first_visit_stays_first_when_the_sessions_are_filtered(visits: Client) -> None:
    """first_visit looks at all of a user's sessions, whatever the reader filters: b's visit of 05-02 is its second."""
    on_day = rows(visits, "SELECT session_id, first_visit FROM kpi_sessions WHERE day = '2024-05-02' ORDER BY 1")
    assert on_day == [{"session_id": "s6", "first_visit": 0}, {"session_id": "s7", "first_visit": 0}]
    of_b = rows(visits, "SELECT session_id, first_visit FROM kpi_sessions WHERE user_id = 'b' AND start > '2024-05-02'")
    assert of_b == [{"session_id": "s6", "first_visit": 0}]


def test_session_figures_per_day(visits: Client) -> None:
    days = daily(visits)
    assert list(days) == ["2024-05-01", "2024-05-02"]
    d1, d2 = days["2024-05-01"], days["2024-05-02"]
    assert (d1["dau"], d1["mau"], d1["stickiness_pct"]) == (0, 0, None)  # sessions alone make nobody active
    assert {k: d1[k] for k in SESSION_FIGURES} == pytest.approx({
        "sessions": 4, "visits": 3, "visit_events": 8, "events_per_visit": 8 / 3,
        "visit_page_views": 5, "pages_per_visit": 5 / 3,
        "visit_duration_s_sum": 1500, "visit_duration_mean_s": 500, "visit_duration_median_s": 300,
        "bounces": 1, "bounce_pct": 100 / 3, "single_page_visits": 2, "single_page_pct": 200 / 3,
        "first_visits": 3, "first_visit_bounces": 1, "first_visit_bounce_pct": 100 / 3,
    })  # fmt: skip
    assert {k: d2[k] for k in SESSION_FIGURES} == {
        "sessions": 2, "visits": 2, "visit_events": 5, "events_per_visit": 2.5,
        "visit_page_views": 5, "pages_per_visit": 2.5,
        "visit_duration_s_sum": 1800.0, "visit_duration_mean_s": 900.0, "visit_duration_median_s": 900.0,
        "bounces": 1, "bounce_pct": 50.0, "single_page_visits": 1, "single_page_pct": 50.0,
        "first_visits": 0, "first_visit_bounces": 0, "first_visit_bounce_pct": None,
    }  # fmt: skip


def test_session_figures_all_time_and_re_aggregated(visits: Client) -> None:
    total = one(visits, "SELECT * FROM kpi_engagement")
    assert {k: total[k] for k in SESSION_FIGURES} == {
        "sessions": 6, "visits": 5, "visit_events": 13, "events_per_visit": 2.6,
        "visit_page_views": 10, "pages_per_visit": 2.0,
        "visit_duration_s_sum": 3300.0, "visit_duration_mean_s": 660.0, "visit_duration_median_s": 300.0,
        "bounces": 2, "bounce_pct": 40.0, "single_page_visits": 3, "single_page_pct": 60.0,
        "first_visits": 3, "first_visit_bounces": 1, "first_visit_bounce_pct": 100 / 3,
    }  # fmt: skip
    summed = one(visits, "SELECT sum(visits) AS all_visits, sum(bounces) * 100 / all_visits AS all_bounce_pct, "
                         "sum(visit_duration_s_sum) / all_visits AS mean_s FROM kpi_engagement_daily")  # fmt: skip
    assert summed == {"all_visits": 5, "all_bounce_pct": 40.0, "mean_s": 660.0}


# --- the simulator's ground truth -------------------------------------------------------------

CONFIG = SimulationConfig(customers=300, days=45, seed=3)  # 2025-11-01 to 12-15: two calendar months


@pytest.fixture(scope="module")
def simulated(engine: Client, engine_dir: Path) -> Iterator[tuple[Client, GroundTruth]]:
    sim = simulate(CONFIG)
    engine.command("CREATE DATABASE IF NOT EXISTS simulated")
    client = connect(f"chdb://{engine_dir}?database=simulated")
    try:
        load_simulation(client, sim)
        yield client, sim.truth
    finally:
        client.close()


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def active_days(truth: GroundTruth) -> dict[str, set[date]]:
    """Each user's days with product use, from the truth's activity witness (it keeps every product use's time)."""
    days = {user_id: {_day(ms) for ms in witness._uses} for user_id, witness in truth.activity.items()}
    return {user_id: found for user_id, found in days.items() if found}


def test_the_truths_totals(simulated: tuple[Client, GroundTruth]) -> None:
    client, truth = simulated
    totals = truth.totals
    total = one(client, "SELECT * FROM kpi_engagement")
    assert (total["users"], total["sessions"], total["visits"], total["bounces"]) == (
        totals["users"], totals["sessions"], totals["visits"], totals["bounces"])  # fmt: skip
    assert round(total["bounce_pct"], 4) == round(totals["bounce_rate"] * 100, 4)
    summed = client.query("SELECT sum(sessions), sum(visits), sum(bounces) FROM kpi_engagement_daily").result_rows
    assert summed == [(totals["sessions"], totals["visits"], totals["bounces"])]
    days = active_days(truth)
    assert (total["active_users"], total["returning_users"], total["active_user_days"]) == (
        len(days), sum(len(d) > 1 for d in days.values()), sum(map(len, days.values())))  # fmt: skip


def test_active_users_match_the_truth_day_by_day(simulated: tuple[Client, GroundTruth]) -> None:
    client, truth = simulated
    days = active_days(truth)
    first_day = {user_id: min(d) for user_id, d in days.items()}
    starts = {_day(s.start) for user in truth.users.values() for s in user.sessions}
    every = sorted(set().union(*days.values()) | starts)
    span = [every[0] + timedelta(days=n) for n in range((every[-1] - every[0]).days + 1)]

    def within(day: date, width: int) -> int:
        return sum(any(0 <= (day - d).days < width for d in found) for found in days.values())

    expected = {
        str(day): {
            "dau": sum(day in found for found in days.values()),
            "wau": within(day, 7),
            "mau": within(day, 30),
            "new_users": sum(first == day for first in first_day.values()),
        }
        for day in span
    }
    found = {str(row.pop("day")): row for row in rows(client, "SELECT day, dau, wau, mau, new_users "
                                                              "FROM kpi_engagement_daily ORDER BY day")}  # fmt: skip
    assert found == expected
    assert max(day["mau"] for day in expected.values()) > max(day["wau"] for day in expected.values()) > 0


def test_the_power_user_curve_matches_the_truth(simulated: tuple[Client, GroundTruth]) -> None:
    client, truth = simulated
    per_month: dict[date, Counter[int]] = defaultdict(Counter)
    for found in active_days(truth).values():
        for month, count in Counter(d.replace(day=1) for d in found).items():
            per_month[month][count] += 1
    expected = {(month, n): users for month, counter in per_month.items() for n, users in counter.items()}
    curve = {(r["month"], r["active_days"]): r["users"] for r in rows(client, "SELECT * FROM kpi_power_users")}
    assert curve == expected and len(per_month) == 2
    monthly = {r["month"]: r["active_users"] for r in rows(client, "SELECT * FROM kpi_engagement_monthly")}
    assert monthly == {month: sum(counter.values()) for month, counter in per_month.items()}


def test_visit_figures_match_the_truth_day_by_day(simulated: tuple[Client, GroundTruth]) -> None:
    client, truth = simulated
    per_day: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for user in truth.users.values():
        visits = [s for s in user.sessions if s.page_views > 0]
        for s in user.sessions:
            per_day[str(_day(s.start))].append((s, bool(visits) and s is visits[0]))
    found = daily(client)
    for day, sessions in per_day.items():
        visits = [(s, first) for s, first in sessions if s.page_views > 0]
        durations = [(s.end - s.start) / 1000 for s, _ in visits]
        row = found[day]
        assert (row["sessions"], row["visits"], row["visit_events"], row["visit_page_views"], row["bounces"],
                row["single_page_visits"], row["first_visits"], row["first_visit_bounces"]) == (
            len(sessions), len(visits), sum(s.events for s, _ in visits), sum(s.page_views for s, _ in visits),
            sum(s.bounce for s, _ in visits), sum(s.page_views == 1 for s, _ in visits),
            sum(first for _, first in visits), sum(first and s.bounce for s, first in visits),
        ), day  # fmt: skip
        if visits:
            assert round(row["visit_duration_s_sum"], 4) == round(sum(durations), 4)
            assert round(row["visit_duration_median_s"], 4) == round(statistics.median(durations), 4)
            assert round(row["bounce_pct"], 4) == round(100 * sum(s.bounce for s, _ in visits) / len(visits), 4)
