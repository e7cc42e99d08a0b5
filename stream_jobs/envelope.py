"""One user's state as one table value: a versioned envelope with one slice per job.

One value per user means one table write (one changelog record) per user per record, and
every job's state moves together: a replayed record finds all of its effects in the state
or none.

Layout (little-endian)::

    0xF5, format version (1)     magic: odd, so never the length prefix of the old layout
    applied offset   int64       the last input offset whose events are in the state
    slice count      uint8, then per slice:
        uint8 name length, name, uint16 version, uint32 live count, int64 deadline (-1: none),
        uint32 data length, data

Each slice's deadline and live count sit in its header, so a restarted worker rebuilds its
timers and gauges by reading headers, and a timer looks only at the slices that are due:
slices are decoded lazily, by the jobs that need them. A slice whose name no job claims
(written by a newer worker, or by a job since removed) is carried over unchanged; it does
not keep a user whose other slices are all empty from being deleted.

Before the envelope, a value was ``uint32 length of the packed seen ids``, the ids, then the
sessions as JSON; :func:`decode_envelope` still reads it (as slices ``seen`` and
``sessions`` version 1), so state written by that version survives an upgrade.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from pulse.errors import PulseError

MAGIC = 0xF5
FORMAT_VERSION = 1
NO_DEADLINE = -1
_HEADER = struct.Struct("<BBqB")  # magic, format version, applied offset, slice count
_SLICE = struct.Struct("<HIqI")  # version, live count, deadline, data length (after the name)


class StateFormatError(PulseError):
    """A state value this worker cannot read (a newer format, or damaged bytes)."""


@dataclass(slots=True)
class RawSlice:
    """A slice as stored: format version, live count, deadline and bytes (``None`` fields: not known yet)."""

    version: int
    live: int | None
    deadline: int | None
    data: bytes


@dataclass
class Envelope:
    """A user's stored state, slices still encoded."""

    applied_offset: int = -1
    slices: dict[str, RawSlice] = field(default_factory=dict)
    legacy: bool = False  # read from the pre-envelope layout: deadlines and live counts are unknown

    def to_bytes(self) -> bytes:
        parts = [_HEADER.pack(MAGIC, FORMAT_VERSION, self.applied_offset, len(self.slices))]
        for name, raw in self.slices.items():
            deadline = NO_DEADLINE if raw.deadline is None else raw.deadline
            parts += [_name_field(name), _SLICE.pack(raw.version, raw.live or 0, deadline, len(raw.data)), raw.data]
        return b"".join(parts)


@lru_cache(maxsize=64)
def _name_field(name: str) -> bytes:
    """A slice name as its header stores it, length first: the same few names in every value written."""
    encoded = name.encode()
    return bytes((len(encoded),)) + encoded


def decode_envelope(value: bytes | None) -> Envelope:
    """The envelope in ``value``, also from the layout written before envelopes existed."""
    if not value:
        return Envelope()
    if value[0] != MAGIC:
        return _legacy(value)
    slices = {name: RawSlice(version, live, deadline, value[start : start + length])
              for name, version, live, deadline, start, length in _walk(value)}  # fmt: skip
    return Envelope(_applied_offset(value), slices)


def slice_headers(value: bytes) -> list[tuple[str, int, int | None]] | None:
    """Each slice's name, live count and deadline, read from its header alone (no data copied).

    What a timer rebuild needs of every user: None for the layout before envelopes, which has
    no headers (decode it whole).
    """
    if not value or value[0] != MAGIC:
        return None
    return [(name, live, deadline) for name, _, live, deadline, _, _ in _walk(value)]


def _applied_offset(value: bytes) -> int:
    return int(_HEADER.unpack_from(value)[2])


def _walk(value: bytes) -> Iterator[tuple[str, int, int, int | None, int, int]]:
    """Each slice's name, version, live count, deadline, and where its data starts and how long it is."""
    try:
        _, version, _, count = _HEADER.unpack_from(value)
        if version != FORMAT_VERSION:
            raise StateFormatError(f"state envelope format {version} is newer than this worker's ({FORMAT_VERSION})")
        position = _HEADER.size
        for _ in range(count):
            size = value[position]
            name = value[position + 1 : position + 1 + size].decode()
            position += 1 + size
            slice_version, live, deadline, length = _SLICE.unpack_from(value, position)
            position += _SLICE.size
            if position + length > len(value):
                raise StateFormatError(f"damaged state value: slice {name!r} is cut short")
            yield name, slice_version, live, None if deadline == NO_DEADLINE else deadline, position, length
            position += length
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise StateFormatError(f"damaged state value ({exc})") from exc


def _legacy(value: bytes) -> Envelope:
    """The pre-envelope layout: packed seen ids behind a length, then the sessions JSON.

    Its applied offset is unknown; the newest offset among the seen ids (24 bytes each, the
    third int64) is the last record known to be in the state. Deadlines and live counts are
    left unknown for the runner to compute by decoding.
    """
    size = int.from_bytes(value[:4], "little")
    seen = value[4 : 4 + size]
    offsets = struct.unpack_from(f"<{size // 8}q", seen)[2::3] if size else ()
    slices = {"seen": RawSlice(1, None, None, seen), "sessions": RawSlice(1, None, None, value[4 + size :])}
    return Envelope(max(offsets, default=-1), slices, legacy=True)
