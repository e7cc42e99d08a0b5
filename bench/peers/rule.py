"""The session rule as a peer applies it: the direct code a Faust or Quix Streams user writes.

Our sessionizer (:mod:`stream_jobs.sessionizer`) takes a user's events in any order within
the allowed lateness: an event may join, extend backwards or bridge open sessions. The peers
are fed each user's events in time order, with no resent and no late event, and there the
rule reduces to one comparison with the user's current session: the event extends it when
it comes within the inactivity timeout of its last event and keeps it within the maximum
length, else it starts a new session. On such input both give every session the same
start, end, event count and page views, which is what the benchmark compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from stream_jobs.sessionizer import SessionRules


class Session(NamedTuple):
    """A user's session as the peers keep it in state: a plain tuple, stored as a JSON list."""

    start: int
    end: int
    events: int
    page_views: int


def next_session(current: Sequence[int] | None, ts: int, page_view: bool, rules: SessionRules) -> Session:
    """The user's current session after one more event, the next of that user in time order.

    ``current`` is what the state holds: a :class:`Session`, or the JSON list it was stored as.
    """
    if current is not None:
        start, end, events, page_views = current
        if ts - end <= rules.timeout_ms and ts - start <= rules.max_length_ms:
            return Session(start, ts, events + 1, page_views + page_view)
    return Session(ts, ts, 1, int(page_view))


def session_row(user_id: str, session: Session) -> dict[str, Any]:
    """The row a peer emits for every event: the user's current session as it stands."""
    return {"user_id": user_id, **session._asdict()}
