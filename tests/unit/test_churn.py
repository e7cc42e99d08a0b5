"""The churn-risk job: windows, the score and its reasons, alerts, timers, the codec, and order independence."""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.contract import Event
from pulse.outputs import CHURN_ALERTS, CHURN_SCORES
from pulse.settings import ChurnTuning, load_settings
from stream_jobs import churn_job
from stream_jobs.churn_job import ChurnJob, ChurnState, alert_id
from stream_jobs.churn_scoring import Assessment, ChurnRules, next_change, score
from stream_jobs.churn_windows import DAY_MS, Features, Rating, UserWindows
from stream_jobs.dedup import id_hash
from stream_jobs.job import Row
from stream_jobs.runner import JobRunner

T0 = 1_699_920_000_000  # 2023-11-14T00:00:00Z, a UTC midnight
HOUR = 3_600_000
MINUTE = 60_000
LATENESS = 10 * MINUTE
RETENTION = 90 * DAY_MS


def ev(i: int, day: float, event_type: str = "login", user: str = "u1", **props: Any) -> Event:
    """Event ``e<i>`` at ``day`` days after T0."""
    return Event(f"e{i}", event_type, user, T0 + round(day * DAY_MS), props, {})


def make_job(lateness: int = LATENESS, **rules: Any) -> ChurnJob:
    return ChurnJob(ChurnRules(**rules), RETENTION, lateness)


def scores(rows: list[Row]) -> list[dict[str, Any]]:
    return [row.values for row in rows if row.output is CHURN_SCORES]


def alerts(rows: list[Row]) -> list[dict[str, Any]]:
    return [row.values for row in rows if row.output is CHURN_ALERTS]


def folded(events: list[Event], now_day: float | None = None) -> Features:
    windows = UserWindows()
    for event in events:
        windows.add(event)
    assert windows.latest is not None
    return windows.features(windows.latest if now_day is None else T0 + round(now_day * DAY_MS))


# --- windows ---------------------------------------------------------------------------


def test_day_buckets_count_active_days_purchases_and_net_revenue_per_window() -> None:
    events = [
        ev(1, 0.1), ev(2, 0.2, "page_view", path="/"),  # day 0: one active day, two events
        ev(3, 20, "feature_used", feature="x"), ev(4, 33, "custom.exported"), ev(5, 55),
        ev(6, 21, "purchase", order_id="o1", amount=10.5), ev(7, 40, "purchase", order_id="o2", amount=20),
        ev(8, 41, "refund", order_id="o2", amount=5.25),
        ev(9, 56, "email_sent", campaign="c"), ev(10, 57, "ticket_opened", ticket_id="t"),  # not activity
    ]  # fmt: skip
    features = folded(events)  # now: day 57; a purchase is product use too
    assert (features.active_days_7, features.active_days_30, features.active_days_prev_30) == (1, 3, 3)
    assert (features.purchases_30, features.revenue_30_cents) == (1, 2000 - 525)
    assert (features.purchases_prev_30, features.revenue_prev_30_cents) == (1, 1050)
    assert features.last_activity_ms == T0 + 55 * DAY_MS
    assert features.days_inactive == 2


def test_buckets_older_than_sixty_days_before_the_latest_event_are_dropped() -> None:
    windows = UserWindows()
    for event in (ev(1, 0), ev(2, 10), ev(3, 69.5), ev(4, 5, "payment_failed", amount=1)):
        windows.add(event)
    assert sorted(windows.days) == [T0 // DAY_MS + 10, T0 // DAY_MS + 69]
    assert windows.failed_payments == []
    assert windows.last_activity == T0 + round(69.5 * DAY_MS)


def test_subscription_state_plan_and_cancellation_follow_the_latest_event() -> None:
    started = [ev(1, 0, "trial_started", plan="pro"), ev(2, 14, "subscription_started", plan="pro", mrr=49)]
    assert (folded(started).subscription, folded(started).plan, folded(started).mrr_cents) == ("active", "pro", 4900)
    assert folded(started[:1]).subscription == "trial"
    assert folded([ev(0, 0)]).subscription == "none"
    cancelled = folded([*started, ev(3, 20, "subscription_cancelled")])
    assert (cancelled.subscription, cancelled.cancelled_at_ms) == ("cancelled", T0 + 20 * DAY_MS)
    assert cancelled.mrr_cents == 4900  # the plan's, for what was lost
    back = folded(
        [*started, ev(3, 20, "subscription_cancelled"), ev(4, 25, "subscription_changed", plan="team", mrr=99)]
    )
    assert (back.subscription, back.plan, back.cancelled_at_ms) == ("active", "team", None)


def test_a_tie_in_event_time_is_broken_by_the_event_id_hash() -> None:
    first, second = sorted(["a", "b"], key=id_hash)  # the later one by the hash wins
    events = [
        Event(first, "subscription_started", "u1", T0, {"plan": "p", "mrr": 1}, {}),
        Event(second, "subscription_cancelled", "u1", T0, {}, {}),
    ]
    assert folded(events).subscription == folded(events[::-1]).subscription == "cancelled"


def test_failed_payments_count_when_recent_and_not_paid_since() -> None:
    failed = [ev(i, day, "payment_failed", amount=9) for i, day in ((1, 1), (2, 4), (3, 10))]
    assert folded(failed).failed_payments == 3
    assert folded([*failed, ev(4, 5, "purchase", order_id="o", amount=9)]).failed_payments == 1  # paid after two
    assert folded(failed, now_day=34).failed_payments == 1  # days 1 and 4 are past the 30-day window


def test_open_tickets_are_a_set_of_ids_whatever_the_arrival_order() -> None:
    events = [
        ev(1, 0, "ticket_opened", ticket_id="a"), ev(2, 1, "ticket_resolved", ticket_id="a"),
        ev(3, 2, "ticket_opened", ticket_id="b"), ev(4, 3, "ticket_first_response", ticket_id="b"),
        ev(5, 4, "ticket_reopened", ticket_id="a"), ev(6, 5, "ticket_opened", ticket_id="c"),
        ev(7, 6, "ticket_resolved", ticket_id="c"),
    ]  # fmt: skip
    assert folded(events).open_tickets == folded(events[::-1]).open_tickets == 2  # a (reopened) and b


def test_the_latest_survey_answer_of_each_kind_counts_on_its_own_scale() -> None:
    events = [
        ev(1, 0, "survey_response", kind="nps", score=2), ev(2, 5, "survey_response", kind="nps", score=9),
        ev(3, 1, "survey_response", kind="csat", score=3, scale_min=1, scale_max=10),
        ev(4, 2, "survey_response", kind="ces", score=6),
    ]  # fmt: skip
    features = folded(events[::-1])
    assert (features.nps, features.csat, features.ces) == (Rating(9, 0, 10), Rating(3, 1, 10), Rating(6, 1, 7))


# --- scoring ---------------------------------------------------------------------------

QUIET = Features(
    active_days_7=3, active_days_30=12, active_days_prev_30=12, purchases_30=0, purchases_prev_30=0,
    revenue_30_cents=0, revenue_prev_30_cents=0, last_activity_ms=T0, days_inactive=0, subscription="active",
    plan="pro", mrr_cents=4900, cancelled_at_ms=None, failed_payments=0, open_tickets=0, nps=None, csat=None, ces=None,
)  # fmt: skip
RULES = ChurnRules()


def assess(now_day: float = 0, **changes: Any) -> Assessment:
    return score(QUIET._replace(**changes), T0 + round(now_day * DAY_MS), RULES)


def test_a_healthy_user_scores_zero_with_no_reasons() -> None:
    assert assess() == Assessment(0.0, "low", [])


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"days_inactive": 16}, "no activity for 16 days"),
        ({"active_days_30": 3, "active_days_7": 0, "active_days_prev_30": 10},
         "activity down 70% on the previous 30 days"),
        ({"purchases_prev_30": 3, "revenue_prev_30_cents": 10_000, "revenue_30_cents": 4_000},
         "spend down 60% on the previous 30 days"),
        ({"failed_payments": 1}, "1 failed payment"),
        ({"failed_payments": 2}, "2 failed payments"),
        ({"nps": Rating(3, 0, 10)}, "NPS detractor (3)"),
        ({"csat": Rating(2, 1, 5)}, "low CSAT (2 of 5)"),
        ({"ces": Rating(2, 1, 7)}, "high effort (CES 2 of 7)"),
        ({"open_tickets": 1}, "1 open support ticket"),
        ({"open_tickets": 2}, "2 open support tickets"),
    ],
)  # fmt: skip
def test_each_signal_names_its_reason(changes: dict[str, Any], reason: str) -> None:
    assessment = assess(**changes)
    assert assessment.reasons == [reason]
    assert 0 < assessment.score <= 1


@pytest.mark.parametrize(
    "changes",
    [
        {"days_inactive": 4},  # within the grace days
        {"nps": Rating(7, 0, 10)},  # a passive
        {"csat": Rating(3, 1, 5)},  # the middle of the scale
        {"ces": Rating(5, 1, 7)},
        {"active_days_30": 1, "active_days_7": 1, "active_days_prev_30": 3},  # too little before to call it a drop
        {"active_days_30": 2, "active_days_7": 2, "active_days_prev_30": 8},  # back to the old rhythm this week
        {"purchases_prev_30": 1, "revenue_prev_30_cents": 10_000},  # one purchase is no habit
    ],
)
def test_what_is_no_signal(changes: dict[str, Any]) -> None:
    assert assess(**changes) == Assessment(0.0, "low", [])


def test_the_score_is_a_capped_weighted_sum() -> None:
    assert assess(failed_payments=1).score == 0.23  # 0.45 * 1/2
    assert assess(nps=Rating(0, 0, 10)).score == 0.35
    assert assess(failed_payments=2, nps=Rating(0, 0, 10)).score == 0.8
    assert assess(days_inactive=29, failed_payments=2, open_tickets=2).score == 1.0


def test_reasons_are_the_largest_contributions_first_and_at_most_three() -> None:
    assessment = assess(
        days_inactive=20, failed_payments=1, nps=Rating(0, 0, 10), open_tickets=2, csat=Rating(1, 1, 5)
    )  # inactivity 0.62, NPS 0.35, CSAT 0.25, payments 0.225, tickets 0.2
    assert assessment.reasons == ["no activity for 20 days", "NPS detractor (0)", "low CSAT (1 of 5)"]


def test_tiers_by_threshold() -> None:
    rules = ChurnRules(weight_failed_payments=0.4, weight_open_tickets=0.3, failed_payments_full=1, open_tickets_full=1)
    at = {name: score(QUIET._replace(**changes), T0, rules) for name, changes in {
        "below medium_at": {"open_tickets": 1},  # 0.3
        "at medium_at": {"failed_payments": 1},  # 0.4
        "at high_at": {"failed_payments": 1, "open_tickets": 1},  # 0.7
    }.items()}  # fmt: skip
    assert [a.tier for a in at.values()] == ["low", "medium", "high"]
    assert [a.score for a in at.values()] == [0.3, 0.4, 0.7]


def test_churned_by_inactivity_from_the_exact_churn_point() -> None:
    just_before = score(QUIET._replace(days_inactive=29), T0 + 30 * DAY_MS - 1, RULES)
    at_point = score(QUIET._replace(days_inactive=30), T0 + 30 * DAY_MS, RULES)
    assert just_before.tier == "high"
    assert at_point == Assessment(1.0, "churned", ["no activity for 30 days"])


def test_churned_by_cancellation_comes_first_and_keeps_other_reasons() -> None:
    cancelled = assess(subscription="cancelled", cancelled_at_ms=T0, failed_payments=2, nps=Rating(5, 0, 10))
    assert cancelled == Assessment(1.0, "churned", ["subscription cancelled", "2 failed payments", "NPS detractor (5)"])


def test_a_new_subscription_undoes_the_cancellation() -> None:
    events = [ev(1, 0, "subscription_started", plan="p", mrr=10), ev(2, 1, "subscription_cancelled")]
    assert score(folded(events), T0 + DAY_MS, RULES).tier == "churned"
    for again in (ev(3, 2, "subscription_started", plan="p", mrr=10), ev(3, 2, "trial_started", plan="p")):
        assert score(folded([*events, again]), T0 + 2 * DAY_MS, RULES).tier == "low"


def test_rules_come_from_the_settings_and_refuse_nonsense() -> None:
    rules = ChurnRules.from_tuning(ChurnTuning(inactive_days=14.0, high_at=0.8, weight_nps=0.5))
    assert (rules.inactive_days, rules.high_at, rules.weight_nps, rules.min_active_days) == (14.0, 0.8, 0.5, 4)
    assert rules.inactive_ms == 14 * DAY_MS and ChurnRules(alert_cooldown_hours=1.5).cooldown_ms == 90 * MINUTE
    for wrong in ({"medium_at": 0.7}, {"high_at": 1.2}, {"grace_days": 30.0}, {"weight_ces": -0.1}):
        with pytest.raises(ValueError):
            ChurnRules(**wrong)


def test_time_changes_the_score_at_whole_days_of_silence_and_at_the_churn_point() -> None:
    assert next_change(T0, "low", T0 + 5 * HOUR, RULES) == T0 + DAY_MS
    assert next_change(T0, "high", T0 + 29 * DAY_MS, RULES) == T0 + 30 * DAY_MS
    assert next_change(T0, "low", T0, ChurnRules(inactive_days=0.5, grace_days=0.0)) == T0 + 12 * HOUR
    assert next_change(T0, "churned", T0, RULES) is None
    assert next_change(None, "low", T0, RULES) is None


# --- the job: rows and alerts ------------------------------------------------------------


def test_a_first_event_publishes_the_users_score() -> None:
    job, state = make_job(), ChurnState()
    rows = job.on_events("u1", state, [ev(1, 0)])
    assert scores(rows) == [{"user_id": "u1", "score": 0.0, "tier": "low", "reasons": [], "ts": T0, "version": T0}]
    assert alerts(rows) == []
    assert job.on_events("u1", state, [ev(2, 0.1, "page_view", path="/")]) == []  # nothing changed: no row


def test_a_rise_emits_one_alert_with_a_deterministic_id() -> None:
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(1, 0)])
    rows = job.on_events("u1", state, [ev(2, 0.5, "payment_failed", amount=9), ev(3, 0.6, "payment_failed", amount=9)])
    assert [(r["tier"], r["reasons"]) for r in scores(rows)] == [
        ("low", ["1 failed payment"]),
        ("medium", ["2 failed payments"]),
    ]
    (alert,) = alerts(rows)
    ts = T0 + round(0.6 * DAY_MS)
    assert {k: v for k, v in alert.items() if k != "emitted_at"} == {
        "alert_id": alert_id("u1", "medium", ts), "user_id": "u1", "old_tier": "low", "new_tier": "medium",
        "score": 0.45, "reasons": ["2 failed payments"], "ts": ts,
    }  # fmt: skip
    assert abs(alert["emitted_at"] - time.time() * 1000) < 60_000  # the wall clock, the one non-deterministic field
    assert alerts(job.on_events("u1", state, [ev(4, 0.7, "payment_failed", amount=9)])) == []  # still medium
    assert len({alert_id("u1", "medium", ts), alert_id("u1", "high", ts), alert_id("u1", "medium", ts + 1)}) == 3


def test_a_replay_of_the_same_events_gives_the_same_alert_ids() -> None:
    events = [ev(1, 0), ev(2, 1, "survey_response", kind="nps", score=0), ev(3, 2, "subscription_cancelled")]
    runs = [alerts(make_job().on_events("u1", ChurnState(), events)) for _ in range(2)]
    assert [a["alert_id"] for a in runs[0]] == [a["alert_id"] for a in runs[1]]
    assert [(a["old_tier"], a["new_tier"]) for a in runs[0]] == [("low", "churned")]


def test_no_second_alert_for_the_same_tier_within_the_cool_down() -> None:
    job, state = make_job(), ChurnState()
    fail = [ev(i, 0.01 * i, "payment_failed", amount=9) for i in (1, 2)]
    first = alerts(job.on_events("u1", state, fail))
    recovered = job.on_events("u1", state, [ev(3, 0.1, "purchase", order_id="o", amount=9)])
    assert scores(recovered)[-1]["tier"] == "low" and alerts(recovered) == []  # a fall: a row, no alert
    within = alerts(job.on_events("u1", state, [ev(i, 0.2 + 0.01 * i, "payment_failed", amount=9) for i in (4, 5)]))
    job.on_events("u1", state, [ev(6, 1.5, "purchase", order_id="o", amount=9)])
    after = alerts(job.on_events("u1", state, [ev(i, 1.5 + 0.01 * i, "payment_failed", amount=9) for i in (7, 8)]))
    assert (len(first), len(within), len(after)) == (1, 0, 1)


def test_a_user_coming_back_gets_a_score_row_and_no_alert() -> None:
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(1, 0)])
    job.on_watermark("u1", state, T0 + 31 * DAY_MS)
    assert state.current is not None and state.current.tier == "churned"
    rows = job.on_events("u1", state, [ev(2, 31)])
    assert [(r["tier"], r["score"]) for r in scores(rows)] == [("low", 0.0)]
    assert alerts(rows) == []


# --- the job: time -----------------------------------------------------------------------


def test_the_watermark_alone_walks_a_silent_user_to_churned() -> None:
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(1, 0)])
    assert job.deadline(state) == T0 + 5 * DAY_MS  # nothing windowed can move before the grace days end
    assert job.on_watermark("u1", state, T0 + DAY_MS) == []  # not past it yet: the runner would not call
    rows = job.on_watermark("u1", state, T0 + 40 * DAY_MS)
    assert [r["ts"] for r in scores(rows)] == [T0 + day * DAY_MS for day in range(5, 31)]  # from the 5th quiet day
    assert [(a["old_tier"], a["new_tier"], a["ts"]) for a in alerts(rows)] == [
        ("low", "medium", T0 + 15 * DAY_MS),
        ("medium", "high", T0 + 23 * DAY_MS),
        ("high", "churned", T0 + 30 * DAY_MS),
    ]  # fmt: skip
    assert scores(rows)[-1]["reasons"] == ["no activity for 30 days"]
    assert job.deadline(state) == T0 + RETENTION  # churned: only the retention is left to wait for


def test_a_user_with_a_history_is_checked_every_day_of_the_grace() -> None:
    """Five active days more than 30 days ago: the activity drop may move any day, so every day is checked."""
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(day + 1, day) for day in range(5)])
    job.on_events("u1", state, [ev(9, 40)])
    assert job.deadline(state) == T0 + 41 * DAY_MS


def test_a_check_waits_for_events_that_may_still_come() -> None:
    """A login 5 minutes before day 30 arrives after one 5 minutes past it: no churn in between."""
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(1, 0)])
    job.on_watermark("u1", state, T0 + 29 * DAY_MS)
    later = job.on_events("u1", state, [Event("e3", "login", "u1", T0 + 30 * DAY_MS + 5 * MINUTE, {}, {})])
    earlier = job.on_events("u1", state, [Event("e2", "login", "u1", T0 + 30 * DAY_MS - 5 * MINUTE, {}, {})])
    assert [r["tier"] for r in scores(later + earlier)] == ["high", "low"]  # the check of day 29, then back
    assert alerts(later + earlier) == []


def test_a_users_next_event_runs_the_checks_before_it_first() -> None:
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(1, 0)])
    rows = job.on_events("u1", state, [ev(2, 45)])
    assert [(r["tier"], r["ts"]) for r in scores(rows)][-2:] == [
        ("churned", T0 + 30 * DAY_MS),
        ("low", T0 + 45 * DAY_MS),
    ]


def test_a_churned_silent_user_is_forgotten_after_the_retention() -> None:
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(1, 0, "subscription_cancelled")])
    assert job.deadline(state) == T0 + RETENTION and not job.is_empty(state)
    assert job.on_watermark("u1", state, T0 + RETENTION + 1) == []
    assert job.is_empty(state) and job.deadline(state) is None and job.live(state) == 0
    (row,) = scores(job.on_events("u1", state, [ev(2, 100, "subscription_cancelled")]))  # back: a new user
    assert row["version"] == T0 + 100 * DAY_MS  # above every version the user had before


def test_a_never_active_user_is_forgotten_too() -> None:
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(1, 0, "email_sent", campaign="c")])
    assert job.deadline(state) == T0 + RETENTION
    job.on_watermark("u1", state, T0 + RETENTION + 1)
    assert job.is_empty(state)


def test_live_is_the_tier_rank() -> None:
    job, state = make_job(), ChurnState()
    assert job.live(state) == 0
    job.on_events("u1", state, [ev(1, 0)])
    assert job.live(state) == 1
    job.on_events("u1", state, [ev(2, 1, "subscription_cancelled")])
    assert job.live(state) == 4


# --- the job: replays and the codec ------------------------------------------------------


def test_current_rows_republish_the_latest_score_row_and_no_alert() -> None:
    job, state = make_job(), ChurnState()
    rows = job.on_events("u1", state, [ev(1, 0), ev(2, 1, "subscription_cancelled"), ev(3, 2)])
    assert alerts(rows)
    assert job.current_rows("u1", state) == [Row(CHURN_SCORES, scores(rows)[-1])]
    assert job.current_rows("u1", ChurnState()) == []


def test_the_codec_round_trips_every_part_of_the_state() -> None:
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [
        ev(1, 0, "trial_started", plan="pro"), ev(2, 1, "subscription_started", plan="pro", mrr=49.5),
        ev(3, 2, "purchase", order_id="o", amount=12.34), ev(4, 3, "payment_failed", amount=49.5),
        ev(5, 4, "ticket_opened", ticket_id="t1"), ev(6, 4, "survey_response", kind="csat", score=2, scale_max=10),
        ev(7, 5, "survey_response", kind="nps", score=1), ev(8, 6, "payment_failed", amount=49.5),
    ])  # fmt: skip
    assert state.alerted
    data = job.encode(state)
    again = job.decode(data, job.version)
    assert again == state
    assert job.encode(again) == data
    assert job.deadline(again) == job.deadline(state)
    with pytest.raises(ValueError):
        job.decode(data, job.version + 1)


def test_the_job_refuses_no_retention_and_a_lateness_beyond_its_windows() -> None:
    with pytest.raises(ValueError):
        ChurnJob(RULES, RETENTION, 61 * DAY_MS)
    with pytest.raises(ValueError):
        ChurnJob(RULES, 0, LATENESS)


# --- through the runner --------------------------------------------------------------------


def test_the_runner_fires_the_churn_timer_when_another_users_events_move_the_watermark(tmp_path: Path) -> None:
    runner = JobRunner(load_settings({"PULSE_DATA_DIR": str(tmp_path)}), {}, jobs=[make_job()])

    def feed(offset: int, *events: Event) -> dict[Any, list[Any]]:
        value = b"\n".join(orjson.dumps(e.to_dict()) for e in events)
        return runner.process(value, "events", 0, offset).rows

    feed(0, ev(1, 0, user="quiet"))
    rows = feed(1, ev(2, 31, user="busy"))
    churned = [row for row in rows[CHURN_ALERTS] if row["user_id"] == "quiet"]
    assert [(a["new_tier"], a["ts"]) for a in churned] == [
        ("medium", T0 + 15 * DAY_MS), ("high", T0 + 23 * DAY_MS), ("churned", T0 + 30 * DAY_MS),
    ]  # fmt: skip
    assert runner.live_values("churn") == {4: 1, 1: 1}  # users by tier rank: one churned, one low
    replayed = feed(1, ev(2, 31, user="busy"))  # the offset was not committed: the record comes again
    assert CHURN_ALERTS not in replayed
    assert replayed[CHURN_SCORES] == [row for row in rows[CHURN_SCORES] if row["user_id"] == "busy"]


# --- order independence --------------------------------------------------------------------

KINDS = (
    "login", "page_view", "feature_used", "custom.exported", "email_sent", "purchase", "refund", "payment_failed",
    "trial_started", "subscription_started", "subscription_changed", "subscription_cancelled",
    "nps", "csat", "ces", "ticket_opened", "ticket_resolved", "ticket_reopened",
)  # fmt: skip
PROPERTY_LATENESS = 2 * DAY_MS


def planned_event(i: int, minute: int, kind: str, n: int, user: str) -> Event:
    """An event of each kind with valid props, varied by ``n`` (0-10)."""
    props: dict[str, Any] = {}
    if kind in ("nps", "csat", "ces"):
        props = {"kind": kind, "score": {"nps": n, "csat": 1 + n % 5, "ces": 1 + n % 7}[kind]}
        kind = "survey_response"
    elif kind in ("purchase", "refund", "payment_failed"):
        props = {"order_id": f"o{n}", "amount": n + 0.5}
    elif kind in ("trial_started", "subscription_started", "subscription_changed"):
        props = {"plan": f"p{n % 3}", "mrr": n * 10.0}
    elif kind.startswith("ticket"):
        props = {"ticket_id": f"t{n % 3}"}
    elif kind == "email_sent":
        props = {"campaign": "c"}
    return Event(f"e{i}", kind, user, T0 + minute * MINUTE, props, {})


GAPS = (0, 1, 30, 600, 1440, 3 * 1440, 16 * 1440, 35 * 1440, 100 * 1440)  # minutes: a burst, a day, churn, retention
# a few kinds per example, so that events of one kind often meet (and cross) within the lateness; two users,
# so that one user's events move the partition's watermark past the other's checks
steps = st.lists(st.sampled_from(KINDS), min_size=1, max_size=4, unique=True).flatmap(
    lambda kinds: st.lists(
        st.tuples(
            st.sampled_from(GAPS[:5]) | st.sampled_from(GAPS),
            st.sampled_from(kinds),
            st.integers(0, 10),
            st.sampled_from(["u1", "u1", "u2"]),
        ),
        min_size=1,
        max_size=30,
    )
)


def planned(steps: list[tuple[int, str, int, str]]) -> list[Event]:
    """The events of a plan: each step comes a gap after the one before."""
    minute, events = 0, []
    for i, (gap, kind, n, user) in enumerate(steps):
        minute += gap
        events.append(planned_event(i, minute, kind, n, user))
    return events


def by_key(event: Event) -> tuple[int, int]:
    return event.ts, id_hash(event.event_id)


Run = tuple[dict[str, ChurnState], dict[str, list[Row]]]


def drive(job: ChurnJob, records: list[list[Event]], lateness: int, end: int) -> Run:
    """What the runner does: each record's events per user in order, then the timers; the states stored between.

    Then the partition's clock moves on to ``end``.
    """
    states: dict[str, ChurnState] = {}
    rows: dict[str, list[Row]] = {}
    newest: int | None = None
    for record in records:
        for event in record:
            assert newest is None or event.ts >= newest - lateness, "the plan must stay within the lateness"
            newest = event.ts if newest is None else max(newest, event.ts)
        assert newest is not None
        for user in dict.fromkeys(event.user_id for event in record):
            state = states.setdefault(user, job.empty())
            mine = sorted((event for event in record if event.user_id == user), key=by_key)
            rows.setdefault(user, []).extend(job.on_events(user, state, mine))
        for user, state in states.items():
            deadline = job.deadline(state)
            if deadline is not None and deadline < newest - lateness:
                rows[user] += job.on_watermark(user, state, newest - lateness)
        states = {user: job.decode(job.encode(state), job.version) for user, state in states.items()}
    for user, state in states.items():
        rows[user] += job.on_watermark(user, state, end)
    return states, rows


def split(events: list[Event], cuts: list[int]) -> list[list[Event]]:
    bounds = [0, *sorted(set(cuts)), len(events)]
    return [events[a:b] for a, b in pairwise(bounds) if a < b]


def without_wall_clock(rows: list[Row]) -> list[tuple[str, dict[str, Any]]]:
    return [(row.output.name, {k: v for k, v in row.values.items() if k != "emitted_at"}) for row in rows]


def final(run: Run) -> dict[str, tuple[Any, ...]]:
    """Per user: the latest score row (what ClickHouse shows with FINAL), the features now and the windows."""
    states, rows = run
    outcome = {}
    for user, state in states.items():
        latest = max(scores(rows[user]), key=lambda row: row["version"])
        features = None if state.now is None else state.windows.features(state.now)  # None: forgotten
        outcome[user] = (latest["score"], latest["tier"], latest["reasons"]), features, state.windows
    return outcome


@settings(max_examples=150, deadline=None)
@given(steps, st.data())
def test_any_arrival_order_within_the_lateness_and_any_split_give_the_same_final_score(
    plan: list[tuple[int, str, int, str]], data: st.DataObject
) -> None:
    job = make_job(PROPERTY_LATENESS)
    events = planned(plan)
    end = max(e.ts for e in events) + data.draw(st.sampled_from([0, 5 * DAY_MS, 40 * DAY_MS]), label="then")
    reference = final(drive(job, [sorted(events, key=by_key)], PROPERTY_LATENESS, end))
    late = st.sampled_from([0, PROPERTY_LATENESS - 1]) | st.integers(0, PROPERTY_LATENESS - 1)
    jitter = data.draw(st.lists(late, min_size=len(events), max_size=len(events)), label="jitter")
    arrival = [events[i] for i in sorted(range(len(events)), key=lambda i: events[i].ts + jitter[i])]
    every = list(range(1, len(events)))  # one event a record: the arrival order counts in full
    cuts = data.draw(st.just(every) | st.lists(st.integers(1, max(1, len(events) - 1))), label="cuts")
    assert final(drive(job, split(arrival, cuts), PROPERTY_LATENESS, end)) == reference


@settings(max_examples=150, deadline=None)
@given(steps, st.data())
def test_in_order_any_split_into_records_gives_the_same_rows_and_alerts(
    plan: list[tuple[int, str, int, str]], data: st.DataObject
) -> None:
    job = make_job(PROPERTY_LATENESS)
    events = sorted(planned(plan), key=by_key)
    end = events[-1].ts + 40 * DAY_MS
    cuts = data.draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=len(events)), label="cuts")
    one_states, one_rows = drive(job, [events], PROPERTY_LATENESS, end)
    for records in (split(events, cuts), [[event] for event in events]):
        states, rows = drive(job, records, PROPERTY_LATENESS, end)
        assert {user: without_wall_clock(r) for user, r in rows.items()} == {
            user: without_wall_clock(r) for user, r in one_rows.items()
        }
        assert states == one_states


@dataclass(frozen=True)
class ScoresEveryEvent(ChurnJob):
    """The churn job without its shortcuts: it scores at every event and checks every day of silence."""

    def _stands(self, state: ChurnState, event: Event, due: int | None) -> bool:
        return False

    def _next_check(self, state: ChurnState) -> int | None:
        if state.current is None or state.now is None:
            return None
        return next_change(state.windows.last_activity, state.current.tier, state.now, self.rules)


@settings(max_examples=200, deadline=None)
@given(steps, st.data())
def test_the_shortcuts_skip_only_scoring_that_changes_nothing(plan: list[tuple[int, str, int, str]],
                                                             data: st.DataObject) -> None:  # fmt: skip
    job = make_job(PROPERTY_LATENESS)
    plain = ScoresEveryEvent(job.rules, job.retention_ms, job.lateness_ms)
    events = sorted(planned(plan), key=by_key)
    end = events[-1].ts + data.draw(st.sampled_from([0, 5 * DAY_MS, 40 * DAY_MS]), label="then")
    cuts = data.draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=len(events)), label="cuts")
    _, rows = drive(job, split(events, cuts), PROPERTY_LATENESS, end)
    _, plain_rows = drive(plain, split(events, cuts), PROPERTY_LATENESS, end)
    assert {user: without_wall_clock(r) for user, r in rows.items()} == {
        user: without_wall_clock(r) for user, r in plain_rows.items()
    }


# --- what the shortcuts skip ----------------------------------------------------------------


def scored(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The event times the job scores at from now on."""
    times: list[int] = []

    def counting(features: Features, now_ms: int, rules: ChurnRules) -> Assessment:
        times.append(now_ms)
        return score(features, now_ms, rules)

    monkeypatch.setattr(churn_job, "score", counting)
    return times


def test_the_first_use_of_a_day_is_not_scored_for_a_user_with_no_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(1, 0), ev(2, 1.5)])
    times = scored(monkeypatch)
    assert job.on_events("u1", state, [ev(3, 2.5), ev(4, 3.5, "page_view", path="/")]) == []
    assert times == []
    assert state.now == T0 + round(3.5 * DAY_MS)


def test_the_first_use_of_a_day_is_scored_when_a_signal_may_move(monkeypatch: pytest.MonkeyPatch) -> None:
    """Five active days more than 30 days before: the activity drop may come with any new day."""
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(day + 1, day) for day in range(5)])
    job.on_events("u1", state, [ev(9, 40)])
    times = scored(monkeypatch)
    job.on_events("u1", state, [ev(10, 40.5), ev(11, 41)])
    assert times == [T0 + 41 * DAY_MS]  # the same day's use is not


def test_emails_to_a_user_never_active_are_not_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    job, state = make_job(), ChurnState()
    job.on_events("u1", state, [ev(1, 0, "email_sent", campaign="c")])
    times = scored(monkeypatch)
    assert job.on_events("u1", state, [ev(2, 3, "email_sent", campaign="c"), ev(3, 9, "ad_click")]) == []
    assert times == []


@settings(max_examples=150, deadline=None)
@given(steps, st.data())
def test_the_remembered_next_check_follows_every_change(plan: list[tuple[int, str, int, str]],
                                                        data: st.DataObject) -> None:  # fmt: skip
    """The deadline a state remembers is the one a copy decoded from the store works out afresh."""
    job = make_job(PROPERTY_LATENESS)
    events = sorted(planned(plan), key=by_key)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(events) - 1)), max_size=len(events)), label="cuts")
    states: dict[str, ChurnState] = {}

    def afresh(state: ChurnState) -> int | None:
        return job.deadline(job.decode(job.encode(state), job.version))

    for record in split(events, cuts):
        for user in dict.fromkeys(event.user_id for event in record):
            state = states.setdefault(user, job.empty())
            job.deadline(state)  # remembered before the events come
            job.on_events(user, state, [event for event in record if event.user_id == user])
            assert job.deadline(state) == afresh(state)
        for user, state in states.items():
            job.on_watermark(user, state, record[-1].ts - PROPERTY_LATENESS)
            assert job.deadline(state) == afresh(state)
