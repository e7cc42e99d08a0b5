"""Inserting a batch into ClickHouse, retrying with back-off until it is durable.

A ClickHouse outage makes the sink lag, never lose: the batch is held (and its offsets
stay uncommitted) while attempts back off exponentially up to ``retry_max_s``.
"""

from __future__ import annotations

import logging
import threading
import time

from clickhouse_connect.driver.client import Client

from pulse.settings import SinkTuning
from sinks import metrics
from sinks.rows import Columns

log = logging.getLogger(__name__)


class Stopped(RuntimeError):
    """The sink was asked to stop while a batch was still not inserted."""


class BatchWriter:
    """Writes column batches with a deduplication token, retrying failures."""

    def __init__(self, client: Client, tuning: SinkTuning, stop: threading.Event) -> None:
        self._client = client
        self._tuning = tuning
        self._stop = stop

    def write(self, table: str, columns: Columns, token: str) -> None:
        """Insert ``columns`` into ``table``; returns only once ClickHouse has them."""
        delay = self._tuning.retry_initial_s
        while True:
            started = time.perf_counter()
            try:
                self._client.insert(
                    table,
                    columns.data,
                    column_names=list(columns.names),
                    column_oriented=True,
                    settings={"insert_deduplication_token": token},
                )
            except Exception as exc:  # any failure is retried: the rows must not be dropped
                metrics.INSERT_FAILURES.labels(table).inc()
                log.warning("insert of %d rows into %s failed (%s); retrying in %.1fs", len(columns), table, exc, delay)
                if self._stop.wait(delay):
                    raise Stopped(f"stopped with {len(columns)} rows for {table} not inserted") from exc
                delay = min(delay * 2, self._tuning.retry_max_s)
                continue
            metrics.INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
            metrics.ROWS_INSERTED.labels(table).inc(len(columns))
            metrics.BATCH_ROWS.labels(table).observe(len(columns))
            return
