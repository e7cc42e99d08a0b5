"""``pulse status`` on a running stack: healthy and caught up with the counts published, then a stage down."""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from devstack.processes import read_pid, terminate
from ops.consumer_lag import wait_pipeline_caught_up
from pulse.settings import Settings
from tests.integration.test_cli import pulse

pytestmark = pytest.mark.integration

EVENTS = 40
SETTLE_S = 20.0  # the worker ticks its partitions every 5 s: lag is zero again within a commit or two


def status_json(settings: Settings) -> tuple[int, dict[str, Any]]:
    result = pulse(settings, "status", "--json")
    return result.returncode, orjson.loads(result.stdout)


def test_status_shows_a_healthy_caught_up_pipeline_then_the_worker_down(pipeline: Settings) -> None:
    settings = pipeline
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = b"\n".join(
        orjson.dumps({"type": "login", "user_id": f"u{i % 7}", "ts": now, "event_id": f"e{i}"}) for i in range(EVENTS)
    )
    request = urllib.request.Request(f"http://127.0.0.1:{settings.collector_port}/v1/events", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
    wait_pipeline_caught_up(settings, timeout=60)

    deadline = time.monotonic() + SETTLE_S
    code, view = status_json(settings)
    while not (code == 0 and all(group["lag"] == 0 for group in view["consumer_groups"])):
        assert time.monotonic() < deadline, view
        code, view = status_json(settings)

    stages = {stage["stage"]: stage for stage in view["stages"]}
    assert list(stages) == ["kafka", "collector", "worker", "sink"]
    assert all(stage["state"] == "up" and stage["healthy"] for stage in stages.values()), stages
    assert [stages[name]["lag"] for name in ("worker", "sink")] == [0, 0]
    assert [stages[name]["events"] for name in ("collector", "worker", "sink")] == [EVENTS] * 3
    assert all(stages[name]["events_per_s"] is not None for name in ("collector", "worker", "sink"))
    assert view["latency_seconds"]["p99"] is not None and view["dead_letters"] == {}
    assert view["open_sessions"] == 7

    worker = read_pid(settings.run_dir / "worker.pid")
    assert worker is not None and terminate(worker, 30)
    after = pulse(settings, "status")
    assert after.returncode == 1, after.stdout
    lines = {line.split()[0]: line.split() for line in after.stdout.splitlines() if line}
    assert lines["worker"][:2] == ["worker", "down"], after.stdout
    assert lines["sink"][1] == "up" and lines["unhealthy:"] == ["unhealthy:", "worker", "down"]
