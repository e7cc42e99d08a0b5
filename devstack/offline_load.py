"""A simulation's tables without Kafka: one calm in-process pass of the stream jobs, its rows inserted directly.

The sink writes each output of the jobs (valid events, sessions, funnel steps, churn scores
and alerts) to its table. This writes the same rows from :func:`devstack.reference_run.calm_pass`
into any ClickHouse client, after the migrations, so the KPI views can be checked against the
simulator's ground truth in a unit test, on the embedded engine, in seconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from devstack.reference_run import calm_pass
from pulse.outputs import OutputSpec
from pulse.settings import Settings
from sinks.migrations import migrate
from sinks.writer import PERSON_LINKS


def load_tables(client: Client, settings: Settings, lines: Iterable[bytes], end_ms: int | None = None) -> dict[str, int]:
    """Migrate, then insert what the jobs publish for ``lines`` (clocks moved to ``end_ms``); rows per table."""
    migrate(client)
    rows: defaultdict[OutputSpec, list[list[Any]]] = defaultdict(list)
    for _, out in calm_pass(settings, lines, end_ms):
        for spec, values in out.rows.items():
            rows[spec] += [spec.row(orjson.loads(value) if isinstance(value, bytes) else value) for value in values]
    for spec, table_rows in rows.items():
        client.insert(spec.table, table_rows, column_names=list(spec.column_names))
    client.command(f"SYSTEM RELOAD DICTIONARY {PERSON_LINKS}")  # person_id follows the merges, as after the sink's
    return {spec.table: len(table_rows) for spec, table_rows in rows.items()}
