"""The funnels job: per user, the steps of each funnel reached (:mod:`stream_jobs.funnels`) as a :class:`Job`.

Slice ``funnels``: per funnel with anything to keep, the definition's fingerprint, the
attempt count, the latest event time processed, the open attempts and the waiting events,
as JSON keyed by funnel name. A funnel removed from the definitions, or defined anew under
the same name, loses its state on read: its waiting events were matched against steps that
no longer exist.

New events only wait (:meth:`FunnelsJob.on_events` publishes nothing): rows come from
:meth:`FunnelsJob.on_watermark`, once the watermark passed the events, so they are the same
for any arrival order. The deadline is the earliest of a waiting event, an open attempt's
window end (to drop it) and, with neither, the end of the retention (to drop the slice).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from pulse.contract import Event
from pulse.outputs import FUNNEL_STEPS
from stream_jobs.funnels import Funnel, FunnelIndex, FunnelState
from stream_jobs.job import Row

UserFunnels = dict[str, FunnelState]  # by funnel name; a funnel with nothing to keep is absent


class FunnelsJob:
    """Funnel steps per user, after ClickHouse's ``windowFunnel``; ``retention_ms`` of silence forgets a user's counts."""

    name = "funnels"
    version = 1
    outputs = (FUNNEL_STEPS,)

    def __init__(self, funnels: Sequence[Funnel], retention_ms: int) -> None:
        self.funnels = {funnel.name: funnel for funnel in funnels}
        self.retention_ms = retention_ms
        self._index = FunnelIndex(funnels)
        self.event_types = self._index.event_types  # a record with none of these leaves the slice alone

    def empty(self) -> UserFunnels:
        return {}

    def decode(self, data: bytes, version: int) -> UserFunnels:
        state: UserFunnels = {}
        for name, stored in orjson.loads(data).items():
            funnel = self.funnels.get(name)
            decoded = None if funnel is None else FunnelState.from_json(stored, funnel)
            if decoded is not None:
                state[name] = decoded
        return state

    def encode(self, state: UserFunnels) -> bytes:
        return orjson.dumps({name: progress.to_json(self.funnels[name]) for name, progress in state.items()})

    def is_empty(self, state: UserFunnels) -> bool:
        return not state

    def live(self, state: UserFunnels) -> int:
        """Attempts in progress."""
        return sum(len(progress.open) for progress in state.values())

    def on_events(self, user_id: str, state: UserFunnels, events: Sequence[Event]) -> list[Row]:
        for event in events:
            for name, mask in self._index.masks(event).items():
                progress = state.get(name)
                if progress is None:
                    progress = state[name] = FunnelState()
                progress.pending.append((event.ts, mask, event.event_id))
        return []

    def deadline(self, state: UserFunnels) -> int | None:
        deadlines = [progress.deadline(self.funnels[name], self.retention_ms) for name, progress in state.items()]
        return min((d for d in deadlines if d is not None), default=None)

    def on_watermark(self, user_id: str, state: UserFunnels, watermark: int) -> list[Row]:
        rows: list[dict[str, Any]] = []
        for name, progress in list(state.items()):
            funnel = self.funnels[name]
            rows += progress.advance(funnel, user_id, watermark, self.retention_ms)
            if progress.spent(funnel, watermark, self.retention_ms):
                del state[name]
        return [Row(FUNNEL_STEPS, row) for row in rows]

    def current_rows(self, user_id: str, state: UserFunnels) -> list[Row]:
        return [Row(FUNNEL_STEPS, row) for name, progress in state.items()
                for row in progress.current_rows(self.funnels[name], user_id)]  # fmt: skip

    def merge(self, user_id: str, state: UserFunnels, other_id: str, other: UserFunnels) -> list[Row]:
        """Funnel by funnel: the merged id's waiting events and open attempts join the person's.

        An attempt the merged id entered goes on under the person: its later steps are the
        person's rows, its earlier ones stay in the merged id's name (``person_id`` joins them).
        """
        for name, theirs in other.items():
            ours = state.get(name)
            if ours is None:
                state[name] = theirs
            else:
                ours.absorb(theirs)
        return []
