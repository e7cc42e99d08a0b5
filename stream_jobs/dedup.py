"""Which of a user's events were seen before: the state behind "a resent event never counts twice".

Per user we keep, for each recent ``event_id``, its 64-bit hash, its event time and the
offset of the record it first came in, packed as 24 bytes an id, so the state stays small
and cheap to write to a changelogged table. Ids older than the retention (in event time,
measured from the newest event of the user) and beyond the per-user cap are forgotten;
ClickHouse's ``ReplacingMergeTree`` still folds a duplicate that arrives later than that.

Why the offset: without Kafka transactions the table's changelog can reach Kafka before
the job's output does. If the worker dies in between, the record is read again after the
restart and finds its own ids already "seen". An id first seen *at this very offset* is
therefore a replay, not a resend, and is emitted again (downstream folds the repeat);
only an id first seen in another record is a duplicate.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b

from pulse.contract import Event


def id_hash(event_id: str) -> int:
    """A stable 64-bit hash of an event id (``hash()`` differs between processes)."""
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest(), "little", signed=True)


@dataclass(frozen=True)
class SeenIds:
    """The recently seen event ids of one user: id hash -> (event time in ms, first offset)."""

    ids: dict[int, tuple[int, int]]

    @classmethod
    def empty(cls) -> SeenIds:
        return cls({})

    @classmethod
    def from_bytes(cls, data: bytes | None) -> SeenIds:
        if not data:
            return cls.empty()
        packed = array("q")
        packed.frombytes(data)
        return cls({key: (ts, offset) for key, ts, offset in zip(packed[0::3], packed[1::3], packed[2::3], strict=True)})

    def to_bytes(self) -> bytes:
        packed = array("q")
        for key, (ts, offset) in self.ids.items():
            packed.extend((key, ts, offset))
        return packed.tobytes()


@dataclass(frozen=True)
class Sorted:
    """One user's events of one record, sorted out by :func:`drop_seen`."""

    seen: SeenIds  # the new state
    new: list[Event]  # never seen: emit and count
    replayed: list[Event]  # seen first in this very record: emit again, but the state already counts them
    duplicates: list[Event]  # resent: drop


def drop_seen(seen: SeenIds, events: Iterable[Event], offset: int, retention_ms: int, max_ids: int) -> Sorted:
    """Sort one user's events of the record at ``offset`` into new, replayed and duplicates.

    Duplicates inside the record itself are caught too: the first occurrence wins.
    """
    ids = dict(seen.ids)
    emitted: set[int] = set()
    new: list[Event] = []
    replayed: list[Event] = []
    duplicates: list[Event] = []
    for event in events:
        key = id_hash(event.event_id)
        first = ids.get(key)
        if key in emitted or (first is not None and first[1] != offset):
            duplicates.append(event)
            continue
        emitted.add(key)
        if first is None:
            ids[key] = (event.ts, offset)
            new.append(event)
        else:
            replayed.append(event)
    return Sorted(SeenIds(_prune(ids, retention_ms, max_ids)), new, replayed, duplicates)


def _prune(ids: dict[int, tuple[int, int]], retention_ms: int, max_ids: int) -> dict[int, tuple[int, int]]:
    if not ids:
        return ids
    horizon = max(ts for ts, _ in ids.values()) - retention_ms
    kept = {key: seen for key, seen in ids.items() if seen[0] >= horizon}
    if len(kept) > max_ids:
        kept = dict(sorted(kept.items(), key=lambda item: item[1][0])[-max_ids:])
    return kept
