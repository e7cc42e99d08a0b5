"""The whole slice on real parts: broker, Faust worker, sink, embedded ClickHouse."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest

from devstack.stack import up
from ops.consumer_lag import wait_pipeline_caught_up
from ops.reader import run_query
from pulse.settings import Settings
from pulse.topics import Topics
from tests.integration.workload import Workload, make_workload, send_workload

pytestmark = pytest.mark.integration

CATCH_UP_S = 240.0


def wait_for_pipeline(settings: Settings) -> None:
    wait_pipeline_caught_up(settings, CATCH_UP_S)


def assert_exact_outcome(settings: Settings, workload: Workload) -> None:
    ids = run_query(settings, "SELECT event_id FROM events FINAL").rows
    assert len(ids) == len(workload.expected_ids)
    assert {row[0] for row in ids} == workload.expected_ids
    reasons = run_query(settings, "SELECT reason, count() FROM dead_letters FINAL GROUP BY reason").rows
    assert dict(reasons) == dict(workload.expected_reasons)


def metric(settings: Settings, name: str) -> float:
    url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in {url}")


def test_ten_thousand_events_end_to_end(pipeline: Settings) -> None:
    settings = pipeline
    workload = make_workload(valid=9_000, duplicates=400, invalid=600)
    assert workload.total == 10_000
    send_workload(workload, settings.bootstrap, Topics.with_prefix(settings.topic_prefix), settings.partitions)
    wait_for_pipeline(settings)

    assert_exact_outcome(settings, workload)
    # the worker itself dropped every resend: even without FINAL there is one row per event
    assert run_query(settings, "SELECT count() FROM events").scalar() == 9_000
    assert metric(settings, "pulse_events_in_total") == 10_000
    assert metric(settings, "pulse_events_valid_total") == 9_000
    assert metric(settings, "pulse_events_duplicate_total") == 400
    # refused input is kept byte for byte, with the problem named
    row = run_query(settings, "SELECT raw, errors FROM dead_letters FINAL WHERE raw LIKE '%\"bad-0\"%'").rows
    assert row == [['{"event_id": "bad-0", "type": "login"', [row[0][1][0]]]]
    assert row[0][1][0].startswith("not JSON")
    # normalised: RFC 3339 or epoch ms in, DateTime64 out; props kept as JSON
    first = run_query(settings, "SELECT toUnixTimestamp64Milli(ts), type FROM events FINAL WHERE event_id = 'ev-1-0'")
    assert first.rows == [[workload.valid[0]["ts"], workload.valid[0]["type"]]]


def test_killed_stages_lose_nothing_and_count_nothing_twice(pipeline: Settings) -> None:
    """SIGKILL the worker and the sink mid-stream, restart them, and get the exact answer."""
    settings = pipeline
    workload = make_workload(valid=40_000, duplicates=1_000, invalid=1_000, users=2_000, seed=2)
    send_workload(workload, settings.bootstrap, Topics.with_prefix(settings.topic_prefix), settings.partitions)
    deadline = time.monotonic() + 60
    while (written := run_query(settings, "SELECT count() FROM events").scalar()) < 1_000:
        assert time.monotonic() < deadline, "the pipeline wrote nothing within 60 s"
        time.sleep(0.05)
    for name in ("worker", "sink"):
        pid = int((settings.run_dir / f"{name}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
    assert written < len(workload.expected_ids), "the kill came after the pipeline had finished"
    up(settings, log=print)
    wait_for_pipeline(settings)
    assert_exact_outcome(settings, workload)
