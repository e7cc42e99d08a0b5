"""Records through the job runner (validation, de-duplication, sessions), with a dict as the state store."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from pulse.outputs import SESSIONS, VALID_EVENTS
from pulse.settings import load_settings
from stream_jobs.runner import JobRunner, Output

MINUTE = 60_000
T0 = 1_763_856_000_000


def record(*events: dict) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events)


def login(i: int, minute: float, user: str = "u1") -> dict:
    return {"event_id": f"e{i}", "type": "login", "user_id": user, "ts": T0 + int(minute * MINUTE)}


class Worker:
    """The runner plus the part of the agent that applies writes after publishing."""

    def __init__(self, tmp_path: Path) -> None:
        self.store: dict[bytes, bytes] = {}
        self.runner = JobRunner(load_settings({"PULSE_DATA_DIR": str(tmp_path)}), self.store)

    def feed(self, value: bytes, offset: int, partition: int = 0, apply: bool = True) -> Output:
        return self.apply(self.runner.process(value, "events", partition, offset), apply)

    def tick(self, wall_ms: int, partition: int = 0) -> Output:
        return self.apply(self.runner.tick(partition, wall_ms))

    def apply(self, out: Output, apply: bool = True) -> Output:
        for key, value in out.writes.items() if apply else ():
            if value is None:
                self.store.pop(key, None)
            else:
                self.store[key] = value
        return out


def events(out: Output) -> list[str]:
    return [orjson.loads(e)["event_id"] for e in out.rows.get(VALID_EVENTS, [])]


def sessions(out: Output) -> list[dict]:
    return out.rows.get(SESSIONS, [])


def live_sessions(out: Output) -> list[tuple[int, int, bool]]:
    return [(r["events"], r["start"], r["closed"]) for r in sessions(out) if not r["deleted"]]


def test_sessions_open_grow_and_close_with_the_watermark(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    first = worker.feed(record(login(0, 0), login(1, 5), login(2, 0, "u2")), offset=0)
    assert events(first) == ["e0", "e1", "e2"]
    assert sorted(live_sessions(first)) == [(1, T0, False), (2, T0, False)]
    # watermark = newest event - 10 min lateness; a session closes once it is 30 min past its end
    later = worker.feed(record(login(3, 40, "u3")), offset=1)  # watermark 30: u2 (end 0) is not yet past 0 + 30
    assert [r for r in sessions(later) if r["closed"]] == []
    closing = worker.feed(record(login(4, 46, "u3")), offset=2)  # watermark 36: u2 and u1 (end 5) close
    closed = sorted((r["user_id"], r["duration_ms"]) for r in sessions(closing) if r["closed"])
    assert closed == [("u1", 5 * MINUTE), ("u2", 0)]
    assert worker.runner.live("sessions") == 1


def test_resend_is_dropped_and_too_late_is_dead_lettered(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    worker.feed(record(login(0, 100)), offset=0)
    out = worker.feed(record(login(0, 100), login(1, 50), {"event_id": "x", "type": "login"}), offset=1)
    assert out.duplicates == 1 and out.too_late == 1
    assert events(out) == ["e1"]  # too late for sessions, still a valid event
    assert sorted(d.reason for d in out.dead_letters) == ["missing_field", "too_late"]
    assert sessions(out) == []


def test_a_replayed_record_counts_nothing_twice(tmp_path: Path) -> None:
    """The state was written but the output lost: the replay re-emits, and the session stays at 2 events."""
    worker = Worker(tmp_path)
    value = record(login(0, 0), login(1, 1))
    worker.feed(value, offset=7)
    again = worker.feed(value, offset=7)
    assert events(again) == ["e0", "e1"]
    assert live_sessions(again) == [(2, T0, False)]
    assert again.duplicates == 0


def test_state_lost_before_the_write_replays_in_full(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    value = record(login(0, 0), login(1, 1))
    worker.feed(value, offset=7, apply=False)
    again = worker.feed(value, offset=7)
    assert live_sessions(again) == [(2, T0, False)]


def test_a_quiet_partition_closes_sessions_by_wall_clock(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    worker.feed(record(login(0, 0)), offset=0)
    wall_now = int(time.time() * 1000)
    assert sessions(worker.tick(wall_ms=wall_now + 1_000)) == []  # not quiet for 30 s yet
    quiet = worker.tick(wall_ms=wall_now + 41 * MINUTE)  # event time moves on 41 minutes
    assert [(r["user_id"], r["closed"], r["events"]) for r in sessions(quiet)] == [("u1", True, 1)]
    assert worker.runner.live("sessions") == 0


def test_identity_events_make_no_session_and_count_in_none(tmp_path: Path) -> None:
    """A server's identify for a user who is away is not a visit; inside a visit it adds no event."""
    worker = Worker(tmp_path)
    identify = {"event_id": "i0", "type": "identify", "user_id": "u1", "ts": T0, "props": {"plan": "pro"}}
    alone = worker.feed(record(identify), offset=0)
    assert events(alone) == ["i0"] and sessions(alone) == []  # stored as an event all the same
    group = {"event_id": "g0", "type": "group", "user_id": "u1", "ts": T0 + 2 * MINUTE, "props": {"group_id": "acme"}}
    visit = worker.feed(record(login(1, 1), group, login(2, 3)), offset=1)
    assert live_sessions(visit) == [(2, T0 + MINUTE, False)]


def test_a_results_writes_apply_to_a_plain_store_deletes_included() -> None:
    store = {b"kept": b"1", b"gone": b"2"}
    Output(writes={b"new": b"3", b"gone": None, b"never": None}).apply_writes(store)
    assert store == {b"kept": b"1", b"new": b"3"}
