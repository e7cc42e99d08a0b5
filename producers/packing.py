"""Packing encoded events into per-partition Kafka records, and knowing whom a record settles.

Why: the stream jobs pay a fixed cost per Kafka record (about 270 µs in Faust), so every
producer packs events into one NDJSON record per partition (see :mod:`pulse.wire`), up to
``ProducerTuning.max_events_per_record`` events and ``max_record_bytes``. The HTTP collector
gets many small requests at once; packing each request on its own would still leave the
worker tiny records, so the collector packs the events of *concurrent* requests into the same
open records and answers each request only when every record holding one of its events is
confirmed by Kafka.

This module is that bookkeeping and nothing else: no Kafka, no asyncio, no clock of its own
(the caller passes ``now``, a monotonic time in seconds), so it is tested exactly.

- :class:`OpenRecords`: at most one open record per partition; a record is closed (to be
  produced) when the next event does not fit, when it is full, or once it has waited the
  linger since its first event. :class:`~producers.event_producer.EventProducer` batches
  with it too.
- :class:`RequestPacker`: the collector's :class:`OpenRecords` plus which requests each
  record carries and how many records and dead letters each request still waits for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import count
from typing import NamedTuple

from pulse.settings import ProducerTuning


@dataclass(eq=False)
class PackedRecord:
    """Encoded events bound for one Kafka record of one partition.

    Compared by identity: two records holding the same lines are still two records, each
    with its own delivery.
    """

    partition: int
    opened_at: float  # when its first event came in
    lines: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes of the value, counting one newline per line

    def fits(self, line: bytes, tuning: ProducerTuning) -> bool:
        """Whether ``line`` may join; an empty record takes any line, even one over the byte cap."""
        if not self.lines:
            return True
        return len(self.lines) < tuning.max_events_per_record and self.size + len(line) + 1 <= tuning.max_record_bytes

    def add(self, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line) + 1

    def value(self) -> bytes:
        """The Kafka record value: the lines as NDJSON."""
        return b"\n".join(self.lines)


class Placement(NamedTuple):
    """Where :meth:`OpenRecords.add` put a line, and the records that adding it closed."""

    record: PackedRecord  # holds the line; open, or the last of ``closed`` when the line filled it
    closed: list[PackedRecord]  # to be produced now, oldest first


class OpenRecords:
    """At most one open record per partition, closed when full or ``linger_s`` after its first event."""

    def __init__(self, tuning: ProducerTuning, linger_s: float) -> None:
        self._tuning = tuning
        self._linger_s = linger_s
        self._open: dict[int, PackedRecord] = {}

    def add(self, partition: int, line: bytes, now: float) -> Placement:
        """Append ``line`` to the partition's open record, opening one when there is none or it
        does not fit; a record that reaches ``max_events_per_record`` is closed at once."""
        closed: list[PackedRecord] = []
        record = self._open.get(partition)
        if record is None or not record.fits(line, self._tuning):
            if record is not None:
                closed.append(record)
            record = self._open[partition] = PackedRecord(partition, now)
        record.add(line)
        if len(record.lines) >= self._tuning.max_events_per_record:
            closed.append(self._open.pop(partition))
        return Placement(record, closed)

    def due(self, now: float) -> list[PackedRecord]:
        """Close and return the records whose first event came in ``linger_s`` or longer ago."""
        ripe = [p for p, record in self._open.items() if record.opened_at + self._linger_s <= now]
        return [self._open.pop(partition) for partition in ripe]

    def next_due(self) -> float | None:
        """When the oldest open record is due (the time :meth:`due` will return it), or None."""
        if not self._open:
            return None
        return min(record.opened_at for record in self._open.values()) + self._linger_s

    def drain(self) -> list[PackedRecord]:
        """Close and return every open record (at shutdown, or to flush)."""
        records = list(self._open.values())
        self._open.clear()
        return records


@dataclass(frozen=True)
class Settled:
    """A request's outcome: ``error`` is None when every record and dead letter of it is confirmed,
    else the first refusal (the request is answered 503 and retried whole by its client)."""

    request: int
    error: str | None


class RequestPacker:
    """Packs the events of many requests into shared per-partition records and settles each
    request once every record holding one of its events, and each of its dead letters, is
    confirmed, or as soon as one of them is refused.

    One request's events may span several records and partitions, and one record may carry
    the events of many requests. A request already settled by a refusal is not settled again
    when its other records come back. Dead letters are produced by the caller at once, one
    record each; the packer only counts them.
    """

    def __init__(self, tuning: ProducerTuning, linger_s: float) -> None:
        self._records = OpenRecords(tuning, linger_s)
        self._request_ids = count(1)
        self._carried: dict[PackedRecord, set[int]] = {}  # every unsettled record: the requests it carries
        self._waiting: dict[int, int] = {}  # every unsettled request: records and dead letters not yet confirmed

    def pack(self, lines: Iterable[tuple[int, bytes]], letters: int, now: float) -> tuple[int, list[PackedRecord]]:
        """Take one request's events as ``(partition, line)`` and the number of its dead letters.

        Returns the request's id and the records closed while packing it (full ones), which
        the caller produces now. Raises ValueError for a request with nothing to wait for.
        """
        request = next(self._request_ids)
        waiting = letters
        closed: list[PackedRecord] = []
        for partition, line in lines:
            placement = self._records.add(partition, line, now)
            carried = self._carried.setdefault(placement.record, set())
            if request not in carried:
                carried.add(request)
                waiting += 1
            closed.extend(placement.closed)
        if waiting == 0:
            raise ValueError("a request with neither events nor dead letters has nothing to wait for")
        self._waiting[request] = waiting
        return request, closed

    def due(self, now: float) -> list[PackedRecord]:
        """The open records to produce now (see :meth:`OpenRecords.due`)."""
        return self._records.due(now)

    def next_due(self) -> float | None:
        """When the next open record is due, or None when none is open."""
        return self._records.next_due()

    def drain(self) -> list[PackedRecord]:
        """Every open record, to produce now (at shutdown)."""
        return self._records.drain()

    def record_settled(self, record: PackedRecord, error: str | None) -> list[Settled]:
        """Kafka confirmed ``record`` (``error`` None) or refused it: the requests this settles."""
        carried = self._carried.pop(record, set())
        return [settled for request in sorted(carried) if (settled := self._count_down(request, error))]

    def letter_settled(self, request: int, error: str | None) -> list[Settled]:
        """Kafka confirmed or refused one of ``request``'s dead letters: the request, when this settles it."""
        settled = self._count_down(request, error)
        return [settled] if settled else []

    def _count_down(self, request: int, error: str | None) -> Settled | None:
        left = self._waiting.get(request)
        if left is None:  # settled before, by a refusal of another of its records
            return None
        if error is None and left > 1:
            self._waiting[request] = left - 1
            return None
        del self._waiting[request]
        return Settled(request, error)
