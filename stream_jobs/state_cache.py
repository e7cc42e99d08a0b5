"""Users' decoded state kept between records, so a busy user's slices are not decoded for every record.

Live traffic comes in small records: a user active in a session appears in record after
record, and decoding their slices (seen ids, open sessions) each time cost more than the
events themselves. The store stays the truth: an entry is the decoded form of exactly what
was last written for the user (put after every write, dropped with a delete), so reading it
instead of the store changes nothing but the cost. Partitions handed away drop their entries,
and a record whose processing failed drops the users it touched, whose decoded state may be
half changed while the store was not written.

Bounded by a number of users, oldest written first out; memory per active user therefore
does not grow with it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from stream_jobs.envelope import Envelope

Entry = tuple[Envelope, dict[str, Any]]  # the envelope as written, and the slices decoded from it by name


class StateCache:
    """Decoded state of the most recently written users, by state key."""

    def __init__(self, max_users: int) -> None:
        self._max_users = max_users
        # ordered, not a plain dict: evicting a dict's first key scans the slots its earlier evictions
        # emptied, which cost more than every other step of a new user's first event
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Entry | None:
        return self._entries.get(key)

    def put(self, key: bytes, envelope: Envelope, decoded: dict[str, Any]) -> None:
        """Remember what was just written for ``key``, as the newest entry."""
        entries = self._entries
        entries[key] = (envelope, decoded)
        entries.move_to_end(key)
        while len(entries) > self._max_users:
            entries.popitem(last=False)

    def drop(self, keys: Any) -> None:
        for key in keys:
            self._entries.pop(key, None)

    def drop_prefix(self, prefix: bytes) -> None:
        """Forget every key starting with ``prefix`` (a partition's users)."""
        self.drop([key for key in self._entries if key.startswith(prefix)])
