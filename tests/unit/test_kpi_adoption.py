"""The signup abandonment and product adoption KPI views (migration 0017), on hand-made events and on the simulator.

Every hand-made event goes through the contract first, so the views are pinned on what the
pipeline can actually store. Merges of ``events`` are stopped, so a resent event stays a second
row on disk. The last tests load a simulation (devstack.offline_load) into the same engine and
compare with its ground truth. chdb opens one engine directory per process at a time: the module
opens its own and closes it when done.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client

from producers.simulator import GroundTruth, SimulationConfig, simulate
from producers.simulator.truth import ABANDONED, FINISHED, IN_PROGRESS
from pulse.contract import PRODUCT_USE_TYPES
from sinks.migrations import MIGRATIONS_DIR
from tests.unit.kpi_views import (
    by_day,
    db_fixture,
    engine_fixture,
    event,
    insert,
    load_simulation,
    one,
    page,
    rows,
    shape_tests,
    truncate,
)

DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)

ABANDONMENT_COLUMNS = [
    "signup_starters", "signup_finished", "signup_abandoned", "signup_in_progress", "signup_settled",
    "signup_abandonment_pct",
]  # fmt: skip
ADOPTION_COLUMNS = [
    "users", "repeat_users", "repeat_use_adoption_pct", "intended_use_users", "intended_use_adoption_pct",
]  # fmt: skip
VIEW_COLUMNS = {
    "kpi_signup_abandonment_users": [
        "user_id", "started_at", "signed_up_at", "signup_s", "finished", "abandoned", "in_progress",
    ],
    "kpi_signup_abandonment_daily": ["day", *ABANDONMENT_COLUMNS],
    "kpi_signup_abandonment": ABANDONMENT_COLUMNS,
    "kpi_product_adoption_users": ["user_id", "first_used_at", "last_used_at", "paid_at", "repeat_user",
                                   "intended_use"],
    "kpi_product_adoption_daily": ["day", *ADOPTION_COLUMNS],
    "kpi_product_adoption": ADOPTION_COLUMNS,
}  # fmt: skip
OUTCOME_FLAGS = {FINISHED: (1, 0, 0), ABANDONED: (0, 1, 0), IN_PROGRESS: (0, 0, 1)}  # finished, abandoned, in_progress

engine = engine_fixture("kpi_adoption_clickhouse", "events")
db = db_fixture("events")

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


# --- shape --------------------------------------------------------------------------------

test_view_columns_are_stable, test_every_view_and_column_is_documented = shape_tests(VIEW_COLUMNS, "## Activation")


def test_product_use_is_the_contracts() -> None:
    """kpi_product_adoption_users counts as use what pulse.contract.is_product_use does: its types, and custom.*."""
    sql = (MIGRATIONS_DIR / "0017_kpi_adoption.sql").read_text()
    [listed] = re.findall(r"type IN \(([^)]*)\)\s+OR startsWith\(type, 'custom\.'\)", sql)
    assert set(re.findall(r"'([a-z_]+)'", listed)) == PRODUCT_USE_TYPES


def test_without_events_the_all_time_views_give_nulls_not_zeros(db: Client) -> None:
    assert rows(db, "SELECT * FROM kpi_signup_abandonment_daily") == []
    assert rows(db, "SELECT * FROM kpi_product_adoption_daily") == []
    assert one(db, "SELECT * FROM kpi_signup_abandonment") == {
        "signup_starters": 0, "signup_finished": 0, "signup_abandoned": 0, "signup_in_progress": 0,
        "signup_settled": 0, "signup_abandonment_pct": None,
    }  # fmt: skip
    assert one(db, "SELECT * FROM kpi_product_adoption") == {
        "users": 0, "repeat_users": 0, "repeat_use_adoption_pct": None, "intended_use_users": 0,
        "intended_use_adoption_pct": None,
    }  # fmt: skip


# --- signup abandonment -------------------------------------------------------------------

# A hand-made story, days from 2024-05-01 (D1), UTC; the newest event is D5 12:00 (h's login):
#   a  /signup D1 09:00, start 09:01, signup 09:06 (300 s): finished
#   b  start D1 10:00, never signs up: abandoned
#   c  start D1 11:00, signup exactly 24 h later: finished (the edge counts)
#   d  start D1 12:00, signup 24 h and 1 ms later: abandoned (signed up too late)
#   e  signup D1 08:00, then a start 13:00 and nothing after: abandoned (a signup before the start is none)
#   f  starts D2 09:00 and 09:30, signup 09:35: finished, timed from the first start (2,100 s)
#   g  start D4 12:00, exactly 24 h before the newest event: in progress (the timeout is not past yet)
#   h  no start: only the newest event
# Resent: a's and b's starts (a second row on disk each).


@pytest.fixture
def signups(db: Client) -> Client:
    events = [
        page("a", T0, "/signup"), event("signup_started", "a", T0 + timedelta(minutes=1), step="email"),
        event("signup", "a", T0 + timedelta(minutes=6)),
        event("signup_started", "b", T0 + timedelta(hours=1)),
        event("signup_started", "c", T0 + timedelta(hours=2)), event("signup", "c", T0 + timedelta(hours=2) + DAY),
        event("signup_started", "d", T0 + timedelta(hours=3)),
        event("signup", "d", T0 + timedelta(hours=3) + DAY + MS),
        event("signup", "e", T0 - timedelta(hours=1)), event("signup_started", "e", T0 + timedelta(hours=4)),
        event("signup_started", "f", T0 + DAY), event("signup_started", "f", T0 + DAY + timedelta(minutes=30)),
        event("signup", "f", T0 + DAY + timedelta(minutes=35)),
        event("signup_started", "g", T0 + 3 * DAY + timedelta(hours=3)),
        event("login", "h", T0 + 4 * DAY + timedelta(hours=3)),
    ]  # fmt: skip
    insert(db, events)
    insert(db, [events[1], events[3]])
    return db


def test_each_starter_has_its_outcome(signups: Client) -> None:
    users = {r.pop("user_id"): r for r in rows(signups, "SELECT * FROM kpi_signup_abandonment_users ORDER BY user_id")}
    outcomes = {user: (u["finished"], u["abandoned"], u["in_progress"]) for user, u in users.items()}
    assert outcomes == {
        "a": OUTCOME_FLAGS[FINISHED], "b": OUTCOME_FLAGS[ABANDONED], "c": OUTCOME_FLAGS[FINISHED],
        "d": OUTCOME_FLAGS[ABANDONED], "e": OUTCOME_FLAGS[ABANDONED], "f": OUTCOME_FLAGS[FINISHED],
        "g": OUTCOME_FLAGS[IN_PROGRESS],
    }  # fmt: skip
    assert {user: u["signup_s"] for user, u in users.items()} == {
        "a": 300.0, "b": None, "c": 86400.0, "d": 86400.001, "e": None, "f": 2100.0, "g": None,
    }  # fmt: skip
    assert users["f"]["started_at"] == datetime(2024, 5, 2, 9, 0)  # the first start


def test_abandonment_per_day_of_the_first_start_and_for_all_time(signups: Client) -> None:
    days = by_day(signups, "kpi_signup_abandonment_daily")
    assert days == {
        "2024-05-01": {"signup_starters": 5, "signup_finished": 2, "signup_abandoned": 3, "signup_in_progress": 0,
                       "signup_settled": 5, "signup_abandonment_pct": 60.0},
        "2024-05-02": {"signup_starters": 1, "signup_finished": 1, "signup_abandoned": 0, "signup_in_progress": 0,
                       "signup_settled": 1, "signup_abandonment_pct": 0.0},
        "2024-05-04": {"signup_starters": 1, "signup_finished": 0, "signup_abandoned": 0, "signup_in_progress": 1,
                       "signup_settled": 0, "signup_abandonment_pct": None},
    }  # fmt: skip
    total = one(signups, "SELECT * FROM kpi_signup_abandonment")
    assert total == {"signup_starters": 7, "signup_finished": 3, "signup_abandoned": 3, "signup_in_progress": 1,
                     "signup_settled": 6, "signup_abandonment_pct": 50.0}  # fmt: skip
    summed = one(
        signups, "SELECT sum(signup_abandoned) AS a, sum(signup_settled) AS s FROM kpi_signup_abandonment_daily"
    )
    assert (summed["a"], summed["s"]) == (total["signup_abandoned"], total["signup_settled"])


def test_a_start_is_abandoned_once_a_newer_event_is_past_its_timeout(signups: Client) -> None:
    """g's 24 hours end at the newest event: still in progress; one event a millisecond later settles it."""
    insert(signups, [event("login", "h", T0 + 4 * DAY + timedelta(hours=3) + MS)])
    g = one(signups, "SELECT finished, abandoned, in_progress FROM kpi_signup_abandonment_users WHERE user_id = 'g'")
    assert (g["finished"], g["abandoned"], g["in_progress"]) == OUTCOME_FLAGS[ABANDONED]
    assert one(signups, "SELECT signup_abandonment_pct FROM kpi_signup_abandonment")["signup_abandonment_pct"] == (
        pytest.approx(400 / 7)
    )


# --- product adoption ---------------------------------------------------------------------

# Days from 2024-05-01 (D1), UTC:
#   p  a page view D1: one-time
#   q  a page view D1 09:00 and a login D1 23:59:59.999: one UTC day, one-time
#   r  logins D1 23:59:59 and D2 00:00:00: two UTC days, a repeat user (of the D1 cohort)
#   s  signup D1, purchase D3 10:00, a feature D3 10:05: repeat, and intended use
#   t  a feature D2 10:00, then a purchase 11:00: paid, but no feature since: one-time, not intended use
#   u  subscription_started and a feature at the same millisecond D2 09:00: intended use ("at or after")
#   v  emails D1 and D5 (not product use), a page view D2: one-time, first used D2
#   w  custom.report_shared D3 and D4: custom events are product use, a repeat user
#   x  a ticket only: not a user
#   y  a purchase D3 and nothing else: paid without using a feature
# Resent: s's feature and r's second login.


@pytest.fixture
def adoption(db: Client) -> Client:
    end_of_d1 = T0 + timedelta(hours=15) - MS  # 2024-05-01 23:59:59.999
    events = [
        page("p", T0),
        page("q", T0), event("login", "q", end_of_d1),
        event("login", "r", end_of_d1 - timedelta(milliseconds=999)), event("login", "r", end_of_d1 + MS),
        event("signup", "s", T0), event("purchase", "s", T0 + 2 * DAY + timedelta(hours=1), order_id="s1", amount=29),
        event("feature_used", "s", T0 + 2 * DAY + timedelta(hours=1, minutes=5), feature="reports"),
        event("feature_used", "t", T0 + DAY + timedelta(hours=1), feature="reports"),
        event("purchase", "t", T0 + DAY + timedelta(hours=2), order_id="t1", amount=19),
        event("subscription_started", "u", T0 + DAY, plan="pro", mrr=99),
        event("feature_used", "u", T0 + DAY, feature="alerts"),
        event("email_opened", "v", T0, campaign="digest"), page("v", T0 + DAY),
        event("email_opened", "v", T0 + 4 * DAY, campaign="digest"),
        event("custom.report_shared", "w", T0 + 2 * DAY), event("custom.report_shared", "w", T0 + 3 * DAY),
        event("ticket_opened", "x", T0, ticket_id="x1"),
        event("purchase", "y", T0 + 2 * DAY, order_id="y1", amount=49),
    ]  # fmt: skip
    insert(db, events)
    insert(db, [events[7], events[4]])
    return db


def test_each_user_is_a_repeat_user_or_not_and_used_the_product_as_intended_or_not(adoption: Client) -> None:
    users = {r.pop("user_id"): r for r in rows(adoption, "SELECT * FROM kpi_product_adoption_users ORDER BY user_id")}
    assert {user: (u["repeat_user"], u["intended_use"]) for user, u in users.items()} == {
        "p": (0, 0), "q": (0, 0), "r": (1, 0), "s": (1, 1), "t": (0, 0), "u": (0, 1), "v": (0, 0), "w": (1, 0),
        "y": (0, 0),
    }  # fmt: skip
    assert users["v"]["first_used_at"] == datetime(2024, 5, 2, 9, 0)  # the emails are not use
    assert users["s"]["paid_at"] == datetime(2024, 5, 3, 10, 0) and users["p"]["paid_at"] is None


def test_adoption_per_day_of_the_first_use_and_for_all_time(adoption: Client) -> None:
    days = {day: (d["users"], d["repeat_users"], d["intended_use_users"])
            for day, d in by_day(adoption, "kpi_product_adoption_daily").items()}  # fmt: skip
    assert days == {"2024-05-01": (4, 2, 1), "2024-05-02": (3, 0, 1), "2024-05-03": (2, 1, 0)}
    total = one(adoption, "SELECT * FROM kpi_product_adoption")
    assert total == {"users": 9, "repeat_users": 3, "repeat_use_adoption_pct": pytest.approx(100 / 3),
                     "intended_use_users": 2, "intended_use_adoption_pct": pytest.approx(200 / 9)}  # fmt: skip
    d1 = by_day(adoption, "kpi_product_adoption_daily")["2024-05-01"]
    assert (d1["repeat_use_adoption_pct"], d1["intended_use_adoption_pct"]) == (50.0, 25.0)


# --- the simulator's ground truth -----------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(engine: Client) -> GroundTruth:
    simulation = simulate(SimulationConfig(customers=400, days=45, seed=11))
    truncate(engine, "events", "sessions", "funnel_steps", "churn_scores", "churn_alerts")
    load_simulation(engine, simulation)
    return simulation.truth


def ms(value: datetime) -> int:
    return round(value.replace(tzinfo=UTC).timestamp() * 1000)


def utc_day(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).date().isoformat()


def test_signup_abandonment_equals_the_simulators_truth(engine: Client, simulated: GroundTruth) -> None:
    engine.database = None
    outcomes = simulated.signup_outcomes()
    assert all(Counter(outcomes.values())[outcome] > 0 for outcome in OUTCOME_FLAGS)  # each kind is there
    viewed = rows(engine, "SELECT * FROM kpi_signup_abandonment_users")
    assert {r["user_id"]: (r["finished"], r["abandoned"], r["in_progress"]) for r in viewed} == {
        user_id: OUTCOME_FLAGS[outcome] for user_id, outcome in outcomes.items()
    }
    starts = {user_id: user.signup_starts[0].ts for user_id, user in simulated.users.items() if user.signup_starts}
    assert {r["user_id"]: ms(r["started_at"]) for r in viewed} == starts
    expected_days: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for user_id, outcome in outcomes.items():
        expected_days[utc_day(starts[user_id])][outcome] += 1
    days = by_day(engine, "kpi_signup_abandonment_daily")
    assert {day: (d["signup_finished"], d["signup_abandoned"], d["signup_in_progress"]) for day, d in days.items()} == {
        day: (n[FINISHED], n[ABANDONED], n[IN_PROGRESS]) for day, n in expected_days.items()
    }
    totals = simulated.totals["signup_outcomes"]
    total = one(engine, "SELECT * FROM kpi_signup_abandonment")
    assert (total["signup_starters"], total["signup_finished"], total["signup_abandoned"],
            total["signup_in_progress"]) == (totals["starters"], totals[FINISHED], totals[ABANDONED],
                                             totals[IN_PROGRESS])  # fmt: skip
    assert total["signup_abandonment_pct"] == pytest.approx(
        totals[ABANDONED] * 100 / (totals[FINISHED] + totals[ABANDONED]), rel=1e-12
    )


def test_product_adoption_equals_the_simulators_truth(engine: Client, simulated: GroundTruth) -> None:
    engine.database = None
    viewed = rows(engine, "SELECT user_id, first_used_at, repeat_user, intended_use FROM kpi_product_adoption_users")
    assert {r["user_id"]: (ms(r["first_used_at"]), r["repeat_user"], r["intended_use"]) for r in viewed} == {
        user_id: (user.first_use_ms, int(user.repeat_user), int(user.intended_use))
        for user_id, user in simulated.users.items() if user.first_use_ms is not None
    }  # fmt: skip
    expected_days: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for user in simulated.users.values():
        if user.first_use_ms is not None:
            cohort = expected_days[utc_day(user.first_use_ms)]
            cohort.update(users=1, repeat_users=user.repeat_user, intended_use_users=user.intended_use)
    days = by_day(engine, "kpi_product_adoption_daily")
    columns = ("users", "repeat_users", "intended_use_users")
    assert {day: [d[c] for c in columns] for day, d in days.items()} == {
        day: [cohort[c] for c in columns] for day, cohort in expected_days.items()
    }
    totals = simulated.totals
    total = one(engine, "SELECT users, repeat_users, intended_use_users FROM kpi_product_adoption")
    assert total == {"users": totals["product_users"], "repeat_users": totals["repeat_users"],
                     "intended_use_users": totals["intended_use_users"]}  # fmt: skip
    assert 0 < totals["intended_use_users"] < totals["repeat_users"] < totals["product_users"]
