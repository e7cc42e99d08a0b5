"""Opening ClickHouse from a DSN: the embedded chdb engine or a server, same client API."""

from __future__ import annotations

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ProgrammingError

from pulse.errors import PulseError


class EngineBusyError(PulseError, RuntimeError):
    """Another process holds the embedded engine's directory (one process per directory)."""


def connect(dsn: str) -> Client:
    """A clickhouse-connect client for ``chdb:///path`` (embedded) or ``http(s)://...`` (server).

    The embedded engine belongs to one process: opening a directory another process holds
    fails ("Cannot lock file .../status"); that failure is turned into :class:`EngineBusyError`
    saying which process to ask instead.
    """
    if dsn.startswith("chdb://") and not dsn.startswith("chdb:///"):
        dsn = "chdb:///" + dsn.removeprefix("chdb://").lstrip("/")
    try:
        return clickhouse_connect.get_client(dsn=dsn)
    except ProgrammingError as exc:
        if not dsn.startswith("chdb:"):
            raise
        raise EngineBusyError(
            f"cannot open the embedded ClickHouse {dsn}: another process holds it (with `pulse up` running, "
            "that is the sink: query through `pulse query`, or stop it with `pulse down`)"
        ) from exc
