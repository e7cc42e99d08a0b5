"""The simulator's anonymous visits through the stream jobs: counted by person, the figures are the truth's.

A run with ``anonymous_visits`` sends every new customer's events before the signup under a
browser's anonymous id, and the signup and later browser events with both ids. Through the
calm pass (the runner, merges delivered as the events topic would) and the offline loader,
the funnels and sessions counted by ``person_id`` are exactly those of the same run whose
customers are known by their own id from the start (the ground truth's count, up to the events
the last watermark has not passed); counted by ``user_id`` they are not, which is what makes
stitching necessary.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from producers.simulator import SimulationConfig, simulate
from producers.simulator.devices import anonymous_id_of
from producers.simulator.journeys import SYSTEM_USER
from tests.unit.kpi_views import load_simulation, open_engine

CONFIG = SimulationConfig(customers=300, days=14, seed=7, anonymous_visits=True)
FIGURES = {  # counted by person; the run whose customers are known from the start counts the same by user_id
    "funnels": "SELECT funnel, step_index, users FROM funnel_conversion ORDER BY funnel, step_index",
    "sessions": "SELECT count(), countIf(bounce), sum(events), uniqExact(person_id) FROM sessions FINAL WHERE NOT deleted",
    "people": f"SELECT uniqExact(person_id), uniqExact(user_id) FROM events WHERE user_id != '{SYSTEM_USER}'",
}


# every KPI view that lists no user (those that do name a prospect who never signed up by the browser's id)
KPI_VIEWS = """
    SELECT name FROM system.tables
    WHERE database = currentDatabase() AND engine = 'View' AND name LIKE 'kpi%' AND name NOT IN (
        SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'user_id')
    ORDER BY name
"""


def figures(tmp_path: Path, config: SimulationConfig) -> tuple[dict[str, list[tuple]], list[bytes]]:
    """The figures of a run through the calm pass and the offline loader (every KPI view's rows too), and its lines."""
    simulation = simulate(config)
    with open_engine(tmp_path) as client:
        lines = load_simulation(client, simulation)
        queries = {**FIGURES, **{view: f"SELECT * FROM {view} ORDER BY ALL" for (view,) in client.query(KPI_VIEWS).result_rows}}
        return {name: [tuple(row) for row in client.query(sql).result_rows] for name, sql in queries.items()}, lines


def _same(found: list[tuple], expected: list[tuple]) -> bool:
    """Equal rows, floats to a relative 1e-9: sums over rows read in another order differ in their last bits."""
    return len(found) == len(expected) and all(
        len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9) if isinstance(x, float) else x == y
                                 for x, y in zip(a, b, strict=True))  # fmt: skip
        for a, b in zip(found, expected, strict=True)
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, list[bytes]]:
    """The figures of the run with anonymous visits, of the same run without them, and the first one's lines."""
    anonymous, lines = figures(tmp_path_factory.mktemp("anonymous"), CONFIG)
    known, _ = figures(tmp_path_factory.mktemp("known"), replace(CONFIG, anonymous_visits=False))
    return anonymous, known, lines


def test_the_truth_is_the_same_with_or_without_anonymous_visits() -> None:
    small = SimulationConfig(customers=60, days=7, seed=3)
    assert simulate(replace(small, anonymous_visits=True)).truth.totals == simulate(small).truth.totals


def test_customers_are_anonymous_until_the_signup(runs: tuple[dict, dict, list[bytes]]) -> None:
    events = [event for line in runs[2] if (event := _valid(line)) and event["user_id"] != SYSTEM_USER]
    signed_up = {event["user_id"]: event["ts"] for event in events if event["type"] == "signup"}
    for event in events:
        user_id, anonymous_id = event["user_id"], (event.get("context") or {}).get("anonymous_id")
        customer = "u" + user_id[1:]
        if user_id.startswith("a"):
            assert anonymous_id == user_id and (customer not in signed_up or event["ts"] < signed_up[customer])
        elif event["type"] == "signup":
            assert anonymous_id == anonymous_id_of(user_id)
    assert sum(event["user_id"].startswith("a") for event in events) > len(events) // 10


def test_counted_by_person_the_figures_are_those_of_known_customers(runs: tuple[dict, dict, list[bytes]]) -> None:
    anonymous, known, _ = runs
    assert anonymous["funnels"] == known["funnels"]
    assert anonymous["sessions"] == known["sessions"]  # a visit across the signup stays one session
    (people, ids), ((customers, _),) = anonymous["people"][0], known["people"]
    assert people == customers < ids  # ids alone count a signed-up visitor twice


def test_every_kpi_counts_people(runs: tuple[dict, dict, list[bytes]]) -> None:
    anonymous, known, _ = runs
    views = [name for name in known if name.startswith("kpi")]
    assert len(views) > 40
    assert [view for view in views if not _same(anonymous[view], known[view])] == []


def _valid(line: bytes) -> dict | None:
    """A line the model made (not one of the emitter's malformed copies), decoded."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return None if "-bad-" in str(event.get("event_id")) else event
