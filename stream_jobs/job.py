"""The shape of a stream job: pure logic over one user's slice of state, run by :mod:`stream_jobs.runner`.

A job knows nothing of Faust, Kafka or ClickHouse. It declares

- its **state slice**: a name, a codec with a version (``encode``/``decode``, the decoder
  upgrades every older version it ever wrote), what an empty slice is and when a slice is
  empty enough to drop (so a user whose slices are all empty leaves the table);
- what it does with a user's **new events**, on time and in event-time order;
- its **deadline**: the event time at which it must hear of the watermark again without a
  new event from the user (a session to close, ids to expire, a user to call churned), and
  what it does when the watermark passes it;
- its **outputs** (:class:`pulse.outputs.OutputSpec`) and, for a replayed record, the rows
  that describe its current state, so whatever the first attempt published is republished;
- how it takes in the slice of an id merged into the user (identity stitching).

The runner decodes and validates a record once, drops resent events, judges lateness, feeds
every job and writes one state value per user per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from pulse.contract import Event
from pulse.outputs import OutputSpec

S = TypeVar("S")


class Row(NamedTuple):
    """One row a job publishes to one of its outputs (a named tuple: one is built per row, cheaply)."""

    output: OutputSpec
    values: dict[str, Any]


class Job(Protocol, Generic[S]):
    """A pure stream job over a per-user state slice of type ``S``."""

    name: str  # the slice's name in the user's state envelope; never reused for another meaning
    version: int  # the slice format ``encode`` writes
    outputs: tuple[OutputSpec, ...]
    # the event types that can change the slice: for a record bringing a user none of them, the runner
    # neither calls on_events nor decodes the slice; None: every record of the user, even with no new event
    event_types: frozenset[str] | None

    def empty(self) -> S:
        """The slice of a user the job has not seen."""
        ...

    def decode(self, data: bytes, version: int) -> S:
        """A slice from bytes written by ``encode`` of this or any earlier version."""
        ...

    def encode(self, state: S) -> bytes: ...

    def is_empty(self, state: S) -> bool:
        """Nothing left worth keeping: the slice is dropped (and the user with it when all are)."""
        ...

    def live(self, state: S) -> int:
        """A small non-negative number for gauges: what the slice holds live (open sessions, ...).

        The runner keeps, per slice, how many users hold each value, rebuilt from the slice
        headers after an assignment: the sum gives a count of things (open sessions), the users
        per value a distribution (users by churn tier). 0 counts nowhere.
        """
        ...

    def on_events(self, user_id: str, state: S, events: Sequence[Event]) -> list[Row]:
        """Take in a user's new on-time events of one record, sorted by event time."""
        ...

    def deadline(self, state: S) -> int | None:
        """The event time the watermark must pass for :meth:`on_watermark` to be due; None for none."""
        ...

    def on_watermark(self, user_id: str, state: S, watermark: int) -> list[Row]:
        """The watermark passed the slice's deadline: close, expire or judge what is due."""
        ...

    def current_rows(self, user_id: str, state: S) -> list[Row]:
        """Rows describing the slice now, republished for a replayed record."""
        ...

    def merge(self, user_id: str, state: S, other_id: str, other: S) -> list[Row]:
        """Take in the slice of ``other_id``, an id merged into this person (:mod:`stream_jobs.identity`).

        Rows published for ``other_id`` stay in its name (BI tools see them through
        ``person_id``), unless the merge changes what they describe: then they are retracted.
        """
        ...
