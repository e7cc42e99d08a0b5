"""The retention and revenue KPI views (migrations 0013 and 0014) on hand-made events, then on the simulator's.

Every hand-made event goes through the contract first, so the views are pinned on what the pipeline
can actually store; merges of ``events`` are stopped, so a resent event stays a second row on disk
and only the views' ``FINAL`` can fold it. The simulator's run is loaded by
:func:`devstack.offline_load.load_tables` into the same engine (chdb opens one engine directory per
process at a time: the module opens its own and closes it when done), its views read once, and the
tables emptied again for the hand-made tests; the figures are compared with its ground truth.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from producers.simulator import SimulationConfig, simulate
from pulse.contract import PRODUCT_USE_TYPES, Event
from tests.unit.kpi_views import (
    by_key,
    engine_fixture,
    event,
    insert,
    load_simulation,
    one,
    rows,
    shape_tests,
    truncate,
)

MIGRATIONS = Path(__file__).resolve().parents[2] / "sinks" / "migrations"
TABLES = ("events", "sessions", "funnel_steps", "churn_scores", "churn_alerts")

REVENUE_COLUMNS = [
    "orders", "gross_revenue", "refunds", "refunded_amount", "revenue", "paying_customers",
    "average_order_value", "purchase_frequency", "customer_value",
]  # fmt: skip
VIEW_COLUMNS = {
    "kpi_cohort_retention": [
        "period_kind", "cohort", "periods_since_signup", "period_start", "cohort_users", "retained_users",
        "retention_pct",
    ],
    "kpi_mrr_daily": ["day", "subscribers", "mrr", "new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr"],
    "kpi_retention_monthly": [
        "month", "customers_start", "customers_end", "customers_new", "customers_lost", "retention_pct", "churn_pct",
        "lifespan_months", "cancellations", "mrr_start", "mrr_end", "mrr_new", "mrr_expansion", "mrr_contraction",
        "mrr_churned", "mrr_churn_pct", "net_mrr_churn_pct", "net_revenue_retention_pct",
    ],
    "kpi_subscriptions": ["subscribers", "mrr", "customers_ever", "cancelled_customers", "cancellations"],
    "kpi_churned_users": ["user_id", "churned_at", "cause", "reasons"],
    "kpi_churn": ["scored_users", "churned_users", "churned_cancelled", "churned_inactive", "churned_pct"],
    "kpi_orders": [
        "order_id", "user_id", "ordered_at", "day", "amount", "refunds", "refunded_amount", "net_amount", "refunded",
    ],
    "kpi_revenue_daily": ["day", *REVENUE_COLUMNS],
    "kpi_revenue_monthly": ["month", *REVENUE_COLUMNS, "repeat_customers", "repeat_purchase_pct"],
    "kpi_revenue": [*REVENUE_COLUMNS, "repeat_customers", "repeat_purchase_pct"],
    "kpi_clv_cohorts": [
        "cohort", "customers", "orders", "revenue", "months_observed", "average_order_value", "purchase_frequency",
        "customer_value", "lifespan_months", "clv",
    ],
}  # fmt: skip

# Two calendar months (November and half of December 2025), with subscribers met mid-story so that
# December starts with customers and loses some; small enough to load in seconds.
SIMULATION = SimulationConfig(customers=100, days=40, seed=13, existing_customers=50)
# The churn job's clock is its event time, per partition: at the end of the run it has passed every
# moment a day before the window's end, but not necessarily the last hours (see the churn test).
SETTLED_MS = 24 * 3600 * 1000


engine = engine_fixture("kpi_retention_clickhouse", "events")


@pytest.fixture
def db(engine: Client, simulated: dict[str, list[dict[str, Any]]]) -> Client:
    truncate(engine, *TABLES)  # after the simulation's figures were read (the fixture asks for them first)
    return engine


def start(user: str, ts: str, mrr: float, plan: str = "pro") -> Event:
    return event("subscription_started", user, ts, plan=plan, mrr=mrr)


def change(user: str, ts: str, mrr: float, plan: str = "business") -> Event:
    return event("subscription_changed", user, ts, plan=plan, mrr=mrr)


def cancel(user: str, ts: str) -> Event:
    return event("subscription_cancelled", user, ts, reason="price")


def purchase(user: str, ts: str, order_id: str, amount: float) -> Event:
    return event("purchase", user, ts, order_id=order_id, amount=amount, currency="USD")


def refund(user: str, ts: str, order_id: str, amount: float) -> Event:
    return event("refund", user, ts, order_id=order_id, amount=amount, currency="USD")


# --- shape --------------------------------------------------------------------------------


test_view_columns_are_stable, test_every_view_and_column_is_documented = shape_tests(VIEW_COLUMNS, "## Retention")


def test_product_use_is_the_contracts() -> None:
    """Cohort retention counts the contract's product use (pulse.contract.PRODUCT_USE_TYPES) and custom.* types."""
    sql = (MIGRATIONS / "0013_kpi_retention.sql").read_text()
    view = sql[
        sql.index("CREATE VIEW IF NOT EXISTS kpi_cohort_retention") : sql.index("CREATE VIEW IF NOT EXISTS kpi_mrr")
    ]
    listed = view[view.index("WHERE type IN (") : view.index(")", view.index("WHERE type IN ("))]
    assert set(re.findall(r"'([a-z_]+)'", listed)) == PRODUCT_USE_TYPES
    assert "OR startsWith(type, 'custom.')" in view


def test_without_events_the_all_time_views_give_zeros_and_nulls(db: Client) -> None:
    for view in ("kpi_cohort_retention", "kpi_mrr_daily", "kpi_retention_monthly", "kpi_churned_users",
                 "kpi_orders", "kpi_revenue_daily", "kpi_revenue_monthly", "kpi_clv_cohorts"):  # fmt: skip
        assert rows(db, f"SELECT * FROM {view}") == [], view
    assert one(db, "SELECT * FROM kpi_subscriptions") == {
        "subscribers": 0, "mrr": 0.0, "customers_ever": 0, "cancelled_customers": 0, "cancellations": 0,
    }  # fmt: skip
    churn = one(db, "SELECT * FROM kpi_churn")
    assert churn["scored_users"] == churn["churned_users"] == 0 and churn["churned_pct"] is None
    revenue = one(db, "SELECT * FROM kpi_revenue")
    assert revenue["orders"] == revenue["paying_customers"] == 0 and revenue["revenue"] == 0.0
    assert revenue["average_order_value"] is None and revenue["repeat_purchase_pct"] is None


# --- cohort retention ---------------------------------------------------------------------
#
# Weeks start on Monday: 2024-04-29, 05-06, 05-13, 05-20, ... Signups:
#   a  Wed 2024-05-01 (week of 04-29, month 2024-05): active again 05-08 (week 1), 05-22 (week 3), 06-03 (month 1)
#   b  Mon 2024-05-06 (week of 05-06): logs in on 05-07 (week 0) and only gets emails afterwards
#   c  Sun 2024-05-05 (week of 04-29): feature use 05-13 (week 2); a second signup 05-20 changes nothing
#   x  never signs up: no cohort, but its login on 2024-06-04 is the latest product use (week of 06-03)


@pytest.fixture
def cohorts(db: Client) -> Client:
    insert(db, [
        event("signup", "a", "2024-05-01 10:00:00"),
        event("login", "a", "2024-05-08 10:00:00"),
        event("feature_used", "a", "2024-05-22 10:00:00", feature="reports"),
        event("custom.export_done", "a", "2024-06-03 10:00:00"),
        event("signup", "b", "2024-05-06 00:00:00"),
        event("login", "b", "2024-05-07 10:00:00"),
        event("email_opened", "b", "2024-05-14 10:00:00", campaign="digest"),
        event("survey_response", "b", "2024-05-21 10:00:00", kind="nps", score=3),
        event("subscription_cancelled", "b", "2024-06-03 10:00:00"),
        event("signup", "c", "2024-05-05 23:59:59"),
        event("feature_used", "c", "2024-05-13 09:00:00", feature="reports"),
        event("signup", "c", "2024-05-20 09:00:00"),
        event("login", "x", "2024-06-04 09:00:00"),
    ])  # fmt: skip
    return db


def test_weekly_cohorts_count_product_use_in_each_calendar_week_since_signup(cohorts: Client) -> None:
    weekly = rows(cohorts, "SELECT * FROM kpi_cohort_retention WHERE period_kind = 'week' "
                           "ORDER BY cohort, periods_since_signup")  # fmt: skip
    table = {(str(r["cohort"]), r["periods_since_signup"]): (str(r["period_start"]), r["cohort_users"],
                                                              r["retained_users"]) for r in weekly}  # fmt: skip
    assert table == {
        ("2024-04-29", 0): ("2024-04-29", 2, 2),  # a and c signed up that week
        ("2024-04-29", 1): ("2024-05-06", 2, 1),  # a
        ("2024-04-29", 2): ("2024-05-13", 2, 1),  # c's feature use
        ("2024-04-29", 3): ("2024-05-20", 2, 2),  # a's feature use and c's second signup
        ("2024-04-29", 4): ("2024-05-27", 2, 0),  # nobody: the zero is a row of its own
        ("2024-04-29", 5): ("2024-06-03", 2, 1),  # a's custom event; the last week is the latest product use's
        ("2024-05-06", 0): ("2024-05-06", 1, 1),
        ("2024-05-06", 1): ("2024-05-13", 1, 0),  # an opened email, a survey, a cancellation: not product use
        ("2024-05-06", 2): ("2024-05-20", 1, 0),
        ("2024-05-06", 3): ("2024-05-27", 1, 0),
        ("2024-05-06", 4): ("2024-06-03", 1, 0),
    }
    week_two = next(r for r in weekly if str(r["cohort"]) == "2024-04-29" and r["periods_since_signup"] == 1)
    assert week_two["retention_pct"] == 50.0


def test_monthly_cohorts(cohorts: Client) -> None:
    monthly = rows(cohorts, "SELECT * FROM kpi_cohort_retention WHERE period_kind = 'month' "
                            "ORDER BY cohort, periods_since_signup")  # fmt: skip
    assert [
        (
            str(r["cohort"]),
            r["periods_since_signup"],
            str(r["period_start"]),
            r["cohort_users"],
            r["retained_users"],
            r["retention_pct"],
        )
        for r in monthly
    ] == [  # fmt: skip
        ("2024-05-01", 0, "2024-05-01", 3, 3, 100.0),
        ("2024-05-01", 1, "2024-06-01", 3, 1, 100 / 3),
    ]


# --- churn and retention rates --------------------------------------------------------------
#
# The article's example (002:488-490): 450 customers at the start of May 2024, 300 at its end, 25 of
# them new. 450 subscribe in April at 100 a month; in May 175 of them cancel (one cancels twice), 20
# upgrade to 200, 10 downgrade to 50, one cancels and subscribes again at 100; 25 new ones subscribe
# at 100 and one more subscribes and cancels within May. One subscription event is resent.


@pytest.fixture
def article(db: Client) -> Client:
    events = [start(f"c{i:03d}", "2024-04-10 12:00:00", 100) for i in range(450)]
    events += [cancel(f"c{i:03d}", "2024-05-15 12:00:00") for i in range(175)]
    events += [cancel("c000", "2024-05-20 12:00:00")]
    events += [change(f"c{i:03d}", "2024-05-10 12:00:00", 200) for i in range(175, 195)]
    events += [change(f"c{i:03d}", "2024-05-11 12:00:00", 50, "starter") for i in range(195, 205)]
    events += [cancel("c300", "2024-05-02 12:00:00"), start("c300", "2024-05-03 12:00:00", 100)]
    events += [start(f"n{i:02d}", "2024-05-20 12:00:00", 100) for i in range(25)]
    events += [start("gone", "2024-05-05 12:00:00", 100), cancel("gone", "2024-05-06 12:00:00")]
    insert(db, events)
    insert(db, [events[0]])
    return db


def test_retention_rate_is_the_articles_example(article: Client) -> None:
    """002:488-490: (ending customers - new customers) / total customers * 100; (300 - 25) / 450 * 100 = 61.1%."""
    may = by_key(article, "kpi_retention_monthly", "month")["2024-05-01"]
    counts = {key: may[key] for key in ("customers_start", "customers_end", "customers_new", "customers_lost")}
    assert counts == {"customers_start": 450, "customers_end": 300, "customers_new": 25, "customers_lost": 175}
    assert may["retention_pct"] == pytest.approx((300 - 25) / 450 * 100)
    assert round(may["retention_pct"], 1) == 61.1


def test_churn_rate_is_lost_over_customers_at_the_start(article: Client) -> None:
    """002:269: subscribers who cancelled / subscribers at the beginning of the month; retention is its opposite."""
    may = by_key(article, "kpi_retention_monthly", "month")["2024-05-01"]
    assert may["churn_pct"] == pytest.approx(175 / 450 * 100)
    assert may["retention_pct"] + may["churn_pct"] == pytest.approx(100)
    assert may["lifespan_months"] == pytest.approx(450 / 175)  # 1 / monthly churn rate, in months
    assert may["cancellations"] == 178  # 175, c000's second, c300's and gone's: events, not customers
    april = by_key(article, "kpi_retention_monthly", "month")["2024-04-01"]
    assert (april["customers_start"], april["customers_end"], april["customers_new"]) == (0, 450, 450)
    assert april["retention_pct"] is None and april["churn_pct"] is None and april["lifespan_months"] is None


def test_mrr_churn_and_net_revenue_retention(article: Client) -> None:
    may = by_key(article, "kpi_retention_monthly", "month")["2024-05-01"]
    money = {key: may[key] for key in ("mrr_start", "mrr_end", "mrr_new", "mrr_expansion", "mrr_contraction",
                                       "mrr_churned")}  # fmt: skip
    assert money == {"mrr_start": 45000.0, "mrr_end": 31500.0, "mrr_new": 2500.0, "mrr_expansion": 2000.0,
                     "mrr_contraction": 500.0, "mrr_churned": 17500.0}  # fmt: skip
    assert (
        may["mrr_end"]
        == may["mrr_start"] + may["mrr_new"] + may["mrr_expansion"] - may["mrr_contraction"] - (may["mrr_churned"])
    )
    assert may["mrr_churn_pct"] == pytest.approx(17500 / 45000 * 100)
    assert may["net_mrr_churn_pct"] == pytest.approx((17500 + 500 - 2000) / 45000 * 100)
    assert may["net_revenue_retention_pct"] == pytest.approx((45000 - 17500 - 500 + 2000) / 45000 * 100)
    assert one(article, "SELECT * FROM kpi_subscriptions") == {
        "subscribers": 300, "mrr": 31500.0, "customers_ever": 476, "cancelled_customers": 177, "cancellations": 178,
    }  # fmt: skip


def test_net_mrr_churn_is_negative_when_expansion_outgrows_the_losses(db: Client) -> None:
    """002:510-512: "a negative MRR churn rate is good"; the net MRR churn rate can be negative, the lost MRR not."""
    insert(db, [start("a", "2024-04-01 00:00:00", 100), start("b", "2024-04-01 00:00:00", 100),
                change("a", "2024-05-03 00:00:00", 300), cancel("b", "2024-05-04 00:00:00")])  # fmt: skip
    may = by_key(db, "kpi_retention_monthly", "month")["2024-05-01"]
    assert (may["mrr_churn_pct"], may["net_mrr_churn_pct"], may["net_revenue_retention_pct"]) == (50.0, -50.0, 150.0)


def test_mrr_daily_runs_the_subscriptions_day_by_day(db: Client) -> None:
    insert(db, [
        start("a", "2024-05-01 10:00:00", 29),
        start("b", "2024-05-02 10:00:00", 99),
        change("a", "2024-05-03 10:00:00", 99),
        change("b", "2024-05-03 11:00:00", 29, "starter"),
        cancel("b", "2024-05-04 10:00:00"),
        cancel("b", "2024-05-04 11:00:00"),  # a second cancellation changes nothing
        start("b", "2024-05-06 10:00:00", 29),  # back: new MRR again
        cancel("c", "2024-05-06 10:00:00"),  # never subscribed: nothing to lose
        purchase("a", "2024-05-07 10:00:00", "o1", 99),  # the last day of the span
    ])  # fmt: skip
    days = by_key(db, "kpi_mrr_daily", "day")
    assert {day: tuple(d.values()) for day, d in days.items()} == {
        # subscribers, mrr, new, expansion, contraction, churned
        "2024-05-01": (1, 29.0, 29.0, 0.0, 0.0, 0.0),
        "2024-05-02": (2, 128.0, 99.0, 0.0, 0.0, 0.0),
        "2024-05-03": (2, 128.0, 0.0, 70.0, 70.0, 0.0),
        "2024-05-04": (1, 99.0, 0.0, 0.0, 0.0, 29.0),
        "2024-05-05": (1, 99.0, 0.0, 0.0, 0.0, 0.0),
        "2024-05-06": (2, 128.0, 29.0, 0.0, 0.0, 0.0),
        "2024-05-07": (2, 128.0, 0.0, 0.0, 0.0, 0.0),
    }
    assert one(db, "SELECT subscribers, mrr FROM kpi_subscriptions") == {"subscribers": 2, "mrr": 128.0}


def test_a_cancellation_at_the_same_millisecond_as_a_start_ends_the_subscription(db: Client) -> None:
    insert(db, [cancel("a", "2024-05-01 10:00:00"), start("a", "2024-05-01 10:00:00", 29)])
    assert one(db, "SELECT subscribers, mrr, cancelled_customers FROM kpi_subscriptions") == {
        "subscribers": 0, "mrr": 0.0, "cancelled_customers": 1,
    }  # fmt: skip


# --- churned users (churn_scores) ---------------------------------------------------------------


def test_churned_users_are_those_whose_latest_score_is_churned(db: Client) -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)
    scores = [
        ("a", 1.0, "churned", ["subscription cancelled"], at, 1),
        ("b", 1.0, "churned", ["no activity for 30 days"], at, 1),
        ("b", 0.1, "low", [], at + timedelta(days=2), 2),  # came back
        ("c", 0.5, "medium", ["no activity for 16 days"], at, 1),
        ("d", 0.8, "high", ["no activity for 25 days"], at, 1),
        ("d", 1.0, "churned", ["no activity for 30 days", "activity down 90% on the previous 30 days"],
         at + timedelta(days=5), 2),
        ("d", 1.0, "churned", ["no activity for 30 days", "activity down 90% on the previous 30 days"],
         at + timedelta(days=5), 2),  # a replayed row
    ]  # fmt: skip
    db.insert("churn_scores", [list(s) for s in scores],
              column_names=["user_id", "score", "tier", "reasons", "ts", "version"])  # fmt: skip
    churned = {r["user_id"]: (r["cause"], str(r["churned_at"])) for r in rows(db, "SELECT * FROM kpi_churned_users")}
    assert churned == {"a": ("cancelled", "2024-05-01 00:00:00"), "d": ("inactive", "2024-05-06 00:00:00")}
    assert one(db, "SELECT * FROM kpi_churn") == {
        "scored_users": 4, "churned_users": 2, "churned_cancelled": 1, "churned_inactive": 1, "churned_pct": 50.0,
    }  # fmt: skip


# --- revenue --------------------------------------------------------------------------------
#
# May 2024: a buys 100 (o1) and 50 (o2) on 05-01, b buys 30 (o3) on 05-01 and 60 (o4) on 05-02; o1 is
# refunded 40 on 05-03. June: a buys 20 (o5) and its purchase is resent. A refund of an order not in
# the table (o9) still lowers the revenue of its day but is no order.


@pytest.fixture
def orders(db: Client) -> Client:
    resent = purchase("a", "2024-06-10 09:00:00", "o5", 20)
    insert(db, [
        purchase("a", "2024-05-01 09:00:00", "o1", 100),
        purchase("a", "2024-05-01 10:00:00", "o2", 50),
        purchase("b", "2024-05-01 11:00:00", "o3", 30),
        purchase("b", "2024-05-02 09:00:00", "o4", 60.1),
        refund("a", "2024-05-03 09:00:00", "o1", 40),
        resent,
        refund("c", "2024-06-11 09:00:00", "o9", 5),
    ])  # fmt: skip
    insert(db, [resent])
    return db


def test_orders_net_their_refunds(orders: Client) -> None:
    table = {r["order_id"]: (r["user_id"], str(r["day"]), r["amount"], r["refunded_amount"], r["net_amount"],
                             r["refunded"]) for r in rows(orders, "SELECT * FROM kpi_orders")}  # fmt: skip
    assert table == {
        "o1": ("a", "2024-05-01", 100.0, 40.0, 60.0, 1),
        "o2": ("a", "2024-05-01", 50.0, 0.0, 50.0, 0),
        "o3": ("b", "2024-05-01", 30.0, 0.0, 30.0, 0),
        "o4": ("b", "2024-05-02", 60.1, 0.0, 60.1, 0),
        "o5": ("a", "2024-06-10", 20.0, 0.0, 20.0, 0),
    }


def test_revenue_daily_counts_refunds_on_their_own_day(orders: Client) -> None:
    days = by_key(orders, "kpi_revenue_daily", "day")
    assert days["2024-05-01"] == {
        "orders": 3, "gross_revenue": 180.0, "refunds": 0, "refunded_amount": 0.0, "revenue": 180.0,
        "paying_customers": 2, "average_order_value": 60.0, "purchase_frequency": 1.5, "customer_value": 90.0,
    }  # fmt: skip
    refund_day = days["2024-05-03"]
    assert (refund_day["orders"], refund_day["revenue"], refund_day["paying_customers"]) == (0, -40.0, 0)
    assert refund_day["average_order_value"] is None and refund_day["customer_value"] is None
    assert (days["2024-06-11"]["refunds"], days["2024-06-11"]["revenue"]) == (1, -5.0)


def test_aov_frequency_customer_value_and_repeat_rate_by_month_and_all_time(orders: Client) -> None:
    """000:38-46: average purchase value, purchases / unique customers, and their product, the customer value."""
    may = by_key(orders, "kpi_revenue_monthly", "month")["2024-05-01"]
    assert may == pytest.approx({
        "orders": 4, "gross_revenue": 240.1, "refunds": 1, "refunded_amount": 40.0, "revenue": 200.1,
        "paying_customers": 2, "average_order_value": 200.1 / 4, "purchase_frequency": 2.0,
        "customer_value": 100.05, "repeat_customers": 2, "repeat_purchase_pct": 100.0,
    })  # fmt: skip
    assert may["customer_value"] == pytest.approx(may["average_order_value"] * may["purchase_frequency"])
    june = by_key(orders, "kpi_revenue_monthly", "month")["2024-06-01"]
    assert (june["orders"], june["revenue"], june["paying_customers"], june["repeat_customers"]) == (1, 15.0, 1, 0)
    total = one(orders, "SELECT * FROM kpi_revenue")
    assert total == pytest.approx({
        "orders": 5, "gross_revenue": 260.1, "refunds": 2, "refunded_amount": 45.0, "revenue": 215.1,
        "paying_customers": 2, "average_order_value": 215.1 / 5, "purchase_frequency": 2.5,
        "customer_value": 107.55, "repeat_customers": 2, "repeat_purchase_pct": 100.0,
    })  # fmt: skip
    summed = one(orders, "SELECT sum(orders) AS orders, sum(revenue) AS revenue FROM kpi_revenue_daily")
    assert summed == pytest.approx({"orders": total["orders"], "revenue": total["revenue"]})


def test_historical_clv_is_purchase_value_times_frequency_times_lifespan(db: Client) -> None:
    """000:30-54 and 004:41: CLV = average purchase value x purchase frequency x average customer lifespan.

    Four subscribers in April, one lost in May: a monthly churn of 25%, a lifespan of 4 months. The April
    cohort (a, b) buys 100 + 100 + 50 over April and May, 50 refunded: 200 from 3 orders in 2 months.
    c first buys in May: 60 in one order, observed one month.
    """
    insert(db, [
        *(start(user, "2024-04-02 00:00:00", 50) for user in ("a", "b", "c", "d")),
        cancel("d", "2024-05-20 00:00:00"),
        purchase("a", "2024-04-02 00:00:00", "o1", 100), purchase("a", "2024-05-02 00:00:00", "o2", 100),
        purchase("b", "2024-04-05 00:00:00", "o3", 50), refund("b", "2024-05-07 00:00:00", "o3", 50),
        purchase("c", "2024-05-02 00:00:00", "o4", 60),
    ])  # fmt: skip
    cohorts = by_key(db, "kpi_clv_cohorts", "cohort")
    april = cohorts["2024-04-01"]
    assert april == pytest.approx({
        "customers": 2, "orders": 3, "revenue": 200.0, "months_observed": 2, "average_order_value": 200 / 3,
        "purchase_frequency": 0.75, "customer_value": 50.0, "lifespan_months": 4.0, "clv": 200.0,
    })  # fmt: skip
    assert april["clv"] == pytest.approx(april["average_order_value"] * april["purchase_frequency"] * 4)
    may = cohorts["2024-05-01"]
    assert (may["months_observed"], may["customer_value"], may["clv"]) == (1, 60.0, 240.0)


def test_without_churn_the_lifespan_and_clv_are_unknown(orders: Client) -> None:
    """No customer lost: 1 / churn has no value, so the lifespan and the CLV are NULL, not infinite.

    c's refund of an order not in the table belongs to no cohort: c never bought.
    """
    cohort = by_key(orders, "kpi_clv_cohorts", "cohort")["2024-05-01"]
    assert (cohort["customers"], cohort["orders"], cohort["revenue"]) == (2, 5, 220.1)
    assert cohort["customer_value"] == pytest.approx(220.1 / 2 / 2) and cohort["months_observed"] == 2
    assert cohort["lifespan_months"] is None and cohort["clv"] is None


# --- the simulator's ground truth -------------------------------------------------------------


@pytest.fixture(scope="module")
def simulation() -> Any:
    return simulate(SIMULATION)


@pytest.fixture(scope="module")
def simulated(engine: Client, simulation: Any) -> dict[str, list[dict[str, Any]]]:
    """Every view's rows on the simulator's run; the tables are emptied again afterwards."""
    truncate(engine, *TABLES)
    try:
        load_simulation(engine, simulation)
        return {view: rows(engine, f"SELECT * FROM {view}") for view in VIEW_COLUMNS}
    finally:
        truncate(engine, *TABLES)


def test_revenue_and_paying_customers_equal_the_truth(simulated: dict[str, list[dict[str, Any]]],
                                                      simulation: Any) -> None:  # fmt: skip
    totals, users = simulation.truth.totals, simulation.truth.users
    [revenue] = simulated["kpi_revenue"]
    assert round(revenue["revenue"], 2) == totals["revenue"]
    assert revenue["paying_customers"] == totals["paying_customers"] > 0
    assert revenue["orders"] == totals["events_by_type"]["purchase"]
    assert revenue["refunds"] == totals["events_by_type"]["refund"] > 0
    assert revenue["repeat_customers"] == sum(user.purchases > 1 for user in users.values())
    assert revenue["customer_value"] == pytest.approx(totals["revenue"] / totals["paying_customers"])
    assert round(sum(day["revenue"] for day in simulated["kpi_revenue_daily"]), 2) == totals["revenue"]
    assert round(sum(order["net_amount"] for order in simulated["kpi_orders"]), 2) == totals["revenue"]
    by_user: defaultdict[str, float] = defaultdict(float)
    for order in simulated["kpi_orders"]:
        by_user[order["user_id"]] += order["net_amount"]
    assert {u: round(v, 2) for u, v in by_user.items()} == {
        u: user.revenue_cents / 100 for u, user in users.items() if user.purchases
    }


def test_mrr_and_cancelled_customers_equal_the_truth(simulated: dict[str, list[dict[str, Any]]],
                                                     simulation: Any) -> None:  # fmt: skip
    totals, users = simulation.truth.totals, simulation.truth.users
    [subscriptions] = simulated["kpi_subscriptions"]
    assert subscriptions["mrr"] == totals["mrr"] > 0
    assert subscriptions["subscribers"] == sum(user.mrr_cents > 0 for user in users.values())
    assert subscriptions["cancelled_customers"] == totals["churned_customers"] > 0
    assert subscriptions["cancellations"] == totals["events_by_type"]["subscription_cancelled"]
    last_day = max(simulated["kpi_mrr_daily"], key=lambda d: d["day"])
    assert (last_day["mrr"], last_day["subscribers"]) == (totals["mrr"], subscriptions["subscribers"])


def test_monthly_figures_agree_with_each_other(simulated: dict[str, list[dict[str, Any]]]) -> None:
    """The truth has no monthly churn; the run's two months hold the identities the docs state."""
    months = sorted(simulated["kpi_retention_monthly"], key=lambda m: m["month"])
    assert [str(m["month"]) for m in months] == ["2025-11-01", "2025-12-01"]
    daily = {d["day"]: d for d in simulated["kpi_mrr_daily"]}
    for m in months:
        assert m["customers_end"] - m["customers_new"] == m["customers_start"] - m["customers_lost"]
        moved = m["mrr_start"] + m["mrr_new"] + m["mrr_expansion"] - m["mrr_contraction"] - m["mrr_churned"]
        assert m["mrr_end"] == pytest.approx(moved)
        month_end = max(day for day in daily if day < date(m["month"].year + m["month"].month // 12,
                                                              m["month"].month % 12 + 1, 1))  # fmt: skip
        assert (daily[month_end]["subscribers"], daily[month_end]["mrr"]) == (m["customers_end"], m["mrr_end"])
    december = months[1]
    assert december["customers_start"] > 0 and december["customers_lost"] > 0
    assert december["retention_pct"] + december["churn_pct"] == pytest.approx(100)


def test_churned_users_equal_the_truth(simulated: dict[str, list[dict[str, Any]]], simulation: Any) -> None:
    """The truth's churn as of the window's end (``totals["churn"]``) less, at most, users whose 30th quiet day
    falls in its last day: the job's event-time clock may stop short of the end (as in the integration test)."""
    truth = simulation.truth
    end_ms = truth.config.end_ms
    at_end = truth.totals["churn"]["per_user"]
    settled = truth.churn_as_of(end_ms - SETTLED_MS)
    churned = {u["user_id"]: u["cause"] for u in simulated["kpi_churned_users"]}
    assert set(settled) <= set(churned) <= set(at_end)
    assert churned == {user_id: at_end[user_id]["reason"] for user_id in churned}
    assert {churn.reason for churn in settled.values()} == {"cancelled", "inactive"}
    [total] = simulated["kpi_churn"]
    assert total["churned_users"] == len(churned)
    assert total["churned_cancelled"] == list(churned.values()).count("cancelled") == truth.totals["churn"]["cancelled"]
    assert total["churned_inactive"] == list(churned.values()).count("inactive")


def test_cohort_retention_equals_the_truth(simulated: dict[str, list[dict[str, Any]]], simulation: Any) -> None:
    """Recomputed from the truth: each user's first signup and product-use times (ChurnWitness)."""
    truth = simulation.truth
    uses = {user_id: [datetime.fromtimestamp(ms / 1000, UTC).date() for ms in witness._uses]
            for user_id, witness in truth.activity.items()}  # fmt: skip
    last = max(day for days in uses.values() for day in days)
    expected: dict[tuple[str, date, int], list[int]] = {}
    for user_id, user in truth.users.items():
        if "signup" not in user.funnel:
            continue
        signup = datetime.fromtimestamp(user.funnel["signup"] / 1000, UTC).date()
        for kind, cohort, period_of in (
            (
                "week",
                signup - timedelta(days=signup.weekday()),
                lambda d, c: (d - timedelta(days=d.weekday()) - c).days // 7,
            ),
            ("month", signup.replace(day=1), lambda d, c: (d.year - c.year) * 12 + d.month - c.month),
        ):
            active = {period_of(day, cohort) for day in uses[user_id] if day >= cohort}
            for period in range(period_of(last, cohort) + 1):
                cell = expected.setdefault((kind, cohort, period), [0, 0])
                cell[0] += 1
                cell[1] += period in active
    got = {(r["period_kind"], r["cohort"], r["periods_since_signup"]): [r["cohort_users"], r["retained_users"]]
           for r in simulated["kpi_cohort_retention"]}  # fmt: skip
    assert got == expected
    assert any(retained < users for users, retained in expected.values())
