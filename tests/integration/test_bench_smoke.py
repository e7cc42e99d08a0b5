"""A short run of ``pulse bench``: every measure runs and the report holds every figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pulse.settings import Settings

pytestmark = pytest.mark.integration


def test_bench_smoke(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "report"
    env = {**os.environ, **settings.to_env()}
    env.pop("KAFKA_BOOTSTRAP")  # the benchmark runs a broker of its own
    result = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "bench", "--events", "5000", "--users", "300,600",
         "--rebalance-users", "600", "--latency-seconds", "3", "--live-rate", "500", "--warmup-seconds", "1",
         "--profile-seconds", "0", "--only", "producer,ceilings,validate,backlog,live,memory,rebuild,rebalance",
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = orjson.loads((out / "bench.json").read_bytes())
    results = report["results"]
    assert results["events"] == 5000
    rates = [k for k in results if k.endswith("_eps")]
    assert sorted(rates) == sorted([
        "producer_eps", "raw_producer_eps", "raw_consumer_eps", "raw_insert_eps", "validate_worker_eps",
        "validate_sink_eps", "all_worker_eps", "all_sink_eps", "latency_rate_eps",
    ])  # fmt: skip
    assert all(results[k] > 0 for k in rates)
    latency = results["latency_ms"]
    assert (
        results["latency_rate_eps"] == 500
        and latency["events"] > 0
        and latency["p50"] <= latency["p99"] <= latency["max"]
    )
    assert "steady_eps" in results["all_backlog"]  # None when the short backlog is gone before the clock starts
    assert set(results["memory"]) == {"baseline_rss", "300", "600"}
    assert results["timer_rebuild"]["users"] == 600 and results["timer_rebuild"]["max_step_s"] > 0
    assert results["rebalance"]["users_in_state"] == 600
    assert results["rebalance"]["join"]["events"] > 0 and results["rebalance"]["leave"]["events"] > 0
    table = (out / "bench.md").read_text()
    assert "| worker, all jobs (+ sessions) |" in table and report["machine"]["packages"]["faust-streaming"]
    assert "| event-to-queryable latency p99 at 500 events/s (live) |" in table
    assert "| rebalance pause, a second worker joins (600 users in state) |" in table
    for phase in ("simulate", "producer", "ceilings", "validate", "backlog", "live", "memory", "rebuild", "rebalance"):
        assert f"[{phase}] done in" in result.stdout  # progress per phase


def test_bench_runs_only_the_phases_asked_for(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "report"
    env = {**os.environ, **settings.to_env()}
    env.pop("KAFKA_BOOTSTRAP")
    result = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "bench", "--only", "live", "--live-rate", "300", "--latency-seconds", "2",
         "--warmup-seconds", "1", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = orjson.loads((out / "bench.json").read_bytes())["results"]
    assert results["phases"] == ["live"] and "events" not in results and "memory" not in results
    assert results["latency_rate_eps"] == 300 and results["latency_ms"]["events"] > 0
    assert "[live] done in" in result.stdout and "[backlog]" not in result.stdout
