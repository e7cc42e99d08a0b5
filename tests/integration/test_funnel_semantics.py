"""The funnels job through the real runner agrees with ClickHouse's ``windowFunnel``, user by user.

Random users with events on a coarse grid (so steps tie to the millisecond and land exactly
on window edges), shipped in random records within the allowed lateness; the furthest step
each user's rows reach must be what chdb's ``windowFunnel`` computes over the same events,
with the conditions the retroactive queries use (:func:`ops.funnel_queries.step_condition`).
Needs chdb only: no broker, no server.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import chdb
import orjson
import pytest

from ops.funnel_queries import step_condition
from pulse.outputs import FUNNEL_STEPS
from pulse.settings import load_settings
from stream_jobs.funnels import Funnel, FunnelStep, load_funnels
from stream_jobs.funnels_job import FunnelsJob
from stream_jobs.runner import JobRunner

pytestmark = pytest.mark.integration

T0 = 1_763_856_000_000
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
LATENESS = 10 * MINUTE  # the settings' default

FUNNELS = (
    *load_funnels(),  # pricing_to_paid (14 days), signup_to_purchase (30 days)
    Funnel("pro_upgrade", (FunnelStep("pro_trial", "trial_started", {"props.plan": "pro"}),
                           FunnelStep("pro_paid", "subscription_started", {"props.plan": "pro"})), HOUR),
    Funnel("browse", (FunnelStep("any_page", "page_view"), FunnelStep("pricing_page", "page_view", {"context.path": "/pricing"}),
                      FunnelStep("signup", "signup")), 2 * HOUR),  # one pricing view is steps 1 and 2
)  # fmt: skip

KINDS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("page_view", {}, {"path": "/pricing"}),
    ("page_view", {}, {"path": "/docs"}),
    ("signup", {}, {}),
    ("onboarding_completed", {}, {}),
    ("trial_started", {"plan": "pro"}, {}),
    ("trial_started", {"plan": "team"}, {}),
    ("subscription_started", {"plan": "pro", "mrr": 49}, {}),
    ("subscription_started", {"plan": "team", "mrr": 99}, {}),
    ("purchase", {"order_id": "o1", "amount": 10}, {}),
    ("login", {}, {}),
]


def random_events(rng: random.Random, users: int) -> list[dict[str, Any]]:
    """Per user a journey through the funnels' steps, some skipped, plus up to 8 other events over 36 days.

    Times are on an hour grid give or take a millisecond: steps tie and land on window edges.
    """
    journey = [KINDS[0], KINDS[2], KINDS[3], KINDS[4], KINDS[6], KINDS[8]]
    events = []
    for user in range(users):
        ts = T0 + rng.randrange(20) * DAY
        planned = []
        for kind in journey:
            ts += rng.randrange(6) * DAY + rng.randrange(3) * HOUR + rng.choice((0, 0, 0, 1, -1))
            if rng.random() < 0.85:
                planned.append((kind, ts))
        noise = [
            (rng.choice(KINDS), T0 + rng.randrange(36) * DAY + rng.randrange(4) * HOUR)
            for _ in range(rng.randint(0, 8))
        ]
        for (type_, props, context), at in planned + noise:
            events.append({"event_id": f"e{len(events)}", "type": type_, "user_id": f"u{user}", "ts": at,
                           "props": props, "context": context})  # fmt: skip
    return events


def stream(job: FunnelsJob, events: list[dict[str, Any]], rng: random.Random, tmp_path: Path) -> list[dict[str, Any]]:
    """The events through a runner, each at most the lateness late, in random records; then a far later one."""
    arrival = sorted(events, key=lambda e: (e["ts"] + rng.randrange(LATENESS + 1), rng.random()))
    flush = {"event_id": "flush", "type": "login", "user_id": "flush", "ts": max(e["ts"] for e in events) + DAY}
    records, at = [], 0
    while at < len(arrival):
        size = rng.randint(1, 80)
        records.append(arrival[at : at + size])
        at += size
    store: dict[bytes, bytes] = {}
    runner = JobRunner(load_settings({"PULSE_DATA_DIR": str(tmp_path)}), store, jobs=[job])
    rows: list[dict[str, Any]] = []
    for offset, record in enumerate([*records, [flush]]):
        out = runner.process(b"\n".join(orjson.dumps(e) for e in record), "events", 0, offset)
        assert out.too_late == 0 and not out.dead_letters
        rows += out.rows.get(FUNNEL_STEPS, [])
        for key, value in out.writes.items():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
    return rows


def window_funnel_levels(funnel: Funnel, path: Path) -> dict[str, int]:
    """Per user, chdb's ``windowFunnel`` over the events in a JSON-lines file (users with level 0 included)."""
    conditions = ", ".join(step_condition(step) for step in funnel.steps)
    sql = (f"SELECT user_id, windowFunnel({funnel.window_ms})(ts, {conditions}) "
           f"FROM file('{path}', 'JSONEachRow', 'user_id String, ts UInt64, type String, props String, context String') "
           "GROUP BY user_id")  # fmt: skip
    result = chdb.query(sql, "CSV").bytes().decode()
    return {user.strip('"'): int(level) for user, level in (line.split(",") for line in result.splitlines())}


def test_the_furthest_step_is_windowfunnel_for_every_user(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    events = random_events(rng, 1500)
    job = FunnelsJob(FUNNELS, 90 * DAY)
    rows = stream(job, events, rng, tmp_path / "first")
    again = stream(job, events, rng, tmp_path / "second")  # another arrival order and packing
    assert sorted(rows, key=lambda r: r["step_id"]) == sorted(again, key=lambda r: r["step_id"])
    assert len({r["step_id"] for r in rows}) == len(rows)

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps({**e, "props": orjson.dumps(e["props"]).decode(),
                                              "context": orjson.dumps(e["context"]).decode()}) for e in events))  # fmt: skip
    furthest: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        furthest[row["funnel"], row["user_id"]] = max(furthest[row["funnel"], row["user_id"]], row["step_index"])
    for funnel in FUNNELS:
        levels = window_funnel_levels(funnel, path)
        streamed = {user: furthest[funnel.name, user] for user in levels}
        assert streamed == levels, funnel.name
        reached = {level: sum(1 for v in levels.values() if v >= level) for level in range(1, len(funnel.steps) + 1)}
        assert all(reached.values()), f"{funnel.name}: every step is reached by someone: {reached}"
        assert reached[len(funnel.steps)] < reached[1], f"{funnel.name}: and some fall short: {reached}"
