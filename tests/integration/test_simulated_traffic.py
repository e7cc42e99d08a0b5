"""Simulated customers through the real pipeline, checked against the simulator's ground truth."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from devstack.ground_truth import SESSIONS, expected_outcome
from devstack.stack import up
from ops.reader import run_query
from producers import EventProducer, publish_lines
from producers.simulator import SimulationConfig, simulate
from producers.simulator.truth import GroundTruth
from pulse.settings import Settings
from tests.integration.test_pipeline_e2e import wait_for_pipeline

pytestmark = pytest.mark.integration

def expected_sessions(truth: GroundTruth) -> list[list]:
    return [list(row) for row in expected_outcome(truth).sessions]


def post_ndjson(settings: Settings, body: bytes) -> int:
    """POST one batch, retrying while the collector says 503; returns the final status."""
    url = f"http://127.0.0.1:{settings.collector_port}/v1/events"
    for _ in range(30):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=30) as reply:
                return reply.status
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                return exc.code
        time.sleep(1)
    raise AssertionError("collector kept answering 503")


def test_a_simulated_day_through_the_collector(pipeline: Settings) -> None:
    simulation = simulate(SimulationConfig(customers=600, days=1, seed=7))
    totals = simulation.truth.totals
    lines = list(simulation.lines())
    statuses = {post_ndjson(pipeline, b"\n".join(lines[i : i + 500])) for i in range(0, len(lines), 500)}
    assert statuses <= {202, 400}
    wait_for_pipeline(pipeline)

    assert run_query(pipeline, "SELECT count() FROM events FINAL").scalar() == totals["events"]
    by_type = run_query(pipeline, "SELECT type, count() FROM events FINAL GROUP BY type").rows
    assert dict(by_type) == totals["events_by_type"]
    assert run_query(pipeline, "SELECT countIf(server_received_at IS NULL) FROM events FINAL").scalar() == 0
    letters = run_query(pipeline, "SELECT reason, count() FROM dead_letters FINAL GROUP BY reason").rows
    assert sum(count for _, count in letters) == sum(totals["malformed_lines"].values())
    assert dict(letters) == {k: v for k, v in totals["malformed_lines"].items() if v}


def test_sessions_match_the_ground_truth(pipeline: Settings) -> None:
    simulation = simulate(SimulationConfig(customers=800, days=7, seed=11))
    with EventProducer.from_settings(pipeline) as producer:
        publish_lines(simulation.lines(), "simulation", producer)
    wait_for_pipeline(pipeline)
    found = run_query(pipeline, SESSIONS).rows
    assert len(found) == simulation.truth.totals["sessions"]
    assert found == expected_sessions(simulation.truth)
    bounces = run_query(pipeline, "SELECT countIf(bounce) FROM sessions FINAL WHERE NOT deleted").scalar()
    assert bounces == simulation.truth.totals["bounces"]


def test_a_killed_worker_ends_with_the_same_sessions(pipeline: Settings) -> None:
    simulation = simulate(SimulationConfig(customers=3_000, days=14, seed=5))
    with EventProducer.from_settings(pipeline) as producer:
        publish_lines(simulation.lines(), "simulation", producer)
    deadline = time.monotonic() + 60
    while (written := run_query(pipeline, "SELECT count() FROM sessions").scalar()) < 500:
        assert time.monotonic() < deadline, "no sessions within 60 s"
        time.sleep(0.05)
    for name in ("worker", "sink"):
        os.kill(int((pipeline.run_dir / f"{name}.pid").read_text()), signal.SIGKILL)
    assert written < simulation.truth.totals["sessions"], "the kill came after the pipeline had finished"
    up(pipeline, log=print)
    wait_for_pipeline(pipeline)
    assert run_query(pipeline, SESSIONS).rows == expected_sessions(simulation.truth)
    assert run_query(pipeline, "SELECT count() FROM events FINAL").scalar() == simulation.truth.totals["events"]
