"""Emission: the events as JSON lines in event-time order, plus a controlled share of bad input.

Each valid event meets one fate, drawn from its own seeded ``Random`` so that switching
imperfections on or off never changes the events themselves: emitted in place; emitted
late (placed up to ``late_max_minutes`` after its event time); emitted and resent within
minutes (the same bytes, so the same ``event_id``); or emitted in place next to an extra
malformed line derived from it. A line is never placed more than ``late_max_minutes``
after its own event time, so the stream never goes back further than that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from random import Random

import orjson

from producers.simulator.bursts import Event, EventIds
from producers.simulator.config import DAY, MINUTE, Imperfections

MALFORMED_KINDS = ("bad_json", "missing_field", "wrong_type", "future_timestamp")  # the contract's reason codes
REQUIRED_FIELDS = ("event_id", "type", "user_id", "ts")
FUTURE_MS = 5 * 365 * DAY


@dataclass
class EmissionCounts:
    """What the emitter did, for the ground truth."""

    lines: int = 0
    duplicates: int = 0
    late: int = 0
    malformed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MALFORMED_KINDS, 0))


class Emitter:
    """Collects every line with its place in the stream; :meth:`finish` sorts them once."""

    def __init__(self, imperfections: Imperfections, seed: int) -> None:
        self._rng = Random(f"{seed}/imperfections")
        self._bad_ids = EventIds(f"{seed}-bad-")
        self._late_below = imperfections.late_share
        self._duplicate_below = self._late_below + imperfections.duplicate_share
        self._malformed_below = self._duplicate_below + imperfections.malformed_share
        self._max_delay_ms = imperfections.late_max_minutes * MINUTE
        self._placed: list[tuple[int, int, bytes]] = []  # (place in event time, tie-breaker, line)
        self.counts = EmissionCounts()

    def add(self, events: Iterable[Event]) -> None:
        placed, rng, counts = self._placed, self._rng, self.counts
        for event in events:
            line = _encode(event)
            ts = event["ts"]
            fate = rng.random()
            if fate >= self._malformed_below:
                placed.append((ts, len(placed), line))
            elif fate < self._late_below:
                placed.append((ts + self._delay(), len(placed), line))
                counts.late += 1
            elif fate < self._duplicate_below:
                placed.append((ts, len(placed), line))
                placed.append((ts + self._delay(), len(placed), line))
                counts.duplicates += 1
            else:
                placed.append((ts, len(placed), line))
                kind, bad_line = self._malformed(event)
                placed.append((ts, len(placed), bad_line))
                counts.malformed[kind] += 1

    def finish(self) -> list[bytes]:
        """Every line in emission order (event time, ties in generation order)."""
        self._placed.sort()
        self.counts.lines = len(self._placed)
        return [line for _, _, line in self._placed]

    def _delay(self) -> int:
        """A few minutes: a fifth of the maximum up to the maximum."""
        return int(self._rng.uniform(0.2, 1.0) * self._max_delay_ms)

    def _malformed(self, event: Event) -> tuple[str, bytes]:
        """A broken copy of ``event`` under a fresh id, so it never collides with a valid event."""
        rng = self._rng
        kind = rng.choice(MALFORMED_KINDS)
        bad = {**event, "event_id": self._bad_ids.next()}
        if kind == "missing_field":
            del bad[rng.choice(REQUIRED_FIELDS)]
        elif kind == "wrong_type":
            bad[rng.choice(("event_id", "type", "user_id"))] = rng.randint(1, 999_999)
        elif kind == "future_timestamp":
            bad["ts"] = event["ts"] + FUTURE_MS
        line = _encode(bad)
        return kind, line[: len(line) // 2] if kind == "bad_json" else line


def _encode(event: Event) -> bytes:
    """The event's JSON, copied into a right-sized ``bytes``.

    orjson's own result keeps a much larger allocation alive behind it (about 4 KiB a line
    here); millions of them cost gigabytes and, through page faults, most of the run time.
    """
    return bytes(memoryview(orjson.dumps(event)))
