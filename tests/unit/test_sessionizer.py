"""The session state machine: arrival order within the allowed lateness never changes the sessions."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.contract import Event
from stream_jobs.sessionizer import SessionRules, UserSessions, add_events, close_expired, session_rows

MINUTE = 60_000
LATENESS = 10 * MINUTE


@dataclass(frozen=True)
class Expected:
    start: int
    end: int
    events: int
    page_views: int
    entry: str | None
    exit: str | None


def reference(events: list[Event], rules: SessionRules) -> list[Expected]:
    """Sessions of the events in time order, by the rules written plainly."""
    ordered = sorted(events, key=lambda e: e.ts)
    groups: list[list[Event]] = []
    for event in ordered:
        if groups and event.ts - groups[-1][-1].ts <= rules.timeout_ms and event.ts - groups[-1][0].ts <= rules.max_length_ms:
            groups[-1].append(event)
        else:
            groups.append([event])
    result = []
    for group in groups:
        views = [e for e in group if e.type == "page_view"]
        result.append(Expected(group[0].ts, group[-1].ts, len(group), len(views),
                               views[0].context["path"] if views else None,
                               views[-1].context["path"] if views else None))  # fmt: skip
    return result


def run(arrivals: list[Event], rules: SessionRules) -> list[Expected]:
    """Feed events one by one as the worker does: watermark, on-time check, place, close."""
    state = UserSessions()
    closed = []
    max_ts = None
    for event in arrivals:
        watermark = None if max_ts is None else max_ts - LATENESS
        assert watermark is None or event.ts >= watermark, "the generator only makes on-time arrivals"
        add_events(state, [event], rules)
        max_ts = event.ts if max_ts is None else max(max_ts, event.ts)
        closed += close_expired(state, max_ts - LATENESS, rules)
    sessions = sorted(closed + state.open, key=lambda s: s.start)
    return [Expected(s.start, s.end, s.events, s.page_views, s.entry_path, s.exit_path) for s in sessions]


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[Event], list[Event]]:
    """Events with distinct times, and an arrival order where each is at most LATENESS late."""
    gaps = draw(st.lists(st.integers(1, 50 * MINUTE), min_size=1, max_size=40))
    events = []
    ts = 1_763_856_000_000
    for i, gap in enumerate(gaps):
        ts += gap
        is_view = draw(st.booleans())
        context = {"path": f"/p{i}"} if is_view else {}
        events.append(Event(f"e{i}", "page_view" if is_view else "login", "u", ts, {}, context))
    delays = draw(st.lists(st.integers(0, LATENESS), min_size=len(events), max_size=len(events)))
    arrivals = [e for _, e in sorted(zip((e.ts + d for e, d in zip(events, delays, strict=True)), events, strict=True),
                                     key=lambda pair: (pair[0], pair[1].event_id))]  # fmt: skip
    return events, arrivals


@settings(max_examples=300, deadline=None)
@given(timelines(), st.sampled_from([24 * 60, 90, 45]))
def test_any_arrival_within_lateness_gives_the_sorted_sessions(timeline: tuple, max_minutes: int) -> None:
    events, arrivals = timeline
    rules = SessionRules(timeout_ms=30 * MINUTE, max_length_ms=max_minutes * MINUTE)
    got = run(arrivals, rules)
    assert got == reference(events, rules)
    assert sum(s.events for s in got) == len(events)  # every event in exactly one session
    assert all(a.end < b.start for a, b in zip(got, got[1:])), "sessions never overlap"


def event(i: int, minute: int, kind: str = "page_view", **context: str) -> Event:
    return Event(f"e{i}", kind, "u", minute * MINUTE, {}, {"path": f"/p{i}", **context})


def test_a_late_event_bridges_two_sessions_and_retracts_one() -> None:
    rules = SessionRules()
    state = UserSessions()
    add_events(state, [event(0, 0), event(1, 40)], rules)
    assert [(s.start, s.events) for s in state.open] == [(0, 1), (40 * MINUTE, 1)]
    rows = session_rows("u", state, state.open, closed=False)
    first_id, second_id = rows[0]["session_id"], rows[1]["session_id"]
    retracted = add_events(state, [event(2, 20, "login")], rules)
    assert retracted == [second_id]
    assert [(s.start, s.end, s.events, s.page_views) for s in state.open] == [(0, 40 * MINUTE, 3, 2)]
    rows = session_rows("u", state, state.open, closed=False, retracted=retracted)
    assert [(r["session_id"], r["deleted"]) for r in rows] == [(first_id, False), (second_id, True)]
    assert rows[0]["entry_path"] == "/p0" and rows[0]["exit_path"] == "/p1" and rows[0]["version"] < rows[1]["version"]


def test_a_late_event_moving_the_start_retracts_the_old_id() -> None:
    state = UserSessions()
    add_events(state, [event(0, 10)], SessionRules())
    old = session_rows("u", state, state.open, closed=False)[0]["session_id"]
    add_events(state, [event(1, 5)], SessionRules())
    rows = session_rows("u", state, state.open, closed=False)
    assert rows[1] == {"session_id": old, "user_id": "u", "deleted": True, "version": rows[1]["version"]}
    assert rows[0]["start"] == 5 * MINUTE and rows[0]["session_id"] != old


def test_bounce_source_first_session_and_round_trip() -> None:
    state = UserSessions()
    add_events(state, [event(0, 0, utm_source="google", device="mobile")], SessionRules())
    add_events(state, [event(1, 100, "login", referrer="https://x.io")], SessionRules())
    rows = session_rows("u", state, state.open, closed=False)
    assert [(r["bounce"], r["is_first"], r["utm_source"], r["referrer"]) for r in rows] == [
        (True, True, "google", None),
        (False, False, None, "https://x.io"),
    ]
    assert rows[1]["first_touch_source"] == "google" and rows[0]["device"] == "mobile"
    assert UserSessions.from_json(orjson.loads(orjson.dumps(state.to_json()))) == state
