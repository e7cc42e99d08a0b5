"""Opening ClickHouse from a DSN: the embedded chdb engine or a server, same client API."""

from __future__ import annotations

import clickhouse_connect
from clickhouse_connect.driver.client import Client


def connect(dsn: str) -> Client:
    """A clickhouse-connect client for ``chdb:///path`` (embedded) or ``http(s)://...`` (server).

    The embedded engine belongs to one process: opening a directory another process holds
    fails with ClickHouse's "Cannot lock file .../status" error, which we let through.
    """
    if dsn.startswith("chdb://") and not dsn.startswith("chdb:///"):
        dsn = "chdb:///" + dsn.removeprefix("chdb://").lstrip("/")
    return clickhouse_connect.get_client(dsn=dsn)
