"""The satisfaction and support KPI views (migrations 0008 and 0009) on hand-made events, value by value.

Every event goes through the contract first, so the views are pinned on what the pipeline can
actually store. Merges of ``events`` are stopped, so a resent event stays a second row on disk and
only the views' ``FINAL`` can fold it. chdb opens one engine directory per process at a time: the
module opens its own and closes it when done.
"""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from pulse.contract import Event
from tests.unit.kpi_views import by_day, db_fixture, engine_fixture, event, insert, one, rows, shape_tests

SATISFACTION_COLUMNS = [
    "nps_responses", "nps_promoters", "nps_passives", "nps_detractors", "nps",
    "csat_responses", "csat_satisfied", "csat_pct", "csat_score_sum", "csat_mean_score",
    "support_csat_responses", "support_csat_satisfied", "support_csat_pct",
    "ces_responses", "ces_score_sum", "ces_mean_score",
    "ticket_resolutions", "support_csat_response_pct",
]  # fmt: skip
SUPPORT_COLUMNS = [
    "tickets_opened",
    "first_responses", "first_response_s_sum", "first_response_mean_s", "first_response_median_s",
    "first_response_p90_s",
    "tickets_resolved", "resolution_s_sum", "resolution_mean_s", "resolution_median_s", "resolution_p90_s",
    "resolved_after_reopen", "reopen_pct", "net_resolution_pct", "one_touch_resolutions", "one_touch_pct",
    "reopens",
]  # fmt: skip
VIEW_COLUMNS = {
    "kpi_survey_responses": [
        "event_id", "user_id", "ts", "day", "kind", "score", "scale_min", "scale_max", "score_pct", "ticket_id",
        "nps_bucket", "satisfied",
    ],
    "kpi_satisfaction_daily": ["day", *SATISFACTION_COLUMNS],
    "kpi_satisfaction": SATISFACTION_COLUMNS,
    "kpi_tickets": [
        "ticket_id", "user_id", "opened_at", "first_response_at", "first_resolved_at", "resolved_at", "reopens",
        "first_response_s", "resolution_s", "resolved", "one_touch", "status",
    ],
    "kpi_support_daily": ["day", *SUPPORT_COLUMNS, "backlog"],
    "kpi_support": [*SUPPORT_COLUMNS, "tickets_reopened", "backlog", "awaiting_first_response"],
}  # fmt: skip


engine = engine_fixture("kpi_clickhouse", "events")
db = db_fixture("events")


def survey(kind: str, score: float, day: str = "2024-05-01", user_id: str = "u", **props: Any) -> Event:
    return event("survey_response", user_id, f"{day} 12:00:00", kind=kind, score=score, **props)


# --- shape --------------------------------------------------------------------------------

test_view_columns_are_stable, test_every_view_and_column_is_documented = shape_tests(VIEW_COLUMNS)


def test_without_events_the_all_time_views_give_nulls_not_zeros(db: Client) -> None:
    assert rows(db, "SELECT * FROM kpi_satisfaction_daily") == rows(db, "SELECT * FROM kpi_support_daily") == []
    satisfaction = one(db, "SELECT * FROM kpi_satisfaction")
    assert satisfaction["nps_responses"] == 0 and satisfaction["nps"] is None
    assert satisfaction["csat_pct"] is None and satisfaction["ces_mean_score"] is None
    support = one(db, "SELECT * FROM kpi_support")
    assert support["tickets_opened"] == support["backlog"] == 0
    assert support["first_response_median_s"] is None and support["reopen_pct"] is None


# --- satisfaction -------------------------------------------------------------------------


def test_nps_buckets_follow_the_article(db: Client) -> None:
    """003:38-40: promoters 9-10, passives 7-8, detractors 0-6; one answer of each score."""
    insert(db, [survey("nps", score) for score in range(11)])
    buckets = dict(db.query("SELECT toInt64(score), nps_bucket FROM kpi_survey_responses").result_rows)
    assert buckets == {**dict.fromkeys(range(7), "detractor"), 7: "passive", 8: "passive", 9: "promoter",
                       10: "promoter"}  # fmt: skip
    day = by_day(db, "kpi_satisfaction_daily")["2024-05-01"]
    assert (day["nps_responses"], day["nps_promoters"], day["nps_passives"], day["nps_detractors"]) == (11, 2, 2, 7)
    assert day["nps"] == pytest.approx((2 - 7) / 11 * 100)


def test_nps_is_percent_promoters_minus_percent_detractors(db: Client) -> None:
    """The catalog's derived fixture: 50 promoters, 30 passives, 20 detractors give NPS +30."""
    scores = [9] * 25 + [10] * 25 + [7] * 15 + [8] * 15 + [0] * 5 + [6] * 15
    insert(db, [survey("nps", score, user_id=f"u{i}") for i, score in enumerate(scores)])
    total = one(db, "SELECT nps_responses, nps_promoters, nps_passives, nps_detractors, nps FROM kpi_satisfaction")
    assert total == {"nps_responses": 100, "nps_promoters": 50, "nps_passives": 30, "nps_detractors": 20,
                     "nps": 30.0}  # fmt: skip


def test_nps_spans_minus_100_to_100_and_re_aggregates_over_days(db: Client) -> None:
    """003:41: the range is -100..+100. A day of promoters and a day of detractors: +100, -100, all time 0."""
    insert(db, [survey("nps", 10, "2024-05-01", f"p{i}") for i in range(3)])
    insert(db, [survey("nps", 0, "2024-05-02", f"d{i}") for i in range(3)])
    days = by_day(db, "kpi_satisfaction_daily")
    assert (days["2024-05-01"]["nps"], days["2024-05-02"]["nps"]) == (100.0, -100.0)
    assert one(db, "SELECT nps FROM kpi_satisfaction")["nps"] == 0.0
    summed = one(
        db,
        "SELECT (sum(nps_promoters) - sum(nps_detractors)) * 100 / sum(nps_responses) AS nps "
        "FROM kpi_satisfaction_daily WHERE day BETWEEN '2024-05-01' AND '2024-05-02'",
    )
    assert summed["nps"] == 0.0


def test_a_resent_answer_counts_once(db: Client) -> None:
    answer = survey("nps", 10)
    insert(db, [answer, survey("nps", 3, user_id="v")])
    insert(db, [answer])  # resent: a second row until a merge, which is stopped here
    assert db.query(f"SELECT count() FROM events WHERE event_id = '{answer.event_id}'").result_rows == [(2,)]
    total = one(db, "SELECT nps_responses, nps_promoters, nps FROM kpi_satisfaction")
    assert total == {"nps_responses": 2, "nps_promoters": 1, "nps": 0.0}


def test_csat_is_the_share_of_satisfied_answers_and_the_mean_score(db: Client) -> None:
    """003:28: satisfied / responses; with 4-5 of 1-5 as satisfied, 85 of 100 give 85% (catalog fixture)."""
    scores = [5] * 40 + [4] * 45 + [3] * 10 + [2] * 3 + [1] * 2
    insert(db, [survey("csat", score, user_id=f"u{i}") for i, score in enumerate(scores)])
    day = by_day(db, "kpi_satisfaction_daily")["2024-05-01"]
    assert (day["csat_responses"], day["csat_satisfied"], day["csat_pct"]) == (100, 85, 85.0)
    assert (day["csat_score_sum"], day["csat_mean_score"]) == (418.0, 4.18)  # 200 + 180 + 30 + 6 + 2
    assert day["support_csat_responses"] == 0 and day["support_csat_pct"] is None


def test_csat_satisfied_is_the_top_two_points_of_the_senders_scale(db: Client) -> None:
    """003:25: CSAT is "usually 1-5 or 1-10"; on 1-10 the top two points are 9-10."""
    insert(db, [
        survey("csat", 3, scale_min=1, scale_max=5), survey("csat", 4, scale_min=1, scale_max=5),
        survey("csat", 8, scale_min=1, scale_max=10), survey("csat", 9, scale_min=1, scale_max=10),
        survey("csat", 10, scale_min=1, scale_max=10),
    ])  # fmt: skip
    answers = rows(
        db,
        "SELECT score, scale_min, scale_max, satisfied, score_pct FROM kpi_survey_responses ORDER BY scale_max, score",
    )
    assert [(a["score"], a["scale_max"], a["satisfied"]) for a in answers] == [
        (3.0, 5.0, 0), (4.0, 5.0, 1), (8.0, 10.0, 0), (9.0, 10.0, 1), (10.0, 10.0, 1),
    ]  # fmt: skip
    assert [a["score_pct"] for a in answers] == pytest.approx([50.0, 75.0, 700 / 9, 800 / 9, 100.0])
    assert one(db, "SELECT csat_satisfied, csat_pct FROM kpi_satisfaction") == {"csat_satisfied": 3, "csat_pct": 60.0}


def test_ces_is_the_total_score_over_the_respondents(db: Client) -> None:
    """004:37: "dividing the total CES by the number of respondents", on the default 1-7 scale."""
    insert(db, [survey("ces", score, user_id=f"u{i}") for i, score in enumerate([7, 5, 3, 6])])
    insert(db, [survey("ces", 6, "2024-05-02")])
    days = by_day(db, "kpi_satisfaction_daily")
    assert (days["2024-05-01"]["ces_responses"], days["2024-05-01"]["ces_score_sum"]) == (4, 21.0)
    assert days["2024-05-01"]["ces_mean_score"] == 5.25
    assert one(db, "SELECT ces_responses, ces_mean_score FROM kpi_satisfaction") == {
        "ces_responses": 5,
        "ces_mean_score": 5.4,
    }
    assert {row[0] for row in db.query("SELECT (scale_min, scale_max) FROM kpi_survey_responses").result_rows} == {
        (1.0, 7.0)
    }


def test_support_csat_and_its_response_rate_per_resolution(db: Client) -> None:
    """CSAT answers carrying a ticket_id are support CSAT (003:101); answered per ticket_resolved event."""
    insert(db, [
        event("ticket_opened", "a", "2024-05-01 09:00:00", ticket_id="t1"),
        event("ticket_resolved", "a", "2024-05-01 10:00:00", ticket_id="t1"),
        event("ticket_reopened", "a", "2024-05-01 11:00:00", ticket_id="t1"),
        event("ticket_resolved", "a", "2024-05-01 12:00:00", ticket_id="t1"),
        event("ticket_opened", "b", "2024-05-01 09:00:00", ticket_id="t2"),
        event("ticket_resolved", "b", "2024-05-01 10:00:00", ticket_id="t2"),
        event("ticket_opened", "c", "2024-05-01 09:00:00", ticket_id="t3"),
        event("ticket_resolved", "c", "2024-05-01 10:00:00", ticket_id="t3"),
        survey("csat", 5, user_id="a", ticket_id="t1"),
        survey("csat", 2, user_id="b", ticket_id="t2"),
        survey("csat", 4, user_id="d"),  # an in-app CSAT, not about a ticket
        survey("ces", 6, user_id="a", ticket_id="t1"),  # a CES answer is no CSAT answer
    ])  # fmt: skip
    day = by_day(db, "kpi_satisfaction_daily")["2024-05-01"]
    assert (day["csat_responses"], day["csat_satisfied"]) == (3, 2)
    assert (day["support_csat_responses"], day["support_csat_satisfied"], day["support_csat_pct"]) == (2, 1, 50.0)
    assert (day["ticket_resolutions"], day["support_csat_response_pct"]) == (4, 50.0)


# --- support ------------------------------------------------------------------------------
#
# A hand-made timeline over 2024-05-01 (D1) to 2024-05-05 (D5), UTC:
#   t1  opened D1 09:00, first response 09:30 (1800 s), resolved 13:00 (14400 s): one touch
#   t2  opened D1 10:00, response 11:00 (3600 s), resolved 18:00, reopened D2 08:00, resolved D2 12:00 (93600 s)
#   t3  opened D1 23:00, response D2 01:00 (7200 s), resolved D3 11:00 (129600 s): one touch
#   t4  opened D2 12:00, no response yet: open
#   t5  opened D2 14:00, response 14:10 (600 s), resolved 20:00, reopened D3 09:00: open again
#   t6  opened D3 10:00, resolved 10:30 (1800 s) with no response: resolved but not one touch
#   t7  opened D5 08:00; nothing happens on D4
# t1's resolution and t5's reopening are resent (same event, a second row on disk).

TIMELINE = [
    ("t1", "ticket_opened", "2024-05-01 09:00:00"),
    ("t1", "ticket_first_response", "2024-05-01 09:30:00"),
    ("t1", "ticket_resolved", "2024-05-01 13:00:00"),
    ("t2", "ticket_opened", "2024-05-01 10:00:00"),
    ("t2", "ticket_first_response", "2024-05-01 11:00:00"),
    ("t2", "ticket_resolved", "2024-05-01 18:00:00"),
    ("t2", "ticket_reopened", "2024-05-02 08:00:00"),
    ("t2", "ticket_resolved", "2024-05-02 12:00:00"),
    ("t3", "ticket_opened", "2024-05-01 23:00:00"),
    ("t3", "ticket_first_response", "2024-05-02 01:00:00"),
    ("t3", "ticket_resolved", "2024-05-03 11:00:00"),
    ("t4", "ticket_opened", "2024-05-02 12:00:00"),
    ("t5", "ticket_opened", "2024-05-02 14:00:00"),
    ("t5", "ticket_first_response", "2024-05-02 14:10:00"),
    ("t5", "ticket_resolved", "2024-05-02 20:00:00"),
    ("t5", "ticket_reopened", "2024-05-03 09:00:00"),
    ("t6", "ticket_opened", "2024-05-03 10:00:00"),
    ("t6", "ticket_resolved", "2024-05-03 10:30:00"),
    ("t7", "ticket_opened", "2024-05-05 08:00:00"),
]


@pytest.fixture
def timeline(db: Client) -> Client:
    events = {(ticket, kind, ts): event(kind, f"user-{ticket}", ts, ticket_id=ticket) for ticket, kind, ts in TIMELINE}
    insert(db, list(events.values()))
    resent = [
        events["t1", "ticket_resolved", "2024-05-01 13:00:00"],
        events["t5", "ticket_reopened", "2024-05-03 09:00:00"],
    ]
    insert(db, resent)
    assert db.query("SELECT count() FROM events").result_rows == [(len(TIMELINE) + 2,)]
    return db


def test_tickets_have_their_times_and_status(timeline: Client) -> None:
    tickets = {row.pop("ticket_id"): row for row in rows(timeline, "SELECT * FROM kpi_tickets ORDER BY ticket_id")}
    summary = {
        ticket: (t["first_response_s"], t["resolution_s"], t["reopens"], t["resolved"], t["one_touch"], t["status"])
        for ticket, t in tickets.items()
    }
    assert summary == {
        "t1": (1800.0, 14400.0, 0, 1, 1, "resolved"),
        "t2": (3600.0, 93600.0, 1, 1, 0, "resolved"),
        "t3": (7200.0, 129600.0, 0, 1, 1, "resolved"),
        "t4": (None, None, 0, 0, 0, "open"),
        "t5": (600.0, None, 1, 0, 0, "reopened"),
        "t6": (None, 1800.0, 0, 1, 0, "resolved"),
        "t7": (None, None, 0, 0, 0, "open"),
    }
    assert tickets["t2"]["user_id"] == "user-t2"
    assert str(tickets["t2"]["first_resolved_at"]) == "2024-05-01 18:00:00"
    assert str(tickets["t2"]["resolved_at"]) == "2024-05-02 12:00:00"
    assert str(tickets["t5"]["first_resolved_at"]) == "2024-05-02 20:00:00" and tickets["t5"]["resolved_at"] is None


def test_support_daily_puts_each_step_on_its_day(timeline: Client) -> None:
    days = by_day(timeline, "kpi_support_daily")
    assert list(days) == ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04", "2024-05-05"]
    opened = {day: (d["tickets_opened"], d["first_responses"], d["tickets_resolved"], d["reopens"], d["backlog"])
              for day, d in days.items()}  # fmt: skip
    assert opened == {
        "2024-05-01": (3, 2, 1, 0, 1),  # t1 closed, t2 closed at 18:00, t3 open
        "2024-05-02": (2, 2, 1, 1, 2),  # t2 reopened and resolved again, t5 resolved; t3 and t4 open
        "2024-05-03": (1, 0, 2, 1, 2),  # t3 and t6 resolved, t5 reopened: t4 and t5 open
        "2024-05-04": (0, 0, 0, 0, 2),  # a quiet day keeps its backlog
        "2024-05-05": (1, 0, 0, 0, 3),
    }

    d1, d2, d3, d4 = days["2024-05-01"], days["2024-05-02"], days["2024-05-03"], days["2024-05-04"]
    times = ["s_sum", "mean_s", "median_s", "p90_s"]
    assert [d1[f"first_response_{t}"] for t in times] == pytest.approx([5400, 2700, 2700, 1800 + 0.9 * 1800])
    assert [d2[f"first_response_{t}"] for t in times] == pytest.approx([7800, 3900, 3900, 600 + 0.9 * 6600])
    assert [d3[f"first_response_{t}"] for t in times] == [0.0, None, None, None]
    assert [d1[f"resolution_{t}"] for t in times] == pytest.approx([14400] * 4)
    assert [d2[f"resolution_{t}"] for t in times] == pytest.approx([93600] * 4)
    assert [d3[f"resolution_{t}"] for t in times] == pytest.approx([131400, 65700, 65700, 1800 + 0.9 * 127800])
    assert d4["resolution_median_s"] is None

    rates = ["resolved_after_reopen", "reopen_pct", "net_resolution_pct", "one_touch_resolutions", "one_touch_pct"]
    assert [d1[r] for r in rates] == [0, 0.0, 100.0, 1, 100.0]
    assert [d2[r] for r in rates] == [1, 100.0, 0.0, 0, 0.0]  # t2, resolved after its reopening
    assert [d3[r] for r in rates] == [0, 0.0, 100.0, 1, 50.0]  # t6 had no response: no touch, not one
    assert [d4[r] for r in rates] == [0, None, None, 0, None]


def test_support_all_time(timeline: Client) -> None:
    total = one(timeline, "SELECT * FROM kpi_support")
    times = {key: value for key, value in total.items() if key.endswith(("_s", "_s_sum"))}
    assert times == pytest.approx({
        "first_response_s_sum": 13200, "first_response_mean_s": 3300, "first_response_median_s": 2700,
        "first_response_p90_s": 3600 + 0.7 * 3600,
        "resolution_s_sum": 239400, "resolution_mean_s": 59850, "resolution_median_s": 54000,
        "resolution_p90_s": 93600 + 0.7 * 36000,
    })  # fmt: skip
    counts = {key: value for key, value in total.items() if key not in times}
    assert counts == {
        "tickets_opened": 7, "first_responses": 4, "tickets_resolved": 4,
        "resolved_after_reopen": 1, "reopen_pct": 25.0, "net_resolution_pct": 75.0,
        "one_touch_resolutions": 2, "one_touch_pct": 50.0,
        "reopens": 2, "tickets_reopened": 2, "backlog": 3, "awaiting_first_response": 2,
    }  # fmt: skip


def test_daily_counts_sum_to_the_all_time_ones(timeline: Client) -> None:
    summed = one(
        timeline,
        "SELECT sum(tickets_opened) AS opened, sum(first_responses) AS responses, sum(tickets_resolved) AS resolved, "
        "sum(resolution_s_sum) / sum(tickets_resolved) AS resolution_mean_s, sum(reopens) AS reopens, "
        "argMax(backlog, day) AS backlog FROM kpi_support_daily",
    )
    total = one(timeline, "SELECT * FROM kpi_support")
    assert summed == {
        "opened": total["tickets_opened"], "responses": total["first_responses"],
        "resolved": total["tickets_resolved"], "resolution_mean_s": total["resolution_mean_s"],
        "reopens": total["reopens"], "backlog": total["backlog"],
    }  # fmt: skip


def test_events_of_a_ticket_never_opened_are_left_out(db: Client) -> None:
    """Without its ticket_opened there is no time to measure from: such a ticket is in no support figure."""
    insert(db, [
        event("ticket_opened", "a", "2024-05-01 09:00:00", ticket_id="t1"),
        event("ticket_first_response", "b", "2024-05-01 09:00:00", ticket_id="ghost"),
        event("ticket_reopened", "b", "2024-05-01 10:00:00", ticket_id="ghost"),
    ])  # fmt: skip
    assert [row[0] for row in db.query("SELECT ticket_id FROM kpi_tickets").result_rows] == ["t1"]
    assert one(db, "SELECT tickets_opened, first_responses, backlog FROM kpi_support") == {
        "tickets_opened": 1,
        "first_responses": 0,
        "backlog": 1,
    }
    assert [d["backlog"] for d in by_day(db, "kpi_support_daily").values()] == [1]
