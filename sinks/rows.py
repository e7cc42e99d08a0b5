"""Kafka records of the output topics -> rows of ClickHouse tables (pure, no I/O).

Every table is described by an :class:`pulse.outputs.OutputSpec`, so nothing here knows one
table from another: a record of an output topic is NDJSON objects, each turned into a row
by ``spec.row``. Rows are gathered column by column, the form clickhouse-connect inserts
fastest, and each row remembers the record and line it came from, so a row ClickHouse
refuses becomes a dead letter whose id is the same when the record is replayed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pulse.dead_letter import DeadLetter, now_ms
from pulse.outputs import DEAD_LETTERS, OutputSpec

REJECTED = "sink_rejected"  # the dead-letter reason of a row ClickHouse refused for good


@dataclass(frozen=True, slots=True)
class Position:
    """Where a Kafka record is: one object per record, shared by all of its rows."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass
class Columns:
    """Rows for one table, stored as one list per column, plus where each row came from.

    ``origins`` and ``lines`` run parallel to the columns: the record of each row (one shared
    :class:`Position` per record, so remembering it costs a pointer per row) and the row's
    line in that record (counting its NDJSON objects from 0, blank lines skipped).
    """

    names: tuple[str, ...]
    data: list[list[Any]] = field(init=False)
    origins: list[Position] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data = [[] for _ in self.names]

    @classmethod
    def of(cls, spec: OutputSpec) -> Columns:
        return cls(spec.column_names)

    def __len__(self) -> int:
        return len(self.origins)

    def append(self, row: Sequence[Any], origin: Position, line: int) -> None:
        """Append one row, line ``line`` of the record at ``origin``."""
        for column, value in zip(self.data, row, strict=True):
            column.append(value)
        self.origins.append(origin)
        self.lines.append(line)

    def extend(self, rows: Sequence[Sequence[Any]], origin: Position) -> None:
        """Append the rows of the record at ``origin``, which are its lines 0, 1, ...

        The rows are transposed a record at a time: the per-row work stays in C.
        """
        if not rows:
            return
        for column, values in zip(self.data, zip(*rows, strict=True), strict=True):
            column.extend(values)
        self.origins.extend([origin] * len(rows))
        self.lines.extend(range(len(rows)))

    def part(self, start: int, stop: int) -> Columns:
        """Rows ``start`` to ``stop`` (exclusive), for inserting a batch in pieces."""
        piece = Columns(self.names, origins=self.origins[start:stop], lines=self.lines[start:stop])
        piece.data = [column[start:stop] for column in self.data]
        return piece

    def source(self, index: int) -> str:
        """``topic/partition@offset#line`` of one row: stable across replays of its record."""
        return f"{self.origins[index]}#{self.lines[index]}"

    def row_json(self, index: int) -> bytes:
        """One row as a JSON object keyed by column name (bytes and other non-JSON values as text).

        The standard library's encoder, unlike orjson, takes any integer: a refused row may well
        hold one beyond 64 bits, and making its dead letter must not fail too.
        """
        row = {name: column[index] for name, column in zip(self.names, self.data, strict=True)}
        return json.dumps(row, default=_text, ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Decoded:
    """The rows of one output record and the event times (epoch ms) of its spec's ``time_column``."""

    rows: list[list[Any]]
    event_times: list[int]


def decode_record(spec: OutputSpec, value: bytes) -> Decoded:
    """The rows of an output record (NDJSON objects keyed by column name).

    Raises ``ValueError`` (``orjson.JSONDecodeError`` is one), ``KeyError`` or ``TypeError`` if
    a line is not a row of ``spec``; nothing is appended then, and the caller keeps the whole
    record as a dead letter. A time that is not a number is left to ClickHouse to judge and
    not observed as lag.
    """
    objects = [orjson.loads(line) for line in value.split(b"\n") if line.strip()]
    if not all(isinstance(obj, dict) for obj in objects):
        raise TypeError(f"a line of the {spec.name} record is not a JSON object")
    rows = [spec.row(obj) for obj in objects]
    times: list[int] = []
    if spec.time_column is not None:
        times = [t for obj in objects if isinstance(t := obj.get(spec.time_column), int | float)]
    return Decoded(rows, times)


def add_letter(letter: DeadLetter, origin: Position, letters: Columns, line: int = 0) -> None:
    """Append a dead letter made from the record at ``origin`` (its ``dlq_*`` columns name that record)."""
    row = DEAD_LETTERS.row(
        {
            "letter_id": letter.letter_id,
            "dlq_topic": origin.topic,
            "dlq_partition": origin.partition,
            "dlq_offset": origin.offset,
            "failed_at": letter.failed_at,
            "reason": letter.reason,
            "errors": list(letter.errors),
            "source": letter.source,
            "raw": letter.raw,
        }
    )
    letters.append(row, origin, line)


def add_rejected(table: str, columns: Columns, refused: Sequence[tuple[int, str]], letters: Columns) -> None:
    """Append a ``sink_rejected`` dead letter for each refused ``(row index, ClickHouse's message)``.

    The letter id is the table and the row's source, so a replay refuses the row under the same id.
    """
    failed_at = now_ms()
    for index, message in refused:
        source = columns.source(index)
        letter = DeadLetter(f"{table}:{source}", columns.row_json(index), REJECTED, (message,), source, failed_at)
        add_letter(letter, columns.origins[index], letters, columns.lines[index])


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
