"""Event-time progress of a partition, and which users' sessions are due to close.

The watermark is the highest event time seen on the partition minus the allowed lateness.
When a partition goes quiet, event time would stop and sessions would never close; so a
timer sends the partition a tick, and a tick after ``idle_ms`` of wall-clock silence moves
the partition's event time on by the wall-clock time that passed since its last event.
"""

from __future__ import annotations

import heapq
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


class CloseSchedule:
    """A heap of (watermark at which a user's earliest open session closes, user id).

    Entries may be stale (the session grew since); the caller re-checks the user's state
    and schedules again. Kept in memory and rebuilt from the state after a restart.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []

    def schedule(self, deadline: int, user_id: str) -> None:
        heapq.heappush(self._heap, (deadline, user_id))

    def due(self, watermark: int) -> list[str]:
        """Users with an entry the watermark has passed, each once."""
        users: dict[str, None] = {}
        while self._heap and self._heap[0][0] < watermark:
            users[heapq.heappop(self._heap)[1]] = None
        return list(users)
