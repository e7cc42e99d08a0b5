"""Erasing a person's rows from ClickHouse (``pulse forget``), and the audit row that says it happened.

Every table the pipeline writes is keyed by user: its rows of the person's ids go, by a
synchronous mutation (``mutations_sync = 2``: on every replica before the answer). Dead letters
are raw input, so those that name one of the ids, as a JSON string in the raw line or in the
source, go too. ``person_ids`` goes last, then the dictionary behind ``person_id`` is reloaded.
The audit row in ``erasures`` holds no personal data: the caller's reference, the number of
ids and the rows each table lost.

This only deletes. The stream side (state, suppression of later events) is the worker's, told
through the events topic before this runs; see :mod:`ops.forget`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from clickhouse_connect.driver.binding import format_query_value
from clickhouse_connect.driver.client import Client

from pulse.outputs import DEAD_LETTERS, OUTPUTS, PERSON_IDS
from sinks.writer import PERSON_LINKS

AUDIT_TABLE = "erasures"


@dataclass(frozen=True)
class Erasure:
    """What one erasure removed, as its audit row records it."""

    erasure_id: str
    requested_at: datetime
    completed_at: datetime
    reference: str
    ids: int
    rows_removed: dict[str, int] = field(default_factory=dict)  # by table, tables that lost none included


def erase(client: Client, ids: Sequence[str], reference: str = "", requested_at: datetime | None = None,
          cluster: str | None = None) -> Erasure:  # fmt: skip
    """Delete every row of ``ids`` in every table, record the audit row, and say what went.

    ``cluster``: tables are ``<table>_local`` on every node (see :mod:`sinks.cluster`), and a
    mutation runs ``ON CLUSTER`` there.
    """
    requested_at = requested_at or datetime.now(UTC)
    literal = format_query_value(sorted(set(ids)))
    quoted = format_query_value(sorted({orjson.dumps(id_).decode() for id_ in ids}))
    conditions = {spec.table: f"{'id' if spec is PERSON_IDS else 'user_id'} IN {literal}" for spec in OUTPUTS}
    conditions[DEAD_LETTERS.table] = f"multiSearchAny(raw, {quoted}) OR multiSearchAny(source, {literal})"
    conditions[PERSON_IDS.table] = conditions.pop(PERSON_IDS.table)  # last: the mapping outlives the rows it maps
    removed = {}
    for table, condition in conditions.items():
        removed[table] = int(client.command(f"SELECT count() FROM {table} WHERE {condition}"))
        if removed[table]:
            target = table if cluster is None else f"{table}_local ON CLUSTER {cluster}"
            client.command(f"ALTER TABLE {target} DELETE WHERE {condition}", settings={"mutations_sync": 2})
    client.command(f"SYSTEM RELOAD DICTIONARY {PERSON_LINKS}")
    erasure = Erasure(uuid.uuid4().hex, requested_at, datetime.now(UTC), reference, len(set(ids)), removed)
    client.insert(AUDIT_TABLE, [[erasure.erasure_id, erasure.requested_at, erasure.completed_at, erasure.reference,
                                 erasure.ids, erasure.rows_removed]],
                  column_names=["erasure_id", "requested_at", "completed_at", "reference", "ids", "rows_removed"])  # fmt: skip
    return erasure
