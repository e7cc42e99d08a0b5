"""Shared helpers for the KPI view tests (``test_kpi_*.py``): an embedded engine, events, queries, shape tests.

The KPI modules pin the views of the ``kpi_*`` migrations value by value on hand-made events, and
all of them need the same scaffolding, kept here so that it is written (and fixed) once:

- :func:`engine_fixture` / :func:`open_engine`: a module's own chdb engine, migrated, merges of
  the named tables stopped (so a resent event or an older version stays a row on disk and only the
  views' ``FINAL`` can fold it), and closed when the module is done. chdb opens ONE engine directory
  per process at a time and pytest runs every unit module in one process, so each module must close
  its engine before the next one (KPI or not: the sink and migration tests open chdb too) opens its own.
- :func:`db_fixture` / :func:`truncate`: the tables emptied before each test.
- :func:`event`, :func:`page`, :func:`insert`: events that went through the contract first, so the
  views are pinned on what the pipeline can actually store, written as the sink writes them.
- :func:`rows`, :func:`one`, :func:`by_key`, :func:`by_day`: query results as dicts.
- :func:`load_simulation`: a simulator run loaded the way ``devstack.offline_load`` loads it.
- :func:`shape_tests`: the two tests every module has on its views' columns and their documentation.

Not a test module (no ``test_`` prefix): pytest collects only what a test module binds to a
``test_*`` name, which :func:`shape_tests` is made for.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from devstack.offline_load import load_tables
from producers.simulator import Simulation
from pulse.contract import Event, validate
from pulse.settings import load_settings
from sinks.clickhouse import connect
from sinks.migrations import migrate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
EVENT_COLUMNS = ["event_id", "type", "user_id", "ts", "props", "context"]


# --- the engine -------------------------------------------------------------------------------


@contextmanager
def open_engine(path: Path, *stop_merges: str) -> Iterator[Client]:
    """A migrated chdb client on ``path``, merges of ``stop_merges`` stopped; closed on leaving, even on error."""
    client = connect(f"chdb://{path}")
    try:
        migrate(client)
        for table in stop_merges:
            client.command(f"SYSTEM STOP MERGES {table}")
        yield client
    finally:
        client.close()


def engine_fixture(label: str, *stop_merges: str) -> Any:
    """A module-scoped ``engine`` fixture: :func:`open_engine` in a fresh tmp dir named after ``label``.

    Bind it in the test module as ``engine = engine_fixture(...)``; pytest registers it as ``engine``.
    """

    @pytest.fixture(scope="module")
    def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
        with open_engine(tmp_path_factory.mktemp(label), *stop_merges) as client:
            yield client

    return engine


def truncate(client: Client, *tables: str) -> None:
    for table in tables:
        client.command(f"TRUNCATE TABLE {table}")


def db_fixture(*tables: str) -> Any:
    """A ``db`` fixture: the module's ``engine`` on its default database, ``tables`` emptied before each test.

    The default database because a module may have pointed the engine at a simulation's own.
    """

    @pytest.fixture
    def db(engine: Client) -> Client:
        engine.database = None
        truncate(engine, *tables)
        return engine

    return db


# --- events -----------------------------------------------------------------------------------

_ids = itertools.count(1)


def event(event_type: str, user_id: str, ts: str | datetime, context: dict[str, Any] | None = None,
          **props: Any) -> Event:  # fmt: skip
    """A contract-valid event with a fresh event_id.

    ``ts`` is UTC, either written as ``2024-05-01 09:00:00`` (stories read best so) or an aware
    datetime (for times computed from a start).
    """
    iso = ts.isoformat().replace("+00:00", "Z") if isinstance(ts, datetime) else f"{ts.replace(' ', 'T')}Z"
    wire = {"event_id": f"e{next(_ids)}", "type": event_type, "user_id": user_id, "ts": iso, "props": props,
            "context": context or {}}  # fmt: skip
    checked = validate(wire)
    assert isinstance(checked, Event), checked
    return checked


def page(user_id: str, ts: str | datetime, path: str = "/", **props: Any) -> Event:
    """A page view: the contract wants a path in its context."""
    return event("page_view", user_id, ts, {"path": path}, **props)


def insert(db: Client, events: list[Event]) -> None:
    """Write events as rows of ``events``, as the sink does (props and context as JSON text)."""
    rows = [
        [e.event_id, e.type, e.user_id, datetime.fromtimestamp(e.ts / 1000, UTC),
         orjson.dumps(e.props).decode(), orjson.dumps(e.context).decode()]
        for e in events
    ]  # fmt: skip
    db.insert("events", rows, column_names=EVENT_COLUMNS)


def load_simulation(client: Client, simulation: Simulation) -> list[bytes]:
    """Load a simulator run into ``client``'s database as the offline loader does; its lines, for a recount."""
    lines = list(simulation.lines())
    load_tables(client, load_settings({}), lines, simulation.truth.config.end_ms)
    return lines


# --- queries ----------------------------------------------------------------------------------


def rows(db: Client, sql: str) -> list[dict[str, Any]]:
    """The result as one dict per row, by column name: assertions then read like the docs."""
    result = db.query(sql)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def one(db: Client, sql: str) -> dict[str, Any]:
    """The single row of ``sql``; fails if there is not exactly one."""
    [row] = rows(db, sql)
    return row


def by_key(db: Client, view: str, key: str) -> dict[str, dict[str, Any]]:
    """A view's rows in ``key`` order, keyed by ``str(key)`` (so ``"2024-05-01"``) and without it."""
    return {str(row.pop(key)): row for row in rows(db, f"SELECT * FROM {view} ORDER BY {key}")}


def by_day(db: Client, view: str) -> dict[str, dict[str, Any]]:
    """A daily view's rows by ``"YYYY-MM-DD"``."""
    return by_key(db, view, "day")


# --- shape ------------------------------------------------------------------------------------


def documented_names(path: Path = DOCS) -> set[str]:
    """Every name written as code (```name```) in ``path``: the views and columns the docs mention."""
    return set(re.findall(r"`([a-z0-9_]+)`", path.read_text()))


def shape_tests(view_columns: Mapping[str, Sequence[str]],
                section: str | None = None) -> tuple[Callable[..., None], Callable[..., None]]:  # fmt: skip
    """The two tests on a module's views, for it to bind to their names::

        test_view_columns_are_stable, test_every_view_and_column_is_documented = shape_tests(VIEW_COLUMNS)

    The first pins each view's columns, in order (readers select them by position too); the second
    wants every view and column named in docs/metrics.md, skipped while ``section`` (a heading such
    as ``"## Retention"``) is not merged into it yet. Both use the module's ``engine`` fixture.
    """

    @pytest.mark.parametrize("view", list(view_columns))
    def test_view_columns_are_stable(engine: Client, view: str) -> None:
        engine.database = None  # the default database, whatever a simulation's fixture left
        found = engine.query(f"SELECT * FROM {view} LIMIT 0").column_names
        assert found == tuple(view_columns[view]), f"{view}: {found} != {tuple(view_columns[view])}"

    def test_every_view_and_column_is_documented() -> None:
        if section is not None and section not in DOCS.read_text():
            pytest.skip(f"the {section!r} section is not merged into docs/metrics.md yet")
        missing = {name for view, columns in view_columns.items() for name in (view, *columns)} - documented_names()
        assert not missing, f"not in {DOCS.name}: {sorted(missing)}"

    return test_view_columns_are_stable, test_every_view_and_column_is_documented
