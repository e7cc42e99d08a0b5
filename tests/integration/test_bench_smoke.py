"""A short run of ``pulse bench``: every measure runs and the report holds every figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.runner import _lines
from pulse.contract import Event, validate
from pulse.settings import Settings
from stream_jobs.sessionizer import SessionRules, UserSessions, add_events

pytestmark = pytest.mark.integration


def test_bench_smoke(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "report"
    env = {**os.environ, **settings.to_env()}
    env.pop("KAFKA_BOOTSTRAP")  # the benchmark runs a broker of its own
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "bench", "--events", "5000", "--users", "300,600",
         "--rebalance-users", "600", "--latency-seconds", "2", "--live-rate", "500", "--warmup-seconds", "1",
         "--points", "2", "--clients", "4", "--profile-seconds", "0",
         "--only", "producer,ceilings,validate,backlog,live,collector,memory,rebuild,rebalance",
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
        "validate_sink_eps", "all_worker_eps", "all_sink_eps", "jobs_in_process_eps",
    ])  # fmt: skip
    assert all(results[k] > 0 for k in rates)
    live, collector = results["live"], results["collector"]
    assert live["first_rate_eps"] == 500 and collector["first_rate_eps"] == (live["capacity_eps"] or 500)
    for curve in (live, collector):
        assert len(curve["points"]) == 2  # a curve: the first rate, then one grown or shrunk from it
        assert curve["capacity_eps"] in (None, *(p["rate"] for p in curve["points"] if p["held"]))
        for point in curve["points"]:
            assert point["events"] == point["sent"] > 0  # every event sent is queryable, once
            assert point["p50"] <= point["p99"] <= point["max"]
    if live["capacity_eps"]:  # then one point at half of it raised churn alerts: each one once
        alerts = results["alerts"]
        assert alerts["alerts"] == alerts["sent"] > 0 and 0 <= alerts["p50"] <= alerts["p99"] <= alerts["max"]
    for point in collector["points"]:  # every request answered 202, warm-up included
        assert point["failed"] == 0 and point["statuses"] == {"202": point["requests"]}
        assert point["requests"] > point["sent"] / 10
    assert "steady_eps" in results["all_backlog"]  # None when the short backlog is gone before the clock starts
    assert "steady_cpu" in results["all_backlog"]  # likewise
    assert set(results["memory"]) == {"baseline_rss", "300", "600"}
    assert results["timer_rebuild"]["users"] == 600 and results["timer_rebuild"]["max_step_s"] > 0
    assert results["rebalance"]["users_in_state"] == 600
    assert results["rebalance"]["join"]["events"] > 0 and results["rebalance"]["leave"]["events"] > 0
    table = (out / "bench.md").read_text()
    assert "| worker, all jobs (+ sessions) |" in table and report["machine"]["packages"]["faust-streaming"]
    assert "| worker, all jobs, next to its jobs alone in process |" in table
    assert "| live capacity: highest steady rate with p99 event-to-queryable under 5,000 ms" in table
    assert "| collector: requests answered 2xx, every point |" in table
    assert "## collector: event-to-queryable latency by rate" in table
    assert "| rebalance pause, a second worker joins (600 users in state) |" in table
    phases = ("simulate", "producer", "ceilings", "validate", "backlog", "live", "collector", "memory", "rebuild",
              "rebalance")  # fmt: skip
    for phase in phases:
        assert f"[{phase}] done in" in result.stdout  # progress per phase
    assert "[collector]   " in result.stdout  # a line per point as it is measured


def test_bench_runs_only_the_phases_asked_for(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "report"
    env = {**os.environ, **settings.to_env()}
    env.pop("KAFKA_BOOTSTRAP")
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "bench", "--only", "live", "--live-rate", "300", "--latency-seconds", "2",
         "--warmup-seconds", "1", "--points", "1", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = orjson.loads((out / "bench.json").read_bytes())["results"]
    assert results["phases"] == ["live"] and "events" not in results and "memory" not in results
    assert [point["rate"] for point in results["live"]["points"]] == [300] and "collector" not in results
    assert results["live"]["points"][0]["events"] > 0
    assert "[live] done in" in result.stdout and "[backlog]" not in result.stdout and "[collector]" not in result.stdout


def test_bench_peers_find_our_sessions(settings: Settings, tmp_path: Path) -> None:
    """The peers phase on a tiny input: both peers and our pipeline end with the sessions our sessionizer makes."""
    out = tmp_path / "report"
    env = {**os.environ, **settings.to_env()}
    env.pop("KAFKA_BOOTSTRAP")
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "bench", "--only", "peers", "--peer-events", "2000", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=400, check=False,  # the Quix environment is made once
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    peers = orjson.loads((out / "bench.json").read_bytes())["results"]["peers"]
    sessions = _sessions_of_first(2000)
    assert (peers["events"], peers["sessions"]) == (2000, sessions)
    by_peer = peers["by_peer"]
    agreement = {name: (peer["equal"], peer["differing_users"], peer["sessions"]) for name, peer in by_peer.items()}
    assert agreement == {"faust": (True, 0, sessions), "quix": (True, 0, sessions)}
    rates = [peers["worker_eps"], peers["raw_consumer_eps"], *(peer["eps"] for peer in by_peer.values())]
    assert all(rate > 0 for rate in rates)
    table = (out / "bench.md").read_text()
    for title in ("direct Faust", "Quix Streams"):
        row = f"| peers: sessions of {title} vs ours | equal: {sessions:,} sessions of {peers['users']:,} users |"
        assert row in table
    assert "[peers] done in" in result.stdout


def _sessions_of_first(count: int) -> int:
    """Sessions our sessionizer makes, in process, of the first ``count`` simulated events the phase uses."""
    users: dict[str, UserSessions] = {}
    for line in _lines(count):
        event = validate(orjson.loads(line))
        assert isinstance(event, Event)
        add_events(users.setdefault(event.user_id, UserSessions()), [event], SessionRules())
    return sum(len(state.open) for state in users.values())
