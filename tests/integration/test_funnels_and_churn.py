"""Funnels, churn scores and alerts through the real pipeline, against the simulator's ground truth.

The simulation ends now, so the worker's event time, which follows the clock once traffic
stops, ends just past the simulated window: who has churned is the truth as of that moment
(bounded by the truth at the window's end and at the time of the check, which in practice
agree). The streamed funnels must equal ``windowFunnel`` over the raw events, the churned alerts
the moments the truth has users enter churn (less those within the cool-down), and what the
worker published must equal one calm in-process pass of the same jobs over the same lines
(:mod:`devstack.reference_run`), also after the worker and the sink were killed midway.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from devstack.reference_run import ReferenceOutcome, job_output_differences, reference_run
from devstack.stack import down, up
from ops.funnel_queries import retroactive_users_per_step, streamed_users_per_step
from ops.reader import run_query
from producers import EventProducer, publish_lines
from producers.simulator import Imperfections, Simulation, SimulationConfig, simulate
from producers.simulator.config import DAY
from pulse.settings import Settings
from stream_jobs.funnels import load_funnels
from tests.integration.test_pipeline_e2e import wait_for_pipeline

pytestmark = pytest.mark.integration

# Event time follows the clock after IDLE_S of silence (30 s by default), and an event is final once
# event time is LATENESS_MINUTES past it (10 by default): both short, so the test need not wait long
# for the last steps and checks of the window. The simulator's late lines stay within the lateness.
IDLE_S = 2.0
LATENESS_MINUTES = 0.1
LATENESS_MS = round(LATENESS_MINUTES * 60_000)
CHURN_SCORES = "SELECT user_id, score, tier, reasons FROM churn_scores FINAL"
CHURNED_ALERTS = "SELECT user_id, toUnixTimestamp64Milli(ts) FROM churn_alerts FINAL WHERE new_tier = 'churned'"


@pytest.fixture
def quick_clock(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """The pipeline, with event time following the clock after ``IDLE_S`` of silence."""
    config = tmp_path / "pulse.yaml"
    tuning = {"idle_close_seconds": IDLE_S, "tick_interval_seconds": 0.5, "allowed_lateness_minutes": LATENESS_MINUTES}
    config.write_text("sessions:\n" + "".join(f"  {key}: {value}\n" for key, value in tuning.items()))
    quick = replace(settings, config_file=config, sessions=replace(settings.sessions, **tuning))
    try:
        up(quick, log=lambda line: print(f"[stack] {line}"))
        yield quick
    finally:
        down(quick, log=lambda line: print(f"[stack] {line}"))


def simulation_ending_now(customers: int, days: int, seed: int) -> Simulation:
    """A simulation whose window ends at the current minute (event times may not be in the future)."""
    now_ms = time.time_ns() // 1_000_000 // 60_000 * 60_000
    late = Imperfections(late_max_minutes=LATENESS_MINUTES / 2)
    return simulate(SimulationConfig(customers=customers, days=days, seed=seed, start_ms=now_ms - days * DAY,
                                     imperfections=late))  # fmt: skip


def publish(settings: Settings, simulation: Simulation) -> list[bytes]:
    lines = list(simulation.lines())
    with EventProducer.from_settings(settings) as producer:
        publish_lines(lines, "simulation", producer)
    return lines


def wait_until_the_clock_moved(settings: Settings, expected: ReferenceOutcome, timeout: float = 120.0) -> None:
    """Wait until the worker caught up and its idle tick let every funnel step and due check through."""
    wait_for_pipeline(settings)
    deadline = time.monotonic() + timeout
    while run_query(settings, "SELECT count() FROM funnel_steps FINAL").scalar() < len(expected.funnel_steps):
        assert time.monotonic() < deadline, "funnel steps still missing after the idle tick was due"
        time.sleep(0.5)
    wait_for_pipeline(settings)


def assert_churn_matches_the_truth(settings: Settings, simulation: Simulation, settled_ms: int,
                                   checked_at_ms: int) -> None:  # fmt: skip
    """Churned users as ClickHouse holds them: the truth as of a time every partition's event time passed,
    or of the check's time."""
    scores = run_query(settings, CHURN_SCORES).rows
    churned = {user: reasons[0] for user, _, tier, reasons in scores if tier == "churned"}
    at_least = simulation.truth.churn_as_of(settled_ms)
    at_most = simulation.truth.churn_as_of(checked_at_ms)
    assert set(at_least) <= set(churned) <= set(at_most)
    assert len(at_least) > 20 and {c.reason for c in at_least.values()} == {"cancelled", "inactive"}
    for user, first_reason in churned.items():
        cancelled = at_most[user].reason == "cancelled"
        assert (first_reason == "subscription cancelled") == cancelled, (user, first_reason)


def assert_churned_alerts_match_the_truth(settings: Settings, simulation: Simulation, settled_ms: int) -> None:
    """Alerts of a rise to churned stamped before ``settled_ms``: the moments the truth has users enter churn,
    less those within the cool-down of the user's previous alert."""
    found = sorted((user, int(ts)) for user, ts in run_query(settings, CHURNED_ALERTS).rows if int(ts) < settled_ms)
    truth = simulation.truth.churned_alerts(
        settled_ms, settings.churn.alert_cooldown_hours, settings.churn.inactive_days
    )
    assert found == sorted((user, churn.churned_at_ms) for user, churns in truth.items() for churn in churns)
    assert len(found) > 20


def test_funnels_churn_and_alerts_match_the_truth(quick_clock: Settings) -> None:
    settings = quick_clock
    simulation = simulation_ending_now(customers=600, days=45, seed=31)
    lines = publish(settings, simulation)
    expected = reference_run(settings, lines)
    wait_until_the_clock_moved(settings, expected)
    checked_at_ms = time.time_ns() // 1_000_000

    funnels = load_funnels(None)
    truth = simulation.truth.totals["funnels"]
    for funnel in funnels:
        streamed = streamed_users_per_step(settings, funnel)
        assert streamed == truth[funnel.name]["users_per_step"], funnel.name
        assert retroactive_users_per_step(settings, funnel) == streamed, funnel.name
        assert streamed[-1] > 0, funnel.name  # volume at every step
    settled_ms = expected.settled_before(LATENESS_MS)
    assert_churn_matches_the_truth(settings, simulation, settled_ms, checked_at_ms)
    assert_churned_alerts_match_the_truth(settings, simulation, settled_ms)
    assert job_output_differences(settings, expected, settled_ms) == []
    assert expected.repeated_alerts == 0
    alerts = run_query(settings, "SELECT new_tier, count() FROM churn_alerts FINAL GROUP BY new_tier").rows
    assert dict(alerts).keys() == {"medium", "high", "churned"}


def test_a_killed_worker_publishes_what_a_calm_one_does(quick_clock: Settings) -> None:
    settings = quick_clock
    simulation = simulation_ending_now(customers=1_500, days=40, seed=8)
    expected = reference_run(settings, list(simulation.lines()))
    publish(settings, simulation)
    deadline = time.monotonic() + 120
    while (written := run_query(settings, "SELECT count() FROM funnel_steps").scalar()) < 200:
        assert time.monotonic() < deadline, "no funnel steps within 120 s"
        time.sleep(0.05)
    for name in ("worker", "sink"):
        os.kill(int((settings.run_dir / f"{name}.pid").read_text()), signal.SIGKILL)
    assert written < len(expected.funnel_steps), "the kill came after the pipeline had finished"
    up(settings, log=print)
    wait_until_the_clock_moved(settings, expected)
    assert job_output_differences(settings, expected, expected.settled_before(LATENESS_MS)) == []
