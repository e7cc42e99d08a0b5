"""Rolling user sessions in event time: the state machine, free of Faust and Kafka.

A session is a run of one user's events with no gap longer than ``timeout_ms`` and no
longer than ``max_length_ms``; any event type counts as activity. Events may arrive out of
order: the caller refuses those behind the partition's watermark (``too_late``) and hands
the rest here, where an event joins every open session it is within the timeout of,
bridging them into one when the result stays within the maximum length. Because nothing
behind the watermark is accepted and a session only closes once the watermark is a full
timeout past its last event, the outcome is the same for any arrival order within the
allowed lateness: the sessions of the events sorted by time (property-tested).

Ties in time are broken by a hash of the event id, so "the first event" (entry page,
source attribution) is the same in every arrival order too.

A session's id is derived from the user and its start, so a replay gives the same ids.
When a late event moves a start earlier, or bridges two sessions, the ids published
before are retracted (a tombstone row) and the merged session is published anew.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import blake2b
from typing import Any

from pulse.contract import Event
from stream_jobs.dedup import id_hash

SOURCE_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "referrer", "device")

Key = tuple[int, int]  # (event time, id hash): the order of events, ties broken the same way everywhere


@dataclass(frozen=True)
class SessionRules:
    """The session boundaries: inactivity timeout and maximum length, in milliseconds."""

    timeout_ms: int = 30 * 60_000
    max_length_ms: int = 24 * 3_600_000


@dataclass(slots=True)
class Session:
    """One open session: its span, counters, and the keys of the events its fields came from."""

    start: int
    end: int
    events: int
    page_views: int
    first: Key
    source: list[str | None]  # SOURCE_FIELDS of the first event
    entry: Key | None = None
    entry_path: str | None = None
    exit: Key | None = None
    exit_path: str | None = None
    published_id: str | None = None  # the id last published, retracted if the start moves

    @classmethod
    def of(cls, event: Event, key: Key) -> Session:
        session = cls(event.ts, event.ts, 0, 0, key, _source(event))
        session.count(event, key)
        return session

    def count(self, event: Event, key: Key) -> None:
        """Add one event that belongs to this session."""
        self.start, self.end = min(self.start, event.ts), max(self.end, event.ts)
        self.events += 1
        if key < self.first:
            self.first, self.source = key, _source(event)
        if event.type == "page_view":
            self.page_views += 1
            path = event.context.get("path")
            if self.entry is None or key < self.entry:
                self.entry, self.entry_path = key, path
            if self.exit is None or key > self.exit:
                self.exit, self.exit_path = key, path

    def absorb(self, other: Session) -> None:
        """Take in a session that an event bridged to this one."""
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        self.events += other.events
        self.page_views += other.page_views
        if other.first < self.first:
            self.first, self.source = other.first, other.source
        if other.entry is not None and (self.entry is None or other.entry < self.entry):
            self.entry, self.entry_path = other.entry, other.entry_path
        if other.exit is not None and (self.exit is None or other.exit > self.exit):
            self.exit, self.exit_path = other.exit, other.exit_path

    @property
    def bounce(self) -> bool:
        """Exactly one page view and no other interaction."""
        return self.events == 1 and self.page_views == 1

    def to_json(self) -> list[Any]:
        return [self.start, self.end, self.events, self.page_views, self.first, self.source,
                self.entry, self.entry_path, self.exit, self.exit_path, self.published_id]  # fmt: skip

    @classmethod
    def from_json(cls, data: list[Any]) -> Session:
        start, end, events, page_views, first, source, entry, entry_path, exit_, exit_path, published = data
        return cls(start, end, events, page_views, tuple(first), source, entry and tuple(entry), entry_path,
                   exit_ and tuple(exit_), exit_path, published)  # fmt: skip


@dataclass
class UserSessions:
    """A user's open sessions (in start order) and what outlives them."""

    open: list[Session] = field(default_factory=list)
    first_start: int | None = None  # start of the user's first session ever
    first_touch: list[str | None] | None = None  # source of that session
    version: int = 0  # bumped for every row published, so the latest row wins downstream
    last_seen: int | None = None  # event time of the user's latest event, for retention
    # An anonymous visitor's latest closed session: a merge into a person reopens it (absorb_sessions), since the
    # visit may have gone on under the person's id after a signup the merge had to wait for.
    last_closed: Session | None = None
    anonymous: bool = False  # the user is an anonymous visitor (stream_jobs.identity.is_anonymous)

    @property
    def handed_over(self) -> list[Session]:
        """What a merge into a person takes: the open sessions and the latest closed one (see absorb_sessions)."""
        return self.open if self.last_closed is None else [*self.open, self.last_closed]

    def to_json(self) -> list[Any]:
        data = [[s.to_json() for s in self.open], self.first_start, self.first_touch, self.version, self.last_seen]
        if self.anonymous:  # the two fields only an anonymous visitor needs
            data += [None if self.last_closed is None else self.last_closed.to_json(), True]
        return data

    @classmethod
    def from_json(cls, data: list[Any]) -> UserSessions:
        """Also reads the four-field layout written before ``last_seen`` existed."""
        sessions, first_start, first_touch, version, *rest = data
        open_ = [Session.from_json(s) for s in sessions]
        last_seen = rest[0] if rest else max((s.end for s in open_), default=first_start)
        if len(rest) < 3:
            return cls(open_, first_start, first_touch, version, last_seen)
        return cls(open_, first_start, first_touch, version, last_seen, rest[1] and Session.from_json(rest[1]), rest[2])


def add_events(state: UserSessions, events: Iterable[Event], rules: SessionRules) -> list[str]:
    """Place on-time events into the user's open sessions; returns ids to retract (merged away)."""
    retracted: list[str] = []
    timeout_ms, max_length_ms = rules.timeout_ms, rules.max_length_ms
    for event in events:
        key = (event.ts, id_hash(event.event_id))
        near: list[Session] = []  # the open sessions within the timeout of the event, and the span bridging them would make
        start = end = event.ts
        for session in state.open:
            if session.start - timeout_ms <= event.ts <= session.end + timeout_ms:
                near.append(session)
                start, end = min(start, session.start), max(end, session.end)
        if near and end - start <= max_length_ms:
            target = near[0]
            for other in near[1:]:
                target.absorb(other)
                state.open.remove(other)
                if other.published_id is not None:
                    retracted.append(other.published_id)
            target.count(event, key)
        else:  # bridging would exceed the maximum length: the earliest session that can hold it, or a new one
            fitting = [s for s in near if max(s.end, event.ts) - min(s.start, event.ts) <= max_length_ms]
            if fitting:
                fitting[0].count(event, key)
            else:
                state.open.append(Session.of(event, key))
                state.open.sort(key=lambda s: s.start)
    for session in state.open:
        if state.first_start is None or session.start <= state.first_start:
            state.first_start, state.first_touch = session.start, session.source
        if state.last_seen is None or session.end > state.last_seen:
            state.last_seen = session.end
    return retracted


def absorb_sessions(state: UserSessions, other: UserSessions, rules: SessionRules) -> list[str]:
    """Take in the open sessions of an id merged into this user; returns this user's ids to retract (bridged).

    Each merged session joins the open sessions it is within the timeout of, as an event
    would (bridging them when the result stays within the maximum length), else stays its
    own: a visit that went on across a sign-in stays one session. The merged id's latest
    closed session is reopened with them: the watermark of its partition may have closed it
    before the merge came, while the events that continue it waited for the merge; if none
    does, it closes again, now as this user's. The caller retracts the merged id's published
    ids; the first session and the latest event are the earlier and later of the two.
    """
    retracted: list[str] = []
    for incoming in other.handed_over:
        incoming.published_id = None
        near = [s for s in state.open if s.start - rules.timeout_ms <= incoming.end and incoming.start <= s.end + rules.timeout_ms]
        span = (min([incoming.start, *(s.start for s in near)]), max([incoming.end, *(s.end for s in near)]))
        if not near or span[1] - span[0] > rules.max_length_ms:
            state.open.append(incoming)
            continue
        target, *bridged = near
        for joined in (*bridged, incoming):
            target.absorb(joined)
            if joined is not incoming:
                state.open.remove(joined)
                if joined.published_id is not None:
                    retracted.append(joined.published_id)
    state.open.sort(key=lambda s: s.start)
    if other.first_start is not None and (state.first_start is None or other.first_start < state.first_start):
        state.first_start, state.first_touch = other.first_start, other.first_touch
    if other.last_seen is not None and (state.last_seen is None or other.last_seen > state.last_seen):
        state.last_seen = other.last_seen
    return retracted


def close_expired(state: UserSessions, watermark: int, rules: SessionRules) -> list[Session]:
    """Remove and return the sessions the watermark has passed by a full timeout."""
    closed = [s for s in state.open if s.end + rules.timeout_ms < watermark]
    state.open = [s for s in state.open if s.end + rules.timeout_ms >= watermark]
    return closed


def close_deadline(state: UserSessions, rules: SessionRules) -> int | None:
    """The watermark past which the user's earliest-ending open session closes."""
    return min((s.end + rules.timeout_ms for s in state.open), default=None)


@lru_cache(maxsize=1 << 14)
def session_id(user_id: str, start: int) -> str:
    """Deterministic from user and start, so a replay publishes the same ids (cached: an open session is
    published again with every record that extends it)."""
    return blake2b(f"{user_id}\x00{start}".encode(), digest_size=10).hexdigest()


def session_rows(
    user_id: str, state: UserSessions, sessions: Iterable[Session], closed: bool, retracted: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """The rows to publish for these sessions, plus tombstones for retracted ids; bumps versions."""
    rows: list[dict[str, Any]] = []
    gone = list(retracted)
    for session in sessions:
        sid = session_id(user_id, session.start)
        if session.published_id is not None and session.published_id != sid:
            gone.append(session.published_id)
        session.published_id = sid
        state.version += 1
        rows.append(_row(user_id, state, session, sid, closed))
    for sid in gone:
        state.version += 1
        rows.append({"session_id": sid, "user_id": user_id, "deleted": True, "version": state.version})
    return rows


def _row(user_id: str, state: UserSessions, session: Session, sid: str, closed: bool) -> dict[str, Any]:
    first_touch = state.first_touch or [None] * len(SOURCE_FIELDS)
    return {
        "session_id": sid,
        "user_id": user_id,
        "start": session.start,
        "end": session.end,
        "duration_ms": session.end - session.start,
        "events": session.events,
        "page_views": session.page_views,
        "bounce": session.bounce,
        "entry_path": session.entry_path,
        "exit_path": session.exit_path,
        **dict(zip(SOURCE_FIELDS, session.source, strict=True)),
        "first_touch_source": first_touch[0],
        "first_touch_medium": first_touch[1],
        "first_touch_campaign": first_touch[2],
        "first_touch_referrer": first_touch[5],
        "is_first": session.start == state.first_start,
        "closed": closed,
        "deleted": False,
        "version": state.version,
    }


def _source(event: Event) -> list[str | None]:
    return [event.context.get(name) for name in SOURCE_FIELDS]
