"""One user's state while a record is handled: the stored envelope, its slices decoded on demand.

Jobs only pay for the slices they touch: a slice is decoded the first time a job asks for
it, and re-encoded on write only if a job acted on it (took events or a watermark). Its
deadline and live count come from its header until then: a slice decoded only to be read
(republished on a replay, say) is stored again as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pulse.contract import Event
from stream_jobs.envelope import Envelope, RawSlice
from stream_jobs.job import Job


class UserState:
    """A user's envelope plus the slices decoded so far, and what this record brought them."""

    __slots__ = (
        "_acted",
        "_deadlines",
        "changed",
        "decoded",
        "envelope",
        "key",
        "live_before",
        "on_time",
        "replayed",
        "scheduled",
        "user_id",
    )

    def __init__(self, user_id: str, key: bytes, envelope: Envelope, slices: Sequence[Job[Any]],
                 decoded: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.user_id = user_id
        self.key = key
        self.envelope = envelope
        self.decoded: dict[str, Any] = {} if decoded is None else decoded  # slices decoded from the envelope
        self.on_time: list[tuple[int, int, Event, bytes]] = []  # new on-time events (event time, id hash, event, line)
        self.replayed: set[int] | None = None  # for a replayed record: id hashes republished so far
        self.changed = False
        self.scheduled = False  # its timer holds its current deadline
        self._acted: set[str] = set()  # slices a job acted on, by name: re-encoded on write
        # each slice's deadline as known: from its header, or from its job once asked after the job acted
        # (until it acts again)
        self._deadlines: dict[str, int | None]
        self.live_before: dict[str, int]  # live count per slice as stored
        if envelope.legacy:  # no headers to trust: decode everything once, and write it in the current format
            self.live_before = {slice_.name: slice_.live(self.get(slice_)) for slice_ in slices}
            self._acted = set(self.live_before)
            self._deadlines = {}
        else:
            self.live_before = {name: raw.live or 0 for name, raw in envelope.slices.items()}
            self._deadlines = {name: raw.deadline for name, raw in envelope.slices.items()}

    def get(self, slice_: Job[Any]) -> Any:
        """The decoded slice (empty if the user has none yet)."""
        state = self.decoded.get(slice_.name)
        if state is None:
            raw = self.envelope.slices.get(slice_.name)
            state = slice_.empty() if raw is None else slice_.decode(raw.data, raw.version)
            self.decoded[slice_.name] = state
        return state

    def acted(self, slice_: Job[Any]) -> None:
        """A job took events or a watermark into the slice: its deadline may have moved, and it is re-encoded."""
        self._acted.add(slice_.name)
        self._deadlines.pop(slice_.name, None)

    def slice_deadline(self, slice_: Job[Any]) -> int | None:
        """The slice's deadline: from its job once it acted (asked once until it acts again), else its header."""
        name = slice_.name
        known = self._deadlines
        if name in known:
            return known[name]
        if name not in self._acted:
            return None  # the user has no such slice
        deadline = known[name] = slice_.deadline(self.decoded[name])
        return deadline

    def due_slices(self, slices: Sequence[Job[Any]], watermark: int) -> list[Job[Any]]:
        """The slices whose deadline the watermark has passed."""
        deadlines = ((slice_, self.slice_deadline(slice_)) for slice_ in slices)
        return [slice_ for slice_, deadline in deadlines if deadline is not None and deadline < watermark]

    def deadline(self, slices: Sequence[Job[Any]]) -> int | None:
        """The earliest deadline over every slice."""
        earliest = None
        known = self._deadlines
        for slice_ in slices:  # the deadlines as known inline: a user's are asked about a dozen times a record
            deadline = known[slice_.name] if slice_.name in known else self.slice_deadline(slice_)
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        return earliest

    def encode(self, slices: Sequence[Job[Any]]) -> bytes | None:
        """The value to store: slices a job acted on re-encoded, empty ones dropped; None when nothing of ours is left."""
        stored = self.envelope.slices
        for slice_ in slices:
            name = slice_.name
            if name not in self._acted:
                continue
            state = self.decoded[name]
            if slice_.is_empty(state):
                stored.pop(name, None)
            else:
                stored[name] = RawSlice(slice_.version, slice_.live(state), self.slice_deadline(slice_), slice_.encode(state))
        for slice_ in slices:
            if slice_.name in stored:
                return self.envelope.to_bytes()
        return None

    def live_after(self) -> dict[str, int]:
        """Each slice's live value as it will be stored (call after :meth:`encode`); a dropped slice is 0.

        Only slices a job acted on can have changed: the others keep the value of their header.
        """
        after = dict(self.live_before)
        stored = self.envelope.slices
        for name in self._acted:
            raw = stored.get(name)
            if raw is not None:
                after[name] = raw.live or 0
            elif name in after:
                after[name] = 0
        return after
