"""Churned alerts: the churn job's, from a calm in-process run, equal the simulator's independent truth.

The truth (:meth:`producers.simulator.truth.ChurnWitness.entries`) reads, from each user's
events alone, every moment the user entered churn: a cancellation with no start after it,
or more than ``inactive_days`` without product use. The job raises one alert per rise to
churned, none within the cool-down of the last. Medium and high alerts follow the weighted
score, which has no independent truth: :mod:`devstack.reference_run` witnesses those.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from itertools import count

import orjson
import pytest

from devstack.reference_run import ReferenceOutcome, reference_run
from producers.simulator import Rates, SimulationConfig, simulate
from producers.simulator.config import DAY, HOUR
from producers.simulator.truth import CANCELLED, INACTIVE, Churn, ChurnWitness, churned_alerts
from pulse.settings import Settings, load_settings

LATENESS_MS = 10 * 60_000  # the default allowed lateness
# Churn-heavy rates: trials convert and subscribers cancel often, so both reasons are plentiful.
CHURNY = Rates(signup=0.6, onboarding_completion=0.8, trial_days=3.0, trial_to_paid=0.8, annual_churn=0.95,
               payment_failure=0.5, payment_recovery=0.3)  # fmt: skip
T0 = 1_761_955_200_000  # 2025-11-01T00:00:00Z


@pytest.fixture(scope="module")
def settings() -> Settings:
    settings = load_settings({})
    assert settings.sessions.allowed_lateness_minutes * 60_000 == LATENESS_MS
    return settings


def churned(outcome: ReferenceOutcome, before_ms: int) -> list[tuple[str, int]]:
    """The (user, ts) of each churned alert the run published stamped before ``before_ms``, sorted."""
    alerts = outcome.churn_alerts.values()
    return sorted((a["user_id"], a["ts"]) for a in alerts if a["new_tier"] == "churned" and a["ts"] < before_ms)


def as_pairs(alerts: dict[str, list[Churn]]) -> list[tuple[str, int]]:
    return sorted((user_id, churn.churned_at_ms) for user_id, churns in alerts.items() for churn in churns)


def test_the_jobs_churned_alerts_on_a_simulated_population_equal_the_truth(settings: Settings) -> None:
    config = SimulationConfig(customers=300, days=60, seed=2, start_ms=T0, rates=CHURNY)
    simulation = simulate(config)
    outcome = reference_run(settings, simulation.lines(), config.end_ms)
    assert outcome.repeated_alerts == 0
    settled_ms = outcome.settled_before(LATENESS_MS)
    truth = simulation.truth.churned_alerts(
        settled_ms, settings.churn.alert_cooldown_hours, settings.churn.inactive_days
    )
    assert churned(outcome, settled_ms) == as_pairs(truth)
    reasons = [churn.reason for churns in truth.values() for churn in churns]
    assert len(reasons) > 100 and reasons.count(CANCELLED) > 20 and reasons.count(INACTIVE) > 20


# Hand-built stories with what the simulator never does: coming back after churning, churning again,
# a second churn within the cool-down.

IDS = count()


def event(user_id: str, event_type: str, ts: int) -> dict[str, object]:
    props = {
        "trial_started": {"plan": "pro"},
        "subscription_started": {"plan": "pro", "mrr": 49.0},
        "email_sent": {"campaign": "news"},
    }.get(event_type)
    return {"event_id": f"story-{next(IDS)}", "user_id": user_id, "type": event_type, "ts": ts,
            **({"props": props} if props else {})}  # fmt: skip


STORIES = {
    # Silent for 40 days, back, then silent for good: churned twice.
    "back-and-gone": [("login", 0), ("login", 40 * DAY), ("email_sent", 75 * DAY)],
    # Churned by silence; back and cancels within hours (no alert: the cool-down), takes a trial, then
    # cancels 25 hours after the first alert (an alert: the silenced entry does not extend the cool-down).
    "cool-down": [
        ("subscription_started", 0),
        ("login", 30 * DAY + 2 * HOUR),
        ("subscription_cancelled", 30 * DAY + 3 * HOUR),
        ("trial_started", 30 * DAY + 5 * HOUR),
        ("subscription_cancelled", 31 * DAY + HOUR),
    ],
    # Silent, then cancels while churned already (one entry), uses the product while cancelled (still
    # churned), and comes back with a trial 50 days in: churned again 30 days after the trial.
    "cancelled-while-silent": [
        ("subscription_started", 0),
        ("subscription_cancelled", 35 * DAY),
        ("login", 40 * DAY),
        ("trial_started", 50 * DAY),
    ],
    # Whose first event in sight is a cancellation (an existing customer): churned at once.
    "cancels-first": [("email_sent", DAY), ("subscription_cancelled", 2 * DAY), ("login", 3 * DAY)],
}
EXPECTED_ENTRIES = {
    "back-and-gone": [Churn(30 * DAY, INACTIVE), Churn(70 * DAY, INACTIVE)],
    "cool-down": [Churn(30 * DAY, INACTIVE), Churn(30 * DAY + 3 * HOUR, CANCELLED), Churn(31 * DAY + HOUR, CANCELLED)],
    "cancelled-while-silent": [Churn(30 * DAY, INACTIVE), Churn(80 * DAY, INACTIVE)],
    "cancels-first": [Churn(2 * DAY, CANCELLED)],
}


def story_lines(stories: dict[str, list[tuple[str, int]]]) -> Iterable[bytes]:
    events = [event(user_id, kind, T0 + at) for user_id, story in stories.items() for kind, at in story]
    return [orjson.dumps(e) for e in sorted(events, key=lambda e: e["ts"])]


def test_churning_again_and_the_cool_down_the_job_and_the_truth_agree(settings: Settings) -> None:
    horizon_ms = T0 + 120 * DAY
    witnesses = {user_id: ChurnWitness() for user_id in STORIES}
    for user_id, story in STORIES.items():
        for kind, at in story:
            witnesses[user_id].see(event(user_id, kind, T0 + at))
    inactive_ms, cooldown_ms = 30 * DAY, 24 * HOUR
    assert settings.churn.inactive_days == 30 and settings.churn.alert_cooldown_hours == 24
    entries = {user_id: witness.entries(horizon_ms, inactive_ms) for user_id, witness in witnesses.items()}
    assert entries == {user_id: [Churn(T0 + c.churned_at_ms, c.reason) for c in churns]
                       for user_id, churns in EXPECTED_ENTRIES.items()}  # fmt: skip
    truth = {user_id: churned_alerts(churns, cooldown_ms) for user_id, churns in entries.items()}
    assert [c.churned_at_ms - T0 for c in truth["cool-down"]] == [30 * DAY, 31 * DAY + HOUR]
    # The partitions' event time follows the wall clock once the lines are in: far enough to run every check.
    outcome = reference_run(settings, story_lines(STORIES), time.time_ns() // 1_000_000 + 200 * DAY)
    assert churned(outcome, horizon_ms) == as_pairs(truth)


def test_entries_stop_before_as_of_and_agree_with_the_verdict() -> None:
    witness = ChurnWitness()
    for kind, at in STORIES["back-and-gone"]:
        witness.see(event("u", kind, at))
    assert witness.entries(30 * DAY, 30 * DAY) == []  # entered at 30 days: not before it
    assert witness.entries(30 * DAY + 1, 30 * DAY) == [Churn(30 * DAY, INACTIVE)]
    assert witness.verdict(70 * DAY + 1, 30 * DAY) == witness.entries(70 * DAY + 1, 30 * DAY)[-1]
    # A start at the very time of a cancellation does not undo it; a later one does.
    tied = ChurnWitness()
    for kind, at in [("subscription_cancelled", DAY), ("subscription_started", DAY), ("subscription_started", 2 * DAY)]:
        tied.see(event("u", kind, at))
    assert tied.entries(60 * DAY, 30 * DAY) == [Churn(DAY, CANCELLED), Churn(32 * DAY, INACTIVE)]
    assert churned_alerts([Churn(0, INACTIVE), Churn(HOUR, CANCELLED), Churn(DAY, INACTIVE)], DAY) == [
        Churn(0, INACTIVE), Churn(DAY, INACTIVE)]  # fmt: skip
