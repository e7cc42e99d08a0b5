"""Inserting a batch into ClickHouse: retrying what may succeed later, splitting out what never will.

A ClickHouse outage makes the sink lag, never lose: a transient failure (see
:mod:`sinks.failures`) holds the batch, its offsets uncommitted, while attempts back off
exponentially up to ``retry_max_s``. A batch ClickHouse refuses for good is split in halves,
recursively, down to the single rows it refuses; the rest is inserted and each refused row
becomes a ``sink_rejected`` dead letter, written after the output tables along with the
batch's own dead letters. Each part carries its own deduplication token, derived from the
batch's and the part's row range: a replay after a kill splits the same batch the same way,
and ClickHouse drops the parts it already has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext

from pulse.errors import PulseError
from pulse.outputs import DEAD_LETTERS, OUTPUTS, PERSON_IDS
from pulse.settings import SinkTuning
from sinks import metrics
from sinks.batch import Batch
from sinks.failures import describe, is_transient
from sinks.rows import Columns, add_rejected

log = logging.getLogger(__name__)

PERSON_LINKS = "person_links"  # the dictionary of merged ids (migration 0019_person_ids)


class Stopped(PulseError, RuntimeError):
    """The sink was asked to stop while a batch was still not inserted."""


class SinkError(PulseError, RuntimeError):
    """ClickHouse refused dead letters the sink built itself: a schema bug no retry fixes."""


class Refusal(NamedTuple):
    """A row ClickHouse refuses for good: its index in the columns written and ClickHouse's message."""

    index: int
    message: str


class BatchWriter:
    """Writes column batches with a deduplication token, retrying transient failures."""

    def __init__(
        self, client: Client, tuning: SinkTuning, stop: threading.Event, on_insert: Callable[[], None] = lambda: None
    ) -> None:
        self._client = client
        self._tuning = tuning
        self._stop = stop
        self._on_insert = on_insert  # told of every insert that landed: the sink's progress

    def write_batch(self, batch: Batch) -> None:
        """Every output table, then the dead letters: those of the batch and one per row refused on the way."""
        for spec in OUTPUTS:
            columns = batch.tables[spec.table]
            refused = self.write(spec.table, columns, batch.dedup_token(spec.table))
            add_rejected(spec.table, columns, refused, batch.letters)
        if any(batch.tables[PERSON_IDS.table].data[PERSON_IDS.column_names.index("merged")]):
            self._reload_person_links()
        token = batch.dedup_token(DEAD_LETTERS.table)
        refused = self.write(DEAD_LETTERS.table, batch.letters, token)
        if not refused:
            return
        # a letter ClickHouse will not store (a foreign record's absurd pulse.failed_at, say)
        # is kept as a sink_rejected letter of its own, built from values the sink controls
        again = Columns.of(DEAD_LETTERS)
        add_rejected(DEAD_LETTERS.table, batch.letters, refused, again)
        if self.write(DEAD_LETTERS.table, again, f"{token}:refused"):
            raise SinkError("ClickHouse refused sink_rejected dead letters; see the log for its message")

    def _reload_person_links(self) -> None:
        """Have ``person_id`` (a dictionary lookup, see migration 0019) see the merges just written, now.

        Without it they show within the dictionary's LIFETIME (a minute): a failure only logs.
        """
        try:
            self._client.command(f"SYSTEM RELOAD DICTIONARY {PERSON_LINKS}")
        except Exception as exc:  # the LIFETIME reload catches up
            log.warning("could not reload %s (merges show within its LIFETIME): %s", PERSON_LINKS, exc)

    def write(self, table: str, columns: Columns, token: str) -> list[Refusal]:
        """Insert ``columns`` into ``table``; returns, once the rest is durable, the rows refused for good."""
        if not len(columns):
            return []
        return self._write_part(table, columns, token, 0, len(columns))

    def _write_part(self, table: str, columns: Columns, token: str, start: int, stop: int) -> list[Refusal]:
        whole = stop - start == len(columns)
        part = columns if whole else columns.part(start, stop)
        error = self._insert(table, part, token if whole else f"{token}:{start}-{stop}")
        if error is None:
            return []
        if stop - start == 1:
            log.warning("%s refused row %s: %s", table, columns.source(start), error)
            metrics.ROWS_REFUSED.labels(table).inc()
            return [Refusal(start, error)]
        middle = (start + stop) // 2
        first = self._write_part(table, columns, token, start, middle)
        return first + self._write_part(table, columns, token, middle, stop)

    def _insert(self, table: str, columns: Columns, token: str) -> str | None:
        """One insert, retried while it fails transiently; None once durable, else ClickHouse's refusal."""
        delay = self._tuning.retry_initial_s
        while True:
            started = time.perf_counter()
            context: InsertContext | None = None  # names the column being encoded when a value does not fit
            try:
                context = self._client.create_insert_context(
                    table, list(columns.names), column_oriented=True, settings={"insert_deduplication_token": token}
                )
                context.data = columns.data
                self._client.data_insert(context)
            except Exception as exc:  # sorted into transient (retried) and refused (split) below
                metrics.INSERT_FAILURES.labels(table).inc()
                if not is_transient(exc):
                    return describe(exc, context.column_name if context else None)
                metrics.CLICKHOUSE.failed(f"insert of {len(columns)} rows into {table} failed, retrying: {exc}")
                if self._stop.wait(delay):
                    raise Stopped(f"stopped with {len(columns)} rows for {table} not inserted") from exc
                delay = min(delay * 2, self._tuning.retry_max_s)
                continue
            metrics.INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
            metrics.ROWS_INSERTED.labels(table).inc(len(columns))
            metrics.BATCH_ROWS.labels(table).observe(len(columns))
            metrics.CLICKHOUSE.reachable()
            self._on_insert()
            return None
