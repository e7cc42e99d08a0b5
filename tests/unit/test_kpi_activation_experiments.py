"""The activation and experiments KPI views (migrations 0015 and 0016), on hand-made events and on the simulator.

Every hand-made event goes through the contract first, so the views are pinned on what the
pipeline can actually store. Merges of ``events`` are stopped, so a resent event stays a second
row on disk. The last tests load a simulation (devstack.offline_load) into the same engine and
compare with its ground truth. chdb opens one engine directory per process at a time: the module
opens its own and closes it when done.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from producers.simulator import SimulationConfig, simulate
from pulse.contract import PRODUCT_USE_TYPES, Event, is_product_use, validate
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

ACTIVATION_COLUMNS = [
    "visitors", "visitors_signed_up", "visitor_conversion_pct", "visit_to_signup_s_sum", "visit_to_signup_mean_s",
    "visit_to_signup_median_s",
    "signups", "onboarding_started", "onboarded", "onboarding_completion_pct", "onboarding_started_completion_pct",
    "onboarding_s_sum", "onboarding_mean_s", "onboarding_median_s", "onboarding_p90_s",
    "converted", "signup_conversion_pct", "time_to_convert_s_sum", "time_to_convert_mean_s",
    "time_to_convert_median_s", "time_to_convert_p90_s",
    "trials", "trial_conversions", "trial_to_paid_pct", "trial_to_paid_s_sum", "trial_to_paid_mean_s",
    "trial_to_paid_median_s", "trial_to_paid_p90_s",
]  # fmt: skip
FEATURE_COLUMNS = ["feature", "feature_users", "active_users", "feature_adoption_pct"]
VIEW_COLUMNS = {
    "kpi_activation_users": [
        "user_id", "first_seen_at", "signed_up_at", "onboarding_started_at", "onboarded_at", "trial_started_at",
        "trial_converted_at", "converted_at", "visit_to_signup_s", "onboarding_s", "trial_to_paid_s",
        "time_to_convert_s", "visitor_signed_up", "onboarded", "trial_converted", "converted",
    ],
    "kpi_activation_daily": ["day", *ACTIVATION_COLUMNS],
    "kpi_activation": ACTIVATION_COLUMNS,
    "kpi_feature_adoption_daily": ["day", *FEATURE_COLUMNS],
    "kpi_feature_adoption_monthly": ["month", *FEATURE_COLUMNS],
    "kpi_feature_adoption": FEATURE_COLUMNS,
    "kpi_experiment_users": [
        "experiment", "user_id", "variant", "exposed_at", "variants_seen", "goal", "converted_at", "time_to_goal_s",
        "converted",
    ],
    "kpi_experiments": [
        "experiment", "variant", "goal", "control_variant", "is_control", "exposed_users", "converted_users",
        "conversion_pct", "control_exposed_users", "control_converted_users", "control_conversion_pct", "lift_pct",
        "pooled_rate", "pooled_variance", "z_score", "p_value", "multi_variant_users",
    ],
}  # fmt: skip


engine = engine_fixture("kpi_activation_clickhouse", "events")
db = db_fixture("events")

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


# --- shape --------------------------------------------------------------------------------

test_view_columns_are_stable, test_every_view_and_column_is_documented = shape_tests(VIEW_COLUMNS, "## Activation")


def test_active_users_are_the_contracts_product_use() -> None:
    """kpi_feature_adoption_* count as active what pulse.contract.is_product_use does: its types, and custom.*."""
    sql = (MIGRATIONS_DIR / "0015_kpi_activation.sql").read_text()
    lists = re.findall(r"type IN \(([^)]*)\)\s+OR startsWith\(type, 'custom\.'\)", sql)
    assert len(lists) == 3
    for listed in lists:
        assert set(re.findall(r"'([a-z_]+)'", listed)) == PRODUCT_USE_TYPES


def test_without_events_the_all_time_views_give_nulls_not_zeros(db: Client) -> None:
    assert rows(db, "SELECT * FROM kpi_activation_daily") == rows(db, "SELECT * FROM kpi_experiments") == []
    total = one(db, "SELECT * FROM kpi_activation")
    assert total["signups"] == total["visitors"] == total["trials"] == 0
    assert total["onboarding_completion_pct"] is None and total["trial_to_paid_pct"] is None
    assert total["visitor_conversion_pct"] is None and total["onboarding_median_s"] is None
    assert rows(db, "SELECT * FROM kpi_feature_adoption") == []


# --- conversion, onboarding, trials -------------------------------------------------------


def test_the_articles_conversion_example(db: Client) -> None:
    """001:1281-1285: "352 conversions ... 1,582 total visitors ... 352 ÷ 1,582 = 0.2225 × 100 = 22.25%"."""
    events = [page(f"v{i}", T0 + timedelta(minutes=i % 600)) for i in range(1582)]
    events += [event("signup", f"v{i}", T0 + timedelta(minutes=i % 600, seconds=30)) for i in range(352)]
    insert(db, events)
    day = by_day(db, "kpi_activation_daily")["2024-05-01"]
    assert (day["visitors"], day["visitors_signed_up"]) == (1582, 352)
    assert day["visitor_conversion_pct"] == pytest.approx(352 * 100 / 1582)
    assert round(day["visitor_conversion_pct"], 2) == 22.25
    assert day["visit_to_signup_mean_s"] == day["visit_to_signup_median_s"] == 30.0
    assert one(db, "SELECT visitor_conversion_pct FROM kpi_activation")["visitor_conversion_pct"] == pytest.approx(
        22.250316
    )


# A hand-made story, days from 2024-05-01 (D1), UTC:
#   a  first page D1 09:00, signup 09:10, onboarding steps, completed 09:15 (300 s), trial D1 09:20,
#      subscription D11 09:20 (10 days) with its purchase: onboarded, trial converted, converted
#   b  first page D1 10:00, signup 10:05, one onboarding step, no completion; an add-on purchase D3 10:05
#      (2 days): converted without a trial
#   c  signup D2 12:00 with no page view, completed D2 12:10 (600 s), trial D2 12:30, subscription only
#      61 days later: a conversion (time to convert), but not the trial's (window 60 days)
#   d  trial D2 08:00, subscription D2 08:00 + 59 days: the trial converted, though d never signed up
#   e  subscription D1 08:00 before its trial D2 09:00, and nothing after: the trial did not convert
#   f  a purchase D1 07:00 before its signup D1 08:00 (not a conversion), none after
#   g  a page view D2 only: a visitor who did not sign up
# Resent: a's onboarding_completed and c's signup (a second row on disk each).


@pytest.fixture
def story(db: Client) -> Client:
    a, b, c, d, e, f, g = "abcdefg"
    at = T0
    events = [
        page(a, at), event("signup", a, at + timedelta(minutes=10)),
        event("onboarding_step", a, at + timedelta(minutes=11), step="profile"),
        event("onboarding_completed", a, at + timedelta(minutes=15)),
        event("trial_started", a, at + timedelta(minutes=20), plan="pro"),
        event("subscription_started", a, at + timedelta(minutes=20) + 10 * DAY, plan="pro", mrr=99),
        event("purchase", a, at + timedelta(minutes=20, seconds=5) + 10 * DAY, order_id="a1", amount=99),
        page(b, at + timedelta(hours=1)), event("signup", b, at + timedelta(hours=1, minutes=5)),
        event("onboarding_step", b, at + timedelta(hours=1, minutes=6), step="profile"),
        event("purchase", b, at + timedelta(hours=1, minutes=5) + 2 * DAY, order_id="b1", amount=19),
        event("signup", c, at + DAY + timedelta(hours=3)),
        event("onboarding_completed", c, at + DAY + timedelta(hours=3, minutes=10)),
        event("trial_started", c, at + DAY + timedelta(hours=3, minutes=30), plan="pro"),
        event("subscription_started", c, at + DAY + timedelta(hours=3, minutes=30) + 61 * DAY, plan="pro", mrr=99),
        event("trial_started", d, at + DAY - timedelta(hours=1), plan="starter"),
        event("subscription_started", d, at + DAY - timedelta(hours=1) + 59 * DAY, plan="starter", mrr=29),
        event("subscription_started", e, at - timedelta(hours=1), plan="pro", mrr=99),
        event("trial_started", e, at + DAY, plan="pro"),
        event("purchase", f, at - timedelta(hours=2), order_id="f1", amount=19),
        event("signup", f, at - timedelta(hours=1)),
        page(g, at + DAY),
    ]  # fmt: skip
    insert(db, events)
    insert(db, [events[3], events[11]])
    return db


def test_each_user_has_its_steps_in_order(story: Client) -> None:
    users = {row.pop("user_id"): row for row in rows(story, "SELECT * FROM kpi_activation_users ORDER BY user_id")}
    summary = {
        user: (u["onboarding_s"] if u["onboarded"] else None, u["trial_converted"],
               u["time_to_convert_s"] if u["converted"] else None)
        for user, u in users.items()
    }  # fmt: skip
    assert summary == {
        "a": (300.0, 1, 600.0 + 10 * 86400),  # converted by the subscription, 5 s before its purchase
        "b": (None, 0, 2 * 86400.0),
        "c": (600.0, 0, 1800.0 + 61 * 86400),
        "d": (None, 1, None),
        "e": (None, 0, None),
        "f": (None, 0, None),
        "g": (None, 0, None),
    }
    assert users["a"]["trial_to_paid_s"] == 10 * 86400.0 and users["d"]["trial_to_paid_s"] == 59 * 86400.0
    assert users["c"]["trial_converted_at"] is None and users["e"]["trial_converted_at"] is None
    assert users["b"]["onboarding_started_at"] is not None and users["b"]["onboarded_at"] is None
    assert (users["a"]["visit_to_signup_s"], users["a"]["visitor_signed_up"]) == (600.0, 1)
    assert users["c"]["first_seen_at"] is None and users["c"]["visitor_signed_up"] == 0


def test_activation_daily_puts_each_cohort_on_its_first_day(story: Client) -> None:
    days = by_day(story, "kpi_activation_daily")
    assert list(days) == ["2024-05-01", "2024-05-02"]
    d1, d2 = days["2024-05-01"], days["2024-05-02"]
    keys = ["visitors", "visitors_signed_up", "signups", "onboarding_started", "onboarded", "converted", "trials",
            "trial_conversions"]  # fmt: skip
    assert [d1[k] for k in keys] == [2, 2, 3, 2, 1, 2, 1, 1]  # a, b visit and sign up; f signs up
    assert [d2[k] for k in keys] == [1, 0, 1, 1, 1, 1, 3, 1]  # g visits; c signs up; c, d, e start trials
    assert d1["onboarding_completion_pct"] == pytest.approx(100 / 3)
    assert d1["onboarding_started_completion_pct"] == 50.0
    assert (d1["onboarding_s_sum"], d1["onboarding_mean_s"], d1["onboarding_median_s"]) == (300.0, 300.0, 300.0)
    assert d1["signup_conversion_pct"] == pytest.approx(200 / 3)
    assert d1["time_to_convert_mean_s"] == pytest.approx((600 + 10 * 86400 + 2 * 86400) / 2)
    assert (d1["trial_to_paid_pct"], d2["trial_to_paid_pct"]) == (100.0, pytest.approx(100 / 3))
    assert d2["trial_to_paid_mean_s"] == 59 * 86400.0
    assert (d2["visitor_conversion_pct"], d2["visit_to_signup_mean_s"]) == (0.0, None)


def test_activation_all_time_and_the_daily_parts_add_up(story: Client) -> None:
    total = one(story, "SELECT * FROM kpi_activation")
    assert (total["signups"], total["onboarded"], total["trials"], total["trial_conversions"]) == (4, 2, 4, 2)
    assert (total["onboarding_completion_pct"], total["trial_to_paid_pct"]) == (50.0, 50.0)
    assert total["onboarding_median_s"] == 450.0 and total["onboarding_p90_s"] == pytest.approx(300 + 0.9 * 300)
    assert total["trial_to_paid_median_s"] == pytest.approx((10 + 59) / 2 * 86400)
    assert total["converted"] == 3 and total["signup_conversion_pct"] == 75.0
    summed = one(
        story,
        "SELECT sum(signups) AS s, sum(onboarded) AS o, sum(trials) AS t, sum(trial_conversions) AS tc, "
        "sum(onboarding_s_sum) / sum(onboarded) AS om, sum(converted) AS c, sum(visitors) AS v "
        "FROM kpi_activation_daily",
    )
    names = {"s": "signups", "o": "onboarded", "t": "trials", "tc": "trial_conversions", "om": "onboarding_mean_s",
             "c": "converted", "v": "visitors"}  # fmt: skip
    assert {names[key]: value for key, value in summed.items()} == {name: total[name] for name in names.values()}


# --- feature adoption ---------------------------------------------------------------------


def test_feature_adoption_is_feature_users_over_active_users(db: Client) -> None:
    """004:35: a feature's active users over the active users of the same period, x 100."""
    may2, june = T0 + DAY, T0 + 31 * DAY  # 2024-05-02 and 2024-06-01
    uses = [
        event("feature_used", "a", T0, feature="reports"), event("feature_used", "a", T0, feature="reports"),
        event("feature_used", "a", T0, feature="alerts"), event("feature_used", "b", T0, feature="reports"),
        event("login", "c", T0), page("d", T0),
        event("email_opened", "e", T0, campaign="x"),  # not product use: not active
        event("custom.report_shared", "f", T0),  # a custom event is product use
        event("feature_used", "c", may2, feature="alerts"),
        event("feature_used", "a", june, feature="reports"), event("login", "b", june),
    ]  # fmt: skip
    insert(db, uses)
    insert(db, uses[:1])  # resent
    days = {(str(r["day"]), r["feature"]): (r["feature_users"], r["active_users"], r["feature_adoption_pct"])
            for r in rows(db, "SELECT * FROM kpi_feature_adoption_daily")}  # fmt: skip
    assert days == {
        ("2024-05-01", "reports"): (2, 5, 40.0), ("2024-05-01", "alerts"): (1, 5, 20.0),
        ("2024-05-02", "alerts"): (1, 1, 100.0),
        ("2024-06-01", "reports"): (1, 2, 50.0),
    }  # fmt: skip
    months = {(str(r["month"]), r["feature"]): (r["feature_users"], r["active_users"])
              for r in rows(db, "SELECT * FROM kpi_feature_adoption_monthly")}  # fmt: skip
    assert months == {
        ("2024-05-01", "reports"): (2, 5), ("2024-05-01", "alerts"): (2, 5),  # a, b, c, d, f active in May
        ("2024-06-01", "reports"): (1, 2),
    }  # fmt: skip
    total = rows(db, "SELECT * FROM kpi_feature_adoption")
    expected = {"reports": (2, 5), "alerts": (2, 5)}
    assert {r["feature"]: (r["feature_users"], r["active_users"]) for r in total} == expected


# --- experiments --------------------------------------------------------------------------


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """The z score of x2/n2 against x1/n1 with the pooled standard error, and its two-sided p-value."""
    pooled = (x1 + x2) / (n1 + n2)
    z = (x2 / n2 - x1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return z, 1 - math.erf(abs(z) / math.sqrt(2))


def exposures(experiment: str, variant: str, users: int, converted: int, goal_type: str = "purchase",
              prefix: str = "", **props: Any) -> list[Event]:  # fmt: skip
    """``users`` exposed on a page view, ``converted`` of them with a ``goal_type`` event an hour later."""
    events = []
    for i in range(users):
        user = f"{prefix or variant}{i}"
        at = T0 + timedelta(minutes=i)
        events.append(page(user, at, "/pricing", experiment=experiment, variant=variant, **props))
        if i < converted:
            goal_props = {"order_id": f"{user}-o", "amount": 10} if goal_type == "purchase" else {}
            goal_props |= {"plan": "pro"} if goal_type == "trial_started" else {}
            events.append(event(goal_type, user, T0 + timedelta(minutes=i, hours=1), **goal_props))
    return events


def test_conversion_by_variant_with_a_two_proportion_z_test(db: Client) -> None:
    """Control 40 of 200, challenger 60 of 200: z and p as computed independently here with math.erf."""
    insert(db, exposures("pricing_page", "control", 200, 40) + exposures("pricing_page", "challenger", 200, 60))
    by_variant = {r["variant"]: r for r in rows(db, "SELECT * FROM kpi_experiments")}
    control, challenger = by_variant["control"], by_variant["challenger"]
    assert control["control_variant"] == challenger["control_variant"] == "control"  # named 'control', not first
    assert (control["is_control"], control["z_score"], control["p_value"], control["lift_pct"]) == (1, None, None, None)
    assert (challenger["exposed_users"], challenger["converted_users"], challenger["conversion_pct"]) == (200, 60, 30.0)
    assert (challenger["control_exposed_users"], challenger["control_converted_users"]) == (200, 40)
    assert (challenger["control_conversion_pct"], challenger["lift_pct"]) == (20.0, 50.0)
    assert challenger["goal"] == "purchase"
    z, p = two_proportion_p(40, 200, 60, 200)
    assert challenger["z_score"] == pytest.approx(z, rel=1e-9)
    assert challenger["p_value"] == pytest.approx(p, rel=1e-9)
    assert round(z, 4) == 2.3094 and round(p, 4) == 0.0209  # 0.3 - 0.2 over sqrt(0.25 * 0.75 * 2 / 200)


def test_control_is_the_first_variant_alphabetically_without_one_named_control(db: Client) -> None:
    insert(db, exposures("cta", "B", 50, 10, prefix="b") + exposures("cta", "A", 40, 20, prefix="a")
           + exposures("cta", "C", 30, 0, prefix="c"))  # fmt: skip
    by_variant = {r["variant"]: r for r in rows(db, "SELECT * FROM kpi_experiments")}
    assert {r["control_variant"] for r in by_variant.values()} == {"A"}
    z, p = two_proportion_p(20, 40, 10, 50)
    assert (by_variant["B"]["z_score"], by_variant["B"]["p_value"]) == (pytest.approx(z), pytest.approx(p))
    assert by_variant["B"]["lift_pct"] == pytest.approx(-60.0)
    assert by_variant["A"]["p_value"] is None and by_variant["C"]["conversion_pct"] == 0.0


def test_goal_exposure_and_variant_rules(db: Client) -> None:
    """The goal named by props.goal; a goal before the exposure does not count; a user stays in its first variant."""
    events = exposures("onboarding_copy", "control", 3, 1, "trial_started", prefix="k", goal="trial_started")
    events += exposures("onboarding_copy", "short", 3, 2, "trial_started", prefix="s")
    events += [
        event("trial_started", "s2", T0 - DAY, plan="pro"),  # s2: a trial before its exposure only
        event("purchase", "s1", T0 + DAY, order_id="x", amount=5),  # a purchase is not this experiment's goal
        page("k0", T0 + DAY, experiment="onboarding_copy", variant="short"),  # k0 seen again in the other variant
        page("z", T0, experiment="", variant="short"),  # an empty experiment is no exposure
    ]  # fmt: skip
    insert(db, events)
    users = {r["user_id"]: r for r in rows(db, "SELECT * FROM kpi_experiment_users")}
    assert set(users) == {"k0", "k1", "k2", "s0", "s1", "s2"}
    assert {u["goal"] for u in users.values()} == {"trial_started"}
    assert (users["k0"]["variant"], users["k0"]["variants_seen"], users["k0"]["converted"]) == ("control", 2, 1)
    assert users["k0"]["time_to_goal_s"] == 3600.0
    assert [users[u]["converted"] for u in ("s0", "s1", "s2")] == [1, 1, 0]
    by_variant = {r["variant"]: r for r in rows(db, "SELECT * FROM kpi_experiments")}
    assert (by_variant["control"]["converted_users"], by_variant["control"]["multi_variant_users"]) == (1, 1)
    assert (by_variant["short"]["exposed_users"], by_variant["short"]["converted_users"]) == (3, 2)


def test_resent_events_change_no_experiment_figure(db: Client) -> None:
    events = exposures("e", "control", 10, 5) + exposures("e", "b", 10, 8)
    insert(db, events)
    before = rows(db, "SELECT * FROM kpi_experiments ORDER BY variant")
    insert(db, events)
    assert rows(db, "SELECT * FROM kpi_experiments ORDER BY variant") == before


def test_no_z_score_when_nobody_or_everybody_converts(db: Client) -> None:
    insert(db, exposures("e", "control", 10, 0) + exposures("e", "b", 10, 0))
    b = one(db, "SELECT z_score, p_value, lift_pct, conversion_pct FROM kpi_experiments WHERE variant = 'b'")
    assert b == {"z_score": None, "p_value": None, "lift_pct": None, "conversion_pct": 0.0}


# --- the simulator's ground truth -----------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(engine: Client) -> tuple[Any, list[bytes]]:
    simulation = simulate(SimulationConfig(customers=400, days=45, seed=11))
    truncate(engine, "events", "sessions", "funnel_steps", "churn_scores", "churn_alerts")
    return simulation.truth, load_simulation(engine, simulation)


def test_activation_equals_the_simulators_truth(engine: Client, simulated: tuple[Any, list[bytes]]) -> None:
    truth, _ = simulated
    totals = truth.totals
    total = one(engine, "SELECT signups, onboarded, trials, trial_conversions, trial_to_paid_pct FROM kpi_activation")
    assert total["trial_conversions"] > 0
    assert (total["signups"], total["onboarded"], total["trials"], total["trial_conversions"]) == (
        totals["signups"], totals["onboarding_completions"], totals["trials"], totals["trial_conversions"],
    )  # fmt: skip
    assert round(total["trial_to_paid_pct"], 4) == round(totals["trial_conversions"] * 100 / totals["trials"], 4)
    per_user = rows(engine, "SELECT user_id, signed_up_at, onboarded_at FROM kpi_activation_users "
                            "WHERE signed_up_at IS NOT NULL")  # fmt: skip
    assert {r["user_id"]: round(r["signed_up_at"].timestamp() * 1000) for r in per_user} == {
        user: t.funnel["signup"] for user, t in truth.users.items() if "signup" in t.funnel
    }
    onboarded = {r["user_id"]: round(r["onboarded_at"].timestamp() * 1000) for r in per_user if r["onboarded_at"]}
    assert onboarded == {
        user: t.funnel["onboarding_completed"] for user, t in truth.users.items() if "onboarding_completed" in t.funnel
    }


def test_feature_adoption_on_the_simulation(engine: Client, simulated: tuple[Any, list[bytes]]) -> None:
    """The truth has no feature figure: the view against a count over the emitted lines, read here independently."""
    _, lines = simulated
    active: set[str] = set()
    users_by_feature: dict[str, set[str]] = {}
    for line in lines:
        try:
            checked = validate(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
        if isinstance(checked, Event) and is_product_use(checked.type):
            active.add(checked.user_id)
            if checked.type == "feature_used":
                users_by_feature.setdefault(checked.props["feature"], set()).add(checked.user_id)
    viewed = rows(engine, "SELECT * FROM kpi_feature_adoption")
    adoption = {r["feature"]: (r["feature_users"], r["active_users"]) for r in viewed}
    assert adoption == {feature: (len(users), len(active)) for feature, users in users_by_feature.items()}
    assert len(adoption) == 7
