"""The acquisition KPI views (migration 0012) on hand-made events and sessions, and on the simulator's truth.

Every event goes through the contract first, so the views are pinned on what the pipeline can
actually store; sessions are written as the sessions job publishes them (a row per version, a
deleted row retracting a merged session). Merges are stopped, so a resent event or an older
session version stays a row on disk and only the views' ``FINAL`` can fold it. The simulator's
run is loaded by :func:`devstack.offline_load.load_tables` into a database of its own in the same
engine: chdb opens one engine directory per process at a time, and the module closes it when done.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from clickhouse_connect.driver.client import Client

from producers.simulator import Simulation, SimulationConfig, Source, simulate
from tests.unit.kpi_views import db_fixture, engine_fixture, event, insert, load_simulation, one, rows, shape_tests

SESSION_COLUMNS = [
    "session_id", "user_id", "start", "end", "duration_ms", "events", "page_views", "bounce", "entry_path",
    "exit_path", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "referrer", "device",
    "first_touch_source", "first_touch_medium", "first_touch_campaign", "first_touch_referrer", "is_first", "closed",
    "deleted", "version",
]  # fmt: skip
SIM_DATABASE = "acquisition_sim"

TRAFFIC = ["sessions", "visits", "visitors", "page_views"]
ENGAGEMENT = [
    "ad_impressions", "ad_clicks", "ad_ctr_pct", "emails_sent", "emails_opened", "emails_clicked", "email_open_pct",
    "email_click_pct", "email_click_to_open_pct",
]  # fmt: skip
RETURNS = [
    "spend", "signups", "cost_per_signup", "new_customers", "cac", "revenue", "clv", "clv_cac_ratio", "roi_pct",
]  # fmt: skip
ACQUISITION = [
    "visits", "visitors", "signups", "subscriptions", "new_customers", "spend", "cost_per_signup", "cac", "revenue",
]  # fmt: skip
VIEW_COLUMNS = {
    "kpi_session_sources": [
        "session_id", "user_id", "start", "day", "source", "medium", "campaign", "page_views", "visit",
    ],
    "kpi_traffic_daily": ["day", "source", "medium", "campaign", *TRAFFIC],
    "kpi_traffic": ["source", "medium", "campaign", *TRAFFIC],
    "kpi_campaign_engagement_daily": ["day", "source", "medium", "campaign", *ENGAGEMENT],
    "kpi_campaign_engagement": ["source", "medium", "campaign", *ENGAGEMENT],
    "kpi_marketing_spend_daily": ["day", "channel", "campaign", "spend_entries", "spend"],
    "kpi_conversions": [
        "user_id", "conversion", "ts", "day", "revenue", "touch_path", "touches", "first_touch_source",
        "first_touch_medium", "first_touch_campaign", "last_touch_source", "last_touch_medium", "last_touch_campaign",
    ],
    "kpi_attribution_daily": ["day", "model", "conversion", "source", "medium", "campaign", "conversions", "revenue"],
    "kpi_attribution": ["model", "conversion", "source", "medium", "campaign", "conversions", "revenue"],
    "kpi_campaign_roi": ["model", "channel", "campaign", *RETURNS],
    "kpi_cac": ["model", "channel", *RETURNS],
    "kpi_acquisition_daily": ["day", *ACQUISITION],
    "kpi_acquisition": [*ACQUISITION, "clv", "clv_cac_ratio", "roi_pct"],
}  # fmt: skip
MODELS = ("first_touch", "last_touch", "linear")


engine = engine_fixture("kpi_acquisition", "events", "sessions")
db = db_fixture("events", "sessions")  # on the default database: the simulator's has its own


def at(ts: str) -> datetime:
    return datetime.fromisoformat(ts).replace(tzinfo=UTC)


def session(user_id: str, start: str, page_views: int = 1, *, utm: tuple[str, ...] = (), referrer: str | None = None,
            version: int = 1, deleted: int = 0, session_id: str | None = None) -> list[Any]:  # fmt: skip
    """A sessions row as the sessions job publishes it; ``utm`` is (source, medium, campaign), any prefix."""
    source, medium, campaign = (*utm, None, None, None)[:3]
    begin = at(start)
    return [session_id or f"{user_id}@{start}", user_id, begin, begin, 0, max(page_views, 1), page_views,
            page_views == 1, None, None, source, medium, campaign, None, None, referrer, None, None, None, None, None,
            False, True, deleted, version]  # fmt: skip


def insert_sessions(db: Client, sessions: list[list[Any]]) -> None:
    db.insert("sessions", sessions, column_names=SESSION_COLUMNS)


Credits = dict[str, dict[str, tuple[float, float]]]


def attribution(db: Client, conversion: str, view: str = "kpi_attribution") -> Credits:
    """model -> "source/medium/campaign" -> (conversions, revenue)."""
    credited: Credits = defaultdict(dict)
    for row in rows(db, f"SELECT * FROM {view} WHERE conversion = '{conversion}'"):
        key = f"{row['source']}/{row['medium']}/{row['campaign']}"
        credited[row["model"]][key] = (row["conversions"], row["revenue"])
    return dict(credited)


# --- shape --------------------------------------------------------------------------------


test_view_columns_are_stable, test_every_view_and_column_is_documented = shape_tests(VIEW_COLUMNS, "## Acquisition")


def test_without_data_the_all_time_views_give_nulls_not_zeros(db: Client) -> None:
    for view in ("kpi_traffic_daily", "kpi_attribution", "kpi_cac", "kpi_acquisition_daily", "kpi_conversions"):
        assert rows(db, f"SELECT * FROM {view}") == [], view
    total = one(db, "SELECT * FROM kpi_acquisition")
    assert [total[c] for c in ("visits", "signups", "new_customers", "spend", "revenue")] == [0, 0, 0, 0, 0]
    assert [total[c] for c in ("cac", "clv", "clv_cac_ratio", "roi_pct", "cost_per_signup")] == [None] * 5


# --- traffic ------------------------------------------------------------------------------


def test_traffic_by_source_medium_and_campaign(db: Client) -> None:
    """ACQ-1/ACQ-5: sessions, visits (sessions with a page view), visitors and page views per source and day."""
    insert_sessions(db, [
        session("a", "2024-05-01 09:00:00", 3, utm=("twitter", "tweet", "q4+leadgen")),
        session("a", "2024-05-01 15:00:00", 2, utm=("twitter", "tweet", "q4+leadgen")),
        session("b", "2024-05-01 10:00:00", 1, utm=("twitter", "tweet", "q4+leadgen")),
        session("c", "2024-05-01 11:00:00", 0, utm=("twitter", "tweet", "q4+leadgen")),  # an ad impression: no visit
        session("d", "2024-05-01 12:00:00", 4, referrer="https://www.g2.com/products/x/reviews"),
        session("e", "2024-05-01 13:00:00", 1),
        session("e", "2024-05-02 13:00:00", 5, utm=("newsletter",)),  # a source without medium or campaign
        session("f", "2024-05-02 08:00:00", 2, utm=("google", "cpc", "brand"), referrer="https://www.google.com/"),
    ])  # fmt: skip
    # A session published twice (the later version wins) and one retracted after a merge.
    insert_sessions(db, [
        session("g", "2024-05-02 09:00:00", 1, session_id="s-g", version=1),
        session("g", "2024-05-02 09:00:00", 6, session_id="s-g", version=2),
        session("h", "2024-05-02 09:00:00", 1, session_id="s-h", version=1),
        session("h", "2024-05-02 09:00:00", 1, session_id="s-h", version=2, deleted=1),
    ])  # fmt: skip
    traffic = {
        (str(r["day"]), r["source"], r["medium"], r["campaign"]): tuple(r[c] for c in TRAFFIC)
        for r in rows(db, "SELECT * FROM kpi_traffic_daily")
    }
    assert traffic == {
        ("2024-05-01", "twitter", "tweet", "q4+leadgen"): (4, 3, 2, 6),
        ("2024-05-01", "www.g2.com", "referral", "(none)"): (1, 1, 1, 4),
        ("2024-05-01", "(direct)", "(none)", "(none)"): (1, 1, 1, 1),
        ("2024-05-02", "newsletter", "(none)", "(none)"): (1, 1, 1, 5),
        ("2024-05-02", "google", "cpc", "brand"): (1, 1, 1, 2),  # the UTM tags win over the referrer
        ("2024-05-02", "(direct)", "(none)", "(none)"): (1, 1, 1, 6),
    }
    direct = one(db, "SELECT * FROM kpi_traffic WHERE source = '(direct)'")
    assert (direct["sessions"], direct["visits"], direct["visitors"], direct["page_views"]) == (2, 2, 2, 7)
    total = one(db, "SELECT visits, visitors FROM kpi_acquisition")
    assert total == {"visits": 8, "visitors": 6}  # a and e twice, b, d, f, g


# --- ad and email engagement ----------------------------------------------------------------


def test_ad_ctr_is_clicks_over_impressions_times_100(db: Client) -> None:
    """004:21-22: "divide the number of clicks by that of impressions and multiply it by 100"."""
    utm = {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "q4_leadgen"}
    insert(db, [event("ad_impression", f"u{i}", "2024-05-01 09:00:00", utm, campaign="q4_leadgen") for i in range(200)])
    insert(db, [event("ad_click", f"u{i}", "2024-05-01 09:01:00", utm, campaign="q4_leadgen") for i in range(5)])
    insert(db, [event("ad_impression", "v", "2024-05-02 09:00:00", campaign="brand")])  # no UTM on the event
    days = {(str(r["day"]), r["campaign"]): r for r in rows(db, "SELECT * FROM kpi_campaign_engagement_daily")}
    leadgen = days["2024-05-01", "q4_leadgen"]
    assert (leadgen["source"], leadgen["medium"]) == ("google", "cpc")
    assert (leadgen["ad_impressions"], leadgen["ad_clicks"], leadgen["ad_ctr_pct"]) == (200, 5, 2.5)
    assert leadgen["emails_sent"] == 0 and leadgen["email_open_pct"] is None
    brand = days["2024-05-02", "brand"]
    assert (brand["source"], brand["medium"], brand["ad_ctr_pct"]) == ("(none)", "(none)", 0.0)


def test_email_open_click_and_click_to_open_rates(db: Client) -> None:
    """ACQ-4 (000:617): opens and click-throughs of an email campaign, as shares of sent and of opened."""
    utm = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly_digest"}
    sent = [event("email_sent", f"u{i}", "2024-05-01 15:00:00", utm, campaign="weekly_digest") for i in range(10)]
    opened = [event("email_opened", f"u{i}", "2024-05-01 18:00:00", utm, campaign="weekly_digest") for i in range(4)]
    clicked = [event("email_clicked", "u0", "2024-05-02 08:00:00", utm, campaign="weekly_digest")]
    insert(db, sent + opened + clicked)
    insert(db, opened[:1])  # resent: counted once
    total = one(db, "SELECT * FROM kpi_campaign_engagement WHERE campaign = 'weekly_digest'")
    assert (total["emails_sent"], total["emails_opened"], total["emails_clicked"]) == (10, 4, 1)
    assert (total["email_open_pct"], total["email_click_pct"], total["email_click_to_open_pct"]) == (40.0, 10.0, 25.0)
    assert total["ad_impressions"] == 0 and total["ad_ctr_pct"] is None
    second_day = one(db, "SELECT * FROM kpi_campaign_engagement_daily WHERE day = '2024-05-02'")
    assert (second_day["emails_clicked"], second_day["email_click_pct"], second_day["email_click_to_open_pct"]) == (
        1, None, None,
    )  # fmt: skip


# --- spend ----------------------------------------------------------------------------------


def test_marketing_spend_is_summed_in_cents_per_channel_campaign_and_day(db: Client) -> None:
    spend = [
        event("marketing_spend", "system", "2024-05-01 23:55:00", channel="google", campaign="q4_leadgen", amount=0.1),
        event("marketing_spend", "system", "2024-05-01 23:56:00", channel="google", campaign="q4_leadgen", amount=0.2),
        event("marketing_spend", "system", "2024-05-01 23:55:00", channel="partners", amount=50),
    ]
    insert(db, spend)
    insert(db, spend[:1])  # resent: counted once
    days = {(r["channel"], r["campaign"]): (r["spend_entries"], r["spend"])
            for r in rows(db, "SELECT * FROM kpi_marketing_spend_daily")}  # fmt: skip
    # 0.3 exactly, not 0.30000000000000004
    assert days == {("google", "q4_leadgen"): (2, 0.3), ("partners", "(none)"): (1, 50.0)}


# --- conversions and attribution -------------------------------------------------------------
#
# User a: visits from google (D1 09:00), typed in (D2 09:00) and the newsletter (D3 09:00), signs
# up in that last visit (09:10), comes from linkedin (D4 09:00) and buys 100 (09:05), then 20 more
# (D6, with no visit: a renewal); 20 is refunded. A session without a page view (an email sent, D3
# 08:00) is no touch, nor is a visit after the conversion. User b buys 50 without any visit.

JOURNEY_SESSIONS = [
    session("a", "2024-05-01 09:00:00", 2, utm=("google", "cpc", "q4_leadgen")),
    session("a", "2024-05-02 09:00:00", 3),
    session("a", "2024-05-03 08:00:00", 0, utm=("newsletter", "email", "q4_nurture")),
    session("a", "2024-05-03 09:00:00", 2, utm=("newsletter", "email", "q4_nurture")),
    session("a", "2024-05-04 09:00:00", 1, utm=("linkedin", "cpc", "q4_abm")),
    session("a", "2024-05-05 09:00:00", 1, utm=("google", "cpc", "q4_leadgen")),
]


@pytest.fixture
def journey(db: Client) -> Client:
    insert_sessions(db, JOURNEY_SESSIONS)
    purchase = event("purchase", "a", "2024-05-04 09:05:00", order_id="a-1", amount=100)
    insert(db, [
        event("signup", "a", "2024-05-03 09:10:00"),
        event("signup", "a", "2024-05-05 09:10:00"),  # a second signup event: the first one converts
        purchase,
        event("purchase", "a", "2024-05-06 00:00:00", order_id="a-2", amount=20),
        event("refund", "a", "2024-05-07 00:00:00", order_id="a-2", amount=20),
        event("purchase", "b", "2024-05-04 12:00:00", order_id="b-1", amount=50),
    ])  # fmt: skip
    insert(db, [purchase])  # resent: counted once
    return db


def test_conversions_are_each_users_first_signup_subscription_and_purchase(journey: Client) -> None:
    conversions = {(r["user_id"], r["conversion"]): r for r in rows(journey, "SELECT * FROM kpi_conversions")}
    assert set(conversions) == {("a", "signup"), ("a", "customer"), ("b", "customer")}
    signup, customer = conversions["a", "signup"], conversions["a", "customer"]
    assert (str(signup["ts"]), str(signup["day"]), signup["touches"]) == ("2024-05-03 09:10:00", "2024-05-03", 3)
    assert signup["touch_path"] == [("google", "cpc", "q4_leadgen"), ("(direct)", "(none)", "(none)"),
                                    ("newsletter", "email", "q4_nurture")]  # fmt: skip
    assert (signup["first_touch_source"], signup["last_touch_source"], signup["last_touch_campaign"]) == (
        "google", "newsletter", "q4_nurture",
    )  # fmt: skip
    assert (str(customer["ts"]), customer["touches"], customer["last_touch_source"]) == ("2024-05-04 09:05:00", 4,
                                                                                          "linkedin")  # fmt: skip
    assert signup["revenue"] == customer["revenue"] == 100.0  # 100 + 20 - 20, the resent purchase once
    nobody = conversions["b", "customer"]
    assert (nobody["touches"], nobody["first_touch_source"], nobody["last_touch_medium"]) == (0, "(no visit)", "(none)")


def test_first_last_and_linear_attribution(journey: Client) -> None:
    """Each conversion's credit: all to its first touch, all to its last, or split evenly over its touches."""
    signups = attribution(journey, "signup")
    assert signups == {
        "first_touch": {"google/cpc/q4_leadgen": (1.0, 100.0)},
        "last_touch": {"newsletter/email/q4_nurture": (1.0, 100.0)},
        "linear": {
            "google/cpc/q4_leadgen": pytest.approx((1 / 3, 100 / 3)),
            "(direct)/(none)/(none)": pytest.approx((1 / 3, 100 / 3)),
            "newsletter/email/q4_nurture": pytest.approx((1 / 3, 100 / 3)),
        },
    }
    customers = attribution(journey, "customer")
    assert customers["first_touch"] == {"google/cpc/q4_leadgen": (1.0, 100.0), "(no visit)/(none)/(none)": (1.0, 50.0)}
    assert customers["last_touch"] == {"linkedin/cpc/q4_abm": (1.0, 100.0), "(no visit)/(none)/(none)": (1.0, 50.0)}
    assert customers["linear"] == {
        "google/cpc/q4_leadgen": pytest.approx((0.25, 25.0)),
        "(direct)/(none)/(none)": pytest.approx((0.25, 25.0)),
        "newsletter/email/q4_nurture": pytest.approx((0.25, 25.0)),
        "linkedin/cpc/q4_abm": pytest.approx((0.25, 25.0)),
        "(no visit)/(none)/(none)": (1.0, 50.0),
    }
    for model in MODELS:  # every model hands out each conversion once, and all of its revenue
        total = one(journey, f"SELECT sum(conversions) AS c, sum(revenue) AS r FROM kpi_attribution "
                             f"WHERE model = '{model}' AND conversion = 'customer'")  # fmt: skip
        assert (total["c"], total["r"]) == pytest.approx((2.0, 150.0))
    daily = {(str(r["day"]), r["source"]) for r in rows(journey, "SELECT * FROM kpi_attribution_daily "
                                                                 "WHERE conversion = 'customer' AND model = 'linear'")}
    assert daily == {("2024-05-04", "google"), ("2024-05-04", "(direct)"), ("2024-05-04", "newsletter"),
                     ("2024-05-04", "linkedin"), ("2024-05-04", "(no visit)")}  # fmt: skip


def test_acquisition_daily_counts_conversions_revenue_and_spend_on_their_days(journey: Client) -> None:
    insert(journey, [
        event("marketing_spend", "system", "2024-05-04 23:55:00", channel="google", campaign="q4_leadgen", amount=120),
        event("marketing_spend", "system", "2024-05-04 23:55:00", channel="linkedin", campaign="q4_abm", amount=30),
    ])  # fmt: skip
    days = {str(r.pop("day")): r for r in rows(journey, "SELECT * FROM kpi_acquisition_daily")}
    assert {day: (d["signups"], d["new_customers"], d["revenue"], d["spend"]) for day, d in days.items()} == {
        "2024-05-01": (0, 0, 0.0, 0.0),
        "2024-05-02": (0, 0, 0.0, 0.0),
        "2024-05-03": (1, 0, 0.0, 0.0),
        "2024-05-04": (0, 2, 150.0, 150.0),
        "2024-05-05": (0, 0, 0.0, 0.0),
        "2024-05-06": (0, 0, 20.0, 0.0),
        "2024-05-07": (0, 0, -20.0, 0.0),
    }
    assert days["2024-05-04"]["cac"] == 75.0
    assert (days["2024-05-03"]["cost_per_signup"], days["2024-05-04"]["cost_per_signup"]) == (0.0, None)


# --- CAC, CLV:CAC and ROI ---------------------------------------------------------------------


def test_cac_is_acquisition_spend_over_new_customers(db: Client) -> None:
    """003:80: "CAC = Total Acquisition Marketing Spend / Number of New Customers"; by channel (003:78)."""
    insert_sessions(db, [
        session("a", "2024-05-01 09:00:00", utm=("google", "cpc", "q4_leadgen")),
        session("b", "2024-05-01 09:00:00", utm=("google", "cpc", "q4_leadgen")),
        session("c", "2024-05-01 09:00:00", utm=("linkedin", "cpc", "q4_abm")),
        session("d", "2024-05-01 09:00:00"),
    ])  # fmt: skip
    insert(db, [event("purchase", user, "2024-05-01 09:10:00", order_id=f"{user}-1", amount=10) for user in "abcd"])
    insert(db, [event("signup", user, "2024-05-01 09:05:00") for user in "abcde"])  # e signs up without a visit
    insert(db, [
        event("marketing_spend", "system", "2024-05-01 23:55:00", channel="google", campaign="q4_leadgen", amount=600),
        event("marketing_spend", "system", "2024-05-01 23:55:00", channel="linkedin", campaign="q4_abm", amount=300),
        event("marketing_spend", "system", "2024-05-01 23:55:00", channel="partners", campaign="affiliates",
              amount=100),
    ])  # fmt: skip
    total = one(db, "SELECT * FROM kpi_acquisition")
    assert (total["spend"], total["new_customers"], total["cac"], total["signups"], total["cost_per_signup"]) == (
        1000.0, 4, 250.0, 5, 200.0,
    )  # fmt: skip
    cac = {r["channel"]: r for r in rows(db, "SELECT * FROM kpi_cac WHERE model = 'first_touch'")}
    assert {channel: (r["spend"], r["new_customers"], r["cac"]) for channel, r in cac.items()} == {
        "google": (600.0, 2.0, 300.0),
        "linkedin": (300.0, 1.0, 300.0),
        "partners": (100.0, 0.0, None),  # spend, but no customer came through a link tagged "partners"
        "(direct)": (0.0, 1.0, 0.0),  # customers, but no spend booked to the channel
        "(no visit)": (0.0, 0.0, None),  # e's signup
    }
    assert (cac["partners"]["roi_pct"], cac["(direct)"]["roi_pct"]) == (-100.0, None)
    assert cac["google"]["cost_per_signup"] == 300.0
    campaigns = rows(db, "SELECT * FROM kpi_campaign_roi WHERE model = 'linear'")
    assert {(r["channel"], r["campaign"]) for r in campaigns} == {
        ("google", "q4_leadgen"), ("linkedin", "q4_abm"), ("partners", "affiliates"), ("(direct)", "(none)"),
        ("(no visit)", "(none)"),
    }  # fmt: skip


def test_clv_of_300_against_cac_of_400_loses_money(db: Client) -> None:
    """003:73: "If your CLV is $300, but CAC is $400, losing money on initial sales": CLV:CAC = 0.75 (000:20)."""
    insert_sessions(db, [session("a", "2024-05-01 09:00:00", utm=("google", "cpc", "q4_leadgen"))])
    insert(db, [
        event("marketing_spend", "system", "2024-05-01 23:55:00", channel="google", campaign="q4_leadgen", amount=400),
        event("purchase", "a", "2024-05-01 09:10:00", order_id="a-1", amount=200),
        event("purchase", "a", "2024-06-01 09:10:00", order_id="a-2", amount=100),
    ])  # fmt: skip
    for sql in ("SELECT * FROM kpi_acquisition",
                "SELECT * FROM kpi_cac WHERE model = 'first_touch' AND channel = 'google'",
                "SELECT * FROM kpi_campaign_roi WHERE model = 'linear' AND campaign = 'q4_leadgen'"):  # fmt: skip
        figures = one(db, sql)
        assert (figures["new_customers"], figures["clv"], figures["cac"]) == (1, 300.0, 400.0)
        assert (figures["clv_cac_ratio"], figures["roi_pct"]) == (0.75, -25.0)


# --- the simulator's ground truth -------------------------------------------------------------


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(SimulationConfig(customers=300, days=20, seed=3))


@pytest.fixture(scope="module")
def sim_db(engine: Client, simulation: Simulation) -> Iterator[Client]:
    engine.database = None
    engine.command(f"CREATE DATABASE IF NOT EXISTS {SIM_DATABASE}")
    engine.database = SIM_DATABASE
    try:
        load_simulation(engine, simulation)
        yield engine
    finally:
        engine.database = None


def label(source: Source) -> tuple[str, str, str]:
    """The (source, medium, campaign) the views give a session with these tags."""
    campaign = source.utm_campaign or "(none)"
    if source.utm_source:
        return source.utm_source, source.utm_medium or "(none)", campaign
    if source.referrer:
        return urlsplit(source.referrer).hostname or source.referrer, source.utm_medium or "referral", campaign
    return "(direct)", source.utm_medium or "(none)", campaign


def test_traffic_equals_the_truth(sim_db: Client, simulation: Simulation) -> None:
    truth = simulation.truth
    expected: Counter[tuple[str, ...]] = Counter()
    visitors: defaultdict[tuple[str, ...], set[str]] = defaultdict(set)
    for user_id, user in truth.users.items():
        for s in user.sessions:
            key = (str(datetime.fromtimestamp(s.start / 1000, UTC).date()), *label(s.source))
            expected[(*key, "sessions")] += 1
            expected[(*key, "visits")] += s.page_views > 0
            expected[(*key, "page_views")] += s.page_views
            if s.page_views:
                visitors[key].add(user_id)
    got: Counter[tuple[str, ...]] = Counter()
    for r in rows(sim_db, "SELECT * FROM kpi_traffic_daily"):
        key = (str(r["day"]), r["source"], r["medium"], r["campaign"])
        for column in ("sessions", "visits", "page_views"):
            got[(*key, column)] = r[column]
        assert r["visitors"] == len(visitors[key]), key
    assert +got == +expected
    totals = truth.totals
    assert one(sim_db, "SELECT sum(sessions) AS s, sum(visits) AS v, sum(page_views) AS p FROM kpi_traffic") == {
        "s": totals["sessions"], "v": totals["visits"], "p": totals["events_by_type"]["page_view"],
    }  # fmt: skip
    users_with_visits = sum(any(s.page_views for s in user.sessions) for user in truth.users.values())
    assert one(sim_db, "SELECT visits, visitors FROM kpi_acquisition") == {"visits": totals["visits"],
                                                                          "visitors": users_with_visits}  # fmt: skip


def test_engagement_and_spend_equal_the_truth(sim_db: Client, simulation: Simulation) -> None:
    by_type = simulation.truth.totals["events_by_type"]
    engagement = one(sim_db, "SELECT sum(ad_impressions) AS ad_impression, sum(ad_clicks) AS ad_click, "
                             "sum(emails_sent) AS email_sent, sum(emails_opened) AS email_opened, "
                             "sum(emails_clicked) AS email_clicked FROM kpi_campaign_engagement")  # fmt: skip
    assert engagement == {kind: by_type.get(kind, 0) for kind in engagement}
    spend = dict(sim_db.query("SELECT channel, round(sum(spend), 2) FROM kpi_marketing_spend_daily "
                              "GROUP BY channel").result_rows)  # fmt: skip
    assert spend == simulation.truth.totals["marketing_spend"]
    assert round(one(sim_db, "SELECT spend FROM kpi_acquisition")["spend"], 2) == round(sum(spend.values()), 2)


def test_conversions_and_revenue_equal_the_truth(sim_db: Client, simulation: Simulation) -> None:
    totals, users = simulation.truth.totals, simulation.truth.users
    subscribers = sum("subscription_started" in user.funnel for user in users.values())
    total = one(sim_db, "SELECT * FROM kpi_acquisition")
    assert (total["signups"], total["subscriptions"], total["new_customers"]) == (
        totals["signups"], subscribers, totals["paying_customers"],
    )  # fmt: skip
    assert round(total["revenue"], 2) == totals["revenue"]
    assert round(total["clv"], 4) == round(totals["revenue"] / totals["paying_customers"], 4)
    spend = sum(totals["marketing_spend"].values())
    assert round(total["cac"], 4) == round(spend / totals["paying_customers"], 4)
    assert round(total["clv_cac_ratio"], 4) == round(totals["revenue"] / spend, 4)
    for model in MODELS:
        credited = dict(sim_db.query(
            f"SELECT conversion, (round(sum(conversions), 4), round(sum(revenue), 2)) FROM kpi_attribution "
            f"WHERE model = '{model}' GROUP BY conversion"
        ).result_rows)  # fmt: skip
        assert credited["signup"][0] == totals["signups"]
        assert credited["customer"] == (totals["paying_customers"], totals["revenue"])


@pytest.mark.parametrize("conversion, step", [("signup", "signup"), ("subscription", "subscription_started")])
def test_attribution_of_signups_and_subscriptions_equals_the_truth(sim_db: Client, simulation: Simulation,
                                                                   conversion: str, step: str) -> None:  # fmt: skip
    """Each user's visits up to the truth's funnel time, credited by each model, per source."""
    expected: dict[str, defaultdict[str, list[float]]] = {model: defaultdict(lambda: [0.0, 0.0]) for model in MODELS}
    for user in simulation.truth.users.values():
        if step not in user.funnel:
            continue
        path = [label(s.source) for s in user.sessions if s.page_views and s.start <= user.funnel[step]]
        path = path or [("(no visit)", "(none)", "(none)")]
        revenue = user.revenue_cents / 100
        credits = {"first_touch": [(path[0], 1.0)], "last_touch": [(path[-1], 1.0)],
                   "linear": [(touch, 1 / len(path)) for touch in path]}  # fmt: skip
        for model, shares in credits.items():
            for touch, share in shares:
                figures = expected[model]["/".join(touch)]
                figures[0] += share
                figures[1] += share * revenue
    got = attribution(sim_db, conversion)
    assert set(got) == set(MODELS)
    for model in MODELS:
        rounded = {key: (round(c, 4), round(r, 4)) for key, (c, r) in got[model].items()}
        assert rounded == {key: (round(c, 4), round(r, 4)) for key, (c, r) in expected[model].items()}, model
