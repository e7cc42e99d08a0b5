"""The stream jobs' work on one Kafka record, with state behind a plain mapping (no Faust).

Per record: validate every event (dead-lettering the bad ones), drop resent duplicates,
place on-time events into sessions and close the sessions the watermark has passed. The
result says what to publish (valid events, session rows, dead letters) and what to write
to the state store afterwards: the caller publishes first and writes state only once the
output is durable, so a crash at any point either replays the record in full or finds its
effects already in the state (see :mod:`stream_jobs.dedup` for how replays are told apart).

State is keyed by partition and user (``u<partition>|<user>``), one value per user
(:class:`UserState`), plus one clock per partition (``c<partition>``), written last.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from pulse.contract import Event
from pulse.dead_letter import DeadLetter
from pulse.settings import Settings
from stream_jobs.dedup import drop_seen
from stream_jobs.sessionizer import SessionRules, add_events, close_deadline, close_expired, session_rows
from stream_jobs.user_state import UserState
from stream_jobs.validation import check_record
from stream_jobs.watermark import CloseSchedule, PartitionClock


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def items(self) -> Iterable[tuple[bytes, bytes]]: ...


@dataclass
class Output:
    """What one record (or tick) produced."""

    events: list[dict[str, Any]] = field(default_factory=list)  # valid, normalised, to the valid-events topic
    sessions: list[dict[str, Any]] = field(default_factory=list)  # session rows, to the sessions topic
    dead_letters: list[DeadLetter] = field(default_factory=list)
    writes: dict[bytes, bytes] = field(default_factory=dict)  # state, in write order (the clock last)
    events_in: int = 0
    duplicates: int = 0
    too_late: int = 0
    closed_durations_ms: list[int] = field(default_factory=list)


def user_key(partition: int, user_id: str) -> bytes:
    return f"u{partition}|{user_id}".encode()


def clock_key(partition: int) -> bytes:
    return f"c{partition}".encode()


class EventProcessor:
    """Runs validation, de-duplication and sessions over records of the events topic."""

    def __init__(self, settings: Settings, store: StateReader) -> None:
        self._settings = settings
        self._store = store
        self._retention_ms = int(settings.dedup.retention_hours * 3_600_000)
        self._max_ids = settings.dedup.max_ids_per_user
        tuning = settings.sessions
        self._rules = SessionRules(int(tuning.timeout_minutes * 60_000), int(tuning.max_length_hours * 3_600_000))
        self._lateness_ms = int(tuning.allowed_lateness_minutes * 60_000)
        self._idle_ms = int(tuning.idle_close_seconds * 1000)
        self._sessions_on = tuning.enabled
        self._clocks: dict[int, PartitionClock] = {}
        self._schedules: dict[int, CloseSchedule] = {}
        self._open: dict[int, int] = {}  # open sessions per partition

    def forget(self) -> None:
        """Drop cached clocks and schedules (partitions were reassigned); rebuilt from state on demand."""
        self._clocks.clear()
        self._schedules.clear()
        self._open.clear()

    def open_sessions(self) -> int:
        """Open sessions in the partitions this processor has seen since it last forgot."""
        return sum(self._open.values())

    def process(self, value: bytes | None, topic: str, partition: int, offset: int) -> Output:
        """One record of the events topic."""
        source = f"{topic}/{partition}@{offset}"
        checked = check_record(value, source, self._settings.not_after_ms())
        out = Output(dead_letters=checked.dead_letters, events_in=checked.events_in)
        clock = self._clock(partition)
        watermark = clock.watermark(self._lateness_ms)
        wall_ms = time.time_ns() // 1_000_000
        for user_id, events in checked.by_user.items():
            key = user_key(partition, user_id)
            state = UserState.from_bytes(self._read(out, key))
            sorted_out = drop_seen(state.seen, events, offset, self._retention_ms, self._max_ids)
            state.seen = sorted_out.seen
            out.duplicates += len(sorted_out.duplicates)
            out.events.extend(e.to_dict() for e in sorted_out.new + sorted_out.replayed)
            if not self._sessions_on:
                out.writes[key] = state.to_bytes()
                continue
            on_time = [e for e in sorted_out.new if watermark is None or e.ts >= watermark]
            for late in (e for e in sorted_out.new if watermark is not None and e.ts < watermark):
                out.dead_letters.append(self._too_late(late, watermark, source))
                out.too_late += 1
            opened_before = len(state.sessions.open)
            retracted = add_events(state.sessions, on_time, self._rules)
            self._open[partition] += len(state.sessions.open) - opened_before
            if on_time or sorted_out.replayed:  # a replay republishes: its first publication may be lost
                out.sessions += session_rows(user_id, state.sessions, state.sessions.open, False, retracted)
            for event in on_time:
                clock.observe(event.ts, wall_ms)
            out.writes[key] = state.to_bytes()
            self._schedule(partition, user_id, state)
        self._close_due(partition, clock, out)
        return out

    def tick(self, partition: int, wall_ms: int) -> Output:
        """A wall-clock tick: on a quiet partition, event time follows the clock and sessions close."""
        out = Output()
        clock = self._clock(partition)
        if clock.tick(wall_ms, self._idle_ms):
            self._close_due(partition, clock, out)
        return out

    # --- internals --------------------------------------------------------------------

    def _close_due(self, partition: int, clock: PartitionClock, out: Output) -> None:
        watermark = clock.watermark(self._lateness_ms)
        if watermark is not None:
            for user_id in self._schedules[partition].due(watermark):
                key = user_key(partition, user_id)
                state = UserState.from_bytes(self._read(out, key))
                closed = close_expired(state.sessions, watermark, self._rules)
                if closed:
                    out.sessions += session_rows(user_id, state.sessions, closed, True)
                    out.closed_durations_ms += [s.end - s.start for s in closed]
                    self._open[partition] -= len(closed)
                    out.writes[key] = state.to_bytes()
                self._schedule(partition, user_id, state)
        out.writes[clock_key(partition)] = clock.to_bytes()

    def _too_late(self, event: Event, watermark: int, source: str) -> DeadLetter:
        message = f"event time {event.ts} is behind the watermark {watermark} by more than the allowed lateness"
        return DeadLetter.failed(orjson.dumps(event.to_dict()), "too_late", message, source, f"{source}#late:{event.event_id}")

    def _schedule(self, partition: int, user_id: str, state: UserState) -> None:
        deadline = close_deadline(state.sessions, self._rules)
        if deadline is not None:
            self._schedules[partition].schedule(deadline, user_id)

    def _clock(self, partition: int) -> PartitionClock:
        if partition not in self._clocks:
            self._clocks[partition] = PartitionClock.from_bytes(self._store.get(clock_key(partition)))
            self._schedules[partition] = schedule = CloseSchedule()
            self._open[partition] = 0
            prefix = f"u{partition}|".encode()
            for key, value in self._store.items():
                if key.startswith(prefix):
                    sessions = UserState.from_bytes(value).sessions
                    self._open[partition] += len(sessions.open)
                    deadline = close_deadline(sessions, self._rules)
                    if deadline is not None:
                        schedule.schedule(deadline, key[len(prefix) :].decode())
        return self._clocks[partition]

    def _read(self, out: Output, key: bytes) -> bytes | None:
        return out.writes[key] if key in out.writes else self._store.get(key)


def chunks(lines: list[bytes], max_bytes: int) -> Iterator[list[bytes]]:
    """Split encoded lines into groups of at most ``max_bytes`` (a single longer line stands alone)."""
    group: list[bytes] = []
    size = 0
    for line in lines:
        if group and size + len(line) + 1 > max_bytes:
            yield group
            group, size = [], 0
        group.append(line)
        size += len(line) + 1
    if group:
        yield group
