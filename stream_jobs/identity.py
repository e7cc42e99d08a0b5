"""Identity stitching: which ids are one person, as pure logic free of Faust and Kafka.

**Ids.** An event's ``user_id`` is the id its state is kept under (and its partition key).
A Segment-style call from a visitor not yet known carries only an anonymous id, which the
collector puts in ``user_id`` and in ``context.anonymous_id``: such an event is
*anonymous*. Once the product knows who the visitor is, calls carry ``userId`` (now the
``user_id``) beside the same ``anonymousId``; an identify says so explicitly, an alias names
an earlier id in ``props.previous_id``. Those other ids are the ids the event *claims*.

**People.** A person is one identified id plus every anonymous id merged into it. The
person's state (sessions, funnels, churn, seen ids) lives under the identified id, in its
partition; an anonymous id merged into it keeps only a link (:attr:`Identity.person`), so
its late events are forwarded to the person. Two identified ids are never merged (an alias
between two known users, a shared computer): the claim is refused and counted, as it is
when the claimed id is a placeholder a buggy client sent (``null``, ``undefined``, ``0``...).

**The protocol** (driven by :class:`stream_jobs.runner.JobRunner`, carried as records of the
events topic itself so it is ordered with the events and survives a kill like them):

1. The person's partition sees an event claiming id X: it asks X's partition to merge X
   into the person (a *merge request*, keyed by X), and parks the person's events from
   then on, so no job sees the person's events before what X brings.
2. X's partition answers (:func:`answer`): it hands X's slices over (a *handoff*, keyed by
   the person) and keeps the link, or refuses.
3. The person's partition merges each slice into its own (each job's ``merge``), then lets
   the parked events through, in event-time order.

Every step is one record in, its effects published before its state is written: a replayed
step finds its state written (nothing to do) or not (done again, and the answer to a repeated
request is ``already``, which the person ignores, as it ignores any answer it no longer waits
for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pulse.contract import Event
from pulse.outputs import PERSON_IDS
from stream_jobs.job import Row

IDENTITY_SLICE = "identity"
DAY_MS = 86_400_000

MERGED = "merged"
ALREADY = "already"  # the id is merged into this person already: a repeated request
# refusals, the reason label of pulse_identity_merges_refused_total
PLACEHOLDER = "placeholder"
BOTH_IDENTIFIED = "both_identified"
MERGED_ELSEWHERE = "merged_elsewhere"
FORGOTTEN = "forgotten"  # the id was erased (pulse forget): it merges into nobody


def is_anonymous(event: Event) -> bool:
    """Whether the event's user is only known by an anonymous id."""
    return event.context.get("anonymous_id") == event.user_id


def claimed_ids(event: Event) -> list[str]:
    """The other ids the event says are its user's: the anonymous id beside a user id, an alias's previous id."""
    claimed = []
    for other in (event.context.get("anonymous_id"), event.props.get("previous_id") if event.type == "alias" else None):
        if isinstance(other, str) and other != event.user_id and other not in claimed:
            claimed.append(other)
    return claimed


@dataclass(slots=True)
class Identity:
    """What one id's state knows of who it is.

    An id without this slice is an identified user with nothing merged (every user of the
    native API): the slice costs nothing until ids are linked.
    """

    anonymous: bool = False  # every event of the id was anonymous: it may be merged into a person
    person: str | None = None  # merged into this person: its events are forwarded there
    linked: list[str] = field(default_factory=list)  # ids merged into this person
    refused: list[str] = field(default_factory=list)  # ids claimed and refused: not asked again
    awaiting: list[str] = field(default_factory=list)  # ids asked to merge, not answered yet
    parked: list[bytes] = field(default_factory=list)  # event lines held until every answer is in
    last_day: int = 0  # UTC day of the latest event: the slice outlives it by the retention

    def to_json(self) -> list[Any]:
        return [self.anonymous, self.person, self.linked, self.refused, self.awaiting,
                [line.decode() for line in self.parked], self.last_day]  # fmt: skip

    @classmethod
    def from_json(cls, data: list[Any]) -> Identity:
        anonymous, person, linked, refused, awaiting, parked, last_day = data
        return cls(anonymous, person, linked, refused, awaiting, [line.encode() for line in parked], last_day)

    def saw(self, event: Event, new_id: bool) -> bool:
        """Take note of one of the id's events (``new_id``: the id held no state before); whether anything changed.

        An id whose first event was anonymous is anonymous until an event names it as a user's
        own id; the day of the latest event is kept only while the slice holds something.
        """
        anonymous = is_anonymous(event)
        changed = False
        if anonymous and new_id and not self.anonymous:
            self.anonymous = changed = True
        elif not anonymous and self.anonymous:
            self.anonymous, changed = False, True
        day = event.ts // DAY_MS
        if day > self.last_day and (changed or self.holds_anything):
            self.last_day, changed = day, True
        return changed

    @property
    def holds_anything(self) -> bool:
        return bool(self.anonymous or self.person or self.linked or self.refused or self.awaiting or self.parked)


def answer(identity: Identity | None, has_state: bool, person: str) -> str:
    """Whether the id of ``identity`` may merge into ``person``: :data:`MERGED`, :data:`ALREADY` or a refusal.

    ``has_state``: the id holds state. An id never seen (its events may still be on their way)
    merges; one seen only anonymously merges; one seen as a user's own id does not.
    """
    if identity is not None and identity.person is not None:
        return ALREADY if identity.person == person else MERGED_ELSEWHERE
    if has_state and not (identity is not None and identity.anonymous):
        return BOTH_IDENTIFIED
    return MERGED


def person_row(user_id: str, person: str, ts: int) -> Row:
    """The ``person_ids`` row mapping an id to its person (itself, or the person it merged into)."""
    return Row(PERSON_IDS, {"id": user_id, "person_id": person, "ts": ts, "merged": int(person != user_id)})


@dataclass(frozen=True)
class IdentitySlice:
    """The identity of an id as a slice of its state; the runner reads and changes it itself.

    It takes no events through ``on_events`` (``event_types`` is empty): the runner notes the
    ids events claim, parks and forwards as the protocol above says, and marks it acted only
    when something changed, so an ordinary user pays nothing per record.
    """

    retention_ms: int

    name = IDENTITY_SLICE
    version = 1
    outputs = (PERSON_IDS,)
    event_types: frozenset[str] = frozenset()

    def empty(self) -> Identity:
        return Identity()

    def decode(self, data: bytes, version: int) -> Identity:
        return Identity.from_json(orjson.loads(data))

    def encode(self, state: Identity) -> bytes:
        return orjson.dumps(state.to_json())

    def is_empty(self, state: Identity) -> bool:
        return not state.holds_anything

    def live(self, state: Identity) -> int:
        return len(state.awaiting)

    def on_events(self, user_id: str, state: Identity, events: Any) -> list[Row]:
        return []

    def deadline(self, state: Identity) -> int | None:
        """The end of the retention after the latest event's day; none while answers are awaited."""
        if state.awaiting or self.is_empty(state):
            return None
        return (state.last_day + 1) * DAY_MS + self.retention_ms

    def on_watermark(self, user_id: str, state: Identity, watermark: int) -> list[Row]:
        if not state.awaiting and (state.last_day + 1) * DAY_MS + self.retention_ms < watermark:
            state.anonymous, state.person = False, None
            state.linked, state.refused, state.parked = [], [], []
        return []

    def current_rows(self, user_id: str, state: Identity) -> list[Row]:
        return [] if state.person is None else [person_row(user_id, state.person, state.last_day * DAY_MS)]
