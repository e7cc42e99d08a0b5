"""Reading ClickHouse from outside the sink: via the sink's HTTP endpoint when embedded."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson

from pulse.errors import PulseError
from pulse.settings import Settings
from sinks.clickhouse import connect


class QueryError(PulseError, RuntimeError):
    """ClickHouse refused the query, or the sink that holds the embedded engine is not running."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]

    def scalar(self) -> Any:
        """The single value of a one-row, one-column result."""
        return self.rows[0][0]


def run_query(settings: Settings, sql: str, timeout: float = 60.0) -> QueryResult:
    """Run a read-only query against the configured ClickHouse."""
    if not settings.embedded_clickhouse:
        result = connect(settings.clickhouse_dsn).query(sql, settings={"readonly": 1})
        return QueryResult(list(result.column_names), [list(row) for row in result.result_rows])
    request = urllib.request.Request(f"{settings.sink_url}/query", data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise QueryError(orjson.loads(exc.read()).get("error", str(exc))) from None
    except OSError as exc:
        raise QueryError(
            f"the sink holds the embedded ClickHouse and answers queries at {settings.sink_url}, "
            f"but it did not answer ({exc}); start it with `pulse up`"
        ) from None
    return QueryResult(body["columns"], body["rows"])
