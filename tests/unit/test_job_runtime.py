"""The job runtime's promises: packing-independent verdicts, idempotent replays, bounded state, old state readable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.outputs import SESSIONS, VALID_EVENTS
from pulse.settings import load_settings
from stream_jobs.envelope import StateFormatError, decode_envelope, slice_headers
from stream_jobs.runner import JobRunner, Output, user_key
from stream_jobs.timers import Timers
from tests.unit.test_runner import MINUTE, T0, Worker, login, record, sessions

FIXTURES = Path(__file__).parent / "fixtures"
DAY = 24 * 60  # in minutes, as login() takes them


def folded_sessions(outs: list[Output]) -> dict[str, dict[str, Any]]:
    """The sessions as ClickHouse shows them with FINAL: the latest row per id, retracted ones gone."""
    latest: dict[str, dict[str, Any]] = {}
    for out in outs:
        for row in out.rows.get(SESSIONS, []):
            if row["session_id"] not in latest or row["version"] > latest[row["session_id"]]["version"]:
                latest[row["session_id"]] = row
    return {sid: {k: v for k, v in row.items() if k != "version"} for sid, row in latest.items() if not row["deleted"]}


def outcome(outs: list[Output]) -> tuple[Any, ...]:
    """Everything a run ends with in ClickHouse: event ids, dead letters by id and reason, sessions."""
    ids = sorted(orjson.loads(e)["event_id"] for out in outs for e in out.rows.get(VALID_EVENTS, []))
    letters = sorted((d.letter_id, d.reason) for out in outs for d in out.dead_letters)
    return ids, letters, folded_sessions(outs)


# --- packing ---------------------------------------------------------------------------

arrivals = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 240), st.integers(-25, 5)),  # user, minute, arrival shift
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(arrivals, st.data())
def test_any_split_into_records_gives_the_same_outcome(plan: list[tuple[int, int, int]], data: st.DataObject) -> None:
    """The watermark is taken event by event: packing decides nothing (too_late included)."""
    events = [login(i, minute, f"u{user}") for i, (user, minute, _) in enumerate(plan)]
    order = sorted(range(len(events)), key=lambda i: plan[i][1] + plan[i][2])  # some arrive late, some very late
    stream = [events[i] for i in order] + [events[0]]  # and a resend
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=len(stream))))) if len(stream) > 1 else []
    bounds = [0, *cuts, len(stream)]

    def run(chunks: list[list[dict]], tmp: str) -> tuple[Any, ...]:
        worker = Worker(Path(tmp))
        return outcome([worker.feed(record(*chunk), offset) for offset, chunk in enumerate(chunks)])

    one_record = run([stream], "/tmp/one")
    split = run([stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)], "/tmp/split")
    one_each = run([[event] for event in stream], "/tmp/each")
    assert split == one_record == one_each


# --- replays ---------------------------------------------------------------------------


def test_a_replay_after_the_ids_expired_adds_no_session(tmp_path: Path) -> None:
    """The state held the record, its offset was not committed, and its ids were pruned meanwhile."""
    worker = Worker(tmp_path)
    worker.feed(record(login(0, 0, "u1")), offset=0)
    late_value = record(login(1, 10, "u1"), login(2, 26 * 60, "u2"))  # u2 moves the watermark a day on
    worker.feed(late_value, offset=1)
    worker.feed(record(login(3, 26 * 60 + 5, "u2")), offset=2)
    seen = decode_envelope(worker.store[user_key(0, "u1")])
    assert "seen" not in seen.slices  # u1's ids are gone: the watermark is past them by the retention
    again = worker.feed(late_value, offset=1)  # the replay
    assert again.too_late == 0 and again.duplicates == 0
    assert not [r for r in again.rows.get(SESSIONS, []) if r["user_id"] == "u1" and not r["closed"]]


def test_a_replay_republishes_what_the_record_published(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    value = record(login(0, 0), login(1, 1), login(0, 0))
    first = worker.feed(value, offset=7)
    again = worker.feed(value, offset=7)
    assert outcome([first]) == outcome([again])
    assert [orjson.loads(e)["event_id"] for e in again.rows[VALID_EVENTS]] == ["e0", "e1"]
    assert again.rows[SESSIONS][0]["version"] > first.rows[SESSIONS][0]["version"]  # the republished row wins


# --- state -----------------------------------------------------------------------------


def test_state_written_before_the_job_runtime_still_reads(tmp_path: Path) -> None:
    """``user_state_v0.bin`` was written by the previous worker: u1 with ids old-1, old-2 (offset 41), one open session."""
    worker = Worker(tmp_path)
    worker.store[user_key(0, "u1")] = (FIXTURES / "user_state_v0.bin").read_bytes()
    resend = {"event_id": "old-2", "type": "login", "user_id": "u1", "ts": T0 + 5 * MINUTE}
    replay = worker.feed(record(resend), offset=41)  # the old state already holds offset 41
    assert replay.duplicates == 0 and [orjson.loads(e)["event_id"] for e in replay.rows[VALID_EVENTS]] == ["old-2"]
    out = worker.feed(record(resend, login(9, 12)), offset=42)
    assert out.duplicates == 1
    (session,) = out.rows[SESSIONS]
    assert (session["events"], session["entry_path"], session["utm_source"]) == (3, "/pricing", "google")
    envelope = decode_envelope(worker.store[user_key(0, "u1")])
    assert not envelope.legacy and envelope.applied_offset == 42 and set(envelope.slices) == {"seen", "sessions", "churn"}


def test_a_user_whose_slices_are_all_empty_leaves_the_table(tmp_path: Path) -> None:
    settings_ = load_settings({"PULSE_DATA_DIR": str(tmp_path)})
    worker = Worker(tmp_path)
    worker.runner = JobRunner(settings_, worker.store)
    worker.feed(record(login(0, 0, "gone")), offset=0)
    assert user_key(0, "gone") in worker.store
    worker.feed(record(login(1, 2 * DAY, "other")), offset=1)  # session closed, ids expired, first touch kept
    assert set(decode_envelope(worker.store[user_key(0, "gone")]).slices) == {"sessions", "churn"}
    worker.feed(record(login(2, 91 * DAY, "other")), offset=2)  # past the 90-day retention
    assert user_key(0, "gone") not in worker.store


def test_a_user_has_one_live_timer() -> None:
    timers = Timers()
    for deadline in (50, 60, 70):  # a session growing: the earliest entry stays, nothing piles up
        timers.schedule("u1", deadline)
    timers.schedule("u1", 40)  # an earlier deadline replaces it
    assert len(timers) == 1 and timers.due(45) == ["u1"] and timers.due(1_000) == []


def test_timers_are_rebuilt_from_the_state_after_a_restart(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    worker.feed(record(login(0, 0, "a"), login(1, 1, "b")), offset=0)
    restarted = Worker(tmp_path)
    restarted.store = worker.store
    restarted.runner = JobRunner(load_settings({"PULSE_DATA_DIR": str(tmp_path)}), restarted.store)
    first = restarted.feed(record(login(2, 3, "c")), offset=1)  # the partition is back, not indexed yet
    assert restarted.runner.unindexed([0]) == [0] and restarted.runner.live("sessions") == 1
    assert list(restarted.runner.index_partition(0)) == [3]
    assert restarted.runner.live("sessions") == 3 and restarted.runner.unindexed([0]) == []
    closing = restarted.feed(record(login(3, 60, "c")), offset=2)
    assert sorted(r["user_id"] for r in closing.rows[SESSIONS] if r["closed"]) == ["a", "b", "c"]
    assert first.too_late == 0 and restarted.runner.live("sessions") == 1


def test_a_deadline_passed_before_the_index_reached_its_user_fires_on_the_next_tick(tmp_path: Path) -> None:
    """After a restart, records replayed before the timers are rebuilt can pass a user's deadline.

    The tick queued after the index fires it, though the partition's clock does not move:
    otherwise the session would stay open until the next event or 30 s of wall-clock quiet.
    """
    worker = Worker(tmp_path)
    worker.feed(record(login(0, 0, "a")), offset=0)
    restarted = Worker(tmp_path)
    restarted.store = worker.store
    restarted.runner = JobRunner(load_settings({"PULSE_DATA_DIR": str(tmp_path)}), restarted.store)
    passing = restarted.feed(record(login(1, 60, "c")), offset=1)  # a's session ended 55 minutes before the watermark
    assert sessions(passing) and all(row["user_id"] == "c" for row in sessions(passing))
    list(restarted.runner.index_partition(0))
    (closed,) = sessions(restarted.tick(time.time_ns() // 1_000_000))  # within 30 s of the last event: the clock stays
    assert (closed["user_id"], closed["closed"], closed["events"]) == ("a", True, 1)
    assert sessions(restarted.tick(time.time_ns() // 1_000_000)) == []  # fired once


def test_live_counts_leave_with_their_partition(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    worker.feed(record(login(0, 0, "a")), offset=0, partition=0)
    worker.feed(record(login(1, 0, "b"), login(2, 1, "c")), offset=0, partition=1)
    assert worker.runner.live("sessions") == 3 and worker.runner.users_with("sessions", 1) == 3
    worker.runner.keep_only([0])
    assert worker.runner.live("sessions") == 1 and worker.runner.live_values("sessions") == {1: 1}


def test_a_slice_no_event_of_the_record_concerns_is_stored_as_it_was(tmp_path: Path, monkeypatch: Any) -> None:
    """A login matches no funnel step: after a restart (nothing cached), the funnels slice is not even decoded."""
    worker = Worker(tmp_path)
    worker.feed(record({"event_id": "s", "type": "signup", "user_id": "a", "ts": T0}), offset=0)
    stored = decode_envelope(worker.store[user_key(0, "a")]).slices["funnels"]
    restarted = Worker(tmp_path)
    restarted.store.update(worker.store)
    funnels = next(job for job in restarted.runner.jobs if job.name == "funnels")
    monkeypatch.setattr(funnels, "decode", lambda data, version: pytest.fail("decoded for nothing"))
    restarted.feed(record(login(1, 1, "a")), offset=1)
    assert decode_envelope(restarted.store[user_key(0, "a")]).slices["funnels"] == stored


def test_one_state_write_per_user_per_record(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    out = worker.feed(record(*(login(i, i, f"u{i % 3}") for i in range(30))), offset=0)
    assert sorted(out.writes) == sorted([user_key(0, f"u{i}") for i in range(3)] + [b"c0"])
    assert list(out.writes)[-1] == b"c0"  # the clock last
    assert orjson.loads(out.writes[b"c0"])[0] == T0 + 29 * MINUTE


def test_slice_headers_are_what_the_decoded_envelope_holds(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    signup = {"event_id": "s", "type": "signup", "user_id": "a", "ts": T0 + MINUTE}
    worker.feed(record(login(0, 0, "a"), signup), offset=0)
    value = worker.store[user_key(0, "a")]
    decoded = [(name, raw.live, raw.deadline) for name, raw in decode_envelope(value).slices.items()]
    assert slice_headers(value) == decoded and len(decoded) >= 3
    assert slice_headers((FIXTURES / "user_state_v0.bin").read_bytes()) is None  # no headers before envelopes
    with pytest.raises(StateFormatError):
        slice_headers(value[:-3])


def test_a_state_written_before_the_job_runtime_gets_its_timer_and_live_counts_on_a_rebuild(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    worker.store[user_key(0, "u1")] = (FIXTURES / "user_state_v0.bin").read_bytes()  # one open session
    assert list(worker.runner.index_partition(0)) == [1] and worker.runner.live("sessions") == 1
    closing = worker.feed(record(login(0, 2 * DAY, "other")), offset=42)  # the watermark passes u1's session
    assert sorted((row["user_id"], row["closed"]) for row in sessions(closing)) == [("other", False), ("u1", True)]


def test_partitions_kept_through_a_rebalance_keep_their_timers(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    worker.feed(record(login(0, 0, "a")), offset=0, partition=0)
    worker.feed(record(login(1, 0, "b")), offset=0, partition=1)
    for partition in (0, 1):
        list(worker.runner.index_partition(partition))
    worker.runner.keep_only([1])
    assert worker.runner.unindexed([0, 1]) == [0] and worker.runner.live("sessions") == 1
