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
         "--latency-seconds", "3", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
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
    assert results["latency_ms"]["events"] > 0 and results["latency_ms"]["p50"] <= results["latency_ms"]["p99"]
    assert set(results["memory"]) == {"baseline_rss", "300", "600"}
    table = (out / "bench.md").read_text()
    assert "| worker, all jobs (+ sessions) |" in table and report["machine"]["packages"]["faust-streaming"]
