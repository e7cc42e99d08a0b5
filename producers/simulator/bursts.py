"""Bursts: how the simulator makes every session exact by construction.

Each of a user's events belongs to one burst (a visit, or a back-office burst such as a
support reply or an email send). Inside a burst events are at most ``MAX_PAUSE_MS`` apart;
consecutive bursts of a user are at least ``MIN_GAP_MS`` apart. Against the pipeline's rule
(a session ends after 30 minutes without activity, or after 24 hours) each burst is then
exactly one session, with a wide margin on both sides of the 30 minutes. No burst comes near
24 hours: a burst holds at most ``MAX_BURST_EVENTS`` events, under 24 h even if every pause
were the longest.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

from producers.simulator.config import MINUTE

MAX_PAUSE_MS = 20 * MINUTE
MIN_GAP_MS = 45 * MINUTE
MAX_BURST_EVENTS = 70  # 70 x 20 min = 23 h 20 min

Event = dict[str, Any]  # an event as the JSON object it is emitted as


class EventIds:
    """Event ids ``<prefix><n>`` in generation order: unique, and the same for the same seed."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._numbers = count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._numbers)}"


class WindowClosed(Exception):
    """The simulated window ended inside a burst: the user's story stops here."""


class Burst:
    """One user's run of events; ``now`` is the time the next event gets."""

    __slots__ = ("_end_ms", "_ids", "events", "now", "user_id")

    def __init__(self, user_id: str, start_ms: int, end_ms: int, ids: EventIds) -> None:
        self.user_id = user_id
        self.now = start_ms
        self.events: list[Event] = []
        self._end_ms = end_ms
        self._ids = ids

    def pause(self, ms: float) -> None:
        """Let time pass before the next event (at most ``MAX_PAUSE_MS`` count, see :meth:`add`)."""
        self.now += int(ms)

    def add(self, event_type: str, props: dict[str, Any] | None = None, context: dict[str, Any] | None = None) -> None:
        """Append an event at ``now``, at most ``MAX_PAUSE_MS`` after the previous one.

        Raises :class:`WindowClosed` past the window's end. Actions cap their loops well below
        ``MAX_BURST_EVENTS``; exceeding it is a bug in the model, not a longer session.
        """
        if self.events:
            self.now = min(self.now, self.events[-1]["ts"] + MAX_PAUSE_MS)
            if len(self.events) >= MAX_BURST_EVENTS:
                raise RuntimeError(f"a burst of {self.user_id} exceeds {MAX_BURST_EVENTS} events")
        if self.now >= self._end_ms:
            raise WindowClosed
        event: Event = {"event_id": self._ids.next(), "type": event_type, "user_id": self.user_id, "ts": self.now}
        if props:
            event["props"] = props
        if context:
            event["context"] = context
        self.events.append(event)


Action = Callable[..., None]  # fills the burst it is given as first argument


class Agenda:
    """One user's pending bursts, run in due order, each placed ``MIN_GAP_MS`` after the last.

    Placing a burst later than due keeps the order of all bursts, so whatever an action
    scheduled (a ticket reply after its ticket) still comes after what caused it.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, int, Action, tuple[Any, ...]]] = []
        self._numbers = count()  # ties in due time run in scheduling order

    def at(self, due_ms: float, action: Action, *args: Any) -> None:
        heapq.heappush(self._pending, (int(due_ms), next(self._numbers), action, args))

    def run(self, user_id: str, end_ms: int, ids: EventIds) -> Iterator[list[Event]]:
        """Yield the events of each non-empty burst in time order until the window ends."""
        last_ms: int | None = None
        try:
            while self._pending:
                due, _, action, args = heapq.heappop(self._pending)
                start = due if last_ms is None else max(due, last_ms + MIN_GAP_MS)
                if start >= end_ms:
                    return
                burst = Burst(user_id, start, end_ms, ids)
                try:
                    action(burst, *args)
                except WindowClosed:
                    self._pending.clear()
                if burst.events:
                    last_ms = burst.events[-1]["ts"]
                    yield burst.events
        finally:
            self._pending.clear()  # the actions refer back to their customer: free the cycle now
