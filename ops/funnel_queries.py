"""Funnels read from ClickHouse two ways: as the worker streamed them, and retroactively over raw events.

The streamed figures come from ``funnel_steps`` (one row per step an attempt reached); the
retroactive ones run the same definition over ``events`` with ClickHouse's ``windowFunnel``,
the semantics the funnels job follows (:mod:`stream_jobs.funnels`). Both give the users who
reached each step, so the two can be set side by side, and on the same events they agree.
A retroactive query also answers for a funnel defined after the events arrived.

``windowFunnel`` has no exclusion steps: a funnel with exclusions has no retroactive form.
Timestamps go to it as epoch milliseconds, so its window is the definition's, to the ms.
"""

from __future__ import annotations

from pulse.errors import PulseError
from pulse.settings import Settings
from stream_jobs.funnels import Funnel, FunnelStep

from ops.reader import run_query


class NoRetroactiveForm(PulseError, ValueError):
    """The funnel uses something ``windowFunnel`` cannot express (exclusion steps)."""


def quote(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def step_condition(step: FunnelStep) -> str:
    """The SQL condition an ``events`` row meets when it is this step's event."""
    terms = [f"type = {quote(step.type)}"]
    for path, value in sorted(step.where.items()):
        column, key = path.split(".", 1)  # props.<key> or context.<key>, checked when the funnel was loaded
        terms.append(f"JSONExtractString({column}, {quote(key)}) = {quote(value)}")
    return " AND ".join(terms)


def window_funnel_sql(funnel: Funnel) -> str:
    """People per furthest step of ``funnel`` over every event in ``events``: rows (level, users)."""
    if funnel.exclusions:
        raise NoRetroactiveForm(f"funnel {funnel.name!r} has exclusion steps, which windowFunnel cannot express")
    conditions = ",\n        ".join(step_condition(step) for step in funnel.steps)
    return (
        "SELECT level, count() AS users FROM (\n"
        f"    SELECT person_id, windowFunnel({funnel.window_ms})(toUInt64(toUnixTimestamp64Milli(ts)),\n"
        f"        {conditions}) AS level\n"
        "    FROM events FINAL GROUP BY person_id\n"
        ") WHERE level > 0 GROUP BY level ORDER BY level"
    )


def streamed_sql(funnel: Funnel) -> str:
    """People who reached each step of ``funnel``, from ``funnel_steps``: rows (step_index, users)."""
    return (
        f"SELECT step_index, uniqExact(person_id) FROM funnel_steps WHERE funnel = {quote(funnel.name)} "
        "GROUP BY step_index ORDER BY step_index"
    )


def streamed_users_per_step(settings: Settings, funnel: Funnel) -> list[int]:
    """Users who reached step 1, 2, ... of ``funnel`` as the worker streamed it."""
    reached = dict(run_query(settings, streamed_sql(funnel)).rows)
    return [int(reached.get(index, 0)) for index in range(1, len(funnel.steps) + 1)]


def retroactive_users_per_step(settings: Settings, funnel: Funnel) -> list[int]:
    """Users who reached step 1, 2, ... of ``funnel`` by ``windowFunnel`` over ``events``."""
    furthest = {int(level): int(users) for level, users in run_query(settings, window_funnel_sql(funnel)).rows}
    return [sum(users for level, users in furthest.items() if level >= index) for index in range(1, len(funnel.steps) + 1)]
