"""Event-time progress of a partition: its watermark, and wall-clock ticks for quiet partitions.

The watermark is the highest event time seen on the partition minus the allowed lateness.
When a partition goes quiet, event time would stop and sessions would never close; so a
timer sends the partition a tick, and a tick after ``idle_ms`` of wall-clock silence moves
the partition's event time on by the wall-clock time that passed since its last event.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass
class PartitionClock:
    """The newest event time of a partition and the wall-clock time it was reached (ms)."""

    max_ts: int | None = None
    wall_ms: int = 0

    def watermark(self, lateness_ms: int) -> int | None:
        return None if self.max_ts is None else self.max_ts - lateness_ms

    def observe(self, ts: int, wall_ms: int) -> None:
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts, self.wall_ms = ts, wall_ms

    def tick(self, wall_ms: int, idle_ms: int) -> bool:
        """Advance by wall-clock time if the partition was quiet for ``idle_ms``; True if it moved."""
        if self.max_ts is None or wall_ms - self.wall_ms < idle_ms:
            return False
        self.max_ts += wall_ms - self.wall_ms
        self.wall_ms = wall_ms
        return True

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.max_ts, self.wall_ms])

    @classmethod
    def from_bytes(cls, data: bytes | None) -> PartitionClock:
        return cls(*orjson.loads(data)) if data else cls()
