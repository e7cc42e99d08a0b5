"""The sink's pure parts: rows from records by spec, offsets to commit, deduplication tokens, dead letters."""

from __future__ import annotations

import orjson
import pytest

from pulse.dead_letter import DeadLetter
from pulse.outputs import DEAD_LETTERS, OUTPUTS, SESSIONS, VALID_EVENTS
from sinks.batch import Batch
from sinks.rows import Columns, Position, add_rejected, decode_record


def ndjson(*objects: dict[str, object]) -> bytes:
    return b"\n".join(orjson.dumps(obj) for obj in objects)


def event(i: int) -> dict[str, object]:
    return {"event_id": f"e{i}", "type": "login", "user_id": "u", "ts": i, "props": {"k": i}, "context": {}}


def test_rows_offsets_and_tokens() -> None:
    batch = Batch()
    assert list(batch.tables) == [*(spec.table for spec in OUTPUTS), DEAD_LETTERS.table]
    batch.track(Position("valid", 0, 10))
    batch.add_output(VALID_EVENTS, ndjson(*(event(i) for i in range(3))), Position("valid", 0, 10))
    batch.track(Position("valid", 0, 11))
    letter = DeadLetter("events/0@3#0", b"\xff", "bad_json", ("not JSON",), "events/0@3", 5)
    batch.track(Position("dlq", 1, 4))
    batch.add_letter(letter, Position("dlq", 1, 4))
    events = batch.tables[VALID_EVENTS.table]
    assert batch.rows == 4 and batch.event_times == [0, 1, 2]
    assert events.data[0] == ["e0", "e1", "e2"] and events.data[-2] == ['{"k":0}', '{"k":1}', '{"k":2}']
    assert events.data[4] == [None, None, None]  # server_received_at, optional
    assert [events.source(i) for i in range(3)] == ["valid/0@10#0", "valid/0@10#1", "valid/0@10#2"]
    assert batch.letters.data[1:4] == [["dlq"], [1], [4]]
    assert batch.commit_offsets() == {("valid", 0): 12, ("dlq", 1): 5}
    assert batch.first_offsets() == {("valid", 0): 10, ("dlq", 1): 4}
    same = Batch(ranges=dict(batch.ranges))
    assert same.dedup_token("events") == batch.dedup_token("events") != batch.dedup_token("dead_letters")
    assert batch.is_due(max_rows=4, max_seconds=60) and not batch.is_due(max_rows=5, max_seconds=60)


def test_defaults_fill_what_a_row_omits() -> None:
    retraction = {"session_id": "s1", "user_id": "u", "deleted": 1, "version": 7}
    (row,) = decode_record(SESSIONS, ndjson(retraction) + b"\n").rows
    assert dict(zip(SESSIONS.column_names, row, strict=True)) == {
        column.name: retraction.get(column.name, column.default) for column in SESSIONS.columns
    }


@pytest.mark.parametrize("value", [b"{broken", ndjson({"event_id": "e"}), b"[1]"])
def test_unreadable_record_raises_and_adds_nothing(value: bytes) -> None:
    batch = Batch()
    with pytest.raises((ValueError, KeyError, TypeError)):
        batch.add_output(VALID_EVENTS, ndjson(event(0)) + b"\n" + value, Position("valid", 0, 1))
    assert batch.rows == 0 and batch.event_times == []


def test_parts_keep_their_sources() -> None:
    columns = Columns.of(VALID_EVENTS)
    columns.extend(decode_record(VALID_EVENTS, ndjson(event(0), event(1))).rows, Position("t", 2, 5))
    columns.extend(decode_record(VALID_EVENTS, ndjson(event(2))).rows, Position("t", 2, 6))
    part = columns.part(1, 3)
    assert len(part) == 2 and part.data[0] == ["e1", "e2"]
    assert [part.source(0), part.source(1)] == ["t/2@5#1", "t/2@6#0"]


def test_refused_rows_become_stable_dead_letters() -> None:
    columns = Columns.of(VALID_EVENTS)
    columns.extend(decode_record(VALID_EVENTS, ndjson(event(0), event(1))).rows, Position("valid", 3, 9))
    letters = Columns.of(DEAD_LETTERS)
    add_rejected("events", columns, [(1, "Code: 6. DB::Exception: nope")], letters)
    row = dict(zip(letters.names, (column[0] for column in letters.data), strict=True))
    assert row["letter_id"] == "events:valid/3@9#1" and row["source"] == "valid/3@9#1"
    assert (row["dlq_topic"], row["dlq_partition"], row["dlq_offset"]) == ("valid", 3, 9)
    assert row["reason"] == "sink_rejected" and row["errors"] == ["Code: 6. DB::Exception: nope"]
    assert orjson.loads(row["raw"])["event_id"] == "e1"
    assert letters.source(0) == "valid/3@9#1"


def test_dead_letter_headers_round_trip() -> None:
    letter = DeadLetter("f.jsonl:3", b"raw", "bad_prop", ("props.amount: must be a number",), "f.jsonl:3", 1234)
    assert DeadLetter.from_record(letter.raw, letter.headers(), "dlq/0@9") == letter
    foreign = DeadLetter.from_record(b"x", None, "dlq/0@9")
    assert (foreign.letter_id, foreign.reason, foreign.raw) == ("dlq/0@9", "unknown", b"x")
