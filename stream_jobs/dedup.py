"""Which of a user's events were seen before: the state behind "a resent event never counts twice".

Per user we keep, for each recent ``event_id``, its 64-bit hash, its event time and the
offset of the record it first came in, packed as 24 bytes an id, so the state stays small
and cheap to write to a changelogged table.

Ids expire against the *partition's* watermark, not the user's own newest event: an id is
kept until the watermark is ``retention_ms`` past its event time (expired in batches, up to a
twenty-fourth of the retention later). By then any copy of it is
behind the watermark (too late for every job) however quiet the user was, and pruning no
longer depends on which of the user's events happened to arrive first. A per-user cap
bounds a user that floods; ClickHouse's ``ReplacingMergeTree`` still folds a duplicate the
state forgot.

Why the offset: a replayed record (its effects are in the state, its input offset was not
committed) must republish the events that were new *in that record* and no others; an id
first seen at that very offset was new there.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b

from pulse.contract import Event
from stream_jobs.job import Row

_unpack_int64 = struct.Struct("<q").unpack  # a little-endian signed 64-bit int, faster than int.from_bytes


@lru_cache(maxsize=1 << 13)
def id_hash(event_id: str) -> int:
    """A stable 64-bit hash of an event id (``hash()`` differs between processes); stored in the state.

    Cached: de-duplication and the jobs all key the same event by it within one record, and
    a lookup costs a third of a blake2b digest. The ids of the last 16 records (of 500 events)
    are enough: a larger cache made every new id slower than the digest it saved (a quarter
    more at 65,536 ids, from memory misses).
    """
    return _unpack_int64(blake2b(event_id.encode(), digest_size=8).digest())[0]


class SeenIds:
    """The recently seen event ids of one user: id hash -> (event time in ms, offset it first came in).

    The ids are also kept packed as stored (24 bytes an id, in admission order), so writing the
    state after each record copies one buffer instead of packing every id again; only expiry
    and the cap, which drop ids, pack anew.
    """

    __slots__ = ("_packed", "ids", "oldest")

    def __init__(self, packed: array | None = None) -> None:
        self._packed = array("q") if packed is None else packed
        times = self._packed[1::3]
        self.ids: dict[int, tuple[int, int]] = dict(zip(self._packed[0::3], zip(times, self._packed[2::3], strict=True), strict=True))
        self.oldest: int | None = min(times) if times else None  # the deadline is read for every touched user

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeenIds) and self.ids == other.ids

    def __repr__(self) -> str:
        return f"SeenIds({len(self.ids)} ids)"

    @classmethod
    def from_bytes(cls, data: bytes) -> SeenIds:
        packed = array("q")
        packed.frombytes(data)
        return cls(packed)

    def to_bytes(self) -> bytes:
        return self._packed.tobytes()

    def admit(self, key: int, ts: int, offset: int) -> bool:
        """Remember an id; False if it was seen before (a resend, or a repeat inside one record)."""
        if key in self.ids:
            return False
        self.ids[key] = (ts, offset)
        self._packed.extend((key, ts, offset))
        if self.oldest is None or ts < self.oldest:
            self.oldest = ts
        return True

    def first_offset(self, key: int) -> int | None:
        """The offset of the record an id first came in, if it is still remembered."""
        seen = self.ids.get(key)
        return None if seen is None else seen[1]

    def expire(self, horizon: int) -> None:
        """Forget ids older than ``horizon`` (event time)."""
        if self.oldest is not None and self.oldest < horizon:
            self._keep([(key, seen) for key, seen in self.ids.items() if seen[0] >= horizon])

    def cap(self, max_ids: int) -> None:
        """Keep the newest ``max_ids`` ids."""
        if len(self.ids) > max_ids:
            self._keep(sorted(self.ids.items(), key=lambda item: item[1][0])[-max_ids:])

    def _keep(self, items: list[tuple[int, tuple[int, int]]]) -> None:
        self.ids = dict(items)
        self._packed = array("q", [value for key, (ts, offset) in items for value in (key, ts, offset)])
        self.oldest = min((ts for ts, _ in self.ids.values()), default=None)


@dataclass(frozen=True)
class DedupSlice:
    """The seen ids as a slice of the user's state, with the timers and retention of any job.

    The runner admits events through :meth:`SeenIds.admit` before any job sees them; as a
    slice it only caps, expires and stores the ids. It publishes nothing.
    """

    retention_ms: int
    max_ids: int

    name = "seen"
    version = 1
    outputs = ()
    event_types = None  # caps the ids after every record

    def empty(self) -> SeenIds:
        return SeenIds()

    def decode(self, data: bytes, version: int) -> SeenIds:
        return SeenIds.from_bytes(data)

    def encode(self, state: SeenIds) -> bytes:
        return state.to_bytes()

    def is_empty(self, state: SeenIds) -> bool:
        return not state.ids

    def live(self, state: SeenIds) -> int:
        return len(state.ids)

    def on_events(self, user_id: str, state: SeenIds, events: Sequence[Event]) -> list[Row]:
        state.cap(self.max_ids)
        return []

    def deadline(self, state: SeenIds) -> int | None:
        """When the oldest id is a twenty-fourth of the retention past due: ids then expire in batches.

        Due exactly at the retention, each id would wake the user (and repack the ids) on
        its own, once per id; ids live at most that slack longer.
        """
        return None if state.oldest is None else state.oldest + self.retention_ms + self.retention_ms // 24

    def on_watermark(self, user_id: str, state: SeenIds, watermark: int) -> list[Row]:
        state.expire(watermark - self.retention_ms)
        return []

    def current_rows(self, user_id: str, state: SeenIds) -> list[Row]:
        return []

    def merge(self, user_id: str, state: SeenIds, other_id: str, other: SeenIds) -> list[Row]:
        """Remember the merged id's events too, so a resend under either id is dropped.

        Their offsets were of another partition: they take -1, which no replay here matches.
        """
        for key, (ts, _) in other.ids.items():
            state.admit(key, ts, -1)
        return []
