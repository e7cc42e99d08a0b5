"""When to look at a user again without a new event: one timer structure for every job.

Per partition, a heap of ``(deadline, user)``: the event time the watermark must pass for
one of the user's slices to need the watermark (a session to close, ids to expire). A user
has at most one live entry. Scheduling a later deadline than the live one keeps the earlier
entry: when it fires, the runner finds nothing due yet and schedules the user's real
deadline, which costs one look at the user instead of one heap entry per record. Scheduling
an earlier deadline pushes a new entry and leaves the old one stale (skipped when popped).

Timers only decide *when* the runner looks; what is due is read from the state. Firing late
(after a restart, before the index is rebuilt) changes when a row is published, not what.
"""

from __future__ import annotations

import heapq


class Timers:
    """Deadlines of one partition's users."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._live: dict[str, int] = {}  # user -> deadline of its live heap entry

    def __len__(self) -> int:
        return len(self._live)

    def schedule(self, user_id: str, deadline: int | None) -> None:
        """Make sure the user is looked at once the watermark passes ``deadline``."""
        if deadline is None:
            return
        live = self._live.get(user_id)
        if live is not None and live <= deadline:
            return
        self._live[user_id] = deadline
        heapq.heappush(self._heap, (deadline, user_id))

    def due(self, watermark: int) -> list[str]:
        """Users whose live deadline the watermark has passed, each once; their entries are gone."""
        users = []
        heap = self._heap
        while heap and heap[0][0] < watermark:
            deadline, user_id = heapq.heappop(heap)
            if self._live.get(user_id) == deadline:
                del self._live[user_id]
                users.append(user_id)
        return users
