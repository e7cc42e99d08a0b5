"""The sink's buffer: rows per table plus the Kafka offsets they came from (pure, no I/O).

A batch is flushed when it holds ``batch_rows`` rows or is ``batch_seconds`` old. Its
offsets are committed only after every table's rows are inserted, and each insert carries
a deduplication token derived from the offset ranges, so a retried insert of the same
batch is ignored by ClickHouse.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from sinks.rows import (
    DEAD_LETTER_COLUMNS,
    DEAD_LETTERS,
    EVENT_COLUMNS,
    EVENTS,
    SESSION_COLUMNS,
    SESSIONS,
    Columns,
)

TopicPartition = tuple[str, int]


@dataclass
class Batch:
    """Rows waiting for ClickHouse and the offset range of each input partition."""

    tables: dict[str, Columns] = field(
        default_factory=lambda: {
            EVENTS: Columns(EVENT_COLUMNS),
            SESSIONS: Columns(SESSION_COLUMNS),
            DEAD_LETTERS: Columns(DEAD_LETTER_COLUMNS),
        }
    )
    ranges: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    opened_at: float = field(default_factory=time.monotonic)
    event_times: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(columns) for columns in self.tables.values())

    def track(self, topic: str, partition: int, offset: int) -> None:
        """Remember that the record at ``offset`` is part of this batch."""
        first, _ = self.ranges.get((topic, partition), (offset, offset))
        self.ranges[(topic, partition)] = (first, offset)

    def is_due(self, max_rows: int, max_seconds: float) -> bool:
        if not self.ranges:
            return False
        return self.rows >= max_rows or time.monotonic() - self.opened_at >= max_seconds

    def commit_offsets(self) -> dict[TopicPartition, int]:
        """The offsets to commit once the batch is durable: one past the last record."""
        return {tp: last + 1 for tp, (_, last) in self.ranges.items()}

    def dedup_token(self, table: str) -> str:
        """Same offsets, same token: ClickHouse drops a block it already has for this token."""
        spans = ",".join(f"{t}/{p}:{a}-{b}" for (t, p), (a, b) in sorted(self.ranges.items()))
        return hashlib.sha256(f"{table}|{spans}".encode()).hexdigest()
