"""The sink's buffer: rows per table plus the Kafka offsets they came from (pure, no I/O).

A batch holds one :class:`~sinks.rows.Columns` per table of :data:`pulse.outputs.OUTPUTS`
and one for the dead letters. It is flushed when it holds ``batch_rows`` rows or is
``batch_seconds`` old. Its offsets are committed only after every table's rows are inserted,
and each insert carries a deduplication token derived from the offset ranges, so a retried
insert of the same batch is ignored by ClickHouse.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from pulse.dead_letter import DeadLetter
from pulse.outputs import DEAD_LETTERS, OUTPUTS, OutputSpec
from sinks.rows import Columns, Position, add_letter, decode_record

TopicPartition = tuple[str, int]


def _empty_tables() -> dict[str, Columns]:
    """One buffer per table, in the order they are written: every output, the dead letters last."""
    return {spec.table: Columns.of(spec) for spec in (*OUTPUTS, DEAD_LETTERS)}


@dataclass
class Batch:
    """Rows waiting for ClickHouse and the offset range of each input partition."""

    tables: dict[str, Columns] = field(default_factory=_empty_tables)
    ranges: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    opened_at: float = field(default_factory=time.monotonic)
    event_times: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(columns) for columns in self.tables.values())

    @property
    def letters(self) -> Columns:
        return self.tables[DEAD_LETTERS.table]

    def track(self, position: Position) -> None:
        """Remember that the record at ``position`` is part of this batch."""
        key = (position.topic, position.partition)
        first, _ = self.ranges.get(key, (position.offset, position.offset))
        self.ranges[key] = (first, position.offset)

    def add_output(self, spec: OutputSpec, value: bytes, position: Position) -> None:
        """Append the rows of an output record; raises like :func:`sinks.rows.decode_record`, adding nothing."""
        decoded = decode_record(spec, value)
        self.tables[spec.table].extend(decoded.rows, position)
        self.event_times.extend(decoded.event_times)

    def add_letter(self, letter: DeadLetter, position: Position) -> None:
        add_letter(letter, position, self.letters)

    def is_due(self, max_rows: int, max_seconds: float) -> bool:
        if not self.ranges:
            return False
        return self.rows >= max_rows or time.monotonic() - self.opened_at >= max_seconds

    def first_offsets(self) -> dict[TopicPartition, int]:
        """The first offset of each partition the batch holds: where its not yet durable records start."""
        return {tp: first for tp, (first, _) in self.ranges.items()}

    def commit_offsets(self) -> dict[TopicPartition, int]:
        """The offsets to commit once the batch is durable: one past the last record."""
        return {tp: last + 1 for tp, (_, last) in self.ranges.items()}

    def dedup_token(self, table: str) -> str:
        """Same offsets, same token: ClickHouse drops a block it already has for this token."""
        spans = ",".join(f"{t}/{p}:{a}-{b}" for (t, p), (a, b) in sorted(self.ranges.items()))
        return hashlib.sha256(f"{table}|{spans}".encode()).hexdigest()
