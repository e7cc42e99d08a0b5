"""The sessions job: rolling user sessions in event time (:mod:`stream_jobs.sessionizer`) as a :class:`Job`.

Slice ``sessions``: the open sessions, the first session's start and source, the row
version counter and the user's latest event time, as JSON. Version 1 (written before the
job runtime) lacked the latest event time; it is derived from the open sessions on read.

Identity events (``identify``, ``alias``, ``group``) are not activity and make no session: a
server's identify call for a user who is away would otherwise open one of a single event.

The slice's deadline is the earliest end of an open session plus the timeout (the session
closes when the watermark passes it); with no open session, the latest event plus the
retention, after which the slice is empty and dropped: the first-touch memory of a user
gone that long is not worth a table entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from pulse.contract import IDENTITY_TYPES, Event
from pulse.outputs import SESSIONS
from stream_jobs.identity import is_anonymous
from stream_jobs.job import Row
from stream_jobs.sessionizer import (
    SessionRules,
    UserSessions,
    absorb_sessions,
    add_events,
    close_deadline,
    close_expired,
    session_rows,
)

SESSIONS_SLICE = "sessions"


@dataclass(frozen=True)
class SessionsJob:
    """Sessions per user: published while open, again when closed, retracted when merged away."""

    rules: SessionRules
    retention_ms: int

    name = SESSIONS_SLICE
    version = 2
    outputs = (SESSIONS,)
    event_types = None  # every event but the identity types is part of a session

    def empty(self) -> UserSessions:
        return UserSessions()

    def decode(self, data: bytes, version: int) -> UserSessions:
        return UserSessions.from_json(orjson.loads(data))  # reads versions 1 and 2

    def encode(self, state: UserSessions) -> bytes:
        return orjson.dumps(state.to_json())

    def is_empty(self, state: UserSessions) -> bool:
        return not state.open and state.first_start is None

    def live(self, state: UserSessions) -> int:
        return len(state.open)

    def on_events(self, user_id: str, state: UserSessions, events: Sequence[Event]) -> list[Row]:
        # identify, alias and group say who the user is, often from a server outside any visit: not activity
        events = [event for event in events if event.type not in IDENTITY_TYPES]
        if not events:  # only resent, too-late or identity events from this user: nothing changed
            return []
        state.anonymous = state.anonymous or is_anonymous(events[0])
        retracted = add_events(state, events, self.rules)
        return _rows(session_rows(user_id, state, state.open, False, retracted))

    def deadline(self, state: UserSessions) -> int | None:
        if state.open:
            return close_deadline(state, self.rules)
        return None if state.last_seen is None else state.last_seen + self.retention_ms

    def on_watermark(self, user_id: str, state: UserSessions, watermark: int) -> list[Row]:
        closed = close_expired(state, watermark, self.rules)
        rows = _rows(session_rows(user_id, state, closed, True))
        if state.anonymous and closed:  # kept for a merge into a person to reopen (absorb_sessions)
            state.last_closed = max([*closed, *filter(None, [state.last_closed])], key=lambda s: s.end)
        if not state.open and state.last_seen is not None and state.last_seen + self.retention_ms < watermark:
            state.first_start = state.first_touch = state.last_seen = state.last_closed = None
            state.version = 0
            state.anonymous = False
        return rows

    def current_rows(self, user_id: str, state: UserSessions) -> list[Row]:
        return _rows(session_rows(user_id, state, state.open, False))

    def merge(self, user_id: str, state: UserSessions, other_id: str, other: UserSessions) -> list[Row]:
        """The merged id's open sessions join the user's (see :func:`absorb_sessions`), published anew.

        Their rows in the merged id's name are retracted, the user's rows of every open session
        published again; sessions the merged id closed before stay in its name, but for its
        latest, which is reopened (see :func:`absorb_sessions`).
        """
        tombstones = []
        version = max(state.version, other.version)
        for session in other.handed_over:
            if session.published_id is not None:
                version += 1
                tombstones.append({"session_id": session.published_id, "user_id": other_id, "deleted": True, "version": version})
        retracted = absorb_sessions(state, other, self.rules)
        state.version = version
        return _rows([*tombstones, *session_rows(user_id, state, state.open, False, retracted)])


def _rows(rows: list[dict]) -> list[Row]:
    return [Row(SESSIONS, row) for row in rows]
